// Package config loads emsflow's configuration file, config.ini, in either of the two forms
// EvoStream's web services used, applies EMSFLOW_... environment overrides, and validates the
// result, reporting every problem at once.
//
// The JSON form (the Node web services' form, printed in the web-services guide) is a JSON object
// that may contain // and /* */ comments and trailing commas. Its top level holds the service
// sections "server", "journal", "ems", "log", "dispatch" and "plugins"; a file whose top level is
// itself the plugins map (the Node plugins.json) is accepted too. The INI form (the PHP web
// services' config.ini) has the same service settings as [server], [journal], [ems] (or
// [ems.<name>]), [log] and [dispatch] sections, a [Plugins] section with "Name = enabled|disabled"
// and one [Name] section of parameters per plugin.
//
// Plugin parameters are kept as raw JSON with the original key case; the plugins decode them
// (plugins.DecodeParams). Service settings are typed and are the operator's interface: keep
// their names.
package config

import (
	"encoding/json"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Config is the effective configuration of the service.
type Config struct {
	// Server configures the webhook HTTP server.
	Server Server
	// Journal configures the NATS JetStream event journal.
	Journal Journal
	// EMS names each EMS server that sends events and its HTTP API, by name.
	EMS map[string]EMS
	// Log configures the service's logger.
	Log Log
	// Dispatch configures how events are handed to plugins.
	Dispatch Dispatch
	// Plugins are the configured plugin instances, in file order.
	Plugins []Plugin
	// Dir is the absolute folder of the configuration file (the working directory when there is
	// no file); relative paths resolve against it.
	Dir string
	// File is the absolute path of the configuration file; empty when the defaults were used.
	File string
}

// Server configures the webhook HTTP server.
type Server struct {
	// Listen is the TCP address to listen on, such as ":4000".
	Listen string
	// Paths are the URL paths EMS posts events to. An event posted to <path>/<ems-name> is
	// attributed to that EMS.
	Paths []string
	// AuthToken, when set, is required from senders (as a bearer token or a "token" query
	// parameter, as the webhook defines).
	AuthToken Secret
	// MaxBodyBytes limits the size of one event.
	MaxBodyBytes int64
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the http.Server timeouts.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration
}

// Journal configures the NATS JetStream event journal.
type Journal struct {
	// DataDir is the absolute folder for the embedded server's file storage and plugin state.
	DataDir string
	// URL is an external NATS server or cluster (comma-separated URLs); empty runs an embedded
	// server. It may carry credentials, so it prints redacted.
	URL SecretURL
	// Stream is the JetStream stream name for events.
	Stream string
	// MaxAge is how long events are kept; 0 keeps them without an age limit.
	MaxAge time.Duration
	// MaxBytes caps the stream's size; 0 means no size limit.
	MaxBytes int64
	// DedupeWindow is the window in which an event with the same key is dropped as a duplicate.
	DedupeWindow time.Duration
	// Replicas is the stream's replica count; only an external cluster can have more than 1.
	Replicas int
}

// EMS is one EMS server.
type EMS struct {
	// APIURL is the EMS HTTP API: plain "http://host:7777" or the EWS apiProxy form
	// "http://user:pass@host:8888/apiproxy". It prints with the password redacted.
	APIURL SecretURL
	// Addresses are the peer IPs or CIDRs events from this EMS come from.
	Addresses []string
	// CustomData matches the customData an EMS event sink adds to the payload.
	CustomData string
	// RTMPURL, when set, is where other servers pull this EMS's streams from over RTMP,
	// without the stream name: "rtmp://10.0.0.5:1935/live". It is for fleets whose API address
	// (an apiProxy, a reverse proxy) is not where RTMP is served. It prints redacted like
	// APIURL.
	RTMPURL SecretURL
}

// Log configures the logger.
type Log struct {
	// Level is trace, debug, info, warn or error.
	Level string
	// Format is json or console.
	Format string
}

// Dispatch configures delivery to plugins.
type Dispatch struct {
	// Timeout is the deadline of one Handle call.
	Timeout time.Duration
	// InitialBackoff is the first retry delay; it doubles (with jitter) up to MaxBackoff.
	InitialBackoff time.Duration
	// MaxBackoff caps the retry delay.
	MaxBackoff time.Duration
	// GiveUpAfter is how long after the first attempt an event is dead-lettered.
	GiveUpAfter time.Duration
	// Concurrency is the number of events one plugin instance handles at once.
	Concurrency int
	// MaxDeliver caps the delivery attempts; 0 means unlimited (bounded by GiveUpAfter).
	MaxDeliver int
}

// Plugin is one configured plugin instance.
type Plugin struct {
	// Name is the instance name: the key in the configuration.
	Name string
	// Type is the plugin type, such as StreamAutoRouter; it equals Name unless the entry sets
	// "type", which allows several instances of one type.
	Type string
	// Enabled is plugin_switch: "enabled" or "disabled".
	Enabled bool
	// Params is the "parameters" object as JSON, keys in their original case. It is "{}" when
	// the configuration has none. The INI form gives every value as a string.
	Params json.RawMessage
	// Concurrency overrides Dispatch.Concurrency when not 0.
	Concurrency int
	// Timeout overrides Dispatch.Timeout when not 0.
	Timeout time.Duration
}

// Default returns the embedded defaults: a server on :4000 at /evowebservices, an embedded
// journal under ./data, one EMS named "default" at http://127.0.0.1:7777, and the EventLog
// plugin writing events.jsonl. Dir is empty and DataDir relative; Load resolves them.
func Default() *Config {
	return &Config{
		Server: Server{
			Listen:            ":4000",
			Paths:             []string{"/evowebservices"},
			MaxBodyBytes:      1 << 20,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ShutdownTimeout:   30 * time.Second,
		},
		Journal: Journal{
			DataDir:      "./data",
			Stream:       "EMS_EVENTS",
			MaxAge:       72 * time.Hour,
			MaxBytes:     1 << 30,
			DedupeWindow: 2 * time.Minute,
			Replicas:     1,
		},
		EMS: map[string]EMS{DefaultEMSName: {APIURL: "http://127.0.0.1:7777"}},
		Log: Log{Level: "info", Format: "json"},
		Dispatch: Dispatch{
			Timeout:        30 * time.Second,
			InitialBackoff: time.Second,
			MaxBackoff:     5 * time.Minute,
			GiveUpAfter:    24 * time.Hour,
			Concurrency:    4,
		},
		Plugins: []Plugin{{
			Name:    "EventLog",
			Type:    "EventLog",
			Enabled: true,
			Params:  json.RawMessage(`{"path":"events.jsonl"}`),
		}},
	}
}

// DefaultEMSName is the name of the EMS the INI form's [ems] section and the defaults configure.
const DefaultEMSName = "default"

// DefaultEMS returns the EMS an event is attributed to when nothing else says which EMS sent
// it: the one named "default", or the only one configured. With several EMS servers and none
// named "default" it returns "" and every event must be attributed by path, customData or peer.
func (c *Config) DefaultEMS() string {
	if _, ok := c.EMS[DefaultEMSName]; ok {
		return DefaultEMSName
	}
	if len(c.EMS) == 1 {
		for name := range c.EMS {
			return name
		}
	}
	return ""
}

// EMSNames returns the configured EMS names, sorted.
func (c *Config) EMSNames() []string {
	names := make([]string, 0, len(c.EMS))
	for n := range c.EMS {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// RTMPURLs returns, by EMS name, the rtmp_url of every EMS that sets one, revealed, for
// plugins.Deps.
func (c *Config) RTMPURLs() map[string]string {
	out := map[string]string{}
	for name, e := range c.EMS {
		if e.RTMPURL != "" {
			out[name] = e.RTMPURL.Reveal()
		}
	}
	return out
}

// redactedText replaces a secret wherever configuration is printed.
const redactedText = "<redacted>"

// Secret is a string that never prints: String, GoString, MarshalText and MarshalJSON give
// "<redacted>" when it is set and "" when it is empty. Reveal returns the value.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String returns "<redacted>", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redactedText
}

// GoString is String, so %#v does not print the value either.
func (s Secret) GoString() string { return s.String() }

// MarshalText returns String.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON returns String as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return marshal(s.String()) }

// SecretURL is a URL, or a comma-separated list of URLs, that may carry credentials. It prints
// with the password (or a user-only token) and secret-looking query values redacted; Reveal
// returns the value.
type SecretURL string

// Reveal returns the URL as configured.
func (u SecretURL) Reveal() string { return string(u) }

// String returns the URL with its credentials redacted.
func (u SecretURL) String() string { return redactURLList(string(u)) }

// GoString is String.
func (u SecretURL) GoString() string { return u.String() }

// MarshalText returns String.
func (u SecretURL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// MarshalJSON returns String as a JSON string.
func (u SecretURL) MarshalJSON() ([]byte, error) { return marshal(u.String()) }

// secretKey matches the names of parameters and query values that hold secrets.
var secretKey = regexp.MustCompile(`(?i)(secret|password|passwd|token|key|credential)`)

func redactURLList(s string) string {
	if s == "" {
		return ""
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactURL hides the credentials in one URL. What does not parse as a URL but might hold
// credentials is redacted whole.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme == "" && u.Host == "") {
		if strings.Contains(s, "@") {
			return redactedText
		}
		return s
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		} else if u.User.Username() != "" {
			u.User = url.User("REDACTED")
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k, vs := range q {
			if secretKey.MatchString(k) {
				for i := range vs {
					vs[i] = "REDACTED"
				}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return strings.ReplaceAll(u.String(), "REDACTED", redactedText)
}
