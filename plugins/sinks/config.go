package sinks

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emsflow/emsflow/internal/filter"
	"github.com/emsflow/emsflow/plugins"
)

// Secret is a configuration value that is never printed: String, GoString and MarshalJSON give
// "<redacted>".
type Secret string

// String returns "<redacted>".
func (Secret) String() string { return "<redacted>" }

// GoString returns "<redacted>" for %#v.
func (Secret) GoString() string { return "<redacted>" }

// MarshalJSON writes "<redacted>".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"<redacted>"`), nil }

// Endpoint is a sink URL or file path. It prints without its password (as url.URL.Redacted
// does), so that configuration dumps never show SMTP credentials.
type Endpoint string

// String returns the URL without its password.
func (e Endpoint) String() string {
	u, err := url.Parse(string(e))
	if err != nil || u.User == nil {
		return string(e)
	}
	return u.Redacted()
}

// GoString is String quoted, for %#v.
func (e Endpoint) GoString() string { return strconv.Quote(e.String()) }

// MarshalJSON writes String.
func (e Endpoint) MarshalJSON() ([]byte, error) { return json.Marshal(e.String()) }

// Addresses are email recipients: a JSON list, or one string with comma-separated addresses
// (the INI form and the single-recipient case).
type Addresses []string

// UnmarshalJSON reads a list of strings or one comma-separated string.
func (a *Addresses) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		var out Addresses
		for part := range strings.SplitSeq(s, ",") {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
		}
		*a = out
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("to must be an address or a list of addresses")
	}
	*a = l
	return nil
}

// Signature schemes for HTTP sinks.
const (
	// SignatureSHA1 is Flussonic's: hex SHA1 of the body followed by the key, in X-Signature.
	SignatureSHA1 = "sha1"
	// SignatureStandardWebhooks is https://www.standardwebhooks.com: webhook-id,
	// webhook-timestamp and webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>".
	SignatureStandardWebhooks = "standard-webhooks"
)

// Config is the EventSinks plugin's parameters.
type Config struct {
	// Sinks are the configured sinks. In the INI form, where values are strings, the list may be
	// given as a JSON string.
	Sinks SinkList `json:"sinks"`
}

// SinkList is the list of sink entries; each entry is decoded strictly.
type SinkList []SinkConfig

// UnmarshalJSON reads an array of sink objects, or a string holding one (the INI form).
func (l *SinkList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(s)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return fmt.Errorf("sinks must be a list of sink objects: %w", err)
	}
	out := make(SinkList, 0, len(raws))
	var errs []error
	for i, r := range raws {
		sc := defaultSink()
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sc); err != nil {
			errs = append(errs, fmt.Errorf("sink %d: %w", i+1, err))
			continue
		}
		out = append(out, sc)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	*l = out
	return nil
}

