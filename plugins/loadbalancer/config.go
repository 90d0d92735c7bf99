package loadbalancer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emsflow/emsflow/plugins"
)

// Kind is the plugin type name in configuration.
const Kind = "StreamLoadBalancer"

// DefaultReconcileInterval is how often the balancer compares the group with what should be.
const DefaultReconcileInterval = 60 * time.Second

// apiPort is the EMS API port a destination given as a plain IP is reached on, as the
// original did.
const apiPort = "7777"

// Config holds the balancer's parameters. The web-services guide's form loads as printed:
// {"destination_uri": ["192.168.2.3", "192.168.2.4", "192.168.2.5"]}.
type Config struct {
	// DestinationURI is the group: the EMS servers every stream is replicated onto. One string
	// or a list; see Destination for the forms.
	DestinationURI Destinations `json:"destination_uri"`
	// KeepAlive makes EMS reconnect a replica's pull that dropped; default true (the original
	// sent keepAlive=0).
	KeepAlive *bool `json:"keep_alive"`
	// EMS names the configured EMS servers whose streams are replicated (the origins); default
	// all of them.
	EMS []string `json:"ems"`
	// ReconcileInterval is how often the whole group is checked; default 60s, 0 only at start.
	ReconcileInterval *plugins.Duration `json:"reconcile_interval"`
}

// Destination is one EMS of the group. In configuration it is a string or an object:
//   - "192.168.2.3": the API at http://192.168.2.3:7777 and RTMP at rtmp://192.168.2.3/live,
//     as the original;
//   - "http://user:pass@host:8888/apiproxy": a full API URL (plain or the EWS apiProxy, with
//     basic auth), RTMP at rtmp://host/live;
//   - {"api_url": "...", "rtmp_url": "rtmp://host:1935/live"}: either form with the RTMP
//     address other servers pull this one's streams from, when it is not rtmp://<host>/live.
//
// The others pull an origin EMS's streams from, in order: its destination's rtmp_url; the
// rtmp_url of that EMS in the service configuration (ems.<name>.rtmp_url, plugins.Deps.RTMPURLs);
// rtmp://<host>/live from its destination's address or, when it is not a destination, from its
// API host.
type Destination struct {
	// APIURL is the EMS API, or a plain IP or host.
	APIURL string `json:"api_url"`
	// RTMPURL is where this server's streams are pulled from, without the stream name. It
	// follows the rule of ems.<name>.rtmp_url: rtmp:// or rtmps://, a host, an application
	// path, no query or fragment; trailing slashes are dropped.
	RTMPURL string `json:"rtmp_url"`
}

// Destinations is the group. It decodes from one string, one object, or a list of both.
type Destinations []Destination

// UnmarshalJSON reads one string, one object, or a list of strings and objects.
func (d *Destinations) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] != '[' {
		b = append(append([]byte{'['}, b...), ']')
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return fmt.Errorf("destination_uri must be a string, an object or a list of them: %w", err)
	}
	out := make(Destinations, 0, len(items))
	for i, it := range items {
		it = bytes.TrimSpace(it)
		var dst Destination
		switch {
		case len(it) > 0 && it[0] == '"':
			if err := json.Unmarshal(it, &dst.APIURL); err != nil {
				return fmt.Errorf("destination_uri[%d]: %w", i, err)
			}
		case len(it) > 0 && it[0] == '{':
			dec := json.NewDecoder(bytes.NewReader(it))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&dst); err != nil {
				return fmt.Errorf("destination_uri[%d]: %w (keys: api_url, rtmp_url)", i, err)
			}
		default:
			return fmt.Errorf("destination_uri[%d] is not a string or an object", i)
		}
		out = append(out, dst)
	}
	*d = out
	return nil
}

// resolved is a destination with its API URL and RTMP base worked out.
type resolved struct {
	api  string // API URL, credentials included
	rtmp string // rtmp://host[:port]/app, no trailing slash
}

// resolve turns a destination into its API URL and RTMP base.
func (d Destination) resolve() (resolved, error) {
	s := strings.TrimSpace(d.APIURL)
	if s == "" {
		return resolved{}, errors.New("destination without an address")
	}
	var r resolved
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return resolved{}, fmt.Errorf("destination api url is not a URL: %w", unwrap(err))
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return resolved{}, fmt.Errorf("destination %s: api url scheme must be http or https", u.Redacted())
		}
		if u.Hostname() == "" {
			return resolved{}, fmt.Errorf("destination %s: no host", u.Redacted())
		}
		r.api = s
		r.rtmp = "rtmp://" + hostOnly(u.Hostname()) + "/live"
	} else {
		if strings.ContainsAny(s, "/ ?#@") {
			// Not quoted: a mistyped "user:pass@host" must not print its password.
			return resolved{}, errors.New("destination is neither an IP or host (host[:port]) nor a full http:// API URL")
		}
		host, port := s, apiPort
		if h, p, err := net.SplitHostPort(s); err == nil {
			host, port = h, p
		}
		r.api = "http://" + net.JoinHostPort(host, port)
		r.rtmp = "rtmp://" + hostOnly(host) + "/live"
	}
	if rt := strings.TrimSpace(d.RTMPURL); rt != "" {
		base, err := rtmpBase(rt)
		if err != nil {
			return resolved{}, fmt.Errorf("destination rtmp_url: %w", err)
		}
		r.rtmp = base
	}
	return r, nil
}

// rtmpBase checks an RTMP base URL that a stream name is appended to (a destination's rtmp_url,
// an EMS's rtmp_url) and returns it without surrounding whitespace and trailing slashes. The
// rule is internal/config's for ems.<name>.rtmp_url: rtmp:// or rtmps:// in any case, a host, a
// port from 1 to 65535 if one is given, an application path, and no query or fragment (EMS
// needs the application to connect; the stream name goes after it). Its errors never include
// the URL, which may carry a password.
func rtmpBase(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("is not a URL: %w", unwrap(err))
	}
	if sc := strings.ToLower(u.Scheme); sc != "rtmp" && sc != "rtmps" {
		return "", fmt.Errorf("scheme %q is not rtmp or rtmps", u.Scheme)
	}
	if u.Hostname() == "" {
		return "", errors.New("has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
	}
	if strings.Trim(u.Path, "/") == "" {
		return "", errors.New("has no application path (such as rtmp://host:1935/live)")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", errors.New("must not have a query or fragment: the stream name is appended to it")
	}
	return strings.TrimRight(s, "/"), nil
}

func hostOnly(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

func unwrap(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Validate checks the parameters that need no EMS client; New checks the API URLs too. ems
// lists the configured EMS names.
func (c *Config) Validate(ems []string) error {
	var errs []error
	if len(c.DestinationURI) == 0 {
		errs = append(errs, errors.New("destination_uri is required"))
	}
	for i, d := range c.DestinationURI {
		if _, err := d.resolve(); err != nil {
			errs = append(errs, fmt.Errorf("destination_uri[%d]: %w", i, err))
		}
	}
	for _, n := range c.EMS {
		if !slices.Contains(ems, n) {
			errs = append(errs, fmt.Errorf("ems %q is not a configured EMS (configured: %s)", n, strings.Join(ems, ", ")))
		}
	}
	if c.ReconcileInterval != nil && *c.ReconcileInterval < 0 {
		errs = append(errs, errors.New("reconcile_interval must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *Config) keepAlive() bool { return c.KeepAlive == nil || *c.KeepAlive }

func (c *Config) interval() time.Duration {
	if c.ReconcileInterval == nil {
		return DefaultReconcileInterval
	}
	return c.ReconcileInterval.Std()
}
