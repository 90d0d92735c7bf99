package emsclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/emsclient/emstest"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

const secret = "s3cr3t-P@ss:w0rd"

func TestNew(t *testing.T) {
	hc := &http.Client{}
	tests := []struct {
		name       string
		url        string
		hc         *http.Client
		wantErr    string
		wantString string
	}{
		{name: "plain", url: "http://127.0.0.1:7777", hc: hc, wantString: "http://127.0.0.1:7777"},
		{name: "trailing slash", url: "http://127.0.0.1:7777/", hc: hc, wantString: "http://127.0.0.1:7777"},
		{name: "apiProxy", url: "http://admin:" + url.QueryEscape(secret) + "@ems.example:8888/emsproxy/", hc: hc,
			wantString: "http://admin:xxxxx@ems.example:8888/emsproxy"},
		{name: "https", url: "https://ems.example/api", hc: hc, wantString: "https://ems.example/api"},
		{name: "nil http client", url: "http://127.0.0.1:7777", hc: nil, wantErr: "http client is nil"},
		{name: "no scheme", url: "127.0.0.1:7777", hc: hc, wantErr: "api url"},
		{name: "bad scheme with password", url: "ftp://admin:" + url.QueryEscape(secret) + "@h", hc: hc, wantErr: "scheme must be http or https"},
		{name: "no host", url: "http:///path", hc: hc, wantErr: "no host"},
		{name: "query", url: "http://h:7777?params=x", hc: hc, wantErr: "must not have a query"},
		{name: "empty", url: "", hc: hc, wantErr: "scheme must be http or https"},
		{name: "unparsable with password", url: "http://admin:" + secret + "@h:77x77", hc: hc, wantErr: "not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := emsclient.New(tt.url, tt.hc)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("New(%q) = %v, want an error containing %q", tt.url, c, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				assertNoSecret(t, err.Error())
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.url, err)
			}
			if got := c.String(); got != tt.wantString {
				t.Errorf("String() = %q, want %q", got, tt.wantString)
			}
			if got := c.BaseURL(); got != tt.wantString {
				t.Errorf("BaseURL() = %q, want %q", got, tt.wantString)
			}
		})
	}
}

func TestCallSendsRawBase64(t *testing.T) {
	srv := emstest.NewServer(t)
	var ps emsclient.Params
	ps.Add("uri", "rtmp://h/live>?>?") // encodes with '+' and '/'
	ps.Add("localStreamName", "cam~1")
	r, err := srv.Client().Call(t.Context(), "pullStream", ps)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if r.Status != "SUCCESS" {
		t.Errorf("Status = %q, want SUCCESS", r.Status)
	}
	got := srv.CallsTo("pullstream")
	if len(got) != 1 {
		t.Fatalf("got %d calls, want 1", len(got))
	}
	if want := "params=" + ps.Encode(); got[0].RawQuery != want {
		t.Errorf("RawQuery = %q, want %q", got[0].RawQuery, want)
	}
	if !strings.ContainsAny(got[0].RawQuery, "+/") {
		t.Errorf("test params should hold '+' or '/': %q", got[0].RawQuery)
	}

	if _, err := srv.Client().Call(t.Context(), "version", nil); err != nil {
		t.Fatalf("Call(version): %v", err)
	}
	v := srv.CallsTo("version")
	if len(v) != 1 || v[0].RawQuery != "" || v[0].Path != "/version" {
		t.Errorf("version call = %+v, want /version without a query", v)
	}
}

// EMS answers JSON with Content-Type text/plain; the client must not care about the header.
func TestCallParsesJSONWhateverTheContentType(t *testing.T) {
	srv := emstest.NewServer(t)
	srv.Handle("getServerInfo", func(emsclient.Params) (int, any) {
		return 200, `{"data":{"uniqueId":18446744073709551615},"description":"ok","responseId":42,"status":"SUCCESS"}`
	})
	r, err := srv.Client().Call(t.Context(), "getServerInfo", nil)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if r.Description != "ok" || r.ResponseID != "42" {
		t.Errorf("response = %+v", r)
	}
	var p event.Payload
	if err := r.DecodeData(&p); err != nil {
		t.Fatal(err)
	}
	if id, ok := p.UniqueID(); !ok || id != 18446744073709551615 {
		t.Errorf("uniqueId = %d, %v; want the exact 64-bit value", id, ok)
	}
}

