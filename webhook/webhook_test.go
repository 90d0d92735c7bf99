package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
)

// fakeJournal is an in-memory test double of the durable journal.
type fakeJournal struct {
	mu      sync.Mutex
	batches [][]*event.Event
	err     error
	// entered, when set, receives once per Append call before it blocks on release.
	entered chan struct{}
	// release, when set, makes Append wait until it is closed.
	release chan struct{}
	panicV  any
}

func (j *fakeJournal) Append(ctx context.Context, evs []*event.Event) error {
	if j.entered != nil {
		j.entered <- struct{}{}
	}
	if j.release != nil {
		select {
		case <-j.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if j.panicV != nil {
		panic(j.panicV)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	// Keep what a consumer will see: the journaled bytes decoded in full (journal.DecodeMsg),
	// with the attribution the webhook made.
	stored := make([]*event.Event, len(evs))
	for i, ev := range evs {
		full, err := event.Decode(bytes.Clone(ev.Raw)) // the webhook reuses ev.Raw's buffer
		if err != nil {
			return fmt.Errorf("journaled bytes do not decode: %w", err)
		}
		full.EMS = ev.EMS
		stored[i] = full
	}
	j.batches = append(j.batches, stored)
	return nil
}

func (j *fakeJournal) events() []*event.Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*event.Event
	for _, b := range j.batches {
		out = append(out, b...)
	}
	return out
}

type testEnv struct {
	srv     *Server
	http    *httptest.Server
	journal *fakeJournal
	url     string
}

func newTestEnv(t *testing.T, cfg Config, j *fakeJournal, ready Readiness) *testEnv {
	t.Helper()
	if j == nil {
		j = &fakeJournal{}
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, j, ready, reg, reg, zerolog.Nop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &testEnv{srv: s, http: hs, journal: j, url: hs.URL}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t *testing.T, method, url string, body io.Reader, header map[string]string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("answer %q is not JSON: %v", raw, err)
		}
	}
	return a
}

func post(t *testing.T, url, body string) answer {
	t.Helper()
	return do(t, http.MethodPost, url, strings.NewReader(body), map[string]string{"Content-Type": "application/json"})
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// scrape reads /metrics over HTTP and returns the value of the sample of family name whose
// labels include all of labels (name=value pairs); it fails when there is no such sample.
func scrape(t *testing.T, baseURL, name string, labels ...string) float64 {
	t.Helper()
	v, ok := scrapeValue(t, baseURL, name, labels...)
	if !ok {
		t.Fatalf("metric %s%v has no sample", name, labels)
	}
	return v
}

// scrapeValue is scrape that reports a missing sample instead of failing.
func scrapeValue(t *testing.T, baseURL, name string, labels ...string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func TestFixtures(t *testing.T) {
	env := newTestEnv(t, Config{}, nil, nil)
	str := func(t *testing.T, ev *event.Event, path, want string) {
		t.Helper()
		if got, ok := ev.Payload.String(path); !ok || got != want {
			t.Errorf("payload %s = %q (present %v), want %q", path, got, ok, want)
		}
	}
	u64 := func(t *testing.T, ev *event.Event, path string, want uint64) {
		t.Helper()
		if got, ok := ev.Payload.Uint64(path); !ok || got != want {
			t.Errorf("payload %s = %d (ok %v), want %d", path, got, ok, want)
		}
	}
	tests := []struct {
		file   string
		typ    string
		id     uint64
		check  func(t *testing.T, ev *event.Event)
		wantTS uint64
	}{
		{"inStreamCreated.json", event.InStreamCreated, 1, func(t *testing.T, ev *event.Event) {
			if ev.Payload.Name() != "4" {
				t.Errorf("Name() = %q, want 4", ev.Payload.Name())
			}
			if id, ok := ev.Payload.UniqueID(); !ok || id != 1 {
				t.Errorf("UniqueID() = %d, %v, want 1", id, ok)
			}
			str(t, ev, "pullSettings.uri", "rtmp://webcasting.thefloridachannel.org/live/tvweb1")
			u64(t, ev, "pullSettings.configId", 4)
			// Node rounded these on the way; they must come through as written, not re-rounded.
			str(t, ev, "typeNumeric", "5282249572905648000")
			if !ev.Payload.IsInbound() {
				t.Error("IsInbound() = false, want true for INR")
			}
		}, 1506336133},
		{"inStreamCreated_uint64.json", event.InStreamCreated, 1, func(t *testing.T, ev *event.Event) {
			u64(t, ev, "typeNumeric", 5282249572905648128)
			u64(t, ev, "audio.codecNumeric", 4707755069515235328)
			u64(t, ev, "video.codecNumeric", 6220964544311721984)
			if id, ok := ev.Payload.UniqueID(); !ok || id != 4294967297 {
				t.Errorf("UniqueID() = %d, %v, want 4294967297", id, ok)
			}
			if v, ok := ev.Payload.UserVar("_origin"); !ok || v != "emsflow" {
				t.Errorf("UserVar(_origin) = %q, %v, want emsflow", v, ok)
			}
		}, 1506336133},
		{"inStreamClosed.json", event.InStreamClosed, 1181, func(t *testing.T, ev *event.Event) {
			if ev.Payload.Name() != "1" {
				t.Errorf("Name() = %q, want 1", ev.Payload.Name())
			}
			str(t, ev, "upTime", "1601612.9312")
		}, 1506539911},
		{"outStreamCreated_hls.json", event.OutStreamCreated, 7, func(t *testing.T, ev *event.Event) {
			str(t, ev, "hlsSettings.groupName", "hlsa1")
			str(t, ev, "hlsSettings.localStreamName", "1")
			tf, _ := ev.Payload.String("hlsSettings.targetFolder")
			if got, want := event.NormalizePath(tf), "F:/EVOSTREAMMS/evostreamms17/evo-webroot/hlsa1/1"; got != want {
				t.Errorf("normalized targetFolder = %q, want %q", got, want)
			}
			if id, ok := ev.Payload.ConfigID(event.HLSSettings); !ok || id != 3 {
				t.Errorf("ConfigID(hlsSettings) = %d, %v, want 3", id, ok)
			}
			if ev.Payload.StreamType() != "OFHLS" {
				t.Errorf("StreamType() = %q, want OFHLS", ev.Payload.StreamType())
			}
		}, 1506606234},
		{"outStreamCreated_record.json", event.OutStreamCreated, 4, func(t *testing.T, ev *event.Event) {
			if v, _ := ev.Payload.UserVar("_localStreamName"); v != "1" {
				t.Errorf("UserVar(_localStreamName) = %q, want 1", v)
			}
			p, _ := ev.Payload.String("recordSettings.computedPathToFile")
			if got, want := event.NormalizePath(p), "F:/EVOSTREAMMS/evostreamms17/media/1_0001.mp4"; got != want {
				t.Errorf("normalized computedPathToFile = %q, want %q", got, want)
			}
			u64(t, ev, "typeNumeric", 5712338184231190528)
		}, 1505795548},
		{"recordChunkCreated.json", event.RecordChunkCreated, 3, func(t *testing.T, ev *event.Event) {
			if got, want := ev.Payload.File(), "F:/EVOSTREAMMS/evostreamms17/media/1_0001.mp4"; got != want {
				t.Errorf("File() = %q, want %q", got, want)
			}
			if got := ev.Payload.UserVars("")["_localStreamName"]; got != "1" {
				t.Errorf("UserVars()[_localStreamName] = %q, want 1", got)
			}
		}, 1505971910},
		{"recordChunkClosed.json", event.RecordChunkClosed, 9, func(t *testing.T, ev *event.Event) {
			if got, want := ev.Payload.File(), "F:/EVOSTREAMMS/evostreamms17/media/1.mp4"; got != want {
				t.Errorf("File() = %q, want %q", got, want)
			}
			u64(t, ev, "frameCount", 100082)
			str(t, ev, "stopTime", "2017-09-19T05:32:27.000")
		}, 1505799147},
		{"serverStarted.json", event.ServerStarted, 1, func(t *testing.T, ev *event.Event) {
			str(t, ev, "branchName", "feature/azure_license")
			str(t, ev, "releaseNumber", "1.7.1")
			if b, _ := ev.Payload.String("banner"); !strings.Contains(b, "on branch: feature/azure_license - PacMan|m|") {
				t.Errorf("banner = %q, want the escaped slash decoded", b)
			}
			if ev.ProcessID != 4792 {
				t.Errorf("ProcessID = %d, want 4792", ev.ProcessID)
			}
		}, 1475233878},
		{"streamCreated_old.json", event.StreamCreated, 0, func(t *testing.T, ev *event.Event) {
			if id, ok := ev.Payload.UniqueID(); !ok || id != 1 {
				t.Errorf("UniqueID() = %d, %v, want 1", id, ok)
			}
			str(t, ev, "upTime", "1.0000")
			if ev.ProcessID != 0 {
				t.Errorf("ProcessID = %d, want 0 for the old envelope", ev.ProcessID)
			}
		}, 0},
		{"hlsChunkClosed.json", event.HLSChunkClosed, 42, func(t *testing.T, ev *event.Event) {
			if got, want := ev.Payload.File(), "/var/evo-webroot/cam1/cam1/segment_1506606234534_17.ts"; got != want {
				t.Errorf("File() = %q, want %q", got, want)
			}
			str(t, ev, "segmentDuration", "10010.0000")
		}, 1506606410},
		{"outStreamClosed_dash.json", event.OutStreamClosed, 57, func(t *testing.T, ev *event.Event) {
			str(t, ev, "dashSettings.groupName", "dashc1")
			vf, _ := ev.Payload.String("dashSettings.videoFolder")
			if got, want := event.NormalizePath(vf), "F:/EVOSTREAMMS/evostreamms17/evo-webroot/dashc1/1/video"; got != want {
				t.Errorf("normalized videoFolder = %q, want %q", got, want)
			}
		}, 1506606912},
		{"timerTriggered.json", event.TimerTriggered, 12, func(t *testing.T, ev *event.Event) {
			if v, _ := ev.Payload.UserVar("_uniqueId"); v != "12" {
				t.Errorf("UserVar(_uniqueId) = %q, want 12", v)
			}
			if id, ok := ev.Payload.TimerID(); !ok || id != 9 {
				t.Errorf("TimerID() = %d, %v, want 9", id, ok)
			}
			if n, ok := ev.Payload.TriggerCount(); !ok || n != 1 {
				t.Errorf("TriggerCount() = %d, %v, want 1", n, ok)
			}
			if ev.Payload.TimerValue() != "3600" {
				t.Errorf("TimerValue() = %q, want 3600", ev.Payload.TimerValue())
			}
		}, 1505799148},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := fixture(t, tt.file)
			before := len(env.journal.events())
			a := post(t, env.url+"/evowebservices", string(body))
			if a.status != http.StatusOK {
				t.Fatalf("status = %d (%s), want 200", a.status, a.raw)
			}
			if got := a.body["accepted"]; got != float64(1) {
				t.Errorf("accepted = %v, want 1", got)
			}
			evs := env.journal.events()
			if len(evs) != before+1 {
				t.Fatalf("journal holds %d events, want %d", len(evs), before+1)
			}
			ev := evs[len(evs)-1]
			if ev.Type != tt.typ || ev.ID != tt.id || ev.Timestamp != tt.wantTS {
				t.Errorf("event = %s id %d ts %d, want %s id %d ts %d", ev.Type, ev.ID, ev.Timestamp, tt.typ, tt.id, tt.wantTS)
			}
			if !bytes.Equal(ev.Raw, bytes.TrimSpace(body)) {
				t.Errorf("Raw differs from the body EMS sent")
			}
			if ev.EMS != "" {
				t.Errorf("EMS = %q, want empty with no EMS configured", ev.EMS)
			}
			tt.check(t, ev)
		})
	}
	if got := scrape(t, env.url, "emsflow_webhook_events_received_total", "type", event.InStreamCreated); got != 2 {
		t.Errorf("received{type=inStreamCreated} = %v, want 2", got)
	}
}

func TestServeAndShutdown(t *testing.T) {
	j := &fakeJournal{}
	reg := prometheus.NewRegistry()
	s, err := New(Config{Listen: "127.0.0.1:0"}, j, nil, reg, reg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	base := "http://" + l.Addr().String()

	a := post(t, base+"/evowebservices/", string(fixture(t, "recordChunkClosed.json")))
	if a.status != http.StatusOK {
		t.Fatalf("status = %d (%s), want 200", a.status, a.raw)
	}
	if got := s.Addr(); got != l.Addr().String() {
		t.Errorf("Addr() = %q, want %q", got, l.Addr().String())
	}
	if evs := j.events(); len(evs) != 1 || evs[0].Type != event.RecordChunkClosed {
		t.Fatalf("journal = %v, want one recordChunkClosed", evs)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v after Shutdown, want nil", err)
	}
}

func TestListenAndServeBadAddress(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:notaport"}, &fakeJournal{}, nil, nil, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ListenAndServe(); err == nil || !strings.Contains(err.Error(), "listen on 127.0.0.1:notaport") {
		t.Errorf("ListenAndServe() = %v, want a listen error naming the address", err)
	}
}

func TestPaths(t *testing.T) {
	env := newTestEnv(t, Config{Paths: []string{"/evowebservices", "/ems/events/"}}, nil, nil)
	body := string(fixture(t, "timerTriggered.json"))
	tests := []struct {
		path string
		want int
	}{
		{"/evowebservices", 200},
		{"/evowebservices/", 200},
		{"/ems/events", 200},
		{"/ems/events/", 200},
		{"/other", 404},
		{"/evowebservices/a/b", 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			a := post(t, env.url+tt.path, body)
			if a.status != tt.want {
				t.Fatalf("POST %s: status = %d (%s), want %d", tt.path, a.status, a.raw, tt.want)
			}
			if tt.want != 200 && a.body["error"] == nil {
				t.Errorf("answer %q has no error field", a.raw)
			}
		})
	}
	if n := len(env.journal.events()); n != 4 {
		t.Errorf("journal holds %d events, want 4", n)
	}
}

