// Package sinks is the EventSinks plugin: it forwards EMS events to several sinks, each with
// Flussonic-style only/except filters, over HTTP(S) POST (optionally signed), to a JSON-lines
// file, or as an email digest, without ever dropping an accepted event silently.
//
// # Durability and decoupling
//
// The dispatcher gives this plugin instance its own durable JetStream consumer and keeps each
// event in the journal until Handle returns nil. Handle does no network I/O: it filters the
// event and appends it to the durable on-disk queue of every sink it matches (under
// DataDir/<sink name>/queue, fsynced), then returns. A slow or dead receiver therefore never
// slows the webhook, the dispatcher or the other plugins, and one sink never waits for another.
// Appends are idempotent by event key (event.Event.Key), so a redelivered event is queued once.
//
// Each sink has one sender goroutine, started by Start and waited for by Close, which reads the
// queue in order and delivers one batch at a time, so receivers see events in queue order. A
// batch is sent when it is full (batch_size) or when its first event has waited throttle_delay
// (for email, digest_interval; an email is also never sent sooner than digest_interval after
// the previous one). A failed batch is retried with capped exponential backoff (resend_delay,
// resend_max_delay, honouring Retry-After) until it succeeds, or until resend_limit attempts in
// this process or until its oldest event is older than resend_timeout (which counts across
// restarts, as queue records carry their queueing time). Then, and at once for a permanent
// failure (an HTTP 4xx other than 408 and 429, an SMTP 5xx), the batch is written to
// DataDir/<sink name>/dead-letter.jsonl, counted in emsflow_sink_dead_lettered_total and logged.
//
// Undelivered events survive a restart: the queue resumes from its commit file. A crash between
// a delivery and its commit sends that batch again, so delivery is at least once; receivers can
// deduplicate by webhook-id (Standard Webhooks) or by the events' own id, processId and ems.
//
// # Configuration
//
//	"EventSinks": {"plugin_switch": "enabled", "parameters": {"sinks": [
//	  {"name": "ops", "url": "https://hooks.example.com/ems", "only": ["type=inStreamCreated,inStreamClosed"],
//	   "sign_key": "whsec_...", "signature": "standard-webhooks", "batch_size": 100, "throttle_delay": "1s",
//	   "resend_limit": 0, "resend_timeout": "24h", "timeout": "10s", "headers": {"authorization": "Bearer ..."}},
//	  {"name": "archive", "url": "events/all.jsonl", "except": ["type=hls*"], "max_bytes": 104857600, "rotate_every": "24h"},
//	  {"name": "noc", "url": "smtp://user:pass@mail.example.com:587", "starttls": true, "from": "emsflow@example.com",
//	   "to": ["noc@example.com"], "subject": "source lost", "digest_interval": "5m", "only": "type=inStreamClosed"}]}}
//
// Keys by kind: every sink takes name, url, only, except, batch_size, resend_limit,
// resend_timeout, resend_delay, resend_max_delay and timeout; HTTP sinks take sign_key,
// signature ("sha1", the default when sign_key is set, or "standard-webhooks"), headers and
// throttle_delay; file sinks take max_bytes (default 100 MiB, 0 = no size rotation),
// rotate_every (0 = none) and throttle_delay; email sinks take from, to, subject, starttls and
// digest_interval (default 5m); credentials in an smtp:// URL need starttls: true (or smtps://)
// unless the server is on localhost. HTTPS and TLS email sinks (smtps://, or starttls) take
// ca_file, a PEM file of certificate authorities trusted besides the system roots, relative to
// the configuration file's folder; it is read when the plugin is built, so check-config reports
// a file it cannot use. A key that does not apply to a sink's kind is an error. In the INI form
// "sinks" may be given as a JSON string.
//
// # What receivers get
//
// HTTP sinks POST a JSON array of events in EMS's own envelope ({"id", "timestamp",
// "processId", "type", "payload"}) with an added "ems" field naming the sending EMS. File sinks
// write the same objects, one per line. Email sinks send one plain-text digest listing time,
// event type, stream (or file) and EMS of every event since the previous email.
package sinks

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/filter"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
)

// Kind is the plugin type name used in configuration.
const Kind = "EventSinks"

