// Package act holds what the stream plugins (autorouter, recorder, loadbalancer) share about
// acting on EMS: their counters of actions, skips and repairs, a per-key lock that makes
// check-then-act atomic inside the process, and the joining of per-target errors so that one
// permanent failure does not stop the retry of a retryable one.
package act

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// reconcileTimeout bounds one reconciliation pass of a stream plugin.
const reconcileTimeout = 2 * time.Minute

// ErrReconcileTimeout is the cause of a reconciliation pass's context when it took too long.
var ErrReconcileTimeout = errors.New("reconciliation pass took too long")

// ReconcileContext bounds one reconciliation pass (2 minutes; the cause is ErrReconcileTimeout).
func ReconcileContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, reconcileTimeout, ErrReconcileTimeout)
}

// Skip reasons shared by the stream plugins (label values of the skipped counter).
const (
	// SkipLoopGuard: the stream is emsflow's own work (tagged, marked, or pushed by emsflow).
	SkipLoopGuard = "loop_guard"
	// SkipDuplicate: what the event asks for exists already on EMS.
	SkipDuplicate = "duplicate"
	// SkipToken: the stream name does not contain the token.
	SkipToken = "token"
	// SkipSelf: the target is the EMS the stream is on.
	SkipSelf = "self"
	// SkipScope: the event's EMS is not one the instance acts on.
	SkipScope = "scope"
	// SkipNotInbound: the stream is not an inbound stream.
	SkipNotInbound = "not_inbound"
	// SkipExists: a stream of that name already runs on the target.
	SkipExists = "exists_at_target"
	// SkipLive: a close was ignored because the stream is live again.
	SkipLive = "stream_live"
)

// Metrics counts what one plugin instance did. The registerer carries the plugin label.
type Metrics struct {
	actions, skipped, repairs *prometheus.CounterVec
}

// NewMetrics registers emsflow_<subsystem>_actions_total{action},
// emsflow_<subsystem>_skipped_total{reason} and emsflow_<subsystem>_repairs_total{action}. A nil
// registerer keeps the counters unregistered; a collector registered before (a plugin rebuilt on
// the same registry) is reused.
func NewMetrics(reg prometheus.Registerer, subsystem string) *Metrics {
	m := &Metrics{
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "emsflow", Subsystem: subsystem, Name: "actions_total",
			Help: "EMS commands issued on events, by action.",
		}, []string{"action"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "emsflow", Subsystem: subsystem, Name: "skipped_total",
			Help: "Events that needed no action, by reason.",
		}, []string{"reason"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "emsflow", Subsystem: subsystem, Name: "repairs_total",
			Help: "Drift repaired by reconciliation, by action.",
		}, []string{"action"}),
	}
	if reg != nil {
		m.actions = register(reg, m.actions)
		m.skipped = register(reg, m.skipped)
		m.repairs = register(reg, m.repairs)
	}
	return m
}

func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if prev, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return prev
			}
		}
	}
	return c
}

// Action counts one command issued for an event.
func (m *Metrics) Action(action string) { m.actions.WithLabelValues(action).Inc() }

// Skip counts one event (or one target of an event) that needed nothing, and why.
func (m *Metrics) Skip(reason string) { m.skipped.WithLabelValues(reason).Inc() }

// Repair counts one repair made by reconciliation.
func (m *Metrics) Repair(action string) { m.repairs.WithLabelValues(action).Inc() }

