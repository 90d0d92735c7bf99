package s3upload

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/s3test"
	"github.com/emsflow/emsflow/plugins"
)

// testEnv is one uploader against a real versitygw, with a media root in a temp folder.
type testEnv struct {
	t       *testing.T
	srv     *s3test.Server
	bucket  string
	root    string // the media root (EMS's targetFolder)
	dataDir string
	u       *Uploader
	log     *logBuf
	eventID atomic.Uint64
}

// newEnv starts versitygw (or reuses srv), creates the bucket and builds and starts an uploader
// of kind with the test's parameters merged over the defaults.
func newEnv(t *testing.T, kind Kind, srv *s3test.Server, params map[string]any) *testEnv {
	t.Helper()
	if srv == nil {
		srv = s3test.Start(t)
	}
	e := &testEnv{t: t, srv: srv, bucket: "media", root: t.TempDir(), dataDir: t.TempDir(), log: &logBuf{}}
	if _, err := srv.Client.HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: aws.String(e.bucket)}); err != nil {
		srv.CreateBucket(t, e.bucket)
	}
	e.u = e.build(kind, params, nil)
	return e
}

func (e *testEnv) params(extra map[string]any) json.RawMessage {
	p := map[string]any{
		"aws_access_key":   e.srv.AccessKey,
		"aws_secret_key":   e.srv.SecretKey,
		"default_bucket":   e.bucket,
		"endpoint":         e.srv.Endpoint,
		"force_path_style": true,
		"media_roots":      []string{e.root},
	}
	for k, v := range extra {
		p[k] = v
	}
	b, err := json.Marshal(p)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// build makes and starts an uploader; wrap, when set, wraps its S3 client.
func (e *testEnv) build(kind Kind, params map[string]any, wrap func(API) API) *Uploader {
	e.t.Helper()
	deps := plugins.Deps{
		Log:     zerolog.New(e.log),
		Now:     time.Now,
		Metrics: prometheus.NewRegistry(),
		DataDir: e.dataDir,
	}
	p, err := Factory(kind)(string(kind), e.params(params), deps)
	if err != nil {
		e.t.Fatalf("build %s: %v", kind, err)
	}
	u := p.(*Uploader)
	u.wrapAPI = wrap
	if err := u.Start(e.t.Context()); err != nil {
		e.t.Fatalf("start %s: %v", kind, err)
	}
	e.t.Cleanup(func() { _ = u.Close(e.t.Context()) })
	return u
}

// logBuf collects the uploader's log lines.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ev builds an EMS event the way EMS sends it (reference §1.2) and decodes it with event.Decode.
func (e *testEnv) ev(typ string, payload map[string]any) *event.Event {
	e.t.Helper()
	payload["PID"] = 5123
	payload["customData"] = nil
	raw, err := json.Marshal(map[string]any{
		"id": e.eventID.Add(1), "payload": payload, "processId": 5123,
		"timestamp": time.Now().Unix(), "type": typ,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ev, err := event.Decode(raw)
	if err != nil {
		e.t.Fatalf("decode %s: %v", raw, err)
	}
	return ev
}

func (e *testEnv) fileEvent(typ, file string) *event.Event {
	return e.ev(typ, map[string]any{"file": file})
}

// handle runs Handle and fails the test on error.
func (e *testEnv) handle(ev *event.Event) {
	e.t.Helper()
	if err := e.u.Handle(e.t.Context(), ev); err != nil {
		e.t.Fatalf("handle %s %s: %v", ev.Type, ev.Payload.File(), err)
	}
}

// objects lists the bucket: key → size.
func (e *testEnv) objects() map[string]int64 {
	e.t.Helper()
	out := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(e.srv.Client, &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(e.t.Context())
		if err != nil {
			e.t.Fatalf("list bucket: %v", err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
	}
	return out
}

func (e *testEnv) get(key string) []byte {
	e.t.Helper()
	out, err := e.srv.Client.GetObject(e.t.Context(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		e.t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// storedRefs returns the keys a stored playlist object references.
func (e *testEnv) storedRefs(key string, data []byte) []string {
	e.t.Helper()
	var rels []string
	if classify(key, e.u.cfg.Bootstrap) == kindBootstrap {
		runs, err := abstRuns(data)
		if err != nil {
			e.t.Fatalf("stored %s: %v", key, err)
		}
		prefix := strings.TrimSuffix(path.Base(key), ".abst")
		for _, r := range runs {
			for n := r.first; n <= r.last; n++ {
				rels = append(rels, fmt.Sprintf("%sSeg%d-Frag%d", prefix, r.seg, n))
			}
		}
	} else {
		keys, err := ReferencedKeys(key, data)
		if err != nil {
			e.t.Fatalf("stored %s: %v", key, err)
		}
		return keys
	}
	out := make([]string, len(rels))
	for i, r := range rels {
		out[i] = refKey(key, r)
	}
	return out
}

// assertComplete checks the guarantee as a player sees it: every playlist in the bucket
// references only objects that are in the bucket.
func (e *testEnv) assertComplete() {
	e.t.Helper()
	objs := e.objects()
	for key := range objs {
		if !classify(key, e.u.cfg.Bootstrap).isPlaylist() {
			continue
		}
		for _, r := range e.storedRefs(key, e.get(key)) {
			if _, ok := objs[r]; !ok {
				e.t.Fatalf("bucket has %s referencing %s, which is not in the bucket", key, r)
			}
		}
	}
}

// assertServerOrder checks the server's own log: every PUT of a playlist comes after the PUTs of
// everything that playlist (as finally stored) references.
func (e *testEnv) assertServerOrder() {
	e.t.Helper()
	reqs, err := e.srv.Requests()
	if err != nil {
		e.t.Fatal(err)
	}
	stored := map[string]bool{}
	checked := 0
	for _, r := range reqs {
		if r.Bucket != e.bucket || r.Status != 200 || (r.Operation != "s3_PutObject" && r.Operation != "s3_CompleteMultipartUpload") {
			continue
		}
		if classify(r.Key, e.u.cfg.Bootstrap).isPlaylist() {
			for _, ref := range e.storedRefs(r.Key, e.get(r.Key)) {
				if !stored[ref] {
					e.t.Fatalf("server log: %s stored before %s, which it references", r.Key, ref)
				}
			}
			checked++
		}
		stored[r.Key] = true
	}
	if checked == 0 {
		e.t.Fatal("server log: no playlist PUT found")
	}
}

// puts counts the server's successful PUTs per key.
func (e *testEnv) puts() map[string]int {
	e.t.Helper()
	reqs, err := e.srv.Requests()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range reqs {
		if r.Bucket == e.bucket && r.Status == 200 && r.Operation == "s3_PutObject" {
			out[r.Key]++
		}
	}
	return out
}

// counter returns a counter's value.
func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// ffmpeg runs ffmpeg with a short test source and fails the test on error.
func ffmpeg(t *testing.T, dir string, args ...string) {
	t.Helper()
	base := []string{"-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-c:a", "aac"}
	cmd := exec.CommandContext(t.Context(), "ffmpeg", append(base, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// probePackets counts the packets ffprobe reads from a URL or file: playing every segment gives
// the same count over HTTP as from disk.
func probePackets(t *testing.T, input string, opts ...string) int {
	t.Helper()
	args := append(append([]string{"-v", "error"}, opts...), "-show_entries", "packet=stream_index", "-of", "csv=p=0", input)
	cmd := exec.CommandContext(t.Context(), "ffprobe", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", input, err, out)
	}
	return strings.Count(string(out), "\n")
}

// histCount returns how many observations a histogram has.
func histCount(h prometheus.Histogram) uint64 {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

func itoa(n int) string { return strconv.Itoa(n) }

// assertVersionOrder checks the server-side order version by version (the bucket is versioned):
// each stored version of a playlist comes after the first PUT of everything that version lists.
func (e *testEnv) assertVersionOrder() {
	e.t.Helper()
	first := map[string]int{}
	versions := 0
	for _, p := range e.srv.Puts(e.t, e.bucket) {
		if classify(p.Key, e.u.cfg.Bootstrap).isPlaylist() {
			out, err := e.srv.Client.GetObject(e.t.Context(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(p.Key), VersionId: aws.String(p.VersionID)})
			if err != nil {
				e.t.Fatalf("get %s version %s: %v", p.Key, p.VersionID, err)
			}
			data, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil {
				e.t.Fatal(err)
			}
			for _, r := range e.storedRefs(p.Key, data) {
				if _, ok := first[r]; !ok {
					e.t.Fatalf("server order: version %d of %s (PUT #%d) lists %s, not stored before it", versions, p.Key, p.Seq, r)
				}
			}
			versions++
		}
		if _, ok := first[p.Key]; !ok {
			first[p.Key] = p.Seq
		}
	}
	if versions == 0 {
		e.t.Fatal("server order: no playlist version stored")
	}
}
