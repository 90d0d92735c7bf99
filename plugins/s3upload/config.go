package s3upload

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/emsflow/emsflow/plugins"
)

// Secret is a credential from configuration. It prints as <redacted> through fmt, logs and JSON.
type Secret string

// String returns "<redacted>" for a non-empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// GoString redacts the secret in %#v too.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// MarshalJSON writes "<redacted>" for a non-empty secret.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Reveal returns the secret itself, for the one place that hands it to the AWS SDK.
func (s Secret) Reveal() string { return string(s) }

// Defaults for the parameters beyond the original web services'.
const (
	DefaultRegion               = "us-east-1"
	DefaultACL                  = "private"
	DefaultBootstrap            = "bootstrap"
	DefaultPlaylistCacheControl = "max-age=2, must-revalidate"
	DefaultSegmentCacheControl  = "max-age=31536000, immutable"
	DefaultConcurrency          = 4
	DefaultBackfillInterval     = time.Minute
	DefaultBackfillMinAge       = 10 * time.Second
	DefaultStableFor            = 5 * time.Second
	DefaultPartSize             = 8 << 20
	DefaultMultipartThreshold   = 16 << 20
	minPartSize                 = 5 << 20
)

// DefaultMediaRoots are EMS's conventional Linux output folders (HLS/HDS/DASH under the web root,
// recordings under media). They apply when media_roots is not configured, so the web-services
// guide's configuration loads as printed; Start fails with a clear message when none exists.
var DefaultMediaRoots = []string{"/var/evo-webroot", "/var/evostreamms/media"}

// Config is the parameters of one S3 upload plugin instance. The first four are the original web
// services' (reference §4.4); the rest are emsflow's.
type Config struct {
	// AWSAccessKey and AWSSecretKey are static credentials. When both are empty the standard AWS
	// credential chain applies (environment, shared profile, instance role).
	AWSAccessKey Secret `json:"aws_access_key"`
	AWSSecretKey Secret `json:"aws_secret_key"`
	// DefaultBucket is the bucket every object goes to.
	DefaultBucket string `json:"default_bucket"`
	// Bootstrap is the HDS bootstrap file name in each stream folder.
	Bootstrap string `json:"bootstrap"`

	// Region is the bucket's region.
	Region string `json:"region"`
	// Endpoint is the base URL of an S3-compatible server; empty means AWS.
	Endpoint string `json:"endpoint"`
	// ForcePathStyle addresses buckets as endpoint/bucket instead of bucket.endpoint.
	ForcePathStyle bool `json:"force_path_style"`
	// Prefix is put before every object key ("live/" gives live/group/stream/file).
	Prefix string `json:"prefix"`
	// ACL is the canned ACL of uploaded objects; the original used public-read.
	ACL string `json:"acl"`
	// StorageClass of uploaded objects; empty leaves the bucket's default.
	StorageClass string `json:"storage_class"`
	// PlaylistCacheControl is the Cache-Control of playlists and manifests (short: they change).
	PlaylistCacheControl string `json:"playlist_cache_control"`
	// SegmentCacheControl is the Cache-Control of segments and recordings (long: they never change).
	SegmentCacheControl string `json:"segment_cache_control"`
	// MediaRoots are the only folders files are read from. Paths in events outside them are
	// refused as security events.
	MediaRoots []string `json:"media_roots"`
	// DeleteOnChunkDeleted deletes the object when EMS deletes the file (*ChunkDeleted).
	DeleteOnChunkDeleted bool `json:"delete_on_chunk_deleted"`
	// Concurrency bounds parallel uploads within one event (playlist references, multipart parts)
	// and in backfill.
	Concurrency int `json:"concurrency"`
	// CreateBucket creates the bucket at start when it does not exist.
	CreateBucket bool `json:"create_bucket"`
	// BackfillInterval is how often files missing from the bucket are looked for; 0 means only at
	// start. Unset means DefaultBackfillInterval.
	BackfillInterval *plugins.Duration `json:"backfill_interval"`
	// BackfillMinAge skips files modified more recently than this in backfill: EMS may still be
	// writing them, and their events are the fast path.
	BackfillMinAge plugins.Duration `json:"backfill_min_age"`
	// StableFor is how long a recording must be unmodified to count as complete when the mp4
	// writer's processStopped was not seen.
	StableFor plugins.Duration `json:"stable_for"`
	// PartSize is the multipart part size in bytes; it bounds the memory of one upload.
	PartSize int64 `json:"part_size"`
	// MultipartThreshold is the size from which recordings use resumable multipart upload.
	MultipartThreshold int64 `json:"multipart_threshold"`
}

