package s3upload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
)

// API is the part of the S3 client the uploaders use. It is a superset of what transfermanager
// needs, so the same client serves both.
type API interface {
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	UploadPart(context.Context, *s3.UploadPartInput, ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CreateMultipartUpload(context.Context, *s3.CreateMultipartUploadInput, ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	CompleteMultipartUpload(context.Context, *s3.CompleteMultipartUploadInput, ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListParts(context.Context, *s3.ListPartsInput, ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
	CreateBucket(context.Context, *s3.CreateBucketInput, ...func(*s3.Options)) (*s3.CreateBucketOutput, error)
}

var _ transfermanager.S3APIClient = API(nil)

// metaMtime is the object metadata that records the file's modification time, so that an
// unchanged file is recognised after a restart (x-amz-meta-emsflow-mtime).
const metaMtime = "emsflow-mtime"

// maxPlaylistBytes bounds what is read into memory for one playlist or manifest.
const maxPlaylistBytes = 32 << 20

// maxRefDepth bounds playlist nesting (master → child → segment is 2).
const maxRefDepth = 4

// fileState identifies one version of a file.
type fileState struct {
	size  int64
	mtime int64 // UnixNano
}

func stateOf(fi fs.FileInfo) fileState { return fileState{fi.Size(), fi.ModTime().UnixNano()} }

// stateCache remembers what was uploaded, so that repeated events and playlists re-listing old
// segments cost nothing. It forgets everything when it grows too big; HeadObject then answers.
type stateCache struct {
	mu sync.Mutex
	m  map[string]fileState
}

const maxCacheEntries = 200_000

func (c *stateCache) has(key string, st fileState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	got, ok := c.m[key]
	return ok && got == st
}

func (c *stateCache) put(key string, st fileState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCacheEntries {
		c.m = map[string]fileState{}
	}
	c.m[key] = st
}

func (c *stateCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

// objectClass is the metric label of an uploaded object.
func (k fileKind) objectClass() string {
	if k.isPlaylist() {
		return "playlist"
	}
	return "segment"
}

// headers are the Content-Type, Cache-Control and metadata of one upload.
func (u *Uploader) headers(kind fileKind, st fileState) (contentType, cacheControl string, meta map[string]string) {
	cc := u.cfg.SegmentCacheControl
	if kind.isPlaylist() {
		cc = u.cfg.PlaylistCacheControl
	}
	return kind.contentType(), cc, map[string]string{metaMtime: strconv.FormatInt(st.mtime, 10)}
}

// unchanged reports whether the bucket already holds this version of the file, from the cache
// or from HeadObject (size and recorded mtime).
func (u *Uploader) unchanged(ctx context.Context, key string, st fileState) (bool, error) {
	if u.cache.has(key, st) {
		return true, nil
	}
	out, err := u.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(u.cfg.DefaultBucket), Key: aws.String(key)})
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, u.s3Error("head", key, err)
	}
	if aws.ToInt64(out.ContentLength) == st.size && out.Metadata[metaMtime] == strconv.FormatInt(st.mtime, 10) {
		u.cache.put(key, st)
		return true, nil
	}
	return false, nil
}

// exists reports whether the bucket has an object under key.
func (u *Uploader) exists(ctx context.Context, key string) (bool, error) {
	out, err := u.head(ctx, key)
	return out != nil, err
}

// head returns what HeadObject says of the object under key, or nil when there is none.
func (u *Uploader) head(ctx context.Context, key string) (*s3.HeadObjectOutput, error) {
	out, err := u.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(u.cfg.DefaultBucket), Key: aws.String(key)})
	if err == nil {
		return out, nil
	}
	if isNotFound(err) {
		return nil, nil
	}
	return nil, u.s3Error("head", key, err)
}

