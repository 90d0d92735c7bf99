package rules

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/emsclient/emstest"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// fixture is an Engine against fake EMS servers named "default" and "edge".
type fixture struct {
	engine    *Engine
	def, edge *emstest.Server
	reg       *prometheus.Registry
}

func newFixture(t *testing.T, params string) *fixture {
	t.Helper()
	f := &fixture{def: emstest.NewServer(t), edge: emstest.NewServer(t), reg: prometheus.NewRegistry()}
	deps := testDeps(t, map[string]string{"default": f.def.URL(), "edge": f.edge.URL()})
	deps.Metrics = f.reg
	p, err := Factory("rules1", json.RawMessage(params), deps)
	if err != nil {
		t.Fatalf("Factory: %v", err)
	}
	f.engine = p.(*Engine)
	return f
}

func (f *fixture) skipped(rule, reason string) float64 {
	return f.counter("emsflow_rules_skipped_total", "rule", rule, "reason", reason)
}

func (f *fixture) actions(rule, command string) float64 {
	return f.counter("emsflow_rules_actions_total", "rule", rule, "command", command)
}

// counter reads one counter from the registry, 0 when it was never incremented.
func (f *fixture) counter(name string, labels ...string) float64 {
	mfs, err := f.reg.Gather()
	if err != nil {
		panic(err) // a registry of this package's own counters cannot fail to gather
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

const hlsRule = `{"rules":[{"name":"hls","events":["inStreamCreated"],"except":["name=test*"],
  "action":"createHLSStream localStreamNames={{.Name}} targetFolder=/var/hls groupName={{.Name}} playlistType=rolling"}]}`

func inStreamCreated(t *testing.T, name string, id int) *event.Event {
	t.Helper()
	ev := decodeEvent(t, fmt.Sprintf(`{"id":%d,"type":"inStreamCreated","payload":{"name":%q,"uniqueId":%d,"type":"INR"}}`, id, name, id))
	ev.EMS = "default"
	return ev
}

func TestHandleCreatesOnceAndTags(t *testing.T) {
	f := newFixture(t, hlsRule)
	ev := inStreamCreated(t, "cam 1", 1)
	for range 3 { // the same event delivered three times
		if err := f.engine.Handle(t.Context(), ev); err != nil {
			t.Fatalf("Handle: %v", err)
		}
	}
	// A different event about the same stream creates nothing either.
	if err := f.engine.Handle(t.Context(), inStreamCreated(t, "cam 1", 2)); err != nil {
		t.Fatal(err)
	}
	calls := f.def.CallsTo("createHLSStream")
	if len(calls) != 1 {
		t.Fatalf("createHLSStream calls = %d, want 1", len(calls))
	}
	want := `localStreamNames=cam\ 1 targetFolder=/var/hls groupName=cam\ 1 playlistType=rolling _emsflow=rules1 _emsflowRule=hls`
	if got := calls[0].Params.Text(); got != want {
		t.Errorf("params =\n %s\nwant\n %s", got, want)
	}
	if n := len(f.def.CallsTo("listConfig")); n != 4 {
		t.Errorf("listConfig calls = %d, want 4 (one check per delivery)", n)
	}
	if got := f.skipped("hls", ReasonExists); got != 3 {
		t.Errorf("skipped exists = %v, want 3", got)
	}
	if got := f.actions("hls", "createHLSStream"); got != 1 {
		t.Errorf("actions = %v, want 1", got)
	}
	if n := len(f.edge.Calls()); n != 0 {
		t.Errorf("edge got %d calls, want 0", n)
	}
}

// handleAtOnce hands every event to the engine concurrently and fails on any error.
func (f *fixture) handleAtOnce(t *testing.T, evs ...*event.Event) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(evs))
	for _, ev := range evs {
		wg.Go(func() { errs <- f.engine.Handle(t.Context(), ev) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestHandleConcurrentDuplicatesCreateOnce(t *testing.T) {
	f := newFixture(t, hlsRule)
	ev := inStreamCreated(t, "cam1", 1)
	f.handleAtOnce(t, ev, ev, ev, ev, ev, ev, ev, ev)
	if n := len(f.def.CallsTo("createHLSStream")); n != 1 {
		t.Fatalf("createHLSStream calls = %d, want 1", n)
	}
}

func TestHandleSkips(t *testing.T) {
	tests := []struct {
		name, params, event string
		rule, reason        string
	}{
		{"own output, tag in settings", hlsRule,
			`{"type":"inStreamCreated","payload":{"name":"cam1","type":"INR","pullSettings":{"_emsflow":"autorouter"}}}`, "hls", ReasonLoopGuard},
		{"own timer, tag at top level", `{"rules":[{"name":"t","events":["timerTriggered"],"action":"removeTimer id={{.Payload.timerId}}"}]}`,
			`{"type":"timerTriggered","payload":{"timerId":3,"_emsflow":"rules1"}}`, "t", ReasonLoopGuard},
		{"filter", hlsRule, `{"type":"inStreamCreated","payload":{"name":"test7","type":"INR"}}`, "hls", ReasonFilter},
		{"null id", `{"rules":[{"name":"close","events":["outStreamClosed"],"action":"shutdownStream id={{.Payload.inStreamUniqueId}} permanently=0"}]}`,
			`{"type":"outStreamClosed","payload":{"name":"cam1","type":"OFHLS","inStreamUniqueId":null}}`, "close", ReasonEmptyValue},
		{"missing field", `{"rules":[{"name":"p","events":["inStreamCreated"],"action":"pushStream uri={{.Payload.pullSettings.uri}} localStreamName={{.Name}}"}]}`,
			`{"type":"inStreamCreated","payload":{"name":"cam1","type":"INR"}}`, "p", ReasonTemplateError},
		{"stream already gone", `{"rules":[{"name":"close","events":["outStreamClosed"],"action":"shutdownStream id={{.Payload.inStreamUniqueId}} permanently=0"}]}`,
			`{"type":"outStreamClosed","payload":{"name":"cam1","type":"ONR","inStreamUniqueId":5}}`, "close", ReasonGone},
		{"config already gone", `{"rules":[{"name":"rm","events":["inStreamClosed"],"action":"removeConfig groupName={{.Name}}"}]}`,
			`{"type":"inStreamClosed","payload":{"name":"cam1","type":"INR"}}`, "rm", ReasonGone},
		{"timer already gone", `{"rules":[{"name":"t","events":["timerTriggered"],"action":"removeTimer id={{.Payload.timerId}}"}]}`,
			`{"type":"timerTriggered","payload":{"timerId":3}}`, "t", ReasonGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.params)
			if err := f.engine.Handle(t.Context(), decodeEvent(t, tt.event)); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			for _, c := range f.def.Calls() {
				switch c.Command {
				case "listConfig", "listStreams", "listTimers":
				default:
					t.Errorf("unexpected call %s %s", c.Command, c.Params.Text())
				}
			}
			if got := f.skipped(tt.rule, tt.reason); got != 1 {
				t.Errorf("skipped{%s,%s} = %v, want 1", tt.rule, tt.reason, got)
			}
		})
	}
}

func TestShutdownWhenStreamExists(t *testing.T) {
	f := newFixture(t, exampleParams)
	f.def.Handle("listStreams", func(emsclient.Params) (int, any) {
		return 0, emstest.Success("Available streams", []any{
			map[string]any{"uniqueId": 5, "name": "cam1", "type": "INR"},
			map[string]any{"uniqueId": 6, "name": "cam1", "type": "ONR"},
		})
	})
	ev := decodeEvent(t, `{"type":"outStreamClosed","payload":{"name":"cam1","uniqueId":6,"type":"ONR","inStreamUniqueId":5,
	  "pushSettings":{"localStreamName":"cam1","uri":"rtmp://dst/live","configId":2}}}`)
	if err := f.engine.Handle(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	calls := f.def.CallsTo("shutdownStream")
	if len(calls) != 1 || calls[0].Params.Text() != "id=5 permanently=0" {
		t.Fatalf("shutdownStream calls = %+v, want one with id=5 permanently=0", calls)
	}

	// A player leaving (ONR without pushSettings) does not pass the rule's filter.
	player := decodeEvent(t, `{"type":"outStreamClosed","payload":{"name":"cam1","uniqueId":8,"type":"ONR","inStreamUniqueId":5}}`)
	if err := f.engine.Handle(t.Context(), player); err != nil {
		t.Fatal(err)
	}
	if n := len(f.def.CallsTo("shutdownStream")); n != 1 {
		t.Errorf("shutdownStream calls = %d after a player left, want 1", n)
	}

	// The stream went away between the check and the call: EMS's FAIL means done.
	f.def.FailNext("shutdownStream", 1, emstest.EMSFail("Stream no longer available"))
	f.def.Handle("listStreams", nil) // answers with no streams from now on
	first := true
	f.def.Handle("listStreams", func(emsclient.Params) (int, any) {
		if first {
			first = false
			return 0, emstest.Success("Available streams", []any{map[string]any{"uniqueId": 5, "name": "cam1", "type": "INR"}})
		}
		return 0, emstest.Success("Available streams", []any{})
	})
	if err := f.engine.Handle(t.Context(), ev); err != nil {
		t.Fatalf("Handle after a racing close: %v", err)
	}
	if got := f.skipped("close-input-when-push-lost", ReasonGone); got != 1 {
		t.Errorf("skipped gone = %v, want 1", got)
	}
}

func TestHandleErrors(t *testing.T) {
	tests := []struct {
		name          string
		failure       emstest.Failure
		command       string
		wantPermanent bool
	}{
		{"EMS FAIL is permanent", emstest.EMSFail("Syntax error"), "createHLSStream", true},
		{"HTTP 503 is retried", emstest.HTTPError(503, ""), "createHLSStream", false},
		{"failing check is retried", emstest.HTTPError(502, ""), "listConfig", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, hlsRule)
			f.def.FailNext(tt.command, 1, tt.failure)
			err := f.engine.Handle(t.Context(), inStreamCreated(t, "cam1", 1))
			if err == nil {
				t.Fatal("Handle succeeded, want an error")
			}
			if !strings.Contains(err.Error(), "rule hls") {
				t.Errorf("error %q does not name the rule", err)
			}
			if got := plugins.IsPermanent(err); got != tt.wantPermanent {
				t.Errorf("IsPermanent = %v, want %v (%v)", got, tt.wantPermanent, err)
			}
			// The retry succeeds and creates exactly one output.
			if err := f.engine.Handle(t.Context(), inStreamCreated(t, "cam1", 1)); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if err := f.engine.Handle(t.Context(), inStreamCreated(t, "cam1", 1)); err != nil {
				t.Fatalf("second retry: %v", err)
			}
			lc, err := f.def.Client().ListConfig(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(lc.HLS) != 1 {
				t.Errorf("hls configs = %d, want 1", len(lc.HLS))
			}
			if got := f.counter("emsflow_rules_failures_total", "rule", "hls"); got != 1 {
				t.Errorf("failures = %v, want 1", got)
			}
		})
	}
}

func TestMixedFailuresAreRetried(t *testing.T) {
	f := newFixture(t, `{"rules":[
	  {"name":"a","events":["inStreamCreated"],"action":"createHLSStream localStreamNames={{.Name}} targetFolder=/h groupName=a"},
	  {"name":"b","events":["inStreamCreated"],"action":"createDASHStream localStreamNames={{.Name}} targetFolder=/d groupName=b"}]}`)
	f.def.FailNext("createHLSStream", 1, emstest.EMSFail("nope"))
	f.def.FailNext("createDASHStream", 1, emstest.HTTPError(500, ""))
	err := f.engine.Handle(t.Context(), inStreamCreated(t, "cam1", 1))
	if err == nil || plugins.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	if !strings.Contains(err.Error(), "rule a") || !strings.Contains(err.Error(), "rule b") {
		t.Errorf("error %q does not name both rules", err)
	}
}

func TestNamedEMSAndPartialGroup(t *testing.T) {
	f := newFixture(t, `{"rules":[{"name":"abr","events":["inStreamCreated"],"ems":"edge",
	  "action":"createHLSStream localStreamNames={{.Name}},{{.Name}}_low bandwidths=2000,500 targetFolder=/h groupName=abr"}]}`)
	// cam1 already has its output in the group on edge (made by an earlier run).
	if _, err := f.edge.Client().CreateHLSStream(t.Context(), emsclient.HLSParams{
		LocalStreamNames: []string{"cam1"}, TargetFolder: "/h", GroupName: "abr"}); err != nil {
		t.Fatal(err)
	}
	f.edge.Reset()
	if err := f.engine.Handle(t.Context(), inStreamCreated(t, "cam1", 1)); err != nil {
		t.Fatal(err)
	}
	calls := f.edge.CallsTo("createHLSStream")
	if len(calls) != 1 {
		t.Fatalf("edge createHLSStream calls = %d, want 1", len(calls))
	}
	want := `localStreamNames=cam1_low bandwidths=500 targetFolder=/h groupName=abr _emsflow=rules1 _emsflowRule=abr`
	if got := calls[0].Params.Text(); got != want {
		t.Errorf("params =\n %s\nwant\n %s", got, want)
	}
	if n := len(f.def.Calls()); n != 0 {
		t.Errorf("the sending EMS got %d calls, want 0", n)
	}
}

func TestStreamConfigAndTimerChecks(t *testing.T) {
	tests := []struct {
		name, action, command string
	}{
		{"push", "pushStream uri=rtmp://backup/live localStreamName={{.Name}} targetStreamName={{.Name}}_b keepAlive=1", "pushStream"},
		{"pull", "pullStream uri=rtmp://origin/live/{{.Name}} localStreamName={{.Name}}_edge", "pullStream"},
		{"record", "record localStreamName={{.Name}} pathToFile=/rec/{{.Name}} type=mp4", "record"},
		{"timer", "setTimer value=60 _stream={{.Name}}", "setTimer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, `{"rules":[{"name":"r","events":["inStreamCreated"],"action":`+mustJSON(t, tt.action)+`}]}`)
			for i := range 3 {
				if err := f.engine.Handle(t.Context(), inStreamCreated(t, "cam1", i+1)); err != nil {
					t.Fatal(err)
				}
			}
			// Another stream is another thing to create.
			if err := f.engine.Handle(t.Context(), inStreamCreated(t, "cam2", 9)); err != nil {
				t.Fatal(err)
			}
			if n := len(f.def.CallsTo(tt.command)); n != 2 {
				t.Errorf("%s calls = %d, want 2 (one per stream)", tt.command, n)
			}
			if got := f.skipped("r", ReasonExists); got != 2 {
				t.Errorf("skipped exists = %v, want 2", got)
			}
		})
	}
}

func TestReconcile(t *testing.T) {
	f := newFixture(t, hlsRule)
	streams := []any{
		map[string]any{"uniqueId": 1, "name": "cam1", "type": "INR"},
		map[string]any{"uniqueId": 2, "name": "cam1", "type": "OFHLS", "hlsSettings": map[string]any{"_emsflow": "rules1"}},
		map[string]any{"uniqueId": 3, "name": "test1", "type": "INR"},
		map[string]any{"uniqueId": 4, "name": "cam2", "type": "ONR"},
	}
	f.def.Handle("listStreams", func(emsclient.Params) (int, any) {
		return 0, emstest.Success("Available streams", streams)
	})
	for range 2 {
		if err := f.engine.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	calls := f.def.CallsTo("createHLSStream")
	if len(calls) != 1 {
		t.Fatalf("createHLSStream calls = %d, want 1", len(calls))
	}
	if v, _ := calls[0].Params.Get("localStreamNames"); v != "cam1" {
		t.Errorf("created for %q, want cam1", v)
	}
	if n := len(f.edge.CallsTo("createHLSStream")); n != 0 {
		t.Errorf("edge createHLSStream calls = %d, want 0 (edge runs no streams)", n)
	}

	off := newFixture(t, `{"reconcile":false,`+hlsRule[1:])
	off.def.Handle("listStreams", func(emsclient.Params) (int, any) {
		return 0, emstest.Success("Available streams", streams)
	})
	if err := off.engine.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(off.def.Calls()); n != 0 {
		t.Errorf("reconcile off made %d calls, want 0", n)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
