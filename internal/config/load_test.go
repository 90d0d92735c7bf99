package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/eventlog"
)

// seedKinds are the plugin types config.ini.example shows.
var seedKinds = []string{
	"EventLog", "StreamAutoRouter", "StreamRecorder", "StreamLoadBalancer", "TranscodeResetter",
	"AmazonHLSUpload", "AmazonHDSUpload", "AmazonDASHUpload", "RecordUpload", "Rules", "EventSinks",
}

func load(t *testing.T, path string, env ...string) *Config {
	t.Helper()
	cfg, err := Load(path, Options{Env: env, KnownKinds: seedKinds})
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return cfg
}

// writeConfig writes a configuration file into a fresh folder and returns its path.
func writeConfig(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadErr(t *testing.T, path string, env ...string) string {
	t.Helper()
	_, err := Load(path, Options{Env: env, KnownKinds: seedKinds})
	if err == nil {
		t.Fatalf("Load(%s) succeeded, want an error", path)
	}
	return err.Error()
}

func pluginByName(t *testing.T, cfg *Config, name string) Plugin {
	t.Helper()
	for _, p := range cfg.Plugins {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no plugin %s in %v", name, pluginNames(cfg))
	return Plugin{}
}

func pluginNames(cfg *Config) []string {
	var ns []string
	for _, p := range cfg.Plugins {
		ns = append(ns, p.Name)
	}
	return ns
}

func TestGuideExamplesLoadAsPrinted(t *testing.T) {
	cfg := load(t, "testdata/guide.json")
	want := []struct {
		name, params string
	}{
		{"StreamAutoRouter", `{"token":"stream","destination_uri":"192.168.2.3"}`},
		{"StreamRecorder", `{"file_location":"/var/media","period_time":3600}`},
		{"StreamLoadBalancer", `{"destination_uri":["192.168.2.3","192.168.2.4","192.168.2.5"]}`},
		{"AmazonHLSUpload", `{"aws_access_key":"1234567890","aws_secret_key":"ABCDEFGHIJ1234567890","default_bucket":"HLS_files"}`},
	}
	if len(cfg.Plugins) != len(want) {
		t.Fatalf("got plugins %v, want %d", pluginNames(cfg), len(want))
	}
	for i, w := range want {
		p := cfg.Plugins[i]
		if p.Name != w.name || p.Type != w.name || !p.Enabled {
			t.Errorf("plugin %d: got %s type %s enabled %v, want %s enabled", i, p.Name, p.Type, p.Enabled, w.name)
		}
		if string(p.Params) != w.params {
			t.Errorf("%s params: got %s, want %s", w.name, p.Params, w.params)
		}
	}
	// Settings the file does not give keep their defaults.
	if cfg.Server.Listen != ":4000" || cfg.DefaultEMS() != "default" || cfg.EMS["default"].APIURL != "http://127.0.0.1:7777" {
		t.Errorf("defaults not kept: listen %q, ems %v", cfg.Server.Listen, cfg.EMS)
	}
}

func TestNodePluginsJSONLoads(t *testing.T) {
	cfg := load(t, "testdata/plugins.json")
	if got, want := pluginNames(cfg), []string{"StreamRecorder", "StreamLoadBalancer", "StreamAutoRouter", "AmazonDASHUpload"}; !slices.Equal(got, want) {
		t.Fatalf("plugins: got %v, want %v", got, want)
	}
	enabled := map[string]bool{"StreamRecorder": false, "StreamLoadBalancer": true, "StreamAutoRouter": false, "AmazonDASHUpload": true}
	for _, p := range cfg.Plugins {
		if p.Enabled != enabled[p.Name] {
			t.Errorf("%s enabled: got %v, want %v", p.Name, p.Enabled, enabled[p.Name])
		}
	}
	var rec struct {
		FileLocation string `json:"file_location"`
	}
	if err := json.Unmarshal(pluginByName(t, cfg, "StreamRecorder").Params, &rec); err != nil {
		t.Fatal(err)
	}
	if want := `F:\EVOSTREAMMS\evostreamms\media`; rec.FileLocation != want {
		t.Errorf("file_location: got %q, want %q", rec.FileLocation, want)
	}
	// The balancer's nested objects keep their key case (pseudoDomain, ewsPort).
	if lb := string(pluginByName(t, cfg, "StreamLoadBalancer").Params); !strings.Contains(lb, `"pseudoDomain":"apiproxy","address":"192.168.2.193","ewsPort":8888`) {
		t.Errorf("balancer params lost their shape: %s", lb)
	}
}

func TestCommentStrippingKeepsStrings(t *testing.T) {
	cfg := load(t, "testdata/plugins.json")
	var router struct {
		DestinationURI string `json:"destination_uri"`
	}
	if err := json.Unmarshal(pluginByName(t, cfg, "StreamAutoRouter").Params, &router); err != nil {
		t.Fatal(err)
	}
	if want := "rtmp://edge.example.com/live"; router.DestinationURI != want {
		t.Errorf("destination_uri: got %q, want %q", router.DestinationURI, want)
	}
	var dash struct {
		Secret string `json:"aws_secret_key"`
	}
	if err := json.Unmarshal(pluginByName(t, cfg, "AmazonDASHUpload").Params, &dash); err != nil {
		t.Fatal(err)
	}
	if want := "dash/secret+Example//Key/*not-a-comment*/"; dash.Secret != want {
		t.Errorf("aws_secret_key changed by comment stripping")
	}
}

func TestSanitizeJSON(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"url in string", `{"u": "http://x/y"}`, `{"u":"http://x/y"}`},
		{"line comment", "{\"a\": 1 // one\n}", `{"a":1}`},
		{"block comment", `{/* a "quoted" */"a": /* x */ 1}`, `{"a":1}`},
		{"comment markers in string", `{"a": "/* not */ // not"}`, `{"a":"/* not */ // not"}`},
		{"escaped quote then comment marker", `{"a": "x\"//y", "b": "\\"}`, `{"a":"x\"//y","b":"\\"}`},
		{"trailing commas", `{"a": [1, 2,], "b": {"c": 3,},}`, `{"a":[1,2],"b":{"c":3}}`},
		{"trailing comma before comment", "{\"a\": 1, // last\n}", `{"a":1}`},
		{"trailing comma before block comment", `{"a": [1, /* two */ ], }`, `{"a":[1]}`},
		{"comma inside string", `{"a": ",}", "b": ",]"}`, `{"a":",}","b":",]"}`},
		{"comment after string with slashes", `{"a": "//"} // c`, `{"a":"//"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := sanitizeJSON([]byte(tt.in))
			if err != nil {
				t.Fatalf("sanitize: %v", err)
			}
			if len(out) != len(tt.in) {
				t.Errorf("length changed from %d to %d: positions would be wrong", len(tt.in), len(out))
			}
			var got, want any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("result is not JSON: %v: %s", err, out)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
	if _, err := sanitizeJSON([]byte("{\n\"a\": 1 /* open\n}")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("unclosed comment: got %v, want an error at line 2", err)
	}
}

func TestFormDetection(t *testing.T) {
	tests := []struct {
		in   string
		json bool
	}{
		{`{"plugins": {}}`, true},
		{"// c\n/* d */\n  {", true},
		{"; c\n# d\n{", true},
		{"[Plugins]\nA = enabled\n", false},
		{"; only a comment\n", false},
		{"", false},
		{"\xef\xbb\xbf{}", true},
	}
	for _, tt := range tests {
		if got := isJSONForm([]byte(tt.in)); got != tt.json {
			t.Errorf("isJSONForm(%q): got %v, want %v", tt.in, got, tt.json)
		}
	}
}

// Parameter structs as the plugins would decode them.
type (
	routerParams struct {
		Token          string `json:"token"`
		DestinationURI string `json:"destination_uri"`
	}
	recorderParams struct {
		FileLocation string           `json:"file_location"`
		PeriodTime   plugins.Duration `json:"period_time"`
	}
	balancerParams struct {
		DestinationURI []string `json:"destination_uri"`
	}
	s3Params struct {
		AccessKey string `json:"aws_access_key"`
		SecretKey string `json:"aws_secret_key"`
		Bucket    string `json:"default_bucket"`
	}
	eventLogParams struct {
		Path string `json:"path"`
	}
)

func decodePluginParams(t *testing.T, p Plugin) any {
	t.Helper()
	var dst any
	switch p.Type {
	case "StreamAutoRouter":
		dst = &routerParams{}
	case "StreamRecorder":
		dst = &recorderParams{}
	case "StreamLoadBalancer":
		dst = &balancerParams{}
	case "AmazonHLSUpload":
		dst = &s3Params{}
	case "EventLog":
		dst = &eventLogParams{}
	default:
		t.Fatalf("no params struct for %s", p.Type)
	}
	if err := plugins.DecodeParams(p.Params, dst); err != nil {
		t.Fatalf("%s params: %v", p.Name, err)
	}
	return dst
}

func TestINIFormEqualsJSONForm(t *testing.T) {
	ini := load(t, "testdata/php.ini")
	js := load(t, "testdata/php-equivalent.json")

	// Plugin parameters differ in representation (the INI form has only strings), so they are
	// compared as the plugins decode them; everything else must be identical.
	if len(ini.Plugins) != len(js.Plugins) {
		t.Fatalf("plugins: ini %v, json %v", pluginNames(ini), pluginNames(js))
	}
	for i := range ini.Plugins {
		a, b := decodePluginParams(t, ini.Plugins[i]), decodePluginParams(t, js.Plugins[i])
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s params: ini %+v, json %+v", ini.Plugins[i].Name, a, b)
		}
		ini.Plugins[i].Params, js.Plugins[i].Params = nil, nil
	}
	if ini.File == js.File {
		t.Fatalf("File: both %s", ini.File)
	}
	ini.File, js.File = "", ""
	if !reflect.DeepEqual(ini, js) {
		t.Errorf("INI and JSON forms differ:\nini  %+v\njson %+v", ini, js)
	}

	// And both are what the files say.
	dir, _ := filepath.Abs("testdata")
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", ini.Server.Listen, "127.0.0.1:4010"},
		{"paths", ini.Server.Paths, []string{"/evowebservices", "/hooks/ems"}},
		{"max_body_bytes", ini.Server.MaxBodyBytes, int64(2 << 20)},
		{"shutdown_timeout (plain seconds)", ini.Server.ShutdownTimeout, 45 * time.Second},
		{"data_dir (relative to the file)", ini.Journal.DataDir, filepath.Join(dir, "state")},
		{"dedupe_window", ini.Journal.DedupeWindow, 90 * time.Second},
		{"dir", ini.Dir, dir},
		{"ems names", ini.EMSNames(), []string{"default", "edge-2"}},
		{"ems addresses", ini.EMS["default"].Addresses, []string{"10.0.0.5", "10.0.1.0/24"}},
		{"apiProxy url", ini.EMS["edge-2"].APIURL.Reveal(), "http://ewsuser:ews-proxy-pw@10.0.2.7:8888/apiproxy"},
		{"custom_data", ini.EMS["edge-2"].CustomData, "edge-2"},
		{"rtmp_url", ini.EMS["edge-2"].RTMPURL.Reveal(), "rtmp://pull:rtmp-pull-pw@edge-2.example.net:1935/live"},
		{"no rtmp_url", ini.EMS["default"].RTMPURL.Reveal(), ""},
		{"rtmp urls for plugins", ini.RTMPURLs(), map[string]string{"edge-2": "rtmp://pull:rtmp-pull-pw@edge-2.example.net:1935/live"}},
		{"log", ini.Log, Log{Level: "debug", Format: "console"}},
		{"dispatch concurrency", ini.Dispatch.Concurrency, 8},
		{"plugin order", pluginNames(ini), []string{"StreamLoadBalancer", "StreamAutoRouter", "StreamRecorder", "AmazonHLSUpload", "EdgeRouter", "EventLog"}},
		{"edge router type", pluginByName(t, ini, "EdgeRouter").Type, "StreamAutoRouter"},
		{"edge router timeout", pluginByName(t, ini, "EdgeRouter").Timeout, time.Minute},
		{"hls concurrency", pluginByName(t, ini, "AmazonHLSUpload").Concurrency, 2},
		{"recorder disabled", pluginByName(t, ini, "StreamRecorder").Enabled, false},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}

	// The INI form's parameters are JSON strings in file order, the PHP quirks handled:
	// unquoted backslashes, "60;" (a comment), quoted ";" and \" kept.
	ini = load(t, "testdata/php.ini")
	for name, want := range map[string]string{
		"StreamRecorder":     `{"file_location":"C:\\xampp\\htdocs\\evowebservices\\media\\","period_time":"60"}`,
		"StreamLoadBalancer": `{"destination_uri":["192.168.2.39","192.168.2.38","192.168.2.58"]}`,
		"AmazonHLSUpload":    `{"aws_access_key":"AKIAEXAMPLEHLSKEY001","aws_secret_key":"hls\"secret;Example/Key","default_bucket":"ems-files"}`,
		"EventLog":           `{}`,
	} {
		if got := string(pluginByName(t, ini, name).Params); got != want {
			t.Errorf("%s INI params: got %s, want %s", name, got, want)
		}
	}
}

func TestEnvOverridesFile(t *testing.T) {
	tests := []struct {
		env   string
		check func(c *Config) (got, want any)
	}{
		{"EMSFLOW_SERVER_LISTEN=:5000", func(c *Config) (any, any) { return c.Server.Listen, ":5000" }},
		{"EMSFLOW_SERVER_PATHS=/a, /b/", func(c *Config) (any, any) { return c.Server.Paths, []string{"/a", "/b/"} }},
		{"EMSFLOW_SERVER_AUTH_TOKEN=tok", func(c *Config) (any, any) { return c.Server.AuthToken.Reveal(), "tok" }},
		{"EMSFLOW_SERVER_MAX_BODY_BYTES=4096", func(c *Config) (any, any) { return c.Server.MaxBodyBytes, int64(4096) }},
		{"EMSFLOW_SERVER_SHUTDOWN_TIMEOUT=5", func(c *Config) (any, any) { return c.Server.ShutdownTimeout, 5 * time.Second }},
		{"EMSFLOW_JOURNAL_DATA_DIR=/var/lib/emsflow", func(c *Config) (any, any) { return c.Journal.DataDir, "/var/lib/emsflow" }},
		{"EMSFLOW_JOURNAL_URL=nats://127.0.0.1:4222", func(c *Config) (any, any) { return c.Journal.URL.Reveal(), "nats://127.0.0.1:4222" }},
		{"EMSFLOW_JOURNAL_MAX_AGE=1h", func(c *Config) (any, any) { return c.Journal.MaxAge, time.Hour }},
		{"EMSFLOW_LOG_LEVEL=warn", func(c *Config) (any, any) { return c.Log.Level, "warn" }},
		{"EMSFLOW_LOG_FORMAT=json", func(c *Config) (any, any) { return c.Log.Format, "json" }},
		{"EMSFLOW_DISPATCH_MAX_BACKOFF=1h", func(c *Config) (any, any) { return c.Dispatch.MaxBackoff, time.Hour }},
		{"EMSFLOW_DISPATCH_CONCURRENCY=1", func(c *Config) (any, any) { return c.Dispatch.Concurrency, 1 }},
		{"EMSFLOW_DISPATCH_GIVE_UP_AFTER=48h", func(c *Config) (any, any) { return c.Dispatch.GiveUpAfter, 48 * time.Hour }},
		{"EMSFLOW_EMS_EDGE_2_API_URL=http://10.0.2.8:7777", func(c *Config) (any, any) { return c.EMS["edge-2"].APIURL.Reveal(), "http://10.0.2.8:7777" }},
		{"EMSFLOW_EMS_DEFAULT_RTMP_URL=rtmp://10.0.0.5:1935/live", func(c *Config) (any, any) { return c.EMS["default"].RTMPURL.Reveal(), "rtmp://10.0.0.5:1935/live" }},
		{"EMSFLOW_EMS_DEFAULT_ADDRESSES=10.9.9.9", func(c *Config) (any, any) { return c.EMS["default"].Addresses, []string{"10.9.9.9"} }},
		{"EMSFLOW_EMS_ORIGIN_API_URL=http://10.0.3.1:7777", func(c *Config) (any, any) { return c.EMS["origin"].APIURL.Reveal(), "http://10.0.3.1:7777" }},
		{"EMSFLOW_PLUGINS_STREAMRECORDER_PLUGIN_SWITCH=enabled", func(c *Config) (any, any) { return pluginByName(t, c, "StreamRecorder").Enabled, true }},
		{"EMSFLOW_PLUGINS_EVENTLOG_PLUGIN_SWITCH=DISABLED", func(c *Config) (any, any) { return pluginByName(t, c, "EventLog").Enabled, false }},
		{"EMSFLOW_PLUGINS_EDGEROUTER_TIMEOUT=2m", func(c *Config) (any, any) { return pluginByName(t, c, "EdgeRouter").Timeout, 2 * time.Minute }},
		{"EMSFLOW_CONFIG=/somewhere/else.ini", func(c *Config) (any, any) { return c.Server.Listen, "127.0.0.1:4010" }},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			cfg := load(t, "testdata/php.ini", "PATH=/usr/bin", tt.env)
			if got, want := tt.check(cfg); !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
		})
	}
	// The last entry for a name wins, as in a shell.
	cfg := load(t, "testdata/php.ini", "EMSFLOW_LOG_LEVEL=error", "EMSFLOW_LOG_LEVEL=trace")
	if cfg.Log.Level != "trace" {
		t.Errorf("repeated variable: got %q, want trace", cfg.Log.Level)
	}
}

func TestBadEnvValuesNameTheVariable(t *testing.T) {
	msg := loadErr(t, "testdata/php.ini",
		"EMSFLOW_SERVER_MAX_BODY_BYTES=lots",
		"EMSFLOW_DISPATCH_TIMEOUT=soon",
		"EMSFLOW_SERVER_LISTN=:1",
		"EMSFLOW_PLUGINS_NOPE_PLUGIN_SWITCH=enabled",
		"EMSFLOW_PLUGINS_STREAMRECORDER_PLUGIN_SWITCH=on",
		"EMSFLOW_EMS_EDGE_2_API_URL=ftp://10.0.0.1",
		"EMSFLOW_EMS_DEFAULT_RTMP_URL=http://10.0.0.5:1935/live",
		"EMSFLOW_LOG_LEVEL=chatty",
	)
	for _, want := range []string{
		`EMSFLOW_SERVER_MAX_BODY_BYTES: "lots" is not an integer`,
		`EMSFLOW_DISPATCH_TIMEOUT: "soon" is not a duration`,
		`EMSFLOW_SERVER_LISTN: unknown variable (known: EMSFLOW_SERVER_LISTEN,`,
		`EMSFLOW_PLUGINS_NOPE_PLUGIN_SWITCH: no plugin NOPE is configured (configured: StreamLoadBalancer,`,
		`EMSFLOW_PLUGINS_STREAMRECORDER_PLUGIN_SWITCH: "on" is not enabled or disabled`,
		`ems.edge-2.api_url: scheme "ftp" is not http or https`,
		`ems.default.rtmp_url: scheme "http" is not rtmp or rtmps`,
		`log.level: "chatty" is not one of trace, debug, info, warn, error`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestEveryProblemListedAtOnce(t *testing.T) {
	_, err := Load("testdata/invalid.json", Options{KnownKinds: seedKinds})
	if err == nil {
		t.Fatal("invalid.json loaded")
	}
	want := []string{
		`server.listen: "localhost" is not host:port or :port`,
		`server.paths: "evowebservices" does not start with /`,
		`ems.default.api_url: scheme "ftp" is not http or https`,
		`log.level: "loud" is not one of`,
		`dispatch.initial_backoff: 10m0s is longer than dispatch.max_backoff 5m0s`,
		`plugins.StreamRecorder.plugin_switch: "on" is not enabled or disabled`,
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%s", w, err)
		}
	}
	if n := len(unjoin(err)); n != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", n, len(want), err)
	}
	if strings.Contains(err.Error(), "ems-url-pw-42") {
		t.Errorf("error shows the EMS URL's password:\n%s", err)
	}
}

func TestUnknownPluginListsKnownKinds(t *testing.T) {
	path := writeConfig(t, "config.ini", `{"plugins": {
		"StreamAutoRoutr": {"plugin_switch": "disabled"},
		"Second": {"type": "Nope", "plugin_switch": "enabled"},
		"Third": {"type": "StreamAutoRouter", "plugin_switch": "enabled"},
	}}`)
	msg := loadErr(t, path)
	known := "(known: " + strings.Join(slices.Sorted(slices.Values(seedKinds)), ", ") + ")"
	for _, want := range []string{
		`plugins.StreamAutoRoutr: unknown plugin "StreamAutoRoutr" ` + known,
		`plugins.Second.type: unknown plugin "Nope" ` + known,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "Third") {
		t.Errorf("a known type given by \"type\" was refused:\n%s", msg)
	}
}

// TestPHPTranscodeResetterLoads: the PHP web services' own config.ini lists TranscodeResetter
// (switched off, without a section); it loads in that form and switched on, with or without
// its section, with the section's parameters kept as strings.
func TestPHPTranscodeResetterLoads(t *testing.T) {
	tests := []struct {
		name, content string
		enabled       bool
		params        string
	}{
		{"the PHP config.ini's line", "[Plugins]\nStreamRecorder = disabled\nTranscodeResetter = disabled\n", false, "{}"},
		{"enabled with its section", "[Plugins]\nTranscodeResetter = enabled\n\n[TranscodeResetter]\n", true, "{}"},
		{"enabled with parameters", "[Plugins]\nTranscodeResetter = enabled\n\n[TranscodeResetter]\nvideo_feed_stopped = 1\n", true, `{"video_feed_stopped":"1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := load(t, writeConfig(t, "config.ini", tt.content))
			p := pluginByName(t, cfg, "TranscodeResetter")
			if p.Type != "TranscodeResetter" || p.Enabled != tt.enabled {
				t.Errorf("got type %q enabled %v, want TranscodeResetter enabled %v", p.Type, p.Enabled, tt.enabled)
			}
			if got := strings.Join(strings.Fields(string(p.Params)), ""); got != tt.params {
				t.Errorf("params %s, want %s", got, tt.params)
			}
		})
	}
}

func TestPluginSwitch(t *testing.T) {
	tests := []struct {
		value   string
		enabled bool
		err     string
	}{
		{`"enabled"`, true, ""},
		{`"disabled"`, false, ""},
		{`"Enabled"`, true, ""},
		{`" DISABLED "`, false, ""},
		{`"on"`, false, `plugins.EventLog.plugin_switch: "on" is not enabled or disabled`},
		{`"true"`, false, `"true" is not enabled or disabled`},
		{`""`, false, `"" is not enabled or disabled`},
		{`true`, false, `plugins.EventLog.plugin_switch: a boolean is not enabled or disabled`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			path := writeConfig(t, "config.ini", `{"plugins": {"EventLog": {"plugin_switch": `+tt.value+`}}}`)
			cfg, err := Load(path, Options{KnownKinds: seedKinds})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Plugins[0].Enabled != tt.enabled {
				t.Errorf("enabled: got %v, want %v", cfg.Plugins[0].Enabled, tt.enabled)
			}
		})
	}
	path := writeConfig(t, "config.ini", `{"plugins": {"EventLog": {"parameters": {}}}}`)
	if msg := loadErr(t, path); !strings.Contains(msg, "plugins.EventLog.plugin_switch: missing (enabled or disabled)") {
		t.Errorf("missing plugin_switch: got %s", msg)
	}
}

func TestDurationsAcceptBothForms(t *testing.T) {
	for _, v := range []string{`"45s"`, `45`, `"45"`, `45.0`} {
		path := writeConfig(t, "config.ini", `{"dispatch": {"timeout": `+v+`}, "plugins": {}}`)
		if got := load(t, path).Dispatch.Timeout; got != 45*time.Second {
			t.Errorf("timeout %s: got %s, want 45s", v, got)
		}
	}
}

func TestStrictDecode(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"unknown top-level key", `{"sever": {}}`, `"sever": unknown section (known: server, journal, ems, log, dispatch, plugins)`},
		{"empty data_dir", `{"journal": {"data_dir": ""}}`, `journal.data_dir: must not be empty`},
		{"unknown server key", `{"server": {"port": 4000}}`, `server.port: unknown setting (known in server: listen, paths, auth_token,`},
		{"unknown ems key", `{"ems": {"a": {"url": "http://x"}}}`, `ems.a.url: unknown setting (known: api_url, addresses, custom_data, rtmp_url)`},
		{"unknown plugin key", `{"plugins": {"EventLog": {"plugin_switch": "enabled", "params": {}}}}`, `plugins.EventLog.params: unknown setting (known: plugin_switch, parameters, type, concurrency, timeout)`},
		{"parameters not an object", `{"plugins": {"EventLog": {"plugin_switch": "enabled", "parameters": ["x"]}}}`, `plugins.EventLog.parameters: must be a JSON object`},
		{"wrong type", `{"server": {"listen": 4000}}`, `server.listen: a number is not a string`},
		{"Node shape, entry without plugin_switch", `{"EventLog": {"plugin_switch": "enabled"}, "StreamRecorder": {"parameters": {}}}`, `plugins.StreamRecorder.plugin_switch: missing (enabled or disabled)`},
		{"Node shape, entry not an object", `{"EventLog": {"plugin_switch": "enabled"}, "StreamRecorder": "enabled"}`, `plugins.StreamRecorder: must be a JSON object`},
		{"duplicate key", `{"plugins": {"EventLog": {"plugin_switch": "enabled"}, "EventLog": {"plugin_switch": "disabled"}}}`, `plugins: "EventLog" appears twice`},
		{"syntax error with position", "{\n  \"server\": {\"listen\": \":1\"\n}", `unexpected end of file`},
		{"bad character", "{\n  \"server\": {\"listen\" \":1\"}\n}", `line 2, column`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := loadErr(t, writeConfig(t, "config.ini", tt.file))
			if !strings.Contains(msg, tt.want) {
				t.Errorf("got:\n%s\nwant it to contain %q", msg, tt.want)
			}
		})
	}
}

