package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
)

// TestDedupeWindow: a stored key is a duplicate for at least the window and forgotten within a
// window and a slice; a failed publish releases its key; a second claim during a publish waits
// for it.
func TestDedupeWindow(t *testing.T) {
	const window = 4 * time.Minute
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	d := newDedupe(window, t0)
	a, b := digest{1}, digest{2}

	f, owner := d.claim(a, t0)
	if f == nil || !owner {
		t.Fatalf("first claim = %v, %v; want to own the publish", f, owner)
	}
	if g, o := d.claim(a, t0.Add(time.Second)); g != f || o {
		t.Fatalf("claim during the publish = %v, %v; want to wait for the first flight", g, o)
	}
	d.finish(a, f, nil, t0.Add(time.Second))
	select {
	case <-f.done:
	default:
		t.Fatal("finish did not end the flight")
	}

	// Keys are remembered across slices up to the window.
	for _, at := range []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, window} {
		if g, _ := d.claim(a, t0.Add(at)); g != nil {
			t.Fatalf("key stored at 0s claimed again at %s: want a duplicate within the window", at)
		}
	}
	if g, _ := d.claim(a, t0.Add(window+window/dedupeSlices+time.Second)); g == nil {
		t.Fatal("key still a duplicate a window and a slice after it was stored")
	}

	// A failed publish releases the key: the retry publishes.
	fb, _ := d.claim(b, t0)
	d.finish(b, fb, errors.New("refused"), t0)
	if fb.err == nil {
		t.Fatal("flight error not set")
	}
	if g, o := d.claim(b, t0); g == nil || !o {
		t.Fatal("key of a failed publish not released")
	}
}

// TestDedupeIdleAndSize: after an idle longer than the window nothing is remembered, and len
// counts stored and pending keys.
func TestDedupeIdleAndSize(t *testing.T) {
	t0 := time.Unix(0, 0)
	d := newDedupe(time.Minute, t0)
	for i := range 100 {
		d.remember(digest{byte(i)}, t0.Add(time.Duration(i)*time.Second/2))
	}
	d.claim(digest{200}, t0.Add(50*time.Second))
	if n := d.len(); n != 101 {
		t.Fatalf("len = %d, want 100 stored + 1 pending", n)
	}
	if f, _ := d.claim(digest{5}, t0.Add(10*time.Minute)); f == nil {
		t.Fatal("key remembered after 10 minutes idle")
	}
	if n := d.len(); n != 2 {
		t.Fatalf("len after the idle = %d, want the 2 pending keys", n)
	}
}

// TestConcurrentDuplicatesStoredOnce: the same event POSTed by many requests at once is stored
// once, and each request is answered only after it is stored.
func TestConcurrentDuplicatesStoredOnce(t *testing.T) {
	j, ev := openWithFixture(t)
	ev.EMS = "ems1"
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			e := *ev
			errs <- j.Append(t.Context(), []*event.Event{&e})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := streamMsgs(t, j); n != 1 {
		t.Fatalf("stream holds %d messages after 16 concurrent appends of one event, want 1", n)
	}
}

// TestPublishOutlivesRequest: an append whose request gives up before the server answered
// still stores the event, and the retry of that event is not stored a second time.
func TestPublishOutlivesRequest(t *testing.T) {
	j, ev := openWithFixture(t)
	ev.EMS = "ems1"
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = j.Append(ctx, []*event.Event{ev}) // may fail or succeed: the race is the point
	deadline := time.Now().Add(10 * time.Second)
	for streamMsgs(t, j) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("event of a cancelled request never stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := j.Append(t.Context(), []*event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, j); n != 1 {
		t.Fatalf("stream holds %d messages after a retry, want 1", n)
	}
}

// TestDedupeSurvivesRestart: the keys of the window are read back when the journal reopens, so
// a duplicate POST after a restart is still stored once; a new event is stored.
func TestDedupeSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ev := fixture(t)
	ev.EMS = "ems1"
	other := *ev
	other.EMS = "ems2"
	cfg := Config{DataDir: dir, DedupeWindow: time.Minute}
	j, err := Open(t.Context(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := j.Append(t.Context(), []*event.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err = Open(t.Context(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if n := j.dd.len(); n != 1 {
		t.Fatalf("%d keys read back, want 1", n)
	}
	if err := j.Append(t.Context(), []*event.Event{ev, &other}); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, j); n != 2 {
		t.Fatalf("stream holds %d messages, want the first event once and the other", n)
	}
}

func streamMsgs(t *testing.T, j *Journal) uint64 {
	t.Helper()
	info, err := j.Stream().Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// BenchmarkDedupeClaim measures claiming and storing distinct keys, and reports the heap the
// index holds per key (B/key) after b.N keys.
func BenchmarkDedupeClaim(b *testing.B) {
	now := time.Now()
	d := newDedupe(time.Hour, now)
	defer d.close()
	b.ResetTimer()
	for i := range b.N {
		var k digest
		binary.LittleEndian.PutUint64(k[:], uint64(i))
		f, _ := d.claim(k, now)
		d.finish(k, f, nil, now)
	}
	b.StopTimer()
	b.ReportMetric(float64(d.bytes())/float64(b.N), "B/key")
}

// TestExternalServerDedupes: with an external NATS server (here one on loopback) the journal
// keeps no index of its own and sends each key as the message id, so that every emsflow
// sharing the cluster shares the server's dedupe.
func TestExternalServerDedupes(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	j, err := Open(t.Context(), Config{URL: srv.ClientURL(), DedupeWindow: time.Minute}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.dd != nil {
		t.Fatal("journal on an external server keeps its own dedupe index")
	}
	ev := fixture(t)
	ev.EMS = "ems1"
	other := *ev
	other.EMS = "ems2"
	for _, batch := range [][]*event.Event{{ev}, {ev}, {ev, &other, ev}} {
		if err := j.Append(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	if n := streamMsgs(t, j); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
	got, err := j.Stream().GetLastMsgForSubject(t.Context(), Subject("ems1", event.InStreamCreated))
	if err != nil {
		t.Fatal(err)
	}
	if id := got.Header.Get("Nats-Msg-Id"); id != ev.Key() {
		t.Errorf("message id = %q, want the event key %q", id, ev.Key())
	}
}
