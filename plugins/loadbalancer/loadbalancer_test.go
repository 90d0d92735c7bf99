package loadbalancer

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/emsclient/emstest"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name     string
		params   string
		wantAPI  []string
		wantRTMP []string
		wantErr  string
	}{
		{"guide form", `{"destination_uri": ["192.168.2.3", "192.168.2.4", "192.168.2.5"]}`,
			[]string{"http://192.168.2.3:7777", "http://192.168.2.4:7777", "http://192.168.2.5:7777"},
			[]string{"rtmp://192.168.2.3/live", "rtmp://192.168.2.4/live", "rtmp://192.168.2.5/live"}, ""},
		{"ini single string", `{"destination_uri": "192.168.2.39"}`, []string{"http://192.168.2.39:7777"}, []string{"rtmp://192.168.2.39/live"}, ""},
		{"api proxy url with auth, and object form", `{"destination_uri": ["http://ews:secret@edge1:8888/apiproxy", {"api_url": "http://edge2:7777", "rtmp_url": "rtmp://edge2:1936/app/"}]}`,
			[]string{"http://ews:xxxxx@edge1:8888/apiproxy", "http://edge2:7777"}, []string{"rtmp://edge1/live", "rtmp://edge2:1936/app"}, ""},
		{"none", `{}`, nil, nil, "destination_uri is required"},
		{"ftp", `{"destination_uri": "ftp://edge"}`, nil, nil, "must be http or https"},
		{"unknown object key", `{"destination_uri": [{"api": "edge"}]}`, nil, nil, "unknown field"},
		{"bad rtmp", `{"destination_uri": [{"api_url": "edge", "rtmp_url": "http://edge"}]}`, nil, nil, "not an rtmp:// URL"},
		{"twice", `{"destination_uri": ["edge", "http://edge:7777/"]}`, nil, nil, "listed twice"},
		{"credentials without scheme", `{"destination_uri": "ews:topsecret@edge"}`, nil, nil, "neither an IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Factory("LB", json.RawMessage(tt.params), plugins.Deps{Log: zerolog.Nop()})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "topsecret") {
					t.Errorf("error prints a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var api, rtmp []string
			for _, m := range p.(*Balancer).members {
				api = append(api, m.client.String())
				rtmp = append(rtmp, m.rtmp)
			}
			if strings.Join(api, " ") != strings.Join(tt.wantAPI, " ") || strings.Join(rtmp, " ") != strings.Join(tt.wantRTMP, " ") {
				t.Errorf("members %v %v, want %v %v", api, rtmp, tt.wantAPI, tt.wantRTMP)
			}
		})
	}
}

func inStream(typ string, p event.Payload) *event.Event {
	p["type"] = "INR"
	return &event.Event{Type: typ, EMS: "a", Payload: p}
}

// TestPullsOnOthersWithAuth: the source (a member by its API URL) is skipped; the other member,
// behind basic auth, pulls from the source's RTMP address with the tags, once.
func TestPullsOnOthersWithAuth(t *testing.T) {
	a, b := emstest.NewServer(t), emstest.NewServer(t)
	b.RequireBasicAuth("ews", "pw")
	bu, _ := url.Parse(b.URL())
	bu.User = url.UserPassword("ews", "pw")
	lb, err := New("LB", Config{DestinationURI: Destinations{{APIURL: a.URL()}, {APIURL: bu.String()}}},
		plugins.Deps{Log: zerolog.Nop(), EMS: map[string]*emsclient.Client{"a": a.Client()}, DefaultEMS: "a", HTTPClient: b.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	ev := inStream(event.InStreamCreated, event.Payload{"name": "cam1", "pullSettings": map[string]any{"uri": "rtsp://camera/1"}})
	for range 2 {
		if err := lb.Handle(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.CallsTo("pullStream")); n != 0 {
		t.Errorf("the source pulled its own stream %d times", n)
	}
	calls := b.CallsTo("pullStream")
	if len(calls) != 1 {
		t.Fatalf("got %d pulls on b, want 1", len(calls))
	}
	want := "uri=rtmp://127.0.0.1/live/cam1 localStreamName=cam1 keepAlive=1 forceTcp=0 _emsflow=LB _emsflowOrigin=a"
	if got := calls[0].Params.Text(); got != want || calls[0].User != "ews" {
		t.Errorf("pull as %q:\n got %s\nwant %s", calls[0].User, got, want)
	}
}

// TestPlainIPSourceSkipped: as the original, a member given as a plain IP is the source when it
// is the stream's own address, and replicas pull from it.
func TestPlainIPSourceSkipped(t *testing.T) {
	api, b := emstest.NewServer(t), emstest.NewServer(t)
	lb, err := New("LB", Config{DestinationURI: Destinations{{APIURL: "10.0.0.1"}, {APIURL: b.URL()}}},
		plugins.Deps{Log: zerolog.Nop(), EMS: map[string]*emsclient.Client{"a": api.Client()}, DefaultEMS: "a", HTTPClient: b.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	if err := lb.Handle(t.Context(), inStream(event.InStreamCreated, event.Payload{"name": "cam1", "ip": "10.0.0.1"})); err != nil {
		t.Fatal(err)
	}
	calls := b.CallsTo("pullStream")
	if len(calls) != 1 {
		t.Fatalf("got %d pulls, want 1", len(calls))
	}
	if got, _ := calls[0].Params.Get("uri"); got != "rtmp://10.0.0.1/live/cam1" {
		t.Errorf("pull uri %s, want rtmp://10.0.0.1/live/cam1", got)
	}
	if lb.metrics.Skipped("self") != 1 {
		t.Error("the source member was not skipped as self")
	}
}

// TestReplicaEventsAndFailures: a replica's own event is not replicated; a FAIL is permanent.
func TestReplicaEventsAndFailures(t *testing.T) {
	a, b := emstest.NewServer(t), emstest.NewServer(t)
	lb, err := New("LB", Config{DestinationURI: Destinations{{APIURL: b.URL()}}},
		plugins.Deps{Log: zerolog.Nop(), EMS: map[string]*emsclient.Client{"a": a.Client()}, DefaultEMS: "a", HTTPClient: b.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	replica := inStream(event.InStreamCreated, event.Payload{"name": "cam1", "pullSettings": map[string]any{"_emsflow": "LB"}})
	if err := lb.Handle(t.Context(), replica); err != nil || len(b.Calls()) != 0 || lb.metrics.Skipped("loop_guard") != 1 {
		t.Fatalf("replica event: err %v, %d calls to b", err, len(b.Calls()))
	}
	b.FailNext("pullStream", 1, emstest.EMSFail("Stream name cam2 already taken"))
	err = lb.Handle(t.Context(), inStream(event.InStreamCreated, event.Payload{"name": "cam2"}))
	if !plugins.IsPermanent(err) || !strings.Contains(err.Error(), "already taken") {
		t.Fatalf("error %v, want a permanent one with EMS's description", err)
	}
}
