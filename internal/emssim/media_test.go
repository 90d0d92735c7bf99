package emssim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func requireFFmpeg(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"/usr/bin/ffmpeg", "/usr/bin/ffprobe"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
}

// ffprobe returns ffprobe's stream codec names for a media file or playlist.
func ffprobe(t *testing.T, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	args := []string{"-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"}
	if strings.HasSuffix(path, ".mpd") {
		// EMS names DASH segments .fmp4, which ffmpeg's dash demuxer refuses by default.
		args = append(args, "-allowed_extensions", "ALL")
	}
	out, err := exec.CommandContext(ctx, "/usr/bin/ffprobe", append(args, path)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", path, err, out)
	}
	return string(out)
}

func wantCodecs(t *testing.T, path string) {
	t.Helper()
	got := ffprobe(t, path)
	if !strings.Contains(got, "h264") || !strings.Contains(got, "aac") {
		t.Errorf("ffprobe %s: codecs %q, want h264 and aac", path, got)
	}
}

// assertCompleteOnArrival checks that each event's file existed at arrival with its final size,
// unless rolling cleanup deleted it later. The simulator removes a file before it posts the
// deletion event, and posts asynchronously, so a file found gone is given a few seconds for its
// deletedType event to arrive; a file gone with no such event fails. deletedType "" means no file
// may be deleted.
func assertCompleteOnArrival(t *testing.T, sk *sink, evs []received, deletedType string) {
	t.Helper()
	if len(evs) == 0 {
		t.Fatal("no events to check")
	}
	deletedLater := func(f string) bool {
		if deletedType == "" {
			return false
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if filesOf(sk.ofType(deletedType))[f] {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, e := range evs {
		f, _ := e.Env.Payload["file"].(string)
		fi, err := os.Stat(f)
		if err != nil {
			if !os.IsNotExist(err) || !deletedLater(f) {
				t.Errorf("%s names %s, which is gone with no %s event: %v", e.Env.Type, f, deletedType, err)
			}
			continue
		}
		if e.FileSize != fi.Size() || fi.Size() == 0 {
			t.Errorf("%s %s: size %d on arrival, %d now", e.Env.Type, f, e.FileSize, fi.Size())
		}
	}
}

func filesOf(evs []received) map[string]bool {
	m := map[string]bool{}
	for _, e := range evs {
		f, _ := e.Env.Payload["file"].(string)
		m[f] = true
	}
	return m
}

func TestHLS(t *testing.T) {
	requireFFmpeg(t)
	t.Parallel()
	ev := newSink(t)
	media := t.TempDir()
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}})
	if _, err := sim.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	r := mustSucceed(t, rawCall(t, sim.APIURL(), "createHLSStream",
		"localStreamNames=cam1 targetFolder="+media+" groupName=grp chunkLength=1 playlistType=rolling playlistLength=5 staleRetentionCount=1 _job=7"))
	cfgIDs := r.object(t)["configIds"].([]any)
	waitFor(t, 40*time.Second, "a rolled-out chunk", func() bool { return ev.count("hlsChunkDeleted") >= 1 })

	created := ev.ofType("outStreamCreated")
	if len(created) != 1 || created[0].Env.Payload["type"] != "OFHLS" {
		t.Fatalf("outStreamCreated: %d", len(created))
	}
	hs := created[0].Env.Payload["hlsSettings"].(map[string]any)
	streamDir := filepath.Join(media, "grp", "cam1")
	if hs["targetFolder"] != streamDir || hs["groupName"] != "grp" || hs["_job"] != "7" || num(hs["configId"]) != num(cfgIDs[0]) ||
		hs["masterPlaylistPath"] != filepath.Join(media, "grp", "playlist.m3u8") {
		t.Errorf("hlsSettings = %v", hs)
	}

	// As sent (envelope ids), each chunk's child playlist update comes right before it.
	all := ev.all()
	byID := map[uint64]received{}
	for _, e := range all {
		byID[e.Env.ID] = e
	}
	for _, c := range ev.ofType("hlsChunkClosed") {
		prev, ok := byID[c.Env.ID-1]
		if !ok || prev.Env.Type != "hlsChildPlaylistUpdated" {
			t.Errorf("event before hlsChunkClosed %d is %q, want hlsChildPlaylistUpdated", c.Env.ID, prev.Env.Type)
		}
		if f, _ := c.Env.Payload["file"].(string); filepath.Dir(f) != streamDir || !strings.HasPrefix(filepath.Base(f), "segment_") {
			t.Errorf("chunk %s not in %s", f, streamDir)
		}
	}
	deleted := filesOf(ev.ofType("hlsChunkDeleted"))
	for f := range deleted {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("deleted chunk %s still exists", f)
		}
	}
	assertCompleteOnArrival(t, ev, ev.ofType("hlsChunkClosed"), "hlsChunkDeleted")
	if ev.count("hlsMasterPlaylistUpdated") != 1 {
		t.Errorf("hlsMasterPlaylistUpdated count %d", ev.count("hlsMasterPlaylistUpdated"))
	}
	master, err := os.ReadFile(filepath.Join(media, "grp", "playlist.m3u8"))
	if err != nil || !strings.Contains(string(master), "cam1/playlist.m3u8") {
		t.Errorf("master playlist: %v %s", err, master)
	}
	wantCodecs(t, filepath.Join(streamDir, "playlist.m3u8"))

	// Closing the input closes the HLS output after its last chunk.
	sim.Unpublish("cam1")
	waitFor(t, 15*time.Second, "outStreamClosed", func() bool { return ev.count("outStreamClosed") == 1 })
	closed := ev.ofType("hlsChunkClosed")
	if last := closed[len(closed)-1]; last.Env.ID > ev.ofType("outStreamClosed")[0].Env.ID {
		t.Error("a chunk closed after outStreamClosed")
	}
	lc := mustSucceed(t, rawCall(t, sim.APIURL(), "listConfig", "")).object(t)
	st := lc["hls"].([]any)[0].(map[string]any)["status"].(map[string]any)["current"].(map[string]any)
	if num(st["code"]) != statusWaitingForStream {
		t.Errorf("hls status after input closed = %v, want 2", st)
	}
}

