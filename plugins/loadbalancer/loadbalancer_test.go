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
		{"bad rtmp", `{"destination_uri": [{"api_url": "edge", "rtmp_url": "http://edge"}]}`, nil, nil, "destination rtmp_url: scheme"},
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

// TestPullsFromConfiguredRTMPURL: with the origin EMS's rtmp_url configured (ems.<name>.rtmp_url,
// handed over as Deps.RTMPURLs) the other members pull exactly that URI plus the stream name;
// without it, or with only another EMS's, the URI is worked out from the API address as before;
// a destination's own rtmp_url still wins.
func TestPullsFromConfiguredRTMPURL(t *testing.T) {
	tests := []struct {
		name     string
		rtmpURLs map[string]string
		// dests are the destinations besides b; "a" and "c" stand for those servers' API URLs.
		dests    []Destination
		stream   event.Payload
		wantURI  string
		wantSelf float64 // members skipped as the source
		idleC    bool    // c is a member and must not pull: it is the source
	}{
		{"rtmp_url, source a member by its API", map[string]string{"a": "rtmp://10.0.0.5:1935/live"},
			[]Destination{{APIURL: "a"}}, nil, "rtmp://10.0.0.5:1935/live/cam1", 1, false},
		{"rtmp_url with a trailing slash, source not a member", map[string]string{"a": "rtmps://live.example.com:1935/live/"},
			nil, nil, "rtmps://live.example.com:1935/live/cam1", 0, false},
		{"rtmp_url, source a plain-IP member by the stream's address", map[string]string{"a": "rtmp://pub.example.com:1935/live"},
			[]Destination{{APIURL: "10.0.0.1"}}, event.Payload{"ip": "10.0.0.1"}, "rtmp://pub.example.com:1935/live/cam1", 1, false},
		{"rtmp_url finds the source among the members by its destination's rtmp_url", map[string]string{"a": "rtmp://10.0.0.5:1935/live"},
			[]Destination{{APIURL: "c", RTMPURL: "RTMP://10.0.0.5:1935/live/"}}, nil, "RTMP://10.0.0.5:1935/live/cam1", 1, true},
		{"destination's own rtmp_url wins", map[string]string{"a": "rtmp://10.0.0.5:1935/live"},
			[]Destination{{APIURL: "a", RTMPURL: "rtmp://a-dest:1936/app"}}, nil, "rtmp://a-dest:1936/app/cam1", 1, false},
		{"no rtmp_url: source a member, as before", nil,
			[]Destination{{APIURL: "a"}}, nil, "rtmp://127.0.0.1/live/cam1", 1, false},
		{"only another EMS's rtmp_url: source not a member, as before", map[string]string{"c": "rtmp://10.0.0.9:1935/live"},
			nil, event.Payload{"ip": "10.9.9.9"}, "rtmp://10.9.9.9/live/cam1", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, c := emstest.NewServer(t), emstest.NewServer(t), emstest.NewServer(t)
			apis := map[string]string{"a": a.URL(), "c": c.URL()}
			var dests Destinations
			for _, d := range tt.dests {
				if u, ok := apis[d.APIURL]; ok {
					d.APIURL = u
				}
				dests = append(dests, d)
			}
			dests = append(dests, Destination{APIURL: b.URL()})
			lb, err := New("LB", Config{DestinationURI: dests}, plugins.Deps{
				Log: zerolog.Nop(), EMS: map[string]*emsclient.Client{"a": a.Client(), "c": c.Client()}, DefaultEMS: "a",
				HTTPClient: b.HTTPClient(), RTMPURLs: tt.rtmpURLs,
			})
			if err != nil {
				t.Fatal(err)
			}
			p := event.Payload{"name": "cam1"}
			for k, v := range tt.stream {
				p[k] = v
			}
			if err := lb.Handle(t.Context(), inStream(event.InStreamCreated, p)); err != nil {
				t.Fatal(err)
			}
			calls := b.CallsTo("pullStream")
			if len(calls) != 1 {
				t.Fatalf("got %d pulls on b, want 1", len(calls))
			}
			want := "uri=" + tt.wantURI + " localStreamName=cam1 keepAlive=1 forceTcp=0 _emsflow=LB _emsflowOrigin=a"
			if got := calls[0].Params.Text(); got != want {
				t.Errorf("pull on b:\n got %s\nwant %s", got, want)
			}
			if n := len(a.CallsTo("pullStream")); n != 0 {
				t.Errorf("the source pulled its own stream %d times", n)
			}
			if n := len(c.CallsTo("pullStream")); tt.idleC && n != 0 {
				t.Errorf("c, the source's destination, pulled the source's stream %d times", n)
			}
			if got := lb.metrics.Skipped("self"); got != tt.wantSelf {
				t.Errorf("skipped as self: got %v, want %v", got, tt.wantSelf)
			}
		})
	}
}