func TestBatch(t *testing.T) {
	env := newTestEnv(t, Config{}, nil, nil)
	files := []string{"inStreamCreated.json", "outStreamCreated_hls.json", "hlsChunkClosed.json"}
	var parts []string
	for _, f := range files {
		parts = append(parts, string(fixture(t, f)))
	}
	a := post(t, env.url+"/evowebservices", "[\n"+strings.Join(parts, ",\n")+"\n]")
	if a.status != http.StatusOK || a.body["accepted"] != float64(3) {
		t.Fatalf("answer = %d %s, want 200 accepted 3", a.status, a.raw)
	}
	env.journal.mu.Lock()
	nb := len(env.journal.batches)
	env.journal.mu.Unlock()
	if nb != 1 {
		t.Errorf("journal got %d appends, want 1 for one batch", nb)
	}
	evs := env.journal.events()
	want := []string{event.InStreamCreated, event.OutStreamCreated, event.HLSChunkClosed}
	if len(evs) != len(want) {
		t.Fatalf("journal holds %d events, want %d", len(evs), len(want))
	}
	for i, ev := range evs {
		if ev.Type != want[i] {
			t.Errorf("event %d type = %s, want %s", i, ev.Type, want[i])
		}
		if !bytes.Equal(ev.Raw, bytes.TrimSpace([]byte(parts[i]))) {
			t.Errorf("event %d Raw differs from its batch element", i)
		}
	}
}

