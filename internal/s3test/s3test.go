// Package s3test runs a real S3-compatible server (versitygw with its posix backend) on loopback
// for tests, with root credentials generated per run.
//
// The binary is built at a pinned version by `make tools` into .tools/bin/versitygw at the module
// root. A test that needs S3 fails (never skips) when the binary is missing, so a green run always
// means the S3 tests ran.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/emsflow/emsflow/internal/loopback"
)

// Region is the region the server answers for.
const Region = "us-east-1"

// BinaryEnv names an environment variable that overrides where the versitygw binary is found.
const BinaryEnv = "EMSFLOW_VERSITYGW"

// Server is one running versitygw. Its data directory survives Stop and Start, so a test can take
// the server away for a while (an outage) and bring it back with the same objects.
type Server struct {
	// Endpoint is the base URL, http://127.0.0.1:<port>.
	Endpoint string
	// AccessKey and SecretKey are the root credentials of this run.
	AccessKey string
	SecretKey string
	// DataDir is the posix backend's root: one folder per bucket.
	DataDir string
	// AccessLog is the file the server writes its access log to, one line per request in the
	// order the server handled them.
	AccessLog string
	// Client is a ready S3 client for the server (path style, region us-east-1).
	Client *s3.Client

	t          testing.TB
	versionDir string
	bin        string
	addr       string
	mu         sync.Mutex
	cmd        *exec.Cmd
	out        *lockedWriter
	done       chan struct{}
}

// Options change how the server runs.
type Options struct {
	// Versioning lets buckets keep every version of an object (see EnableVersioning), so a test
	// can read each version a key had.
	Versioning bool
}

// Start runs a new server for the test and stops it at cleanup. It fails the test when the binary
// is missing or the server does not become ready.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	s := &Server{
		AccessKey: "test" + randomHex(t, 8),
		SecretKey: randomHex(t, 20),
		DataDir:   filepath.Join(base, "data"),
		AccessLog: filepath.Join(base, "access.log"),
		t:         t,
		bin:       bin,
		addr:      loopback.MustAddr(t),
	}
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if opts.Versioning {
		s.versionDir = filepath.Join(base, "versions")
		if err := os.MkdirAll(s.versionDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.Endpoint = "http://" + s.addr
	s.Client = s3.New(s.ClientOptions())
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// Binary returns the path of the versitygw binary, or an error telling how to build it.
func Binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("versitygw not found at %s (from %s): %w", p, BinaryEnv, err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("versitygw not found: no go.mod above the working directory; run `make tools`")
		}
		dir = parent
	}
	p := filepath.Join(dir, ".tools", "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not found at %s; run `make tools`", p)
	}
	return p, nil
}

// ClientOptions returns S3 client options for the server. The options are built explicitly, not
// from the environment, so AWS_* variables of the machine (a CA bundle, a profile) do not apply.
func (s *Server) ClientOptions() s3.Options {
	return s3.Options{
		Region:                     Region,
		BaseEndpoint:               aws.String(s.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           1,
	}
}

// Start starts the server (again, after Stop) on the same address and data directory, and waits
// until it answers S3 requests.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	args := []string{"--port", s.addr, "--quiet", "--access-log", s.AccessLog, "posix"}
	if s.versionDir != "" {
		args = append(args, "--versioning-dir", s.versionDir)
	}
	cmd := exec.Command(s.bin, append(args, s.DataDir)...)
	// Credentials go through the environment, not argv, so they do not show in process lists.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	out := &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start versitygw: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.out, s.done = cmd, out, done

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		_, err := s.Client.ListBuckets(rctx, &s3.ListBucketsInput{})
		rcancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			s.t.Fatalf("versitygw exited before it was ready: %s", out.String())
		case <-ctx.Done():
			s.t.Fatalf("versitygw not ready on %s after 20s: %v; output: %s", s.addr, err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop kills the server and waits for it to exit. The data directory is kept.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// CreateBucket creates a bucket and fails the test on error.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if _, err := s.Client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// EnableVersioning turns on versioning for a bucket; the server must run with Versioning.
func (s *Server) EnableVersioning(t testing.TB, bucket string) {
	t.Helper()
	if _, err := s.Client.PutBucketVersioning(t.Context(), &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(bucket),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
	}); err != nil {
		t.Fatalf("enable versioning on %s: %v", bucket, err)
	}
}

// Put is one stored object version, in the order the server stored it.
type Put struct {
	Key       string
	VersionID string
	// Seq is the position of the PUT among all successful PUTs of the bucket, from 0.
	Seq int
}

// Puts returns the bucket's object versions in the order the server stored them: the access
// log gives the order, ListObjectVersions the version of each PUT (the k-th PUT of a key is its
// k-th oldest version). The bucket must be versioned and nothing deleted.
func (s *Server) Puts(t testing.TB, bucket string) []Put {
	t.Helper()
	reqs, err := s.Requests()
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string][]string{} // key → version ids, oldest first
	p := s3.NewListObjectVersionsPaginator(s.Client, &s3.ListObjectVersionsInput{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("list versions of %s: %v", bucket, err)
		}
		for _, v := range page.Versions {
			k := aws.ToString(v.Key)
			versions[k] = append(versions[k], aws.ToString(v.VersionId))
		}
	}
	for k, vs := range versions {
		slices.Reverse(vs) // listed newest first
		versions[k] = vs
	}
	var out []Put
	nth := map[string]int{}
	for _, r := range reqs {
		if r.Bucket != bucket || r.Status != 200 || (r.Operation != "s3_PutObject" && r.Operation != "s3_CompleteMultipartUpload") {
			continue
		}
		vs := versions[r.Key]
		i := nth[r.Key]
		nth[r.Key]++
		if i >= len(vs) {
			t.Fatalf("access log has %d PUTs of %s, the bucket %d versions", nth[r.Key], r.Key, len(vs))
		}
		out = append(out, Put{Key: r.Key, VersionID: vs[i], Seq: len(out)})
	}
	return out
}

// MakePublic lets anonymous clients (a player such as ffprobe) read every object of a bucket,
// through a bucket policy.
func (s *Server) MakePublic(t testing.TB, bucket string) {
	t.Helper()
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::` + bucket + `/*"]}]}`
	if _, err := s.Client.PutBucketPolicy(t.Context(), &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(policy)}); err != nil {
		t.Fatalf("put bucket policy on %s: %v", bucket, err)
	}
}

// Request is one line of the server's access log.
type Request struct {
	// Operation is the S3 operation, such as s3_PutObject.
	Operation string
	// Bucket and Key name the object; Key is "-" for bucket operations.
	Bucket string
	Key    string
	// Status is the HTTP status the server answered.
	Status int
}

// Requests returns the requests the server handled so far, in the order it logged them. It lets a
// test check the server-side order of uploads.
func (s *Server) Requests() ([]Request, error) {
	b, err := os.ReadFile(s.AccessLog)
	if err != nil {
		return nil, fmt.Errorf("read access log: %w", err)
	}
	var out []Request
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		// owner bucket [date zone] ip requester request-id operation key uri status ...
		if len(f) < 11 || !strings.HasPrefix(f[2], "[") {
			continue
		}
		status, _ := strconv.Atoi(f[10])
		out = append(out, Request{Operation: f[7], Bucket: f[1], Key: f[8], Status: status})
	}
	return out, nil
}

// URL returns the path-style HTTP URL of an object.
func (s *Server) URL(bucket, key string) string { return s.Endpoint + "/" + bucket + "/" + key }

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// lockedWriter collects process output safely while the test reads it.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