// TestRTMPURLRuleIsOneForBothPlaces: a destination's rtmp_url and an EMS's rtmp_url (Deps.RTMPURLs,
// from ems.<name>.rtmp_url) accept and refuse the same values, by internal/config's rule for
// ems.<name>.rtmp_url: rtmp:// or rtmps:// (any case), a host, a port from 1 to 65535 if any, an
// application path, no query or fragment; surrounding whitespace and trailing slashes are
// trimmed. A refusal names the setting and the problem, never the URL (it may hold a password).
func TestRTMPURLRuleIsOneForBothPlaces(t *testing.T) {
	tests := []struct {
		raw     string
		want    string // the base URL used, when accepted
		wantErr string // the problem, when refused
	}{
		{"rtmp://10.0.0.5:1935/live", "rtmp://10.0.0.5:1935/live", ""},
		{"rtmps://live.example.com/live", "rtmps://live.example.com/live", ""},
		{"RTMP://Edge:1935/live", "RTMP://Edge:1935/live", ""},
		{"  rtmp://edge/live/ \t", "rtmp://edge/live", ""},
		{"rtmp://edge/live//", "rtmp://edge/live", ""},
		{"rtmp://edge/app/instance", "rtmp://edge/app/instance", ""},
		{"rtmp://[::1]:1935/live", "rtmp://[::1]:1935/live", ""},
		{"rtmp://u:pw-ok@edge/live", "rtmp://u:pw-ok@edge/live", ""},
		{"http://u:rtmp-pw-7@10.0.0.5/live", "", `scheme "http" is not rtmp or rtmps`},
		{"rtmpt://edge/live", "", `scheme "rtmpt" is not rtmp or rtmps`},
		{"rtmpe://edge/live", "", `scheme "rtmpe" is not rtmp or rtmps`},
		{"10.0.0.5:1935/live", "", "is not a URL"},
		{"edge/live", "", `scheme "" is not rtmp or rtmps`},
		{"rtmp:///live", "", "has no host"},
		{"rtmp://u:rtmp-pw-7@edge", "", "has no application path"},
		{"rtmp://edge/", "", "has no application path"},
		{"rtmp://edge//", "", "has no application path"},
		{"rtmp://edge/live?token=rtmp-pw-7", "", "must not have a query or fragment"},
		{"rtmp://edge/live?", "", "must not have a query or fragment"},
		{"rtmp://edge/live#x", "", "must not have a query or fragment"},
		{"rtmp://edge:0/live", "", `port "0" is not a number from 1 to 65535`},
		{"rtmp://edge:65536/live", "", `port "65536" is not a number from 1 to 65535`},
		{"rtmp://edge:x/live", "", "is not a URL"},
		{"rtmp://ed ge/live", "", "is not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			places := []struct {
				name, prefix string
				build        func() (*Balancer, error)
				got          func(*Balancer) string
			}{
				{"destination", "destination_uri[0]: destination rtmp_url: ", func() (*Balancer, error) {
					return New("LB", Config{DestinationURI: Destinations{{APIURL: "10.0.0.2", RTMPURL: tt.raw}}},
						plugins.Deps{Log: zerolog.Nop()})
				}, func(b *Balancer) string { return b.members[0].rtmp }},
				{"ems", `ems "edge" rtmp_url: `, func() (*Balancer, error) {
					return New("LB", Config{DestinationURI: Destinations{{APIURL: "10.0.0.2"}}},
						plugins.Deps{Log: zerolog.Nop(), RTMPURLs: map[string]string{"edge": tt.raw}})
				}, func(b *Balancer) string { return b.rtmp["edge"] }},
			}
			for _, pl := range places {
				b, err := pl.build()
				if tt.wantErr == "" {
					if err != nil {
						t.Errorf("%s: refused: %v", pl.name, err)
					} else if got := pl.got(b); got != tt.want {
						t.Errorf("%s: got %q, want %q", pl.name, got, tt.want)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), pl.prefix) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("%s: error %v, want one containing %q and %q", pl.name, err, pl.prefix, tt.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), "rtmp-pw-7") {
					t.Errorf("%s: error prints a password: %v", pl.name, err)
				}
			}
		})
	}
}
