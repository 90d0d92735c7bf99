// Package provenance tells which streams and configs on an EMS emsflow created, and where an
// inbound stream came from, so that the stream plugins never act on their own work: loops are
// impossible by construction (DESIGN.md, "Guarantees to keep").
//
// Three marks identify emsflow's work:
//   - Var, a "_" user variable on every push, pull and record emsflow creates. EMS stores it with
//     the config and echoes it in listConfig and in the *Settings block of stream events
//     (reference §1.3), so a replica pulled by emsflow is recognised on the EMS that pulled it.
//   - PageURL, the RTMP pageUrl every emsflow push sends in its connect. A pushed stream arrives
//     at the destination as a plain published INR without pushSettings (those stay on the
//     pushing side), but EMS reports the connect's pageUrl in the destination's stream payload.
//   - The pushing side's listConfig: a tagged push whose target is where an inbound stream was
//     published to (its tcUrl, or its nearIp:nearPort) under the stream's name. This needs no
//     help from the destination and also works where pageUrl is not reported.
package provenance

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
)

const (
	// Var is the user variable emsflow sets on everything it creates on an EMS; its value is
	// the plugin instance name.
	Var = "_emsflow"
	// OriginVar names the configured EMS a push or a replica pull was made from.
	OriginVar = "_emsflowOrigin"
	// pageURLPrefix starts the pageUrl of emsflow's pushes.
	pageURLPrefix = "emsflow:"
)

// Vars returns the user variables that tag what instance creates; origin, when not empty, is
// the name of the EMS the stream comes from.
func Vars(instance, origin string) map[string]string {
	v := map[string]string{Var: instance}
	if origin != "" {
		v[OriginVar] = origin
	}
	return v
}

// PageURL returns the RTMP pageUrl a push made by instance sends, which the destination EMS
// reports in the pushed stream's payload.
func PageURL(instance string) string { return pageURLPrefix + instance }

// Creator returns the emsflow instance that created a stream or config: its Var user variable
// (at the top level, as in listConfig entries and record events, or in a settings block, as in
// stream payloads), or else the instance named by an emsflow pageUrl.
func Creator(p event.Payload) (string, bool) {
	if v, ok := p.UserVar(Var); ok && v != "" {
		return v, true
	}
	if pu, ok := p.String("pageUrl"); ok && strings.HasPrefix(pu, pageURLPrefix) {
		return strings.TrimPrefix(pu, pageURLPrefix), true
	}
	return "", false
}

// Origin returns the OriginVar of a stream payload or config entry.
func Origin(p event.Payload) string {
	v, _ := p.UserVar(OriginVar)
	return v
}

// Pulled reports whether an inbound stream was created by a pull (pullSettings, or connection
// type 1). The near side of a pulled stream is a local ephemeral port, not the EMS's listener.
func Pulled(stream event.Payload) bool {
	if _, ok := stream.Settings(event.PullSettings); ok {
		return true
	}
	n, ok := stream.Uint64("connectionType")
	return ok && n == 1
}

// Endpoint is a network address. Hosts compare case-insensitively; a missing port is the
// scheme's default.
type Endpoint struct {
	Host string
	Port int
}

// String returns host:port.
func (e Endpoint) String() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// IsZero reports whether the endpoint is empty.
func (e Endpoint) IsZero() bool { return e.Host == "" }

var defaultPorts = map[string]int{
	"rtmp": 1935, "rtmpe": 1935, "rtmpt": 80, "rtmpte": 80, "rtmps": 443, "rtmpts": 443,
	"http": 80, "https": 443, "rtsp": 554,
}

// ParseEndpoint returns the host and port of a URI such as rtmp://host[:port]/app.
func ParseEndpoint(uri string) (Endpoint, bool) {
	u, err := url.Parse(strings.TrimSpace(uri))
	if err != nil || u.Hostname() == "" {
		return Endpoint{}, false
	}
	port := defaultPorts[strings.ToLower(u.Scheme)]
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return Endpoint{}, false
		}
		port = n
	}
	return Endpoint{Host: strings.ToLower(u.Hostname()), Port: port}, true
}

// NewEndpoint builds an endpoint from a host (brackets of an IPv6 literal are dropped) and port.
func NewEndpoint(host string, port int) Endpoint {
	return Endpoint{Host: strings.ToLower(strings.Trim(host, "[]")), Port: port}
}

// Ingest returns the addresses of the EMS an inbound stream was published to, as the stream
// saw them: its tcUrl and its near side. A pulled stream has none: its tcUrl is the source and
// its near port a local one.
func Ingest(stream event.Payload) []Endpoint {
	if Pulled(stream) {
		return nil
	}
	var out []Endpoint
	if tc, ok := stream.String("tcUrl"); ok {
		if e, ok := ParseEndpoint(tc); ok {
			out = append(out, e)
		}
	}
	ip, _ := stream.String("nearIp")
	if ip == "" {
		ip, _ = stream.String("ip")
	}
	port, _ := stream.Uint64("nearPort")
	if ip != "" && port != 0 {
		out = append(out, NewEndpoint(ip, int(port)))
	}
	return out
}

// Far returns the far side of a stream (farIp:farPort): for a pulled stream the source it was
// pulled from; for a published one the publisher's address and, on a real EMS, an ephemeral port.
func Far(stream event.Payload) (Endpoint, bool) {
	ip, _ := stream.String("farIp")
	port, _ := stream.Uint64("farPort")
	if ip == "" || port == 0 {
		return Endpoint{}, false
	}
	return NewEndpoint(ip, int(port)), true
}

// PushTarget returns the destination URI of a push config (listConfig entry or pushSettings):
// EMS stores it as targetUri, a string or an object with fullUri; uri is accepted too.
func PushTarget(entry event.Payload) string {
	for _, k := range []string{"targetUri", "targetUri.fullUri", "uri", "uri.fullUri"} {
		if s, ok := entry.String(k); ok && s != "" {
			return s
		}
	}
	return ""
}

// PullSource returns the source URI of a pull config: uri, a string or an object with fullUri.
func PullSource(entry event.Payload) string {
	for _, k := range []string{"uri", "uri.fullUri"} {
		if s, ok := entry.String(k); ok && s != "" {
			return s
		}
	}
	return ""
}

// PushTargetName returns the stream name a push config publishes under at its destination.
func PushTargetName(entry event.Payload) string {
	if s, ok := entry.String("targetStreamName"); ok && s != "" {
		return s
	}
	s, _ := entry.String("localStreamName")
	return s
}

// PushedBy reports whether an inbound stream arrived by a push that emsflow made on one of
// peers (listConfig answers by EMS name; the stream's own EMS should not be among them): a
// push tagged with Var, publishing under the stream's name, to where the stream was published
// to. It returns that peer's name.
func PushedBy(stream event.Payload, peers map[string]*emsclient.ConfigList) (string, bool) {
	ingest := Ingest(stream)
	if len(ingest) == 0 {
		return "", false
	}
	name := stream.Name()
	for peer, cl := range peers {
		if cl == nil {
			continue
		}
		for _, push := range cl.Push {
			if _, ours := Creator(push); !ours || PushTargetName(push) != name {
				continue
			}
			target, ok := ParseEndpoint(PushTarget(push))
			if !ok {
				continue
			}
			for _, e := range ingest {
				if e == target {
					return peer, true
				}
			}
		}
	}
	return "", false
}
