package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emsflow/emsflow/event"
)

// attributor decides which configured EMS sent an event.
type attributor struct {
	sources    []EMSSource
	byName     map[string]bool
	def        string
	customData bool // some source is told apart by customData
}

func newAttributor(cfg Config) *attributor {
	a := &attributor{sources: cfg.EMS, byName: map[string]bool{}, def: cfg.DefaultEMS}
	for _, s := range cfg.EMS {
		a.byName[s.Name] = true
		a.customData = a.customData || s.CustomData != ""
	}
	return a
}

// known reports whether name is a configured EMS.
func (a *attributor) known(name string) bool { return a.byName[name] }

// usesCustomData reports whether some EMS is told apart by the customData of its events.
func (a *attributor) usesCustomData() bool { return a.customData }

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

// ParseAddresses turns configured EMS addresses, each an IP ("10.0.0.5", "::1") or a CIDR
// ("10.0.0.0/24"), into prefixes for EMSSource.Addresses. Every bad entry is reported.
func ParseAddresses(addrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(addrs))
	var errs []error
	for _, s := range addrs {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("address %q: not an IP or CIDR", s))
				continue
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("address %q: not an IP or CIDR", s))
			continue
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, errors.Join(errs...)
}
