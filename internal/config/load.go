package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// Options are the inputs of Load besides the file.
type Options struct {
	// Env is the environment in os.Environ form. EMSFLOW_SERVER_*, EMSFLOW_JOURNAL_*,
	// EMSFLOW_LOG_*, EMSFLOW_DISPATCH_*, EMSFLOW_EMS_* and EMSFLOW_PLUGINS_* entries override
	// the file; an unknown name under those prefixes is an error. Other EMSFLOW_ names are
	// left to the caller (EMSFLOW_CONFIG, for example).
	Env []string
	// KnownKinds are the plugin types that can be built (the registry's Kinds). A plugin of
	// another type is an error listing these. Nil skips the check.
	KnownKinds []string
}

// EnvPrefix starts every environment variable that overrides configuration.
const EnvPrefix = "EMSFLOW_"

// Load reads the configuration file at path (the defaults when path is ""), applies the
// environment overrides in opts.Env, resolves relative paths against the file's folder and
// validates the result. All problems are returned at once, joined, each naming where it is:
// a setting ("plugins.StreamRecorder.plugin_switch"), an INI line, or an environment variable.
// No error message contains a secret's value.
func Load(path string, opts Options) (*Config, error) {
	cfg := Default()
	doc := &document{settings: map[string][]kv{}}
	var problems []error
	if path == "" {
		wd, err := filepath.Abs(".")
		if err != nil {
			return nil, fmt.Errorf("find working directory: %w", err)
		}
		cfg.Dir = wd
	} else {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("resolve config path: %w", err)
		}
		src, err := os.ReadFile(abs)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		cfg.File, cfg.Dir = abs, filepath.Dir(abs)
		if isJSONForm(src) {
			doc, problems = parseJSONForm(src)
		} else {
			doc, problems = parseINIForm(src)
		}
		if doc == nil { // a syntax error: nothing more can be read
			return nil, fmt.Errorf("config %s: %w", abs, errors.Join(problems...))
		}
	}
	// Shape problems do not stop the load: the rest is still applied and validated, so every
	// problem is reported at once.
	problems = append(problems, apply(cfg, doc, opts.Env)...)
	if d := cfg.Journal.DataDir; d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join(cfg.Dir, d)
		}
		cfg.Journal.DataDir = filepath.Clean(d)
	}
	if err := cfg.Validate(); err != nil {
		problems = append(problems, unjoin(err)...)
	}
	if opts.KnownKinds != nil {
		if err := cfg.CheckKinds(opts.KnownKinds); err != nil {
			problems = append(problems, unjoin(err)...)
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return cfg, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// setting is one typed service setting: section.key in the file, EMSFLOW_SECTION_KEY in the
// environment.
type setting struct {
	section, key string
	set          func(c *Config, v any) error
}

func (s setting) path() string { return s.section + "." + s.key }
func (s setting) env() string  { return EnvPrefix + strings.ToUpper(s.section+"_"+s.key) }

// settings lists every fixed service setting. Its order is the order problems are reported in.
var settings = []setting{
	{"server", "listen", setString(func(c *Config) *string { return &c.Server.Listen })},
	{"server", "paths", setStrings(func(c *Config) *[]string { return &c.Server.Paths })},
	{"server", "auth_token", setSecret(func(c *Config) *Secret { return &c.Server.AuthToken })},
	{"server", "max_body_bytes", setInt64(func(c *Config) *int64 { return &c.Server.MaxBodyBytes })},
	{"server", "read_header_timeout", setDuration(func(c *Config) *time.Duration { return &c.Server.ReadHeaderTimeout })},
	{"server", "read_timeout", setDuration(func(c *Config) *time.Duration { return &c.Server.ReadTimeout })},
	{"server", "write_timeout", setDuration(func(c *Config) *time.Duration { return &c.Server.WriteTimeout })},
	{"server", "idle_timeout", setDuration(func(c *Config) *time.Duration { return &c.Server.IdleTimeout })},
	{"server", "shutdown_timeout", setDuration(func(c *Config) *time.Duration { return &c.Server.ShutdownTimeout })},
	{"journal", "data_dir", setString(func(c *Config) *string { return &c.Journal.DataDir })},
	{"journal", "url", setSecretURL(func(c *Config) *SecretURL { return &c.Journal.URL })},
	{"journal", "stream", setString(func(c *Config) *string { return &c.Journal.Stream })},
	{"journal", "max_age", setDuration(func(c *Config) *time.Duration { return &c.Journal.MaxAge })},
	{"journal", "max_bytes", setInt64(func(c *Config) *int64 { return &c.Journal.MaxBytes })},
	{"journal", "dedupe_window", setDuration(func(c *Config) *time.Duration { return &c.Journal.DedupeWindow })},
	{"journal", "replicas", setInt(func(c *Config) *int { return &c.Journal.Replicas })},
	{"log", "level", setString(func(c *Config) *string { return &c.Log.Level })},
	{"log", "format", setString(func(c *Config) *string { return &c.Log.Format })},
	{"dispatch", "timeout", setDuration(func(c *Config) *time.Duration { return &c.Dispatch.Timeout })},
	{"dispatch", "initial_backoff", setDuration(func(c *Config) *time.Duration { return &c.Dispatch.InitialBackoff })},
	{"dispatch", "max_backoff", setDuration(func(c *Config) *time.Duration { return &c.Dispatch.MaxBackoff })},
	{"dispatch", "give_up_after", setDuration(func(c *Config) *time.Duration { return &c.Dispatch.GiveUpAfter })},
	{"dispatch", "concurrency", setInt(func(c *Config) *int { return &c.Dispatch.Concurrency })},
	{"dispatch", "max_deliver", setInt(func(c *Config) *int { return &c.Dispatch.MaxDeliver })},
}

func sectionKeys(section string) []string {
	var ks []string
	for _, s := range settings {
		if s.section == section {
			ks = append(ks, s.key)
		}
	}
	return ks
}

// emsKeys and pluginKeys are the keys of one EMS and of one plugin entry.
var (
	emsKeys    = []string{"api_url", "addresses", "custom_data", "rtmp_url"}
	pluginKeys = []string{"plugin_switch", "parameters", "type", "concurrency", "timeout"}
)

// apply lays the file's settings and then the environment's over the defaults in c.
//
// The fixed service settings go through a viper instance, file as its config layer and the
// environment as its override layer; named sections (EMS servers, plugins) do not, because
// viper lowercases keys and their names and parameters keep their case.
func apply(c *Config, doc *document, env []string) []error {
	var errs []error
	v := viper.New()
	fileLayer := map[string]any{}
	where := map[string]string{} // setting path -> where its effective value came from
	for _, section := range serviceSections {
		kvs := doc.settings[section]
		known := sectionKeys(section)
		m := map[string]any{}
		for _, e := range kvs {
			loc := locate(section+"."+e.Key, e.Line)
			if !slices.Contains(known, e.Key) {
				errs = append(errs, fmt.Errorf("%s: unknown setting (known in %s: %s)", loc, section, strings.Join(known, ", ")))
				continue
			}
			if e.Value == nil {
				continue // null keeps the default
			}
			m[e.Key] = e.Value
			where[section+"."+e.Key] = loc
		}
		if len(m) > 0 {
			fileLayer[section] = m
		}
	}
	if err := v.MergeConfigMap(fileLayer); err != nil {
		errs = append(errs, fmt.Errorf("merge settings: %w", err))
	}

	envVars := parseEnv(env)
	byEnv := map[string]setting{}
	for _, s := range settings {
		byEnv[s.env()] = s
	}
	var emsEnv, pluginEnv []envVar
	for _, e := range envVars {
		switch {
		case strings.HasPrefix(e.name, EnvPrefix+"EMS_"):
			emsEnv = append(emsEnv, e)
		case strings.HasPrefix(e.name, EnvPrefix+"PLUGINS_"):
			pluginEnv = append(pluginEnv, e)
		default:
			s, ok := byEnv[e.name]
			if !ok {
				for _, section := range serviceSections {
					if strings.HasPrefix(e.name, EnvPrefix+strings.ToUpper(section)+"_") {
						errs = append(errs, fmt.Errorf("%s: unknown variable (known: %s)", e.name, strings.Join(envNames(section), ", ")))
					}
				}
				continue
			}
			v.Set(s.path(), e.value)
			where[s.path()] = e.name
		}
	}
	for _, s := range settings {
		if !v.IsSet(s.path()) {
			continue
		}
		if err := s.set(c, v.Get(s.path())); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where[s.path()], err))
		}
	}

	if doc.hasEMS {
		c.EMS = map[string]EMS{}
		for _, sec := range doc.ems {
			loc := locate("ems."+sec.Name, sec.Line)
			if _, dup := c.EMS[sec.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: defined twice", loc))
				continue
			}
			var e EMS
			for _, f := range sec.Fields {
				errs = append(errs, setEMSField(&e, f.Key, f.Value, locate("ems."+sec.Name+"."+f.Key, f.Line))...)
			}
			c.EMS[sec.Name] = e
		}
	}
	errs = append(errs, applyEMSEnv(c, emsEnv)...)

	if doc.hasPlugins {
		c.Plugins = nil
		for _, sec := range doc.plugins {
			p, e := readPlugin(sec)
			errs = append(errs, e...)
			c.Plugins = append(c.Plugins, p)
		}
	}
	errs = append(errs, applyPluginEnv(c, pluginEnv)...)
	return errs
}