// uploadFile stores one file that references nothing (a segment, a fragment, a recording below
// the multipart threshold). It reports whether it uploaded (false: the bucket had it already).
func (u *Uploader) uploadFile(ctx context.Context, emsPath, key string) (bool, error) {
	unlock := u.locks.Lock(key)
	defer unlock()
	f, info, err := u.roots.openFile(emsPath)
	if err != nil {
		return false, u.fileError(err)
	}
	defer f.Close()
	st := stateOf(info)
	if same, err := u.unchanged(ctx, key, st); err != nil || same {
		if same {
			u.m.unchanged.Inc()
		}
		return false, err
	}
	kind := classify(emsPath, u.cfg.Bootstrap)
	class := kind.objectClass()
	if u.kind == KindRecord {
		class = "recording"
		if info.Size() >= u.cfg.MultipartThreshold {
			return true, u.uploadResumable(ctx, f, emsPath, key, st)
		}
	}
	return true, u.store(ctx, key, f, st, kind, class)
}

// uploadChunk stores a closed chunk (segment or fragment). Its event can come after EMS deleted
// the file: a rolling playlist moves past a chunk while its event waits for an S3 outage to end.
// The chunk is then done when the bucket has it, and lost for good when it does not: the error is
// permanent, since no retry brings the file back.
func (u *Uploader) uploadChunk(ctx context.Context, emsPath, key string) (bool, error) {
	uploaded, err := u.uploadFile(ctx, emsPath, key)
	if !errors.Is(err, fs.ErrNotExist) || !u.roots.rootPresent(emsPath) {
		return uploaded, err
	}
	ok, herr := u.exists(ctx, key)
	switch {
	case herr != nil:
		return false, herr
	case ok:
		u.m.unchanged.Inc()
		return false, nil
	}
	u.m.lost.WithLabelValues(reasonDeletedBeforeUpload).Inc()
	return false, plugins.Permanent(fmt.Errorf("upload %s: deleted before it could be uploaded: %w", emsPath, err))
}

// store uploads body (size st.size) with transfermanager and records it.
func (u *Uploader) store(ctx context.Context, key string, body io.Reader, st fileState, kind fileKind, class string) error {
	u.m.backlog.Inc()
	defer u.m.backlog.Dec()
	ct, cc, meta := u.headers(kind, st)
	in := &transfermanager.UploadObjectInput{
		Bucket:        aws.String(u.cfg.DefaultBucket),
		Key:           aws.String(key),
		Body:          body,
		ContentLength: aws.Int64(st.size),
		ContentType:   aws.String(ct),
		CacheControl:  aws.String(cc),
		Metadata:      meta,
		ACL:           tmtypes.ObjectCannedACL(u.cfg.ACL),
		StorageClass:  tmtypes.StorageClass(u.cfg.StorageClass),
	}
	start := u.now()
	if _, err := u.tm.UploadObject(ctx, in); err != nil {
		u.abortLeftUpload(ctx, key, err)
		return u.s3Error("upload", key, err)
	}
	u.m.uploadSeconds.Observe(u.now().Sub(start).Seconds())
	u.m.bytes.Add(float64(st.size))
	u.m.objects.WithLabelValues(class).Inc()
	u.cache.put(key, st)
	countRepair(ctx)
	u.log.Debug().Str(logfield.Key, key).Int64("bytes", st.size).Msg("uploaded")
	return nil
}

// abortTimeout bounds the abort of a failed multipart upload, which runs after the upload's own
// context may have ended.
const abortTimeout = 10 * time.Second

// abortLeftUpload makes sure a multipart upload transfermanager gave up on does not stay in the
// bucket unseen. transfermanager aborts it itself, but a failed abort shows only in the text of
// its error (v0.5.3 formats it with %v), so the uploader aborts it once more: NoSuchUpload when
// the first abort went through. A retry of the event starts a new upload and nothing else knows
// this id, so an abort that fails again is counted and logged with the id whatever the failure.
func (u *Uploader) abortLeftUpload(ctx context.Context, key string, err error) {
	var mp transfermanager.MultipartUploadError
	if !errors.As(err, &mp) || mp.UploadID() == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	s := &mpState{Key: key, UploadID: mp.UploadID()}
	if _, err := u.abortUpload(ctx, s); err != nil {
		// abortUpload counted and logged a refusal itself, and returns the failures that retrying
		// may fix: here nothing will retry them.
		u.leftUpload(s, err)
	}
}

