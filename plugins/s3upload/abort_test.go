package s3upload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/internal/loopback"
	"github.com/emsflow/emsflow/internal/s3test"
	"github.com/emsflow/emsflow/plugins"
)

// abortFault fails the first fails AbortMultipartUpload calls with what fault returns (fault may
// call the real client itself, so that the real server or the real network gives the error), and
// lets the later ones through to the server, keeping what the server answered them.
type abortFault struct {
	API
	fault func(ctx context.Context, in *s3.AbortMultipartUploadInput, next API) error
	fails int32
	calls atomic.Int32

	mu      sync.Mutex
	answers []error // the server's answers to the calls let through
}

func (f *abortFault) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	if f.calls.Add(1) <= f.fails {
		return nil, f.fault(ctx, in, f.API)
	}
	out, err := f.API.AbortMultipartUpload(ctx, in, opts...)
	f.mu.Lock()
	f.answers = append(f.answers, err)
	f.mu.Unlock()
	return out, err
}

func (f *abortFault) serverAnswers() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.answers...)
}

// s3Fault is the error the SDK returns for an S3 error answer (status and code), shaped as the
// SDK shapes it: operation error, HTTP response error, API error.
func s3Fault(status int, code, msg string) func(context.Context, *s3.AbortMultipartUploadInput, API) error {
	return func(context.Context, *s3.AbortMultipartUploadInput, API) error {
		return &smithy.OperationError{ServiceID: "S3", OperationName: "AbortMultipartUpload", Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: http.Header{}}},
				Err:      &smithy.GenericAPIError{Code: code, Message: msg},
			},
			RequestID: "abort-fault",
		}}
	}
}

// closedPort sends the abort to a loopback port nobody listens on: a real connection refused.
func closedPort(t *testing.T) func(context.Context, *s3.AbortMultipartUploadInput, API) error {
	addr := loopback.MustAddr(t) // nothing listens there, and no outgoing connection takes it
	return func(ctx context.Context, in *s3.AbortMultipartUploadInput, next API) error {
		_, err := next.AbortMultipartUpload(ctx, in, func(o *s3.Options) { o.BaseEndpoint = aws.String("http://" + addr) })
		return err
	}
}

// pastDeadline sends the abort to the real server with a deadline already passed.
func pastDeadline(ctx context.Context, in *s3.AbortMultipartUploadInput, next API) error {
	ctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	_, err := next.AbortMultipartUpload(ctx, in)
	return err
}

// unknownKey sends the abort to the real server signed with an access key it does not know: the
// server itself answers 403 InvalidAccessKeyId.
func unknownKey(ctx context.Context, in *s3.AbortMultipartUploadInput, next API) error {
	_, err := next.AbortMultipartUpload(ctx, in, func(o *s3.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider("AKIDNOTKNOWNHERE", "not-the-secret", "")
	})
	return err
}

// uploadIDs lists the ids of the multipart uploads in progress under key.
func (e *testEnv) uploadIDs(key string) []string {
	e.t.Helper()
	out, err := e.srv.Client.ListMultipartUploads(e.t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.bucket), Prefix: aws.String(key)})
	if err != nil {
		e.t.Fatalf("list multipart uploads: %v", err)
	}
	var ids []string
	for _, up := range out.Uploads {
		if aws.ToString(up.Key) == key {
			ids = append(ids, aws.ToString(up.UploadId))
		}
	}
	return ids
}

// savedState reads the one multipart state in the data folder.
func (e *testEnv) savedState() mpState {
	e.t.Helper()
	states := e.stateFiles()
	if len(states) != 1 {
		e.t.Fatalf("multipart states in the data folder: %v, want one", states)
	}
	var s mpState
	if err := json.Unmarshal(readFile(e.t, states[0]), &s); err != nil {
		e.t.Fatalf("read multipart state: %v", err)
	}
	return s
}

// warnings returns the uploader's warning log lines, decoded.
func (e *testEnv) warnings() []map[string]any {
	e.t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.log.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			e.t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if line["level"] == "warn" {
			out = append(out, line)
		}
	}
	return out
}