// ParseConfig decodes parameters strictly, applies defaults and validates.
func ParseConfig(params json.RawMessage) (Config, error) {
	var c Config
	if err := plugins.DecodeParams(params, &c); err != nil {
		return Config{}, err
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	c.DefaultBucket = strings.TrimSpace(c.DefaultBucket)
	if c.Bootstrap == "" {
		c.Bootstrap = DefaultBootstrap
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.ACL == "" {
		c.ACL = DefaultACL
	}
	if c.PlaylistCacheControl == "" {
		c.PlaylistCacheControl = DefaultPlaylistCacheControl
	}
	if c.SegmentCacheControl == "" {
		c.SegmentCacheControl = DefaultSegmentCacheControl
	}
	if len(c.MediaRoots) == 0 {
		c.MediaRoots = slices.Clone(DefaultMediaRoots)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.BackfillInterval == nil {
		d := plugins.Duration(DefaultBackfillInterval)
		c.BackfillInterval = &d
	}
	if c.BackfillMinAge == 0 {
		c.BackfillMinAge = plugins.Duration(DefaultBackfillMinAge)
	}
	if c.StableFor == 0 {
		c.StableFor = plugins.Duration(DefaultStableFor)
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.MultipartThreshold == 0 {
		c.MultipartThreshold = DefaultMultipartThreshold
	}
	c.Prefix = strings.TrimLeft(toSlash(c.Prefix), "/")
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
}

// Validate reports every problem of the configuration, joined.
func (c Config) Validate() error {
	var errs []error
	if c.DefaultBucket == "" {
		errs = append(errs, errors.New("default_bucket is required"))
	}
	if (c.AWSAccessKey == "") != (c.AWSSecretKey == "") {
		errs = append(errs, errors.New("aws_access_key and aws_secret_key go together: set both, or neither to use the AWS credential chain"))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("endpoint %q is not an http(s) URL", c.Endpoint))
		}
	}
	if !slices.Contains(types.ObjectCannedACL("").Values(), types.ObjectCannedACL(c.ACL)) {
		errs = append(errs, fmt.Errorf("acl %q is not a canned ACL (known: %s)", c.ACL, joinValues(types.ObjectCannedACL("").Values())))
	}
	if c.StorageClass != "" && !slices.Contains(types.StorageClass("").Values(), types.StorageClass(c.StorageClass)) {
		errs = append(errs, fmt.Errorf("storage_class %q is not known (known: %s)", c.StorageClass, joinValues(types.StorageClass("").Values())))
	}
	for _, r := range c.MediaRoots {
		if strings.TrimSpace(r) == "" {
			errs = append(errs, errors.New("media_roots has an empty entry"))
		}
	}
	if c.Concurrency < 1 || c.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("concurrency %d is out of range 1-64", c.Concurrency))
	}
	if c.BackfillInterval != nil && *c.BackfillInterval < 0 {
		errs = append(errs, errors.New("backfill_interval must not be negative"))
	}
	if c.PartSize < minPartSize {
		errs = append(errs, fmt.Errorf("part_size %d is below S3's minimum of %d bytes", c.PartSize, minPartSize))
	}
	if c.MultipartThreshold < c.PartSize {
		errs = append(errs, fmt.Errorf("multipart_threshold %d is below part_size %d", c.MultipartThreshold, c.PartSize))
	}
	if strings.ContainsAny(c.Bootstrap, `/\`) {
		errs = append(errs, fmt.Errorf("bootstrap %q must be a file name, not a path", c.Bootstrap))
	}
	return errors.Join(errs...)
}

// resolveRoots makes relative media roots absolute against the configuration's folder.
func (c Config) resolveRoots(deps plugins.Deps) []string {
	out := make([]string, 0, len(c.MediaRoots))
	for _, r := range c.MediaRoots {
		out = append(out, deps.Resolve(filepath.FromSlash(toSlash(strings.TrimSpace(r)))))
	}
	return out
}

var awsBucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// bucketNameHint explains why AWS would refuse a bucket name, or returns "".
func bucketNameHint(name string) string {
	if awsBucketName.MatchString(name) && !strings.Contains(name, "..") {
		return ""
	}
	return "; AWS bucket names are 3-63 characters of lowercase letters, digits, dots and hyphens"
}

func joinValues[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

func toSlash(s string) string { return strings.ReplaceAll(s, `\`, "/") }
