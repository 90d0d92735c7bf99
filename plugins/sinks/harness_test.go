package sinks

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness builds plugin instances on one data folder and one metrics registry, so that a test
// can restart the plugin as emsflow would.
type harness struct {
	dir  string
	now  func() time.Time
	reg  *prometheus.Registry
	logs *syncBuffer
}

func newHarness(t *testing.T) *harness {
	return &harness{dir: t.TempDir(), now: time.Now, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
}

// start builds and starts an instance from JSON params; it is closed when the test ends
// unless the test closes it first.
func (h *harness) start(t *testing.T, params string) *Sinks {
	t.Helper()
	s := h.build(t, params)
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { h.close(t, s) })
	return s
}

func (h *harness) build(t *testing.T, params string) *Sinks {
	t.Helper()
	deps := plugins.Deps{
		Log: zerolog.New(h.logs), Now: h.now, Metrics: h.reg, DataDir: h.dir, ConfigDir: h.dir,
		HTTPClient: &http.Client{},
	}
	p, err := Factory("sinks", json.RawMessage(params), deps)
	if err != nil {
		t.Fatalf("build: %v", err) // not the parameters: they hold test credentials
	}
	s := p.(*Sinks)
	for _, k := range s.sinks {
		k.tick = 2 * time.Millisecond
	}
	return s
}

func (h *harness) close(t *testing.T, s *Sinks) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

func (h *harness) metric(t *testing.T, c *prometheus.CounterVec, sink string) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.WithLabelValues(sink).Write(&m); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	return m.GetCounter().GetValue()
}

// closedEvent is an inStreamClosed event with EMS's id n and stream name.
func closedEvent(t *testing.T, n int, name string) *event.Event {
	t.Helper()
	return mustEvent(t, "edge1", fmt.Sprintf(`{"id":%d,"processId":4242,"timestamp":%d,"type":"inStreamClosed","payload":{"name":%q,"type":"INR","uniqueId":%d}}`,
		n, 1772366400+n, name, n))
}

func mustEvent(t *testing.T, ems, raw string) *event.Event {
	t.Helper()
	ev, err := event.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	ev.EMS = ems
	return ev
}

func handle(t *testing.T, s *Sinks, evs ...*event.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := s.Handle(t.Context(), ev); err != nil {
			t.Fatalf("handle %s %d: %v", ev.Type, ev.ID, err)
		}
	}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// request is one POST the receiver saw.
type request struct {
	header http.Header
	body   []byte
	status int
}

// item is one forwarded event as a receiver decodes it.
type item struct {
	EMS     string         `json:"ems"`
	ID      int            `json:"id"`
	Type    string         `json:"type"`
	Payload map[string]any `json:"payload"`
}

// receiver is a real HTTP endpoint that records every POST and answers with a settable status.
type receiver struct {
	srv      *httptest.Server
	status   atomic.Int32
	block    chan struct{} // when not nil, requests wait for it to close
	inflight atomic.Int32

	mu   sync.Mutex
	reqs []request
}

func newReceiver(t *testing.T) *receiver { return newReceiverTLS(t, nil) }

// newReceiverTLS is a receiver that serves HTTPS with cfg's certificate, or plain HTTP when cfg
// is nil.
func newReceiverTLS(t *testing.T, cfg *tls.Config) *receiver {
	r := &receiver{}
	r.status.Store(http.StatusOK)
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	if cfg != nil {
		r.srv.TLS = cfg
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	body, _ := io.ReadAll(req.Body)
	if r.block != nil {
		<-r.block
	}
	st := int(r.status.Load())
	r.mu.Lock()
	r.reqs = append(r.reqs, request{header: req.Header.Clone(), body: body, status: st})
	r.mu.Unlock()
	w.WriteHeader(st)
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

// accepted returns the batches answered 2xx, decoded.
func (r *receiver) accepted(t *testing.T) [][]item {
	t.Helper()
	var out [][]item
	for _, q := range r.requests() {
		if q.status/100 != 2 {
			continue
		}
		var b []item
		if err := json.Unmarshal(q.body, &b); err != nil {
			t.Fatalf("receiver got a body that is not a JSON array of events: %v: %s", err, q.body)
		}
		out = append(out, b)
	}
	return out
}

func (r *receiver) acceptedIDs(t *testing.T) []int {
	var ids []int
	for _, b := range r.accepted(t) {
		for _, it := range b {
			ids = append(ids, it.ID)
		}
	}
	return ids
}

// restartableListener listens on a fixed loopback address so a receiver can go away and come
// back at the same URL.
func listenAt(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	eventually(t, "listen on "+addr, func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	return ln
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
