package s3upload

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// TestConfinementRefusesPathsOutsideMediaRoots: every way out of the media roots is a permanent
// error, uploads nothing, is counted by reason and logged as a security event.
func TestConfinementRefusesPathsOutsideMediaRoots(t *testing.T) {
	e := newEnv(t, KindHLS, nil, nil)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.ts")
	writeFile(t, secret, []byte("not for the bucket"))
	stream := filepath.Join(e.root, "g", "s")
	writeFile(t, filepath.Join(stream, "ok.ts"), []byte("segment"))
	if err := os.Symlink(secret, filepath.Join(stream, "link.ts")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(e.root, "g", "linkdir")); err != nil {
		t.Fatal(err)
	}
	// A playlist inside the root that points outside it.
	writeFile(t, filepath.Join(stream, "evil.m3u8"), []byte("#EXTM3U\n#EXTINF:1,\nok.ts\n#EXTINF:1,\n../../../"+filepath.Base(outside)+"/secret.ts\n"))

	tests := []struct {
		name, typ, file, reason string
	}{
		{"dot dot", event.HLSChunkClosed, stream + "/../../../" + filepath.Base(outside) + "/secret.ts", reasonDotDot},
		{"windows dot dot", event.HLSChunkClosed, stream + `\..\..\..\secret.ts`, reasonDotDot},
		{"absolute elsewhere", event.HLSChunkClosed, secret, reasonOutside},
		{"etc", event.HLSChunkClosed, "/etc/passwd", reasonOutside},
		{"relative", event.HLSChunkClosed, "g/s/ok.ts", reasonRelative},
		{"symlinked file escapes", event.HLSChunkClosed, filepath.Join(stream, "link.ts"), reasonSymlink},
		{"symlinked folder escapes", event.HLSChunkClosed, filepath.Join(e.root, "g", "linkdir", "secret.ts"), reasonSymlink},
		{"playlist reference escapes", event.HLSChildPlaylistUpdated, filepath.Join(stream, "evil.m3u8"), reasonOutside},
		{"delete outside", event.HLSChunkDeleted, secret, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := 0.0
			if tc.reason != "" {
				before = counter(e.u.m.refused.WithLabelValues(tc.reason))
			}
			err := e.u.Handle(t.Context(), e.fileEvent(tc.typ, tc.file))
			if tc.typ == event.HLSChunkDeleted {
				if err != nil {
					t.Fatalf("delete with delete_on_chunk_deleted off: %v, want nil (nothing to do)", err)
				}
				return
			}
			if err == nil || !plugins.IsPermanent(err) || !errors.Is(err, errRefused) {
				t.Fatalf("got %v, want a permanent refusal", err)
			}
			if got := counter(e.u.m.refused.WithLabelValues(tc.reason)); got != before+1 {
				t.Errorf("refused{reason=%s} = %v, want %v", tc.reason, got, before+1)
			}
		})
	}
	for key := range e.objects() {
		if key != "g/s/ok.ts" { // the evil playlist's legitimate segment may go up; nothing else
			t.Errorf("bucket has %s after refused events", key)
		}
	}
	if !strings.Contains(e.log.String(), `"security":true`) {
		t.Error("no security event logged")
	}
	if strings.Contains(e.log.String(), "not for the bucket") {
		t.Error("the outside file's content reached the log")
	}
}

