package s3upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/s3test"
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
	// A track part left alone still means the writer has not finished.
	writeFile(t, filepath.Join(media, "1_0001.track2"), []byte("writer part"))
	if err := e.u.Handle(t.Context(), closed); !errors.Is(err, errIncomplete) || !strings.Contains(err.Error(), "1_0001.track2") {
		t.Fatalf("recordChunkClosed with a .track2 part present: got %v, want incomplete naming it", err)
	}
	if err := os.Remove(filepath.Join(media, "1_0001.track2")); err != nil {
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

// lostCompletion completes multipart uploads on the server but loses the answer, like a
// connection reset after the server did the work: the uploader keeps its resumable state.
type lostCompletion struct{ API }

func (l lostCompletion) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if _, err := l.API.CompleteMultipartUpload(ctx, in, opts...); err != nil {
		return nil, err
	}
	return nil, errors.New("connection reset after the server completed the upload")
}

// liveUploads counts the multipart uploads in progress under key.
func (e *testEnv) liveUploads(key string) int {
	e.t.Helper()
	out, err := e.srv.Client.ListMultipartUploads(e.t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.bucket), Prefix: aws.String(key)})
	if err != nil {
		e.t.Fatalf("list multipart uploads: %v", err)
	}
	n := 0
	for _, up := range out.Uploads {
		if aws.ToString(up.Key) == key {
			n++
		}
	}
	return n
}