// locate names a setting, with its INI line when there is one.
func locate(path string, line int) string {
	if line > 0 {
		return fmt.Sprintf("%s (line %d)", path, line)
	}
	return path
}

func envNames(section string) []string {
	var ns []string
	for _, s := range settings {
		if s.section == section {
			ns = append(ns, s.env())
		}
	}
	return ns
}

type envVar struct{ name, value string }

// parseEnv returns the EMSFLOW_ entries of env; a later entry for a name wins, as in a shell.
func parseEnv(env []string) []envVar {
	var out []envVar
	idx := map[string]int{}
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if i, dup := idx[name]; dup {
			out[i].value = value
			continue
		}
		idx[name] = len(out)
		out = append(out, envVar{name, value})
	}
	return out
}

// envName is how a configured name appears in a variable name: upper case, "-" as "_".
func envName(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEMSEnv applies EMSFLOW_EMS_<NAME>_API_URL, _ADDRESSES, _CUSTOM_DATA and _RTMP_URL. NAME
// matches a configured EMS case-insensitively ("-" written "_"); an unmatched NAME adds an EMS
// named in lower case.
func applyEMSEnv(c *Config, vars []envVar) []error {
	var errs []error
	for _, e := range vars {
		rest := strings.TrimPrefix(e.name, EnvPrefix+"EMS_")
		var key, name string
		for _, k := range emsKeys {
			if n, ok := strings.CutSuffix(rest, "_"+strings.ToUpper(k)); ok && n != "" {
				key, name = k, n
				break
			}
		}
		if key == "" {
			errs = append(errs, fmt.Errorf("%s: unknown variable (known: EMSFLOW_EMS_<NAME>_API_URL, EMSFLOW_EMS_<NAME>_ADDRESSES, EMSFLOW_EMS_<NAME>_CUSTOM_DATA, EMSFLOW_EMS_<NAME>_RTMP_URL)", e.name))
			continue
		}
		target := strings.ToLower(name)
		for _, n := range c.EMSNames() {
			if envName(n) == name {
				target = n
				break
			}
		}
		ems := c.EMS[target]
		errs = append(errs, setEMSField(&ems, key, e.value, e.name)...)
		c.EMS[target] = ems
	}
	return errs
}

func setEMSField(e *EMS, key string, v any, loc string) []error {
	var err error
	switch key {
	case "api_url":
		var s string
		if s, err = toString(v); err == nil {
			e.APIURL = SecretURL(strings.TrimSpace(s))
		} else {
			err = errors.New("must be a string")
		}
	case "addresses":
		e.Addresses, err = toStrings(v)
	case "custom_data":
		e.CustomData, err = toString(v)
	case "rtmp_url":
		var s string
		if s, err = toString(v); err == nil {
			e.RTMPURL = SecretURL(strings.TrimSpace(s))
		} else {
			err = errors.New("must be a string")
		}
	default:
		err = fmt.Errorf("unknown setting (known: %s)", strings.Join(emsKeys, ", "))
	}
	if err != nil {
		return []error{fmt.Errorf("%s: %w", loc, err)}
	}
	return nil
}

// readPlugin builds one plugin from its entry: plugin_switch is required and is enabled or
// disabled in any case; parameters must be an object.
func readPlugin(sec namedSection) (Plugin, []error) {
	p := Plugin{Name: sec.Name, Type: sec.Name, Params: json.RawMessage("{}")}
	var errs []error
	hasSwitch := false
	for _, f := range sec.Fields {
		loc := locate("plugins."+sec.Name+"."+f.Key, f.Line)
		var err error
		switch f.Key {
		case "plugin_switch":
			hasSwitch = true
			p.Enabled, err = parseSwitch(f.Value)
		case "parameters":
			p.Params, err = paramsObject(f.Value)
		case "type":
			var s string
			if s, err = toString(f.Value); err == nil {
				if s = strings.TrimSpace(s); s == "" {
					err = errors.New("must not be empty")
				} else {
					p.Type = s
				}
			}
		case "concurrency":
			p.Concurrency, err = toInt(f.Value)
		case "timeout":
			p.Timeout, err = toDuration(f.Value)
		default:
			err = fmt.Errorf("unknown setting (known: %s)", strings.Join(pluginKeys, ", "))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", loc, err))
		}
	}
	if !hasSwitch {
		errs = append(errs, fmt.Errorf("%s: missing (enabled or disabled)", locate("plugins."+sec.Name+".plugin_switch", sec.Line)))
	}
	return p, errs
}

func parseSwitch(v any) (bool, error) {
	s, ok := v.(string)
	if !ok {
		return false, fmt.Errorf("%s is not enabled or disabled", describe(v))
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "enabled":
		return true, nil
	case "disabled":
		return false, nil
	}
	return false, fmt.Errorf("%q is not enabled or disabled", s)
}

func paramsObject(v any) (json.RawMessage, error) {
	raw, ok := v.(json.RawMessage)
	if !ok {
		return nil, errNotObject
	}
	raw = bytes.TrimSpace(raw)
	if bytes.Equal(raw, []byte("null")) {
		return json.RawMessage("{}"), nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errNotObject
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, fmt.Errorf("compact parameters: %w", err)
	}
	return b.Bytes(), nil
}

// applyPluginEnv applies EMSFLOW_PLUGINS_<NAME>_PLUGIN_SWITCH, _CONCURRENCY and _TIMEOUT to the
// configured plugin whose name matches NAME case-insensitively ("-" written "_").
func applyPluginEnv(c *Config, vars []envVar) []error {
	var errs []error
	suffixes := []string{"plugin_switch", "concurrency", "timeout"}
	for _, e := range vars {
		rest := strings.TrimPrefix(e.name, EnvPrefix+"PLUGINS_")
		var key, name string
		for _, k := range suffixes {
			if n, ok := strings.CutSuffix(rest, "_"+strings.ToUpper(k)); ok && n != "" {
				key, name = k, n
				break
			}
		}
		if key == "" {
			errs = append(errs, fmt.Errorf("%s: unknown variable (known: EMSFLOW_PLUGINS_<NAME>_PLUGIN_SWITCH, EMSFLOW_PLUGINS_<NAME>_CONCURRENCY, EMSFLOW_PLUGINS_<NAME>_TIMEOUT)", e.name))
			continue
		}
		i := slices.IndexFunc(c.Plugins, func(p Plugin) bool { return envName(p.Name) == name })
		if i < 0 {
			names := make([]string, len(c.Plugins))
			for j, p := range c.Plugins {
				names[j] = p.Name
			}
			errs = append(errs, fmt.Errorf("%s: no plugin %s is configured (configured: %s)", e.name, name, strings.Join(names, ", ")))
			continue
		}
		p := &c.Plugins[i]
		var err error
		switch key {
		case "plugin_switch":
			p.Enabled, err = parseSwitch(e.value)
		case "concurrency":
			p.Concurrency, err = toInt(e.value)
		case "timeout":
			p.Timeout, err = toDuration(e.value)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.name, err))
		}
	}
	return errs
}

