package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultListen            = ":4000"
	DefaultPath              = "/evowebservices"
	DefaultMaxBodyBytes      = 1 << 20
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultAppendTimeout     = 10 * time.Second
)

// Config configures the webhook server. Zero fields take the defaults above.
type Config struct {
	// Listen is the TCP address to listen on, such as ":4000".
	Listen string
	// Paths are the event paths, such as "/evowebservices". Each is also served with a trailing
	// slash and with one more segment naming the EMS ("/evowebservices/<ems-name>").
	Paths []string
	// AuthToken, when set, must be presented by every event request: as "Authorization: Bearer
	// <token>", as "X-Emsflow-Token: <token>" or as the query parameter "token" (EMS can only
	// send it that way, in the sink url).
	AuthToken string
	// MaxBodyBytes limits a request body; a larger body is answered 413.
	MaxBodyBytes int64
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the http.Server timeouts.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// AppendTimeout bounds one journal append, give or take a tenth of it up to 100 ms
	// (requests arriving together share a deadline). The append does not stop when the sender
	// disconnects: EMS never retries, so a fully received event is still stored if it can be.
	AppendTimeout time.Duration
	// EMS lists the EMS servers events are attributed to (see Server for the rules). Empty or
	// a single entry means every event comes from DefaultEMS (or that single EMS).
	EMS []EMSSource
	// DefaultEMS names the EMS an event is attributed to when nothing else matches. With a single
	// EMS configured and DefaultEMS empty, it is that EMS.
	DefaultEMS string
	// Admin, when set, is served under /admin/ (operator endpoints such as dead letters),
	// behind the same AuthToken as the event paths.
	Admin http.Handler
}

// EMSSource says how to recognise the events of one EMS server.
type EMSSource struct {
	// Name is the EMS name from configuration; it is also the path suffix that selects it.
	Name string
	// Addresses are the peer addresses the EMS posts from. They attribute; they do not
	// authorize (use AuthToken for that).
	Addresses []netip.Prefix
	// CustomData matches payload.customData when that is a string or a number (the sink's
	// customData in EMS's config.lua, such as customData="edge-1").
	CustomData string
}

// withDefaults returns c with zero fields replaced by defaults and paths cleaned.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if len(c.Paths) == 0 {
		c.Paths = []string{DefaultPath}
	}
	paths := make([]string, 0, len(c.Paths))
	for _, p := range c.Paths {
		p = strings.TrimSpace(p)
		if p != "/" {
			p = strings.TrimRight(p, "/")
		}
		paths = append(paths, p)
	}
	c.Paths = paths
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.AppendTimeout == 0 {
		c.AppendTimeout = DefaultAppendTimeout
	}
	if c.DefaultEMS == "" && len(c.EMS) == 1 {
		c.DefaultEMS = c.EMS[0].Name
	}
	return c
}

// Validate reports every problem of a configuration after defaults are applied, joined.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	seenPath := map[string]bool{}
	for _, p := range c.Paths {
		switch {
		case p == "" || p == "/" || !strings.HasPrefix(p, "/"):
			errs = append(errs, fmt.Errorf("server path %q: must start with / and name a path", p))
		case strings.ContainsAny(p, "{}*?# "):
			errs = append(errs, fmt.Errorf("server path %q: must not contain {, }, *, ?, # or spaces", p))
		case slices.Contains([]string{healthPath, readyPath, metricsPath}, p):
			errs = append(errs, fmt.Errorf("server path %q: reserved for the service itself", p))
		case seenPath[p]:
			errs = append(errs, fmt.Errorf("server path %q: listed twice", p))
		}
		seenPath[p] = true
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d: must be positive", c.MaxBodyBytes))
	}
	for name, d := range map[string]time.Duration{
		"read header timeout": c.ReadHeaderTimeout, "read timeout": c.ReadTimeout,
		"write timeout": c.WriteTimeout, "idle timeout": c.IdleTimeout, "append timeout": c.AppendTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive", name, d))
		}
	}
	names := map[string]bool{}
	customData := map[string]string{}
	for i, e := range c.EMS {
		switch {
		case e.Name == "":
			errs = append(errs, fmt.Errorf("ems %d: name is empty", i+1))
		case strings.ContainsAny(e.Name, "/?#% "):
			errs = append(errs, fmt.Errorf("ems %q: name must not contain /, ?, #, %% or spaces (it is a path segment)", e.Name))
		case names[e.Name]:
			errs = append(errs, fmt.Errorf("ems %q: listed twice", e.Name))
		}
		names[e.Name] = true
		if e.CustomData != "" {
			if other, dup := customData[e.CustomData]; dup {
				errs = append(errs, fmt.Errorf("ems %q: custom data %q is also used by ems %q", e.Name, e.CustomData, other))
			}
			customData[e.CustomData] = e.Name
		}
		for _, p := range e.Addresses {
			if !p.IsValid() {
				errs = append(errs, fmt.Errorf("ems %q: invalid address prefix", e.Name))
			}
		}
	}
	if len(c.EMS) > 0 && c.DefaultEMS != "" && !names[c.DefaultEMS] {
		errs = append(errs, fmt.Errorf("default ems %q: not among the configured ems (%s)", c.DefaultEMS, strings.Join(emsNames(c.EMS), ", ")))
	}
	return errors.Join(errs...)
}

func emsNames(srcs []EMSSource) []string {
	out := make([]string, 0, len(srcs))
	for _, s := range srcs {
		out = append(out, s.Name)
	}
	return out
}
