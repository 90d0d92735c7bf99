package transcoderesetter

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/emsclient/emstest"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/internal/act"
)

// fixture is testdata/audioFeedStopped.json decoded as the dispatcher decodes it, attributed to
// EMS "a".
func fixture(t *testing.T) *event.Event {
	t.Helper()
	b, err := os.ReadFile("testdata/audioFeedStopped.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	ev.EMS = "a"
	return ev
}

func deps(servers map[string]*emstest.Server) plugins.Deps {
	ems := map[string]*emsclient.Client{}
	def := ""
	for n, s := range servers {
		ems[n] = s.Client()
		if def == "" || n < def {
			def = n
		}
	}
	return plugins.Deps{Log: zerolog.Nop(), EMS: ems, DefaultEMS: def}
}

func build(t *testing.T, params string, servers map[string]*emstest.Server) *Resetter {
	t.Helper()
	p, err := Factory("TranscodeResetter", json.RawMessage(params), deps(servers))
	if err != nil {
		t.Fatal(err)
	}
	return p.(*Resetter)
}

// fakeEMS scripts a server that runs the given streams (uniqueId → stats): getStreamInfo
// answers for them as EMS does (FAIL when there is no such stream) and shutdownStream closes
// them, so that a second delivery finds nothing.
func fakeEMS(t *testing.T, streams map[uint64]event.Payload) *emstest.Server {
	s := emstest.NewServer(t)
	var mu sync.Mutex
	find := func(ps emsclient.Params) (uint64, event.Payload, bool) {
		if v, ok := ps.Get("id"); ok {
			for id, st := range streams {
				if v == st["uniqueId"].(json.Number).String() {
					return id, st, true
				}
			}
			return 0, nil, false
		}
		name, _ := ps.Get("localStreamName")
		for id, st := range streams {
			if st.Name() == name {
				return id, st, true
			}
		}
		return 0, nil, false
	}
	s.Handle("getStreamInfo", func(ps emsclient.Params) (int, any) {
		mu.Lock()
		defer mu.Unlock()
		_, st, ok := find(ps)
		if !ok {
			return 0, emstest.Fail("Stream 0:0 not found")
		}
		return 0, emstest.Success("Stream information", st)
	})
	s.Handle("shutdownStream", func(ps emsclient.Params) (int, any) {
		mu.Lock()
		defer mu.Unlock()
		id, st, ok := find(ps)
		if !ok {
			return 0, emstest.Fail("Stream no longer available")
		}
		delete(streams, id)
		return 0, emstest.Success("Stream closed", map[string]any{"streamInfo": st})
	})
	return s
}

// running is the stats of an inbound stream created an hour before the fixture's event.
func running(id uint64, name string) event.Payload {
	return event.Payload{
		"uniqueId": json.Number(strconv.FormatUint(id, 10)), "name": name, "type": "INR",
		"creationTimestamp": json.Number("1475233878123.4560"),
	}
}

func texts(calls []emstest.Call) []string {
	out := make([]string, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.Command+" "+c.Params.Text())
	}
	return out
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name        string
		params      string
		events      []string
		permanently bool
		wantErr     string
	}{
		{"no section (the PHP config.ini)", `{}`, []string{event.AudioFeedStopped}, true, ""},
		{"null parameters", `null`, []string{event.AudioFeedStopped}, true, ""},
		{"ini strings", `{"video_feed_stopped": "1", "permanently": "0", "ems": "a"}`,
			[]string{event.AudioFeedStopped, event.VideoFeedStopped}, false, ""},
		{"json types", `{"video_feed_stopped": false, "permanently": true}`, []string{event.AudioFeedStopped}, true, ""},
		{"unknown ems", `{"ems": ["nope"]}`, nil, false, `ems "nope" is not a configured EMS (configured: a)`},
		{"unknown key", `{"token": "x"}`, nil, false, `unknown parameter "token"`},
		{"not a boolean", `{"permanently": "maybe"}`, nil, false, `"maybe" is not a boolean`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Factory("R", json.RawMessage(tt.params), deps(map[string]*emstest.Server{"a": emstest.NewServer(t)}))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := p.(*Resetter)
			if got := r.Events(); !slices.Equal(got, tt.events) {
				t.Errorf("events %v, want %v", got, tt.events)
			}
			if got := r.cfg.permanently(); got != tt.permanently {
				t.Errorf("permanently %v, want %v", got, tt.permanently)
			}
		})
	}
}