func TestErrorClassification(t *testing.T) {
	fixed := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name           string
		failure        emstest.Failure
		wantPermanent  bool
		wantHTTP       int
		wantRetryAfter time.Duration
		wantText       string
	}{
		{name: "EMS FAIL", failure: emstest.EMSFail("Syntax error. Parameter localStreamName is invalid"),
			wantPermanent: true, wantText: "ems pushStream: FAIL: Syntax error. Parameter localStreamName is invalid"},
		{name: "500", failure: emstest.HTTPError(500, ""), wantHTTP: 500, wantText: "HTTP 500"},
		{name: "502", failure: emstest.HTTPError(502, ""), wantHTTP: 502},
		{name: "503 Retry-After seconds", failure: emstest.HTTPError(503, "2"), wantHTTP: 503, wantRetryAfter: 2 * time.Second},
		{name: "429 Retry-After seconds", failure: emstest.HTTPError(429, "7"), wantHTTP: 429, wantRetryAfter: 7 * time.Second},
		{name: "429 Retry-After date", failure: emstest.HTTPError(429, fixed.Add(90*time.Second).Format(http.TimeFormat)),
			wantHTTP: 429, wantRetryAfter: 90 * time.Second},
		{name: "503 Retry-After in the past", failure: emstest.HTTPError(503, fixed.Add(-time.Hour).Format(http.TimeFormat)), wantHTTP: 503},
		{name: "503 Retry-After garbage", failure: emstest.HTTPError(503, "soon"), wantHTTP: 503},
		{name: "408", failure: emstest.HTTPError(408, ""), wantHTTP: 408},
		{name: "400", failure: emstest.HTTPError(400, "5"), wantPermanent: true, wantHTTP: 400},
		{name: "401", failure: emstest.HTTPError(401, ""), wantPermanent: true, wantHTTP: 401},
		{name: "404", failure: emstest.HTTPError(404, ""), wantPermanent: true, wantHTTP: 404},
		{name: "501", failure: emstest.HTTPError(501, ""), wantPermanent: true, wantHTTP: 501},
		{name: "200 not JSON", failure: emstest.NotJSON(), wantText: "not JSON"},
		{name: "200 JSON without status", failure: emstest.Failure{HTTPStatus: 200, Body: `{"error":"nope"}`}, wantText: "no EMS status"},
		{name: "500 HTML", failure: emstest.Failure{HTTPStatus: 500, Body: "<html>oops</html>", ContentType: "text/html"}, wantHTTP: 500},
		{name: "dropped connection", failure: emstest.Drop()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := emstest.NewServer(t)
			srv.FailNext("pushstream", 1, tt.failure)
			c, err := emsclient.New(srv.URL(), srv.HTTPClient(), emsclient.WithClock(func() time.Time { return fixed }))
			if err != nil {
				t.Fatal(err)
			}
			p := emsclient.PushStreamParams{URI: "rtmp://u:" + secret + "@10.0.0.7/live", LocalStreamName: "cam1"}
			_, err = c.PushStream(t.Context(), p)
			if err == nil {
				t.Fatal("PushStream succeeded, want an error")
			}
			var e *emsclient.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not an *emsclient.Error", err, err)
			}
			if e.Command != "pushStream" {
				t.Errorf("Command = %q", e.Command)
			}
			if e.Permanent() != tt.wantPermanent || plugins.IsPermanent(err) != tt.wantPermanent {
				t.Errorf("Permanent() = %v, plugins.IsPermanent = %v, want %v", e.Permanent(), plugins.IsPermanent(err), tt.wantPermanent)
			}
			if e.HTTPStatus != tt.wantHTTP {
				t.Errorf("HTTPStatus = %d, want %d", e.HTTPStatus, tt.wantHTTP)
			}
			if got, _ := plugins.RetryAfter(err); got != tt.wantRetryAfter || e.RetryAfter() != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v (plugins: %v), want %v", e.RetryAfter(), got, tt.wantRetryAfter)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
			if !strings.Contains(err.Error(), srv.URL()) {
				t.Errorf("error %q does not name the API %s", err, srv.URL())
			}
			assertNoSecret(t, err.Error())
			if ps := srv.CallsTo("pushStream"); len(ps) == 1 && strings.Contains(err.Error(), strings.TrimPrefix(ps[0].RawQuery, "params=")) {
				t.Errorf("error %q carries the encoded params", err)
			}
			if len(srv.CallsTo("pushStream")) != 1 {
				t.Errorf("got %d calls, want exactly 1: the client must not retry", len(srv.CallsTo("pushStream")))
			}
		})
	}
}

