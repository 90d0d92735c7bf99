package webhook

import (
	"net/netip"

	"github.com/emsflow/emsflow/event"
)

// attributor decides which configured EMS sent an event.
type attributor struct {
	sources []EMSSource
	byName  map[string]bool
	def     string
}

func newAttributor(cfg Config) *attributor {
	a := &attributor{sources: cfg.EMS, byName: map[string]bool{}, def: cfg.DefaultEMS}
	for _, s := range cfg.EMS {
		a.byName[s.Name] = true
	}
	return a
}

// known reports whether name is a configured EMS.
func (a *attributor) known(name string) bool { return a.byName[name] }

// ambiguous reports whether an event can come from more than one EMS, so that falling back to
// the default EMS is worth counting.
func (a *attributor) ambiguous() bool { return len(a.sources) > 1 }

// attribute returns the EMS that sent ev, in order of precedence: the path suffix (pathEMS,
// already checked to be configured), the payload's customData, the peer address, the default.
// matched is false when the default was used.
func (a *attributor) attribute(pathEMS string, peer netip.Addr, ev *event.Event) (name string, matched bool) {
	if pathEMS != "" {
		return pathEMS, true
	}
	if cd, ok := ev.Payload.String("customData"); ok && cd != "" {
		for _, s := range a.sources {
			if s.CustomData != "" && s.CustomData == cd {
				return s.Name, true
			}
		}
	}
	if peer.IsValid() {
		for _, s := range a.sources {
			for _, p := range s.Addresses {
				if p.Contains(peer) {
					return s.Name, true
				}
			}
		}
	}
	return a.def, false
}

// peerAddr parses an http.Request RemoteAddr; IPv4-mapped IPv6 addresses are unmapped so that
// IPv4 prefixes match them.
func peerAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		a, err := netip.ParseAddr(remote)
		if err != nil {
			return netip.Addr{}
		}
		return a.Unmap().WithZone("")
	}
	return ap.Addr().Unmap().WithZone("")
}
