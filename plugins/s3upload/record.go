package s3upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
)

// doneSet is a set of file paths.
type doneSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (d *doneSet) add(p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) > 10_000 {
		d.m = map[string]bool{}
	}
	d.m[p] = true
}

func (d *doneSet) has(p string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[p]
}

// mp4WriterPath returns the file of a processStopped event of EMS's mp4 writer (arguments
// "-path=<file>", reference §1.6.2), or "".
func mp4WriterPath(ev *event.Event) string {
	args, _ := ev.Payload.String("arguments")
	_, after, ok := strings.Cut(args, "-path=")
	if !ok {
		return ""
	}
	after = strings.TrimSpace(after)
	if strings.HasPrefix(after, `"`) {
		if end := strings.Index(after[1:], `"`); end >= 0 {
			return event.NormalizePath(after[1 : end+1])
		}
	}
	if i := strings.Index(after, " -"); i >= 0 {
		after = after[:i]
	}
	return event.NormalizePath(strings.TrimSpace(after))
}

// errIncomplete says a recording is not complete yet; the dispatcher retries later.
var errIncomplete = errors.New("recording not complete yet")

// recordKey is the key of a recording: its path under its media root, under the prefix.
func (u *Uploader) recordKey(file string) (string, error) {
	_, rel, err := u.roots.locate(file)
	if err != nil {
		return "", u.fileError(err)
	}
	return u.cfg.Prefix + toSlash(rel), nil
}

// uploadRecording stores a recording once it is complete. An MP4 is complete when EMS's mp4
// writer has finished (its processStopped names the file), or when the file has not changed for
// stable_for and the writer's parts (.info, .mdat, .track1, .track2) are gone.
func (u *Uploader) uploadRecording(ctx context.Context, file string, writerFinished bool) (bool, error) {
	key, err := u.recordKey(file)
	if err != nil {
		return false, err
	}
	if strings.EqualFold(path.Ext(file), ".mp4") && !writerFinished && !u.writerDone.has(file) {
		if err := u.mp4Complete(file); err != nil {
			return false, err
		}
	}
	return u.uploadFile(ctx, file, key)
}

// uploadRecordingEvent stores the recording an event announces (recordChunkClosed, or the mp4
// writer's processStopped; sent is the event's timestamp). The event can come after the file was
// deleted: it waited out an S3 outage while retention removed the recording. It is then done when
// the bucket holds the recording complete, and lost for good when it does not: the error is
// permanent, since no retry brings the file back. A missing media root (an unmounted share) may
// come back and stays retryable. An MP4's recordChunkClosed comes before evo-mp4writer has
// written the file, so there a missing file means deleted only once the event is older than
// stable_for and the writer's parts are gone.
func (u *Uploader) uploadRecordingEvent(ctx context.Context, file string, writerFinished bool, sent uint64) (bool, error) {
	uploaded, err := u.uploadRecording(ctx, file, writerFinished)
	if !errors.Is(err, fs.ErrNotExist) || !u.roots.rootPresent(file) {
		return uploaded, err
	}
	key, kerr := u.recordKey(file)
	if kerr != nil {
		return false, kerr
	}
	return false, u.recordingGone(ctx, file, key, err, errors.Is(err, errIncomplete) && u.recent(sent))
}

// recent reports whether an event sent at ts (Unix seconds, 0 when unknown) is younger than
// stable_for, one second added for the timestamp's truncation.
func (u *Uploader) recent(ts uint64) bool {
	return ts != 0 && u.now().Sub(time.Unix(int64(ts), 0)) < u.cfg.StableFor.Std()+time.Second
}

// recordingGone settles the event of a recording that is no longer on disk (fileErr says so). The
// bucket holds it complete when it has an object under key that is the version a resumable
// upload in progress was sending (any object when there is none). When it does not, the
// recording is lost, and an unfinished multipart upload of it is aborted so that its parts do not
// stay in the bucket for good; but when writerMayWrite (an MP4 evo-mp4writer may still write),
// the event keeps waiting instead.
func (u *Uploader) recordingGone(ctx context.Context, file, key string, fileErr error, writerMayWrite bool) error {
	unlock := u.locks.Lock(key)
	defer unlock()
	sp := u.statePath(key)
	state := u.loadState(sp)
	obj, err := u.head(ctx, key)
	if err != nil {
		return err
	}
	if obj != nil && (state == nil || aws.ToInt64(obj.ContentLength) == state.Size && obj.Metadata[metaMtime] == strconv.FormatInt(state.Mtime, 10)) {
		// A state left beside a complete object is one whose completion's answer was lost.
		if state != nil {
			if _, err := u.abandon(ctx, sp, state); err != nil {
				return err
			}
		}
		u.m.unchanged.Inc()
		return nil
	}
	if writerMayWrite {
		return fileErr
	}
	aborted := ""
	if state != nil {
		left, err := u.abandon(ctx, sp, state)
		if err != nil {
			return err
		}
		aborted = " (its unfinished multipart upload aborted)"
		if left {
			aborted = " (its unfinished multipart upload left to the bucket's lifecycle rule: the abort was refused)"
		}
	}
	if errors.Is(fileErr, errIncomplete) {
		// Not "waiting for the writer": that wait is over.
		fileErr = fmt.Errorf("neither the file nor evo-mp4writer's parts are on disk: %w", fs.ErrNotExist)
	}
	u.m.lost.WithLabelValues(reasonDeletedBeforeUpload).Inc()
	return plugins.Permanent(fmt.Errorf("upload %s: deleted before it could be uploaded%s: %w", file, aborted, fileErr))
}