// snapshot reads a playlist whole, so that the references checked and the bytes stored are the
// same version even while EMS rewrites the file.
func (u *Uploader) snapshot(emsPath string) ([]byte, fileState, error) {
	f, info, err := u.roots.openFile(emsPath)
	if err != nil {
		return nil, fileState{}, u.fileError(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPlaylistBytes+1))
	if err != nil {
		return nil, fileState{}, fmt.Errorf("read %s: %w", emsPath, err)
	}
	if len(data) > maxPlaylistBytes {
		return nil, fileState{}, plugins.Permanent(fmt.Errorf("read %s: playlist larger than %d bytes", emsPath, maxPlaylistBytes))
	}
	st := stateOf(info)
	st.size = int64(len(data))
	return data, st, nil
}

// ref is a file a playlist needs in the bucket before it: its EMS path and its key.
type ref struct {
	path, key string
	// prefix is, for an HDS bootstrap, the fragment name prefix (<media url>) it lists.
	prefix string
}

// uploadPlaylist stores a playlist, manifest or HDS bootstrap after everything it references is
// in the bucket. It is the ordering guarantee: no stored playlist version names a missing object.
func (u *Uploader) uploadPlaylist(ctx context.Context, r ref, depth int) (bool, error) {
	if depth > maxRefDepth {
		return false, plugins.Permanent(fmt.Errorf("upload %s: playlists nested deeper than %d", r.path, maxRefDepth))
	}
	unlock := u.locks.Lock(r.key)
	defer unlock()
	data, st, err := u.snapshot(r.path)
	if err != nil {
		return false, err
	}
	if u.cache.has(r.key, st) {
		u.m.unchanged.Inc()
		return false, nil
	}
	kind := classify(r.path, u.cfg.Bootstrap)
	refs, err := u.references(r, kind, data)
	if err != nil {
		return false, err
	}
	if err := u.ensure(ctx, r, refs, depth); err != nil {
		return false, err
	}
	if same, err := u.unchanged(ctx, r.key, st); err != nil || same {
		return false, err
	}
	return true, u.store(ctx, r.key, bytes.NewReader(data), st, kind, "playlist")
}

