package sinks

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins/sinks/internal/smtptest"
)

// verifyFlussonic checks X-Signature as a receiver following Flussonic's documentation would:
// SHA1 over the body with the key appended, in hex.
func verifyFlussonic(body []byte, key, header string) bool {
	sum := sha1.Sum(append(append([]byte{}, body...), key...))
	want := hex.EncodeToString(sum[:])
	return hmac.Equal([]byte(want), []byte(strings.ToLower(header)))
}

// verifyStandardWebhooks checks a request as the Standard Webhooks specification describes:
// HMAC-SHA256 with the base64-decoded whsec_ secret over "id.timestamp.body", compared with
// each space-separated "v1,<base64>" signature.
func verifyStandardWebhooks(secret string, h http.Header, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if id == "" || ts == "" {
		return fmt.Errorf("missing webhook-id or webhook-timestamp")
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return fmt.Errorf("webhook-timestamp %q: %v", ts, err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		v, b64, ok := strings.Cut(sig, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no webhook-signature verifies")
}

func TestSignatures(t *testing.T) {
	const whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	tests := []struct {
		name   string
		sign   string
		verify func(t *testing.T, q request) error
	}{
		{"flussonic sha1", `"sign_key":"s3cret-key"`, func(t *testing.T, q request) error {
			if !verifyFlussonic(q.body, "s3cret-key", q.header.Get("X-Signature")) {
				return fmt.Errorf("X-Signature %q does not verify", q.header.Get("X-Signature"))
			}
			if !verifyFlussonic(q.body, "s3cret-key", q.header.Get("X-Signature")) || verifyFlussonic(q.body, "other", q.header.Get("X-Signature")) {
				return fmt.Errorf("X-Signature verifies under the wrong key")
			}
			return nil
		}},
		{"standard webhooks", `"sign_key":"` + whsec + `","signature":"standard-webhooks"`, func(t *testing.T, q request) error {
			if err := verifyStandardWebhooks(whsec, q.header, q.body); err != nil {
				return err
			}
			if verifyStandardWebhooks("whsec_"+base64.StdEncoding.EncodeToString([]byte("wrong")), q.header, q.body) == nil {
				return fmt.Errorf("signature verifies under the wrong key")
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t)
			rcv.status.Store(http.StatusServiceUnavailable)
			h := newHarness(t)
			s := h.start(t, `{"sinks":[{"name":"ops","url":"`+rcv.srv.URL+`/hook",`+tt.sign+`,"resend_delay":"1ms","resend_max_delay":"2ms"}]}`)
			handle(t, s, closedEvent(t, 1, "cam1"), closedEvent(t, 2, "cam2"))
			eventually(t, "a failed attempt", func() bool { return len(rcv.requests()) >= 1 })
			rcv.status.Store(http.StatusOK)
			eventually(t, "both events", func() bool { return len(rcv.acceptedIDs(t)) == 2 })
			reqs := rcv.requests()
			for i, q := range reqs {
				if err := tt.verify(t, q); err != nil {
					t.Errorf("request %d: %v", i, err)
				}
				if tampered := append(slices.Clone(q.body), ' '); tt.verify(t, request{header: q.header, body: tampered}) == nil {
					t.Errorf("request %d: signature verifies a tampered body", i)
				}
			}
			// A retried batch keeps its webhook-id, so receivers can drop the duplicate.
			if strings.Contains(tt.sign, "standard") {
				failed := reqs[0]
				i := slices.IndexFunc(reqs, func(q request) bool { return q.status == http.StatusOK })
				if id := failed.header.Get("webhook-id"); id == "" || id != reqs[i].header.Get("webhook-id") || string(failed.body) != string(reqs[i].body) {
					t.Errorf("retry of a batch: got webhook-id %q and body %s, then %q and %s; want the same", id, failed.body, reqs[i].header.Get("webhook-id"), reqs[i].body)
				}
			}
		})
	}
}

func TestOrderAndBatchSize(t *testing.T) {
	rcv := newReceiver(t)
	h := newHarness(t)
	s := h.start(t, `{"sinks":[{"name":"ops","url":"`+rcv.srv.URL+`","batch_size":7}]}`)
	const n = 500
	for i := 1; i <= n; i++ {
		handle(t, s, closedEvent(t, i, "cam"))
	}
	eventually(t, "every event", func() bool { return len(rcv.acceptedIDs(t)) >= n })
	if got := rcv.acceptedIDs(t); !slices.Equal(got, seq(1, n)) {
		t.Errorf("receiver saw ids %v..., want 1..%d strictly increasing without duplicates", got[:min(len(got), 20)], n)
	}
	for i, b := range rcv.accepted(t) {
		if len(b) == 0 || len(b) > 7 {
			t.Errorf("batch %d has %d events, want 1..7", i, len(b))
		}
		for _, it := range b {
			if it.EMS != "edge1" || it.Type != "inStreamClosed" || it.Payload["name"] != "cam" {
				t.Fatalf("batch %d item %+v: want ems edge1, type inStreamClosed, payload name cam", i, it)
			}
		}
	}
	if got := h.metric(t, s.m.deliveredEvents, "ops"); got != n {
		t.Errorf("delivered events metric: got %v, want %d", got, n)
	}
}

// TestThrottleAndRestart checks the throttle by counts: with a batch size of 5 and a throttle
// that never expires within the test, 12 events give exactly two full batches and leave 2
// queued. Those survive a restart and are sent by the next instance.
func TestThrottleAndRestart(t *testing.T) {
	rcv := newReceiver(t)
	h := newHarness(t)
	s := h.build(t, `{"sinks":[{"name":"ops","url":"`+rcv.srv.URL+`","batch_size":5,"throttle_delay":"1h"}]}`)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 12; i++ {
		handle(t, s, closedEvent(t, i, "cam"))
	}
	eventually(t, "two full batches", func() bool { return len(rcv.accepted(t)) == 2 })
	eventually(t, "queue depth 2", func() bool { return s.sinks[0].q.depth() == 2 })
	h.close(t, s)
	for i, b := range rcv.accepted(t) {
		if len(b) != 5 {
			t.Errorf("batch %d: got %d events, want 5 (throttle not respected)", i, len(b))
		}
	}
	if got := len(rcv.accepted(t)); got != 2 {
		t.Fatalf("before restart: got %d batches, want 2", got)
	}

	s2 := h.start(t, `{"sinks":[{"name":"ops","url":"`+rcv.srv.URL+`","batch_size":5}]}`)
	eventually(t, "the rest after restart", func() bool { return len(rcv.acceptedIDs(t)) == 12 })
	if got := rcv.acceptedIDs(t); !slices.Equal(got, seq(1, 12)) {
		t.Errorf("ids: got %v, want 1..12", got)
	}
	eventually(t, "queue depth 0", func() bool { return s2.sinks[0].q.depth() == 0 })
}

func TestReceiverDown(t *testing.T) {
	tests := []struct {
		name string
		down func(t *testing.T, rcv *receiver) (up func())
	}{
		{"503", func(t *testing.T, rcv *receiver) func() {
			rcv.status.Store(http.StatusServiceUnavailable)
			return func() { rcv.status.Store(http.StatusOK) }
		}},
		{"listener closed", func(t *testing.T, rcv *receiver) func() {
			addr := rcv.srv.Listener.Addr().String()
			rcv.srv.Close()
			return func() {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(rcv.serve))
				srv.Listener.Close()
				srv.Listener = listenAt(t, addr)
				srv.Start()
				t.Cleanup(srv.Close)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t)
			h := newHarness(t)
			url := rcv.srv.URL
			up := tt.down(t, rcv)
			s := h.start(t, `{"sinks":[{"name":"ops","url":"`+url+`","batch_size":4,"resend_delay":"1ms","resend_max_delay":"3ms"}]}`)
			for i := 1; i <= 10; i++ {
				handle(t, s, closedEvent(t, i, "cam"))
			}
			eventually(t, "some failed attempts", func() bool { return h.metric(t, s.m.failures, "ops") >= 3 })
			if got := len(rcv.acceptedIDs(t)); got != 0 {
				t.Fatalf("receiver accepted %d events while down", got)
			}
			up()
			eventually(t, "all events after the receiver returns", func() bool { return len(rcv.acceptedIDs(t)) >= 10 })
			if got := rcv.acceptedIDs(t); !slices.Equal(got, seq(1, 10)) {
				t.Errorf("ids: got %v, want 1..10 once each, in order", got)
			}
			if got := h.metric(t, s.m.deadLettered, "ops"); got != 0 {
				t.Errorf("dead-lettered: got %v, want 0", got)
			}
		})
	}
}

func TestRestartWhileDown(t *testing.T) {
	rcv := newReceiver(t)
	rcv.status.Store(http.StatusBadGateway)
	h := newHarness(t)
	params := `{"sinks":[{"name":"ops","url":"` + rcv.srv.URL + `","resend_delay":"1ms","resend_max_delay":"2ms"}]}`
	s := h.build(t, params)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs := []*event.Event{closedEvent(t, 1, "a"), closedEvent(t, 2, "b"), closedEvent(t, 3, "c")}
	handle(t, s, evs...)
	eventually(t, "a failed attempt", func() bool { return len(rcv.requests()) > 0 })
	h.close(t, s)

	rcv.status.Store(http.StatusOK)
	s2 := h.build(t, params)
	if d := s2.sinks[0]; d.q != nil {
		t.Fatal("queue opened before Start")
	}
	if err := s2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.close(t, s2) })
	// The dispatcher may hand over an event again after a restart; it is not queued twice.
	handle(t, s2, evs[2])
	eventually(t, "queued events after restart", func() bool { return len(rcv.acceptedIDs(t)) >= 3 })
	handle(t, s2, closedEvent(t, 4, "d"))
	eventually(t, "a new event", func() bool { return len(rcv.acceptedIDs(t)) >= 4 })
	if got := rcv.acceptedIDs(t); !slices.Equal(got, seq(1, 4)) {
		t.Errorf("ids: got %v, want 1..4 once each", got)
	}
	if got := h.metric(t, s2.m.duplicates, "ops"); got != 1 {
		t.Errorf("duplicates metric: got %v, want 1", got)
	}
}