// SinkConfig is one sink. Which keys apply depends on the kind the URL selects.
type SinkConfig struct {
	// Name identifies the sink in logs and metrics and names its queue folder; required, unique.
	Name string `json:"name"`
	// URL selects the kind: http:// or https:// (POST), smtp:// or smtps:// (email digest), or a
	// file path or file:// URL (JSON lines).
	URL Endpoint `json:"url"`
	// Only and Except are the Flussonic filters (see package filter).
	Only filter.Sets `json:"only"`
	// Except drops events before Only is considered.
	Except filter.Sets `json:"except"`

	// BatchSize is the most events per POST, per file write or per email.
	BatchSize int `json:"batch_size"`
	// ThrottleDelay is how long a batch may wait to fill after its first event.
	ThrottleDelay plugins.Duration `json:"throttle_delay"`
	// ResendLimit is the most delivery attempts of a batch within one process; 0 means no limit.
	ResendLimit int `json:"resend_limit"`
	// ResendTimeout is how old the oldest event of a batch may grow before the batch is given up
	// and dead-lettered; it counts across restarts. 0 means no limit.
	ResendTimeout plugins.Duration `json:"resend_timeout"`
	// ResendDelay is the first backoff between attempts; it doubles up to ResendMaxDelay.
	ResendDelay plugins.Duration `json:"resend_delay"`
	// ResendMaxDelay caps the backoff.
	ResendMaxDelay plugins.Duration `json:"resend_max_delay"`

	// SignKey signs HTTP bodies (see Signature).
	SignKey Secret `json:"sign_key"`
	// Signature is "sha1" (default, Flussonic's X-Signature) or "standard-webhooks".
	Signature string `json:"signature"`
	// Timeout bounds one HTTP request or SMTP session.
	Timeout plugins.Duration `json:"timeout"`
	// Headers are added to every HTTP request (for example Authorization); never logged.
	Headers map[string]Secret `json:"headers"`

	// MaxBytes rotates a file sink's file when it would grow past this size; 0 disables it.
	MaxBytes int64 `json:"max_bytes"`
	// RotateEvery rotates a file sink's file at each multiple of this period (UTC); 0 disables it.
	RotateEvery plugins.Duration `json:"rotate_every"`

	// From is the email sender address.
	From string `json:"from"`
	// To are the email recipients.
	To Addresses `json:"to"`
	// Subject is the email subject; the event count is appended.
	Subject string `json:"subject"`
	// DigestInterval is both how long a digest collects after its first event and the least
	// time between two emails.
	DigestInterval plugins.Duration `json:"digest_interval"`
	// StartTLS requires STARTTLS on smtp:// before authenticating; without it the digest is not
	// sent. Credentials in an smtp:// URL need it unless the server is on localhost. The server's
	// certificate is verified against the system roots and ca_file, as it is for smtps://.
	StartTLS bool `json:"starttls"`
	// CAFile names a PEM file of certificate authorities trusted besides the system roots, for
	// https:// and for TLS email (smtps://, or starttls): a server whose certificate comes from
	// a private CA. A relative path is relative to the configuration file's folder.
	CAFile string `json:"ca_file"`
	// Helo is the name emsflow gives in EHLO: by default the machine's host name, "localhost"
	// when it has none. Mail servers that check it (Postfix's reject_non_fqdn_helo_hostname)
	// want a fully qualified name.
	Helo string `json:"helo"`

	// set records which keys the entry gave, to reject keys that do not apply to its kind.
	set map[string]bool
}

// Sink kinds, chosen by URL.
const (
	kindHTTP  = "http"
	kindFile  = "file"
	kindEmail = "email"
)

const (
	defaultBatchSize      = 100
	defaultEmailBatchSize = 1000
	defaultResendTimeout  = 24 * time.Hour
	defaultResendDelay    = time.Second
	defaultResendMaxDelay = time.Minute
	defaultTimeout        = 10 * time.Second
	defaultDigestInterval = 5 * time.Minute
	defaultMaxBytes       = 100 << 20
	defaultSubject        = "emsflow events"
)

func defaultSink() SinkConfig {
	return SinkConfig{
		ResendTimeout:  plugins.Duration(defaultResendTimeout),
		ResendDelay:    plugins.Duration(defaultResendDelay),
		ResendMaxDelay: plugins.Duration(defaultResendMaxDelay),
		Timeout:        plugins.Duration(defaultTimeout),
	}
}

// UnmarshalJSON decodes strictly and remembers which keys were given.
func (c *SinkConfig) UnmarshalJSON(b []byte) error {
	type plain SinkConfig
	p := plain(*c)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return err
	}
	p.set = map[string]bool{}
	for k := range keys {
		p.set[k] = true
	}
	*c = SinkConfig(p)
	return nil
}

// Kind returns the sink kind its URL selects.
func (c SinkConfig) Kind() string {
	u, err := url.Parse(string(c.URL))
	if err != nil || len(u.Scheme) <= 1 { // "C:\..." parses with a one-letter scheme
		return kindFile
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return kindHTTP
	case "smtp", "smtps":
		return kindEmail
	case "file":
		return kindFile
	}
	return "" // unsupported; Validate says so
}

// Filter returns the sink's filter.
func (c SinkConfig) Filter() filter.Filter { return filter.Filter{Only: c.Only, Except: c.Except} }

