package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/servicetest"
	"github.com/emsflow/emsflow/plugins/plugintest"
)

// bodyRecorder is a second EMS sink that keeps every body EMS posted, to compare with what
// emsflow logged.
type bodyRecorder struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (b *bodyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.bodies = append(b.bodies, body)
	b.mu.Unlock()
}

func (b *bodyRecorder) all() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.bodies)
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return buf.String()
}

// TestEMSSimEventsReachEventLog: the simulator posts to a running emsflow exactly as EMS does,
// and the EventLog shows every event, byte for byte in EMS's envelope.
func TestEMSSimEventsReachEventLog(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary, runs ffmpeg")
	}
	dir := t.TempDir()
	svc := servicetest.Start(t, dir, `{
  "journal": {"data_dir": "data"},
  "log": {"level": "warn"},
  "plugins": {"EventLog": {"plugin_switch": "enabled", "parameters": {"path": "events.jsonl"}}},
}`)
	rec := &bodyRecorder{}
	copySink := httptest.NewServer(rec)
	defer copySink.Close()

	sim, err := emssim.New(emssim.Config{
		APIAddr:  "127.0.0.1:0",
		RTMPAddr: "127.0.0.1:0",
		MediaDir: filepath.Join(dir, "media"),
		Sinks: []emssim.Sink{
			{URL: svc.URL("/evowebservices")},
			{URL: copySink.URL + "/copy"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	ems, err := emsclient.New(sim.APIURL(), &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ems.CreateHLSStream(t.Context(), emsclient.HLSParams{
		LocalStreamNames: []string{"cam1"}, TargetFolder: filepath.Join(dir, "media", "hls"),
		GroupName: "cam1", ChunkLength: 1,
	}); err != nil {
		t.Fatal(err)
	}
	// Let a few segments be written, then close everything: closes cascade as on EMS.
	ok := servicetest.Eventually(t.Context(), 30*time.Second, func() bool {
		n := 0
		for _, b := range rec.all() {
			if ev, err := event.Decode(b); err == nil && ev.Type == event.HLSChunkClosed {
				n++
			}
		}
		return n >= 3
	})
	if !ok {
		t.Fatal("emssim wrote no HLS chunks")
	}
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	sent := rec.all()
	var lines []string
	ok = servicetest.Eventually(t.Context(), 30*time.Second, func() bool {
		lines, _ = plugintest.ReadLines(filepath.Join(dir, "events.jsonl"))
		return len(lines) >= len(sent)
	})
	if !ok {
		t.Fatalf("EventLog has %d lines, the simulator sent %d events", len(lines), len(sent))
	}
	svc.Stop()

	want := map[string]bool{}
	types := map[string]int{}
	for _, b := range sent {
		want[compactJSON(t, b)] = true
		ev, err := event.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		types[ev.Type]++
	}
	got := map[string]bool{}
	for _, l := range lines {
		got[compactJSON(t, []byte(l))] = true
	}
	for w := range want {
		if !got[w] {
			t.Errorf("event missing from the EventLog: %.200s", w)
		}
	}
	if len(lines) != len(sent) {
		t.Errorf("EventLog has %d lines for %d events", len(lines), len(sent))
	}
	for _, typ := range []string{event.InStreamCreated, event.OutStreamCreated, event.HLSChunkClosed,
		event.HLSChildPlaylistUpdated, event.HLSMasterPlaylistUpdated, event.OutStreamClosed, event.InStreamClosed} {
		if types[typ] == 0 {
			t.Errorf("no %s among the %d events (%v)", typ, len(sent), types)
		}
	}
	t.Logf("%d events from emssim, all in the EventLog: %v", len(sent), types)
}
