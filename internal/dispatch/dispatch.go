// Package dispatch hands journaled events to plugins. Each plugin instance gets its own durable
// JetStream consumer, filtered to the event types it declared, so a slow or failing plugin never
// holds back another one or the webhook.
//
// Delivery is at least once. Each Handle call gets its own deadline. A failed call is retried
// with exponential backoff and jitter (the only retry layer in emsflow), honouring a Retry-After
// the error carries; an error marked permanent, a panic, or retries exhausted (by age or by
// count) moves the event to the dead-letter stream with the last error and the attempt count.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"regexp"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/journal"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
)

// Policy is the delivery policy of one plugin instance.
type Policy struct {
	// Timeout is the deadline of one Handle call.
	Timeout time.Duration
	// InitialBackoff is the delay before the first retry; it doubles up to MaxBackoff.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// GiveUpAfter is how long after the first delivery an event is dead-lettered if it still fails.
	GiveUpAfter time.Duration
	// MaxDeliver bounds the attempts; 0 means bounded by GiveUpAfter only.
	MaxDeliver int
	// Concurrency is how many Handle calls of the plugin may run at once.
	Concurrency int
}

func (p Policy) withDefaults() Policy {
	if p.Timeout <= 0 {
		p.Timeout = 30 * time.Second
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = time.Second
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 5 * time.Minute
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	if p.GiveUpAfter <= 0 {
		p.GiveUpAfter = 24 * time.Hour
	}
	if p.Concurrency < 1 {
		p.Concurrency = 1
	}
	return p
}

// Backoff returns the delay before retry number attempt (1 for the first retry): exponential
// from InitialBackoff, capped at MaxBackoff, with "equal jitter" (between half and the whole of
// the exponential value) so that many failing events do not retry in lockstep.
func (p Policy) Backoff(attempt int, rnd func() float64) time.Duration {
	d := p.InitialBackoff
	for i := 1; i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	half := d / 2
	return half + time.Duration(rnd()*float64(d-half))
}

// Entry is one plugin instance with its policy.
type Entry struct {
	Plugin plugins.Plugin
	Policy Policy
}

// Dispatcher runs one consumer per plugin.
type Dispatcher struct {
	j       *journal.Journal
	log     zerolog.Logger
	entries []Entry
	m       *metrics
	now     func() time.Time

	wg        sync.WaitGroup // runners
	cancel    context.CancelFunc
	runners   []*runner
	gaugeWG   sync.WaitGroup // the pending-gauge refresher
	stopGauge context.CancelFunc
}

// New validates the routing table: every plugin's declared events must be known EMS event names
// and plugin names must be unique. It does no I/O.
func New(j *journal.Journal, entries []Entry, reg prometheus.Registerer, log zerolog.Logger) (*Dispatcher, error) {
	var errs []error
	seen := map[string]bool{}
	for _, e := range entries {
		name := e.Plugin.Name()
		if seen[name] {
			errs = append(errs, fmt.Errorf("plugin %s: configured twice", name))
		}
		seen[name] = true
		for _, t := range e.Plugin.Events() {
			if !event.IsKnown(t) {
				errs = append(errs, fmt.Errorf("plugin %s: subscribes to unknown event %q", name, t))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Dispatcher{j: j, log: log, entries: entries, m: m, now: time.Now}, nil
}

// Start creates or updates the durable consumers and starts delivering. It returns once every
// consumer exists.
func (d *Dispatcher) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	for _, e := range d.entries {
		if len(e.Plugin.Events()) == 0 {
			d.log.Info().Str(logfield.Plugin, e.Plugin.Name()).Msg("plugin subscribes to no events")
			continue
		}
		r, err := d.newRunner(ctx, e)
		if err != nil {
			cancel()
			d.wg.Wait()
			return err
		}
		d.runners = append(d.runners, r)
		d.wg.Go(func() { r.run(runCtx) })
	}
	gctx, stop := context.WithCancel(runCtx)
	d.stopGauge = stop
	d.gaugeWG.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			d.UpdatePending(gctx)
			select {
			case <-gctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return nil
}

// Stop stops fetching new events and waits, until ctx ends, for in-flight Handle calls. Calls
// still running when ctx ends are abandoned: their events are redelivered after a restart.
func (d *Dispatcher) Stop(ctx context.Context) error {
	if d.stopGauge != nil {
		d.stopGauge()
		d.gaugeWG.Wait()
	}
	for _, r := range d.runners {
		r.stopFetching()
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		d.cancel()
		return nil
	case <-ctx.Done():
		d.cancel() // cancels the handlers' contexts
		<-done
		return fmt.Errorf("dispatcher stop: %w", context.Cause(ctx))
	}
}

// ConsumerName returns the durable consumer name of a plugin instance.
func ConsumerName(plugin string) string {
	return "plugin-" + consumerNameRe.ReplaceAllString(plugin, "_")
}

var consumerNameRe = regexp.MustCompile(`[^A-Za-z0-9_-]`)

type runner struct {
	d      *Dispatcher
	p      plugins.Plugin
	pol    Policy
	cons   jetstream.Consumer
	keyer  plugins.Keyer
	decode func(jetstream.Msg) (*event.Event, error)
	log    zerolog.Logger
	rndMu  sync.Mutex
	rnd    *rand.Rand
	cc     jetstream.ConsumerConfig

	iterMu  sync.Mutex // guards iter, stopped and cons after Start
	iter    jetstream.MessagesContext
	stopped bool
}

func (d *Dispatcher) newRunner(ctx context.Context, e Entry) (*runner, error) {
	pol := e.Policy.withDefaults()
	name := e.Plugin.Name()
	filters := make([]string, 0, len(e.Plugin.Events()))
	for _, t := range e.Plugin.Events() {
		filters = append(filters, journal.TypeFilter(t))
	}
	filters = append(filters, journal.RedriveFilter(name))
	cc := jetstream.ConsumerConfig{
		Durable:        ConsumerName(name),
		Description:    "emsflow plugin " + name,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		// The ack wait covers one Handle call plus slack; a call that outlives it is cancelled
		// by its own deadline first, so JetStream never redelivers an event still in progress.
		AckWait:    pol.Timeout + 10*time.Second,
		MaxDeliver: -1,
		// Enough in flight to keep the workers busy between pulls, few enough that buffered
		// messages are handled well within the ack wait even for slow plugins.
		MaxAckPending: pol.Concurrency * 16,
	}
	cons, err := d.j.Stream().CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("consumer for plugin %s: %w", name, err)
	}
	r := &runner{
		d: d, p: e.Plugin, pol: pol, cons: cons, cc: cc,
		log: d.log.With().Str(logfield.Plugin, name).Logger(),
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	r.keyer, _ = e.Plugin.(plugins.Keyer)
	r.decode = journal.DecodeMsg
	if er, ok := e.Plugin.(plugins.EnvelopeReader); ok && er.EnvelopeOnly() {
		r.decode = journal.DecodeMsgEnvelope
	}
	d.m.pending.WithLabelValues(name)
	return r, nil
}

func (r *runner) stopFetching() {
	r.iterMu.Lock()
	defer r.iterMu.Unlock()
	r.stopped = true
	if r.iter != nil {
		r.iter.Drain()
	}
}

// Pull request expiry and idle heartbeat of the plugins' consumers.
const (
	pullExpiry    = 5 * time.Second
	pullHeartbeat = time.Second
)

// nextWait bounds one Next call while events may be flowing. nats.go (v1.55) can lose its own
// wake-up: when the iterator takes the last buffered event while its next pull request is still
// being published, it skips the request and then waits with none at the server, until its
// missed-heartbeat error two heartbeats later. Under load that was a 2 s stall with events
// pending, no pull request at the server and none outstanding in the client (measured by polling
// both; nats-io/nats.go#1622 reports the same state). Every Next call first decides whether to
// pull more, so calling it again after nextWait ends such a stall. After idleBeforeLongWait
// without an event, Next waits without a limit, as before: a pull request the server really lost
// (a restart, a leader change) is still found by the missed-heartbeat check, which only runs
// within one long Next call.
const (
	nextWait           = 100 * time.Millisecond
	idleBeforeLongWait = 2 * pullHeartbeat
)

// errStopped ends run once Stop has begun.
var errStopped = errors.New("dispatcher stopping")

// open starts fetching the plugin's events. After the first time it creates or updates the
// durable consumer again, in case it was deleted under the running service (a recreated
// consumer starts at events journaled from then on).
func (r *runner) open(ctx context.Context, again bool) (jetstream.MessagesContext, error) {
	r.iterMu.Lock()
	defer r.iterMu.Unlock()
	if r.stopped {
		return nil, errStopped
	}
	if again {
		cons, err := r.d.j.Stream().CreateOrUpdateConsumer(ctx, r.cc)
		if err != nil {
			return nil, fmt.Errorf("consumer for plugin %s: %w", r.p.Name(), err)
		}
		r.cons = cons
	}
	iter, err := r.cons.Messages(
		jetstream.PullMaxMessages(r.pol.Concurrency*8),
		// A short heartbeat and pull expiry bound how long a lost pull request goes unnoticed
		// while the runner waits without a limit (see nextWait): about two seconds; with the
		// defaults it lasted 30 s.
		jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat),
	)
	if err != nil {
		return nil, err
	}
	r.iter = iter
	return iter, nil
}

func (r *runner) isStopped() bool {
	r.iterMu.Lock()
	defer r.iterMu.Unlock()
	return r.stopped
}

// pause waits after the failures-th consecutive fetch error (100 ms doubling to 5 s). It
// reports false when the dispatcher is stopping instead.
func (r *runner) pause(ctx context.Context, failures int) bool {
	d := min(100*time.Millisecond<<min(failures-1, 6), 5*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return !r.isStopped()
	}
}

// run fetches messages and hands them to Concurrency workers. With a Keyer, each key always goes
// to the same worker, so events with one key are handled one at a time in delivery order.
//
// Fetching ends only when the dispatcher stops. Any other error is logged, counted and waited
// out: a missed heartbeat under load (the iterator goes on), or an iterator that closed under
// us (it is opened again, the consumer recreated if it was deleted). Before, one missed
// heartbeat ended the plugin's deliveries until a restart.
func (r *runner) run(ctx context.Context) {
	n := r.pol.Concurrency
	queues := make([]chan delivery, n)
	shared := make(chan delivery)
	var workers sync.WaitGroup
	for i := range n {
		queues[i] = make(chan delivery, 1)
		workers.Go(func() {
			for {
				select {
				case m, ok := <-queues[i]:
					if !ok {
						return
					}
					r.deliver(ctx, m)
				case m, ok := <-shared:
					if !ok {
						// shared is closed only after every keyed queue is, but a keyed queue
						// may still hold its last message.
						for m := range queues[i] {
							r.deliver(ctx, m)
						}
						return
					}
					r.deliver(ctx, m)
				}
			}
		})
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		close(shared)
		workers.Wait()
	}()
	var iter jetstream.MessagesContext
	var idle time.Duration // waited in short Next calls without an event
	opened, failures := false, 0
	for {
		if iter == nil {
			it, err := r.open(ctx, opened)
			if errors.Is(err, errStopped) {
				return
			}
			if err != nil {
				failures++
				r.d.m.consumeErrors.WithLabelValues(r.p.Name()).Inc()
				r.log.Error().Err(err).Int(logfield.Attempt, failures).Msg("start fetching events; trying again")
				if !r.pause(ctx, failures) {
					return
				}
				continue
			}
			iter, opened = it, true
		}
		var (
			m   jetstream.Msg
			err error
		)
		if idle < idleBeforeLongWait {
			m, err = iter.Next(jetstream.NextMaxWait(nextWait))
		} else {
			m, err = iter.Next()
		}
		if errors.Is(err, nats.ErrTimeout) {
			idle += nextWait
			continue
		}
		idle = 0
		if err != nil {
			if r.isStopped() || ctx.Err() != nil {
				return
			}
			failures++
			r.d.m.consumeErrors.WithLabelValues(r.p.Name()).Inc()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				r.log.Warn().Err(err).Int(logfield.Attempt, failures).Msg("fetching events stopped; opening again")
				iter = nil
			} else {
				r.log.Warn().Err(err).Int(logfield.Attempt, failures).Msg("fetching events; carrying on")
			}
			if !r.pause(ctx, failures) {
				return
			}
			continue
		}
		failures = 0
		if ctx.Err() != nil {
			// Stopping past the deadline: hand what was fetched straight back, so it is
			// redelivered at once after a restart instead of after the ack wait.
			_ = m.Nak()
			continue
		}
		d := delivery{m: m}
		d.ev, d.err = r.decode(m)
		key := ""
		if r.keyer != nil && d.err == nil {
			key = r.keyer.OrderKey(d.ev)
		}
		q := shared
		if key != "" {
			h := fnv.New32a()
			h.Write([]byte(key))
			q = queues[int(h.Sum32()%uint32(n))]
		}
		select {
		case q <- d:
		case <-ctx.Done():
			_ = m.Nak()
		}
	}
}

// delivery is a fetched message with its event decoded once.
type delivery struct {
	m   jetstream.Msg
	ev  *event.Event
	err error // decoding error
}

// deliver runs one attempt and settles the message: ack, nak with a delay, or dead-letter.
func (r *runner) deliver(ctx context.Context, d delivery) {
	m, ev := d.m, d.ev
	name := r.p.Name()
	md, err := m.Metadata()
	if err != nil {
		r.log.Error().Err(err).Msg("message metadata")
		_ = m.Nak()
		return
	}
	attempt := int(md.NumDelivered)
	if d.err != nil {
		// The webhook only journals events it decoded, so this is corruption: keep it for an
		// operator rather than retry forever.
		r.deadLetter(ctx, m, md, nil, plugins.Permanent(fmt.Errorf("decode journaled event: %w", d.err)))
		return
	}
	start := r.d.now()
	err = r.call(ctx, ev)
	r.d.m.latency.WithLabelValues(name).Observe(r.d.now().Sub(start).Seconds())
	if err == nil {
		r.d.m.handled.WithLabelValues(name).Inc()
		if aerr := m.Ack(); aerr != nil {
			r.log.Warn().Err(aerr).Str(logfield.EventType, ev.Type).Msg("ack")
		}
		return
	}
	r.d.m.failed.WithLabelValues(name).Inc()
	if ctx.Err() != nil {
		// Shutting down: leave the event for redelivery after the restart.
		_ = m.Nak()
		return
	}
	age := r.d.now().Sub(md.Timestamp)
	exhausted := age >= r.pol.GiveUpAfter || (r.pol.MaxDeliver > 0 && attempt >= r.pol.MaxDeliver)
	if plugins.IsPermanent(err) || exhausted {
		r.deadLetter(ctx, m, md, ev, err)
		return
	}
	delay := r.backoff(attempt)
	if ra, ok := plugins.RetryAfter(err); ok && ra > delay {
		delay = min(ra, r.pol.MaxBackoff)
	}
	r.d.m.retried.WithLabelValues(name).Inc()
	r.log.Warn().Err(err).Str(logfield.EventType, ev.Type).Str(logfield.EventKey, ev.Key()).
		Int(logfield.Attempt, attempt).Dur(logfield.Delay, delay).Msg("handle failed, will retry")
	if nerr := m.NakWithDelay(delay); nerr != nil {
		r.log.Warn().Err(nerr).Msg("nak")
	}
}

func (r *runner) backoff(attempt int) time.Duration {
	r.rndMu.Lock()
	defer r.rndMu.Unlock()
	return r.pol.Backoff(attempt, r.rnd.Float64)
}

// panicError is a recovered plugin panic; it is permanent.
type panicError struct {
	val   any
	stack []byte
}

func (e *panicError) Error() string   { return fmt.Sprintf("plugin panic: %v", e.val) }
func (e *panicError) Permanent() bool { return true }

// call runs Handle with its own deadline and turns a panic into a permanent error.
func (r *runner) call(ctx context.Context, ev *event.Event) (err error) {
	cctx, cancel := context.WithTimeoutCause(ctx, r.pol.Timeout,
		fmt.Errorf("plugin %s: handle %s: exceeded %s", r.p.Name(), ev.Type, r.pol.Timeout))
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			r.d.m.panics.WithLabelValues(r.p.Name()).Inc()
			err = &panicError{val: v, stack: debug.Stack()}
		}
	}()
	err = r.p.Handle(cctx, ev)
	if err != nil && cctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", context.Cause(cctx), err)
	}
	return err
}