// RedactedURL returns the URL without its password, for logs.
func (c SinkConfig) RedactedURL() string {
	u, err := url.Parse(string(c.URL))
	if err != nil || u.Scheme == "" {
		return string(c.URL)
	}
	return u.Redacted()
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// onlyFor lists the keys that apply to one kind only.
var onlyFor = map[string]string{
	"sign_key": kindHTTP, "signature": kindHTTP, "headers": kindHTTP,
	"max_bytes": kindFile, "rotate_every": kindFile,
	"from": kindEmail, "to": kindEmail, "subject": kindEmail, "digest_interval": kindEmail, "starttls": kindEmail,
	"helo": kindEmail,
}

// applyDefaults fills kind-dependent defaults.
func (c *SinkConfig) applyDefaults() {
	kind := c.Kind()
	if !c.set["batch_size"] {
		c.BatchSize = defaultBatchSize
		if kind == kindEmail {
			c.BatchSize = defaultEmailBatchSize
		}
	}
	if kind == kindFile && !c.set["max_bytes"] {
		c.MaxBytes = defaultMaxBytes
	}
	if kind == kindEmail {
		if !c.set["digest_interval"] {
			c.DigestInterval = plugins.Duration(defaultDigestInterval)
		}
		if c.Subject == "" {
			c.Subject = defaultSubject
		}
		if c.Helo == "" {
			c.Helo = defaultHelo()
		}
	}
	if kind == kindHTTP && c.Signature == "" && c.SignKey != "" {
		c.Signature = SignatureSHA1
	}
}

// Validate reports every problem of one sink.
func (c SinkConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !nameRE.MatchString(c.Name) {
		bad("name %q must be letters, digits, '.', '_' or '-' (it names the sink's queue folder)", c.Name)
	}
	kind := c.Kind()
	for key, k := range onlyFor {
		if c.set[key] && kind != "" && k != kind {
			bad("%s applies to %s sinks only, this is a %s sink", key, k, kind)
		}
	}
	if c.set["ca_file"] && kind != "" && !c.usesTLS() {
		bad("ca_file applies to sinks that use TLS only (https://, smtps://, or smtp:// with starttls), not to %s", c.RedactedURL())
	}
	if c.set["throttle_delay"] && kind == kindEmail {
		bad("throttle_delay does not apply to email sinks: use digest_interval")
	}
	if strings.TrimSpace(string(c.URL)) == "" {
		bad("url is required")
	}
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		bad("batch_size %d must be between 1 and 100000", c.BatchSize)
	}
	if c.ResendLimit < 0 {
		bad("resend_limit %d must not be negative", c.ResendLimit)
	}
	for _, d := range []struct {
		key string
		v   plugins.Duration
	}{{"throttle_delay", c.ThrottleDelay}, {"resend_timeout", c.ResendTimeout}, {"resend_delay", c.ResendDelay},
		{"resend_max_delay", c.ResendMaxDelay}, {"timeout", c.Timeout}, {"rotate_every", c.RotateEvery}, {"digest_interval", c.DigestInterval}} {
		if d.v < 0 {
			bad("%s %s must not be negative", d.key, d.v)
		}
	}
	if c.ResendDelay <= 0 {
		bad("resend_delay must be positive")
	}
	if c.ResendMaxDelay < c.ResendDelay {
		bad("resend_max_delay %s must be at least resend_delay %s", c.ResendMaxDelay, c.ResendDelay)
	}
	if c.Timeout <= 0 {
		bad("timeout must be positive")
	}
	switch kind {
	case kindHTTP:
		errs = append(errs, c.validateHTTP()...)
	case kindFile:
		if p := filepath.Clean(c.filePath()); p == "." || strings.HasSuffix(p, "/") || strings.HasSuffix(string(c.URL), "/") {
			bad("url %q must name a file", string(c.URL))
		}
		if c.MaxBytes < 0 {
			bad("max_bytes %d must not be negative", c.MaxBytes)
		}
	case kindEmail:
		errs = append(errs, c.validateEmail()...)
	default:
		bad("url %q: scheme not supported (use http, https, smtp, smtps, file or a file path)", c.RedactedURL())
	}
	return errors.Join(errs...)
}

