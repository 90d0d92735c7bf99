package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// namePattern is what EMS and plugin instance names may contain: they appear in URL paths,
// environment variable names and NATS consumer names.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// reservedPaths are served by emsflow itself and cannot receive events.
var reservedPaths = []string{"/healthz", "/readyz", "/metrics"}

// Log levels and formats.
var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"json", "console"}
)

// Validate checks the configuration and returns every problem, joined, each naming the setting.
// It does not know which plugin types exist: CheckKinds does.
func (c *Config) Validate() error {
	var v problems
	c.validateServer(&v)
	c.validateJournal(&v)
	c.validateEMS(&v)
	if !slices.Contains(logLevels, c.Log.Level) {
		v.addf("log.level", "%q is not one of %s", c.Log.Level, strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		v.addf("log.format", "%q is not one of %s", c.Log.Format, strings.Join(logFormats, ", "))
	}
	c.validateDispatch(&v)
	c.validatePlugins(&v)
	return errors.Join(v...)
}

// CheckKinds reports every plugin whose type is not in known, listing the known types.
func (c *Config) CheckKinds(known []string) error {
	var v problems
	sorted := slices.Sorted(slices.Values(known))
	for _, p := range c.Plugins {
		if slices.Contains(known, p.Type) {
			continue
		}
		at := "plugins." + p.Name
		if p.Type != p.Name {
			at += ".type"
		}
		v.addf(at, "unknown plugin %q (known: %s)", p.Type, strings.Join(sorted, ", "))
	}
	return errors.Join(v...)
}

type problems []error

func (p *problems) addf(at, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", at, fmt.Sprintf(format, args...)))
}

func (c *Config) validateServer(v *problems) {
	s := c.Server
	if host, port, err := net.SplitHostPort(s.Listen); err != nil {
		v.addf("server.listen", "%q is not host:port or :port", s.Listen)
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		v.addf("server.listen", "port %q is not a number from 0 to 65535", port)
	} else if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /:") {
		v.addf("server.listen", "host %q is not a host name or IP address", host)
	}
	if len(s.Paths) == 0 {
		v.addf("server.paths", "at least one path is needed (EMS posts to /evowebservices by default)")
	}
	seen := map[string]string{}
	for _, p := range s.Paths {
		switch {
		case !strings.HasPrefix(p, "/"):
			v.addf("server.paths", "%q does not start with /", p)
			continue
		case strings.ContainsAny(p, "?# \t"):
			v.addf("server.paths", "%q is not a plain URL path", p)
			continue
		}
		norm := p
		if len(norm) > 1 {
			norm = strings.TrimRight(norm, "/")
		}
		if first, dup := seen[norm]; dup {
			v.addf("server.paths", "%q duplicates %q", p, first)
			continue
		}
		seen[norm] = p
		if slices.Contains(reservedPaths, norm) || norm == "/" {
			v.addf("server.paths", "%q is taken by emsflow itself (%s)", p, strings.Join(reservedPaths, ", "))
		}
	}
	if s.MaxBodyBytes <= 0 {
		v.addf("server.max_body_bytes", "%d must be greater than 0", s.MaxBodyBytes)
	}
	positive(v, "server.read_header_timeout", s.ReadHeaderTimeout)
	notNegative(v, "server.read_timeout", s.ReadTimeout)
	notNegative(v, "server.write_timeout", s.WriteTimeout)
	notNegative(v, "server.idle_timeout", s.IdleTimeout)
	positive(v, "server.shutdown_timeout", s.ShutdownTimeout)
}

func (c *Config) validateJournal(v *problems) {
	j := c.Journal
	if strings.TrimSpace(j.DataDir) == "" {
		v.addf("journal.data_dir", "must not be empty")
	}
	if j.URL != "" {
		for i, raw := range strings.Split(j.URL.Reveal(), ",") {
			at := "journal.url"
			if strings.Contains(j.URL.Reveal(), ",") {
				at = fmt.Sprintf("journal.url (item %d)", i+1)
			}
			checkURL(v, at, strings.TrimSpace(raw), []string{"nats", "tls", "ws", "wss"})
		}
	}
	if j.Stream == "" || strings.ContainsAny(j.Stream, " \t.*>/\\") {
		v.addf("journal.stream", "%q is not a stream name (letters, digits, - and _)", j.Stream)
	}
	notNegative(v, "journal.max_age", j.MaxAge)
	if j.MaxBytes < 0 {
		v.addf("journal.max_bytes", "%d must be 0 (no limit) or more", j.MaxBytes)
	}
	positive(v, "journal.dedupe_window", j.DedupeWindow)
	if j.MaxAge > 0 && j.DedupeWindow > j.MaxAge {
		v.addf("journal.dedupe_window", "%s is longer than journal.max_age %s", j.DedupeWindow, j.MaxAge)
	}
	switch {
	case j.Replicas < 1 || j.Replicas > 5:
		v.addf("journal.replicas", "%d is not from 1 to 5", j.Replicas)
	case j.Replicas > 1 && j.URL == "":
		v.addf("journal.replicas", "%d needs an external cluster (journal.url); the embedded server has 1", j.Replicas)
	}
}

