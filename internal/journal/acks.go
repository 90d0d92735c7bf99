package journal

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// acks publishes the embedded journal's messages and routes the server's acknowledgements back
// to their flights. Every publish carries a reply subject "<inbox>.<n>", and one subscription
// on "<inbox>.*" receives every acknowledgement into a channel that one goroutine reads. A
// request/reply per event instead costs a goroutine to outlive the request, a context with a
// timer, and nats.go's own reply channel and map entry, and one more goroutine hop on the way
// back.
//
// A flight outlives the request that started it: the acknowledgement ends it whenever it comes,
// or the sweep fails it after flightTimeout.
type acks struct {
	dd     *dedupe
	nc     *nats.Conn
	prefix string // "<inbox>."
	ch     chan *nats.Msg
	sub    *nats.Subscription

	mu   sync.Mutex
	next uint64
	wait map[uint64]pendingAck

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

type pendingAck struct {
	k    digest
	f    *flight
	sent time.Time
}

// flightTimeout bounds one publish to the embedded server. The publish outlives the request
// that started it: while it is in flight a retried POST of the same event waits for it instead
// of storing the event again, so a slow answer cannot turn into a duplicate.
const flightTimeout = time.Minute

// ackBuffer is how many acknowledgements may wait for the reading goroutine; more are dropped
// by nats.go as a slow consumer (reported through the connection's error handler) and their
// flights fail at the sweep.
const ackBuffer = 16384

// ackSweep is how often flights are checked against flightTimeout.
const ackSweep = time.Second

func newAcks(nc *nats.Conn, dd *dedupe) (*acks, error) {
	a := &acks{
		dd:     dd,
		nc:     nc,
		prefix: nats.NewInbox() + ".",
		ch:     make(chan *nats.Msg, ackBuffer),
		wait:   map[uint64]pendingAck{},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	var err error
	if a.sub, err = nc.ChanSubscribe(a.prefix+"*", a.ch); err != nil {
		return nil, fmt.Errorf("subscribe to publish acknowledgements: %w", err)
	}
	go a.run()
	return a, nil
}

// publish sends m as the flight f of key k. The flight ends when the server answers, or at once
// if m could not be sent; the returned error says the latter.
func (a *acks) publish(k digest, f *flight, m *nats.Msg) error {
	now := time.Now()
	a.mu.Lock()
	a.next++
	n := a.next
	a.wait[n] = pendingAck{k: k, f: f, sent: now}
	a.mu.Unlock()
	m.Reply = a.prefix + strconv.FormatUint(n, 10)
	err := a.nc.PublishMsg(m)
	if err != nil {
		if _, ok := a.take(n); ok {
			a.dd.finish(k, f, err, now)
		}
	}
	return err
}

func (a *acks) take(n uint64) (pendingAck, bool) {
	a.mu.Lock()
	p, ok := a.wait[n]
	delete(a.wait, n)
	a.mu.Unlock()
	return p, ok
}

func (a *acks) run() {
	defer close(a.done)
	tick := time.NewTicker(ackSweep)
	defer tick.Stop()
	for {
		select {
		case m := <-a.ch:
			a.land(m)
		case now := <-tick.C:
			a.sweep(now, flightTimeout, fmt.Errorf("no acknowledgement within %s", flightTimeout))
		case <-a.stop:
			for {
				select {
				case m := <-a.ch:
					a.land(m)
				default:
					a.sweep(time.Now(), -1, errors.New("journal closed before the server acknowledged"))
					return
				}
			}
		}
	}
}

// land ends the flight an acknowledgement answers.
func (a *acks) land(m *nats.Msg) {
	n, err := strconv.ParseUint(m.Subject[len(a.prefix):], 10, 64)
	if err != nil {
		return
	}
	p, ok := a.take(n)
	if !ok {
		return // swept already
	}
	if m.Header.Get("Status") == "503" {
		err = fmt.Errorf("no stream answered: %w", nats.ErrNoResponders)
	} else {
		err = parseAck(m.Data)
	}
	a.dd.finish(p.k, p.f, err, time.Now())
}

// sweep fails the flights sent more than age ago (all of them when age is negative).
func (a *acks) sweep(now time.Time, age time.Duration, err error) {
	var late []pendingAck
	a.mu.Lock()
	for n, p := range a.wait {
		if age < 0 || now.Sub(p.sent) > age {
			late = append(late, p)
			delete(a.wait, n)
		}
	}
	a.mu.Unlock()
	for _, p := range late {
		a.dd.finish(p.k, p.f, err, now)
	}
}

// close stops routing: acknowledgements already received still land, flights still waiting fail.
// Call it after the connection drained. Closing twice is harmless.
func (a *acks) close() {
	a.stopOnce.Do(func() { close(a.stop) })
	<-a.done
}
