package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Redacted returns the effective configuration as indented JSON in the JSON form's shape, with
// every secret shown as "<redacted>": the auth token, passwords and tokens inside URLs, and
// plugin parameters whose names contain secret, password, token or key (such as
// aws_secret_key, aws_access_key, sign_key, auth_token). An empty secret stays "", so it is
// visible that it is unset. Durations are printed as Go durations.
func (c *Config) Redacted() ([]byte, error) {
	type server struct {
		Listen            string   `json:"listen"`
		Paths             []string `json:"paths"`
		AuthToken         Secret   `json:"auth_token"`
		MaxBodyBytes      int64    `json:"max_body_bytes"`
		ReadHeaderTimeout duration `json:"read_header_timeout"`
		ReadTimeout       duration `json:"read_timeout"`
		WriteTimeout      duration `json:"write_timeout"`
		IdleTimeout       duration `json:"idle_timeout"`
		ShutdownTimeout   duration `json:"shutdown_timeout"`
	}
	type journal struct {
		DataDir      string    `json:"data_dir"`
		URL          SecretURL `json:"url"`
		Stream       string    `json:"stream"`
		MaxAge       duration  `json:"max_age"`
		MaxBytes     int64     `json:"max_bytes"`
		DedupeWindow duration  `json:"dedupe_window"`
		Replicas     int       `json:"replicas"`
	}
	type ems struct {
		APIURL     SecretURL `json:"api_url"`
		Addresses  []string  `json:"addresses,omitempty"`
		CustomData string    `json:"custom_data,omitempty"`
		RTMPURL    SecretURL `json:"rtmp_url,omitempty"`
	}
	type log struct {
		Level  string `json:"level"`
		Format string `json:"format"`
	}
	type dispatch struct {
		Timeout        duration `json:"timeout"`
		InitialBackoff duration `json:"initial_backoff"`
		MaxBackoff     duration `json:"max_backoff"`
		GiveUpAfter    duration `json:"give_up_after"`
		Concurrency    int      `json:"concurrency"`
		MaxDeliver     int      `json:"max_deliver"`
	}
	type view struct {
		Server   server         `json:"server"`
		Journal  journal        `json:"journal"`
		EMS      map[string]ems `json:"ems"`
		Log      log            `json:"log"`
		Dispatch dispatch       `json:"dispatch"`
		Plugins  pluginsView    `json:"plugins"`
	}
	s, j, d := c.Server, c.Journal, c.Dispatch
	out := view{
		Server: server{
			Listen: s.Listen, Paths: s.Paths, AuthToken: s.AuthToken, MaxBodyBytes: s.MaxBodyBytes,
			ReadHeaderTimeout: duration(s.ReadHeaderTimeout), ReadTimeout: duration(s.ReadTimeout),
			WriteTimeout: duration(s.WriteTimeout), IdleTimeout: duration(s.IdleTimeout),
			ShutdownTimeout: duration(s.ShutdownTimeout),
		},
		Journal: journal{
			DataDir: j.DataDir, URL: j.URL, Stream: j.Stream, MaxAge: duration(j.MaxAge),
			MaxBytes: j.MaxBytes, DedupeWindow: duration(j.DedupeWindow), Replicas: j.Replicas,
		},
		EMS: map[string]ems{},
		Log: log{Level: c.Log.Level, Format: c.Log.Format},
		Dispatch: dispatch{
			Timeout: duration(d.Timeout), InitialBackoff: duration(d.InitialBackoff),
			MaxBackoff: duration(d.MaxBackoff), GiveUpAfter: duration(d.GiveUpAfter),
			Concurrency: d.Concurrency, MaxDeliver: d.MaxDeliver,
		},
		Plugins: pluginsView(c.Plugins),
	}
	for name, e := range c.EMS {
		// Field by field on purpose: a field added to EMS is not printed until it is listed
		// here, so a new secret cannot leak through check-config by default.
		out.EMS[name] = ems{APIURL: e.APIURL, Addresses: e.Addresses, CustomData: e.CustomData, RTMPURL: e.RTMPURL} //nolint:staticcheck // S1016: see above
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("print configuration: %w", err)
	}
	return b.Bytes(), nil
}

// duration prints as a Go duration without trailing zero units ("72h", not "72h0m0s").
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return marshal(s)
}

// pluginsView prints plugins as an object in configuration order.
type pluginsView []Plugin

func (ps pluginsView) MarshalJSON() ([]byte, error) {
	type entry struct {
		Type         string          `json:"type,omitempty"`
		PluginSwitch string          `json:"plugin_switch"`
		Concurrency  int             `json:"concurrency,omitempty"`
		Timeout      *duration       `json:"timeout,omitempty"`
		Parameters   json.RawMessage `json:"parameters"`
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, p.Name)
		b.WriteByte(':')
		e := entry{PluginSwitch: "disabled", Concurrency: p.Concurrency}
		if p.Enabled {
			e.PluginSwitch = "enabled"
		}
		if p.Type != p.Name {
			e.Type = p.Type
		}
		if p.Timeout != 0 {
			t := duration(p.Timeout)
			e.Timeout = &t
		}
		params, err := redactParams(p.Params)
		if err != nil {
			return nil, fmt.Errorf("plugins.%s.parameters: %w", p.Name, err)
		}
		e.Parameters = params
		enc, err := marshal(e)
		if err != nil {
			return nil, err
		}
		b.Write(enc)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// redactParams copies a parameters object, keys in order, replacing the value of every key
// that names a secret by "<redacted>" (an empty string or null stays as it is) and the
// credentials inside any string that is a URL.
func redactParams(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("{}"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var b bytes.Buffer
	if err := redactValue(dec, &b, false); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// redactValue copies the next JSON value from dec to b; secret says it sits under a secret key.
func redactValue(dec *json.Decoder, b *bytes.Buffer, secret bool) error {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		if secret {
			// A whole object or list under a secret name is hidden.
			if err := skipRest(dec); err != nil {
				return err
			}
			writeJSONString(b, redactedText)
			return nil
		}
		closing := byte('}')
		if t == '[' {
			closing = ']'
		}
		b.WriteByte(byte(t))
		for n := 0; dec.More(); n++ {
			if n > 0 {
				b.WriteByte(',')
			}
			childSecret := false
			if t == '{' {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := kt.(string)
				writeJSONString(b, key)
				b.WriteByte(':')
				childSecret = secretKey.MatchString(key)
			}
			if err := redactValue(dec, b, childSecret); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
		b.WriteByte(closing)
		return nil
	case string:
		switch {
		case secret && t != "":
			writeJSONString(b, redactedText)
		case strings.Contains(t, "://"):
			writeJSONString(b, redactURL(t))
		default:
			writeJSONString(b, t)
		}
		return nil
	case nil:
		b.WriteString("null")
		return nil
	default:
		if secret {
			writeJSONString(b, redactedText)
			return nil
		}
		enc, err := marshal(t)
		if err != nil {
			return err
		}
		b.Write(enc)
		return nil
	}
}

// skipRest consumes the rest of an object or list whose opening token was read.
func skipRest(dec *json.Decoder) error {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}