// ensure uploads what a playlist references, in parallel up to the configured concurrency. A
// referenced file that is gone from disk is fine when the bucket has it already.
func (u *Uploader) ensure(ctx context.Context, parent ref, refs []ref, depth int) error {
	sem := make(chan struct{}, u.cfg.Concurrency)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, r := range refs {
		if r.key == parent.key {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var err error
			if classify(r.path, u.cfg.Bootstrap).isPlaylist() {
				_, err = u.uploadPlaylist(ctx, r, depth+1)
			} else {
				_, err = u.uploadFile(ctx, r.path, r.key)
			}
			if errors.Is(err, fs.ErrNotExist) {
				var ok bool
				if ok, err = u.exists(ctx, r.key); err == nil && !ok {
					err = fmt.Errorf("%s references %s, which is neither on disk nor in the bucket: %w", parent.path, r.path, fs.ErrNotExist)
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// references lists what a playlist needs in the bucket first.
func (u *Uploader) references(r ref, kind fileKind, data []byte) ([]ref, error) {
	var out []ref
	rel := func(s string) ref { return ref{path: refPath(r.path, s), key: refKey(r.key, s)} }
	switch kind {
	case kindM3U8:
		for _, s := range m3u8Refs(data) {
			out = append(out, rel(s))
		}
	case kindMPD:
		refs, pats, err := mpdRefs(data)
		if err != nil {
			return nil, plugins.Permanent(fmt.Errorf("%s: %w", r.path, err))
		}
		for _, s := range refs {
			out = append(out, rel(s))
		}
		for _, p := range pats {
			names, err := u.listDir(refPath(r.path, p.dir+"/x"))
			if err != nil {
				return nil, err
			}
			for _, n := range names {
				if p.re.MatchString(n) {
					out = append(out, rel(path.Join(p.dir, n)))
				}
			}
		}
	case kindF4M:
		media, err := f4mRefs(data)
		if err != nil {
			return nil, plugins.Permanent(fmt.Errorf("%s: %w", r.path, err))
		}
		for _, m := range media {
			switch {
			case m.href != "":
				out = append(out, rel(m.href))
			case m.bootstrap != "":
				b := rel(m.bootstrap)
				b.prefix = m.url
				out = append(out, b)
			case m.inline != nil:
				frags, err := u.fragments(r, m.url, m.inline)
				if err != nil {
					return nil, err
				}
				out = append(out, frags...)
			}
		}
	case kindBootstrap:
		return u.fragments(r, r.prefix, data)
	}
	return out, nil
}

// fragments lists the HDS fragments a bootstrap box names, relative to the file that holds it.
// The last run of the table extends while the next fragment exists on disk.
func (u *Uploader) fragments(holder ref, prefix string, abst []byte) ([]ref, error) {
	if prefix == "" {
		return nil, nil // fragment names unknown: a bootstrap met without its manifest
	}
	runs, err := abstRuns(abst)
	if err != nil {
		return nil, plugins.Permanent(fmt.Errorf("%s: %w", holder.path, err))
	}
	var out []ref
	for _, run := range runs {
		for n := run.first; ; n++ {
			name := fmt.Sprintf("%sSeg%d-Frag%d", prefix, run.seg, n)
			fr := ref{path: refPath(holder.path, name), key: refKey(holder.key, name)}
			if n > run.last {
				if !run.open {
					break
				}
				if _, err := u.roots.stat(fr.path); err != nil {
					break
				}
			}
			out = append(out, fr)
		}
	}
	return out, nil
}

// listDir lists the file names in the folder of emsPath, inside the media roots.
func (u *Uploader) listDir(emsPath string) ([]string, error) {
	dir, rel, err := u.roots.locate(emsPath)
	if err != nil {
		return nil, u.fileError(err)
	}
	mr, err := u.roots.get(dir)
	if err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(mr.root.FS(), path.Dir(toSlash(rel)))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", path.Dir(emsPath), err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// remove deletes the object of a file EMS deleted.
func (u *Uploader) remove(ctx context.Context, emsPath, key string) error {
	if _, _, err := u.roots.locate(emsPath); err != nil {
		return u.fileError(err)
	}
	unlock := u.locks.Lock(key)
	defer unlock()
	if _, err := u.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(u.cfg.DefaultBucket), Key: aws.String(key)}); err != nil {
		return u.s3Error("delete", key, err)
	}
	u.cache.forget(key)
	u.m.deleted.Inc()
	return nil
}

// fileError classifies a local file error: refused paths are permanent security events, counted
// and logged here (the dispatcher logs the error itself once more, without the security flag).
func (u *Uploader) fileError(err error) error {
	var rf *refusal
	if errors.As(err, &rf) {
		u.m.refused.WithLabelValues(rf.reason).Inc()
		u.log.Warn().Bool(logfield.Security, true).Str(logfield.File, rf.path).Str(logfield.Reason, rf.reason).Msg("file outside media roots refused")
		return plugins.Permanent(err)
	}
	if errors.Is(err, fs.ErrPermission) {
		return plugins.Permanent(err)
	}
	return err
}

// s3Error names the operation and marks what retrying cannot fix as permanent: access denied,
// bad credentials, a bucket that does not exist or has an invalid name.
func (u *Uploader) s3Error(op, key string, err error) error {
	wrapped := fmt.Errorf("%s s3://%s/%s: %w", op, u.cfg.DefaultBucket, key, err)
	if permanentS3(err) {
		return plugins.Permanent(wrapped)
	}
	return wrapped
}

func permanentS3(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
			"NoSuchBucket", "InvalidBucketName", "InvalidArgument", "InvalidStorageClass",
			"AccessControlListNotSupported", "EntityTooLarge":
			return true
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch s := re.HTTPStatusCode(); {
		case s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s >= 500 && s != http.StatusNotImplemented:
			return false
		case s >= 400:
			return true
		}
	}
	return false
}

func isNotFound(err error) bool {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	if errors.As(err, &nf) || errors.As(err, &nk) {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound && !isNoSuchBucket(err)
}

func isNoSuchBucket(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket"
}

// observeEvent records event-to-object latency from the EMS timestamp (whole seconds).
func (u *Uploader) observeEvent(ts uint64) {
	if ts == 0 {
		return
	}
	d := u.now().Sub(time.Unix(int64(ts), 0))
	if d < 0 {
		d = 0
	}
	u.m.eventToObject.Observe(d.Seconds())
}