// Locks hands out one mutex per key, so that a check of EMS state and the command that
// follows it are not interleaved with another handler or reconciliation working on the same
// stream. Unused keys are freed.
type Locks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// Lock locks key and returns its unlock function.
func (l *Locks) Lock(key string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	k := l.m[key]
	if k == nil {
		k = &keyLock{}
		l.m[key] = k
	}
	k.refs++
	l.mu.Unlock()
	k.mu.Lock()
	return func() {
		k.mu.Unlock()
		l.mu.Lock()
		k.refs--
		if k.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
}

// Join combines the errors of several independent targets. When any is retryable the result
// is retryable and wraps only those (the permanent ones are named in its text and fail again
// on the retry); when all are permanent the result is permanent. No errors give nil.
func Join(errs ...error) error {
	var retry, perm []error
	for _, err := range errs {
		switch {
		case err == nil:
		case plugins.IsPermanent(err):
			perm = append(perm, err)
		default:
			retry = append(retry, err)
		}
	}
	switch {
	case len(retry) == 0 && len(perm) == 0:
		return nil
	case len(retry) == 0:
		return plugins.Permanent(errors.Join(perm...))
	case len(perm) == 0:
		return errors.Join(retry...)
	}
	return fmt.Errorf("%w; also failed for good: %s", errors.Join(retry...), errors.Join(perm...).Error())
}

// Snapshot caches the listConfig and listStreams answers of the configured EMS servers for the
// length of one event or one reconciliation pass, so that each server is asked once. It is safe
// for concurrent use. A check that must not race with an action asks EMS again under a lock.
type Snapshot struct {
	ems map[string]*emsclient.Client

	mu      sync.Mutex
	configs map[string]*emsclient.ConfigList
	streams map[string][]event.Payload
	errs    map[string]error
}

// NewSnapshot returns an empty snapshot over the clients, by EMS name.
func NewSnapshot(ems map[string]*emsclient.Client) *Snapshot {
	return &Snapshot{ems: ems, configs: map[string]*emsclient.ConfigList{}, streams: map[string][]event.Payload{}, errs: map[string]error{}}
}

// Configs returns the listConfig answer of the EMS named name, asking it the first time.
func (s *Snapshot) Configs(ctx context.Context, name string) (*emsclient.ConfigList, error) {
	s.mu.Lock()
	if cl, ok := s.configs[name]; ok {
		s.mu.Unlock()
		return cl, nil
	}
	if err, ok := s.errs["c:"+name]; ok {
		s.mu.Unlock()
		return nil, err
	}
	s.mu.Unlock()
	c, ok := s.ems[name]
	if !ok {
		return nil, plugins.Permanent(fmt.Errorf("no EMS named %q is configured", name))
	}
	cl, err := c.ListConfig(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("list configs of %s: %w", name, err)
		s.errs["c:"+name] = err
		return nil, err
	}
	s.configs[name] = cl
	return cl, nil
}

// Streams returns the listStreams answer of the EMS named name, asking it the first time.
func (s *Snapshot) Streams(ctx context.Context, name string) ([]event.Payload, error) {
	s.mu.Lock()
	if l, ok := s.streams[name]; ok {
		s.mu.Unlock()
		return l, nil
	}
	if err, ok := s.errs["s:"+name]; ok {
		s.mu.Unlock()
		return nil, err
	}
	s.mu.Unlock()
	c, ok := s.ems[name]
	if !ok {
		return nil, plugins.Permanent(fmt.Errorf("no EMS named %q is configured", name))
	}
	l, err := c.ListStreams(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("list streams of %s: %w", name, err)
		s.errs["s:"+name] = err
		return nil, err
	}
	if l == nil {
		l = []event.Payload{}
	}
	s.streams[name] = l
	return l, nil
}

// Peers returns the listConfig answers of every configured EMS but exclude. Servers that did
// not answer are left out and their errors returned: an EMS that emsflow cannot reach is not
// the one whose push just arrived, as far as emsflow can tell.
func (s *Snapshot) Peers(ctx context.Context, exclude string) (map[string]*emsclient.ConfigList, []error) {
	out := map[string]*emsclient.ConfigList{}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.ems)) {
		if name == exclude {
			continue
		}
		cl, err := s.Configs(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[name] = cl
	}
	return out, errs
}

// LiveInbound returns the names of the live inbound streams of a listStreams answer.
func LiveInbound(streams []event.Payload) map[string]event.Payload {
	out := map[string]event.Payload{}
	for _, st := range streams {
		if st.IsInbound() && st.Name() != "" {
			out[st.Name()] = st
		}
	}
	return out
}

// Actions returns the count of one action, for tests and diagnostics.
func (m *Metrics) Actions(action string) float64 { return value(m.actions, action) }

// Skipped returns the count of skips for one reason.
func (m *Metrics) Skipped(reason string) float64 { return value(m.skipped, reason) }

// Repairs returns the count of one repair action.
func (m *Metrics) Repairs(action string) float64 { return value(m.repairs, action) }

func value(c *prometheus.CounterVec, label string) float64 {
	var d dto.Metric
	if err := c.WithLabelValues(label).Write(&d); err != nil {
		return 0
	}
	return d.GetCounter().GetValue()
}

// Scope is the set of EMS servers a stream plugin acts for: every configured one, or only those
// its "ems" parameter names.
type Scope struct {
	ems  map[string]*emsclient.Client
	def  string
	only []string
}

// NewScope returns the scope of a plugin over the configured EMS servers ems, with def the
// default EMS and only the names it is limited to (empty: all).
func NewScope(ems map[string]*emsclient.Client, def string, only []string) Scope {
	return Scope{ems: ems, def: def, only: only}
}

// Source returns the name of the EMS that sent ev, or the default EMS when the event names none
// that is configured.
func (s Scope) Source(ev *event.Event) string {
	if _, ok := s.ems[ev.EMS]; ok {
		return ev.EMS
	}
	return s.def
}

// Contains reports whether the plugin acts for the EMS named src.
func (s Scope) Contains(src string) bool {
	return len(s.only) == 0 || slices.Contains(s.only, src)
}

// Names returns the EMS names to reconcile, sorted.
func (s Scope) Names() []string {
	if len(s.only) > 0 {
		return slices.Sorted(slices.Values(s.only))
	}
	return slices.Sorted(maps.Keys(s.ems))
}
