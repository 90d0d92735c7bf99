package autorouter

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/emsclient/emstest"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

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

func inStream(ems string, p event.Payload) *event.Event {
	q := event.Payload{"type": "INR", "uniqueId": json.Number("101")}
	maps.Copy(q, p)
	return &event.Event{Type: event.InStreamCreated, EMS: ems, Payload: q}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		params  string
		want    []string // push URIs
		wantErr string
	}{
		{"guide form", `{"token": "stream", "destination_uri": "192.168.2.3"}`, []string{"rtmp://192.168.2.3/live"}, ""},
		{"ini strings", `{"token": "forwardthese", "destination_uri": "192.168.2.58", "keep_alive": "0", "reconcile_interval": "30"}`, []string{"rtmp://192.168.2.58/live"}, ""},
		{"list, port, full uri", `{"destination_uri": ["edge:1936", "rtmp://edge2.example.com/app/"]}`, []string{"rtmp://edge:1936/live", "rtmp://edge2.example.com/app/"}, ""},
		{"no destination", `{"token": "x"}`, nil, "destination_uri is required"},
		{"http scheme", `{"destination_uri": "http://edge"}`, nil, "is not rtmp"},
		{"path without scheme", `{"destination_uri": "edge/live"}`, nil, "bare host"},
		{"twice", `{"destination_uri": ["edge", "rtmp://edge/live"]}`, nil, "listed twice"},
		{"unknown ems", `{"destination_uri": "edge", "ems": ["nope"]}`, nil, `ems "nope" is not a configured EMS`},
		{"negative interval", `{"destination_uri": "edge", "reconcile_interval": "-1s"}`, nil, "must not be negative"},
		{"unknown key", `{"destination_uri": "edge", "tokn": "x"}`, nil, `unknown parameter "tokn"`},
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
			var got []string
			for _, d := range p.(*Router).dests {
				got = append(got, d.uri)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("destinations %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPushParams: the push carries the same name, keepAlive on, the pageUrl mark and the tags;
// a duplicated event does not push again.
func TestPushParams(t *testing.T) {
	a := emstest.NewServer(t)
	r, err := New("R", Config{Token: "stream", DestinationURI: []string{"192.168.2.3", "rtmp://10.1.1.1:1940/in"}}, deps(map[string]*emstest.Server{"a": a}))
	if err != nil {
		t.Fatal(err)
	}
	ev := inStream("a", event.Payload{"name": "mystream"})
	for range 2 {
		if err := r.Handle(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	calls := a.CallsTo("pushStream")
	want := []string{
		"uri=rtmp://192.168.2.3/live localStreamName=mystream targetStreamName=mystream keepAlive=1 pageUrl=emsflow:R _emsflow=R _emsflowOrigin=a",
		"uri=rtmp://10.1.1.1:1940/in localStreamName=mystream targetStreamName=mystream keepAlive=1 pageUrl=emsflow:R _emsflow=R _emsflowOrigin=a",
	}
	if len(calls) != len(want) {
		t.Fatalf("got %d pushStream calls, want %d", len(calls), len(want))
	}
	for i, c := range calls {
		if got := c.Params.Text(); got != want[i] {
			t.Errorf("push %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
	if got := r.metrics.Skipped("duplicate"); got != 2 {
		t.Errorf("duplicate skips: got %v, want 2", got)
	}
}

// TestSkips: what must never be pushed, and why.
func TestSkips(t *testing.T) {
	tests := []struct {
		name   string
		dest   string
		stream event.Payload
		reason string
	}{
		{"token missing", "192.168.2.3", event.Payload{"name": "camera"}, "token"},
		{"outbound stream", "192.168.2.3", event.Payload{"name": "mystream", "type": "ONR"}, "not_inbound"},
		{"pulled by emsflow", "192.168.2.3", event.Payload{"name": "mystream", "pullSettings": map[string]any{"_emsflow": "LB"}}, "loop_guard"},
		{"pushed by emsflow, pageUrl", "192.168.2.3", event.Payload{"name": "mystream", "pageUrl": "emsflow:R2"}, "loop_guard"},
		{"pushed by emsflow, seen on the pushing EMS", "192.168.2.3",
			event.Payload{"name": "mystream", "tcUrl": "rtmp://10.0.0.2/live", "farIp": "10.0.0.9", "farPort": json.Number("50123")}, "loop_guard"},
		{"came from the destination", "rtmp://10.0.0.7:1935/live",
			event.Payload{"name": "mystream", "pullSettings": map[string]any{"uri": "rtmp://10.0.0.7/live/mystream"}, "farIp": "10.0.0.7", "farPort": json.Number("1935")}, "loop_guard"},
		{"destination is the EMS itself, by API host", "127.0.0.1", event.Payload{"name": "mystream"}, "self"},
		{"destination is the EMS itself, by tcUrl", "rtmp://10.0.0.5:1935/live",
			event.Payload{"name": "mystream", "tcUrl": "rtmp://10.0.0.5/live", "nearIp": "10.0.0.5", "nearPort": json.Number("1935")}, "self"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := emstest.NewServer(t), emstest.NewServer(t)
			// b pushed mystream to 10.0.0.2 (tagged), as a router there would.
			if _, err := b.Client().PushStream(t.Context(), emsclient.PushStreamParams{
				URI: "rtmp://10.0.0.2/live", LocalStreamName: "mystream", UserVars: map[string]string{"_emsflow": "R2"},
			}); err != nil {
				t.Fatal(err)
			}
			r, err := New("R", Config{Token: "stream", DestinationURI: []string{tt.dest}}, deps(map[string]*emstest.Server{"a": a, "b": b}))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Handle(t.Context(), inStream("a", tt.stream)); err != nil {
				t.Fatal(err)
			}
			if n := len(a.CallsTo("pushStream")); n != 0 {
				t.Errorf("got %d pushes, want none", n)
			}
			if got := r.metrics.Skipped(tt.reason); got != 1 {
				t.Errorf("skips for %s: got %v, want 1", tt.reason, got)
			}
		})
	}
}

// TestErrors: FAIL is permanent with EMS's description; an unreachable or failing server is
// retried.
func TestErrors(t *testing.T) {
	tests := []struct {
		name      string
		command   string
		fail      emstest.Failure
		permanent bool
		text      string
	}{
		{"push FAIL", "pushStream", emstest.EMSFail("Unable to push requested stream"), true, "Unable to push requested stream"},
		{"push 503", "pushStream", emstest.HTTPError(503, ""), false, "503"},
		{"listConfig dropped", "listConfig", emstest.Drop(), false, "listConfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := emstest.NewServer(t)
			a.FailNext(tt.command, 1, tt.fail)
			r, err := New("R", Config{DestinationURI: []string{"192.168.2.3"}}, deps(map[string]*emstest.Server{"a": a}))
			if err != nil {
				t.Fatal(err)
			}
			err = r.Handle(t.Context(), inStream("a", event.Payload{"name": "s"}))
			if err == nil || plugins.IsPermanent(err) != tt.permanent || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %v (permanent %v), want permanent=%v containing %q", err, plugins.IsPermanent(err), tt.permanent, tt.text)
			}
		})
	}
}
