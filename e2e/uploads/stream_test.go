package uploads_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/s3test"
	"github.com/emsflow/emsflow/plugins/s3upload"
)

// streamLength is how long the published stream runs in the tests without faults.
const streamLength = 30 * time.Second

// TestStreamMirroredInOrderAndPlayable: a 30 s stream from emssim with HLS, HDS and DASH output,
// its events posted to a running emsflow: every segment, playlist and manifest is in its bucket
// with the file's bytes, every stored playlist names only stored objects, no playlist version
// was stored before a segment it lists (server order, every version), and the bucket's HLS and
// DASH play over HTTP in ffprobe with as many packets as from disk.
func TestStreamMirroredInOrderAndPlayable(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.startStream(emssim.Faults{}, false)
	r.run(streamLength)
	r.endStream()
	r.waitMirrored(60 * time.Second)
	if st := r.sim.EventStats(); st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("emssim lost events without faults: %+v", st)
	}
	for _, o := range outputs {
		refs := r.assertReferencesStored(o)
		versions := r.assertServerOrder(o)
		files := len(r.diskFiles(o))
		t.Logf("%s: %d files mirrored; %d references of stored manifests present; %d manifest versions stored after what they list; %v files uploaded by backfill",
			o.bucket, files, refs, versions, r.metric("emsflow_s3upload_backfill_repairs_total", map[string]string{"plugin": o.plugin}))
	}
	r.svc.Stop()

	t.Run("hls plays from the bucket", func(t *testing.T) {
		o := hlsOutput
		r.s3.MakePublic(t, o.bucket)
		master := o.group + "/playlist.m3u8"
		segments := r.assertListsEverySegment(o, master, ".ts")
		before := len(r.requests(t))
		local := probePackets(t, filepath.Join(r.media, o.folder, filepath.FromSlash(master)))
		remote := probePackets(t, r.s3.URL(o.bucket, master))
		if remote != local || local == "" {
			t.Errorf("ffprobe over HTTP read packets %q (stream,count), from disk %q", remote, local)
		}
		fetched := map[string]bool{}
		for _, req := range r.requests(t)[before:] {
			if req.Operation == "s3_GetObject" && req.Status == http.StatusOK && req.Bucket == o.bucket {
				fetched[req.Key] = true
			}
		}
		for _, k := range segments {
			if !fetched[k] {
				t.Errorf("ffprobe never fetched segment %s from the bucket", k)
			}
		}
		t.Logf("ffprobe read %d segments over HTTP: packets %s, as from disk", len(segments), remote)
	})

	t.Run("dash plays from the bucket", func(t *testing.T) {
		o := dashOutput
		r.s3.MakePublic(t, o.bucket)
		manifest := o.group + "/manifest.mpd"
		segments := r.assertListsEverySegment(o, manifest, ".fmp4")
		local := probePackets(t, filepath.Join(r.media, o.folder, filepath.FromSlash(manifest)))
		remote := probePackets(t, r.s3.URL(o.bucket, manifest))
		if remote != local || local == "" {
			t.Errorf("ffprobe over HTTP read packets %q (stream,count), from disk %q", remote, local)
		}
		// ffmpeg 5.1's DASH demuxer starts a SegmentTimeline at its second entry, so a player
		// fetch is checked for every segment here: anonymously over HTTP, as a player would.
		for _, k := range segments {
			body := httpGet(t, r.s3.URL(o.bucket, k))
			want, err := os.ReadFile(filepath.Join(r.media, o.folder, filepath.FromSlash(k)))
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != string(want) {
				t.Errorf("GET %s over HTTP: %d bytes, want the file's %d", k, len(body), len(want))
			}
		}
		t.Logf("ffprobe read the manifest over HTTP: packets %s, as from disk; %d segments fetched anonymously", remote, len(segments))
	})
}

// assertListsEverySegment follows the stored playlists from top (a master playlist or manifest)
// and checks that together they list every segment of the output on disk (suffix ext, plus DASH
// init segments). It returns the segment keys listed.
func (r *rig) assertListsEverySegment(o output, top, ext string) []string {
	r.t.Helper()
	seen := map[string]bool{}
	var segments []string
	queue := []string{top}
	for len(queue) > 0 {
		k := queue[0]
		queue = queue[1:]
		if seen[k] {
			continue
		}
		seen[k] = true
		refs, err := s3upload.ReferencedKeys(k, r.get(o.bucket, k, ""))
		if err != nil {
			r.t.Fatalf("%s/%s: %v", o.bucket, k, err)
		}
		for _, ref := range refs {
			if isManifest(ref) {
				queue = append(queue, ref)
			} else if !seen[ref] {
				seen[ref] = true
				segments = append(segments, ref)
			}
		}
	}
	listed := map[string]bool{}
	for _, s := range segments {
		listed[s] = true
	}
	var unlisted []string
	for k := range r.diskFiles(o) {
		if (strings.HasSuffix(k, ext) || strings.HasSuffix(k, "seg_init.mp4")) && !listed[k] {
			unlisted = append(unlisted, k)
		}
	}
	if len(unlisted) > 0 {
		slices.Sort(unlisted)
		r.t.Errorf("the stored playlists from %s do not list %d segments on disk: %v", top, len(unlisted), unlisted)
	}
	return segments
}