// abandon aborts the multipart upload a state describes and forgets the state; left reports a
// refused abort (see abortUpload). A failure that retrying may fix keeps the state, so that the
// retry aborts it.
func (u *Uploader) abandon(ctx context.Context, sp string, s *mpState) (left bool, err error) {
	if left, err = u.abortUpload(ctx, s); err != nil {
		return false, err
	}
	if err := os.Remove(sp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return left, fmt.Errorf("remove multipart state: %w", err)
	}
	return left, nil
}

// abortUpload aborts a multipart upload that is no longer needed. An upload the server no longer
// knows (completed, or aborted before) is fine. A failure that retrying may fix (5xx, throttling,
// the network, a deadline) is returned, retryable: the caller keeps the state, so that the
// dispatcher's retry aborts again rather than leave the upload behind unseen. A refusal that
// retrying cannot fix (access denied: the policy lacks s3:AbortMultipartUpload) must not hold
// up the work for good: it is logged and counted, left reports it, and the upload stays until
// the bucket's AbortIncompleteMultipartUpload lifecycle rule removes it.
func (u *Uploader) abortUpload(ctx context.Context, s *mpState) (left bool, err error) {
	_, err = u.api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(u.cfg.DefaultBucket), Key: aws.String(s.Key), UploadId: aws.String(s.UploadID),
	})
	switch {
	case err == nil, isNoSuchUpload(err):
		return false, nil
	case !permanentS3(err):
		return false, u.s3Error("abort multipart upload", s.Key, err)
	}
	u.leftUpload(s, err)
	return true, nil
}

// leftUpload counts and logs a multipart upload that stays in the bucket, not aborted.
func (u *Uploader) leftUpload(s *mpState, err error) {
	u.m.abortFailures.Inc()
	u.log.Warn().Err(err).Str(logfield.Bucket, u.cfg.DefaultBucket).Str(logfield.Key, s.Key).Str(logfield.UploadID, s.UploadID).
		Msg("multipart upload not aborted; it stays in the bucket until a lifecycle rule removes it")
}

// mp4Complete reports whether an MP4 recording is complete (nil) or why not. A missing file
// whose writer parts are gone too gives an error wrapping both errIncomplete and fs.ErrNotExist:
// the writer has not written it yet, or it was deleted.
func (u *Uploader) mp4Complete(file string) error {
	info, err := u.roots.stat(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return u.fileError(err)
	}
	base := strings.TrimSuffix(file, path.Ext(file))
	// EMS writes name.info/.mdat/.track1/.track2 before evo-mp4writer assembles them (reference
	// §1.6.2).
	var parts []string
	for _, ext := range []string{".info", ".mdat", ".track1", ".track2"} {
		parts = append(parts, base+ext, file+ext)
	}
	for _, part := range parts {
		if _, err := u.roots.stat(part); err == nil {
			return fmt.Errorf("%s: %w: writer parts such as %s are still there", file, errIncomplete, path.Base(part))
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w: waiting for evo-mp4writer to write it: %w", file, errIncomplete, err)
	}
	if age := u.now().Sub(info.ModTime()); age < u.cfg.StableFor.Std() {
		return fmt.Errorf("%s: %w: modified %s ago, waiting until it is stable for %s", file, errIncomplete, age.Round(1e6), u.cfg.StableFor)
	}
	return nil
}

// mpState is a multipart upload in progress, kept in the data folder so that an upload
// interrupted by a crash resumes where it stopped.
type mpState struct {
	Key      string `json:"key"`
	UploadID string `json:"upload_id"`
	Size     int64  `json:"size"`
	Mtime    int64  `json:"mtime"`
	PartSize int64  `json:"part_size"`
}

func (u *Uploader) statePath(key string) string {
	if u.dataDir == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(u.cfg.DefaultBucket + "/" + key))
	return filepath.Join(u.dataDir, "multipart", hex.EncodeToString(sum[:12])+".json")
}

func (u *Uploader) loadState(p string) *mpState {
	if p == "" {
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var s mpState
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	return &s
}

func saveState(p string, s *mpState) error {
	if p == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("save multipart state: %w", err)
	}
	b, _ := json.Marshal(s)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save multipart state: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("save multipart state: %w", err)
	}
	return nil
}