func TestINIProblems(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"section without a [Plugins] line", "[Plugins]\nEventLog = enabled\n[StreamRecordr]\nfile_location = /x\n",
			"[StreamRecordr] (line 3): not a service section (server, journal, log, dispatch, ems, ems.<name>, Plugins) and not listed in [Plugins]"},
		{"repeated section", "[log]\nlevel = info\n[log]\nlevel = debug\n", "line 3: section [log] appears twice (first at line 1)"},
		{"key outside a section", "level = info\n[log]\n", "line 1: key outside a [section]"},
		{"not key = value", "[log]\nlevel info\n", "line 2: expected key = value or [section]"},
		{"unknown service key", "[server]\nport = 4000\n", "server.port (line 2): unknown setting (known in server: listen,"},
		{"repeated parameter", "[Plugins]\nEventLog = enabled\n[EventLog]\npath = a\npath = b\n", "plugins.EventLog.path (line 5): path appears twice"},
		{"plugin field before its line", "[Plugins]\nX.type = EventLog\nX = enabled\n", "plugins.X.type (line 2): X.type must come after the line X = enabled|disabled"},
		{"unknown plugin field", "[Plugins]\nX = enabled\nX.kind = EventLog\n", `plugins.X.kind (line 3): unknown plugin setting "kind" (known: type, concurrency, timeout)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := loadErr(t, writeConfig(t, "config.ini", tt.file))
			if !strings.Contains(msg, tt.want) {
				t.Errorf("got:\n%s\nwant it to contain %q", msg, tt.want)
			}
		})
	}

	// A [Plugins] entry without a section has no parameters.
	cfg := load(t, writeConfig(t, "config.ini", "[Plugins]\nEventLog = enabled\n"))
	if p := cfg.Plugins[0]; string(p.Params) != "{}" || !p.Enabled {
		t.Errorf("got %+v, want EventLog enabled with {}", p)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string
	}{
		{"duplicate paths", func(c *Config) { c.Server.Paths = []string{"/evowebservices", "/evowebservices/"} }, `server.paths: "/evowebservices/" duplicates "/evowebservices"`},
		{"reserved path", func(c *Config) { c.Server.Paths = []string{"/metrics"} }, `server.paths: "/metrics" is taken by emsflow itself`},
		{"no paths", func(c *Config) { c.Server.Paths = nil }, "server.paths: at least one path is needed"},
		{"bad port", func(c *Config) { c.Server.Listen = ":http" }, `server.listen: port "http" is not a number`},
		{"max body", func(c *Config) { c.Server.MaxBodyBytes = 0 }, "server.max_body_bytes: 0 must be greater than 0"},
		{"bad EMS name", func(c *Config) { c.EMS["edge 1"] = EMS{APIURL: "http://h:7777"} }, `ems.edge 1: name "edge 1" may hold only letters, digits, - and _`},
		{"EMS names clash for env", func(c *Config) {
			c.EMS["edge-1"] = EMS{APIURL: "http://h:7777"}
			c.EMS["EDGE_1"] = EMS{APIURL: "http://h:7777"}
		}, "environment overrides could not tell them apart"},
		{"EMS URL without host", func(c *Config) { c.EMS["default"] = EMS{APIURL: "http:///x"} }, "ems.default.api_url: has no host"},
		{"EMS URL missing", func(c *Config) { c.EMS["default"] = EMS{} }, "ems.default.api_url: is required"},
		{"no EMS", func(c *Config) { c.EMS = map[string]EMS{} }, "ems: at least one EMS is needed"},
		{"bad CIDR", func(c *Config) { c.EMS["default"] = EMS{APIURL: "http://h:7777", Addresses: []string{"10.0.0.0/33"}} }, `ems.default.addresses: "10.0.0.0/33" is not an IP address or CIDR`},
		{"bad IP", func(c *Config) { c.EMS["default"] = EMS{APIURL: "http://h:7777", Addresses: []string{"10.0.0.256"}} }, `"10.0.0.256" is not an IP address or CIDR`},
		{"address on two EMS", func(c *Config) {
			c.EMS["a"] = EMS{APIURL: "http://h:7777", Addresses: []string{"10.0.0.1"}}
			c.EMS["b"] = EMS{APIURL: "http://h:7777", Addresses: []string{"10.0.0.1/32"}}
		}, "ems.b.addresses: 10.0.0.1/32 is also an address of ems.a"},
		{"custom_data on two EMS", func(c *Config) {
			c.EMS["a"] = EMS{APIURL: "http://h:7777", CustomData: "x"}
			c.EMS["b"] = EMS{APIURL: "http://h:7777", CustomData: "x"}
		}, `ems.b.custom_data: "x" is also the custom_data of ems.a`},
		{"log format", func(c *Config) { c.Log.Format = "text" }, `log.format: "text" is not one of json, console`},
		{"concurrency", func(c *Config) { c.Dispatch.Concurrency = 0 }, "dispatch.concurrency: 0 must be at least 1"},
		{"plugin concurrency", func(c *Config) { c.Plugins[0].Concurrency = -1 }, "plugins.EventLog.concurrency: -1 must be 0"},
		{"plugin name", func(c *Config) { c.Plugins[0].Name = "Event.Log" }, `plugins.Event.Log: name "Event.Log" may hold only letters`},
		{"duplicate plugin", func(c *Config) { c.Plugins = append(c.Plugins, Plugin{Name: "eventlog", Type: "EventLog"}) }, `plugins.eventlog: name "eventlog" is already used by "EventLog"`},
		{"replicas embedded", func(c *Config) { c.Journal.Replicas = 3 }, "journal.replicas: 3 needs an external cluster"},
		{"nats scheme", func(c *Config) { c.Journal.URL = "http://127.0.0.1:4222" }, `journal.url: scheme "http" is not nats or tls or ws or wss`},
		{"dedupe beyond age", func(c *Config) { c.Journal.MaxAge = time.Minute }, "journal.dedupe_window: 2m0s is longer than journal.max_age 1m0s"},
		{"stream name", func(c *Config) { c.Journal.Stream = "ems.events" }, `journal.stream: "ems.events" is not a stream name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			if err := cfg.Validate(); err != nil {
				t.Fatalf("defaults invalid: %v", err)
			}
			tt.mutate(cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// TestValidateRTMPURL: ems.<name>.rtmp_url is optional; when set it is an rtmp:// or rtmps://
// URL with a host and an application path that a stream name can be appended to. Its problems
// are listed with the others, named by setting, and never show the URL's password.
func TestValidateRTMPURL(t *testing.T) {
	tests := []struct {
		name, rtmp string
		want       []string // problems; none for a good URL
	}{
		{"unset", "", nil},
		{"rtmp with port", "rtmp://10.0.0.5:1935/live", nil},
		{"rtmps public name", "rtmps://live.example.com/live/", nil},
		{"upper-case scheme, IPv6", "RTMP://[2001:db8::5]:1935/app", nil},
		{"credentials", "rtmp://u:rtmp-pw-31@10.0.0.5/live", nil},
		{"bad scheme", "http://u:rtmp-pw-31@10.0.0.5:1935/live", []string{`ems.default.rtmp_url: scheme "http" is not rtmp or rtmps`}},
		{"no scheme", "10.0.0.5:1935/live", []string{`ems.default.rtmp_url: `}},
		{"missing host", "rtmp:///live", []string{"ems.default.rtmp_url: has no host"}},
		{"bad port", "rtmp://10.0.0.5:0/live", []string{`ems.default.rtmp_url: port "0" is not a number from 1 to 65535`}},
		{"no application", "rtmp://10.0.0.5:1935", []string{"ems.default.rtmp_url: has no application path"}},
		{"query", "rtmp://10.0.0.5/live?token=rtmp-pw-31", []string{"ems.default.rtmp_url: must not have a query or fragment"}},
		{"two problems, both listed", "ftp:///live", []string{`ems.default.rtmp_url: scheme "ftp" is not rtmp or rtmps`, "ems.default.rtmp_url: has no host"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.EMS["default"] = EMS{APIURL: "http://127.0.0.1:8888/apiproxy", RTMPURL: SecretURL(tt.rtmp)}
			cfg.Log.Level = "loud" // an unrelated problem, listed beside the rtmp_url ones
			err := cfg.Validate()
			if err == nil {
				t.Fatal("no problems, want at least log.level")
			}
			problems := unjoin(err)
			if got, want := len(problems), len(tt.want)+1; got != want {
				t.Errorf("got %d problems, want %d:\n%s", got, want, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%s", w, err)
				}
			}
			if strings.Contains(err.Error(), "rtmp-pw-31") {
				t.Errorf("problems show the rtmp_url's password:\n%s", err)
			}
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	secrets := []string{
		"ews-proxy-pw",         // password in an EMS apiProxy URL (file)
		"AKIAEXAMPLEHLSKEY001", // aws_access_key (file)
		`secret;Example`,       // aws_secret_key (file)
		"super-token-xyz",      // auth token (environment)
		"nats-pw-77",           // password in the journal URL (environment)
		"nats-tok-88",          // token-as-user in a second journal URL
		"rtmp-pull-pw",         // password in an EMS rtmp_url (file)
	}
	cfg := load(t, "testdata/php.ini",
		"EMSFLOW_SERVER_AUTH_TOKEN=super-token-xyz",
		"EMSFLOW_JOURNAL_URL=nats://natsuser:nats-pw-77@127.0.0.1:4222,nats://nats-tok-88@127.0.0.1:4223",
		"EMSFLOW_JOURNAL_REPLICAS=3",
	)
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	printed := map[string]string{
		"Redacted":        string(out),
		"%v of Server":    fmt.Sprintf("%v", cfg.Server),
		"%+v of Journal":  fmt.Sprintf("%+v", cfg.Journal),
		"%#v of EMS":      fmt.Sprintf("%#v", cfg.EMS),
		"%s of AuthToken": fmt.Sprintf("%s", cfg.Server.AuthToken), //nolint:staticcheck // S1025: the %s verb is what is tested
	}
	for where, text := range printed {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows secret %q:\n%s", where, s, text)
			}
		}
	}
	for _, want := range []string{
		`"auth_token": "<redacted>"`,
		`"url": "nats://natsuser:<redacted>@127.0.0.1:4222,nats://<redacted>@127.0.0.1:4223"`,
		`"api_url": "http://ewsuser:<redacted>@10.0.2.7:8888/apiproxy"`,
		`"rtmp_url": "rtmp://pull:<redacted>@edge-2.example.net:1935/live"`,
		`"aws_access_key": "<redacted>"`,
		`"aws_secret_key": "<redacted>"`,
		`"default_bucket": "ems-files"`,
		`"destination_uri": "192.168.2.58"`,
		`"type": "StreamAutoRouter"`,
		`"max_age": "48h"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Redacted lacks %s:\n%s", want, out)
		}
	}
	// The values are still there for the code that needs them.
	if cfg.Server.AuthToken.Reveal() != "super-token-xyz" {
		t.Error("Reveal lost the token")
	}

	// Errors do not show secrets either.
	bad := writeConfig(t, "config.ini", "[Plugins]\nAmazonHLSUpload = enabled\n[AmazonHLSUpload]\naws_secret_key = \"unterminated-secret-123\n")
	if msg := loadErr(t, bad, "EMSFLOW_JOURNAL_URL=nats://u:env-url-pw-9@host:99999", "EMSFLOW_EMS_DEFAULT_API_URL=http://u:bad-url-pw-5@host:7x7"); strings.Contains(msg, "unterminated-secret-123") ||
		strings.Contains(msg, "env-url-pw-9") || strings.Contains(msg, "bad-url-pw-5") || !strings.Contains(msg, "line 4: quoted value is not closed") {
		t.Errorf("error shows a secret or lacks the problem:\n%s", msg)
	}
}

func TestRedactParams(t *testing.T) {
	in := `{"token":"stream","sign_key":"k1","nested":{"Password":"p1","list":[{"auth_token":"t1"}]},"creds":{"secret":{"a":"b"}},"empty_secret":"","url":"rtmp://u:p2@h/live","n":1,"keepAlive":true}`
	out, err := redactParams(json.RawMessage(in))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"token":"<redacted>","sign_key":"<redacted>","nested":{"Password":"<redacted>","list":[{"auth_token":"<redacted>"}]},"creds":{"secret":"<redacted>"},"empty_secret":"","url":"rtmp://u:<redacted>@h/live","n":1,"keepAlive":true}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}

func TestSecretTypes(t *testing.T) {
	s := Secret("hunter2")
	for _, text := range []string{s.String(), s.GoString(), fmt.Sprint(s), fmt.Sprintf("%q %x", s, s)} {
		if strings.Contains(text, "hunter2") {
			t.Errorf("Secret printed as %q", text)
		}
	}
	var back string
	if b, err := json.Marshal(s); err != nil || json.Unmarshal(b, &back) != nil || back != "<redacted>" {
		t.Errorf("MarshalJSON: got %s (%v), want \"<redacted>\"", b, err)
	}
	if b, _ := json.Marshal(Secret("")); string(b) != `""` {
		t.Errorf("empty secret: got %s, want \"\"", b)
	}
	for in, want := range map[SecretURL]string{
		"http://127.0.0.1:7777":            "http://127.0.0.1:7777",
		"http://user:pw@h:8888/apiproxy":   "http://user:<redacted>@h:8888/apiproxy",
		"nats://tok@h:4222":                "nats://<redacted>@h:4222",
		"https://h/x?token=abc&name=n":     "https://h/x?name=n&token=<redacted>",
		"not a url but has user:pw@ in it": "<redacted>",
		"":                                 "",
	} {
		if got := in.String(); got != want {
			t.Errorf("SecretURL(%q): got %q, want %q", in.Reveal(), got, want)
		}
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg := load(t, "../../config.ini.example")
	root, _ := filepath.Abs("../..")
	if cfg.Server.Listen != ":4000" || cfg.Journal.DataDir != filepath.Join(root, "data") {
		t.Errorf("listen %q data_dir %q, want :4000 and %s", cfg.Server.Listen, cfg.Journal.DataDir, filepath.Join(root, "data"))
	}
	if got := pluginNames(cfg); !slices.Equal(got, seedKinds) {
		t.Errorf("plugins: got %v, want %v", got, seedKinds)
	}
	for _, p := range cfg.Plugins {
		if p.Enabled != (p.Name == "EventLog") {
			t.Errorf("%s enabled = %v; only EventLog should be on out of the box", p.Name, p.Enabled)
		}
	}
	// The one enabled plugin's parameters are what EventLog accepts, so `make run` starts.
	var el eventlog.Config
	if err := plugins.DecodeParams(pluginByName(t, cfg, "EventLog").Params, &el); err != nil {
		t.Errorf("EventLog parameters: %v", err)
	} else if err := el.Validate(); err != nil {
		t.Errorf("EventLog parameters: %v", err)
	}
	if p := string(pluginByName(t, cfg, "StreamLoadBalancer").Params); p != `{"destination_uri":["192.168.2.3","192.168.2.4","192.168.2.5"]}` {
		t.Errorf("load balancer params: %s", p)
	}
	// Every key the example shows is a real setting: its printed form loads again the same.
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	again := load(t, writeConfig(t, "config.ini", string(out)))
	for i := range cfg.Plugins {
		cfg.Plugins[i].Params, again.Plugins[i].Params = nil, nil
	}
	cfg.File, cfg.Dir, again.File, again.Dir = "", "", "", ""
	if !reflect.DeepEqual(cfg, again) {
		t.Errorf("printed configuration loads differently:\nfirst %+v\nagain %+v", cfg, again)
	}
}

func TestLoadWithoutFile(t *testing.T) {
	cfg, err := Load("", Options{Env: []string{"EMSFLOW_SERVER_LISTEN=127.0.0.1:0"}, KnownKinds: []string{"EventLog"}})
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if cfg.Dir != wd || cfg.File != "" || cfg.Journal.DataDir != filepath.Join(wd, "data") || cfg.Server.Listen != "127.0.0.1:0" {
		t.Errorf("got dir %q file %q data_dir %q listen %q", cfg.Dir, cfg.File, cfg.Journal.DataDir, cfg.Server.Listen)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.ini"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want ErrNotExist", err)
	}
}
