// Package uploads_test is the end-to-end evidence of the S3 upload plugins: a running emsflow
// binary, fed by emssim's real ffmpeg output over HTTP exactly as EMS feeds it, uploading HLS,
// HDS and DASH to a real S3-compatible server (versitygw) on loopback. The tests compare what is
// on disk with what is in each bucket, play the bucket over HTTP with ffprobe, read the server's
// own order of stored versions, and take emsflow, the S3 server and the events away mid-stream.
package uploads_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/s3test"
	"github.com/emsflow/emsflow/internal/servicetest"
	"github.com/emsflow/emsflow/plugins/s3upload"
)

// output is one of the three uploaders and the EMS output it mirrors. Each writes under its own
// targetFolder, in its own group, to its own bucket; object keys are the paths relative to the
// targetFolder (the uploaders keep the trailing group/stream/... components of EMS paths).
type output struct {
	plugin string // the instance name in config.ini, also the metrics' plugin label
	bucket string
	folder string // targetFolder, relative to the media root
	group  string
}

// prefix is where the output's objects are in its bucket: under the group.
func (o output) prefix() string { return o.group + "/" }

// The three outputs; outputs lists them for the checks that apply to each.
var (
	hlsOutput  = output{plugin: "AmazonHLSUpload", bucket: "hls", folder: "hls", group: "hlsg"}
	hdsOutput  = output{plugin: "AmazonHDSUpload", bucket: "hds", folder: "hds", group: "hdsg"}
	dashOutput = output{plugin: "AmazonDASHUpload", bucket: "dash", folder: "dash", group: "dashg"}
	outputs    = []output{hlsOutput, hdsOutput, dashOutput}
	// hlsRolling is a second HLS output of the same stream with a rolling playlist (EMS deletes
	// old chunks), uploaded by the same AmazonHLSUpload into the same bucket.
	hlsRolling = output{plugin: "AmazonHLSUpload", bucket: "hls", folder: "hlsrolling", group: "hlsr"}
)

// stream is the name emssim's encoder publishes.
const stream = "cam1"

// rig is one versitygw, one emsflow with the three uploaders, and one emssim posting to it.
type rig struct {
	t     *testing.T
	dir   string
	media string // the one media root of every uploader
	s3    *s3test.Server
	svc   *servicetest.Service
	sim   *emssim.Sim
}