var _ plugins.Plugin = (*Sinks)(nil)
var _ plugins.Starter = (*Sinks)(nil)
var _ plugins.Closer = (*Sinks)(nil)
var _ plugins.Keyer = (*Sinks)(nil)

// Sinks is one EventSinks plugin instance. Handle may be called concurrently; each sink's queue
// serialises its appends.
type Sinks struct {
	name  string
	deps  plugins.Deps
	sinks []*sink
	m     *metrics

	mu      sync.RWMutex
	started bool
	closed  bool
	hard    context.CancelFunc
}

// Factory builds an EventSinks instance from raw parameters; it validates them and does no I/O
// but reading the sinks' ca_file.
var Factory = plugins.FactoryOf(New)

// New builds an instance from typed configuration. It validates the configuration and reads
// the sinks' ca_file, so check-config reports one it cannot use, and does no other I/O; Start
// opens the queues.
func New(name string, cfg Config, deps plugins.Deps) (*Sinks, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{}
	}
	if deps.DataDir == "" {
		return nil, errors.New("event sinks need a data folder for their queues")
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Sinks{name: name, deps: deps, m: m}
	for _, sc := range cfg.Sinks {
		k, err := newSink(sc, deps, m)
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
		}
		s.sinks = append(s.sinks, k)
	}
	return s, nil
}

// Name returns the instance name.
func (s *Sinks) Name() string { return s.name }

// OrderKey makes the dispatcher hand over the events of one EMS one at a time, in journal
// order: a sink queues events in the order Handle is called, so concurrent calls would let
// receivers see an EMS's events out of order. Events of different EMS servers still run
// concurrently.
func (s *Sinks) OrderKey(ev *event.Event) string { return "ems:" + ev.EMS }

// Events returns the event types some sink may forward: the exact types named by the sinks'
// only filters when every sink restricts "type" to exact names, else every known event.
func (s *Sinks) Events() []string {
	var all []string
	for _, k := range s.sinks {
		types, ok := k.filter.Types()
		if !ok {
			return slices.Clone(event.Known)
		}
		for _, t := range types {
			if !slices.Contains(all, t) {
				all = append(all, t)
			}
		}
	}
	return all
}

// Start opens every sink's queue and starts its sender.
func (s *Sinks) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("event sinks already started")
	}
	var opened []*sink
	for _, k := range s.sinks {
		if err := k.open(); err != nil {
			for _, o := range opened {
				_ = o.q.close()
			}
			return fmt.Errorf("start sink %s: %w", k.cfg.Name, err)
		}
		opened = append(opened, k)
	}
	hardCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.hard = cancel
	for _, k := range s.sinks {
		go k.run(hardCtx)
	}
	s.started = true
	return nil
}

// Handle queues ev durably on every sink whose filter it passes and returns; delivery happens in
// the background. Events queued before are recognised by key and not queued twice.
func (s *Sinks) Handle(ctx context.Context, ev *event.Event) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.started || s.closed {
		return errors.New("event sinks are not running")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	raw := ev.Raw
	if len(raw) == 0 {
		b, err := ev.MarshalJSON()
		if err != nil {
			return plugins.Permanent(fmt.Errorf("encode event: %w", err))
		}
		raw = b
	}
	key := ev.Key()
	at := s.deps.Now().UnixNano()
	var errs []error
	for _, k := range s.sinks {
		if !k.filter.Match(ev) {
			continue
		}
		added, err := k.q.append(key, ev.EMS, at, raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("queue event for sink %s: %w", k.cfg.Name, err))
			continue
		}
		if !added {
			s.m.duplicates.WithLabelValues(k.cfg.Name).Inc()
		}
		k.updateDepth()
	}
	return errors.Join(errs...)
}