func TestBadRequests(t *testing.T) {
	env := newTestEnv(t, Config{}, nil, nil)
	tests := []struct {
		name       string
		body       string
		wantReason string
		wantMsg    string
	}{
		{"malformed json", `{"type":"inStreamCreated",`, ReasonBadJSON, "decode event"},
		{"not an object", `"inStreamCreated"`, ReasonBadJSON, "not a JSON object"},
		{"no type", `{"id":1,"payload":{"name":"a"}}`, ReasonNoType, "no type"},
		{"empty type", `{"type":"  ","payload":{}}`, ReasonNoType, "no type"},
		{"type not a string", `{"type":12,"payload":{}}`, ReasonBadJSON, "type is not a string"},
		{"empty body", ``, ReasonBadJSON, "empty body"},
		{"whitespace body", " \n\t ", ReasonBadJSON, "empty body"},
		{"empty batch", `[]`, ReasonBadJSON, "empty batch"},
		{"batch with a bad element", `[{"type":"a"},{"payload":{}}]`, ReasonNoType, "batch element 1"},
		{"payload not an object", `{"type":"a","payload":[1]}`, ReasonBadJSON, "payload is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := scrape(t, env.url, "emsflow_webhook_rejected_total", "reason", tt.wantReason)
			a := post(t, env.url+"/evowebservices", tt.body)
			if a.status != http.StatusBadRequest {
				t.Fatalf("status = %d (%s), want 400", a.status, a.raw)
			}
			msg, _ := a.body["error"].(string)
			if !strings.Contains(msg, tt.wantMsg) || strings.Contains(msg, "\n") {
				t.Errorf("error = %q, want one line containing %q", msg, tt.wantMsg)
			}
			if got := scrape(t, env.url, "emsflow_webhook_rejected_total", "reason", tt.wantReason); got != before+1 {
				t.Errorf("rejected{reason=%s} = %v, want %v", tt.wantReason, got, before+1)
			}
		})
	}
	if n := len(env.journal.events()); n != 0 {
		t.Errorf("journal holds %d events after bad requests, want 0", n)
	}
}

