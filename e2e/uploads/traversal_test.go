package uploads_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/internal/s3test"
	"github.com/emsflow/emsflow/internal/servicetest"
)

// TestPathTraversalUploadsNothing: EMS-shaped hlsChunkClosed events whose file leads out of the
// media root (a ".." path, a symlink to a file outside, a symlinked folder outside, a path outside
// every root) are accepted by the webhook, upload nothing, are counted by reason on /metrics,
// logged as security events and dead-lettered at once (a permanent error is not retried); a
// legitimate event posted after them is uploaded, so the pipeline was working all along.
func TestPathTraversalUploadsNothing(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	r := &rig{t: t, dir: dir, media: filepath.Join(dir, "media")}
	hls := hlsOutput
	streamDir := filepath.Join(r.media, hls.folder, hls.group, stream)
	outside := filepath.Join(dir, "outside")
	const secret = "not for the bucket"
	for _, d := range []string{streamDir, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret.ts"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(streamDir, "real.ts"), []byte("a real segment"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.ts"), filepath.Join(streamDir, "link.ts")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(r.media, hls.folder, hls.group, "linkdir")); err != nil {
		t.Fatal(err)
	}

	r.s3 = s3test.Start(t)
	r.s3.CreateBucket(t, hls.bucket)
	// Backfill only at start, when the media root holds nothing to upload: whatever reaches the
	// bucket comes from the events below.
	r.svc = servicetest.Start(t, dir, r.config([]output{hls}, map[string]any{"backfill_interval": "0s"}))

	refused := []struct {
		file, reason string
	}{
		{r.media + "/../../etc/passwd", "dot_dot"},
		{r.media + "/" + hls.folder + "/../../outside/secret.ts", "dot_dot"},
		{filepath.Join(streamDir, "link.ts"), "symlink_escapes"},
		{filepath.Join(r.media, hls.folder, hls.group, "linkdir", "secret.ts"), "symlink_escapes"},
		{"/etc/passwd", "outside_media_roots"},
	}
	want := map[string]float64{}
	for i, ev := range refused {
		r.postChunkClosed(100+i, ev.file)
		want[ev.reason]++
	}
	r.postChunkClosed(200, filepath.Join(streamDir, "real.ts"))

	var dead deadLetters
	ok := poll(t.Context(), 30*time.Second, 100*time.Millisecond, func() bool {
		objs, err := r.objects(hls.bucket)
		if err != nil || len(objs) == 0 {
			return false
		}
		dead = r.deadLetters(hls.plugin)
		return dead.Count >= len(refused)
	})
	if !ok {
		t.Fatalf("after 30s: %d dead letters of %d refused events, or the legitimate segment not uploaded", dead.Count, len(refused))
	}
	objs, err := r.objects(hls.bucket)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[hls.group+"/"+stream+"/real.ts"] == 0 {
		t.Errorf("bucket holds %v, want only %s/%s/real.ts", objs, hls.group, stream)
	}
	for key := range objs {
		if body := r.get(hls.bucket, key, ""); strings.Contains(string(body), secret) {
			t.Errorf("%s holds the outside file's content", key)
		}
	}
	for reason, n := range want {
		got := r.metric("emsflow_s3upload_refused_paths_total", map[string]string{"plugin": hls.plugin, "reason": reason})
		if got != n {
			t.Errorf("emsflow_s3upload_refused_paths_total{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	files := map[string]bool{}
	for _, d := range dead.DeadLetters {
		var env struct {
			Payload struct {
				File string `json:"file"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(d.Event, &env); err != nil {
			t.Fatalf("dead letter %d: %v", d.Seq, err)
		}
		files[env.Payload.File] = true
		if !strings.Contains(d.Error, "path refused") || d.Attempts != 1 {
			t.Errorf("dead letter of %s: error %q after %d attempts, want a path refusal after 1", env.Payload.File, d.Error, d.Attempts)
		}
	}
	for _, ev := range refused {
		if !files[ev.file] {
			t.Errorf("no dead letter for %s", ev.file)
		}
	}
	log := r.svc.Log()
	if n := strings.Count(log, `"security":true`); n < len(refused) {
		t.Errorf("%d security events logged for %d refused paths", n, len(refused))
	}
	if strings.Contains(log, secret) {
		t.Error("the outside file's content reached the log")
	}
	r.svc.Stop()
}

// postChunkClosed posts the constructed hlsChunkClosed of the reference (testdata) with another
// id and file, as EMS would, and fails unless the webhook accepts it.
func (r *rig) postChunkClosed(id int, file string) {
	r.t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "hlsChunkClosed.json"))
	if err != nil {
		r.t.Fatal(err)
	}
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		r.t.Fatal(err)
	}
	env["id"] = id
	env["timestamp"] = time.Now().Unix()
	env["payload"].(map[string]any)["file"] = file
	body, err := json.Marshal(env)
	if err != nil {
		r.t.Fatal(err)
	}
	code, err := r.svc.Post("/evowebservices", string(body))
	if err != nil || code != http.StatusOK {
		r.t.Fatalf("post hlsChunkClosed %s: status %d, %v", file, code, err)
	}
}

// deadLetters is GET /admin/deadletters.
type deadLetters struct {
	Count       int `json:"count"`
	DeadLetters []struct {
		Seq      uint64          `json:"seq"`
		Plugin   string          `json:"plugin"`
		Error    string          `json:"error"`
		Attempts int             `json:"attempts"`
		Event    json.RawMessage `json:"event"`
	} `json:"dead_letters"`
}

func (r *rig) deadLetters(plugin string) deadLetters {
	r.t.Helper()
	var out deadLetters
	body := httpGet(r.t, r.svc.URL(fmt.Sprintf("/admin/deadletters?plugin=%s", plugin)))
	if err := json.Unmarshal(body, &out); err != nil {
		r.t.Fatalf("dead letters: %v: %s", err, body)
	}
	return out
}
