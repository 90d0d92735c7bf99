package s3upload

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/emsflow/emsflow/internal/s3test"
)

// rollingPlaylist is a rolling HLS child playlist listing n chunks from first. Its size does not
// change as the window moves while the chunk numbers keep their digit count.
func rollingPlaylist(first, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:%d\n", first)
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, "#EXTINF:1.000,\nseg_%d.ts\n", i)
	}
	return []byte(b.String())
}

// TestBackfillRepairsSameSizePlaylist: a playlist rewritten in place keeps its size (a rolling
// HLS window moving on, an HDS bootstrap whose open run grows). When its last events are lost,
// backfill must store the newer version, after the chunk it adds, even though the bucket holds an
// object of the same size; and a restarted uploader must find that version current.
func TestBackfillRepairsSameSizePlaylist(t *testing.T) {
	tests := []struct {
		name     string
		kind     Kind
		params   map[string]any
		playlist string // relative to the media root
		key      string
		v1, v2   []byte
		chunks   []string // on disk before v1
		newChunk string   // written with v2
		order    bool     // the playlist's references can be parsed: check each version's order
	}{
		{
			name: "hls rolling child playlist", kind: KindHLS,
			playlist: "hlsr/cam1/playlist.m3u8", key: "hlsr/cam1/playlist.m3u8",
			v1: rollingPlaylist(1, 3), v2: rollingPlaylist(2, 3),
			chunks: []string{"hlsr/cam1/seg_1.ts", "hlsr/cam1/seg_2.ts", "hlsr/cam1/seg_3.ts"}, newChunk: "hlsr/cam1/seg_4.ts",
			order: true,
		},
		{
			// Backfill meets the bootstrap without its manifest, so its bytes are not parsed.
			name: "hds bootstrap", kind: KindHDS, params: map[string]any{"bootstrap": "stream0.abst"},
			playlist: "hdsg/cam1/stream0.abst", key: "hdsg/cam1/stream0.abst",
			v1: []byte("abst run 1-1"), v2: []byte("abst run 1-2"),
			chunks: []string{"hdsg/cam1/stream0Seg1-Frag1"}, newChunk: "hdsg/cam1/stream0Seg1-Frag2",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.v1) != len(tc.v2) || bytes.Equal(tc.v1, tc.v2) {
				t.Fatalf("the two versions must differ with the same size: %d and %d bytes", len(tc.v1), len(tc.v2))
			}
			params := map[string]any{"backfill_min_age": "10s"}
			for k, v := range tc.params {
				params[k] = v
			}
			srv := s3test.StartWith(t, s3test.Options{Versioning: true})
			e := newEnv(t, tc.kind, srv, params)
			srv.EnableVersioning(t, e.bucket)
			older, newer := time.Now().Add(-2*time.Minute), time.Now().Add(-time.Minute)
			write := func(rel string, data []byte, mtime time.Time) {
				p := filepath.Join(e.root, filepath.FromSlash(rel))
				writeFile(t, p, data)
				if err := os.Chtimes(p, mtime, mtime); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range tc.chunks {
				write(c, []byte("chunk "+c), older)
			}
			write(tc.playlist, tc.v1, older)
			if err := e.u.Reconcile(t.Context()); err != nil {
				t.Fatalf("first backfill: %v", err)
			}
			if got := e.get(tc.key); !bytes.Equal(got, tc.v1) {
				t.Fatalf("after the first backfill the bucket holds %q, want %q", got, tc.v1)
			}

			// EMS adds a chunk and rewrites the playlist; both events are lost.
			write(tc.newChunk, []byte("chunk "+tc.newChunk), newer)
			write(tc.playlist, tc.v2, newer)
			before := counter(e.u.m.repairs)
			if err := e.u.Reconcile(t.Context()); err != nil {
				t.Fatalf("second backfill: %v", err)
			}
			if got := e.get(tc.key); !bytes.Equal(got, tc.v2) {
				t.Errorf("bucket holds the stale %s after backfill:\n%s\nwant:\n%s", tc.key, got, tc.v2)
			}
			if got := counter(e.u.m.repairs) - before; got != 2 {
				t.Errorf("second backfill repaired %v files, want 2 (the new chunk and the playlist)", got)
			}
			if tc.order {
				e.assertVersionOrder()
			}

			// A restarted uploader (empty cache) finds the stored version current by its
			// recorded mtime and stores nothing again.
			u2 := e.build(tc.kind, params, nil)
			if err := u2.Reconcile(t.Context()); err != nil {
				t.Fatalf("backfill after restart: %v", err)
			}
			if got := counter(u2.m.repairs); got != 0 {
				t.Errorf("backfill after restart repaired %v files, want 0", got)
			}
			if got := e.puts()[tc.key]; got != 2 {
				t.Errorf("%s stored %d times, want 2 (each version once)", tc.key, got)
			}
		})
	}
}

// TestListBucketHoldsCandidatesOnly: backfill keeps the sizes of the objects it compares with
// local files, not the whole bucket, which keeps what EMS has long deleted from its disk.
func TestListBucketHoldsCandidatesOnly(t *testing.T) {
	e := newEnv(t, KindHLS, nil, nil)
	put := func(key string, size int) {
		if _, err := e.srv.Client.PutObject(t.Context(), &s3.PutObjectInput{
			Bucket: aws.String(e.bucket), Key: aws.String(key), Body: bytes.NewReader(make([]byte, size)),
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		put(fmt.Sprintf("hls/old/seg_%d.ts", i), i+1)
	}
	put("hls/cam1/seg_1.ts", 5)
	got, err := e.u.listBucket(t.Context(), []candidate{{key: "hls/cam1/seg_1.ts"}, {key: "hls/cam1/seg_2.ts"}, {key: "hls/old/seg_3.ts"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"hls/cam1/seg_1.ts": 5, "hls/old/seg_3.ts": 4}
	if !maps.Equal(got, want) {
		t.Errorf("listBucket = %v, want %v", got, want)
	}
}