// Close stops the senders and closes the queues. A delivery in flight may finish until ctx
// ends; then it is cancelled and its batch stays queued for the next start.
func (s *Sinks) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.closed {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	for _, k := range s.sinks {
		close(k.stop)
	}
	for _, k := range s.sinks {
		select {
		case <-k.done:
		case <-ctx.Done():
			s.hard()
			<-k.done
		}
	}
	s.hard()
	var errs []error
	for _, k := range s.sinks {
		if err := k.q.close(); err != nil {
			errs = append(errs, fmt.Errorf("close queue of sink %s: %w", k.cfg.Name, err))
		}
		if err := k.d.close(); err != nil {
			errs = append(errs, fmt.Errorf("close sink %s: %w", k.cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}

// deliverer sends one batch to a sink's destination.
type deliverer interface {
	deliver(ctx context.Context, batch []record) error
	close() error
}

// sink is one configured sink: its filter, queue, deliverer and sender goroutine.
type sink struct {
	cfg    SinkConfig
	filter filter.Filter
	log    zerolog.Logger
	now    func() time.Time
	m      *metrics
	dir    string
	q      *queue
	d      deliverer

	// linger is how long a batch may wait to fill after its first event; minGap is the least
	// time between two deliveries.
	linger, minGap time.Duration
	// tick bounds every wait, so that a clock that jumps (an injected one in tests, or a
	// suspended machine) is noticed; tests shorten it.
	tick time.Duration
	// segBytes is the queue's segment size; tests shorten it.
	segBytes int64

	stop chan struct{}
	done chan struct{}
}

func newSink(sc SinkConfig, deps plugins.Deps, m *metrics) (*sink, error) {
	k := &sink{
		cfg:    sc,
		filter: sc.Filter(),
		log:    deps.Log.With().Str(logfield.Sink, sc.Name).Logger(),
		now:    deps.Now,
		m:      m,
		dir:    filepath.Join(deps.DataDir, sc.Name),
		linger: sc.ThrottleDelay.Std(),
		tick:   time.Second,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	var roots *x509.CertPool // nil: the system roots
	if sc.CAFile != "" {
		var err error
		if roots, err = loadCAFile(deps.Resolve(sc.CAFile)); err != nil {
			return nil, err
		}
	}
	switch sc.Kind() {
	case kindHTTP:
		client, err := withRoots(deps.HTTPClient, roots)
		if err != nil {
			return nil, err
		}
		d, err := newHTTPDeliverer(sc, client, deps.Now)
		if err != nil {
			return nil, err
		}
		k.d = d
	case kindFile:
		k.d = newFileDeliverer(deps.Resolve(sc.filePath()), sc.MaxBytes, sc.RotateEvery.Std(), deps.Now)
	case kindEmail:
		d, err := newEmailDeliverer(sc, deps.Now)
		if err != nil {
			return nil, err
		}
		d.tlsConfig.RootCAs = roots
		k.d = d
		k.linger = sc.DigestInterval.Std()
		k.minGap = sc.DigestInterval.Std()
	}
	return k, nil
}

func (k *sink) open() error {
	q, err := openQueue(filepath.Join(k.dir, "queue"), k.segBytes)
	if err != nil {
		return err
	}
	k.q = q
	k.updateDepth()
	return nil
}

func (k *sink) updateDepth() { k.m.depth.WithLabelValues(k.cfg.Name).Set(float64(k.q.depth())) }

// deadLetterPath is where given-up events go, one JSON object per line.
func (k *sink) deadLetterPath() string { return filepath.Join(k.dir, "dead-letter.jsonl") }

// deadLetter writes a batch to the dead-letter file durably.
func (k *sink) deadLetter(batch []record, reason error, attempts int) error {
	f, err := os.OpenFile(k.deadLetterPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open dead-letter file: %w", err)
	}
	at := k.now().UTC().Format(time.RFC3339Nano)
	var buf []byte
	for _, r := range batch {
		line, err := json.Marshal(struct {
			DeadLetteredAt string          `json:"dead_lettered_at"`
			QueuedAt       string          `json:"queued_at"`
			Sink           string          `json:"sink"`
			Reason         string          `json:"reason"`
			Attempts       int             `json:"attempts"`
			EMS            string          `json:"ems,omitempty"`
			Event          json.RawMessage `json:"event"`
		}{at, time.Unix(0, r.At).UTC().Format(time.RFC3339Nano), k.cfg.Name, reason.Error(), attempts, r.EMS, r.Event})
		if err != nil {
			f.Close()
			return fmt.Errorf("encode dead letter: %w", err)
		}
		buf = append(append(buf, line...), '\n')
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return fmt.Errorf("write dead-letter file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync dead-letter file: %w", err)
	}
	return f.Close()
}