func TestDeadLetter(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		extra      string
		advance    bool // move the clock past resend_timeout
		wantTries  int
		wantReason string
	}{
		{"resend_limit", http.StatusServiceUnavailable, `"resend_limit":3`, false, 3, "503"},
		{"permanent 4xx", http.StatusBadRequest, `"resend_limit":10`, false, 1, "400"},
		{"resend_timeout", http.StatusInternalServerError, `"resend_timeout":"10m"`, true, 0, "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t)
			rcv.status.Store(int32(tt.status))
			h := newHarness(t)
			clock := newFakeClock()
			h.now = clock.Now
			s := h.start(t, `{"sinks":[{"name":"ops","url":"`+rcv.srv.URL+`","batch_size":2,"throttle_delay":"1h","resend_delay":"1ms","resend_max_delay":"1ms",`+tt.extra+`}]}`)
			handle(t, s, closedEvent(t, 1, "a"), closedEvent(t, 2, "b"))
			if tt.advance {
				eventually(t, "retries", func() bool { return h.metric(t, s.m.failures, "ops") >= 2 })
				if got := h.metric(t, s.m.deadLettered, "ops"); got != 0 {
					t.Fatalf("dead-lettered before resend_timeout: %v", got)
				}
				clock.Advance(11 * time.Minute)
			}
			eventually(t, "dead letters", func() bool { return h.metric(t, s.m.deadLettered, "ops") == 2 })
			if tt.wantTries > 0 {
				// One batch of both events, tried this often.
				if got := len(rcv.requests()); got != tt.wantTries {
					t.Errorf("attempts: got %d, want %d", got, tt.wantTries)
				}
			}
			b, err := os.ReadFile(filepath.Join(h.dir, "ops", "dead-letter.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 2 || !strings.Contains(lines[0], `"id":1`) || !strings.Contains(lines[1], `"id":2`) || !strings.Contains(lines[0], tt.wantReason) {
				t.Errorf("dead-letter file: got %s, want two lines for ids 1 and 2 naming %s", b, tt.wantReason)
			}
			// The sink carries on with later events.
			rcv.status.Store(http.StatusOK)
			handle(t, s, closedEvent(t, 3, "c"), closedEvent(t, 4, "d"))
			eventually(t, "later events", func() bool { return slices.Equal(rcv.acceptedIDs(t), []int{3, 4}) })
			eventually(t, "queue depth 0", func() bool { return s.sinks[0].q.depth() == 0 })
		})
	}
}

