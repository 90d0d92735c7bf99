package s3test_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/emsflow/emsflow/internal/s3test"
)

func TestServerKeepsObjectsAcrossRestart(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "media")
	ctx := t.Context()
	if _, err := srv.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("media"), Key: aws.String("a/b.txt"), Body: strings.NewReader("hello")}); err != nil {
		t.Fatalf("put: %v", err)
	}
	srv.Stop()
	if _, err := srv.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("media"), Key: aws.String("a/b.txt")}); err == nil {
		t.Fatal("head succeeded while the server was stopped")
	}
	srv.Start()
	out, err := srv.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("media"), Key: aws.String("a/b.txt")})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("got %q, want hello", b)
	}
}

func TestMakePublicAllowsAnonymousGet(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "pub")
	if _, err := srv.Client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("pub"), Key: aws.String("x.m3u8"), Body: strings.NewReader("#EXTM3U\n")}); err != nil {
		t.Fatal(err)
	}
	get := func() int {
		resp, err := http.Get(srv.URL("pub", "x.m3u8"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusForbidden {
		t.Fatalf("anonymous get before policy: status %d, want 403", code)
	}
	srv.MakePublic(t, "pub")
	if code := get(); code != http.StatusOK {
		t.Fatalf("anonymous get after policy: status %d, want 200", code)
	}
	reqs, err := srv.Requests()
	if err != nil {
		t.Fatal(err)
	}
	var gets []int
	for _, r := range reqs {
		if r.Operation == "s3_GetObject" && r.Key == "x.m3u8" {
			gets = append(gets, r.Status)
		}
	}
	if len(gets) != 2 || gets[0] != 403 || gets[1] != 200 {
		t.Fatalf("access log GETs of x.m3u8: got statuses %v, want [403 200]", gets)
	}
}

func TestInvalidBucketNameRefused(t *testing.T) {
	srv := s3test.Start(t)
	_, err := srv.Client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String("HLS_files")})
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("create HLS_files: got %v, want an API error", err)
	}
	if ae.ErrorCode() != "InvalidBucketName" {
		t.Fatalf("create HLS_files: got code %s, want InvalidBucketName", ae.ErrorCode())
	}
}

func TestPutsGivesEveryVersionInOrder(t *testing.T) {
	srv := s3test.StartWith(t, s3test.Options{Versioning: true})
	srv.CreateBucket(t, "vers")
	srv.EnableVersioning(t, "vers")
	for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"a", "3"}} {
		if _, err := srv.Client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("vers"), Key: aws.String(kv[0]), Body: strings.NewReader(kv[1])}); err != nil {
			t.Fatal(err)
		}
	}
	puts := srv.Puts(t, "vers")
	var got []string
	for _, p := range puts {
		out, err := srv.Client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String("vers"), Key: aws.String(p.Key), VersionId: aws.String(p.VersionID)})
		if err != nil {
			t.Fatalf("get %s version %s: %v", p.Key, p.VersionID, err)
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		got = append(got, p.Key+"="+string(b))
	}
	if strings.Join(got, ",") != "a=1,b=2,a=3" {
		t.Fatalf("got %v, want [a=1 b=2 a=3]", got)
	}
}
