package s3upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// TestRecordMP4WaitsForWriter: an MP4 recording is uploaded only after EMS's mp4 writer finished
// (processStopped with -path=<file>), or once it is stable; a TS recording goes at once.
func TestRecordMP4WaitsForWriter(t *testing.T) {
	e := newEnv(t, KindRecord, nil, map[string]any{"stable_for": "1h"})
	media := filepath.Join(e.root, "cam1")
	if err := os.MkdirAll(media, 0o755); err != nil {
		t.Fatal(err)
	}
	ffmpeg(t, media, "-t", "1", "1_0001.mp4")
	ffmpeg(t, media, "-t", "1", "2.ts")
	mp4 := filepath.Join(media, "1_0001.mp4")
	writeFile(t, filepath.Join(media, "1_0001.info"), []byte("writer part"))

	closed := e.ev(event.RecordChunkClosed, map[string]any{"_localStreamName": "1", "file": mp4,
		"frameCount": 10, "startTime": "2017-09-19T04:32:28.000", "stopTime": "2017-09-19T04:32:29.000"})
	err := e.u.Handle(t.Context(), closed)
	if !errors.Is(err, errIncomplete) || plugins.IsPermanent(err) {
		t.Fatalf("recordChunkClosed with writer parts present: got %v, want a retryable incomplete error", err)
	}
	if err := os.Remove(filepath.Join(media, "1_0001.info")); err != nil {
		t.Fatal(err)
	}
	if err := e.u.Handle(t.Context(), closed); !errors.Is(err, errIncomplete) {
		t.Fatalf("recordChunkClosed of a fresh file (stable_for 1h): got %v, want incomplete", err)
	}
	if n := len(e.objects()); n != 0 {
		t.Fatalf("bucket has %d objects before the writer finished", n)
	}
	// The writer's processStopped (reference §1.6.2), with Windows-style quoting of the path.
	e.handle(e.ev(event.ProcessStopped, map[string]any{"arguments": `-path="` + mp4 + `"`,
		"configId": 5, "fullBinaryPath": "/usr/bin/evo-mp4writer", "keepAlive": false, "operationType": 8}))
	e.handle(closed) // the retried recordChunkClosed is now harmless
	e.handle(e.ev(event.RecordChunkClosed, map[string]any{"file": filepath.Join(media, "2.ts")}))
	objs := e.objects()
	if objs["cam1/1_0001.mp4"] != int64(len(readFile(t, mp4))) {
		t.Errorf("bucket has %v, want cam1/1_0001.mp4 complete", objs)
	}
	if _, ok := objs["cam1/2.ts"]; !ok {
		t.Errorf("bucket lacks the TS recording: %v", sortedKeys(objs))
	}
	if n := e.puts()["cam1/1_0001.mp4"]; n != 1 {
		t.Errorf("mp4 stored %d times, want once", n)
	}

	// Without processStopped, a file unchanged for stable_for is complete.
	e2 := newEnv(t, KindRecord, e.srv, map[string]any{"stable_for": "1s"})
	e2.bucket = e.bucket
	rec := filepath.Join(e2.root, "3.mp4")
	writeFile(t, rec, readFile(t, mp4))
	past := time.Now().Add(-time.Minute)
	_ = os.Chtimes(rec, past, past)
	e2.handle(e2.ev(event.RecordChunkClosed, map[string]any{"file": rec}))
	if _, ok := e2.objects()["3.mp4"]; !ok {
		t.Error("stable recording not uploaded")
	}
}

// failingParts lets n UploadPart calls through, then fails the rest, like a crash mid-upload.
type failingParts struct {
	API
	allow int32
	calls atomic.Int32
}

func (f *failingParts) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	if f.calls.Add(1) > f.allow {
		return nil, errors.New("process killed")
	}
	return f.API.UploadPart(ctx, in, opts...)
}

// TestRecordMultipartResumes: a 20 MiB recording goes up in 5 MiB parts; when the upload dies
// after two parts, a new uploader (a restarted process) sends only the missing parts, and the
// object equals the file.
func TestRecordMultipartResumes(t *testing.T) {
	params := map[string]any{"part_size": 5 << 20, "multipart_threshold": 5 << 20, "concurrency": 1}
	first := &failingParts{allow: 2}
	e := newEnv(t, KindRecord, nil, params)
	e.u = e.build(KindRecord, params, func(a API) API { first.API = a; return first })
	data := make([]byte, 20<<20+123)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(e.root, "big.flv")
	writeFile(t, rec, data)
	ev := e.ev(event.RecordChunkClosed, map[string]any{"file": rec})
	if err := e.u.Handle(t.Context(), ev); err == nil {
		t.Fatal("upload succeeded although parts failed")
	}
	states, _ := filepath.Glob(filepath.Join(e.dataDir, "multipart", "*.json"))
	if len(states) != 1 {
		t.Fatalf("multipart state files: %v, want one", states)
	}

	second := &failingParts{allow: 1000}
	e.u = e.build(KindRecord, params, func(a API) API { second.API = a; return second })
	e.handle(ev)
	if got := second.calls.Load(); got != 3 { // 5 parts (4 full + 1 small), 2 already there
		t.Errorf("resumed upload sent %d parts, want 3", got)
	}
	if got := e.get("big.flv"); !bytes.Equal(got, data) {
		t.Errorf("object differs from the file (%d bytes, want %d)", len(got), len(data))
	}
	if states, _ := filepath.Glob(filepath.Join(e.dataDir, "multipart", "*.json")); len(states) != 0 {
		t.Errorf("state files left after completion: %v", states)
	}
	e.handle(ev) // repeated: nothing to do
	if got := second.calls.Load(); got != 3 {
		t.Errorf("repeated event sent parts again (%d)", got)
	}
}