func TestAuth(t *testing.T) {
	const token = "s3cr3t-t0ken"
	var logBuf syncBuffer
	j := &fakeJournal{}
	reg := prometheus.NewRegistry()
	s, err := New(Config{AuthToken: token}, j, nil, reg, reg, zerolog.New(&logBuf).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	body := string(fixture(t, "timerTriggered.json"))
	tests := []struct {
		name   string
		query  string
		header map[string]string
		want   int
	}{
		{"missing", "", nil, 401},
		{"wrong bearer", "", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"wrong header", "", map[string]string{"X-Emsflow-Token": "nope"}, 401},
		{"wrong query", "?token=nope", nil, 401},
		{"prefix of the token", "?token=s3cr3t", nil, 401},
		{"basic auth is not a bearer", "", map[string]string{"Authorization": "Basic " + token}, 401},
		{"bearer", "", map[string]string{"Authorization": "Bearer " + token}, 200},
		{"bearer lower case scheme", "", map[string]string{"Authorization": "bearer " + token}, 200},
		{"header", "", map[string]string{"X-Emsflow-Token": token}, 200},
		{"query", "?token=" + token, nil, 200},
		{"query with trailing slash path", "/?token=" + token, nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, http.MethodPost, hs.URL+"/evowebservices"+tt.query, strings.NewReader(body), tt.header)
			if a.status != tt.want {
				t.Fatalf("status = %d (%s), want %d", a.status, a.raw, tt.want)
			}
			if tt.want == 401 && a.body["error"] != "missing or wrong token" {
				t.Errorf("error = %v, want \"missing or wrong token\"", a.body["error"])
			}
		})
	}
	if got := scrape(t, hs.URL, "emsflow_webhook_rejected_total", "reason", ReasonUnauthorized); got != 6 {
		t.Errorf("rejected{reason=unauthorized} = %v, want 6", got)
	}
	if n := len(j.events()); n != 5 {
		t.Errorf("journal holds %d events, want 5", n)
	}
	logs := logBuf.String()
	if !strings.Contains(logs, `"path":"/evowebservices"`) {
		t.Fatalf("access log does not show the path; logs:\n%s", logs)
	}
	if strings.Contains(logs, token) || strings.Contains(logs, "token=") {
		t.Errorf("the token or the query string was logged:\n%s", logs)
	}
	if !strings.Contains(logs, `"security":true`) {
		t.Errorf("refused auth is not logged as a security event:\n%s", logs)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of server goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// unsized hides a reader's length, so the client sends the body chunked without
// Content-Length and the limit must be enforced while reading.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestBodyLimit(t *testing.T) {
	const limit = 2048
	env := newTestEnv(t, Config{MaxBodyBytes: limit}, nil, nil)
	small := string(fixture(t, "timerTriggered.json"))
	big := `{"type":"timerTriggered","payload":{"pad":"` + strings.Repeat("x", limit) + `"}}`
	tests := []struct {
		name string
		body io.Reader
		want int
	}{
		{"under the limit", strings.NewReader(small), 200},
		{"over the limit with content length", strings.NewReader(big), 413},
		{"over the limit chunked", unsized{strings.NewReader(big)}, 413},
		{"under the limit chunked", unsized{strings.NewReader(small)}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, http.MethodPost, env.url+"/evowebservices", tt.body, nil)
			if a.status != tt.want {
				t.Fatalf("status = %d (%s), want %d", a.status, a.raw, tt.want)
			}
			if tt.want == 413 && !strings.Contains(fmt.Sprint(a.body["error"]), "limit of 2048") {
				t.Errorf("error = %v, want it to name the limit", a.body["error"])
			}
		})
	}
	if got := scrape(t, env.url, "emsflow_webhook_rejected_total", "reason", ReasonTooLarge); got != 2 {
		t.Errorf("rejected{reason=too_large} = %v, want 2", got)
	}
	if n := len(env.journal.events()); n != 2 {
		t.Errorf("journal holds %d events, want 2", n)
	}
}

