package emssim

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/internal/logfield"
)

// Sink is one RPC event sink, as in config.lua's eventLogger.sinks (reference §1.4): events are
// POSTed as JSON to URL, one event per POST on a new connection, the answer ignored, nothing
// retried.
type Sink struct {
	// URL receives the POSTs; its path and query are used as given.
	URL string `json:"url"`
	// EnabledEvents lists the event types this sink receives; empty means all.
	EnabledEvents []string `json:"enabledEvents,omitempty"`
	// CustomData is copied into payload.customData of every event to this sink (JSON null
	// when nil).
	CustomData any `json:"customData,omitempty"`
}

// Delivery records what happened to one event on one sink.
type Delivery struct {
	// Sink is the sink URL.
	Sink string `json:"sink"`
	// ID is the envelope id.
	ID uint64 `json:"id"`
	// Type is the event type.
	Type string `json:"type"`
	// Outcome is "posted" (the receiver answered, whatever the status), "failed" (no answer),
	// or "dropped" (by a fault).
	Outcome string `json:"outcome"`
	// Status is the receiver's HTTP status when posted.
	Status int `json:"status,omitempty"`
	// Duplicate is set on the second POST of a duplicated event.
	Duplicate bool `json:"duplicate,omitempty"`
	// Time is when the outcome was known.
	Time time.Time `json:"time"`
}

// EventStats counts event deliveries over all sinks.
type EventStats struct {
	// Emitted is the number of events logged (the envelope id counter).
	Emitted uint64 `json:"emitted"`
	// Posted counts POSTs that got an HTTP answer, duplicates included.
	Posted uint64 `json:"posted"`
	// Failed counts POSTs that got no answer (connection refused, timeout).
	Failed uint64 `json:"failed"`
	// Dropped counts sink deliveries dropped by a fault or StopPosting.
	Dropped uint64 `json:"dropped"`
	// Duplicated counts the extra POSTs of duplicated events.
	Duplicated uint64 `json:"duplicated"`
}

const (
	userAgent      = "EvoStream Media Server (www.evostream.com)"
	maxDeliveryLog = 20000
)

type outgoing struct {
	body []byte
	id   uint64
	typ  string
	dup  bool
}

type sinkQueue struct {
	cfg     Sink
	enabled map[string]bool
	mu      sync.Mutex
	items   []outgoing
	wake    chan struct{}
}

// emitter is EMS's event logger with its RPC sinks. Lock order: Sim.mu may be held when
// calling emit; emitter.mu never calls into Sim.
type emitter struct {
	log    zerolog.Logger
	now    func() time.Time
	pid    uint64
	client *http.Client

	mu      sync.Mutex
	nextID  uint64
	faults  Faults
	rng     *rand.Rand
	sinks   []*sinkQueue
	history []Delivery
	stats   EventStats

	ctx     context.Context
	cancel  context.CancelFunc
	closing chan struct{}
	wg      sync.WaitGroup
}

func newEmitter(sinks []Sink, pid uint64, seed uint64, now func() time.Time, log zerolog.Logger) *emitter {
	ctx, cancel := context.WithCancel(context.Background())
	em := &emitter{
		log: log, now: now, pid: pid, nextID: 1,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		},
		ctx: ctx, cancel: cancel, closing: make(chan struct{}),
	}
	for _, sk := range sinks {
		q := &sinkQueue{cfg: sk, wake: make(chan struct{}, 1)}
		if len(sk.EnabledEvents) > 0 {
			q.enabled = map[string]bool{}
			for _, e := range sk.EnabledEvents {
				q.enabled[e] = true
			}
		}
		em.sinks = append(em.sinks, q)
	}
	return em
}

func (em *emitter) start() {
	for _, q := range em.sinks {
		em.wg.Add(1)
		go em.run(q)
	}
}