// cutShortUpload handles ev, a recording's event, with an uploader whose multipart upload dies
// after its first part, as in a crash, and returns the upload id its saved state names.
func (e *testEnv) cutShortUpload(params map[string]any, ev *event.Event) string {
	e.t.Helper()
	e.u = e.build(KindRecord, params, func(a API) API { return &failingParts{API: a, allow: 1} })
	if err := e.u.Handle(e.t.Context(), ev); err == nil {
		e.t.Fatal("upload succeeded although parts failed")
	}
	id := e.savedState().UploadID
	if ids := e.uploadIDs(e.savedState().Key); len(ids) != 1 || ids[0] != id {
		e.t.Fatalf("multipart uploads in progress after the cut-short upload: %v, want [%s]", ids, id)
	}
	return id
}

// randomFile writes n random bytes to the file under the media root that key names, and
// returns its path.
func (e *testEnv) randomFile(key string, n int) string {
	e.t.Helper()
	p := filepath.Join(e.root, filepath.FromSlash(key))
	writeFile(e.t, p, randomData(e.t, n))
	return p
}

func randomData(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRecordChangedFileAbortsOldUpload: a recording that changed while its multipart upload was
// cut short (other size, other mtime) makes the old upload useless, and the uploader aborts it
// before starting the new one. How the abort fails decides what follows:
//   - a failure retrying may fix (503 SlowDown, connection refused, deadline passed) returns a
//     retryable error and keeps the state, so that the dispatcher's next attempt aborts the old
//     upload (gone from ListMultipartUploads) and uploads the new file;
//   - a refusal retrying cannot fix (403 AccessDenied, or the server's own 403 for an unknown
//     key) must not block the new file forever: a warning naming bucket, key and upload id (no
//     credentials), the abort_failures counter, and the new file is uploaded; the old upload is
//     left for the bucket's lifecycle rule;
//   - NoSuchUpload from the server (the old upload is gone already) is no failure at all.
func TestRecordChangedFileAbortsOldUpload(t *testing.T) {
	srv := s3test.Start(t)
	const size = 6<<20 + 17 // above multipart_threshold: two parts
	params := map[string]any{"part_size": 5 << 20, "multipart_threshold": 5 << 20, "concurrency": 1}
	type outcome int
	const (
		retried outcome = iota // retryable error, then the retry aborts and uploads
		refused                // warned, counted, new upload done, old one left
		gone                   // no failure
	)
	tests := []struct {
		name     string
		fault    func(context.Context, *s3.AbortMultipartUploadInput, API) error
		fails    int32
		preAbort bool // the old upload is aborted out of band first: the server answers NoSuchUpload
		want     outcome
	}{
		{name: "throttled", fault: s3Fault(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."), fails: 1, want: retried},
		{name: "internal error", fault: s3Fault(http.StatusInternalServerError, "InternalError", "We encountered an internal error."), fails: 1, want: retried},
		{name: "connection refused", fault: closedPort(t), fails: 1, want: retried},
		{name: "deadline passed", fault: pastDeadline, fails: 1, want: retried},
		{name: "access denied", fault: s3Fault(http.StatusForbidden, "AccessDenied", "Access Denied"), fails: 1, want: refused},
		{name: "server refuses the key", fault: unknownKey, fails: 1, want: refused},
		{name: "already gone", preAbort: true, want: gone},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, KindRecord, srv, params)
			key := "changed" + itoa(i) + "/1.flv"
			p := e.randomFile(key, size)
			ev := e.ev(event.RecordChunkClosed, map[string]any{"file": p})
			oldID := e.cutShortUpload(params, ev)

			// The file changes: EMS rewrote the recording with more data.
			newData := randomData(t, size+1000)
			writeFile(t, p, newData)
			if tc.preAbort {
				if _, err := srv.Client.AbortMultipartUpload(t.Context(), &s3.AbortMultipartUploadInput{
					Bucket: aws.String(e.bucket), Key: aws.String(key), UploadId: aws.String(oldID),
				}); err != nil {
					t.Fatalf("abort out of band: %v", err)
				}
			}
			f := &abortFault{fault: tc.fault, fails: tc.fails}
			e.u = e.build(KindRecord, params, func(a API) API { f.API = a; return f })
			err := e.u.Handle(t.Context(), ev)

			if tc.want == retried {
				if err == nil || plugins.IsPermanent(err) || !strings.Contains(err.Error(), "abort multipart upload") {
					t.Fatalf("abort failed (%s): got %v, want a retryable error naming the abort", tc.name, err)
				}
				if got := e.savedState().UploadID; got != oldID {
					t.Errorf("state names upload %s after the failed abort, want the old %s kept", got, oldID)
				}
				if ids := e.uploadIDs(key); len(ids) != 1 || ids[0] != oldID {
					t.Errorf("multipart uploads in progress: %v, want only the old %s (no new one started)", ids, oldID)
				}
				if _, ok := e.objects()[key]; ok {
					t.Errorf("bucket has %s although the abort failed first", key)
				}
				// The dispatcher's retry: the abort goes through now.
				err = e.u.Handle(t.Context(), ev)
				if got := f.calls.Load(); got != 2 {
					t.Errorf("abort called %d times over two attempts, want 2", got)
				}
			}
			if err != nil {
				t.Fatalf("handle: got %v, want nil", err)
			}
			if got := e.get(key); !bytes.Equal(got, newData) {
				t.Errorf("object is %d bytes, want the new file's %d", len(got), len(newData))
			}
			if states := e.stateFiles(); len(states) != 0 {
				t.Errorf("multipart states left: %v", states)
			}
			if tc.want == gone {
				answers := f.serverAnswers()
				if len(answers) != 1 || !isNoSuchUpload(answers[0]) {
					t.Fatalf("server answered the abort %v, want NoSuchUpload once", answers)
				}
			}

			failures := counter(e.u.m.abortFailures)
			var warned []map[string]any
			for _, w := range e.warnings() {
				if w[logfield.UploadID] == oldID {
					warned = append(warned, w)
				}
			}
			ids := e.uploadIDs(key)
			if tc.want == refused {
				if failures != 1 {
					t.Errorf("abort_failures = %v, want 1", failures)
				}
				if len(warned) != 1 || warned[0]["bucket"] != e.bucket || warned[0]["key"] != key {
					t.Errorf("warnings about upload %s: %v, want one naming bucket %s and key %s", oldID, warned, e.bucket, key)
				}
				// Left for the lifecycle rule (AbortIncompleteMultipartUpload).
				if len(ids) != 1 || ids[0] != oldID {
					t.Errorf("multipart uploads in progress: %v, want the old %s left behind", ids, oldID)
				}
			} else {
				if failures != 0 || len(warned) != 0 {
					t.Errorf("abort_failures = %v, warnings %v; want none", failures, warned)
				}
				if len(ids) != 0 {
					t.Errorf("multipart uploads in progress: %v, want none (the old %s aborted)", ids, oldID)
				}
			}
			if l := e.log.String(); strings.Contains(l, srv.SecretKey) || strings.Contains(l, srv.AccessKey) || strings.Contains(l, "not-the-secret") {
				t.Error("the log shows credentials")
			}
		})
	}
}

