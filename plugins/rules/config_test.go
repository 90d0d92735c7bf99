package rules

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/plugins"
)

// testDeps returns dependencies with clients named after the keys of urls.
func testDeps(t *testing.T, urls map[string]string) plugins.Deps {
	t.Helper()
	deps := plugins.Deps{Log: zerolog.New(zerolog.NewTestWriter(t)), EMS: map[string]*emsclient.Client{}, DefaultEMS: "default"}
	for name, u := range urls {
		c, err := emsclient.New(u, &http.Client{})
		if err != nil {
			t.Fatal(err)
		}
		deps.EMS[name] = c
	}
	return deps
}

func TestFactoryRejectsBadConfig(t *testing.T) {
	deps := testDeps(t, map[string]string{"default": "http://127.0.0.1:1", "edge": "http://127.0.0.1:2"})
	tests := []struct {
		name    string
		params  string
		wantErr []string
	}{
		{"no rules", `{}`, []string{"at least one rule"}},
		{"unknown top-level key", `{"rules":[], "rule":1}`, []string{`unknown parameter "rule"`}},
		{"unknown rule key", `{"rules":[{"events":["inStreamCreated"],"acton":"x"}]}`, []string{"rule 1", `unknown field "acton"`}},
		{"unknown command", `{"rules":[{"name":"r","events":["inStreamCreated"],"action":"deleteEverything all=1"}]}`,
			[]string{`rule "r"`, `unknown command "deleteEverything"`, "allowed: pullStream, pushStream, record, createHLSStream"}},
		{"read-only command", `{"rules":[{"events":["inStreamCreated"],"action":"listStreams"}]}`, []string{`unknown command "listStreams"`}},
		{"missing mandatory parameter", `{"rules":[{"events":["inStreamCreated"],"action":"createHLSStream localStreamNames={{.Name}} targetFolder=/x"}]}`,
			[]string{"createHLSStream needs parameter groupName"}},
		{"shutdown without id or name", `{"rules":[{"events":["outStreamClosed"],"action":"shutdownStream permanently=0"}]}`,
			[]string{"needs parameter id or localStreamName"}},
		{"template syntax", `{"rules":[{"events":["inStreamCreated"],"action":"shutdownStream id={{.UniqueID"}]}`,
			[]string{"unterminated template action"}},
		{"unknown function", `{"rules":[{"events":["inStreamCreated"],"action":"shutdownStream id={{frobnicate .UniqueID}}"}]}`,
			[]string{`function "frobnicate" not defined`}},
		{"unknown field", `{"rules":[{"events":["inStreamCreated"],"action":"shutdownStream id={{.UniqueId}}"}]}`,
			[]string{"action on inStreamCreated", "UniqueId"}},
		{"wrong arguments", `{"rules":[{"events":["inStreamCreated"],"action":"shutdownStream id={{replace .Name}}"}]}`,
			[]string{"wrong number of args"}},
		{"unknown event", `{"rules":[{"events":["inStreamCreatd"],"action":"shutdownStream id=1"}]}`,
			[]string{`unknown event "inStreamCreatd"`}},
		{"glob matching nothing", `{"rules":[{"events":["nothing*"],"action":"shutdownStream id=1"}]}`,
			[]string{`glob "nothing*" matches no known event`}},
		{"no events", `{"rules":[{"action":"shutdownStream id=1"}]}`, []string{"at least one event"}},
		{"bad filter", `{"rules":[{"events":["inStreamCreated"],"only":["name"],"action":"shutdownStream id=1"}]}`,
			[]string{`"name" is not key=value`}},
		{"unknown ems", `{"rules":[{"events":["inStreamCreated"],"ems":"origin","action":"shutdownStream id=1"}]}`,
			[]string{`ems "origin" is not configured (configured: default, edge)`}},
		{"reserved tag", `{"rules":[{"events":["inStreamCreated"],"action":"setTimer value=10 _emsflow=me"}]}`,
			[]string{"_emsflow is reserved"}},
		{"duplicate parameter", `{"rules":[{"events":["inStreamCreated"],"action":"shutdownStream id=1 ID=2"}]}`,
			[]string{"ID given twice"}},
		{"templated key", `{"rules":[{"events":["inStreamCreated"],"action":"shutdownStream {{.Name}}=1"}]}`,
			[]string{"no templates"}},
		{"empty element", `{"rules":[{"events":["inStreamCreated"],"action":"createHLSStream localStreamNames=a,,b targetFolder=/x groupName=g"}]}`,
			[]string{"element 2 is empty"}},
		{"duplicate rule names", `{"rules":[{"name":"a","events":["inStreamCreated"],"action":"shutdownStream id=1"},{"name":"a","events":["inStreamCreated"],"action":"shutdownStream id=1"}]}`,
			[]string{"name used by an earlier rule"}},
		{"every problem at once", `{"rules":[{"name":"a","events":["nope"],"action":"nope"},{"name":"b","events":["inStreamCreated"],"action":"record x=1"}]}`,
			[]string{`unknown event "nope"`, `unknown command "nope"`, "record needs parameter localStreamName", "record needs parameter pathToFile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Factory("Rules", json.RawMessage(tt.params), deps)
			if err == nil {
				t.Fatal("Factory succeeded, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestFactoryAcceptsGoodConfig(t *testing.T) {
	deps := testDeps(t, map[string]string{"default": "http://127.0.0.1:1", "edge": "http://127.0.0.1:2"})
	tests := []struct {
		name       string
		params     string
		wantEvents []string
	}{
		{"the two workflows", exampleParams, []string{"inStreamCreated", "outStreamClosed"}},
		{"glob and exact, deduplicated in known order",
			`{"rules":[{"events":["*StreamClosed","inStreamCreated"],"action":"shutdownStream localStreamName={{.Name}}"},{"events":"inStreamClosed","action":"removeConfig groupName={{.Name}}"}]}`,
			[]string{"inStreamCreated", "inStreamClosed", "outStreamClosed", "webRTCPeerStreamClosed", "WSStreamClosed"}},
		{"INI form: rules as a JSON string, events comma-separated",
			`{"rules":"[{\"events\":\"timerTriggered, timerClosed\",\"ems\":\"edge\",\"action\":\"removeTimer id={{.Payload.timerId}}\"}]","reconcile":"false","reconcile_interval":"5m"}`,
			[]string{"timerTriggered", "timerClosed"}},
		{"functions and payload fields that only some events have",
			`{"rules":[{"events":["recordChunkClosed"],"action":"pushStream uri=rtmp://x/{{setting \"configId\"}} localStreamName={{stem .File | lower}} targetStreamName={{payload \"a.b\" | default \"x\"}} _src={{.Payload.some.deep.field}} _d={{dir .File}}"}]}`,
			[]string{"recordChunkClosed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Factory("Rules", json.RawMessage(tt.params), deps)
			if err != nil {
				t.Fatalf("Factory: %v", err)
			}
			if got := p.Events(); !slices.Equal(got, tt.wantEvents) {
				t.Errorf("Events() = %v, want %v", got, tt.wantEvents)
			}
		})
	}
}

func TestNewNeedsAnEMS(t *testing.T) {
	_, err := Factory("Rules", json.RawMessage(exampleParams), plugins.Deps{Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "no EMS server") {
		t.Fatalf("err = %v, want no EMS server", err)
	}
}

// exampleParams are the two workflows of the package documentation and of config.ini.example.
const exampleParams = `{"rules": [
  {"name": "hls-for-new-streams",
   "events": ["inStreamCreated"],
   "action": "createHLSStream localStreamNames={{.Name}} targetFolder=/var/evo/hls groupName={{.Name}} playlistType=rolling chunkLength=2"},
  {"name": "close-input-when-push-lost",
   "events": ["outStreamClosed"],
   "only": ["pushSettings.localStreamName=*"],
   "action": "shutdownStream id={{.Payload.inStreamUniqueId}} permanently=0"}
]}`
