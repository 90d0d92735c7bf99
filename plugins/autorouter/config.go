package autorouter

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/provenance"
)

// Kind is the plugin type name in configuration.
const Kind = "StreamAutoRouter"

// DefaultReconcileInterval is how often the router compares what runs with what should.
const DefaultReconcileInterval = 60 * time.Second

// Config holds the router's parameters. The web-services guide's form loads as printed:
// {"token": "stream", "destination_uri": "192.168.2.3"}.
type Config struct {
	// Token selects the streams to route: those whose name contains it; empty routes every
	// stream.
	Token string `json:"token"`
	// DestinationURI lists where streams go: a bare host ("192.168.2.3", "host:1936") means
	// rtmp://<host>/live; a full rtmp:// URI is used as given. One string or a list.
	DestinationURI []string `json:"destination_uri"`
	// KeepAlive makes EMS re-establish a push that dropped; default true (the original sent
	// keepAlive=0).
	KeepAlive *bool `json:"keep_alive"`
	// EMS names the configured EMS servers whose streams are routed; default all of them.
	EMS []string `json:"ems"`
	// ReconcileInterval is how often every live stream is checked for its push; default 60s,
	// 0 only at start.
	ReconcileInterval *plugins.Duration `json:"reconcile_interval"`
}

// destination is one parsed destination_uri entry.
type destination struct {
	uri      string              // the pushStream uri
	endpoint provenance.Endpoint // its host and port
	bare     bool                // given without a port: an EMS on that host is the target
}

// Validate checks the parameters; it reports every problem. ems lists the configured EMS
// names.
func (c *Config) Validate(ems []string) error {
	var errs []error
	if len(c.DestinationURI) == 0 {
		errs = append(errs, errors.New("destination_uri is required"))
	}
	seen := map[string]bool{}
	for _, d := range c.DestinationURI {
		pd, err := parseDestination(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[pd.uri] {
			errs = append(errs, fmt.Errorf("destination_uri %q is listed twice", d))
		}
		seen[pd.uri] = true
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

func (c *Config) interval() time.Duration {
	if c.ReconcileInterval == nil {
		return DefaultReconcileInterval
	}
	return c.ReconcileInterval.Std()
}

func (c *Config) keepAlive() bool { return c.KeepAlive == nil || *c.KeepAlive }

// parseDestination turns a destination_uri entry into the push target.
func parseDestination(s string) (destination, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return destination{}, errors.New("destination_uri has an empty entry")
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return destination{}, fmt.Errorf("destination_uri %q: %w", s, err)
		}
		if !strings.HasPrefix(strings.ToLower(u.Scheme), "rtmp") {
			return destination{}, fmt.Errorf("destination_uri %q: scheme %q is not rtmp", s, u.Scheme)
		}
		e, ok := provenance.ParseEndpoint(s)
		if !ok {
			return destination{}, fmt.Errorf("destination_uri %q: no host", s)
		}
		return destination{uri: s, endpoint: e, bare: u.Port() == ""}, nil
	}
	if strings.ContainsAny(s, "/ ?#@") {
		return destination{}, fmt.Errorf("destination_uri %q: give a bare host (host or host:port) or a full rtmp:// URI", s)
	}
	bare := true
	if _, _, err := net.SplitHostPort(s); err == nil {
		bare = false
	}
	uri := "rtmp://" + s + "/live"
	e, ok := provenance.ParseEndpoint(uri)
	if !ok {
		return destination{}, fmt.Errorf("destination_uri %q: not a host", s)
	}
	return destination{uri: uri, endpoint: e, bare: bare}, nil
}
