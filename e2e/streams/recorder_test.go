package streams_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/servicetest"
	"github.com/emsflow/emsflow/plugins/provenance"
)

// requireFFmpeg skips when ffmpeg or ffprobe is missing: the simulator records with ffmpeg.
func requireFFmpeg(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"/usr/bin/ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
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

// probe returns a media file's duration in seconds and whether it has a video stream, as
// ffprobe reads them.
func probe(t *testing.T, file string) (float64, bool) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "ffprobe", "-v", "error",
		"-show_entries", "format=duration:stream=codec_type", "-of", "default=noprint_wrappers=1", file).Output()
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

// TestRecorderThroughService: a stream published on A is recorded once into real MP4 files that
// rotate every period_time, although every event POST comes twice and an event is redelivered;
// emsflow stops (SIGTERM) and the stream ends while it is down, so the inStreamClosed is lost:
// the reconciliation at restart removes the orphaned record config, and no second recording was
// ever started.
func TestRecorderThroughService(t *testing.T) {
	requireEndToEnd(t)
	requireFFmpeg(t)
	t.Parallel()
	f := newFleet(t, "a")
	media := t.TempDir()
	svc := servicetest.Start(t, t.TempDir(), serviceConfig(t, f.ems("a"), map[string]pluginEntry{
		"StreamRecorder": {"StreamRecorder", map[string]any{
			"file_location": media, "period_time": 1, "reconcile_interval": "1s",
		}},
	}))
	a := f.start("a", svc, emssim.Faults{DuplicateRate: 1})
	if _, err := a.Publish("cam"); err != nil {
		t.Fatal(err)
	}
	// Three files: the first two are closed (rotated) by then.
	waitFor(t, "three rotated MP4 files", func() bool { return len(mp4s(t, media)) >= 3 })
	waitFor(t, "emsflow accepting the duplicate inStreamCreated POST", func() bool {
		return duplicatesAccepted(a, event.InStreamCreated) >= 1
	})
	oneRecord := func(when string) event.Payload {
		t.Helper()
		recs := named(f.configs("a").Record, "cam")
		if len(recs) != 1 {
			t.Fatalf("%s: A has %d record configs of cam, want 1: %v", when, len(recs), recs)
		}
		return recs[0]
	}
	rec := oneRecord("after duplicated events")
	if by, _ := provenance.Creator(rec); by != "StreamRecorder" {
		t.Errorf("record config created by %q, want StreamRecorder: %v", by, rec)
	}
	if got := made(t, svc, "recorder", "StreamRecorder", "record"); got != 1 {
		t.Errorf("StreamRecorder recorded %v times, want 1", got)
	}

	redeliver(t, svc, "a", event.InStreamCreated, f.inbound("a", "cam")[0], 1_000_001)
	waitFor(t, "the redelivered event skipped as a duplicate", func() bool {
		return counter(t, svc, "recorder", "skipped", "StreamRecorder", "duplicate") >= 1 ||
			made(t, svc, "recorder", "StreamRecorder", "record") > 1
	})
	oneRecord("after a redelivered event")

	// SIGTERM, then the stream ends while emsflow is down: its inStreamClosed is lost and the
	// record config stays on A, until the reconciliation at restart removes it.
	svc.Stop()
	if !a.Unpublish("cam") {
		t.Fatal("cam was not published")
	}
	waitLost(t, a, event.InStreamClosed, 2) // the event and its duplicate
	oneRecord("after the stream ended while emsflow was down")
	svc.Restart()
	waitFor(t, "the orphaned record config removed", func() bool { return len(named(f.configs("a").Record, "cam")) == 0 })
	if got := counter(t, svc, "recorder", "repairs", "StreamRecorder", "remove_record"); got != 1 {
		t.Errorf("remove_record repairs after the restart: got %v, want 1", got)
	}

	// One recording only: one run of consecutively numbered files, cam_part0000.mp4 on; a second
	// recording of the same stream would have started a second run.
	files := mp4s(t, media)
	part := regexp.MustCompile(`^cam_part(\d{4})\.mp4$`)
	for i, file := range files {
		m := part.FindStringSubmatch(filepath.Base(file))
		if m == nil {
			t.Errorf("unexpected file %s, want cam_partNNNN.mp4 only", file)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n != i {
			t.Errorf("file %d is %s, want part %04d: %v", i, filepath.Base(file), i, files)
		}
	}
	for _, file := range files[:2] {
		dur, video := probe(t, file)
		if !video || dur <= 0 {
			t.Errorf("%s: duration %.2fs, video %v; want a video of some length", file, dur, video)
		}
		if dur > 2.5 {
			t.Errorf("%s: duration %.2fs; want about period_time (1s)", file, dur)
		}
	}
	t.Logf("%d MP4 files recorded", len(files))
}