// Typed setters. Values come as JSON (string, json.Number, bool, []any) or, from the INI form
// and the environment, as strings.

func setString(field func(*Config) *string) func(*Config, any) error {
	return func(c *Config, v any) error {
		s, err := toString(v)
		if err != nil {
			return err
		}
		*field(c) = strings.TrimSpace(s)
		return nil
	}
}

func setSecret(field func(*Config) *Secret) func(*Config, any) error {
	return func(c *Config, v any) error {
		s, ok := v.(string)
		if !ok {
			return errors.New("must be a string") // never echo a secret
		}
		*field(c) = Secret(s)
		return nil
	}
}

func setSecretURL(field func(*Config) *SecretURL) func(*Config, any) error {
	return func(c *Config, v any) error {
		s, ok := v.(string)
		if !ok {
			return errors.New("must be a string")
		}
		*field(c) = SecretURL(strings.TrimSpace(s))
		return nil
	}
}

func setStrings(field func(*Config) *[]string) func(*Config, any) error {
	return func(c *Config, v any) error {
		ss, err := toStrings(v)
		if err != nil {
			return err
		}
		*field(c) = ss
		return nil
	}
}

func setInt64(field func(*Config) *int64) func(*Config, any) error {
	return func(c *Config, v any) error {
		n, err := toInt64(v)
		if err != nil {
			return err
		}
		*field(c) = n
		return nil
	}
}