func (r *rig) requests(t *testing.T) []s3test.Request {
	t.Helper()
	reqs, err := r.s3.Requests()
	if err != nil {
		t.Fatal(err)
	}
	return reqs
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b
}

// TestStreamSurvivesCrashOutageAndLostEvents: one 44 s stream through three faults in turn, each
// of which loses events or uploads, and at the end every bucket still holds every file with the
// file's bytes, every manifest version stored after what it lists:
//
//   - emsflow killed with SIGKILL mid-stream and restarted 3 s later: EMS's events of those
//     seconds are gone (EMS never retries), and the files written meanwhile still reach the
//     bucket;
//   - the S3 server down for 20 s: uploads fail and are retried with backoff (counted), none of
//     a file still on disk is given up (no dead letter), and the files written meanwhile reach
//     the bucket;
//   - half the events dropped by emssim for 6 s, then all of them for the last 4 s and the close:
//     backfill repairs what no later event covers.
//
// A second, rolling HLS output of the stream goes through the same faults; EMS deletes its old
// chunks, so only the chunks still on disk are checked, and its playlists must be repaired like
// every other file although a rolling playlist keeps its size from one version to the next. A
// rolling chunk that EMS deleted before it could be uploaded is the one thing allowed to be given
// up, at once, as a permanent error counted as lost.
func TestStreamSurvivesCrashOutageAndLostEvents(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.startStream(emssim.Faults{}, true)
	r.run(8 * time.Second)

	// Crash.
	r.svc.Kill()
	killed := time.Now()
	r.run(3 * time.Second)
	r.svc.Restart()
	restarted := time.Now()
	r.run(3 * time.Second)

	// S3 outage. What the buckets hold when it starts tells which files came during it.
	before := map[string]map[string]int64{}
	for _, o := range outputs {
		objs, err := r.objects(o.bucket)
		if err != nil {
			t.Fatal(err)
		}
		before[o.bucket] = objs
	}
	r.s3.Stop()
	r.run(20 * time.Second)
	r.s3.Start()
	duringOutage := 0
	for _, o := range outputs {
		for k := range r.diskFiles(o) {
			if _, ok := before[o.bucket][k]; !ok {
				duringOutage++
			}
		}
	}

	// Lost events: half of them for a while, which the next playlist's upload may cover, then
	// every event of the last seconds and of the close, which nothing later can cover.
	r.sim.SetFaults(emssim.Faults{DropRate: 0.5})
	r.run(6 * time.Second)
	halfDropped := r.sim.EventStats().Dropped
	r.sim.SetFaults(emssim.Faults{StopPosting: true})
	r.run(4 * time.Second)
	r.endStream()
	r.waitMirrored(90 * time.Second)
	bootstrap := hdsOutput.group + "/" + stream + "/bootstrap"
	onDisk, err := os.ReadFile(filepath.Join(r.media, hdsOutput.folder, hdsOutput.group, stream, "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	// Backfill repairs the HDS bootstrap whose last hdsChunkClosed events were lost.
	if stored := r.get(hdsOutput.bucket, bootstrap, ""); !bytes.Equal(stored, onDisk) {
		t.Errorf("%s/%s is %d bytes in the bucket, %d on disk: backfill left a stale bootstrap", hdsOutput.bucket, bootstrap, len(stored), len(onDisk))
	}

	r.assertRollingRepaired()

	st := r.sim.EventStats()
	if st.Failed == 0 {
		t.Errorf("no event failed to reach emsflow while it was down (%+v): the crash came too late or too early", st)
	}
	if halfDropped == 0 {
		t.Errorf("emssim dropped no event at drop rate 0.5 (%+v)", st)
	}
	if duringOutage == 0 {
		t.Error("no file was written during the S3 outage")
	}
	whileDown := 0
	for _, o := range outputs {
		for k := range r.diskFiles(o) {
			fi, err := os.Stat(filepath.Join(r.media, o.folder, filepath.FromSlash(k)))
			if err == nil && fi.ModTime().After(killed) && fi.ModTime().Before(restarted) {
				whileDown++
			}
		}
	}
	if whileDown == 0 {
		t.Error("no file was written while emsflow was down")
	}
	var lines []string
	for _, o := range outputs {
		refs := r.assertReferencesStored(o)
		versions := r.assertServerOrder(o)
		plugin := map[string]string{"plugin": o.plugin}
		repairs := r.metric("emsflow_s3upload_backfill_repairs_total", plugin)
		if repairs == 0 {
			t.Errorf("%s: backfill repaired nothing, yet the events of the stream's last seconds were all dropped", o.plugin)
		}
		retried := r.metric("emsflow_plugin_retried_total", plugin)
		if retried == 0 {
			t.Errorf("%s: no event was retried, yet S3 was down for 20 s", o.plugin)
		}
		// A chunk of the rolling output that EMS deleted before its upload (its event waited out
		// the outage) is lost for good: its event is dead-lettered at once as permanent and counted
		// as lost. Nothing else may be given up: an outage only delays.
		dead := r.deadLetters(o.plugin).DeadLetters
		deleted := 0
		for _, d := range dead {
			var env struct {
				Payload struct {
					File string `json:"file"`
				} `json:"payload"`
			}
			if err := json.Unmarshal(d.Event, &env); err != nil {
				t.Fatalf("dead letter %d: %v", d.Seq, err)
			}
			_, statErr := os.Stat(env.Payload.File)
			rolling := strings.HasPrefix(env.Payload.File, filepath.Join(r.media, hlsRolling.folder)+string(filepath.Separator))
			if rolling && errors.Is(statErr, fs.ErrNotExist) && strings.Contains(d.Error, "deleted before it could be uploaded") {
				deleted++
				continue
			}
			t.Errorf("%s gave up on %s (after %d attempts): %s; an outage must only delay it", o.plugin, env.Payload.File, d.Attempts, d.Error)
		}
		lost := r.metric("emsflow_s3upload_lost_files_total", map[string]string{"plugin": o.plugin, "reason": "deleted_before_upload"})
		if lost < float64(deleted) {
			t.Errorf("%s: %d chunks dead-lettered as deleted before their upload, but the lost counter says %v", o.plugin, deleted, lost)
		}
		if deleted > 0 {
			t.Logf("%s: %d rolling chunks deleted by EMS before their upload were dead-lettered at once (lost counter %v)", o.plugin, deleted, lost)
		}
		lines = append(lines, fmt.Sprintf("%s: %d files, %d references present, %d manifest versions in order; since the restart %v events retried, %v files repaired by backfill",
			o.bucket, len(r.diskFiles(o)), refs, versions, retried, repairs))
	}
	r.svc.Stop()
	t.Logf("events: %+v; %d files written while emsflow was down, %d during the S3 outage; all mirrored:\n%s",
		st, whileDown, duringOutage, strings.Join(lines, "\n"))
}

// assertRollingRepaired waits for the rolling HLS output to be repaired after the faults: every
// chunk still on disk is in the bucket with the file's size (the chunks EMS deleted may stay
// there: deletion is off), and the playlists hold the files' bytes. A rolling child playlist
// keeps its size from one version to the next while the chunk numbers keep their digit count, so
// when its last events are lost backfill must tell the versions apart by more than their size.
func (r *rig) assertRollingRepaired() {
	t := r.t
	t.Helper()
	o := hlsRolling
	if n := len(r.diskFiles(o)); n < 3 {
		t.Fatalf("rolling output has %d files on disk", n)
	}
	var diffs []string
	if !poll(t.Context(), 20*time.Second, 250*time.Millisecond, func() bool {
		diffs = r.rollingDiff(o)
		return len(diffs) == 0
	}) {
		for _, d := range diffs {
			t.Error(d)
		}
	}
}

// rollingDiff describes how the bucket differs from a rolling output's files still on disk:
// chunks by size, playlists by bytes.
func (r *rig) rollingDiff(o output) []string {
	objs, err := r.outputObjects(o)
	if err != nil {
		return []string{err.Error()}
	}
	var diffs []string
	for k, size := range r.diskFiles(o) {
		got, ok := objs[k]
		if !ok || !isManifest(k) && got != size {
			diffs = append(diffs, fmt.Sprintf("rolling %s/%s: in bucket %v with %d bytes, %d on disk", o.bucket, k, ok, got, size))
			continue
		}
		if !isManifest(k) {
			continue
		}
		want, err := os.ReadFile(filepath.Join(r.media, o.folder, filepath.FromSlash(k)))
		if err != nil {
			r.t.Fatal(err)
		}
		if stored := r.get(o.bucket, k, ""); !bytes.Equal(stored, want) {
			diffs = append(diffs, fmt.Sprintf("rolling %s/%s: the object (%d bytes) is not the file (%d bytes), stored:\n%s", o.bucket, k, len(stored), len(want), stored))
		}
	}
	slices.Sort(diffs)
	return diffs
}