// stateFiles lists the resumable multipart states kept in the data folder.
func (e *testEnv) stateFiles() []string {
	e.t.Helper()
	states, err := filepath.Glob(filepath.Join(e.dataDir, "multipart", "*.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	return states
}

// TestRecordEventForDeletedFile: a recording event (recordChunkClosed, or the mp4 writer's
// processStopped) can come after the recording was deleted: it waited out an S3 outage while
// retention removed the file. It is done when the bucket holds the recording complete, and
// dead-lettered at once, counted as lost, when it does not; a multipart upload the deletion cut
// short is aborted, not left in the bucket for good. Neither retries for a day. A media root that
// is gone stays retryable and touches nothing, and an MP4 whose writer may still be at work
// (recent event, or writer parts on disk) keeps waiting. The late event goes to a fresh uploader
// (a restarted process): nothing kept in memory may decide.
func TestRecordEventForDeletedFile(t *testing.T) {
	srv := s3test.Start(t)
	const big = 6<<20 + 17 // above multipart_threshold: two parts
	params := map[string]any{"part_size": 5 << 20, "multipart_threshold": 5 << 20, "concurrency": 1, "stable_for": "1h"}
	type setup int
	const (
		never        setup = iota // never uploaded
		uploaded                  // uploaded by its event before the deletion
		midMultipart              // deleted after one part of a multipart upload
		answerLost                // the multipart upload completed, the answer was lost
		olderThenMid              // an older version is stored, the newer one is cut short
	)
	type outcome int
	const (
		done  outcome = iota // nil, counted unchanged
		lost                 // permanent, counted lost
		retry                // retryable
	)
	tests := []struct {
		name     string
		file     string // relative to the media root; also the key
		size     int
		before   setup
		late     string        // the late event: recordChunkClosed or processStopped
		age      time.Duration // how old the late event is
		parts    bool          // evo-mp4writer's parts of the file stay on disk
		rootGone bool          // the whole media root disappears instead
		want     outcome
		wantErr  error // for retry: what the error must wrap
		keep     int   // size of the object the bucket must still hold, 0 for none
	}{
		{name: "ts in bucket", file: "a/1.ts", size: 1000, before: uploaded, late: event.RecordChunkClosed, want: done, keep: 1000},
		{name: "ts never uploaded", file: "b/1.ts", size: 1000, before: never, late: event.RecordChunkClosed, want: lost},
		{name: "multipart completed, answer lost", file: "c/1.flv", size: big, before: answerLost, late: event.RecordChunkClosed, want: done, keep: big},
		{name: "deleted mid-multipart", file: "d/1.flv", size: big, before: midMultipart, late: event.RecordChunkClosed, want: lost},
		{name: "newer version deleted mid-multipart", file: "e/1.flv", size: big, before: olderThenMid, late: event.RecordChunkClosed, want: lost, keep: 1000},
		{name: "mp4 writer finished, in bucket", file: "f/1.mp4", size: 1000, before: uploaded, late: event.ProcessStopped, want: done, keep: 1000},
		{name: "mp4 writer finished, never uploaded", file: "g/1.mp4", size: 1000, before: never, late: event.ProcessStopped, want: lost},
		{name: "mp4 writer finished, deleted mid-multipart", file: "h/1.mp4", size: big, before: midMultipart, late: event.ProcessStopped, want: lost},
		{name: "mp4 chunk closed, writer not seen, in bucket", file: "i/1.mp4", size: 1000, before: uploaded, late: event.RecordChunkClosed, want: done, keep: 1000},
		{name: "mp4 chunk closed long ago, never uploaded", file: "j/1.mp4", size: 1000, before: never, late: event.RecordChunkClosed, age: 2 * time.Hour, want: lost},
		{name: "mp4 chunk closed just now", file: "k/1.mp4", size: 1000, before: never, late: event.RecordChunkClosed, want: retry, wantErr: errIncomplete},
		{name: "mp4 chunk closed long ago, writer parts there", file: "l/1.mp4", size: 1000, before: never, late: event.RecordChunkClosed, age: 2 * time.Hour, parts: true, want: retry, wantErr: errIncomplete},
		{name: "media root gone", file: "m/1.ts", size: 1000, before: never, late: event.RecordChunkClosed, rootGone: true, want: retry, wantErr: fs.ErrNotExist},
		{name: "media root gone mid-multipart", file: "n/1.flv", size: big, before: midMultipart, late: event.RecordChunkClosed, rootGone: true, want: retry, wantErr: fs.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, KindRecord, srv, params)
			p := filepath.Join(e.root, filepath.FromSlash(tc.file))
			data := make([]byte, tc.size)
			if _, err := rand.Read(data); err != nil {
				t.Fatal(err)
			}
			writeFile(t, p, data)
			closed := e.ev(event.RecordChunkClosed, map[string]any{"file": p})
			stopped := e.ev(event.ProcessStopped, map[string]any{"arguments": "-path=" + p,
				"configId": 5, "fullBinaryPath": "/usr/bin/evo-mp4writer", "keepAlive": false, "operationType": 8})
			first := closed
			if strings.HasSuffix(tc.file, ".mp4") {
				first = stopped // the writer finished: the file is complete
			}
			cutShort := func() {
				t.Helper()
				e.u = e.build(KindRecord, params, func(a API) API { return &failingParts{API: a, allow: 1} })
				if err := e.u.Handle(t.Context(), first); err == nil {
					t.Fatal("upload succeeded although parts failed")
				}
				if n := len(e.stateFiles()); n != 1 {
					t.Fatalf("%d multipart states after the cut-short upload, want 1", n)
				}
			}
			switch tc.before {
			case uploaded:
				e.handle(first)
			case midMultipart:
				cutShort()
			case answerLost:
				e.u = e.build(KindRecord, params, func(a API) API { return lostCompletion{a} })
				if err := e.u.Handle(t.Context(), first); err == nil {
					t.Fatal("upload succeeded although its answer was lost")
				}
			case olderThenMid:
				old := data[:1000]
				writeFile(t, p, old)
				past := time.Now().Add(-time.Minute)
				if err := os.Chtimes(p, past, past); err != nil {
					t.Fatal(err)
				}
				e.handle(first)
				writeFile(t, p, data)
				cutShort()
			}
			key := toSlash(tc.file)
			wasInBucket := len(e.objects()) > 0 && e.objects()[key] > 0
			if wasInBucket != (tc.before == uploaded || tc.before == answerLost || tc.before == olderThenMid) {
				t.Fatalf("before the deletion the bucket has %s: %v (objects %v)", key, wasInBucket, sortedKeys(e.objects()))
			}
			liveBefore, statesBefore := e.liveUploads(key), len(e.stateFiles())
			gone := p
			if tc.rootGone {
				gone = e.root
			}
			if err := os.RemoveAll(gone); err != nil {
				t.Fatal(err)
			}
			if tc.parts {
				base := strings.TrimSuffix(p, ".mp4")
				writeFile(t, base+".info", []byte("writer part"))
				writeFile(t, base+".mdat", []byte("writer part"))
			}

			// The late (or repeated) event, after a restart; without a media root emsflow does
			// not start, so there the uploader that was running takes it.
			u := e.u
			if !tc.rootGone {
				u = e.build(KindRecord, params, nil)
			}
			ev := closed
			if tc.late == event.ProcessStopped {
				ev = stopped
			}
			ev.Timestamp = uint64(time.Now().Add(-tc.age).Unix())
			unchanged, lostBefore := counter(u.m.unchanged), counter(u.m.lost.WithLabelValues(reasonDeletedBeforeUpload))
			err := u.Handle(t.Context(), ev)

			lostN := counter(u.m.lost.WithLabelValues(reasonDeletedBeforeUpload)) - lostBefore
			switch tc.want {
			case done:
				if err != nil {
					t.Errorf("recording deleted after its upload: got %v, want nil", err)
				}
				if got := counter(u.m.unchanged) - unchanged; got != 1 {
					t.Errorf("unchanged counter rose by %v, want 1", got)
				}
			case lost:
				if err == nil || !plugins.IsPermanent(err) || !strings.Contains(err.Error(), "deleted before it could be uploaded") {
					t.Errorf("recording deleted before its upload: got %v, want a permanent error saying it was deleted before it could be uploaded", err)
				}
			case retry:
				if err == nil || plugins.IsPermanent(err) || !errors.Is(err, tc.wantErr) {
					t.Errorf("got %v, want a retryable error wrapping %v", err, tc.wantErr)
				}
			}
			if wantLost := map[bool]float64{true: 1}[tc.want == lost]; lostN != wantLost {
				t.Errorf("lost{reason=%s} rose by %v, want %v", reasonDeletedBeforeUpload, lostN, wantLost)
			}
			objs := e.objects()
			if got, ok := objs[key]; tc.keep == 0 && ok || tc.keep != 0 && got != int64(tc.keep) {
				t.Errorf("bucket has %s: %v, %d bytes; want %d bytes (0: none)", key, ok, got, tc.keep)
			}
			// A retryable answer leaves the upload to resume; a final one leaves nothing behind.
			wantLive, wantStates := 0, 0
			if tc.want == retry {
				wantLive, wantStates = liveBefore, statesBefore
			}
			if got := e.liveUploads(key); got != wantLive {
				t.Errorf("%d multipart uploads of %s in progress, want %d", got, key, wantLive)
			}
			if got := len(e.stateFiles()); got != wantStates {
				t.Errorf("%d multipart states in the data folder, want %d", got, wantStates)
			}
		})
	}
}