func (c *Config) validateEMS(v *problems) {
	if len(c.EMS) == 0 {
		v.addf("ems", "at least one EMS is needed")
	}
	envNames := map[string]string{}
	customData := map[string]string{}
	addresses := map[netip.Prefix]string{}
	for _, name := range c.EMSNames() {
		e := c.EMS[name]
		at := "ems." + name
		if !namePattern.MatchString(name) {
			v.addf(at, "name %q may hold only letters, digits, - and _", name)
		}
		if other, dup := envNames[envName(name)]; dup {
			v.addf(at, "name %q differs from %q only in case or -/_; environment overrides could not tell them apart", name, other)
		}
		envNames[envName(name)] = name
		if e.APIURL == "" {
			v.addf(at+".api_url", "is required (such as http://127.0.0.1:7777)")
		} else {
			checkURL(v, at+".api_url", e.APIURL.Reveal(), []string{"http", "https"})
		}
		if e.RTMPURL != "" {
			checkRTMPURL(v, at+".rtmp_url", e.RTMPURL.Reveal())
		}
		for _, a := range e.Addresses {
			p, err := parseAddress(a)
			if err != nil {
				v.addf(at+".addresses", "%q is not an IP address or CIDR", a)
				continue
			}
			if other, dup := addresses[p]; dup && other != name {
				v.addf(at+".addresses", "%s is also an address of ems.%s", p, other)
			}
			addresses[p] = name
		}
		if e.CustomData != "" {
			if other, dup := customData[e.CustomData]; dup {
				v.addf(at+".custom_data", "%q is also the custom_data of ems.%s", e.CustomData, other)
			}
			customData[e.CustomData] = name
		}
	}
}

// parseAddress reads an IP address (as a single-address prefix) or a CIDR.
func parseAddress(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkURL checks one URL that may carry credentials; messages never include it.
func checkURL(v *problems, at, raw string, schemes []string) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, credentials included
		}
		v.addf(at, "is not a URL: %v", err)
		return
	}
	if !slices.Contains(schemes, strings.ToLower(u.Scheme)) {
		v.addf(at, "scheme %q is not %s", u.Scheme, strings.Join(schemes, " or "))
	}
	if u.Hostname() == "" {
		v.addf(at, "has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			v.addf(at, "port %q is not a number from 1 to 65535", p)
		}
	}
}

// checkRTMPURL checks an RTMP base URL that a stream name is appended to: rtmp:// or rtmps://,
// a host, an application path, and no query or fragment. Messages never include it.
func checkRTMPURL(v *problems, at, raw string) {
	before := len(*v)
	checkURL(v, at, raw, []string{"rtmp", "rtmps"})
	if len(*v) > before {
		return
	}
	u, _ := url.Parse(raw) // parsed by checkURL
	if strings.Trim(u.Path, "/") == "" {
		v.addf(at, "has no application path (such as rtmp://host:1935/live)")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		v.addf(at, "must not have a query or fragment: the stream name is appended to it")
	}
}

func (c *Config) validateDispatch(v *problems) {
	d := c.Dispatch
	positive(v, "dispatch.timeout", d.Timeout)
	positive(v, "dispatch.initial_backoff", d.InitialBackoff)
	positive(v, "dispatch.max_backoff", d.MaxBackoff)
	if d.InitialBackoff > d.MaxBackoff {
		v.addf("dispatch.initial_backoff", "%s is longer than dispatch.max_backoff %s", d.InitialBackoff, d.MaxBackoff)
	}
	positive(v, "dispatch.give_up_after", d.GiveUpAfter)
	if d.Concurrency < 1 {
		v.addf("dispatch.concurrency", "%d must be at least 1", d.Concurrency)
	}
	if d.MaxDeliver < 0 {
		v.addf("dispatch.max_deliver", "%d must be 0 (unlimited) or more", d.MaxDeliver)
	}
}

func (c *Config) validatePlugins(v *problems) {
	seen := map[string]string{}
	for _, p := range c.Plugins {
		at := "plugins." + p.Name
		if !namePattern.MatchString(p.Name) {
			v.addf(at, "name %q may hold only letters, digits, - and _", p.Name)
		}
		if other, dup := seen[envName(p.Name)]; dup {
			v.addf(at, "name %q is already used by %q (names are compared ignoring case and -/_)", p.Name, other)
		}
		seen[envName(p.Name)] = p.Name
		if p.Concurrency < 0 {
			v.addf(at+".concurrency", "%d must be 0 (use dispatch.concurrency) or more", p.Concurrency)
		}
		if p.Timeout < 0 {
			v.addf(at+".timeout", "%s must be 0 (use dispatch.timeout) or more", p.Timeout)
		}
	}
}

func positive(v *problems, at string, d time.Duration) {
	if d <= 0 {
		v.addf(at, "%s must be greater than 0", d)
	}
}

func notNegative(v *problems, at string, d time.Duration) {
	if d < 0 {
		v.addf(at, "%s must not be negative", d)
	}
}