func setInt(field func(*Config) *int) func(*Config, any) error {
	return func(c *Config, v any) error {
		n, err := toInt(v)
		if err != nil {
			return err
		}
		*field(c) = n
		return nil
	}
}

func setDuration(field func(*Config) *time.Duration) func(*Config, any) error {
	return func(c *Config, v any) error {
		d, err := toDuration(v)
		if err != nil {
			return err
		}
		*field(c) = d
		return nil
	}
}

func toString(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("%s is not a string", describe(v))
}

// toStrings accepts a list of strings, or one string holding a comma-separated list (the form
// environment variables and plain INI values take).
func toStrings(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		var out []string
		for part := range strings.SplitSeq(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
		return out, nil
	case []any:
		out := make([]string, 0, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("item %d: %s is not a string", i, describe(e))
			}
			out = append(out, strings.TrimSpace(s))
		}
		return out, nil
	case []string:
		return v, nil
	}
	return nil, fmt.Errorf("%s is not a list of strings", describe(v))
}

func toInt64(v any) (int64, error) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	default:
		return 0, fmt.Errorf("%s is not an integer", describe(v))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return n, nil
}

func toInt(v any) (int, error) {
	n, err := toInt64(v)
	if err != nil {
		return 0, err
	}
	if int64(int(n)) != n {
		return 0, fmt.Errorf("%d is out of range", n)
	}
	return int(n), nil
}

// toDuration accepts a Go duration ("30s", "5m", "1h30m") or a number of seconds, as a JSON
// number or a string.
func toDuration(v any) (time.Duration, error) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	default:
		return 0, fmt.Errorf("%s is not a duration (use \"30s\", \"5m\" or a number of seconds)", describe(v))
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use \"30s\", \"5m\" or a number of seconds)", s)
	}
	return d, nil
}

// describe names a JSON value's kind for messages, without its content.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}
