package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/sinks/internal/smtptest"
)

func TestFiltersPerSink(t *testing.T) {
	closedRcv, camRcv := newReceiver(t), newReceiver(t)
	h := newHarness(t)
	s := h.start(t, `{"sinks":[
		{"name":"closures","url":"`+closedRcv.srv.URL+`","only":["type=inStreamClosed"],"except":[{"name":"test*"}]},
		{"name":"cams","url":"`+camRcv.srv.URL+`","only":"name=cam1,cam2 ems=edge*"}]}`)
	created := mustEvent(t, "edge1", `{"id":100,"type":"inStreamCreated","payload":{"name":"cam1"}}`)
	handle(t, s, closedEvent(t, 1, "cam1"), closedEvent(t, 2, "test-pattern"), created, closedEvent(t, 3, "cam3"))
	eventually(t, "closures", func() bool { return len(closedRcv.acceptedIDs(t)) >= 2 })
	eventually(t, "cams", func() bool { return len(camRcv.acceptedIDs(t)) >= 2 })
	// A later event that both sinks take proves nothing else was on the way.
	handle(t, s, closedEvent(t, 4, "cam2"))
	eventually(t, "the marker event", func() bool {
		return slices.Contains(closedRcv.acceptedIDs(t), 4) && slices.Contains(camRcv.acceptedIDs(t), 4)
	})
	if got, want := closedRcv.acceptedIDs(t), []int{1, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("closures sink: got ids %v, want %v", got, want)
	}
	if got, want := camRcv.acceptedIDs(t), []int{1, 100, 4}; !slices.Equal(got, want) {
		t.Errorf("cams sink: got ids %v, want %v", got, want)
	}
}

// TestSlowSinkDoesNotBlock holds one receiver's answer until the test ends: Handle still returns
// for every event, and the other sink delivers them all meanwhile.
func TestSlowSinkDoesNotBlock(t *testing.T) {
	slow, fast := newReceiver(t), newReceiver(t)
	slow.block = make(chan struct{})
	h := newHarness(t)
	s := h.start(t, `{"sinks":[{"name":"slow","url":"`+slow.srv.URL+`","timeout":"1h"},{"name":"fast","url":"`+fast.srv.URL+`"}]}`)
	// Unblock before the harness closes the plugin and before the receiver closes (cleanups run
	// last-registered first).
	t.Cleanup(func() { close(slow.block) })
	handle(t, s, closedEvent(t, 1, "a"))
	eventually(t, "the slow receiver to hold a request", func() bool { return slow.inflight.Load() == 1 })
	for i := 2; i <= 20; i++ {
		handle(t, s, closedEvent(t, i, "a"))
	}
	eventually(t, "the fast sink to deliver everything", func() bool { return len(fast.acceptedIDs(t)) == 20 })
	if n := slow.inflight.Load(); n != 1 || len(slow.requests()) != 0 {
		t.Errorf("slow receiver: %d in flight and %d answered, want 1 and 0", n, len(slow.requests()))
	}
	if d := s.sinks[0].q.depth(); d != 20 {
		t.Errorf("slow sink queue depth: got %d, want 20", d)
	}
}