func TestJournalUnavailable(t *testing.T) {
	env := newTestEnv(t, Config{}, &fakeJournal{err: errors.New("nats: no responders")}, nil)
	a := post(t, env.url+"/evowebservices", string(fixture(t, "inStreamCreated.json")))
	if a.status != http.StatusServiceUnavailable {
		t.Fatalf("status = %d (%s), want 503", a.status, a.raw)
	}
	if msg := fmt.Sprint(a.body["error"]); !strings.Contains(msg, "journal unavailable") || strings.Contains(msg, "nats") {
		t.Errorf("error = %q, want a journal-unavailable message that hides the internal error", msg)
	}
	if a.header.Get("Retry-After") == "" {
		t.Error("no Retry-After header on 503")
	}
	if got := scrape(t, env.url, "emsflow_webhook_rejected_total", "reason", ReasonJournalUnavailable); got != 1 {
		t.Errorf("rejected{reason=journal_unavailable} = %v, want 1", got)
	}
	if got, ok := scrapeValue(t, env.url, "emsflow_webhook_events_accepted_total"); ok {
		t.Errorf("accepted = %v, want no accepted events", got)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	env := newTestEnv(t, Config{}, nil, nil)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		t.Run(m, func(t *testing.T) {
			a := do(t, m, env.url+"/evowebservices", nil, nil)
			if a.status != http.StatusMethodNotAllowed {
				t.Fatalf("status = %d, want 405", a.status)
			}
			if got := a.header.Get("Allow"); got != http.MethodPost {
				t.Errorf("Allow = %q, want POST", got)
			}
		})
	}
	if got := scrape(t, env.url, "emsflow_webhook_rejected_total", "reason", ReasonMethod); got != 3 {
		t.Errorf("rejected{reason=method} = %v, want 3", got)
	}
	if a := do(t, http.MethodPost, env.url+"/healthz", nil, nil); a.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz status = %d, want 405", a.status)
	}
}

func TestUnknownTypeAccepted(t *testing.T) {
	env := newTestEnv(t, Config{}, nil, nil)
	a := post(t, env.url+"/evowebservices", `{"id":5,"payload":{"PID":1,"x":1},"processId":1,"timestamp":1,"type":"pullStreamFailed"}`)
	if a.status != http.StatusOK {
		t.Fatalf("status = %d (%s), want 200", a.status, a.raw)
	}
	evs := env.journal.events()
	if len(evs) != 1 || evs[0].Type != "pullStreamFailed" {
		t.Fatalf("journal = %v, want the pullStreamFailed event", evs)
	}
	if got := scrape(t, env.url, "emsflow_webhook_events_received_total", "type", "unknown"); got != 1 {
		t.Errorf("received{type=unknown} = %v, want 1", got)
	}
}

