package autorouter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/plugins/internal/streamtest"
	"github.com/emsflow/emsflow/plugins/provenance"
)

const wait = 15 * time.Second

func newRouter(t *testing.T, f *streamtest.Fleet, name string, params map[string]any) *Router {
	t.Helper()
	raw, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Factory(name, raw, f.Deps(name))
	if err != nil {
		t.Fatalf("factory %s: %v", name, err)
	}
	return p.(*Router)
}

func skipped(r *Router, reason string) float64 { return r.metrics.Skipped(reason) }

func counted(r *Router, action string) (actions, repairs float64) {
	return r.metrics.Actions(action), r.metrics.Repairs(action)
}

// pushesOf returns the push configs of stream name on the simulator.
func pushesOf(t *testing.T, f *streamtest.Fleet, sim, name string) []event.Payload {
	t.Helper()
	cl, err := f.Configs(t.Context(), sim)
	if err != nil {
		t.Fatalf("list configs of %s: %v", sim, err)
	}
	var out []event.Payload
	for _, p := range cl.Push {
		if n, _ := p.String("localStreamName"); n == name {
			out = append(out, p)
		}
	}
	return out
}

func hasInbound(t *testing.T, f *streamtest.Fleet, sim, name string) bool {
	t.Helper()
	in, err := f.Inbound(t.Context(), sim)
	if err != nil {
		t.Fatalf("list streams of %s: %v", sim, err)
	}
	_, ok := in[name]
	return ok
}

func noFailures(t *testing.T, f *streamtest.Fleet) {
	t.Helper()
	for _, err := range f.Failures() {
		t.Errorf("handle failed: %v", err)
	}
}