func TestDASH(t *testing.T) {
	requireFFmpeg(t)
	t.Parallel()
	ev := newSink(t)
	media := t.TempDir()
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}})
	if _, err := sim.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, rawCall(t, sim.APIURL(), "createDASHStream",
		"localStreamNames=cam1 targetFolder="+media+" groupName=dgrp chunkLength=1 playlistType=rolling playlistLength=2 staleRetentionCount=1"))
	waitFor(t, 40*time.Second, "a deleted DASH chunk", func() bool { return ev.count("dashChunkDeleted") >= 1 })

	var inits []received
	for _, e := range ev.ofType("outStreamCreated") {
		if e.Env.Payload["name"] == "segInitwriter" {
			inits = append(inits, e)
		}
	}
	if len(inits) != 2 {
		t.Fatalf("segInitwriter outStreamCreated = %d, want 2 (video, audio)", len(inits))
	}
	for _, e := range inits {
		p := e.Env.Payload["recordSettings"].(map[string]any)["computedPathToFile"].(string)
		if !strings.HasSuffix(p, "seg_init.mp4") || e.FileSize <= 0 {
			t.Errorf("init writer %s: size on arrival %d", p, e.FileSize)
		}
	}
	manifest := filepath.Join(media, "dgrp", "manifest.mpd")
	for _, e := range ev.ofType("dashPlaylistUpdated") {
		if e.Env.Payload["file"] != manifest {
			t.Errorf("dashPlaylistUpdated file %v, want %s", e.Env.Payload["file"], manifest)
		}
	}
	closed := ev.ofType("dashChunkClosed")
	for _, c := range closed {
		f := c.Env.Payload["file"].(string)
		rel, _ := filepath.Rel(filepath.Join(media, "dgrp", "cam1"), f)
		if !strings.HasPrefix(rel, "video/0/") && !strings.HasPrefix(rel, "audio/0/") || !strings.HasSuffix(f, ".fmp4") {
			t.Errorf("chunk %s not in <group>/<stream>/{video,audio}/0/", f)
		}
		if _, ok := c.Env.Payload["startTime"].(string); !ok {
			t.Errorf("startTime not a string: %v", c.Env.Payload)
		}
	}
	assertCompleteOnArrival(t, ev, closed, "dashChunkDeleted")
	wantCodecs(t, manifest)
}

func TestHDS(t *testing.T) {
	requireFFmpeg(t)
	t.Parallel()
	ev := newSink(t)
	media := t.TempDir()
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}})
	if _, err := sim.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, rawCall(t, sim.APIURL(), "createHDSStream",
		"localStreamNames=cam1 targetFolder="+media+" groupName=hgrp chunkLength=1"))
	waitFor(t, 40*time.Second, "two HDS fragments", func() bool { return ev.count("hdsChunkClosed") >= 2 })
	dir := filepath.Join(media, "hgrp", "cam1")
	for i, c := range ev.ofType("hdsChunkClosed") {
		if want := filepath.Join(dir, fmt.Sprintf("f4vSeg1-Frag%d", i+1)); c.Env.Payload["file"] != want {
			t.Errorf("fragment %d = %v, want %s", i, c.Env.Payload["file"], want)
		}
	}
	assertCompleteOnArrival(t, ev, ev.ofType("hdsChunkClosed"), "")
	for _, f := range []string{filepath.Join(dir, "bootstrap"), filepath.Join(dir, "cam1.f4m"),
		filepath.Join(media, "hgrp", "cam1.f4m"), filepath.Join(media, "hgrp", "cam1_v1.f4m")} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	child, _ := os.ReadFile(filepath.Join(dir, "cam1.f4m"))
	if !strings.Contains(string(child), `url="f4v"`) || !strings.Contains(string(child), `url="bootstrap"`) {
		t.Errorf("child manifest does not point at f4v fragments and bootstrap: %s", child)
	}
	if ev.ofType("hdsChildPlaylistUpdated")[0].Env.Payload["file"] != filepath.Join(dir, "cam1.f4m") ||
		ev.ofType("hdsMasterPlaylistUpdated")[0].Env.Payload["file"] != filepath.Join(media, "hgrp", "cam1.f4m") {
		t.Error("HDS manifest events name the wrong files")
	}
}