func TestFailCarriesDescription(t *testing.T) {
	srv := emstest.NewServer(t)
	srv.FailNext("getStreamInfo", 1, emstest.EMSFail("Stream not found"))
	r, err := srv.Client().Call(t.Context(), "getStreamInfo", nil)
	var e *emsclient.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *emsclient.Error", err)
	}
	if e.Status != "FAIL" || e.Description != "Stream not found" || e.HTTPStatus != 0 {
		t.Errorf("error = %+v", e)
	}
	if r == nil || r.Status != "FAIL" {
		t.Errorf("Call returned response %+v, want the FAIL response too", r)
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := emstest.NewServer(t)
	c := srv.Client()
	srv.Close()
	_, err := c.Version(t.Context())
	var e *emsclient.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *emsclient.Error", err)
	}
	if e.Permanent() || e.HTTPStatus != 0 {
		t.Errorf("refused connection: Permanent=%v HTTPStatus=%d, want retryable and 0", e.Permanent(), e.HTTPStatus)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not wrap ECONNREFUSED", err)
	}
}

func TestContextEnds(t *testing.T) {
	for _, tt := range []struct {
		name string
		want error
	}{{"cancel", context.Canceled}, {"deadline", context.DeadlineExceeded}} {
		t.Run(tt.name, func(t *testing.T) {
			srv := emstest.NewServer(t)
			arrived := make(chan struct{}, 1)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) }) // runs before the server closes
			srv.Handle("listStreams", func(emsclient.Params) (int, any) {
				arrived <- struct{}{}
				<-release
				return 200, emstest.Success("", []any{})
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.want == context.DeadlineExceeded {
				var cancelT context.CancelFunc
				ctx, cancelT = context.WithTimeout(t.Context(), 50*time.Millisecond)
				defer cancelT()
			}
			done := make(chan error, 1)
			go func() {
				_, err := srv.Client().ListStreams(ctx)
				done <- err
			}()
			<-arrived
			if tt.want == context.Canceled {
				cancel()
			}
			err := <-done
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var e *emsclient.Error
			if errors.As(err, &e) {
				t.Errorf("ctx end was classified as %+v; it must stay ctx's error", e)
			}
			if plugins.IsPermanent(err) {
				t.Error("ctx end is marked permanent")
			}
		})
	}
	t.Run("already cancelled", func(t *testing.T) {
		srv := emstest.NewServer(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := srv.Client().Version(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestAPIProxyBasicAuth(t *testing.T) {
	srv := emstest.NewServer(t)
	srv.RequireBasicAuth("admin", secret)
	u, _ := url.Parse(srv.URL())
	u.User = url.UserPassword("admin", secret)
	u.Path = "/emsproxy"
	c, err := emsclient.New(u.String(), srv.HTTPClient())
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, c.String())
	if !strings.Contains(c.String(), "admin:xxxxx@") || !strings.HasSuffix(c.String(), "/emsproxy") {
		t.Errorf("String() = %q, want the redacted apiProxy URL", c.String())
	}
	if _, err := c.PullStream(t.Context(), emsclient.PullStreamParams{URI: "rtmp://src/live/cam1", LocalStreamName: "cam1"}); err != nil {
		t.Fatalf("PullStream through the apiProxy: %v", err)
	}
	calls := srv.Calls()
	if len(calls) != 1 || calls[0].Path != "/emsproxy/pullStream" || calls[0].User != "admin" || calls[0].Command != "pullStream" {
		t.Fatalf("calls = %+v, want one /emsproxy/pullStream as admin", calls)
	}

	// Every kind of failure through the authenticated client keeps the password out.
	for _, f := range []emstest.Failure{emstest.EMSFail("nope"), emstest.HTTPError(503, "1"), emstest.NotJSON(), emstest.Drop()} {
		srv.FailNext(emstest.Any, 1, f)
		_, err := c.PushStream(t.Context(), emsclient.PushStreamParams{URI: "rtmp://dst/live", LocalStreamName: "cam1"})
		if err == nil {
			t.Fatalf("failure %+v gave no error", f)
		}
		assertNoSecret(t, err.Error())
	}

	// A wrong password is refused by the proxy: permanent, and the password is still not shown.
	u.User = url.UserPassword("admin", "wrong-"+secret)
	bad, err := emsclient.New(u.String(), srv.HTTPClient())
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Version(t.Context())
	var e *emsclient.Error
	if !errors.As(err, &e) || e.HTTPStatus != http.StatusUnauthorized || !e.Permanent() {
		t.Fatalf("wrong password: err = %v, want a permanent 401", err)
	}
	assertNoSecret(t, err.Error())
	assertNoSecret(t, bad.String())

	// Without credentials the plain client is refused too.
	plain, err := emsclient.New(srv.URL(), srv.HTTPClient())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Version(t.Context()); !errors.As(err, &e) || e.HTTPStatus != http.StatusUnauthorized {
		t.Errorf("no credentials: err = %v, want 401", err)
	}
}

func TestInvalidParamsAreRefusedBeforeSending(t *testing.T) {
	tests := []struct {
		name string
		call func(context.Context, *emsclient.Client) error
		want string
	}{
		{"user var without underscore", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.PullStream(ctx, emsclient.PullStreamParams{URI: "rtmp://h/l", UserVars: map[string]string{"job": "1"}})
			return err
		}, `must start with "_"`},
		{"user var with space", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.Record(ctx, emsclient.RecordParams{LocalStreamName: "a", PathToFile: "/x", UserVars: map[string]string{"_a b": "1"}})
			return err
		}, "user variable"},
		{"pull without uri", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.PullStream(ctx, emsclient.PullStreamParams{LocalStreamName: "a"})
			return err
		}, "uri is required"},
		{"push without local name", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.PushStream(ctx, emsclient.PushStreamParams{URI: "rtmp://h/l"})
			return err
		}, "localStreamName is required"},
		{"record bad type", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.Record(ctx, emsclient.RecordParams{LocalStreamName: "a", PathToFile: "/x", Type: "avi"})
			return err
		}, "not mp4, ts or flv"},
		{"hls without group", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.CreateHLSStream(ctx, emsclient.HLSParams{LocalStreamNames: []string{"a"}, TargetFolder: "/w"})
			return err
		}, "groupName is required"},
		{"hls bandwidths count", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.CreateHLSStream(ctx, emsclient.HLSParams{LocalStreamNames: []string{"a", "b"}, TargetFolder: "/w", GroupName: "g", Bandwidths: []uint64{1}})
			return err
		}, "bandwidths has 1 values for 2 streams"},
		{"dash without streams", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.CreateDASHStream(ctx, emsclient.DASHParams{TargetFolder: "/w", GroupName: "g"})
			return err
		}, "at least one name"},
		{"shutdown with both", func(ctx context.Context, c *emsclient.Client) error {
			return c.ShutdownStream(ctx, emsclient.ShutdownParams{ID: 1, LocalStreamName: "a"})
		}, "not both"},
		{"shutdown with neither", func(ctx context.Context, c *emsclient.Client) error {
			return c.ShutdownStream(ctx, emsclient.ShutdownParams{})
		}, "id or localStreamName is required"},
		{"removeConfig with neither", func(ctx context.Context, c *emsclient.Client) error {
			return c.RemoveConfig(ctx, emsclient.RemoveConfigParams{RemoveHLSHDSFiles: true})
		}, "id or groupName is required"},
		{"getStreamInfo with neither", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.GetStreamInfo(ctx, emsclient.StreamRef{})
			return err
		}, "required"},
		{"timer out of range", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.SetTimer(ctx, emsclient.TimerParams{Value: "86400"})
			return err
		}, "between 1 and 86399"},
		{"timer garbage", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.SetTimer(ctx, emsclient.TimerParams{Value: "hourly"})
			return err
		}, "is not seconds"},
		{"removeTimer zero", func(ctx context.Context, c *emsclient.Client) error {
			return c.RemoveTimer(ctx, 0)
		}, "timer id is required"},
		{"control character", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.PullStream(ctx, emsclient.PullStreamParams{URI: "rtmp://h/l\nx"})
			return err
		}, "control character"},
		{"bad command name", func(ctx context.Context, c *emsclient.Client) error {
			_, err := c.Call(ctx, "../version", nil)
			return err
		}, "letter or digit"},
		{"too long", func(ctx context.Context, c *emsclient.Client) error {
			var ps emsclient.Params
			ps.Add("uri", strings.Repeat("x", 17000))
			_, err := c.Call(ctx, "pullStream", ps)
			return err
		}, "at most 16384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := emstest.NewServer(t)
			err := tt.call(t.Context(), srv.Client())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if !plugins.IsPermanent(err) {
				t.Errorf("invalid arguments must be permanent: %v", err)
			}
			if n := len(srv.Calls()); n != 0 {
				t.Errorf("%d calls were sent, want none", n)
			}
		})
	}
}