// TestRoutesTokenStreamsOnce: a token stream published on A arrives on B, once, although every
// event is delivered twice and a restarted router sees the stream again; a stream without the
// token stays on A.
func TestRoutesTokenStreamsOnce(t *testing.T) {
	t.Parallel()
	f := streamtest.New(t, streamtest.Options{}, "a", "b")
	r := newRouter(t, f, "RouterAB", map[string]any{
		"token": "stream", "destination_uri": f.Sim("b").RTMPURL(), "ems": []string{"a"}, "reconcile_interval": 0,
	})
	f.HandleTwice(true)
	f.Attach(r)

	if _, err := f.Sim("a").Publish("other"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Sim("a").Publish("mystream1"); err != nil {
		t.Fatal(err)
	}
	streamtest.WaitFor(t, wait, "mystream1 on B", func() bool { return hasInbound(t, f, "b", "mystream1") })
	streamtest.WaitFor(t, wait, "both deliveries of other skipped", func() bool { return skipped(r, "token") >= 2 })
	streamtest.WaitFor(t, wait, "the duplicate delivery skipped", func() bool { return skipped(r, "duplicate") >= 1 })
	if hasInbound(t, f, "b", "other") || len(pushesOf(t, f, "a", "other")) != 0 {
		t.Error("stream without the token was routed")
	}
	pushes := pushesOf(t, f, "a", "mystream1")
	if len(pushes) != 1 {
		t.Fatalf("got %d pushes of mystream1, want 1: %v", len(pushes), pushes)
	}
	p := pushes[0]
	if by, _ := provenance.Creator(p); by != "RouterAB" || provenance.Origin(p) != "a" {
		t.Errorf("push tags: creator %q origin %q, want RouterAB and a", by, provenance.Origin(p))
	}
	if ka, _ := p.Bool("keepAlive"); !ka {
		t.Error("push has keepAlive off, want on")
	}

	// Restart: a new instance sees the stream's event again and reconciles.
	f.Detach(r)
	r2 := newRouter(t, f, "RouterAB", map[string]any{
		"token": "stream", "destination_uri": f.Sim("b").RTMPURL(), "ems": []string{"a"},
	})
	in, err := f.Inbound(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{Type: event.InStreamCreated, EMS: "a", Payload: in["mystream1"]}
	if err := r2.Handle(t.Context(), ev); err != nil {
		t.Fatalf("handle after restart: %v", err)
	}
	if err := r2.Reconcile(t.Context()); err != nil {
		t.Fatalf("reconcile after restart: %v", err)
	}
	if n := len(pushesOf(t, f, "a", "mystream1")); n != 1 {
		t.Errorf("after restart got %d pushes, want 1", n)
	}
	if _, rep := counted(r2, "push"); rep != 0 {
		t.Errorf("reconcile repaired %v times, want 0", rep)
	}
	noFailures(t, f)
}

// TestNoLoop: routers pointing at each other (scoped per EMS, or one router listing both) push
// a stream one way only.
func TestNoLoop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		routers func(f *streamtest.Fleet) []map[string]any
	}{
		{"router on B points back at A", func(f *streamtest.Fleet) []map[string]any {
			return []map[string]any{
				{"token": "", "destination_uri": f.Sim("b").RTMPURL(), "ems": []string{"a"}},
				{"token": "", "destination_uri": f.Sim("a").RTMPURL(), "ems": []string{"b"}},
			}
		}},
		{"one router with both as destinations", func(f *streamtest.Fleet) []map[string]any {
			return []map[string]any{
				{"token": "", "destination_uri": []string{f.Sim("a").RTMPURL(), f.Sim("b").RTMPURL()}},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := streamtest.New(t, streamtest.Options{}, "a", "b")
			var routers []*Router
			for i, params := range tt.routers(f) {
				params["reconcile_interval"] = 0
				r := newRouter(t, f, fmt.Sprintf("R%d", i), params)
				routers = append(routers, r)
				f.Attach(r)
			}
			loopGuarded := func() float64 {
				n := 0.0
				for _, r := range routers {
					n += skipped(r, "loop_guard")
				}
				return n
			}
			if _, err := f.Sim("a").Publish("cam"); err != nil {
				t.Fatal(err)
			}
			streamtest.WaitFor(t, wait, "cam on B", func() bool { return hasInbound(t, f, "b", "cam") })
			streamtest.WaitFor(t, wait, "B's copy recognised", func() bool { return loopGuarded() >= 1 })
			if n := len(pushesOf(t, f, "b", "cam")); n != 0 {
				t.Errorf("B pushes cam back: %d push configs", n)
			}
			if n := len(pushesOf(t, f, "a", "cam")); n != 1 {
				t.Errorf("A has %d pushes of cam, want 1", n)
			}
			// The other way round works too.
			if _, err := f.Sim("b").Publish("cam2"); err != nil {
				t.Fatal(err)
			}
			streamtest.WaitFor(t, wait, "cam2 on A", func() bool { return hasInbound(t, f, "a", "cam2") })
			streamtest.WaitFor(t, wait, "A's copy recognised", func() bool { return loopGuarded() >= 2 })
			if n := len(pushesOf(t, f, "a", "cam2")); n != 0 {
				t.Errorf("A pushes cam2 back: %d push configs", n)
			}
			// Reconciliation agrees: nothing to repair.
			for _, r := range routers {
				if err := r.Reconcile(t.Context()); err != nil {
					t.Fatal(err)
				}
				if _, rep := counted(r, "push"); rep != 0 {
					t.Errorf("%s repaired %v pushes, want 0", r.Name(), rep)
				}
			}
			noFailures(t, f)
		})
	}
}

// TestReconcileRoutesWithoutEvents: A loses every event; reconciliation still routes the stream
// within one interval.
func TestReconcileRoutesWithoutEvents(t *testing.T) {
	t.Parallel()
	f := streamtest.New(t, streamtest.Options{Configure: func(name string, cfg *emssim.Config) {
		if name == "a" {
			cfg.Faults.StopPosting = true
		}
	}}, "a", "b")
	const interval = 500 * time.Millisecond
	r := newRouter(t, f, "R", map[string]any{
		"token": "cam", "destination_uri": f.Sim("b").RTMPURL(), "ems": []string{"a"}, "reconcile_interval": interval.String(),
	})
	f.Attach(r)
	f.RunReconciler(r)
	if _, err := f.Sim("a").Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	streamtest.WaitFor(t, wait, "cam1 on B", func() bool { return hasInbound(t, f, "b", "cam1") })
	if _, rep := counted(r, "push"); rep != 1 {
		t.Errorf("repairs: got %v, want 1", rep)
	}
	t.Logf("routed by reconciliation after %s", time.Since(start))
	if f.Sim("a").EventStats().Dropped == 0 {
		t.Error("simulator A dropped no events: the test does not test reconciliation")
	}
}

// posted records the inStreamCreated events the fleet's simulators post, as they arrive.
type posted struct {
	mu  sync.Mutex
	evs []*event.Event
}

func (p *posted) Name() string     { return "posted" }
func (p *posted) Events() []string { return []string{event.InStreamCreated} }

func (p *posted) Handle(_ context.Context, ev *event.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs = append(p.evs, ev)
	return nil
}

// find returns the inStreamCreated event simulator ems posted for stream name, or nil.
func (p *posted) find(ems, name string) *event.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range p.evs {
		if ev.EMS == ems && ev.Payload.Name() == name {
			return ev
		}
	}
	return nil
}