// newRig starts versitygw with versioned buckets and emsflow with the three uploaders on one
// media root. backfill_min_age is above the chunk length so that backfill never takes the empty
// file EMS creates for the chunk it is writing.
func newRig(t *testing.T) *rig {
	t.Helper()
	requireFFmpeg(t)
	r := &rig{t: t, dir: t.TempDir()}
	r.media = filepath.Join(r.dir, "media")
	for _, o := range append(outputs, hlsRolling) {
		if err := os.MkdirAll(filepath.Join(r.media, o.folder), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.s3 = s3test.StartWith(t, s3test.Options{Versioning: true})
	for _, o := range outputs {
		r.s3.CreateBucket(t, o.bucket)
		r.s3.EnableVersioning(t, o.bucket)
	}
	r.svc = servicetest.Start(t, r.dir, r.config(outputs, map[string]any{
		"backfill_interval": "2s",
		"backfill_min_age":  "3s",
	}))
	return r
}

// config is emsflow's config.ini (JSON form) with one uploader per output and fast retries, so
// that an outage is recovered from within seconds of its end.
func (r *rig) config(outs []output, extra map[string]any) string {
	r.t.Helper()
	ps := map[string]any{}
	for _, o := range outs {
		params := map[string]any{
			"aws_access_key":   r.s3.AccessKey,
			"aws_secret_key":   r.s3.SecretKey,
			"default_bucket":   o.bucket,
			"endpoint":         r.s3.Endpoint,
			"force_path_style": true,
			"media_roots":      []string{r.media},
		}
		for k, v := range extra {
			params[k] = v
		}
		ps[o.plugin] = map[string]any{"plugin_switch": "enabled", "parameters": params}
	}
	cfg := map[string]any{
		"dispatch": map[string]any{"timeout": "10s", "initial_backoff": "200ms", "max_backoff": "2s"},
		"journal":  map[string]any{"data_dir": "data"},
		"log":      map[string]any{"level": "info"},
		"plugins":  ps,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// startStream starts emssim posting to emsflow, publishes the stream and starts its HLS, HDS and
// DASH outputs with 1 s chunks and appending playlists (EMS deletes nothing), and with rolling
// also the hlsRolling output (5 chunks listed, one more kept).
func (r *rig) startStream(faults emssim.Faults, rolling bool) {
	t := r.t
	t.Helper()
	sim, err := emssim.New(emssim.Config{
		APIAddr:  "127.0.0.1:0",
		RTMPAddr: "127.0.0.1:0",
		MediaDir: r.media,
		Sinks:    []emssim.Sink{{URL: r.svc.URL("/evowebservices")}},
		Faults:   faults,
		Seed:     5,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.sim = sim
	t.Cleanup(func() { _ = sim.Close() })
	if _, err := sim.Publish(stream); err != nil {
		t.Fatal(err)
	}
	ems, err := emsclient.New(sim.APIURL(), &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	target := func(o output) string { return filepath.Join(r.media, o.folder) }
	if _, err := ems.CreateHLSStream(t.Context(), emsclient.HLSParams{
		LocalStreamNames: []string{stream}, TargetFolder: target(hlsOutput), GroupName: hlsOutput.group,
		ChunkLength: 1, PlaylistType: "appending",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := ems.CreateHDSStream(t.Context(), emsclient.HDSParams{
		LocalStreamNames: []string{stream}, TargetFolder: target(hdsOutput), GroupName: hdsOutput.group,
		ChunkLength: 1, PlaylistType: "appending",
	}); err != nil {
		t.Fatal(err)
	}
	if rolling {
		keep := uint(1)
		if _, err := ems.CreateHLSStream(t.Context(), emsclient.HLSParams{
			LocalStreamNames: []string{stream}, TargetFolder: target(hlsRolling), GroupName: hlsRolling.group,
			ChunkLength: 1, PlaylistType: "rolling", PlaylistLength: 5, StaleRetentionCount: &keep,
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ems.CreateDASHStream(t.Context(), emsclient.DASHParams{
		LocalStreamNames: []string{stream}, TargetFolder: target(dashOutput), GroupName: dashOutput.group,
		ChunkLength: 1, PlaylistType: "appending",
	}); err != nil {
		t.Fatal(err)
	}
}

// run lets the stream run for d: the stream's length, not a synchronisation.
func (r *rig) run(d time.Duration) {
	select {
	case <-r.t.Context().Done():
	case <-time.After(d):
	}
}

// endStream closes emssim: every output writes its last chunk and playlist and their events go
// out before Close returns.
func (r *rig) endStream() {
	r.t.Helper()
	if err := r.sim.Close(); err != nil {
		r.t.Fatalf("close emssim: %v", err)
	}
}

// diskFiles returns the files of an output on disk: relative path (the object key) → size.
func (r *rig) diskFiles(o output) map[string]int64 {
	r.t.Helper()
	root := filepath.Join(r.media, o.folder)
	out := map[string]int64{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = info.Size()
		return nil
	})
	if err != nil {
		r.t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// objects lists a bucket's current objects: key → size.
func (r *rig) objects(bucket string) (map[string]int64, error) {
	out := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(r.s3.Client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(r.t.Context())
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", bucket, err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
	}
	return out, nil
}

// outputObjects lists an output's objects in its bucket: key → size.
func (r *rig) outputObjects(o output) (map[string]int64, error) {
	objs, err := r.objects(o.bucket)
	if err != nil {
		return nil, err
	}
	for k := range objs {
		if !strings.HasPrefix(k, o.prefix()) {
			delete(objs, k)
		}
	}
	return objs, nil
}

// mirrorDiff describes how a bucket differs from its output on disk by key and size, or "".
func (r *rig) mirrorDiff(o output) string {
	disk := r.diskFiles(o)
	objs, err := r.outputObjects(o)
	if err != nil {
		return err.Error()
	}
	var missing, wrong, extra []string
	for k, size := range disk {
		got, ok := objs[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case got != size:
			wrong = append(wrong, fmt.Sprintf("%s (%d bytes, %d on disk)", k, got, size))
		}
	}
	for k := range objs {
		if _, ok := disk[k]; !ok {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(wrong)+len(extra) == 0 {
		return ""
	}
	slices.Sort(missing)
	slices.Sort(wrong)
	slices.Sort(extra)
	return fmt.Sprintf("bucket %s against %d files on disk: missing %d %v; wrong size %v; not on disk %v",
		o.bucket, len(disk), len(missing), missing, wrong, extra)
}

// waitMirrored waits until every bucket holds exactly its output's files by key and size, then
// checks that each object's bytes are the file's. It fails with the differences at the deadline.
func (r *rig) waitMirrored(timeout time.Duration) {
	r.t.Helper()
	start := time.Now()
	var diffs []string
	ok := poll(r.t.Context(), timeout, 250*time.Millisecond, func() bool {
		diffs = diffs[:0]
		for _, o := range outputs {
			if d := r.mirrorDiff(o); d != "" {
				diffs = append(diffs, d)
			}
		}
		return len(diffs) == 0
	})
	if !ok {
		r.t.Fatalf("buckets not complete %v after the stream ended:\n%s", timeout, strings.Join(diffs, "\n"))
	}
	r.t.Logf("buckets complete %v after the stream ended", time.Since(start).Round(100*time.Millisecond))
	for _, o := range outputs {
		disk := r.diskFiles(o)
		if len(disk) < 10 {
			r.t.Errorf("output %s has only %d files on disk: the stream did not run", o.folder, len(disk))
		}
		for k := range disk {
			want, err := os.ReadFile(filepath.Join(r.media, o.folder, filepath.FromSlash(k)))
			if err != nil {
				r.t.Fatal(err)
			}
			if got := r.get(o.bucket, k, ""); !bytes.Equal(got, want) {
				r.t.Errorf("%s/%s: the object's %d bytes differ from the file's %d", o.bucket, k, len(got), len(want))
			}
		}
	}
}

// get reads an object, or one version of it when version is not empty.
func (r *rig) get(bucket, key, version string) []byte {
	r.t.Helper()
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if version != "" {
		in.VersionId = aws.String(version)
	}
	out, err := r.s3.Client.GetObject(r.t.Context(), in)
	if err != nil {
		r.t.Fatalf("get %s/%s (version %q): %v", bucket, key, version, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		r.t.Fatalf("read %s/%s: %v", bucket, key, err)
	}
	return b
}

// isManifest reports whether a key is a playlist or manifest ReferencedKeys reads.
func isManifest(key string) bool {
	switch path.Ext(key) {
	case ".m3u8", ".mpd", ".f4m":
		return true
	}
	return false
}

// assertReferencesStored checks that every playlist and manifest in the bucket names only
// objects the bucket has, and returns how many references it checked.
func (r *rig) assertReferencesStored(o output) int {
	r.t.Helper()
	objs, err := r.objects(o.bucket)
	if err != nil {
		r.t.Fatal(err)
	}
	n := 0
	for k := range objs {
		if !isManifest(k) {
			continue
		}
		refs, err := s3upload.ReferencedKeys(k, r.get(o.bucket, k, ""))
		if err != nil {
			r.t.Errorf("%s/%s: %v", o.bucket, k, err)
			continue
		}
		if len(refs) == 0 {
			r.t.Errorf("%s/%s references nothing", o.bucket, k)
		}
		for _, ref := range refs {
			n++
			if _, ok := objs[ref]; !ok {
				r.t.Errorf("%s/%s references %s, which is not in the bucket", o.bucket, k, ref)
			}
		}
	}
	return n
}

// assertServerOrder reads the bucket's stored versions in the server's order and checks that
// every version of every playlist and manifest was stored after each object it references. It
// returns the number of playlist versions checked.
func (r *rig) assertServerOrder(o output) int {
	r.t.Helper()
	puts := r.s3.Puts(r.t, o.bucket)
	first := map[string]int{}
	for _, p := range puts {
		if _, ok := first[p.Key]; !ok {
			first[p.Key] = p.Seq
		}
	}
	versions := 0
	for _, p := range puts {
		if !isManifest(p.Key) {
			continue
		}
		versions++
		refs, err := s3upload.ReferencedKeys(p.Key, r.get(o.bucket, p.Key, p.VersionID))
		if err != nil {
			r.t.Errorf("%s/%s version %s: %v", o.bucket, p.Key, p.VersionID, err)
			continue
		}
		for _, ref := range refs {
			if seq, ok := first[ref]; !ok || seq > p.Seq {
				r.t.Errorf("%s/%s stored (PUT #%d) before %s, which it references (first PUT #%d, -1: never)",
					o.bucket, p.Key, p.Seq, ref, orMinus(seq, ok))
			}
		}
	}
	if versions == 0 {
		r.t.Errorf("bucket %s: no playlist version among %d PUTs", o.bucket, len(puts))
	}
	return versions
}

func orMinus(n int, ok bool) int {
	if !ok {
		return -1
	}
	return n
}

// metric returns the sum of a Prometheus counter's samples on emsflow's /metrics whose labels
// include every label given.
func (r *rig) metric(name string, labels map[string]string) float64 {
	r.t.Helper()
	return scrape(r.t, r.svc.URL("/metrics"), name, labels)
}

func scrape(t *testing.T, url, name string, labels map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("get /metrics: %v", err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		metricName, rest, _ := strings.Cut(series, "{")
		if metricName != name {
			continue
		}
		got := map[string]string{}
		for pair := range strings.SplitSeq(strings.TrimSuffix(rest, "}"), ",") {
			if k, v, ok := strings.Cut(pair, "="); ok {
				got[k] = strings.Trim(v, `"`)
			}
		}
		match := true
		for k, v := range labels {
			if got[k] != v {
				match = false
			}
		}
		if match {
			f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			sum += f
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	return sum
}

// poll calls cond every interval until it holds or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(interval):
		}
	}
	return true
}

// probePackets returns ffprobe's packet count per stream of a playlist or manifest, read from
// disk or over HTTP. HLS from emssim is live (no ENDLIST): start at its first segment and stop
// after a few reloads bring nothing new. EMS names DASH segments .fmp4, which ffmpeg's DASH
// demuxer refuses unless told.
func probePackets(t *testing.T, src string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	args := []string{"-v", "error", "-count_packets", "-show_entries", "stream=index,nb_read_packets", "-of", "csv=p=0"}
	switch path.Ext(src) {
	case ".m3u8":
		args = append(args, "-live_start_index", "0", "-m3u8_hold_counters", "3")
	case ".mpd":
		args = append(args, "-allowed_extensions", "ALL")
	}
	cmd := exec.CommandContext(ctx, "ffprobe", append(args, src)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffprobe %s: %v: %s", src, err, stderr.String())
	}
	// A master playlist shows its streams under the program and again on their own.
	var lines []string
	for l := range strings.Lines(stdout.String()) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return strings.Join(slices.Compact(lines), " ")
}

// skipShort skips the test under -short: every test here runs the emsflow binary and versitygw.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: runs emsflow and versitygw")
	}
}

// requireFFmpeg is skipShort for the tests that also need ffmpeg (emssim) and ffprobe. Missing
// tools fail the test: a green run means the tests ran.
func requireFFmpeg(t *testing.T) {
	t.Helper()
	skipShort(t)
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: run `make tools`", bin)
		}
	}
}
