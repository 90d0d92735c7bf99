package rules

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
)

// receiver is a real HTTP event sink that hands every event to an Engine, as the webhook and
// dispatcher would, and records the events and Handle's errors. It must be created before the
// Engine exists, as the simulators need its URL; set engine before events flow.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	engine  *Engine
	events  []*event.Event
	handled []*event.Event
	errs    []error
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// url is the sink URL of the EMS named ems (the path attributes events, as the webhook does).
func (r *receiver) url(ems string) string { return r.srv.URL + "/evowebservices/" + ems }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	evs, err := event.DecodeBatch(body)
	if err != nil {
		r.t.Errorf("receiver: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ems := strings.TrimPrefix(req.URL.Path, "/evowebservices/")
	for _, ev := range evs {
		ev.EMS = ems
		r.mu.Lock()
		r.events = append(r.events, ev)
		e := r.engine
		r.mu.Unlock()
		if e == nil {
			continue
		}
		err := e.Handle(req.Context(), ev)
		r.mu.Lock()
		r.handled = append(r.handled, ev)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s %s: %w", ev.EMS, ev.Type, err))
		}
		r.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

func (r *receiver) setEngine(e *Engine) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.engine = e
}

// ofType returns the received events of one type from one EMS.
func (r *receiver) ofType(ems, typ string) []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*event.Event
	for _, ev := range r.events {
		if ev.EMS == ems && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// handledPush reports whether the engine has finished with the outStreamClosed of the push of
// local stream name from EMS ems.
func (r *receiver) handledPush(ems, name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.handled {
		if n, _ := ev.Payload.String("pushSettings.localStreamName"); ev.EMS == ems && ev.Type == event.OutStreamClosed && n == name {
			return true
		}
	}
	return false
}

func (r *receiver) checkNoErrors(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		t.Errorf("Handle: %v", err)
	}
}

func startSim(t *testing.T, sinkURL, mediaDir string, faults emssim.Faults) *emssim.Sim {
	t.Helper()
	s, err := emssim.New(emssim.Config{
		APIAddr: "127.0.0.1:0", RTMPAddr: "127.0.0.1:0",
		Sinks:             []emssim.Sink{{URL: sinkURL}},
		MediaDir:          mediaDir,
		FFmpeg:            "/usr/bin/ffmpeg",
		ReconnectInterval: 100 * time.Millisecond,
		Faults:            faults,
		Log:               zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func simEngine(t *testing.T, params string, sims map[string]*emssim.Sim) *Engine {
	t.Helper()
	urls := map[string]string{}
	for name, s := range sims {
		urls[name] = s.APIURL()
	}
	deps := testDeps(t, urls)
	deps.DefaultEMS = "a"
	p, err := Factory("rules1", json.RawMessage(params), deps)
	if err != nil {
		t.Fatalf("Factory: %v", err)
	}
	return p.(*Engine)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func requireMedia(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"/usr/bin/ffmpeg", "/usr/bin/ffprobe"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
}

func client(t *testing.T, s *emssim.Sim) *emsclient.Client {
	t.Helper()
	c, err := emsclient.New(s.APIURL(), &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSimPublishedStreamGetsHLS: EMS posts every event twice (a duplicating network); a
// published stream gets exactly one HLS output, created by the rule, tagged, and writing real
// segments; the rule ignores the output's own events.
func TestSimPublishedStreamGetsHLS(t *testing.T) {
	requireMedia(t)
	t.Parallel()
	media := t.TempDir()
	recv := newReceiver(t)
	sim := startSim(t, recv.url("a"), media, emssim.Faults{DuplicateRate: 1})
	hlsRoot := filepath.Join(media, "hls")
	params := `{"rules":[
	  {"name":"hls","events":["inStreamCreated"],"except":["name=test*"],
	   "action":"createHLSStream localStreamNames={{.Name}} targetFolder=` + hlsRoot + ` groupName=live_{{.Name}} chunkLength=1 playlistType=rolling"},
	  {"name":"watch-outputs","events":["outStreamCreated"],
	   "action":"record localStreamName={{.Name}} pathToFile=` + filepath.Join(media, "rec") + `/{{.Name}}"}]}`
	eng := simEngine(t, params, map[string]*emssim.Sim{"a": sim})
	recv.setEngine(eng)

	if _, err := sim.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Publish("test1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "an HLS chunk closed", func() bool { return len(recv.ofType("a", event.HLSChunkClosed)) > 0 })

	if n := len(recv.ofType("a", event.InStreamCreated)); n != 4 {
		t.Errorf("inStreamCreated deliveries = %d, want 4 (two streams, each posted twice)", n)
	}
	lc, err := client(t, sim).ListConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(lc.HLS) != 1 {
		t.Fatalf("hls configs = %d, want 1: %v", len(lc.HLS), lc.HLS)
	}
	h := lc.HLS[0]
	if n, _ := h.String("localStreamName"); n != "cam1" {
		t.Errorf("hls config for %q, want cam1", n)
	}
	if v, _ := h.String(TagInstance); v != "rules1" {
		t.Errorf("hls config %s = %q, want rules1", TagInstance, v)
	}
	if v, _ := h.String(TagRule); v != "hls" {
		t.Errorf("hls config %s = %q, want hls", TagRule, v)
	}
	// The output's outStreamCreated carried the tag, so the outStreamCreated rule left it alone.
	if len(lc.Record) != 0 {
		t.Errorf("record configs = %d, want 0 (the HLS output is emsflow's own)", len(lc.Record))
	}
	out := recv.ofType("a", event.OutStreamCreated)
	if len(out) == 0 {
		t.Fatal("no outStreamCreated received")
	}
	if v, ok := out[0].Payload.UserVar(TagInstance); !ok || v != "rules1" {
		t.Errorf("outStreamCreated %s = %q, %v", TagInstance, v, ok)
	}

	chunk := recv.ofType("a", event.HLSChunkClosed)[0].Payload.File()
	if want := filepath.Join(hlsRoot, "live_cam1", "cam1") + "/"; !strings.HasPrefix(chunk, want) || filepath.Ext(chunk) != ".ts" {
		t.Errorf("chunk %s, want a .ts under %s", chunk, want)
	}
	probe, err := exec.CommandContext(t.Context(), "/usr/bin/ffprobe", "-v", "error", "-show_entries", "stream=codec_name",
		"-of", "csv=p=0", chunk).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", chunk, err, probe)
	}
	if !strings.Contains(string(probe), "h264") {
		t.Errorf("ffprobe %s: %q, want an h264 stream", chunk, probe)
	}

	// The same event handled again (a redelivery after the output exists) creates nothing.
	if err := eng.Handle(t.Context(), recv.ofType("a", event.InStreamCreated)[0]); err != nil {
		t.Fatal(err)
	}
	lc, err = client(t, sim).ListConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(lc.HLS) != 1 {
		t.Errorf("hls configs after redelivery = %d, want 1", len(lc.HLS))
	}
	recv.checkNoErrors(t)
}

// TestSimLostPushClosesInput: an operator pushes cam1 from EMS a to EMS b; when b loses the
// pushed stream, a closes the push output, and the rule shuts cam1 down on a. A push that
// emsflow made itself is left alone.
func TestSimLostPushClosesInput(t *testing.T) {
	t.Parallel()
	recv := newReceiver(t)
	a := startSim(t, recv.url("a"), t.TempDir(), emssim.Faults{})
	b := startSim(t, recv.url("b"), t.TempDir(), emssim.Faults{})
	eng := simEngine(t, exampleParams, map[string]*emssim.Sim{"a": a, "b": b})
	recv.setEngine(eng)
	ca, cb := client(t, a), client(t, b)

	inID, err := a.Publish("cam1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish("cam2"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []emsclient.PushStreamParams{
		{URI: b.RTMPURL(), LocalStreamName: "cam1", TargetStreamName: "cam1b", KeepAlive: emsclient.Bool(false)},
		{URI: b.RTMPURL(), LocalStreamName: "cam2", TargetStreamName: "cam2b", KeepAlive: emsclient.Bool(false),
			UserVars: map[string]string{TagInstance: "autorouter"}},
	} {
		if _, err := ca.PushStream(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "both pushes at b", func() bool { return len(recv.ofType("b", event.InStreamCreated)) == 2 })

	// b loses both pushed streams; a notices and closes both push outputs.
	for _, name := range []string{"cam1b", "cam2b"} {
		if err := cb.ShutdownStream(t.Context(), emsclient.ShutdownParams{LocalStreamName: name}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "both push outputs' closes handled at a", func() bool {
		return recv.handledPush("a", "cam1") && recv.handledPush("a", "cam2")
	})

	waitFor(t, 10*time.Second, "cam1 shut down at a", func() bool {
		streams, err := ca.ListStreams(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		has := map[string]bool{}
		for _, s := range streams {
			has[s.Name()] = true
		}
		return !has["cam1"]
	})
	if len(recv.ofType("a", event.InStreamClosed)) != 1 {
		t.Errorf("inStreamClosed at a = %d, want 1 (cam1 only)", len(recv.ofType("a", event.InStreamClosed)))
	}
	streams, err := ca.ListStreams(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range streams {
		if s.Name() == "cam2" {
			found = true
		}
		if id, _ := s.UniqueID(); id == inID {
			t.Errorf("stream %d (cam1) still runs", inID)
		}
	}
	if !found {
		t.Error("cam2 was shut down, but its push was emsflow's own")
	}
	for _, ev := range recv.ofType("a", event.OutStreamClosed) {
		if v, _ := ev.Payload.UserVar(TagInstance); v == "" {
			if id, _ := ev.Payload.Uint64("inStreamUniqueId"); id != inID {
				t.Errorf("cam1's push output closed with inStreamUniqueId %d, want %d", id, inID)
			}
		}
	}
	recv.checkNoErrors(t)
}
