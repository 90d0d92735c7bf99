// Package s3upload mirrors what EMS writes (HLS, HDS and DASH output, and recordings) to an S3
// bucket as it is written: the AmazonHLSUpload, AmazonHDSUpload and AmazonDASHUpload plugins of
// EvoStream's web services (reference §4.4), and RecordUpload.
//
// The guarantees beyond the original: a playlist or manifest is stored only after every file it
// references is in the bucket (its references are parsed and missing ones uploaded first), files
// are read only from the configured media roots, a repeated event costs nothing, and files whose
// events were lost are found by backfill (Reconcile).
package s3upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/internal/act"
)

// Kind selects what an Uploader mirrors.
type Kind string

// The plugin kinds, with their configuration names.
const (
	KindHLS    Kind = "AmazonHLSUpload"
	KindHDS    Kind = "AmazonHDSUpload"
	KindDASH   Kind = "AmazonDASHUpload"
	KindRecord Kind = "RecordUpload"
)

// Kinds lists every kind, for registration.
var Kinds = []Kind{KindHLS, KindHDS, KindDASH, KindRecord}

// Uploader is one S3 upload plugin instance.
//
// Handle is safe for concurrent use and idempotent: an object whose file is unchanged (same size
// and modification time, from a local cache or HeadObject) is not uploaded again. Work on one
// object key is serialised, so a newer playlist version read later is also stored later.
type Uploader struct {
	kind    Kind
	name    string
	cfg     Config
	log     zerolog.Logger
	now     func() time.Time
	dataDir string
	roots   *roots
	m       *metrics

	// wrapAPI, when set, wraps the real client (tests inject faults with it).
	wrapAPI func(API) API

	api   API
	tm    *transfermanager.Client
	locks act.Locks // per object key: a version read later is also stored later
	cache stateCache
	// writerDone holds recordings whose evo-mp4writer finished (processStopped seen).
	writerDone doneSet
}

var (
	_ plugins.Plugin     = (*Uploader)(nil)
	_ plugins.Starter    = (*Uploader)(nil)
	_ plugins.Closer     = (*Uploader)(nil)
	_ plugins.Reconciler = (*Uploader)(nil)
	_ plugins.Keyer      = (*Uploader)(nil)
)