func TestFileSinkRotation(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock()
	h.now = clock.Now
	// Each line is about 140 bytes, so 600 bytes hold 4 lines.
	s := h.start(t, `{"sinks":[{"name":"log","url":"events/sink.jsonl","max_bytes":600,"rotate_every":"1h"}]}`)
	path := filepath.Join(h.dir, "events", "sink.jsonl")
	for i := 1; i <= 10; i++ {
		handle(t, s, closedEvent(t, i, "cam"))
	}
	eventually(t, "ten lines written", func() bool { return len(readLines(t, filepath.Dir(path))) == 10 })
	files := rotated(t, filepath.Dir(path))
	if len(files) < 2 {
		t.Errorf("size rotation: got files %v, want the current file and rotated ones", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() > 600 {
			t.Errorf("file %s: size %d, want at most max_bytes 600", f, fi.Size())
		}
	}
	before := len(files)
	// A write in a later hour starts a new file even though the current one has room.
	clock.Advance(time.Hour)
	handle(t, s, closedEvent(t, 11, "cam"))
	eventually(t, "the eleventh line", func() bool { return len(readLines(t, filepath.Dir(path))) == 11 })
	if got := rotated(t, filepath.Dir(path)); len(got) != before+1 {
		t.Errorf("time rotation: got %d files, want %d", len(got), before+1)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(cur), "\n"); n != 1 || !strings.Contains(string(cur), `"id":11`) {
		t.Errorf("current file after time rotation: got %q, want only event 11", cur)
	}
	var ids []int
	for _, l := range readLines(t, filepath.Dir(path)) {
		var it item
		if err := json.Unmarshal([]byte(l), &it); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		ids = append(ids, it.ID)
	}
	if !slices.Equal(ids, seq(1, 11)) {
		t.Errorf("lines across files: got ids %v, want 1..11", ids)
	}
}

// rotated lists the sink's files, oldest first (rotated names sort by time; the current file,
// without a stamp, is last).
func rotated(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the sink makes its folder with its first delivery, in the background
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != "sink.jsonl" {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	if _, err := os.Stat(filepath.Join(dir, "sink.jsonl")); err == nil {
		out = append(out, filepath.Join(dir, "sink.jsonl"))
	}
	return out
}

func readLines(t *testing.T, dir string) []string {
	t.Helper()
	var lines []string
	for _, f := range rotated(t, dir) {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			// Renamed by a rotation between the listing and now: count nothing rather than
			// fail; the callers poll until the count is right.
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

func TestEmailDigest(t *testing.T) {
	srv := smtptest.New(t)
	h := newHarness(t)
	clock := newFakeClock()
	h.now = clock.Now
	s := h.start(t, `{"sinks":[{"name":"noc","url":"smtp://alerts:pa55word@`+srv.Addr+`","from":"emsflow@example.com",
		"to":["noc@example.com","oncall@example.com"],"subject":"source lost","digest_interval":"5m","only":"type=inStreamClosed",
		"resend_delay":"1ms","resend_max_delay":"2ms"}]}`)
	for i := 1; i <= 20; i++ {
		handle(t, s, closedEvent(t, i, fmt.Sprintf("cam%02d", i)))
		clock.Advance(time.Second)
	}
	handle(t, s, mustEvent(t, "edge1", `{"id":99,"type":"inStreamCreated","payload":{"name":"not-listed"}}`))
	clock.Advance(5 * time.Minute)
	eventually(t, "one digest", func() bool { return len(srv.Messages()) >= 1 })
	// An event after the digest waits for the next interval.
	handle(t, s, closedEvent(t, 21, "cam21"))
	eventually(t, "the digest to be committed", func() bool { return s.sinks[0].q.depth() == 1 })
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d emails for a burst within one interval, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "emsflow@example.com" || !slices.Equal(m.To, []string{"noc@example.com", "oncall@example.com"}) || m.Auth != "alerts:pa55word" {
		t.Errorf("envelope: got from %q to %v auth %q", m.From, m.To, m.Auth)
	}
	if !strings.Contains(m.Data, "Subject: source lost: 20 events\r\n") {
		t.Errorf("subject missing in:\n%s", m.Data)
	}
	for i := 1; i <= 20; i++ {
		if !strings.Contains(m.Data, fmt.Sprintf("inStreamClosed  stream=cam%02d  ems=edge1\r\n", i)) {
			t.Errorf("digest lacks cam%02d:\n%s", i, m.Data)
		}
	}
	if strings.Contains(m.Data, "not-listed") || strings.Contains(m.Data, "cam21") {
		t.Errorf("digest lists events it should not:\n%s", m.Data)
	}
	clock.Advance(5 * time.Minute)
	eventually(t, "the second digest", func() bool { return len(srv.Messages()) == 2 })
	if second := srv.Messages()[1].Data; !strings.Contains(second, "stream=cam21") || strings.Contains(second, "stream=cam01") {
		t.Errorf("second digest: got\n%s\nwant only cam21", second)
	}
}

// TestEmailHelo: EHLO gives the configured name, or the machine's host name, never net/smtp's
// "localhost" (which servers that check the name refuse).
func TestEmailHelo(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	for _, tt := range []struct{ name, param, want string }{
		{"configured", `,"helo":"mx1.example.com"`, "mx1.example.com"},
		{"default", ``, host},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.New(t)
			h := newHarness(t)
			s := h.build(t, `{"sinks":[{"name":"noc","url":"smtp://`+srv.Addr+`","from":"a@example.com","to":"b@example.com"`+tt.param+`}]}`)
			if err := s.sinks[0].d.deliver(t.Context(), []record{{Seq: 1, Key: "k1", At: time.Now().UnixNano(), EMS: "edge1",
				Event: closedEvent(t, 1, "cam1").Raw}}); err != nil {
				t.Fatalf("deliver: %v", err)
			}
			srv.Close()
			var hellos []string
			for _, c := range srv.Commands() {
				if c.Verb == "EHLO" || c.Verb == "HELO" {
					hellos = append(hellos, c.Verb+" "+c.Hello)
				}
			}
			if !slices.Equal(hellos, []string{"EHLO " + tt.want}) {
				t.Errorf("greetings %q, want [EHLO %s]", hellos, tt.want)
			}
		})
	}
}

func TestEmailRetriesThenDelivers(t *testing.T) {
	srv := smtptest.New(t)
	srv.RejectData(451)
	h := newHarness(t)
	s := h.start(t, `{"sinks":[{"name":"noc","url":"smtp://`+srv.Addr+`","from":"a@example.com","to":"b@example.com",
		"digest_interval":"1ms","resend_delay":"1ms","resend_max_delay":"2ms"}]}`)
	handle(t, s, closedEvent(t, 1, "cam1"))
	eventually(t, "failed attempts", func() bool { return h.metric(t, s.m.failures, "noc") >= 2 })
	srv.RejectData(0)
	eventually(t, "the email", func() bool { return len(srv.Messages()) == 1 })
	if h.metric(t, s.m.deadLettered, "noc") != 0 {
		t.Error("a 4xx SMTP reply dead-lettered the digest")
	}
}

func TestEvents(t *testing.T) {
	tests := []struct {
		name, sinks string
		want        []string
	}{
		{"exact types", `[{"name":"a","url":"http://127.0.0.1:1","only":["type=inStreamClosed"]},{"name":"b","url":"x.jsonl","only":["type=inStreamCreated,inStreamClosed name=x"]}]`,
			[]string{event.InStreamClosed, event.InStreamCreated}},
		{"one sink takes all", `[{"name":"a","url":"http://127.0.0.1:1","only":["type=inStreamClosed"]},{"name":"b","url":"x.jsonl"}]`, event.Known},
		{"glob type", `[{"name":"a","url":"http://127.0.0.1:1","only":["type=hls*"]}]`, event.Known},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			got := h.build(t, `{"sinks":`+tt.sinks+`}`).Events()
			if !slices.Equal(got, tt.want) {
				t.Errorf("Events: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("-----BEGIN NOTHING-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, params, want string
	}{
		{"no sinks", `{"sinks":[]}`, "at least one sink"},
		{"unknown top key", `{"sink":[]}`, `unknown parameter "sink"`},
		{"unknown sink key", `{"sinks":[{"name":"a","url":"http://h","sign":"x"}]}`, `unknown field "sign"`},
		{"bad name", `{"sinks":[{"name":"../a","url":"http://h"}]}`, "name"},
		{"duplicate name", `{"sinks":[{"name":"a","url":"http://h"},{"name":"a","url":"x.jsonl"}]}`, "used twice"},
		{"no url", `{"sinks":[{"name":"a"}]}`, "url is required"},
		{"bad filter", `{"sinks":[{"name":"a","url":"http://h","only":["type="]}]}`, "empty value"},
		{"bad signature", `{"sinks":[{"name":"a","url":"http://h","sign_key":"k","signature":"md5"}]}`, "signature"},
		{"whsec prefix", `{"sinks":[{"name":"a","url":"http://h","sign_key":"k","signature":"standard-webhooks"}]}`, "whsec_"},
		{"sign_key on file", `{"sinks":[{"name":"a","url":"x.jsonl","sign_key":"k"}]}`, "sign_key applies to http sinks"},
		{"email needs to", `{"sinks":[{"name":"a","url":"smtp://127.0.0.1:25","from":"a@b.c"}]}`, "recipient"},
		{"email bad from", `{"sinks":[{"name":"a","url":"smtp://127.0.0.1:25","from":"nope","to":["a@b.c"]}]}`, "from"},
		{"email credentials in clear", `{"sinks":[{"name":"a","url":"smtp://u:p@mail.example.com:587","from":"a@b.c","to":["a@b.c"]}]}`,
			"sent only over TLS"},
		{"email user in clear", `{"sinks":[{"name":"a","url":"smtp://u@mail.example.com","starttls":false,"from":"a@b.c","to":["a@b.c"]}]}`,
			"sent only over TLS"},
		{"email helo with a space", `{"sinks":[{"name":"a","url":"smtp://127.0.0.1:25","from":"a@b.c","to":["a@b.c"],"helo":"mx 1"}]}`,
			`helo "mx 1" must be a host name`},
		{"helo on http", `{"sinks":[{"name":"a","url":"http://h","helo":"mx1.example.com"}]}`, "helo applies to email sinks"},
		{"throttle on email", `{"sinks":[{"name":"a","url":"smtp://127.0.0.1:25","from":"a@b.c","to":["a@b.c"],"throttle_delay":"1s"}]}`, "digest_interval"},
		{"batch size", `{"sinks":[{"name":"a","url":"http://h","batch_size":0}]}`, "batch_size"},
		{"negative limit", `{"sinks":[{"name":"a","url":"http://h","resend_limit":-1}]}`, "resend_limit"},
		{"unsupported scheme", `{"sinks":[{"name":"a","url":"ftp://h/x"}]}`, "scheme not supported"},
		{"file folder", `{"sinks":[{"name":"a","url":"logs/"}]}`, "must name a file"},
		{"bad duration", `{"sinks":[{"name":"a","url":"http://h","resend_timeout":"soon"}]}`, "not a duration"},
		{"ca_file on file", `{"sinks":[{"name":"a","url":"x.jsonl","ca_file":"ca.pem"}]}`, "ca_file applies to sinks that use TLS only"},
		{"ca_file on http://", `{"sinks":[{"name":"a","url":"http://h","ca_file":"ca.pem"}]}`, "ca_file applies to sinks that use TLS only"},
		{"ca_file on smtp:// without starttls", `{"sinks":[{"name":"a","url":"smtp://127.0.0.1:25","from":"a@b.c","to":["a@b.c"],"ca_file":"ca.pem"}]}`,
			"ca_file applies to sinks that use TLS only"},
		{"ca_file missing", `{"sinks":[{"name":"a","url":"https://h","ca_file":"missing.pem"}]}`, "sink a: ca_file: open "},
		{"ca_file not PEM", `{"sinks":[{"name":"a","url":"smtps://127.0.0.1:465","from":"a@b.c","to":["a@b.c"],"ca_file":"` + notPEM + `"}]}`,
			"ca_file " + notPEM + ": no PEM certificate in it"},
		{"all problems", `{"sinks":[{"name":"a","url":"http://h","batch_size":0,"resend_limit":-1}]}`, "resend_limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Factory("sinks", json.RawMessage(tt.params), plugins.Deps{DataDir: t.TempDir(), ConfigDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Factory(%s): got error %v, want one containing %q", tt.params, err, tt.want)
			}
		})
	}
}

func TestINIFormSinksString(t *testing.T) {
	params := `{"sinks":"[{\"name\":\"a\",\"url\":\"events.jsonl\"}]"}`
	p, err := Factory("sinks", json.RawMessage(params), plugins.Deps{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Factory: %v", err)
	}
	if got := p.(*Sinks).sinks[0].cfg.Kind(); got != kindFile {
		t.Errorf("kind: got %s, want file", got)
	}
}

// TestSecretsNotPrinted checks the sign key, header values and the SMTP password stay out of
// printed configuration and of the logs of failing deliveries.
func TestSecretsNotPrinted(t *testing.T) {
	const signKey, token, password = "sign-key-XYZZY", "Bearer tok-PLUGH", "pw-FROTZ"
	rcv := newReceiver(t)
	rcv.status.Store(http.StatusBadRequest)
	h := newHarness(t)
	s := h.start(t, `{"sinks":[
		{"name":"h","url":"`+rcv.srv.URL+`","sign_key":"`+signKey+`","headers":{"authorization":"`+token+`"}},
		{"name":"m","url":"smtp://u:`+password+`@127.0.0.1:1","from":"a@b.c","to":["d@e.f"],"digest_interval":"1ms","resend_limit":1}]}`)
	handle(t, s, closedEvent(t, 1, "a"))
	eventually(t, "both sinks to give up", func() bool {
		return h.metric(t, s.m.deadLettered, "h") == 1 && h.metric(t, s.m.deadLettered, "m") == 1
	})
	if got := rcv.requests()[0].header.Get("Authorization"); got != token {
		t.Errorf("configured header: got %q, want it sent", got)
	}
	printed := fmt.Sprintf("%v %+v %#v", s.sinks[0].cfg, s.sinks[0].cfg, s.sinks[1].cfg)
	b, _ := json.Marshal(s.sinks[0].cfg)
	dl, _ := os.ReadFile(filepath.Join(h.dir, "m", "dead-letter.jsonl"))
	for _, out := range []string{printed, string(b), h.logs.String(), string(dl)} {
		for _, secret := range []string{signKey, token, password} {
			if strings.Contains(out, secret) {
				t.Errorf("secret %q printed in %s", secret, out)
			}
		}
	}
	if !strings.Contains(h.logs.String(), "dead-lettered") {
		t.Errorf("logs do not report the dead letters: %s", h.logs.String())
	}
}

// TestCloseAbandonsStuckDelivery closes the plugin while a receiver holds a request: Close
// returns once its context ends, and the batch is delivered by the next instance.
func TestCloseAbandonsStuckDelivery(t *testing.T) {
	rcv := newReceiver(t)
	rcv.block = make(chan struct{})
	h := newHarness(t)
	params := `{"sinks":[{"name":"ops","url":"` + rcv.srv.URL + `","timeout":"1h"}]}`
	s := h.build(t, params)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	handle(t, s, closedEvent(t, 1, "a"))
	eventually(t, "the request to be held", func() bool { return rcv.inflight.Load() == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Handle(t.Context(), closedEvent(t, 2, "b")); err == nil {
		t.Error("Handle after Close: got nil, want an error so the dispatcher keeps the event")
	}
	// The abandoned request is answered 503 so that only a new delivery counts as accepted.
	rcv.status.Store(http.StatusServiceUnavailable)
	close(rcv.block) // a closed channel no longer holds requests
	eventually(t, "the held request to end", func() bool { return rcv.inflight.Load() == 0 })
	rcv.status.Store(http.StatusOK)
	h.start(t, params)
	eventually(t, "the abandoned batch after restart", func() bool { return slices.Contains(rcv.acceptedIDs(t), 1) })
}