func (c SinkConfig) validateHTTP() []error {
	var errs []error
	u, err := url.Parse(string(c.URL))
	if err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %q is not an absolute http(s) URL", c.RedactedURL()))
	}
	switch c.Signature {
	case "":
	case SignatureSHA1:
		if c.SignKey == "" {
			errs = append(errs, errors.New("signature sha1 needs a sign_key"))
		}
	case SignatureStandardWebhooks:
		if _, err := standardWebhooksKey(string(c.SignKey)); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("signature %q must be %s or %s", c.Signature, SignatureSHA1, SignatureStandardWebhooks))
	}
	for h, v := range c.Headers {
		if strings.ContainsAny(h, "\r\n: ") || h == "" || strings.ContainsAny(string(v), "\r\n") {
			errs = append(errs, fmt.Errorf("header %q is not a valid header", h))
		}
	}
	return errs
}

func (c SinkConfig) validateEmail() []error {
	var errs []error
	u, err := url.Parse(string(c.URL))
	if err != nil || u.Hostname() == "" {
		errs = append(errs, fmt.Errorf("url %q is not an smtp://host:port URL", c.RedactedURL()))
	} else if u.Scheme == "smtps" && c.StartTLS {
		errs = append(errs, errors.New("starttls does not apply to smtps:// (already TLS)"))
	} else if u.Scheme == "smtp" && !c.StartTLS && u.User != nil && !plainAuthInClear(u.Hostname()) {
		// net/smtp would refuse at every delivery with "unencrypted connection"; say so now.
		errs = append(errs, fmt.Errorf("url %q gives credentials, which are sent only over TLS: set starttls: true or use smtps://",
			c.RedactedURL()))
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		errs = append(errs, fmt.Errorf("from %q: %w", c.From, err))
	}
	if len(c.To) == 0 {
		errs = append(errs, errors.New("to needs at least one recipient"))
	}
	for _, t := range c.To {
		if _, err := mail.ParseAddress(t); err != nil {
			errs = append(errs, fmt.Errorf("to %q: %w", t, err))
		}
	}
	if strings.ContainsAny(c.Subject, "\r\n") {
		errs = append(errs, errors.New("subject must be one line"))
	}
	if c.Helo == "" || strings.ContainsFunc(c.Helo, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		errs = append(errs, fmt.Errorf("helo %q must be a host name (no spaces or control characters)", c.Helo))
	}
	if c.DigestInterval <= 0 {
		errs = append(errs, errors.New("digest_interval must be positive"))
	}
	return errs
}

// defaultHelo is the machine's host name, or localhost when it has none.
func defaultHelo() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// plainAuthInClear reports whether net/smtp's PLAIN authentication sends credentials to host
// without TLS: only to these exact loopback names.
func plainAuthInClear(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// standardWebhooksKey decodes a "whsec_<base64>" key.
func standardWebhooksKey(k string) ([]byte, error) {
	b64, ok := strings.CutPrefix(k, "whsec_")
	if !ok {
		return nil, errors.New("signature standard-webhooks needs a sign_key of the form whsec_<base64>")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) == 0 {
		return nil, errors.New("sign_key after whsec_ is not valid base64")
	}
	return key, nil
}

// usesTLS reports whether the sink connects with TLS: https://, smtps://, or smtp:// with
// starttls.
func (c SinkConfig) usesTLS() bool {
	u, err := url.Parse(string(c.URL))
	if err != nil {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "smtps":
		return true
	case "smtp":
		return c.StartTLS
	}
	return false
}

// filePath is a file sink's path as the URL gives it; deps.Resolve makes it absolute.
func (c SinkConfig) filePath() string {
	p := string(c.URL)
	if u, err := url.Parse(string(c.URL)); err == nil && strings.EqualFold(u.Scheme, "file") {
		p = u.Path
		if p == "" {
			p = u.Opaque
		}
	}
	return p
}

// Validate reports every problem of the plugin configuration.
func (c *Config) Validate() error {
	if len(c.Sinks) == 0 {
		return errors.New("sinks: at least one sink is required")
	}
	var errs []error
	seen := map[string]bool{}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		s.applyDefaults()
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("sink %d (%s): %w", i+1, s.Name, err))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("sink %d: name %q used twice", i+1, s.Name))
		}
		seen[s.Name] = true
	}
	return errors.Join(errs...)
}