// deadLetter stores the event with the reason in the dead-letter stream, then terminates it in
// the event stream. The dead-letter message id is plugin+sequence, so a crash between the two
// steps does not store it twice.
func (r *runner) deadLetter(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, ev *event.Event, cause error) {
	name := r.p.Name()
	dm := nats.NewMsg(journal.DeadPrefix + "." + journal.Token(name))
	dm.Data = m.Data()
	for k, v := range m.Headers() {
		if k != nats.MsgIdHdr {
			dm.Header[k] = v
		}
	}
	dm.Header.Set(journal.HeaderPlugin, name)
	dm.Header.Set(journal.HeaderError, cause.Error())
	dm.Header.Set(journal.HeaderAttempts, strconv.FormatUint(md.NumDelivered, 10))
	dm.Header.Set(journal.HeaderSubject, m.Subject())
	dm.Header.Set(journal.HeaderSequence, strconv.FormatUint(md.Sequence.Stream, 10))
	dm.Header.Set(journal.HeaderFirstAt, md.Timestamp.UTC().Format(time.RFC3339Nano))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := r.d.j.JetStream().PublishMsg(pctx, dm,
		jetstream.WithMsgID(name+":"+strconv.FormatUint(md.Sequence.Stream, 10)))
	if err != nil {
		r.log.Error().Err(err).Msg("dead-letter publish; event stays for redelivery")
		_ = m.NakWithDelay(r.pol.InitialBackoff)
		return
	}
	r.d.m.dead.WithLabelValues(name).Inc()
	l := r.log.Error().Err(cause).Uint64(logfield.Attempt, md.NumDelivered).Str("subject", m.Subject())
	var pe *panicError
	if errors.As(cause, &pe) {
		l = l.Bytes("stack", pe.stack)
	}
	if ev != nil {
		l = l.Str(logfield.EventType, ev.Type).Str(logfield.EventKey, ev.Key()).Str(logfield.EMS, ev.EMS)
	}
	l.Msg("event dead-lettered")
	if err := m.TermWithReason("dead-lettered"); err != nil {
		r.log.Warn().Err(err).Msg("term")
	}
}

// UpdatePending refreshes the pending gauge of every consumer (unprocessed plus unacknowledged).
func (d *Dispatcher) UpdatePending(ctx context.Context) {
	for _, r := range d.runners {
		r.iterMu.Lock()
		cons := r.cons
		r.iterMu.Unlock()
		info, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		d.m.pending.WithLabelValues(r.p.Name()).Set(float64(info.NumPending + uint64(info.NumAckPending)))
	}
}