// uploadResumable uploads a large file in parts of part_size, at most concurrency at a time, each
// read straight from the file (memory stays bounded). The upload id is kept in the data folder:
// after a crash the parts already in S3 (ListParts) are not sent again.
func (u *Uploader) uploadResumable(ctx context.Context, f io.ReaderAt, emsPath, key string, st fileState) error {
	u.m.backlog.Inc()
	defer u.m.backlog.Dec()
	start := u.now()
	bucket := aws.String(u.cfg.DefaultBucket)
	sp := u.statePath(key)
	state := u.loadState(sp)
	done := map[int32]string{}
	if state != nil && (state.Key != key || state.Size != st.size || state.Mtime != st.mtime || state.PartSize != u.cfg.PartSize) {
		// The file changed: the old upload is useless. Until it is aborted the state stays, so
		// that a retry after a failed abort still knows the upload.
		if _, err := u.abortUpload(ctx, state); err != nil {
			return err
		}
		state = nil
	}
	if state != nil {
		parts, err := u.listParts(ctx, key, state.UploadID)
		switch {
		case isNoSuchUpload(err):
			state = nil
		case err != nil:
			return err
		default:
			done = parts
			u.log.Info().Str(logfield.Key, key).Int(logfield.Count, len(done)).Msg("resuming multipart upload")
		}
	}
	if state == nil {
		ct, cc, meta := u.headers(classify(emsPath, u.cfg.Bootstrap), st)
		out, err := u.api.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket: bucket, Key: aws.String(key),
			ContentType: aws.String(ct), CacheControl: aws.String(cc), Metadata: meta,
			ACL: types.ObjectCannedACL(u.cfg.ACL), StorageClass: types.StorageClass(u.cfg.StorageClass),
		})
		if err != nil {
			return u.s3Error("create multipart upload", key, err)
		}
		state = &mpState{Key: key, UploadID: aws.ToString(out.UploadId), Size: st.size, Mtime: st.mtime, PartSize: u.cfg.PartSize}
		if err := saveState(sp, state); err != nil {
			return err
		}
	}
	nparts := int32((st.size + u.cfg.PartSize - 1) / u.cfg.PartSize)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	var todo []int32
	for n := int32(1); n <= nparts; n++ {
		if _, ok := done[n]; !ok {
			todo = append(todo, n)
		}
	}
	sem := make(chan struct{}, u.cfg.Concurrency)
	for _, n := range todo {
		if ctx.Err() != nil {
			break
		}
		off := int64(n-1) * u.cfg.PartSize
		size := min(u.cfg.PartSize, st.size-off)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out, err := u.api.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: bucket, Key: aws.String(key), UploadId: aws.String(state.UploadID),
				PartNumber: aws.Int32(n), ContentLength: aws.Int64(size),
				Body: io.NewSectionReader(f, off, size),
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, u.s3Error(fmt.Sprintf("upload part %d of", n), key, err))
				return
			}
			done[n] = aws.ToString(out.ETag)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	parts := make([]types.CompletedPart, 0, len(done))
	for n, etag := range done {
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: aws.String(etag)})
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	_, err := u.api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: bucket, Key: aws.String(key), UploadId: aws.String(state.UploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		if isNoSuchUpload(err) && sp != "" {
			_ = os.Remove(sp)
		}
		return u.s3Error("complete multipart upload", key, err)
	}
	if sp != "" {
		_ = os.Remove(sp)
	}
	u.m.uploadSeconds.Observe(u.now().Sub(start).Seconds())
	u.m.bytes.Add(float64(st.size))
	u.m.objects.WithLabelValues("recording").Inc()
	u.cache.put(key, st)
	countRepair(ctx)
	return nil
}

func (u *Uploader) listParts(ctx context.Context, key, uploadID string) (map[int32]string, error) {
	out := map[int32]string{}
	var marker *string
	for {
		page, err := u.api.ListParts(ctx, &s3.ListPartsInput{
			Bucket: aws.String(u.cfg.DefaultBucket), Key: aws.String(key), UploadId: aws.String(uploadID), PartNumberMarker: marker,
		})
		if err != nil {
			if isNoSuchUpload(err) {
				return nil, err
			}
			return nil, u.s3Error("list parts of", key, err)
		}
		for _, p := range page.Parts {
			out[aws.ToInt32(p.PartNumber)] = aws.ToString(p.ETag)
		}
		if !aws.ToBool(page.IsTruncated) || page.NextPartNumberMarker == nil {
			return out, nil
		}
		marker = page.NextPartNumberMarker
	}
}

func isNoSuchUpload(err error) bool {
	var ae smithy.APIError
	var nu *types.NoSuchUpload
	return errors.As(err, &nu) || (errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload")
}
