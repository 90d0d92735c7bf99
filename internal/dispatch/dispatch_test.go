package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/dispatch"
	"github.com/emsflow/emsflow/internal/journal"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/plugintest"
)

// fast is a policy whose retries happen within milliseconds.
var fast = dispatch.Policy{
	Timeout:        5 * time.Second,
	InitialBackoff: 5 * time.Millisecond,
	MaxBackoff:     20 * time.Millisecond,
	Concurrency:    4,
}

func openJournal(t *testing.T, dir string) *journal.Journal {
	t.Helper()
	j, err := journal.Open(t.Context(), journal.Config{DataDir: dir, DedupeWindow: time.Minute}, zerolog.Nop())
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	return j
}

func mkEvent(t *testing.T, typ, name string, id int) *event.Event {
	t.Helper()
	raw := fmt.Sprintf(`{"id":%d,"payload":{"PID":1,"customData":null,"name":%q,"uniqueId":%d},"processId":1,"timestamp":1506336133,"type":%q}`, id, name, id, typ)
	ev, err := event.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	ev.EMS = "default"
	return ev
}

type harness struct {
	j   *journal.Journal
	d   *dispatch.Dispatcher
	reg *prometheus.Registry
}

func start(t *testing.T, dir string, entries ...dispatch.Entry) *harness {
	t.Helper()
	j := openJournal(t, dir)
	reg := prometheus.NewRegistry()
	d, err := dispatch.New(j, entries, reg, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	if err := d.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	h := &harness{j: j, d: d, reg: reg}
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t *testing.T) {
	if h.d == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.d.Stop(ctx); err != nil {
		t.Errorf("stop dispatcher: %v", err)
	}
	if err := h.j.Close(); err != nil {
		t.Errorf("close journal: %v", err)
	}
	h.d = nil
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func counter(t *testing.T, reg *prometheus.Registry, name, plugin string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" && l.GetValue() == plugin {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestRoutesEventsOnlyToSubscribers(t *testing.T) {
	streams := plugintest.NewRecorder("streams", event.InStreamCreated, event.InStreamClosed)
	chunks := plugintest.NewRecorder("chunks", event.HLSChunkClosed)
	h := start(t, t.TempDir(), dispatch.Entry{Plugin: streams, Policy: fast}, dispatch.Entry{Plugin: chunks, Policy: fast})

	evs := []*event.Event{
		mkEvent(t, event.InStreamCreated, "a", 1),
		mkEvent(t, event.HLSChunkClosed, "a", 2),
		mkEvent(t, "someFutureEvent", "a", 3), // unknown: journaled, routed to nobody
		mkEvent(t, "weird type.with dots", "a", 4),
		mkEvent(t, event.InStreamClosed, "a", 5),
	}
	if err := h.j.Append(t.Context(), evs); err != nil {
		t.Fatalf("append: %v", err)
	}
	ctx := waitCtx(t)
	if err := streams.Wait(ctx, func(r *plugintest.Recorder) bool { return len(r.Handled()) == 2 }); err != nil {
		t.Fatal(err)
	}
	if err := chunks.Wait(ctx, func(r *plugintest.Recorder) bool { return len(r.Handled()) == 1 }); err != nil {
		t.Fatal(err)
	}
	info, err := h.j.Stream().Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Msgs; got != 5 {
		t.Errorf("journal holds %d messages, want 5 (unknown types are journaled too)", got)
	}
	// Settle: nothing more arrives for either plugin.
	h.stop(t)
	if got := streams.Calls(); got != 2 {
		t.Errorf("streams plugin called %d times, want 2", got)
	}
	if got := chunks.Calls(); got != 1 {
		t.Errorf("chunks plugin called %d times, want 1", got)
	}
	for _, ev := range streams.Handled() {
		if ev.EMS != "default" {
			t.Errorf("event EMS = %q, want default", ev.EMS)
		}
	}
}

func TestRejectsUnknownSubscription(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	bad := plugintest.NewRecorder("bad", "inStreamCreatd")
	_, err := dispatch.New(j, []dispatch.Entry{{Plugin: bad}}, prometheus.NewRegistry(), zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), `unknown event "inStreamCreatd"`) {
		t.Fatalf("err = %v, want unknown event error", err)
	}
}

func TestRetriesUntilSuccess(t *testing.T) {
	const failures = 3
	rec := plugintest.NewRecorder("flaky", event.InStreamCreated)
	rec.Script = func(_ context.Context, ev *event.Event, attempt int) error {
		if attempt <= failures {
			return fmt.Errorf("ems unreachable (attempt %d)", attempt)
		}
		return nil
	}
	h := start(t, t.TempDir(), dispatch.Entry{Plugin: rec, Policy: fast})
	ev := mkEvent(t, event.InStreamCreated, "cam1", 1)
	if err := h.j.Append(t.Context(), []*event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Wait(waitCtx(t), func(r *plugintest.Recorder) bool { return len(r.Handled()) == 1 }); err != nil {
		t.Fatal(err)
	}
	if got := rec.Attempts(ev.Key()); got != failures+1 {
		t.Errorf("attempts = %d, want %d", got, failures+1)
	}
	if got := counter(t, h.reg, "emsflow_plugin_retried_total", "flaky"); got != failures {
		t.Errorf("retried_total = %v, want %d", got, failures)
	}
	// The counter moves after Handle returned, so after the recorder saw the success.
	ctx := waitCtx(t)
	for counter(t, h.reg, "emsflow_plugin_handled_total", "flaky") != 1 {
		select {
		case <-ctx.Done():
			t.Fatalf("handled_total = %v, want 1", counter(t, h.reg, "emsflow_plugin_handled_total", "flaky"))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// retryAfterErr asks for a specific delay, like an HTTP 429 with Retry-After.
type retryAfterErr struct{ d time.Duration }

func (e retryAfterErr) Error() string             { return "slow down" }
func (e retryAfterErr) RetryAfter() time.Duration { return e.d }

func TestHonoursRetryAfter(t *testing.T) {
	rec := plugintest.NewRecorder("throttled", event.InStreamCreated)
	var firstFail time.Time
	var retriedAt time.Time
	rec.Script = func(_ context.Context, ev *event.Event, attempt int) error {
		if attempt == 1 {
			firstFail = time.Now()
			return retryAfterErr{300 * time.Millisecond}
		}
		retriedAt = time.Now()
		return nil
	}
	pol := fast
	pol.MaxBackoff = time.Second
	h := start(t, t.TempDir(), dispatch.Entry{Plugin: rec, Policy: pol})
	if err := h.j.Append(t.Context(), []*event.Event{mkEvent(t, event.InStreamCreated, "x", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Wait(waitCtx(t), func(r *plugintest.Recorder) bool { return len(r.Handled()) == 1 }); err != nil {
		t.Fatal(err)
	}
	// A lower bound only: the retry must not come before the server's Retry-After. The backoff
	// alone would have retried after at most 5ms.
	if gap := retriedAt.Sub(firstFail); gap < 300*time.Millisecond {
		t.Errorf("retried after %v, before the requested 300ms", gap)
	}
}

func deadLetters(t *testing.T, j *journal.Journal) []jetstream.RawStreamMsg {
	t.Helper()
	info, err := j.DeadStream().Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := j.DeadStream().GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *m)
	}
	return out
}

func TestDeadLetters(t *testing.T) {
	tests := []struct {
		name         string
		script       func(context.Context, *event.Event, int) error
		policy       func(dispatch.Policy) dispatch.Policy
		wantAttempts int
		wantErr      string
		wantPanics   float64
	}{
		{
			name: "permanent error skips retries",
			script: func(context.Context, *event.Event, int) error {
				return plugins.Permanent(errors.New("FAIL: Syntax error"))
			},
			wantAttempts: 1,
			wantErr:      "FAIL: Syntax error",
		},
		{
			name:         "panic is recovered and dead-lettered",
			script:       func(context.Context, *event.Event, int) error { panic("boom") },
			wantAttempts: 1,
			wantErr:      "plugin panic: boom",
			wantPanics:   1,
		},
		{
			name:         "retries exhausted by count",
			script:       func(_ context.Context, _ *event.Event, n int) error { return fmt.Errorf("still down %d", n) },
			policy:       func(p dispatch.Policy) dispatch.Policy { p.MaxDeliver = 4; return p },
			wantAttempts: 4,
			wantErr:      "still down 4",
		},
		{
			name:   "retries exhausted by age",
			script: func(context.Context, *event.Event, int) error { return errors.New("still down") },
			policy: func(p dispatch.Policy) dispatch.Policy {
				p.GiveUpAfter = time.Nanosecond
				return p
			},
			wantAttempts: 1,
			wantErr:      "still down",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := plugintest.NewRecorder("p", event.InStreamCreated)
			rec.Script = tc.script
			pol := fast
			if tc.policy != nil {
				pol = tc.policy(pol)
			}
			h := start(t, t.TempDir(), dispatch.Entry{Plugin: rec, Policy: pol})
			ev := mkEvent(t, event.InStreamCreated, "cam1", 7)
			if err := h.j.Append(t.Context(), []*event.Event{ev}); err != nil {
				t.Fatal(err)
			}
			ctx := waitCtx(t)
			for counter(t, h.reg, "emsflow_plugin_dead_lettered_total", "p") < 1 {
				if err := rec.Wait(ctx, func(r *plugintest.Recorder) bool { return r.Calls() >= tc.wantAttempts }); err != nil {
					t.Fatal(err)
				}
				select {
				case <-ctx.Done():
					t.Fatal("event not dead-lettered in time")
				case <-time.After(5 * time.Millisecond):
				}
			}
			dl := deadLetters(t, h.j)
			h.stop(t)
			if got := rec.Calls(); got != tc.wantAttempts {
				t.Errorf("calls = %d, want %d", got, tc.wantAttempts)
			}
			if len(dl) != 1 {
				t.Fatalf("dead letters = %d, want 1", len(dl))
			}
			m := dl[0]
			if got := m.Header.Get(journal.HeaderError); !strings.Contains(got, tc.wantErr) {
				t.Errorf("dead letter error = %q, want it to contain %q", got, tc.wantErr)
			}
			if got := m.Header.Get(journal.HeaderAttempts); got != strconv.Itoa(tc.wantAttempts) {
				t.Errorf("dead letter attempts = %s, want %d", got, tc.wantAttempts)
			}
			if got := m.Header.Get(journal.HeaderPlugin); got != "p" {
				t.Errorf("dead letter plugin = %q", got)
			}
			if string(m.Data) != string(ev.Raw) {
				t.Errorf("dead letter body differs from the event")
			}
			if got := counter(t, h.reg, "emsflow_plugin_panics_total", "p"); got != tc.wantPanics {
				t.Errorf("panics_total = %v, want %v", got, tc.wantPanics)
			}
		})
	}
}

func TestKeyedEventsKeepOrder(t *testing.T) {
	rec := plugintest.NewRecorder("ordered", event.HLSChunkClosed)
	rec.Key = func(ev *event.Event) string { return ev.Payload.Name() }
	// The first event of each key is slow and fails once: with per-key ordering nothing of that
	// key may overtake it on the first pass.
	rec.Script = func(_ context.Context, ev *event.Event, attempt int) error { return nil }
	pol := fast
	pol.Concurrency = 4
	h := start(t, t.TempDir(), dispatch.Entry{Plugin: rec, Policy: pol})
	var evs []*event.Event
	const perKey = 50
	for i := range perKey {
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			evs = append(evs, mkEvent(t, event.HLSChunkClosed, k, i+1))
		}
	}
	if err := h.j.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if err := rec.Wait(waitCtx(t), func(r *plugintest.Recorder) bool { return len(r.Handled()) == len(evs) }); err != nil {
		t.Fatal(err)
	}
	last := map[string]uint64{}
	for _, ev := range rec.Handled() {
		id, _ := ev.Payload.UniqueID()
		if id <= last[ev.Payload.Name()] {
			t.Fatalf("key %s: event %d handled after %d", ev.Payload.Name(), id, last[ev.Payload.Name()])
		}
		last[ev.Payload.Name()] = id
	}
}

func TestDuplicateAppendStoredOnce(t *testing.T) {
	rec := plugintest.NewRecorder("once", event.InStreamCreated)
	h := start(t, t.TempDir(), dispatch.Entry{Plugin: rec, Policy: fast})
	ev := mkEvent(t, event.InStreamCreated, "cam1", 1)
	for range 3 {
		dup := *ev
		if err := h.j.Append(t.Context(), []*event.Event{&dup}); err != nil {
			t.Fatal(err)
		}
	}
	other := mkEvent(t, event.InStreamCreated, "cam2", 2)
	if err := h.j.Append(t.Context(), []*event.Event{other}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Wait(waitCtx(t), func(r *plugintest.Recorder) bool { return len(r.Handled()) >= 2 }); err != nil {
		t.Fatal(err)
	}
	h.stop(t)
	if got := rec.Calls(); got != 2 {
		t.Errorf("plugin called %d times for 1 event posted 3 times + 1 other, want 2", got)
	}
}

func TestUnhandledEventsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	// The first run's plugin hangs until the dispatcher gives up on it at shutdown, so most
	// events are never even delivered and the in-flight ones are abandoned mid-call.
	hung := plugintest.NewRecorder("p", event.InStreamCreated)
	hung.Script = func(ctx context.Context, _ *event.Event, _ int) error {
		<-ctx.Done()
		return context.Cause(ctx)
	}
	h := start(t, dir, dispatch.Entry{Plugin: hung, Policy: fast})
	var evs []*event.Event
	for i := range 20 {
		evs = append(evs, mkEvent(t, event.InStreamCreated, "s"+strconv.Itoa(i), i+1))
	}
	if err := h.j.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if err := hung.Wait(waitCtx(t), func(r *plugintest.Recorder) bool { return r.Calls() >= fast.Concurrency }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := h.d.Stop(ctx); err == nil {
		t.Error("stop returned nil although handlers were still running at its deadline")
	}
	if err := h.j.Close(); err != nil {
		t.Fatal(err)
	}
	h.d = nil
	if got := len(hung.Handled()); got != 0 {
		t.Fatalf("hung plugin handled %d events", got)
	}

	ok := plugintest.NewRecorder("p", event.InStreamCreated)
	start(t, dir, dispatch.Entry{Plugin: ok, Policy: fast})
	if err := ok.Wait(waitCtx(t), func(r *plugintest.Recorder) bool { return len(r.Handled()) == 20 }); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, ev := range ok.Handled() {
		seen[ev.Payload.Name()]++
	}
	if len(seen) != 20 {
		t.Errorf("handled %d distinct events after restart, want 20", len(seen))
	}
}

// TestFetchingSurvivesConsumerDeletion: an error from the journal while fetching (here the
// plugin's consumer deleted under the running dispatcher) is counted and waited out, the
// consumer is made again, and later events are delivered. Before, the plugin's fetching ended
// at the first such error (a missed heartbeat under load did it) until a restart.
func TestFetchingSurvivesConsumerDeletion(t *testing.T) {
	rec := plugintest.NewRecorder("streams", event.InStreamCreated)
	h := start(t, t.TempDir(), dispatch.Entry{Plugin: rec, Policy: fast})
	ctx := waitCtx(t)
	if err := h.j.Append(ctx, []*event.Event{mkEvent(t, event.InStreamCreated, "a", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Wait(ctx, func(r *plugintest.Recorder) bool { return len(r.Handled()) == 1 }); err != nil {
		t.Fatal(err)
	}
	name := dispatch.ConsumerName("streams")
	if err := h.j.Stream().DeleteConsumer(ctx, name); err != nil {
		t.Fatal(err)
	}
	// Wait until the dispatcher noticed and made the consumer again.
	for counter(t, h.reg, "emsflow_plugin_consume_errors_total", "streams") == 0 {
		if ctx.Err() != nil {
			t.Fatal("the deleted consumer was never reported as a fetch error")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		if _, err := h.j.Stream().Consumer(ctx, name); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the consumer was not made again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := h.j.Append(ctx, []*event.Event{mkEvent(t, event.InStreamCreated, "b", 2)}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Wait(ctx, func(r *plugintest.Recorder) bool { return len(r.Handled()) == 2 }); err != nil {
		t.Fatalf("the event appended after the consumer was made again was not delivered: %v", err)
	}
}

// TestIdleIsNotAFetchError: the runner calls Next with a short wait while events may be flowing
// (a guard against nats.go losing its own pull request) and without one once idle. Neither an
// idle spell in the short waits nor a longer one counts as a fetch error, and an event journaled
// after either is delivered.
func TestIdleIsNotAFetchError(t *testing.T) {
	rec := plugintest.NewRecorder("streams", event.InStreamCreated)
	h := start(t, t.TempDir(), dispatch.Entry{Plugin: rec, Policy: fast})
	ctx := waitCtx(t)
	// 500 ms: several short waits; 2.5 s: past them, into the unbounded wait.
	for i, idle := range []time.Duration{500 * time.Millisecond, 2500 * time.Millisecond} {
		time.Sleep(idle) // the idle spell is what is under test
		if err := h.j.Append(ctx, []*event.Event{mkEvent(t, event.InStreamCreated, "a", i+1)}); err != nil {
			t.Fatal(err)
		}
		if err := rec.Wait(ctx, func(r *plugintest.Recorder) bool { return len(r.Handled()) == i+1 }); err != nil {
			t.Fatalf("event after %s idle not delivered: %v", idle, err)
		}
	}
	if n := counter(t, h.reg, "emsflow_plugin_consume_errors_total", "streams"); n != 0 {
		t.Errorf("consume errors = %v after idle spells, want 0", n)
	}
}