func TestTypedResults(t *testing.T) {
	srv := emstest.NewServer(t)
	c := srv.Client()
	ctx := t.Context()

	pull, err := c.PullStream(ctx, emsclient.PullStreamParams{URI: "rtmp://src/live/cam1", LocalStreamName: "cam1", UserVars: map[string]string{"_by": "emsflow"}})
	if err != nil {
		t.Fatal(err)
	}
	if pull.ConfigID == 0 || pull.LocalStreamName != "cam1" {
		t.Errorf("pull = %+v, want a configId and cam1", pull)
	}
	rec, err := c.Record(ctx, emsclient.RecordParams{LocalStreamName: "cam1", PathToFile: "/media/cam1"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.ConfigID == pull.ConfigID {
		t.Errorf("record configId %d repeats the pull's", rec.ConfigID)
	}
	if p, _ := rec.Data.String("computedPathToFile"); p != "/media/cam1.mp4" {
		t.Errorf("computedPathToFile = %q", p)
	}
	hls, err := c.CreateHLSStream(ctx, emsclient.HLSParams{LocalStreamNames: []string{"cam1", "cam2"}, TargetFolder: "/w", GroupName: "g1"})
	if err != nil {
		t.Fatal(err)
	}
	if hls.GroupName != "g1" || len(hls.ConfigIDs) != 2 {
		t.Errorf("hls = %+v, want group g1 with 2 configIds", hls)
	}

	cfg, err := c.ListConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pull) != 1 || len(cfg.Record) != 1 || len(cfg.HLS) != 2 || len(cfg.All()) != 4 {
		t.Fatalf("listConfig = pull %d record %d hls %d all %d", len(cfg.Pull), len(cfg.Record), len(cfg.HLS), len(cfg.All()))
	}
	if id, _ := cfg.Pull[0].Uint64("configId"); id != pull.ConfigID {
		t.Errorf("listed pull configId = %d, want %d", id, pull.ConfigID)
	}
	if v, _ := cfg.Pull[0].String("_by"); v != "emsflow" {
		t.Errorf("user variable not echoed: %v", cfg.Pull[0])
	}
	if st, ok := emsclient.ConfigStatus(cfg.Pull[0]); !ok || st != emsclient.StatusStreaming || st.String() != "Streaming" {
		t.Errorf("ConfigStatus = %v, %v", st, ok)
	}
	if err := c.RemoveConfig(ctx, emsclient.RemoveConfigParams{GroupName: "g1"}); err != nil {
		t.Fatal(err)
	}
	if cfg, err = c.ListConfig(ctx); err != nil || len(cfg.HLS) != 0 || len(cfg.Pull) != 1 {
		t.Errorf("after removeConfig groupName=g1: %v, hls %d pull %d", err, len(cfg.HLS), len(cfg.Pull))
	}

	id, err := c.SetTimer(ctx, emsclient.TimerParams{Value: emsclient.TimerEvery(time.Hour), UserVars: map[string]string{"_uniqueId": "12"}})
	if err != nil || id == 0 {
		t.Fatalf("SetTimer = %d, %v", id, err)
	}
	timers, err := c.ListTimers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []emsclient.Timer{{ID: id, Value: "3600", UserVars: map[string]string{"_uniqueId": "12"}}}
	if !reflect.DeepEqual(timers, want) {
		t.Errorf("ListTimers = %+v, want %+v", timers, want)
	}
	if err := c.RemoveTimer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if timers, err := c.ListTimers(ctx); err != nil || len(timers) != 0 {
		t.Errorf("after RemoveTimer: %+v, %v", timers, err)
	}

	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rel, _ := v.String("releaseNumber"); rel != "1.7.1" {
		t.Errorf("version = %v", v)
	}
	info, err := c.GetStreamInfo(ctx, emsclient.StreamRef{ID: 9})
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := info.UniqueID(); id != 9 {
		t.Errorf("getStreamInfo uniqueId = %d, want 9", id)
	}
}

func TestListsAcceptBothShapes(t *testing.T) {
	const big = "18446744073709551615"
	stream := `{"name":"cam1","uniqueId":` + big + `,"typeNumeric":5282249572905648128}`
	tests := []struct {
		name    string
		streams string
		ids     string
		config  string
		timers  string
		want    int
	}{
		{"plain", `[` + stream + `]`, `[` + big + `]`, `{"pull":[{"configId":3,"status":{"current":{"code":5}}}],"record":[]}`,
			`[{"timerId":8,"triggerCount":2,"value":10,"_uniqueId":"7"}]`, 1},
		{"data.data", `{"data":[` + stream + `]}`, `{"data":[` + big + `]}`, `{"data":{"pull":[{"configId":3,"status":{"current":{"code":5}}}]}}`,
			`{"data":[{"timerId":8,"triggerCount":2,"value":10,"_uniqueId":"7"}]}`, 1},
		{"null", `null`, `null`, `null`, `null`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := emstest.NewServer(t)
			answer := func(data string) emstest.HandlerFunc {
				return func(emsclient.Params) (int, any) {
					return 200, `{"data":` + data + `,"description":"x","status":"SUCCESS"}`
				}
			}
			srv.Handle("listStreams", answer(tt.streams))
			srv.Handle("LISTSTREAMSIDS", answer(tt.ids)) // command matching is case-insensitive
			srv.Handle("listConfig", answer(tt.config))
			srv.Handle("listTimers", answer(tt.timers))
			c := srv.Client()

			streams, err := c.ListStreams(t.Context())
			if err != nil || len(streams) != tt.want {
				t.Fatalf("ListStreams = %v, %v; want %d", streams, err, tt.want)
			}
			ids, err := c.ListStreamsIDs(t.Context())
			if err != nil || len(ids) != tt.want {
				t.Fatalf("ListStreamsIDs = %v, %v", ids, err)
			}
			cfg, err := c.ListConfig(t.Context())
			if err != nil || len(cfg.Pull) != tt.want {
				t.Fatalf("ListConfig = %+v, %v", cfg, err)
			}
			timers, err := c.ListTimers(t.Context())
			if err != nil || len(timers) != tt.want {
				t.Fatalf("ListTimers = %+v, %v", timers, err)
			}
			if tt.want == 0 {
				return
			}
			if id, _ := streams[0].UniqueID(); id != 18446744073709551615 {
				t.Errorf("stream uniqueId = %d", id)
			}
			if ids[0] != 18446744073709551615 {
				t.Errorf("stream id = %d", ids[0])
			}
			if st, ok := emsclient.ConfigStatus(cfg.Pull[0]); !ok || st != emsclient.StatusConnectionFailed {
				t.Errorf("ConfigStatus = %v, %v", st, ok)
			}
			want := emsclient.Timer{ID: 8, TriggerCount: 2, Value: "10", UserVars: map[string]string{"_uniqueId": "7"}}
			if !reflect.DeepEqual(timers[0], want) {
				t.Errorf("timer = %+v, want %+v", timers[0], want)
			}
		})
	}
}