// emit logs one event: it takes the next envelope id and queues one POST per interested sink.
// It never blocks on the network.
func (em *emitter) emit(typ string, payload obj) {
	em.mu.Lock()
	defer em.mu.Unlock()
	id := em.nextID
	em.nextID++
	em.stats.Emitted++
	ts := uint64(em.now().Unix())
	for _, q := range em.sinks {
		if q.enabled != nil && !q.enabled[typ] {
			continue
		}
		p := cloneObj(payload)
		if p == nil {
			p = obj{}
		}
		p["PID"] = em.pid
		p["customData"] = q.cfg.CustomData
		body, err := marshalEMS(obj{"id": id, "payload": p, "processId": em.pid, "timestamp": ts, "type": typ})
		if err != nil {
			em.log.Error().Err(err).Str(logfield.EventType, typ).Msg("encode event")
			continue
		}
		f := em.faults
		if f.StopPosting || (f.DropRate > 0 && em.rng.Float64() < f.DropRate) {
			em.stats.Dropped++
			em.record(Delivery{Sink: q.cfg.URL, ID: id, Type: typ, Outcome: "dropped", Time: em.now()})
			continue
		}
		items := []outgoing{{body: body, id: id, typ: typ}}
		if f.DuplicateRate > 0 && em.rng.Float64() < f.DuplicateRate {
			items = append(items, outgoing{body: body, id: id, typ: typ, dup: true})
		}
		if f.Delay > 0 || f.Jitter > 0 {
			for _, it := range items {
				d := f.Delay
				if f.Jitter > 0 {
					d += time.Duration(em.rng.Int64N(int64(f.Jitter)))
				}
				em.wg.Add(1)
				go em.delayed(q, it, d)
			}
			continue
		}
		q.mu.Lock()
		q.items = append(q.items, items...)
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

func (em *emitter) setFaults(f Faults) {
	em.mu.Lock()
	em.faults = f
	em.mu.Unlock()
}

func (em *emitter) record(d Delivery) {
	if len(em.history) >= maxDeliveryLog {
		em.history = em.history[len(em.history)/2:]
	}
	em.history = append(em.history, d)
}

func (em *emitter) delayed(q *sinkQueue, it outgoing, d time.Duration) {
	defer em.wg.Done()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-em.ctx.Done():
		return
	}
	em.post(q, it)
}

// run posts a sink's queued events in order, each on its own connection.
func (em *emitter) run(q *sinkQueue) {
	defer em.wg.Done()
	for {
		q.mu.Lock()
		items := q.items
		q.items = nil
		q.mu.Unlock()
		for _, it := range items {
			em.post(q, it)
		}
		if len(items) > 0 {
			continue
		}
		select {
		case <-q.wake:
		case <-em.closing:
			q.mu.Lock()
			empty := len(q.items) == 0
			q.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

func (em *emitter) post(q *sinkQueue, it outgoing) {
	req, err := http.NewRequestWithContext(em.ctx, http.MethodPost, q.cfg.URL, bytes.NewReader(it.body))
	d := Delivery{Sink: q.cfg.URL, ID: it.id, Type: it.typ, Duplicate: it.dup}
	if err == nil {
		req.Header.Set("User-Agent", userAgent)
		req.Header.Set("Content-Type", "application/json")
		var resp *http.Response
		resp, err = em.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			d.Outcome, d.Status = "posted", resp.StatusCode
		}
	}
	if err != nil {
		// EMS logs "Connection failed" and drops the event (reference §1.1).
		d.Outcome = "failed"
		em.log.Debug().Err(err).Str(logfield.Sink, q.cfg.URL).Str(logfield.EventType, it.typ).
			Uint64(logfield.EventID, it.id).Msg("event post failed, dropped")
	}
	em.mu.Lock()
	d.Time = em.now()
	if d.Outcome == "posted" {
		em.stats.Posted++
	} else {
		em.stats.Failed++
	}
	if it.dup {
		em.stats.Duplicated++
	}
	em.record(d)
	em.mu.Unlock()
}

// close lets queued POSTs go out for up to grace, then aborts what is left.
func (em *emitter) close(grace time.Duration) {
	close(em.closing)
	done := make(chan struct{})
	go func() { em.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		em.cancel()
		<-done
	}
	em.cancel()
}

func (em *emitter) snapshot() (EventStats, []Delivery) {
	em.mu.Lock()
	defer em.mu.Unlock()
	return em.stats, append([]Delivery(nil), em.history...)
}
