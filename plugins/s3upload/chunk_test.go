package s3upload

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/s3test"
	"github.com/emsflow/emsflow/plugins"
)

// TestChunkClosedForDeletedFile: a chunk event that arrives after EMS deleted the chunk (a
// rolling playlist moved past it while the event waited) is done when the bucket has the chunk,
// and dead-lettered at once when it does not, since no retry can bring the file back: neither
// retries for a day. A media root that is gone (an unmounted share) is not a deleted file and
// stays retryable.
func TestChunkClosedForDeletedFile(t *testing.T) {
	srv := s3test.Start(t)
	tests := []struct {
		name     string
		kind     Kind
		typ      string
		file     string // relative to the media root
		key      string
		uploaded bool // the chunk reached the bucket before EMS deleted it
		rootGone bool // the whole media root disappears instead
	}{
		{name: "hls in bucket", kind: KindHLS, typ: event.HLSChunkClosed, file: "hlsa/cam1/seg_7.ts", key: "hlsa/cam1/seg_7.ts", uploaded: true},
		{name: "hls never uploaded", kind: KindHLS, typ: event.HLSChunkClosed, file: "hlsb/cam1/seg_7.ts", key: "hlsb/cam1/seg_7.ts"},
		{name: "hds in bucket", kind: KindHDS, typ: event.HDSChunkClosed, file: "hdsa/cam1/streamSeg1-Frag7", key: "hdsa/cam1/streamSeg1-Frag7", uploaded: true},
		{name: "hds never uploaded", kind: KindHDS, typ: event.HDSChunkClosed, file: "hdsb/cam1/streamSeg1-Frag7", key: "hdsb/cam1/streamSeg1-Frag7"},
		{name: "dash in bucket", kind: KindDASH, typ: event.DASHChunkClosed, file: "dasha/cam1/video/0/7.fmp4", key: "dasha/cam1/video/0/7.fmp4", uploaded: true},
		{name: "dash never uploaded", kind: KindDASH, typ: event.DASHChunkClosed, file: "dashb/cam1/video/0/7.fmp4", key: "dashb/cam1/video/0/7.fmp4"},
		{name: "media root gone", kind: KindHLS, typ: event.HLSChunkClosed, file: "hlsc/cam1/seg_7.ts", key: "hlsc/cam1/seg_7.ts", rootGone: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.kind, srv, nil)
			p := filepath.Join(e.root, filepath.FromSlash(tc.file))
			writeFile(t, p, []byte("chunk "+tc.file))
			ev := e.fileEvent(tc.typ, p)
			if tc.uploaded {
				e.handle(ev)
				if _, ok := e.objects()[tc.key]; !ok {
					t.Fatalf("bucket lacks %s after its event (has %v)", tc.key, sortedKeys(e.objects()))
				}
			}
			gone := p
			if tc.rootGone {
				gone = e.root
			}
			if err := os.RemoveAll(gone); err != nil {
				t.Fatal(err)
			}
			unchanged := counter(e.u.m.unchanged)
			lost := counter(e.u.m.lost.WithLabelValues(reasonDeletedBeforeUpload))

			err := e.u.Handle(t.Context(), ev) // the late (or repeated) event
			switch {
			case tc.rootGone:
				if err == nil || plugins.IsPermanent(err) || !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("media root gone: got %v, want a retryable not-exist error", err)
				}
			case tc.uploaded:
				if err != nil {
					t.Errorf("chunk deleted after its upload: got %v, want nil", err)
				}
				if got := counter(e.u.m.unchanged); got != unchanged+1 {
					t.Errorf("unchanged counter = %v, want %v", got, unchanged+1)
				}
			default:
				if err == nil || !plugins.IsPermanent(err) || !strings.Contains(err.Error(), "deleted before it could be uploaded") {
					t.Errorf("chunk deleted before its upload: got %v, want a permanent error saying it was deleted before it could be uploaded", err)
				}
				if got := counter(e.u.m.lost.WithLabelValues(reasonDeletedBeforeUpload)); got != lost+1 {
					t.Errorf("lost{reason=%s} = %v, want %v", reasonDeletedBeforeUpload, got, lost+1)
				}
			}
			if tc.uploaded || tc.rootGone {
				if got := counter(e.u.m.lost.WithLabelValues(reasonDeletedBeforeUpload)); got != lost {
					t.Errorf("lost{reason=%s} = %v, want %v: nothing was lost", reasonDeletedBeforeUpload, got, lost)
				}
			}
			if _, ok := e.objects()[tc.key]; ok != tc.uploaded {
				t.Errorf("bucket has %s: %v, want %v", tc.key, ok, tc.uploaded)
			}
		})
	}
}