func TestListWithUnexpectedShapeIsRetryable(t *testing.T) {
	srv := emstest.NewServer(t)
	srv.Handle("listStreamsIds", func(emsclient.Params) (int, any) {
		return 200, emstest.Success("x", map[string]any{"streams": "none"})
	})
	_, err := srv.Client().ListStreamsIDs(t.Context())
	var e *emsclient.Error
	if !errors.As(err, &e) || e.Permanent() {
		t.Fatalf("err = %v, want a retryable *emsclient.Error", err)
	}
}

// A command that changed something must not fail on an answer it cannot read: a retry would
// repeat the change.
func TestMutatingCommandToleratesOddData(t *testing.T) {
	srv := emstest.NewServer(t)
	srv.Handle("pullStream", func(emsclient.Params) (int, any) {
		return 200, emstest.Success("queued", []any{1, 2})
	})
	sc, err := srv.Client().PullStream(t.Context(), emsclient.PullStreamParams{URI: "rtmp://h/l"})
	if err != nil {
		t.Fatalf("PullStream: %v", err)
	}
	if sc.ConfigID != 0 {
		t.Errorf("ConfigID = %d, want 0 when EMS did not say", sc.ConfigID)
	}
}

func assertNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, bad := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), "s3cr3t"} {
		if strings.Contains(s, bad) {
			t.Errorf("%q contains the password", s)
		}
	}
}