// TestHTTPSCAFile posts to an HTTPS receiver whose certificate comes from a private CA: the sink
// given that CA's file delivers, and the sink of the same instance without it keeps its events
// queued, retrying, and logs why.
func TestHTTPSCAFile(t *testing.T) {
	ca := smtptest.NewCA(t)
	rcv := newReceiverTLS(t, ca.ServerConfig(t))
	h := newHarness(t)
	ca.WriteFile(t, filepath.Join(h.dir, "private-ca.pem"))
	s := h.start(t, `{"sinks":[
		{"name":"trusting","url":"`+rcv.srv.URL+`/a","ca_file":"private-ca.pem","resend_delay":"1ms","resend_max_delay":"2ms"},
		{"name":"default","url":"`+rcv.srv.URL+`/b","resend_delay":"1ms","resend_max_delay":"2ms"}]}`)
	for i := 1; i <= 3; i++ {
		handle(t, s, closedEvent(t, i, "cam"))
	}
	eventually(t, "the sink with ca_file delivers", func() bool { return len(rcv.acceptedIDs(t)) == 3 })
	eventually(t, "the sink without it retries", func() bool { return h.metric(t, s.m.failures, "default") >= 2 })
	if got := rcv.acceptedIDs(t); !slices.Equal(got, seq(1, 3)) {
		t.Errorf("ids: got %v, want 1..3 once each", got)
	}
	if d := s.sinks[1].q.depth(); d != 3 {
		t.Errorf("queue depth of the sink without ca_file: got %d, want 3", d)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "certificate signed by unknown authority") {
		t.Errorf("logs do not say why the sink without ca_file fails:\n%s", logs)
	}
}