// New builds an uploader of the given kind from typed configuration. It does no I/O; Start
// connects to S3 and checks the bucket.
func New(kind Kind, name string, cfg Config, deps plugins.Deps) (*Uploader, error) {
	if !isKind(kind) {
		return nil, fmt.Errorf("unknown s3 upload kind %q", kind)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &Uploader{
		kind:    kind,
		name:    name,
		cfg:     cfg,
		log:     deps.Log.With().Str(logfield.PluginKind, string(kind)).Logger(),
		now:     now,
		dataDir: deps.DataDir,
		roots:   newRoots(cfg.resolveRoots(deps)),
		m:       m,
	}, nil
}

// Factory returns the plugins.Factory of a kind, for the registry:
//
//	for _, k := range s3upload.Kinds { reg.Register(string(k), s3upload.Factory(k)) }
func Factory(kind Kind) plugins.Factory {
	return func(name string, params json.RawMessage, deps plugins.Deps) (plugins.Plugin, error) {
		cfg, err := ParseConfig(params)
		if err != nil {
			return nil, err
		}
		return New(kind, name, cfg, deps)
	}
}

// HLSFactory builds an AmazonHLSUpload instance.
func HLSFactory(name string, params json.RawMessage, deps plugins.Deps) (plugins.Plugin, error) {
	return Factory(KindHLS)(name, params, deps)
}

// HDSFactory builds an AmazonHDSUpload instance.
func HDSFactory(name string, params json.RawMessage, deps plugins.Deps) (plugins.Plugin, error) {
	return Factory(KindHDS)(name, params, deps)
}

// DASHFactory builds an AmazonDASHUpload instance.
func DASHFactory(name string, params json.RawMessage, deps plugins.Deps) (plugins.Plugin, error) {
	return Factory(KindDASH)(name, params, deps)
}

// RecordFactory builds a RecordUpload instance.
func RecordFactory(name string, params json.RawMessage, deps plugins.Deps) (plugins.Plugin, error) {
	return Factory(KindRecord)(name, params, deps)
}

func isKind(k Kind) bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// Name returns the instance name.
func (u *Uploader) Name() string { return u.name }

// Events returns the events of the kind. DASH also takes outStreamCreated, which announces the
// init segment (the seg_init writer's recordSettings.computedPathToFile, reference §1.6.1).
func (u *Uploader) Events() []string {
	switch u.kind {
	case KindHLS:
		return []string{event.HLSChunkClosed, event.HLSChildPlaylistUpdated, event.HLSMasterPlaylistUpdated, event.HLSChunkDeleted}
	case KindHDS:
		return []string{event.HDSChunkClosed, event.HDSChildPlaylistUpdated, event.HDSMasterPlaylistUpdated, event.HDSChunkDeleted}
	case KindDASH:
		return []string{event.DASHChunkClosed, event.DASHPlaylistUpdated, event.DASHChunkDeleted, event.OutStreamCreated}
	case KindRecord:
		return []string{event.RecordChunkClosed, event.ProcessStopped}
	}
	return nil
}

// OrderKey keeps one stream's files in order while streams upload in parallel: the stream folder
// for HLS and HDS, the group folder for DASH (its manifest sits there), the file for recordings.
func (u *Uploader) OrderKey(ev *event.Event) string {
	file := ev.Payload.File()
	switch ev.Type {
	case event.OutStreamCreated:
		s, _ := ev.Payload.String("recordSettings.computedPathToFile")
		file = event.NormalizePath(s)
	case event.ProcessStopped:
		file = mp4WriterPath(ev)
	}
	if file == "" {
		return ""
	}
	switch u.kind {
	case KindRecord:
		return file
	case KindDASH:
		if ev.Type == event.DASHPlaylistUpdated {
			return path.Dir(file)
		}
		return upDirs(file, 4)
	}
	return path.Dir(file)
}

func upDirs(p string, n int) string {
	for range n {
		p = path.Dir(p)
	}
	return p
}

// Handle uploads (or deletes) what the event announces. See the package documentation for the
// ordering guarantee.
func (u *Uploader) Handle(ctx context.Context, ev *event.Event) error {
	if u.api == nil {
		return errors.New("s3 upload: Handle before Start")
	}
	file := ev.Payload.File()
	needFile := func() error {
		if file == "" {
			return plugins.Permanent(fmt.Errorf("%s event has no payload.file", ev.Type))
		}
		return nil
	}
	var (
		uploaded bool
		err      error
	)
	switch ev.Type {
	case event.HLSChunkClosed, event.HDSChunkClosed:
		if err := needFile(); err != nil {
			return err
		}
		uploaded, err = u.uploadChunk(ctx, file, tailKey(u.cfg.Prefix, file, tailSegment))
		if err == nil && ev.Type == event.HDSChunkClosed {
			err = u.uploadBootstrapOf(ctx, file)
		}
	case event.DASHChunkClosed:
		if err := needFile(); err != nil {
			return err
		}
		uploaded, err = u.uploadChunk(ctx, file, tailKey(u.cfg.Prefix, file, tailDASH))
	case event.HLSChildPlaylistUpdated, event.HDSChildPlaylistUpdated:
		if err := needFile(); err != nil {
			return err
		}
		uploaded, err = u.uploadPlaylist(ctx, ref{path: file, key: tailKey(u.cfg.Prefix, file, tailSegment)}, 0)
	case event.HLSMasterPlaylistUpdated, event.DASHPlaylistUpdated:
		if err := needFile(); err != nil {
			return err
		}
		uploaded, err = u.uploadPlaylist(ctx, ref{path: file, key: tailKey(u.cfg.Prefix, file, tailMaster)}, 0)
	case event.HDSMasterPlaylistUpdated:
		if err := needFile(); err != nil {
			return err
		}
		uploaded, err = u.uploadPlaylist(ctx, ref{path: file, key: tailKey(u.cfg.Prefix, file, tailMaster)}, 0)
		if err == nil {
			err = u.uploadVariant(ctx, file)
		}
	case event.HLSChunkDeleted, event.HDSChunkDeleted, event.DASHChunkDeleted:
		if !u.cfg.DeleteOnChunkDeleted {
			return nil
		}
		if err := needFile(); err != nil {
			return err
		}
		n := tailSegment
		if ev.Type == event.DASHChunkDeleted {
			n = tailDASH
		}
		return u.remove(ctx, file, tailKey(u.cfg.Prefix, file, n))
	case event.OutStreamCreated:
		s, _ := ev.Payload.String("recordSettings.computedPathToFile")
		init := event.NormalizePath(s)
		if !strings.EqualFold(path.Base(init), "seg_init.mp4") {
			return nil
		}
		uploaded, err = u.uploadFile(ctx, init, tailKey(u.cfg.Prefix, init, tailDASH))
		if errors.Is(err, fs.ErrNotExist) {
			// Not written yet: the manifest's upload will take it with it.
			return nil
		}
	case event.RecordChunkClosed:
		if err := needFile(); err != nil {
			return err
		}
		uploaded, err = u.uploadRecordingEvent(ctx, file, false, ev.Timestamp)
	case event.ProcessStopped:
		p := mp4WriterPath(ev)
		if p == "" {
			return nil
		}
		u.writerDone.add(p)
		uploaded, err = u.uploadRecordingEvent(ctx, p, true, ev.Timestamp)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	if uploaded {
		u.observeEvent(ev.Timestamp)
	}
	return nil
}

// uploadBootstrapOf stores the HDS bootstrap of a fragment's folder after the fragment, as the
// original did; the bootstrap names the fragments, so those it lists go first.
func (u *Uploader) uploadBootstrapOf(ctx context.Context, fragment string) error {
	base := path.Base(fragment)
	loc := hdsFragment.FindStringIndex(base)
	if loc == nil {
		return nil
	}
	b := path.Join(path.Dir(fragment), u.cfg.Bootstrap)
	_, err := u.uploadPlaylist(ctx, ref{path: b, key: tailKey(u.cfg.Prefix, b, tailSegment), prefix: base[:loc[0]]}, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// uploadVariant stores <name>_v1.f4m beside an HDS master manifest when it exists.
func (u *Uploader) uploadVariant(ctx context.Context, master string) error {
	ext := path.Ext(master)
	if strings.HasSuffix(strings.TrimSuffix(master, ext), "_v1") {
		return nil
	}
	v1 := strings.TrimSuffix(master, ext) + "_v1" + ext
	_, err := u.uploadPlaylist(ctx, ref{path: v1, key: tailKey(u.cfg.Prefix, v1, tailMaster)}, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Start builds the S3 client, checks that a media root exists and that the bucket is there and
// accessible (creating it when create_bucket is set).
func (u *Uploader) Start(ctx context.Context) error {
	if len(u.roots.available()) == 0 {
		return fmt.Errorf("none of the media roots exists (%s); set media_roots to the folders EMS writes to", strings.Join(u.roots.dirs, ", "))
	}
	client, err := u.newClient(ctx)
	if err != nil {
		return err
	}
	u.api = client
	if u.wrapAPI != nil {
		u.api = u.wrapAPI(client)
	}
	u.tm = transfermanager.New(u.api, func(o *transfermanager.Options) {
		o.PartSizeBytes = u.cfg.PartSize
		o.MultipartUploadThreshold = u.cfg.MultipartThreshold
		o.Concurrency = u.cfg.Concurrency
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		// Without it transfermanager aborts a failed multipart upload with the upload's own
		// context, which is done already when the handler's deadline is what failed it.
		o.FailTimeout = abortTimeout
	})
	return u.checkBucket(ctx)
}

func (u *Uploader) newClient(ctx context.Context) (*s3.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(u.cfg.Region),
		// The dispatcher is the one retry layer; the SDK only smooths over a dropped connection.
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 2
				o.MaxBackoff = time.Second
			})
		}),
	}
	if u.cfg.AWSAccessKey != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(u.cfg.AWSAccessKey.Reveal(), u.cfg.AWSSecretKey.Reveal(), "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if u.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(u.cfg.Endpoint)
		}
		o.UsePathStyle = u.cfg.ForcePathStyle
		// Many S3-compatible servers reject the newer default checksum trailers.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

func (u *Uploader) checkBucket(ctx context.Context) error {
	bucket := u.cfg.DefaultBucket
	_, err := u.api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	if err == nil {
		return nil
	}
	if (isNotFound(err) || isNoSuchBucket(err)) && u.cfg.CreateBucket {
		if _, cerr := u.api.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); cerr != nil {
			return fmt.Errorf("create bucket %q: %s%s", bucket, describe(bucket, cerr), bucketNameHint(bucket))
		}
		u.log.Info().Str(logfield.Bucket, bucket).Msg("bucket created")
		return nil
	}
	what := describe(bucket, err)
	if isNotFound(err) || isNoSuchBucket(err) {
		what = "the bucket does not exist (set create_bucket to create it)"
	}
	return fmt.Errorf("check bucket %q at %s: %s%s", bucket, u.endpointName(), what, bucketNameHint(bucket))
}

func (u *Uploader) endpointName() string {
	if u.cfg.Endpoint != "" {
		return u.cfg.Endpoint
	}
	return "AWS " + u.cfg.Region
}

// describe says what the server answered, in words an operator can act on.
func describe(bucket string, err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg := ae.ErrorCode(), ae.ErrorMessage()
		switch {
		case code == "InvalidBucketName", code == "BadRequest" && bucketNameHint(bucket) != "":
			code = "the server refuses the bucket name (" + code + ")"
		case code == "Forbidden", code == "AccessDenied", code == "InvalidAccessKeyId", code == "SignatureDoesNotMatch":
			code = "access denied (" + code + "): check aws_access_key/aws_secret_key or the credential chain, and the bucket policy"
		}
		if msg != "" && msg != code {
			return code + ": " + msg
		}
		return code
	}
	return err.Error()
}

// Close releases the media roots.
func (u *Uploader) Close(context.Context) error { return u.roots.close() }