func TestAttribution(t *testing.T) {
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	elsewhere := netip.MustParsePrefix("10.0.0.0/8")
	two := func(firstAddrs []netip.Prefix) Config {
		return Config{
			EMS: []EMSSource{
				{Name: "origin", Addresses: firstAddrs, CustomData: "origin-1"},
				{Name: "edge", Addresses: []netip.Prefix{elsewhere}, CustomData: "42"},
			},
			DefaultEMS: "origin",
		}
	}
	withCustom := func(cd string) string {
		return `{"id":1,"payload":{"PID":1,"customData":` + cd + `,"file":"/x.ts"},"processId":1,"timestamp":1,"type":"hlsChunkClosed"}`
	}
	tests := []struct {
		name             string
		cfg              Config
		path             string
		body             string
		wantStatus       int
		wantEMS          string
		wantUnattributed float64
	}{
		{"path suffix", two(nil), "/evowebservices/edge", withCustom("null"), 200, "edge", 0},
		{"path suffix with trailing slash", two(nil), "/evowebservices/edge/", withCustom("null"), 200, "edge", 0},
		{"path suffix wins over custom data", two(nil), "/evowebservices/edge", withCustom(`"origin-1"`), 200, "edge", 0},
		{"custom data string", two(nil), "/evowebservices", withCustom(`"origin-1"`), 200, "origin", 0},
		{"custom data number", two(nil), "/evowebservices", withCustom(`42`), 200, "edge", 0},
		{"custom data wins over peer", two([]netip.Prefix{loopback}), "/evowebservices", withCustom(`42`), 200, "edge", 0},
		{"peer address", Config{EMS: []EMSSource{{Name: "a", Addresses: []netip.Prefix{elsewhere}}, {Name: "b", Addresses: []netip.Prefix{loopback}}}, DefaultEMS: "a"}, "/evowebservices", withCustom("null"), 200, "b", 0},
		{"unmatched custom data falls through to the peer", two([]netip.Prefix{loopback}), "/evowebservices", withCustom(`"nobody"`), 200, "origin", 0},
		{"nothing matches: default, counted", two(nil), "/evowebservices", withCustom(`{"a":1}`), 200, "origin", 1},
		{"single ems needs nothing", Config{EMS: []EMSSource{{Name: "solo"}}}, "/evowebservices", withCustom("null"), 200, "solo", 0},
		{"single ems path suffix", Config{EMS: []EMSSource{{Name: "solo"}}}, "/evowebservices/solo", withCustom("null"), 200, "solo", 0},
		{"unknown suffix", two(nil), "/evowebservices/edeg", withCustom("null"), 404, "", 0},
		{"suffix without ems config", Config{}, "/evowebservices/edge", withCustom("null"), 404, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, tt.cfg, nil, nil)
			a := post(t, env.url+tt.path, tt.body)
			if a.status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", a.status, a.raw, tt.wantStatus)
			}
			evs := env.journal.events()
			if tt.wantStatus != 200 {
				if msg := fmt.Sprint(a.body["error"]); !strings.Contains(msg, "unknown EMS") {
					t.Errorf("error = %q, want it to say unknown EMS", msg)
				}
				if got := scrape(t, env.url, "emsflow_webhook_rejected_total", "reason", ReasonUnknownEMS); got != 1 {
					t.Errorf("rejected{reason=unknown_ems} = %v, want 1", got)
				}
				if len(evs) != 0 {
					t.Errorf("journal holds %d events, want 0", len(evs))
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("journal holds %d events, want 1", len(evs))
			}
			if evs[0].EMS != tt.wantEMS {
				t.Errorf("EMS = %q, want %q", evs[0].EMS, tt.wantEMS)
			}
			if got := scrape(t, env.url, "emsflow_webhook_unattributed_events_total"); got != tt.wantUnattributed {
				t.Errorf("unattributed = %v, want %v", got, tt.wantUnattributed)
			}
			if got := scrape(t, env.url, "emsflow_webhook_events_accepted_total", "ems", tt.wantEMS); got != 1 {
				t.Errorf("accepted{ems=%s} = %v, want 1", tt.wantEMS, got)
			}
		})
	}
}

