package s3upload

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/s3test"
)

// TestDASHManifestAfterSegments grows a DASH manifest (EMS 2.0 layout: manifest at group level,
// segments in <stream>/video/0/, reference §1.6.2) and sends the manifest event before the
// segment's, the init segment only through outStreamCreated of the seg_init writer. The bucket
// never has a manifest naming a missing segment, and plays over HTTP.
func TestDASHManifestAfterSegments(t *testing.T) {
	stage := t.TempDir()
	if err := os.MkdirAll(filepath.Join(stage, "1", "video", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	ffmpeg(t, stage, "-an", "-t", "5", "-f", "dash", "-seg_duration", "1",
		"-init_seg_name", "1/video/0/seg_init.mp4", "-media_seg_name", "1/video/0/$Number$.fmp4", "manifest.mpd")
	final := string(readFile(t, filepath.Join(stage, "manifest.mpd")))
	rAttr := regexp.MustCompile(`<S t="0" d="(\d+)" r="(\d+)" />`)
	m := rAttr.FindStringSubmatch(final)
	if m == nil {
		t.Fatalf("ffmpeg manifest has no single timeline run:\n%s", final)
	}
	n := atoi(t, m[2]) + 1

	srv := s3test.StartWith(t, s3test.Options{Versioning: true})
	e := newEnv(t, KindDASH, srv, nil)
	srv.EnableVersioning(t, e.bucket)
	group := filepath.Join(e.root, "dashc1")
	manifest := filepath.Join(group, "manifest.mpd")
	init := filepath.Join(group, "1", "video", "0", "seg_init.mp4")
	writeFile(t, init, readFile(t, filepath.Join(stage, "1", "video", "0", "seg_init.mp4")))
	// EMS's seg_init writer announces the init segment with EMS's mixed separators.
	e.handle(e.ev(event.OutStreamCreated, map[string]any{"name": "segInitwriter", "type": "OFMP4",
		"recordSettings": map[string]any{"chunkLength": 10, "computedPathToFile": group + `\1\/video/0/seg_init.mp4`}}))
	if _, ok := e.objects()["dashc1/1/video/0/seg_init.mp4"]; !ok {
		t.Fatalf("init segment not uploaded on outStreamCreated; bucket: %v", sortedKeys(e.objects()))
	}
	for i := 1; i <= n; i++ {
		seg := filepath.Join(group, "1", "video", "0", fmt.Sprintf("%d.fmp4", i))
		writeFile(t, seg, readFile(t, filepath.Join(stage, "1", "video", "0", fmt.Sprintf("%d.fmp4", i))))
		grown := rAttr.ReplaceAllString(final, fmt.Sprintf(`<S t="0" d="%s" r="%d" />`, m[1], i-1))
		writeFile(t, manifest, []byte(grown))
		e.handle(e.fileEvent(event.DASHPlaylistUpdated, manifest))
		e.assertComplete()
		e.handle(e.fileEvent(event.DASHChunkClosed, seg))
		e.assertComplete()
	}
	objs := e.objects()
	for i := 1; i <= n; i++ {
		if _, ok := objs[fmt.Sprintf("dashc1/1/video/0/%d.fmp4", i)]; !ok {
			t.Errorf("bucket lacks segment %d", i)
		}
	}
	if _, ok := objs["dashc1/manifest.mpd"]; !ok {
		t.Error("bucket lacks dashc1/manifest.mpd")
	}
	e.assertVersionOrder()
	e.srv.MakePublic(t, e.bucket)
	// ffprobe refuses the .fmp4 extension EMS uses unless told otherwise.
	local := probePackets(t, manifest, "-allowed_extensions", "ALL")
	remote := probePackets(t, e.srv.URL(e.bucket, "dashc1/manifest.mpd"), "-allowed_extensions", "ALL")
	if remote != local || local == 0 {
		t.Errorf("ffprobe over HTTP read %d packets, from disk %d", remote, local)
	}
}

// TestHDSMasterBeforeEverything sends the master manifest event first: the fragments listed by
// the bootstrap, the bootstrap, the child manifest and the _v1 variant must all be stored, each
// before what names it (checked in the server's own log).
func TestHDSMasterBeforeEverything(t *testing.T) {
	e := newEnv(t, KindHDS, nil, map[string]any{"bootstrap": "stream0.abst"})
	group := filepath.Join(e.root, "hdsg")
	if err := os.MkdirAll(group, 0o755); err != nil {
		t.Fatal(err)
	}
	ffmpeg(t, group, "-t", "4", "-b:v", "200k", "-f", "hds", "-min_frag_duration", "1000000", "cam1")
	master := `<?xml version="1.0" encoding="utf-8"?>
<manifest xmlns="http://ns.adobe.com/f4m/2.0">
	<id>cam1</id>
	<media href="cam1/index.f4m" bitrate="200"/>
</manifest>
`
	writeFile(t, filepath.Join(group, "cam1.f4m"), []byte(master))
	writeFile(t, filepath.Join(group, "cam1_v1.f4m"), []byte(master))

	e.handle(e.fileEvent(event.HDSMasterPlaylistUpdated, filepath.Join(group, "cam1.f4m")))
	e.assertComplete()
	frags, _ := filepath.Glob(filepath.Join(group, "cam1", "stream0Seg1-Frag*"))
	if len(frags) < 3 {
		t.Fatalf("ffmpeg made %d fragments", len(frags))
	}
	objs := e.objects()
	want := []string{"hdsg/cam1.f4m", "hdsg/cam1_v1.f4m", "hdsg/cam1/index.f4m", "hdsg/cam1/stream0.abst"}
	for _, f := range frags {
		want = append(want, "hdsg/cam1/"+filepath.Base(f))
	}
	for _, k := range want {
		if _, ok := objs[k]; !ok {
			t.Errorf("bucket lacks %s (has %v)", k, sortedKeys(objs))
		}
	}
	e.assertServerOrder()

	// A fragment event and a child manifest event for stored files change nothing.
	before := e.puts()
	e.handle(e.fileEvent(event.HDSChunkClosed, frags[0]))
	e.handle(e.fileEvent(event.HDSChildPlaylistUpdated, filepath.Join(group, "cam1", "index.f4m")))
	after := e.puts()
	for k, n := range after {
		if before[k] != n {
			t.Errorf("%s stored again by a repeated event (%d → %d)", k, before[k], n)
		}
	}
}

// TestHDSFragmentUploadsBootstrap: a fragment event stores the fragment and then the folder's
// bootstrap, as the original did.
func TestHDSFragmentUploadsBootstrap(t *testing.T) {
	e := newEnv(t, KindHDS, nil, map[string]any{"bootstrap": "stream0.abst", "prefix": "hds"})
	group := filepath.Join(e.root, "hdsg")
	if err := os.MkdirAll(group, 0o755); err != nil {
		t.Fatal(err)
	}
	ffmpeg(t, group, "-t", "3", "-b:v", "200k", "-f", "hds", "-min_frag_duration", "1000000", "cam1")
	e.handle(e.fileEvent(event.HDSChunkClosed, filepath.Join(group, "cam1", "stream0Seg1-Frag1")))
	objs := e.objects()
	for _, k := range []string{"hds/hdsg/cam1/stream0Seg1-Frag1", "hds/hdsg/cam1/stream0.abst"} {
		if _, ok := objs[k]; !ok {
			t.Errorf("bucket lacks %s (has %v)", k, sortedKeys(objs))
		}
	}
	e.assertComplete()
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBackfillDASHAndHDS: ffmpeg's DASH and HDS output with no events at all is backfilled
// completely, each manifest after what it references.
func TestBackfillDASHAndHDS(t *testing.T) {
	srv := s3test.Start(t)
	t.Run("dash", func(t *testing.T) {
		e := newEnv(t, KindDASH, srv, nil)
		group := filepath.Join(e.root, "dashg")
		if err := os.MkdirAll(filepath.Join(group, "1", "video", "0"), 0o755); err != nil {
			t.Fatal(err)
		}
		ffmpeg(t, group, "-an", "-t", "3", "-f", "dash", "-seg_duration", "1",
			"-init_seg_name", "1/video/0/seg_init.mp4", "-media_seg_name", "1/video/0/$Number$.fmp4", "manifest.mpd")
		backfillAll(t, e)
		if _, ok := e.objects()["dashg/1/video/0/seg_init.mp4"]; !ok {
			t.Errorf("init segment not backfilled: %v", sortedKeys(e.objects()))
		}
	})
	t.Run("hds", func(t *testing.T) {
		e := newEnv(t, KindHDS, srv, map[string]any{"bootstrap": "stream0.abst"})
		e.bucket = "hds"
		srv.CreateBucket(t, e.bucket)
		e.u = e.build(KindHDS, map[string]any{"bootstrap": "stream0.abst"}, nil)
		group := filepath.Join(e.root, "hdsg")
		if err := os.MkdirAll(group, 0o755); err != nil {
			t.Fatal(err)
		}
		ffmpeg(t, group, "-t", "3", "-b:v", "200k", "-f", "hds", "-min_frag_duration", "1000000", "cam1")
		writeFile(t, filepath.Join(group, "cam1.f4m"), []byte(`<manifest xmlns="http://ns.adobe.com/f4m/2.0"><media href="cam1/index.f4m" bitrate="200"/></manifest>`))
		backfillAll(t, e)
	})
}

// backfillAll ages every file under the root, reconciles, and checks that every file is in the
// bucket and the server order.
func backfillAll(t *testing.T, e *testEnv) {
	t.Helper()
	old := time.Now().Add(-time.Minute)
	var want []string
	_ = filepath.Walk(e.root, func(p string, fi os.FileInfo, _ error) error {
		if fi != nil && !fi.IsDir() {
			rel, _ := filepath.Rel(e.root, p)
			want = append(want, filepath.ToSlash(rel))
		}
		return os.Chtimes(p, old, old)
	})
	if err := e.u.Reconcile(t.Context()); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	objs := e.objects()
	for _, k := range want {
		if _, ok := objs[k]; !ok {
			t.Errorf("backfill did not upload %s (bucket: %v)", k, sortedKeys(objs))
		}
	}
	e.assertComplete()
	e.assertServerOrder()
}
