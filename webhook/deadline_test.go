package webhook

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDeadlinesShareATick: requests within one tick share a context; each context ends between
// timeout and timeout+tick after its request; a later tick gets a new one.
func TestDeadlinesShareATick(t *testing.T) {
	d := newDeadlines(10 * time.Second)
	if d.tick != maxDeadlineTick {
		t.Fatalf("tick %s, want %s", d.tick, maxDeadlineTick)
	}
	base := time.Unix(1_700_000_000, 0) // on a tick boundary
	a := d.at(base.Add(10 * time.Millisecond))
	b := d.at(base.Add(90 * time.Millisecond))
	if a != b {
		t.Error("two requests in one tick got different contexts")
	}
	c := d.at(base.Add(110 * time.Millisecond))
	if c == a {
		t.Error("a request in the next tick got the previous tick's context")
	}
	for _, tc := range []struct {
		ctx     context.Context
		arrived time.Duration
	}{{a, 10 * time.Millisecond}, {b, 90 * time.Millisecond}, {c, 110 * time.Millisecond}} {
		end, ok := tc.ctx.Deadline()
		if !ok {
			t.Fatal("context without a deadline")
		}
		if after := end.Sub(base.Add(tc.arrived)); after < d.timeout || after > d.timeout+d.tick {
			t.Errorf("request at +%s: deadline %s after it, want within [%s, %s]", tc.arrived, after, d.timeout, d.timeout+d.tick)
		}
	}
	// A request that read the clock before the current tick gets its own context, never one
	// that ends too late for it... nor too early.
	old := d.at(base.Add(20 * time.Millisecond))
	if old == c {
		t.Error("an earlier request got the later tick's context")
	}
	if end, _ := old.Deadline(); end.Sub(base.Add(20*time.Millisecond)) > d.timeout+d.tick {
		t.Errorf("earlier request's deadline %s too late", end)
	}
}

// TestDeadlinesEnd: the shared context really ends, with DeadlineExceeded, and small timeouts
// get a proportionally small tick.
func TestDeadlinesEnd(t *testing.T) {
	d := newDeadlines(50 * time.Millisecond)
	if d.tick != 5*time.Millisecond {
		t.Fatalf("tick %s for a 50ms timeout, want 5ms", d.tick)
	}
	ctx := d.at(time.Now())
	select {
	case <-ctx.Done():
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("ended with %v", ctx.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shared context never ended")
	}
}

// TestAppendTimeout: a journal that hangs gets each request answered 503 once AppendTimeout
// (and at most one tick) has passed, also for requests that share a deadline.
func TestAppendTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	release := make(chan struct{})
	env := newTestEnv(t, Config{AppendTimeout: timeout}, &fakeJournal{release: release}, nil)
	t.Cleanup(func() { close(release) }) // before the server closes, should a handler still wait
	body := string(fixture(t, "inStreamCreated.json"))
	start := time.Now()
	statuses := make(chan int, 3)
	hc := &http.Client{Timeout: 10 * time.Second} // a deadline never reached answers 0
	for range 3 {
		go func() {
			resp, err := hc.Post(env.url+"/evowebservices", "application/json", strings.NewReader(body))
			if err != nil {
				statuses <- 0
				return
			}
			_ = resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	for range 3 {
		if got := <-statuses; got != http.StatusServiceUnavailable {
			t.Fatalf("status = %d, want 503", got)
		}
	}
	if took := time.Since(start); took < timeout {
		t.Errorf("answered after %s, before the append timeout of %s", took, timeout)
	}
	if got := scrape(t, env.url, "emsflow_webhook_rejected_total", "reason", ReasonJournalUnavailable); got != 3 {
		t.Errorf("rejected{reason=journal_unavailable} = %v, want 3", got)
	}
}