// TestBackfillUploadsFilesWithoutEvents: files written while nobody listened are found, uploaded
// once, playlists after what they reference; a second pass repairs nothing; a changed size is
// repaired; a file being written (too young) is left to its event.
func TestBackfillUploadsFilesWithoutEvents(t *testing.T) {
	stage, entries := hlsSource(t, 3)
	e := newEnv(t, KindHLS, nil, map[string]any{"backfill_min_age": "10s"})
	stream := filepath.Join(e.root, "hlsa1", "cam1")
	old := time.Now().Add(-time.Minute)
	for _, ent := range entries {
		writeFile(t, filepath.Join(stream, ent[1]), readFile(t, filepath.Join(stage, ent[1])))
	}
	writeFile(t, filepath.Join(stream, "playlist.m3u8"), childPlaylist(entries, true))
	writeFile(t, filepath.Join(e.root, "hlsa1", "playlist.m3u8"), []byte(masterM3U8))
	writeFile(t, filepath.Join(stream, "orphan.ts"), readFile(t, filepath.Join(stage, entries[0][1])))
	writeFile(t, filepath.Join(e.root, "notes.txt"), []byte("not media"))
	_ = filepath.Walk(e.root, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
	young := filepath.Join(stream, "young.ts")
	writeFile(t, young, []byte("being written"))

	if err := e.u.Reconcile(t.Context()); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	objs := e.objects()
	want := []string{"hlsa1/playlist.m3u8", "hlsa1/cam1/playlist.m3u8", "hlsa1/cam1/orphan.ts"}
	for _, ent := range entries {
		want = append(want, "hlsa1/cam1/"+ent[1])
	}
	for _, k := range want {
		if _, ok := objs[k]; !ok {
			t.Errorf("backfill did not upload %s", k)
		}
	}
	if len(objs) != len(want) {
		t.Errorf("bucket has %v, want exactly %v", sortedKeys(objs), want)
	}
	if got := counter(e.u.m.repairs); got != float64(len(want)) {
		t.Errorf("repairs = %v, want %d", got, len(want))
	}
	e.assertServerOrder()

	// A fresh uploader (a restart) finds nothing to repair.
	u2 := e.build(KindHLS, map[string]any{"backfill_min_age": "10s"}, nil)
	if err := u2.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := counter(u2.m.repairs); got != 0 {
		t.Errorf("second backfill repaired %v files, want 0", got)
	}
	// A file whose size differs in the bucket is uploaded again.
	writeFile(t, filepath.Join(stream, "orphan.ts"), []byte("changed"))
	_ = os.Chtimes(filepath.Join(stream, "orphan.ts"), old, old)
	if err := u2.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := e.objects()["hlsa1/cam1/orphan.ts"]; got != int64(len("changed")) {
		t.Errorf("orphan.ts in bucket has size %d after repair, want %d", got, len("changed"))
	}
	if got := counter(u2.m.repairs); got != 1 {
		t.Errorf("repairs after size change = %v, want 1", got)
	}
}

// TestOutageIsRetryable: with the S3 server down, Handle fails with a retryable error; when it is
// back, the same event succeeds.
func TestOutageIsRetryable(t *testing.T) {
	stage, entries := hlsSource(t, 2)
	e := newEnv(t, KindHLS, nil, nil)
	seg := filepath.Join(e.root, "g", "s", entries[0][1])
	writeFile(t, seg, readFile(t, filepath.Join(stage, entries[0][1])))
	ev := e.fileEvent(event.HLSChunkClosed, seg)

	e.srv.Stop()
	err := e.u.Handle(t.Context(), ev)
	if err == nil {
		t.Fatal("Handle succeeded with the S3 server down")
	}
	if plugins.IsPermanent(err) {
		t.Fatalf("outage error is permanent: %v", err)
	}
	e.srv.Start()
	e.handle(ev)
	if _, ok := e.objects()["g/s/"+entries[0][1]]; !ok {
		t.Fatal("segment not in the bucket after the server came back")
	}
}

// TestStartChecksBucket: a bucket the server refuses or lacks is a clear error at start.
func TestStartChecksBucket(t *testing.T) {
	e := newEnv(t, KindHLS, nil, nil)
	tests := []struct {
		name   string
		params map[string]any
		want   []string // all in the error; nil means Start succeeds
	}{
		{"guide's invalid name", map[string]any{"default_bucket": "HLS_files"}, []string{`"HLS_files"`, "refuses the bucket name", "lowercase"}},
		{"missing bucket", map[string]any{"default_bucket": "nosuchbucket"}, []string{`"nosuchbucket"`, "does not exist", "create_bucket"}},
		{"wrong secret", map[string]any{"aws_secret_key": "wrongwrongwrong"}, []string{`"media"`, "access denied"}},
		{"created", map[string]any{"default_bucket": "made-at-start", "create_bucket": true}, nil},
		{"no media root", map[string]any{"media_roots": []string{filepath.Join(e.root, "missing")}}, []string{"media roots", "missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Factory(KindHLS)("hls", e.params(tc.params), plugins.Deps{})
			if err != nil {
				t.Fatalf("factory: %v", err)
			}
			u := p.(*Uploader)
			err = u.Start(t.Context())
			if tc.want == nil {
				if err != nil {
					t.Fatalf("start: %v", err)
				}
				if _, err := e.srv.Client.HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: aws.String("made-at-start")}); err != nil {
					t.Fatalf("bucket not created: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("start succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), e.srv.SecretKey) || strings.Contains(err.Error(), "wrongwrongwrong") {
				t.Errorf("error reveals a secret: %v", err)
			}
		})
	}
}