// TestPushMarkArrivesAtDestination: the stream RouterA pushes from A lands on B carrying the
// router's pageUrl (emsflow:RouterA) in the inStreamCreated event B posts and in B's
// listStreams, as an RTMP push's connect parameters do on a real EMS; none of A's push config
// comes with it. A router on B pointing back at A that knows only B (it cannot read A's
// listConfig, and the push comes from an ephemeral port, not from A's RTMP address) still skips
// the stream by that mark alone, on the event and on reconciliation, and pushes nothing back.
func TestPushMarkArrivesAtDestination(t *testing.T) {
	t.Parallel()
	f := streamtest.New(t, streamtest.Options{}, "a", "b")
	ra := newRouter(t, f, "RouterA", map[string]any{
		"token": "", "destination_uri": f.Sim("b").RTMPURL(), "ems": []string{"a"}, "reconcile_interval": 0,
	})
	events := &posted{}
	f.Attach(ra)
	f.Attach(events)

	if _, err := f.Sim("a").Publish("cam"); err != nil {
		t.Fatal(err)
	}
	var ev *event.Event
	streamtest.WaitFor(t, wait, "B's inStreamCreated for cam", func() bool { ev = events.find("b", "cam"); return ev != nil })
	const mark = "emsflow:RouterA"
	if pu, _ := ev.Payload.String("pageUrl"); pu != mark {
		t.Errorf("B's inStreamCreated pageUrl = %q, want %q", pu, mark)
	}
	if _, ok := ev.Payload.Settings(event.PushSettings); ok {
		t.Error("B's inStreamCreated carries pushSettings; they stay on the pushing EMS")
	}
	in, err := f.Inbound(t.Context(), "b")
	if err != nil {
		t.Fatal(err)
	}
	if pu, _ := in["cam"].String("pageUrl"); pu != mark {
		t.Errorf("B's listStreams pageUrl of cam = %q, want %q", pu, mark)
	}
	if by, ok := provenance.Creator(in["cam"]); !ok || by != "RouterA" {
		t.Errorf("creator of B's cam = %q, %v; want RouterA", by, ok)
	}

	// A router on B that sees only B.
	var logs bytes.Buffer
	deps := f.Deps("RouterB")
	deps.EMS = map[string]*emsclient.Client{"b": f.Client("b")}
	deps.DefaultEMS = "b"
	deps.Log = zerolog.New(&logs).Level(zerolog.DebugLevel)
	raw, err := json.Marshal(map[string]any{"token": "", "destination_uri": f.Sim("a").RTMPURL(), "reconcile_interval": 0})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Factory("RouterB", raw, deps)
	if err != nil {
		t.Fatal(err)
	}
	rb := p.(*Router)
	if err := rb.Handle(t.Context(), ev); err != nil {
		t.Fatalf("RouterB handle: %v", err)
	}
	if err := rb.Reconcile(t.Context()); err != nil {
		t.Fatalf("RouterB reconcile: %v", err)
	}
	if n := skipped(rb, "loop_guard"); n != 1 {
		t.Errorf("RouterB loop_guard skips = %v, want 1 (the event)", n)
	}
	if !strings.Contains(logs.String(), "created by emsflow instance RouterA") {
		t.Errorf("RouterB did not skip by the pageUrl mark; its log:\n%s", logs.String())
	}
	if n := len(pushesOf(t, f, "b", "cam")); n != 0 {
		t.Errorf("B pushes cam back to A: %d push configs", n)
	}
	if act, rep := counted(rb, "push"); act != 0 || rep != 0 {
		t.Errorf("RouterB pushed %v and repaired %v, want neither", act, rep)
	}
	noFailures(t, f)
}