func TestMetricsExposed(t *testing.T) {
	env := newTestEnv(t, Config{}, nil, nil)
	for range 3 {
		if a := post(t, env.url+"/evowebservices", string(fixture(t, "hlsChunkClosed.json"))); a.status != 200 {
			t.Fatalf("status = %d, want 200", a.status)
		}
	}
	post(t, env.url+"/evowebservices", `{"payload":{}}`)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"emsflow_webhook_events_received_total", []string{"type", event.HLSChunkClosed}, 3},
		{"emsflow_webhook_events_accepted_total", []string{"ems", ""}, 3},
		{"emsflow_webhook_rejected_total", []string{"reason", ReasonNoType}, 1},
		{"emsflow_webhook_rejected_total", []string{"reason", ReasonBadJSON}, 0},
		{"emsflow_webhook_request_duration_seconds", []string{"code", "200"}, 3},
		{"emsflow_webhook_request_duration_seconds", []string{"code", "400"}, 1},
		{"emsflow_webhook_panics_total", nil, 0},
	}
	for _, c := range checks {
		if got := scrape(t, env.url, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestHealthAndReady(t *testing.T) {
	var mu sync.Mutex
	readyErr := errors.New("journal not connected")
	env := newTestEnv(t, Config{}, nil, ReadinessFunc(func() error {
		mu.Lock()
		defer mu.Unlock()
		return readyErr
	}))
	if a := do(t, http.MethodGet, env.url+"/healthz", nil, nil); a.status != 200 || a.body["status"] != "ok" {
		t.Errorf("healthz = %d %s, want 200 ok", a.status, a.raw)
	}
	a := do(t, http.MethodGet, env.url+"/readyz", nil, nil)
	if a.status != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(a.body["error"]), "journal not connected") {
		t.Errorf("readyz = %d %s, want 503 naming the cause", a.status, a.raw)
	}
	mu.Lock()
	readyErr = nil
	mu.Unlock()
	if a := do(t, http.MethodGet, env.url+"/readyz", nil, nil); a.status != 200 {
		t.Errorf("readyz = %d %s, want 200 once ready", a.status, a.raw)
	}
}

func TestShutdownWaitsForInFlightRequest(t *testing.T) {
	j := &fakeJournal{entered: make(chan struct{}, 1), release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	s, err := New(Config{}, j, nil, reg, reg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	url := "http://" + l.Addr().String() + "/evowebservices"

	answered := make(chan int, 1)
	go func() {
		resp, err := http.Post(url, "application/json", bytes.NewReader(fixture(t, "inStreamCreated.json")))
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-j.entered // the request is inside Append

	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- s.Shutdown(context.Background()) }()

	// Shutdown has begun once the listener refuses new connections.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepts connections after Shutdown was called")
		}
		time.Sleep(time.Millisecond) // polling interval, not a wait for an outcome
	}
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	case code := <-answered:
		t.Fatalf("request answered %d before the journal was released", code)
	default:
	}

	close(j.release)
	if code := <-answered; code != http.StatusOK {
		t.Errorf("in-flight request answered %d, want 200", code)
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := len(j.events()); n != 1 {
		t.Errorf("journal holds %d events, want 1", n)
	}
}

func TestAppendSurvivesClientHangUp(t *testing.T) {
	j := &fakeJournal{entered: make(chan struct{}, 1), release: make(chan struct{})}
	env := newTestEnv(t, Config{}, j, nil)
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, env.url+"/evowebservices", bytes.NewReader(fixture(t, "recordChunkClosed.json")))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-j.entered
	cancel() // EMS hangs up while the journal writes
	if err := <-errc; err == nil {
		t.Fatal("request succeeded after cancel, want an error")
	}
	close(j.release)
	// The append goes on after the hang-up; wait for it with a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for len(j.events()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("event not stored after the sender hung up")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPanicRecovered(t *testing.T) {
	env := newTestEnv(t, Config{}, &fakeJournal{panicV: "boom"}, nil)
	a := post(t, env.url+"/evowebservices", string(fixture(t, "timerTriggered.json")))
	if a.status != http.StatusInternalServerError || a.body["error"] != "internal error" {
		t.Fatalf("answer = %d %s, want 500 internal error", a.status, a.raw)
	}
	if got := scrape(t, env.url, "emsflow_webhook_panics_total"); got != 1 {
		t.Errorf("panics = %v, want 1", got)
	}
	// The server keeps serving.
	if a := do(t, http.MethodGet, env.url+"/healthz", nil, nil); a.status != 200 {
		t.Errorf("healthz after panic = %d, want 200", a.status)
	}

	// At debug level the panicking request still has its access line, with the 500.
	var logBuf syncBuffer
	reg := prometheus.NewRegistry()
	s, err := New(Config{}, &fakeJournal{panicV: "boom"}, nil, reg, reg, zerolog.New(&logBuf).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	post(t, hs.URL+"/evowebservices", string(fixture(t, "timerTriggered.json")))
	if !regexp.MustCompile(`"status":500.*"message":"http request"`).MatchString(logBuf.String()) {
		t.Errorf("no access line with status 500 for the panicking request:\n%s", logBuf.String())
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"reserved path", Config{Paths: []string{"/metrics"}}, []string{`"/metrics": reserved`}},
		{"relative path", Config{Paths: []string{"events"}}, []string{`"events": must start with /`}},
		{"root path", Config{Paths: []string{"/"}}, []string{`"/": must start with / and name a path`}},
		{"pattern path", Config{Paths: []string{"/ev/{x}"}}, []string{"must not contain"}},
		{"duplicate path", Config{Paths: []string{"/a", "/a/"}}, []string{`"/a": listed twice`}},
		{"negative limit", Config{MaxBodyBytes: -1}, []string{"max body bytes -1"}},
		{"ems problems joined", Config{
			EMS: []EMSSource{
				{Name: ""}, {Name: "a/b"}, {Name: "x", CustomData: "c"}, {Name: "x", CustomData: "c"},
			},
			DefaultEMS: "nope",
		}, []string{"ems 1: name is empty", `"a/b": name must not contain`, `"x": listed twice`, `custom data "c" is also used by ems "x"`, `default ems "nope"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, &fakeJournal{}, nil, nil, nil, zerolog.Nop())
			if err == nil {
				t.Fatal("New succeeded, want a config error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Run("nil journal", func(t *testing.T) {
		if _, err := New(Config{}, nil, nil, nil, nil, zerolog.Nop()); err == nil {
			t.Error("New with a nil journal succeeded")
		}
	})
	t.Run("metrics registered twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := New(Config{}, &fakeJournal{}, nil, reg, reg, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		if _, err := New(Config{}, &fakeJournal{}, nil, reg, reg, zerolog.Nop()); err == nil {
			t.Error("second New on the same registry succeeded, want a registration error")
		}
	})
}

type nopJournal struct{}

func (nopJournal) Append(context.Context, []*event.Event) error { return nil }

// BenchmarkWebhook measures ingest of a realistic ~2 KB inStreamCreated through the full
// handler chain (routing, logging middleware, auth, decode, attribution, metrics) with a journal
// that returns at once.
func BenchmarkWebhook(b *testing.B) {
	s, err := New(Config{AuthToken: "t"}, nopJournal{}, nil, nil, nil, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	body := fixture(b, "inStreamCreated.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/evowebservices?token=t", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status = %d: %s", rec.Code, rec.Body)
		}
	}
}

func TestParseAddresses(t *testing.T) {
	got, err := ParseAddresses([]string{"10.0.0.5", " 192.168.1.7/24 ", "::1", "::ffff:10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.5/32", "192.168.1.0/24", "::1/128", "10.1.2.3/32"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, got[i], want[i])
		}
	}
	_, err = ParseAddresses([]string{"10.0.0.300", "ems-host", "10.0.0.1"})
	if err == nil || !strings.Contains(err.Error(), `"10.0.0.300"`) || !strings.Contains(err.Error(), `"ems-host"`) {
		t.Errorf("error = %v, want both bad entries named", err)
	}
}

func TestPeerAddr(t *testing.T) {
	tests := map[string]string{
		"127.0.0.1:5000":           "127.0.0.1",
		"[::1]:5000":               "::1",
		"[::ffff:10.0.0.7]:5000":   "10.0.0.7",
		"[fe80::1%eth0]:5000":      "fe80::1",
		"10.0.0.9":                 "10.0.0.9",
		"not-an-address:5000":      "invalid IP",
		"@abstract-unix-socket-xx": "invalid IP",
	}
	for in, want := range tests {
		if got := peerAddr(in).String(); got != want {
			t.Errorf("peerAddr(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestRequestIDAndAccessLog: every answer carries an X-Request-Id, a refused request's log line
// carries the same id, and the per-request access line is written at debug level only.
func TestRequestIDAndAccessLog(t *testing.T) {
	for _, level := range []zerolog.Level{zerolog.DebugLevel, zerolog.InfoLevel} {
		t.Run(level.String(), func(t *testing.T) {
			var logBuf syncBuffer
			reg := prometheus.NewRegistry()
			s, err := New(Config{}, &fakeJournal{}, nil, reg, reg, zerolog.New(&logBuf).Level(level))
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(s.Handler())
			defer hs.Close()

			ok := post(t, hs.URL+"/evowebservices", string(fixture(t, "timerTriggered.json")))
			bad := post(t, hs.URL+"/evowebservices", `{"payload":{}}`)
			okID, badID := ok.header.Get("X-Request-Id"), bad.header.Get("X-Request-Id")
			if ok.status != 200 || bad.status != 400 {
				t.Fatalf("statuses %d, %d; want 200, 400", ok.status, bad.status)
			}
			if okID == "" || badID == "" || okID == badID {
				t.Fatalf("request ids %q and %q: want two distinct ids", okID, badID)
			}
			logs := logBuf.String()
			if !regexp.MustCompile(`"level":"warn".*"request_id":"` + badID + `"`).MatchString(logs) {
				t.Errorf("the refusal's log line does not carry its request id %s:\n%s", badID, logs)
			}
			access := strings.Count(logs, `"message":"http request"`)
			if want := map[zerolog.Level]int{zerolog.DebugLevel: 2, zerolog.InfoLevel: 0}[level]; access != want {
				t.Errorf("%d access lines at %s level, want %d:\n%s", access, level, want, logs)
			}
			if level == zerolog.DebugLevel && !strings.Contains(logs, `"request_id":"`+okID+`"`) {
				t.Errorf("no debug line carries the accepted request's id %s:\n%s", okID, logs)
			}
		})
	}
}
