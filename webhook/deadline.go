package webhook

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlines hands out the contexts that bound journal appends: each ends AppendTimeout after
// its request arrived, or up to one tick later. Requests arriving within the same tick share
// one context, so an event costs no context, timer or Done channel of its own: at tens of
// thousands of events a second those were a few percent of the webhook's CPU.
//
// The contexts do not derive from the request's: an event fully received is stored even if
// the sender hangs up (EMS never retries).
type deadlines struct {
	timeout time.Duration
	tick    time.Duration
	cur     atomic.Pointer[deadline]
}

// deadline is the context shared by the requests of one tick.
type deadline struct {
	tick   int64 // the arrival time divided by the tick
	ctx    context.Context
	cancel context.CancelFunc // never called early: the context's own timer releases it
}

// maxDeadlineTick bounds how late past AppendTimeout an append may end.
const maxDeadlineTick = 100 * time.Millisecond

func newDeadlines(timeout time.Duration) *deadlines {
	return &deadlines{timeout: timeout, tick: max(min(maxDeadlineTick, timeout/10), time.Millisecond)}
}

// at returns a context that ends between timeout and timeout+tick after now.
func (d *deadlines) at(now time.Time) context.Context {
	n := now.UnixNano() / int64(d.tick)
	cur := d.cur.Load()
	if cur != nil && cur.tick == n {
		return cur.ctx
	}
	end := time.Unix(0, (n+1)*int64(d.tick)).Add(d.timeout)
	ctx, cancel := context.WithDeadline(context.Background(), end)
	next := &deadline{tick: n, ctx: ctx, cancel: cancel}
	if cur != nil && cur.tick > n {
		// A request that read the clock earlier than the one that made the current context:
		// its own context, not shared, ends when it should.
		return ctx
	}
	if d.cur.CompareAndSwap(cur, next) {
		return ctx
	}
	if won := d.cur.Load(); won.tick == n {
		cancel() // nobody else has this one
		return won.ctx
	}
	return ctx
}