// TestRegistryBuildsWithoutParameters: the registry hands a plugin without a section "{}".
func TestRegistryBuildsWithoutParameters(t *testing.T) {
	reg := plugins.NewRegistry()
	reg.Register(Kind, Factory)
	p, err := reg.Build(Kind, Kind, nil, deps(map[string]*emstest.Server{"a": emstest.NewServer(t)}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != Kind || !slices.Equal(p.Events(), []string{event.AudioFeedStopped}) {
		t.Errorf("built %s subscribed to %v", p.Name(), p.Events())
	}
}

// TestShutsDownStream: the fixture's audioFeedStopped checks stream 5 and shuts it down by its
// id with permanently=1, as the original did; a second delivery finds it gone and does
// nothing more. permanently=0 and a payload naming the stream only by name are honoured.
func TestShutsDownStream(t *testing.T) {
	tests := []struct {
		name    string
		params  string
		payload event.Payload // replaces the fixture's payload when set
		want    []string
	}{
		{"fixture", `{}`, nil, []string{
			"getStreamInfo id=5",
			"shutdownStream id=5 permanently=1",
		}},
		{"permanently off", `{"permanently": "0"}`, nil, []string{
			"getStreamInfo id=5",
			"shutdownStream id=5 permanently=0",
		}},
		{"name only: the id EMS reports", `{}`, event.Payload{"localStreamName": "transcoded1"}, []string{
			"getStreamInfo localStreamName=transcoded1",
			"shutdownStream id=5 permanently=1",
		}},
		{"id only", `{}`, event.Payload{"id": json.Number("5")}, []string{
			"getStreamInfo id=5",
			"shutdownStream id=5 permanently=1",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := fakeEMS(t, map[uint64]event.Payload{5: running(5, "transcoded1"), 6: running(6, "other")})
			r := build(t, tt.params, map[string]*emstest.Server{"a": a})
			ev := fixture(t)
			if tt.payload != nil {
				ev.Payload = tt.payload
			}
			for range 2 {
				if err := r.Handle(t.Context(), ev); err != nil {
					t.Fatal(err)
				}
			}
			got := texts(a.Calls())
			want := append(slices.Clone(tt.want), tt.want[0]) // the redelivery only looks
			if !slices.Equal(got, want) {
				t.Errorf("calls:\n got %q\nwant %q", got, want)
			}
			if n := r.metrics.Actions(actionShutdown); n != 1 {
				t.Errorf("shutdowns counted: %v, want 1", n)
			}
			if n := r.metrics.Skipped(SkipGone); n != 1 {
				t.Errorf("gone skips: %v, want 1 (the redelivery)", n)
			}
		})
	}
}

// TestWireFormat: the shutdown reaches EMS as the documented GET with raw base64 params.
func TestWireFormat(t *testing.T) {
	a := fakeEMS(t, map[uint64]event.Payload{5: running(5, "transcoded1")})
	r := build(t, `{}`, map[string]*emstest.Server{"a": a})
	if err := r.Handle(t.Context(), fixture(t)); err != nil {
		t.Fatal(err)
	}
	calls := a.CallsTo("shutdownStream")
	if len(calls) != 1 {
		t.Fatalf("%d shutdownStream calls, want 1", len(calls))
	}
	// base64("id=5 permanently=1")
	if got, want := calls[0].RawQuery, "params=aWQ9NSBwZXJtYW5lbnRseT0x"; got != want {
		t.Errorf("query %q, want %q", got, want)
	}
}

// TestBadPayload: an event that names no stream is a permanent error that says so, counted as
// skipped, and EMS is not called.
func TestBadPayload(t *testing.T) {
	tests := []struct {
		name    string
		payload event.Payload
		want    string
	}{
		{"empty payload", event.Payload{}, "payload has neither id nor localStreamName"},
		{"only PID and customData", event.Payload{"PID": json.Number("4792"), "customData": nil}, "payload has neither id nor localStreamName"},
		{"blank name, null id", event.Payload{"id": nil, "localStreamName": "  "}, "payload has neither id nor localStreamName"},
		{"id zero", event.Payload{"id": json.Number("0"), "localStreamName": "transcoded1"}, "payload.id 0 is not a stream id"},
		{"id not a number", event.Payload{"id": "five", "localStreamName": "transcoded1"}, "payload.id five is not a stream id"},
		{"negative id", event.Payload{"id": json.Number("-5")}, "payload.id -5 is not a stream id"},
		{"id an object", event.Payload{"id": map[string]any{"x": 1}}, "is not a stream id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := emstest.NewServer(t)
			r := build(t, `{}`, map[string]*emstest.Server{"a": a})
			ev := fixture(t)
			ev.Payload = tt.payload
			err := r.Handle(t.Context(), ev)
			if err == nil || !plugins.IsPermanent(err) {
				t.Fatalf("error %v, want a permanent one", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "audioFeedStopped") {
				t.Errorf("error %q lacks %q or the event type", err, tt.want)
			}
			if n := len(a.Calls()); n != 0 {
				t.Errorf("%d calls to EMS, want none", n)
			}
			if n := r.metrics.Skipped(SkipBadPayload); n != 1 {
				t.Errorf("bad_payload skips: %v, want 1", n)
			}
		})
	}
}

// TestGoneIsDone: a stream EMS no longer has, or whose id or name now belongs to a newer
// stream, is left alone and the event is done.
func TestGoneIsDone(t *testing.T) {
	tests := []struct {
		name    string
		streams map[uint64]event.Payload
		payload event.Payload
		script  func(a *emstest.Server)
		want    []string
	}{
		{"no such stream", map[uint64]event.Payload{6: running(6, "other")}, nil, nil,
			[]string{"getStreamInfo id=5"}},
		{"closed between the check and the shutdown", map[uint64]event.Payload{5: running(5, "transcoded1")}, nil,
			func(a *emstest.Server) {
				a.FailNext("shutdownStream", 1, emstest.EMSFail("Stream no longer available"))
			},
			[]string{"getStreamInfo id=5", "shutdownStream id=5 permanently=1"}},
		{"id reused by another stream after an EMS restart", map[uint64]event.Payload{5: running(5, "camera")}, nil, nil,
			[]string{"getStreamInfo id=5"}},
		{"same name, republished after the event", map[uint64]event.Payload{9: {
			"uniqueId": json.Number("9"), "name": "transcoded1", "type": "INR",
			"creationTimestamp": json.Number("1475237479000.0000"), // 1 s after the event's second began
		}}, event.Payload{"localStreamName": "transcoded1"}, nil,
			[]string{"getStreamInfo localStreamName=transcoded1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := fakeEMS(t, tt.streams)
			if tt.script != nil {
				tt.script(a)
			}
			r := build(t, `{}`, map[string]*emstest.Server{"a": a})
			ev := fixture(t)
			if tt.payload != nil {
				ev.Payload = tt.payload
			}
			if err := r.Handle(t.Context(), ev); err != nil {
				t.Fatalf("got %v, want done", err)
			}
			if got := texts(a.Calls()); !slices.Equal(got, tt.want) {
				t.Errorf("calls:\n got %q\nwant %q", got, tt.want)
			}
			if n := r.metrics.Skipped(SkipGone); n != 1 {
				t.Errorf("gone skips: %v, want 1", n)
			}
			if n := r.metrics.Actions(actionShutdown); n != 0 {
				t.Errorf("shutdowns counted: %v, want 0", n)
			}
		})
	}
}

// TestStreamCreatedWithinTheEventSecondIsShutDown: the time guard allows for the event's
// timestamp being whole seconds.
func TestStreamCreatedWithinTheEventSecondIsShutDown(t *testing.T) {
	st := running(5, "transcoded1")
	st["creationTimestamp"] = json.Number("1475237478999.9000")
	a := fakeEMS(t, map[uint64]event.Payload{5: st})
	r := build(t, `{}`, map[string]*emstest.Server{"a": a})
	if err := r.Handle(t.Context(), fixture(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(a.CallsTo("shutdownStream")); n != 1 {
		t.Errorf("%d shutdowns, want 1", n)
	}
}

// TestFailures: 5xx and an unreachable EMS are retryable (Retry-After passed on), other 4xx
// permanent; the retry then does the work.
func TestFailures(t *testing.T) {
	tests := []struct {
		name       string
		command    string
		failure    emstest.Failure
		permanent  bool
		retryAfter time.Duration
	}{
		{"lookup 503", "getStreamInfo", emstest.HTTPError(http.StatusServiceUnavailable, "7"), false, 7 * time.Second},
		{"shutdown 502", "shutdownStream", emstest.HTTPError(http.StatusBadGateway, ""), false, 0},
		{"shutdown dropped connection", "shutdownStream", emstest.Drop(), false, 0},
		{"shutdown 500 with an EMS FAIL body is not a FAIL answer", "shutdownStream", emstest.Failure{
			HTTPStatus: http.StatusInternalServerError, Body: `{"status":"FAIL","description":"x","data":null}`,
		}, false, 0},
		{"lookup 403", "getStreamInfo", emstest.HTTPError(http.StatusForbidden, ""), true, 0},
		{"shutdown 501", "shutdownStream", emstest.HTTPError(http.StatusNotImplemented, ""), true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := fakeEMS(t, map[uint64]event.Payload{5: running(5, "transcoded1")})
			a.FailNext(tt.command, 1, tt.failure)
			r := build(t, `{}`, map[string]*emstest.Server{"a": a})
			err := r.Handle(t.Context(), fixture(t))
			if err == nil {
				t.Fatal("no error")
			}
			if got := plugins.IsPermanent(err); got != tt.permanent {
				t.Fatalf("permanent %v, want %v: %v", got, tt.permanent, err)
			}
			if got, _ := plugins.RetryAfter(err); got != tt.retryAfter {
				t.Errorf("retry after %s, want %s", got, tt.retryAfter)
			}
			if !strings.Contains(err.Error(), `stream "transcoded1" (id 5) on a`) {
				t.Errorf("error %q does not name the stream and EMS", err)
			}
			if r.metrics.Skipped(SkipGone) != 0 {
				t.Error("a failure was counted as gone")
			}
			if err := r.Handle(t.Context(), fixture(t)); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if n := r.metrics.Actions(actionShutdown); n != 1 {
				t.Errorf("shutdowns after the retry: %v, want 1", n)
			}
		})
	}
}

// TestEventsAndScope: other event types are ignored; videoFeedStopped only when enabled; an
// EMS outside "ems" is skipped without a call.
func TestEventsAndScope(t *testing.T) {
	tests := []struct {
		name      string
		params    string
		typ       string
		ems       string
		shutdowns int
		scope     float64
	}{
		{"inStreamClosed ignored", `{}`, event.InStreamClosed, "a", 0, 0},
		{"videoFeedStopped off by default", `{}`, event.VideoFeedStopped, "a", 0, 0},
		{"videoFeedStopped when enabled", `{"video_feed_stopped": true}`, event.VideoFeedStopped, "a", 1, 0},
		{"audioFeedStopped from an EMS in scope", `{"ems": ["a"]}`, event.AudioFeedStopped, "a", 1, 0},
		{"audioFeedStopped from an EMS out of scope", `{"ems": ["b"]}`, event.AudioFeedStopped, "a", 0, 1},
		{"unattributed event goes to the default EMS", `{}`, event.AudioFeedStopped, "", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := fakeEMS(t, map[uint64]event.Payload{5: running(5, "transcoded1")})
			b := emstest.NewServer(t)
			r := build(t, tt.params, map[string]*emstest.Server{"a": a, "b": b})
			ev := fixture(t)
			ev.Type, ev.EMS = tt.typ, tt.ems
			if err := r.Handle(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
			if n := len(a.CallsTo("shutdownStream")); n != tt.shutdowns {
				t.Errorf("%d shutdowns, want %d", n, tt.shutdowns)
			}
			if tt.shutdowns == 0 && len(a.Calls()) != 0 {
				t.Errorf("calls %q, want none", texts(a.Calls()))
			}
			if len(b.Calls()) != 0 {
				t.Errorf("EMS b was called: %q", texts(b.Calls()))
			}
			if got := r.metrics.Skipped(act.SkipScope); got != tt.scope {
				t.Errorf("scope skips %v, want %v", got, tt.scope)
			}
		})
	}
}