// TestRecordDeletedAbortFails: a recording deleted in the middle of its multipart upload is lost,
// and its upload is aborted. When the server refuses the abort for good, the loss is still
// reported as the loss (permanent, counted lost) and the refusal is warned about and counted;
// the upload is left for the lifecycle rule. When the abort fails for a while, the error is
// retryable and the state stays for the retry.
func TestRecordDeletedAbortFails(t *testing.T) {
	srv := s3test.Start(t)
	params := map[string]any{"part_size": 5 << 20, "multipart_threshold": 5 << 20, "concurrency": 1}
	tests := []struct {
		name      string
		fault     func(context.Context, *s3.AbortMultipartUploadInput, API) error
		permanent bool
	}{
		{name: "access denied", fault: s3Fault(http.StatusForbidden, "AccessDenied", "Access Denied"), permanent: true},
		{name: "throttled", fault: s3Fault(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, KindRecord, srv, params)
			key := "deleted" + itoa(i) + "/1.flv"
			p := e.randomFile(key, 6<<20+17)
			ev := e.ev(event.RecordChunkClosed, map[string]any{"file": p})
			oldID := e.cutShortUpload(params, ev)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			f := &abortFault{fault: tc.fault, fails: 1}
			e.u = e.build(KindRecord, params, func(a API) API { f.API = a; return f })
			err := e.u.Handle(t.Context(), ev)

			lost := counter(e.u.m.lost.WithLabelValues(reasonDeletedBeforeUpload))
			failures := counter(e.u.m.abortFailures)
			if tc.permanent {
				if err == nil || !plugins.IsPermanent(err) || !strings.Contains(err.Error(), "deleted before it could be uploaded") || strings.Contains(err.Error(), "upload aborted") {
					t.Errorf("got %v, want a permanent error saying the recording was deleted before it could be uploaded, not that its upload was aborted", err)
				}
				if lost != 1 || failures != 1 {
					t.Errorf("lost = %v, abort_failures = %v; want 1 and 1", lost, failures)
				}
				if states := e.stateFiles(); len(states) != 0 {
					t.Errorf("multipart states left: %v", states)
				}
				var warned int
				for _, w := range e.warnings() {
					if w[logfield.UploadID] == oldID && w["bucket"] == e.bucket && w["key"] == key {
						warned++
					}
				}
				if warned != 1 {
					t.Errorf("%d warnings naming bucket, key and upload %s, want 1; log:\n%s", warned, oldID, e.log.String())
				}
			} else {
				if err == nil || plugins.IsPermanent(err) || !strings.Contains(err.Error(), "abort multipart upload") {
					t.Errorf("got %v, want a retryable error naming the abort", err)
				}
				if lost != 0 || failures != 0 {
					t.Errorf("lost = %v, abort_failures = %v; want 0 and 0 until the retry", lost, failures)
				}
				if got := e.savedState().UploadID; got != oldID {
					t.Errorf("state names upload %s, want the old %s kept", got, oldID)
				}
				if ids := e.uploadIDs(key); len(ids) != 1 || ids[0] != oldID {
					t.Errorf("multipart uploads in progress: %v, want the old %s kept", ids, oldID)
				}
				// The dispatcher's retry: the abort goes through, and the loss is final.
				err = e.u.Handle(t.Context(), ev)
				if err == nil || !plugins.IsPermanent(err) || !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("retry: got %v, want a permanent error wrapping fs.ErrNotExist", err)
				}
				if ids := e.uploadIDs(key); len(ids) != 0 {
					t.Errorf("multipart uploads in progress after the retry: %v, want none", ids)
				}
				if states := e.stateFiles(); len(states) != 0 {
					t.Errorf("multipart states left after the retry: %v", states)
				}
				return
			}
			// Left for the lifecycle rule (AbortIncompleteMultipartUpload).
			if ids := e.uploadIDs(key); len(ids) != 1 || ids[0] != oldID {
				t.Errorf("multipart uploads in progress: %v, want the old %s left behind", ids, oldID)
			}
		})
	}
}