// TestRecordRotation: chunkLength rotation into _partNNNN files with user variables in the
// events; MP4s are complete at processStopped, as after EMS's evo-mp4writer.
func TestRecordRotation(t *testing.T) {
	requireFFmpeg(t)
	t.Parallel()
	ev := newSink(t)
	media := t.TempDir()
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}})
	// record before the stream exists: EMS allows it and starts when the stream appears.
	mustSucceed(t, rawCall(t, sim.APIURL(), "record",
		"localStreamName=cam1 pathToFile="+filepath.Join(media, "cam1")+" type=mp4 chunkLength=1 _localStreamName=cam1"))
	if _, err := sim.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 40*time.Second, "two mp4 parts assembled", func() bool { return ev.count("processStopped") >= 2 })
	closed := ev.ofType("recordChunkClosed")
	stopped := ev.ofType("processStopped")
	for i := range 2 {
		want := filepath.Join(media, fmt.Sprintf("cam1_part%04d.mp4", i))
		if closed[i].Env.Payload["file"] != want || closed[i].Env.Payload["_localStreamName"] != "cam1" {
			t.Errorf("recordChunkClosed %d: %v", i, closed[i].Env.Payload)
		}
		if stopped[i].Env.Payload["arguments"] != "-path="+want {
			t.Errorf("processStopped %d arguments %v", i, stopped[i].Env.Payload["arguments"])
		}
		fi, err := os.Stat(want)
		if err != nil || stopped[i].FileSize != fi.Size() {
			t.Errorf("%s: size at processStopped %d, now %v (%v)", want, stopped[i].FileSize, fi, err)
		}
		wantCodecs(t, want)
	}
	if ev.ofType("recordChunkCreated")[0].Env.Payload["_localStreamName"] != "cam1" {
		t.Error("recordChunkCreated lacks the user variable")
	}
}

// TestRecordRestartNumbering is the StreamRecorder rotation: shutdownStream permanently=0 on
// the record writer; the keepAlive record restarts into cam1_0001.ts.
func TestRecordRestartNumbering(t *testing.T) {
	requireFFmpeg(t)
	t.Parallel()
	ev := newSink(t)
	media := t.TempDir()
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}})
	if _, err := sim.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, rawCall(t, sim.APIURL(), "record",
		"localStreamName=cam1 pathToFile="+filepath.Join(media, "cam1")+" type=ts overwrite=0 keepAlive=1"))
	waitFor(t, 10*time.Second, "record writer", func() bool { return ev.count("outStreamCreated") == 1 })
	first := ev.ofType("outStreamCreated")[0].Env.Payload
	rs := first["recordSettings"].(map[string]any)
	if first["type"] != "OFTS" || rs["computedPathToFile"] != filepath.Join(media, "cam1.ts") {
		t.Fatalf("first writer: %v %v", first["type"], rs["computedPathToFile"])
	}
	waitFor(t, 20*time.Second, "a second of media", func() bool {
		parts, _ := filepath.Glob(filepath.Join(sim.staging, "job-*", "part*.ts"))
		for _, p := range parts {
			if fi, err := os.Stat(p); err == nil && fi.Size() > 20000 {
				return true
			}
		}
		return false
	})
	mustSucceed(t, rawCall(t, sim.APIURL(), "shutdownStream", fmt.Sprintf("id=%d permanently=0", num(first["uniqueId"]))))
	waitFor(t, 20*time.Second, "second writer and first file closed", func() bool {
		return ev.count("outStreamCreated") == 2 && ev.count("recordChunkClosed") == 1
	})
	second := ev.ofType("outStreamCreated")[1].Env.Payload["recordSettings"].(map[string]any)
	if second["computedPathToFile"] != filepath.Join(media, "cam1_0001.ts") {
		t.Errorf("restart wrote %v, want cam1_0001.ts", second["computedPathToFile"])
	}
	c := ev.ofType("recordChunkClosed")[0]
	if c.Env.Payload["file"] != filepath.Join(media, "cam1.ts") {
		t.Errorf("closed %v", c.Env.Payload["file"])
	}
	assertCompleteOnArrival(t, ev, []received{c}, "")
	wantCodecs(t, filepath.Join(media, "cam1.ts"))

	// Close leaves no ffmpeg behind.
	pids := sim.ffmpegPIDs()
	if len(pids) != 2 {
		t.Errorf("ffmpeg processes started: %v, want 2", pids)
	}
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("ffmpeg %d still running after Close", pid)
		}
	}
}
