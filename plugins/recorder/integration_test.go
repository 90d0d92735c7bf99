package recorder

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/autorouter"
	"github.com/emsflow/emsflow/plugins/internal/streamtest"
)

const wait = 30 * time.Second

func build(t *testing.T, f *streamtest.Fleet, factory func(string, json.RawMessage, plugins.Deps) (plugins.Plugin, error), name string, params map[string]any) plugins.Plugin {
	t.Helper()
	raw, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	p, err := factory(name, raw, f.Deps(name))
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	return p
}

func recordsOf(t *testing.T, f *streamtest.Fleet, sim, name string) []event.Payload {
	t.Helper()
	cl, err := f.Configs(t.Context(), sim)
	if err != nil {
		t.Fatalf("list configs of %s: %v", sim, err)
	}
	var out []event.Payload
	for _, r := range cl.Record {
		if n, _ := r.String("localStreamName"); n == name {
			out = append(out, r)
		}
	}
	return out
}

// mp4s returns the MP4 files in dir, sorted.
func mp4s(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// probe returns the duration in seconds of a media file and whether it has video, by ffprobe.
func probe(t *testing.T, file string) (float64, bool) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type",
		"-of", "default=noprint_wrappers=1", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	var dur float64
	video := false
	for l := range strings.Lines(string(out)) {
		k, v, _ := strings.Cut(strings.TrimSpace(l), "=")
		switch {
		case k == "duration":
			dur, _ = strconv.ParseFloat(v, 64)
		case k == "codec_type" && v == "video":
			video = true
		}
	}
	return dur, video
}

func requireFFmpeg(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"/usr/bin/ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
}

// TestRecordsRotatesAndCleansUp: a stream published on A is recorded once (every event comes
// twice) into real MP4 files that rotate every period_time; its routed copy on B is not
// recorded; when the stream ends its record config goes.
func TestRecordsRotatesAndCleansUp(t *testing.T) {
	requireFFmpeg(t)
	t.Parallel()
	f := streamtest.New(t, streamtest.Options{}, "a", "b")
	media := t.TempDir()
	router := build(t, f, autorouter.Factory, "Router", map[string]any{
		"destination_uri": f.Sim("b").RTMPURL(), "ems": []string{"a"}, "reconcile_interval": 0,
	})
	rec := build(t, f, Factory, "Recorder", map[string]any{
		"file_location": media, "period_time": 1, "reconcile_interval": 0,
	}).(*Recorder)
	f.HandleTwice(true)
	f.Attach(router)
	f.Attach(rec)

	if _, err := f.Sim("a").Publish("cam"); err != nil {
		t.Fatal(err)
	}
	streamtest.WaitFor(t, wait, "three rotated MP4 files", func() bool { return len(mp4s(t, media)) >= 3 })
	streamtest.WaitFor(t, wait, "B's copy skipped", func() bool { return rec.metrics.Skipped("loop_guard") >= 2 })
	if n := len(recordsOf(t, f, "a", "cam")); n != 1 {
		t.Errorf("A has %d record configs of cam, want 1", n)
	}
	if n := len(recordsOf(t, f, "b", "cam")); n != 0 {
		t.Errorf("B records its routed copy: %d record configs", n)
	}
	if got := rec.metrics.Actions("record"); got != 1 {
		t.Errorf("record actions: got %v, want 1", got)
	}
	files := mp4s(t, media)
	for i, file := range files[:2] {
		if want := filepath.Join(media, "cam_part"+strconv.Itoa(10000 + i)[1:]+".mp4"); file != want {
			t.Errorf("file %d: got %s, want %s", i, file, want)
		}
		dur, video := probe(t, file)
		if !video || dur < 0.5 || dur > 2.5 {
			t.Errorf("%s: duration %.2fs, video %v; want about 1s of video", file, dur, video)
		}
	}

	if !f.Sim("a").Unpublish("cam") {
		t.Fatal("cam was not published")
	}
	streamtest.WaitFor(t, wait, "record config removed", func() bool { return len(recordsOf(t, f, "a", "cam")) == 0 })
	for _, err := range f.Failures() {
		t.Errorf("handle failed: %v", err)
	}
}

// TestReconcileRecordsWithoutEvents: A loses every event; reconciliation starts the recording
// within one interval and removes the config after the stream ended.
func TestReconcileRecordsWithoutEvents(t *testing.T) {
	requireFFmpeg(t)
	t.Parallel()
	f := streamtest.New(t, streamtest.Options{Configure: func(_ string, cfg *emssim.Config) {
		cfg.Faults.StopPosting = true
	}}, "a")
	media := t.TempDir()
	rec := build(t, f, Factory, "Recorder", map[string]any{
		"file_location": media, "period_time": 2, "format": "ts", "reconcile_interval": "500ms",
	}).(*Recorder)
	f.Attach(rec)
	f.RunReconciler(rec)
	if _, err := f.Sim("a").Publish("cam"); err != nil {
		t.Fatal(err)
	}
	streamtest.WaitFor(t, wait, "record config", func() bool { return len(recordsOf(t, f, "a", "cam")) == 1 })
	streamtest.WaitFor(t, wait, "a TS file", func() bool {
		_, err := os.Stat(filepath.Join(media, "cam_part0000.ts"))
		return err == nil
	})
	f.Sim("a").Unpublish("cam")
	streamtest.WaitFor(t, wait, "record config removed", func() bool { return len(recordsOf(t, f, "a", "cam")) == 0 })
	if got := rec.metrics.Repairs("record"); got != 1 {
		t.Errorf("record repairs: got %v, want 1", got)
	}
	if got := rec.metrics.Repairs("remove_record"); got != 1 {
		t.Errorf("remove repairs: got %v, want 1", got)
	}
	if f.Handled() != 0 {
		t.Errorf("%d events were handled; the simulator should have dropped them all", f.Handled())
	}
}
