package s3upload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
)

// ReconcileInterval is the configured backfill interval; 0 means only at start.
func (u *Uploader) ReconcileInterval() time.Duration { return u.cfg.BackfillInterval.Std() }

// repairKey carries the backfill's upload counter through the context to store.
type repairKey struct{}

func countRepair(ctx context.Context) {
	if n, ok := ctx.Value(repairKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
}

// candidate is one local file backfill considers.
type candidate struct {
	path  string // EMS path (slash-separated, absolute)
	key   string
	info  fs.FileInfo
	order int // 0 segments, 1 HDS bootstraps, 2 child playlists, 3 master playlists
}

// Reconcile uploads the files under the media roots that the bucket lacks or holds in another
// version: files written while emsflow was down, or whose events were lost. A segment's version
// is its size; a playlist's is its size and modification time (recorded with the object), since
// EMS rewrites playlists in place, often at the same size. Segments go first, then child
// playlists, then masters, each playlist after what it references. Files modified within
// backfill_min_age are left to their events.
func (u *Uploader) Reconcile(ctx context.Context) error {
	if u.api == nil {
		return errors.New("s3 upload: Reconcile before Start")
	}
	var cands []candidate
	for _, mr := range u.roots.available() {
		cands = append(cands, u.scan(mr)...)
	}
	listed, err := u.listBucket(ctx, cands)
	if err != nil {
		return err
	}
	var repairs atomic.Int64
	ctx = context.WithValue(ctx, repairKey{}, &repairs)
	var errs []error
	for order := range 4 {
		var (
			wg sync.WaitGroup
			mu sync.Mutex
		)
		sem := make(chan struct{}, u.cfg.Concurrency)
		for _, c := range cands {
			if c.order != order {
				continue
			}
			size, listedAs := listed[c.key]
			sameSize := listedAs && size == c.info.Size()
			if sameSize && order == 0 {
				u.cache.put(c.key, stateOf(c.info))
				continue
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				err := u.backfill(ctx, c, sameSize)
				if err != nil && !errors.Is(err, errIncomplete) && !errors.Is(err, fs.ErrNotExist) {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	n := repairs.Load()
	u.m.repairs.Add(float64(n))
	if n > 0 {
		u.log.Info().Int64(logfield.Count, n).Msg("backfill uploaded files the bucket lacked or held stale")
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("backfill: %w", err)
	}
	return nil
}

// backfill uploads one candidate. sameSize says the bucket lists an object of the file's size:
// enough for a segment, written once, but not for a playlist, which EMS rewrites in place and
// often at the same size (a rolling window moving on, an HDS bootstrap's open run growing); the
// mtime recorded with the object tells whether the bucket holds this version.
func (u *Uploader) backfill(ctx context.Context, c candidate, sameSize bool) error {
	if sameSize {
		if same, err := u.unchanged(ctx, c.key, stateOf(c.info)); err != nil || same {
			return err
		}
	}
	var err error
	switch {
	case c.order > 0:
		_, err = u.uploadPlaylist(ctx, ref{path: c.path, key: c.key}, 0)
	case u.kind == KindRecord:
		_, err = u.uploadRecording(ctx, c.path, false)
	default:
		_, err = u.uploadFile(ctx, c.path, c.key)
	}
	return err
}

// listBucket returns the size of every object under the prefix whose key is a candidate's. A bucket keeps what EMS has long deleted from its disk, so the listing can be far larger
// than the media folders; only the objects backfill compares are held.
func (u *Uploader) listBucket(ctx context.Context, cands []candidate) (map[string]int64, error) {
	out := make(map[string]int64, len(cands))
	for _, c := range cands {
		out[c.key] = -1
	}
	p := s3.NewListObjectsV2Paginator(u.api, &s3.ListObjectsV2Input{Bucket: aws.String(u.cfg.DefaultBucket), Prefix: aws.String(u.cfg.Prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, u.s3Error("list", u.cfg.Prefix, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if _, ok := out[k]; ok {
				out[k] = aws.ToInt64(o.Size)
			}
		}
	}
	maps.DeleteFunc(out, func(_ string, size int64) bool { return size < 0 })
	return out, nil
}

// scan walks one media root and returns the files this kind uploads. Symlinks are not followed.
func (u *Uploader) scan(mr *mediaRoot) []candidate {
	var out []candidate
	cutoff := u.now().Add(-u.cfg.BackfillMinAge.Std())
	_ = fs.WalkDir(mr.root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.ModTime().After(cutoff) {
			return nil
		}
		p := event.NormalizePath(filepath.ToSlash(filepath.Join(mr.dir, filepath.FromSlash(rel))))
		if c, ok := u.candidateFor(p, info); ok {
			out = append(out, c)
		}
		return nil
	})
	return out
}

func (u *Uploader) candidateFor(p string, info fs.FileInfo) (candidate, bool) {
	kind := classify(p, u.cfg.Bootstrap)
	c := candidate{path: p, info: info}
	tail := func(n int) string { return tailKey(u.cfg.Prefix, p, n) }
	switch u.kind {
	case KindHLS:
		switch kind {
		case kindTS, kindAAC:
			c.key = tail(tailSegment)
		case kindM3U8:
			c.order, c.key = 2, tail(tailSegment)
			if u.peek(p, isMasterM3U8) {
				c.order, c.key = 3, tail(tailMaster)
			}
		default:
			return c, false
		}
	case KindHDS:
		switch kind {
		case kindF4F:
			c.key = tail(tailSegment)
		case kindBootstrap:
			// Rewritten in place as fragments are added: after the fragments it lists, before
			// the child manifest that points to it.
			c.order, c.key = 1, tail(tailSegment)
		case kindF4M:
			c.order, c.key = 2, tail(tailSegment)
			if !u.peek(p, func(b []byte) bool { return bytes.Contains(b, []byte("bootstrapInfo")) }) {
				c.order, c.key = 3, tail(tailMaster)
			}
		default:
			return c, false
		}
	case KindDASH:
		switch {
		case kind == kindM4S, kind == kindFMP4, kind == kindMP4 && strings.EqualFold(path.Base(p), "seg_init.mp4"):
			c.key = tail(tailDASH)
		case kind == kindMPD:
			c.order, c.key = 3, tail(tailMaster)
		default:
			return c, false
		}
	case KindRecord:
		switch kind {
		case kindMP4, kindFLV, kindTS:
			key, err := u.recordKey(p)
			if err != nil {
				return c, false
			}
			c.key = key
		default:
			return c, false
		}
	}
	return c, true
}

// peek reads a small playlist to classify it; unreadable files count as false.
func (u *Uploader) peek(p string, test func([]byte) bool) bool {
	data, _, err := u.snapshot(p)
	return err == nil && test(data)
}