// cancelAtPart cancels the handler's context when the upload reaches part n, as the
// dispatcher's deadline does, and fails that part with the context's error.
type cancelAtPart struct {
	API
	n      int32
	cancel context.CancelFunc
	calls  atomic.Int32
}

func (c *cancelAtPart) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	if c.calls.Add(1) == c.n {
		c.cancel()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return c.API.UploadPart(ctx, in, opts...)
}

// TestFailedUploadAbortsItsMultipartUpload: a segment above multipart_threshold whose upload
// fails after its first part leaves no multipart upload behind unseen. transfermanager aborts it
// with a context of its own (the handler's may be what ended), the uploader aborts it once more
// (the server says NoSuchUpload when the first went through), and when both aborts fail the
// upload is counted in abort_failures and named in one warning; no retry of the event could
// find it later.
func TestFailedUploadAbortsItsMultipartUpload(t *testing.T) {
	srv := s3test.Start(t)
	const size = 6<<20 + 17 // above multipart_threshold: two parts
	params := map[string]any{"part_size": 5 << 20, "multipart_threshold": 5 << 20, "concurrency": 1}
	tests := []struct {
		name     string
		fault    func(context.Context, *s3.AbortMultipartUploadInput, API) error
		fails    int32 // aborts failed by fault, the first ones
		deadline bool  // the handler's context ends during the second part, instead of a failed part
		left     bool  // both aborts fail: the upload stays, counted and logged
	}{
		{name: "transfermanager aborts"},
		{name: "deadline", deadline: true},
		{name: "first abort throttled", fault: s3Fault(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."), fails: 1},
		{name: "both aborts refused connection", fault: closedPort(t), fails: 2, left: true},
		{name: "both aborts denied", fault: s3Fault(http.StatusForbidden, "AccessDenied", "Access Denied"), fails: 2, left: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, KindHLS, srv, params)
			key := "hlsfail" + itoa(i) + "/cam1/seg_1.ts"
			p := e.randomFile(key, size)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			f := &abortFault{fault: tc.fault, fails: tc.fails}
			e.u = e.build(KindHLS, params, func(a API) API {
				if tc.deadline {
					f.API = &cancelAtPart{API: a, n: 2, cancel: cancel}
				} else {
					f.API = &failingParts{API: a, allow: 1}
				}
				return f
			})

			err := e.u.Handle(ctx, e.fileEvent(event.HLSChunkClosed, p))
			if err == nil || plugins.IsPermanent(err) {
				t.Fatalf("upload with a failed part: got %v, want a retryable error", err)
			}
			if got := f.calls.Load(); got != 2 {
				t.Errorf("abort called %d times, want twice (transfermanager, then the uploader)", got)
			}
			if l := e.log.String(); strings.Contains(l, srv.SecretKey) || strings.Contains(l, srv.AccessKey) {
				t.Error("the log shows credentials")
			}
			ids := e.uploadIDs(key)
			failures := counter(e.u.m.abortFailures)
			var warned []map[string]any
			for _, w := range e.warnings() {
				if w[logfield.Key] == key && w[logfield.UploadID] != nil {
					warned = append(warned, w)
				}
			}
			if !tc.left {
				// The aborts the fault let through reached the server: the first one to do so
				// succeeds, and a second one finds the upload gone.
				answers := f.serverAnswers()
				ok := len(answers) == 2 && answers[0] == nil && isNoSuchUpload(answers[1])
				if tc.fails == 1 {
					ok = len(answers) == 1 && answers[0] == nil
				}
				if !ok {
					t.Errorf("server answered the aborts it received %v, want success, then NoSuchUpload if there was a second", answers)
				}
				if len(ids) != 0 || failures != 0 || len(warned) != 0 {
					t.Errorf("uploads in progress %v, abort_failures %v, warnings %v; want none", ids, failures, warned)
				}
				return
			}
			if len(ids) != 1 {
				t.Fatalf("uploads in progress %v, want the one both aborts missed", ids)
			}
			if failures != 1 || len(warned) != 1 || warned[0][logfield.UploadID] != ids[0] || warned[0][logfield.Bucket] != e.bucket {
				t.Errorf("abort_failures %v, warnings %v; want 1 and one naming bucket %s and upload %s", failures, warned, e.bucket, ids[0])
			}
			if _, err := srv.Client.AbortMultipartUpload(t.Context(), &s3.AbortMultipartUploadInput{
				Bucket: aws.String(e.bucket), Key: aws.String(key), UploadId: aws.String(ids[0]),
			}); err != nil {
				t.Fatalf("abort left upload: %v", err)
			}
		})
	}
}
