package rules

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/internal/act"
)

// Kind is the plugin type name used in configuration.
const Kind = "Rules"

// Reasons an action was not taken, the reason label of emsflow_rules_skipped_total.
const (
	ReasonLoopGuard     = "loop_guard"     // the event is about something emsflow created
	ReasonFilter        = "filter"         // the rule's only/except filter did not pass the event
	ReasonExists        = "exists"         // what the action would create already exists
	ReasonGone          = "gone"           // what the action would remove or close is already gone
	ReasonEmptyValue    = "empty_value"    // a parameter rendered empty for this event
	ReasonTemplateError = "template_error" // a template failed on this event (a missing field)
)

// Engine is the Rules plugin: custom stream processing. For each event it runs the actions of
// the rules that subscribe to the event's type and whose filters pass it.
//
// Handle may run concurrently and more than once for one event. Actions are idempotent where
// EMS allows: each checks EMS's state first (listConfig, listStreams, listTimers) and skips when
// the effect is already there, and check and action run under a lock per target EMS and thing
// checked (see lockKey), so two deliveries of one event cannot both create, while actions about
// different streams run concurrently. What an action creates is tagged with
// _emsflow=<instance> and _emsflowRule=<rule>, and events carrying _emsflow anywhere in their
// payload are never acted on.
type Engine struct {
	name      string
	rules     []*rule
	events    []string
	ems       map[string]*emsclient.Client
	emsNames  []string
	defEMS    string
	log       zerolog.Logger
	reconcile bool
	interval  time.Duration

	actions  *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	failures *prometheus.CounterVec

	locks act.Locks // per target EMS and thing checked
}

// Interface guards.
var (
	_ plugins.Plugin     = (*Engine)(nil)
	_ plugins.Reconciler = (*Engine)(nil)
	_ plugins.Keyer      = (*Engine)(nil)
)

// Factory builds an Engine from raw parameters, for the plugin registry.
var Factory = plugins.FactoryOf(New)

// New validates cfg against the configured EMS servers and builds the Engine. It does no I/O.
// Every problem (unknown command, bad template, unknown event, bad filter, unknown EMS) is
// reported at once.
func New(name string, cfg Config, deps plugins.Deps) (*Engine, error) {
	if len(deps.EMS) == 0 {
		return nil, errors.New("rules: no EMS server is configured")
	}
	names := slices.Sorted(maps.Keys(deps.EMS))
	rs, err := cfg.compile(names)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		name: name, rules: rs, ems: deps.EMS, emsNames: names, defEMS: deps.DefaultEMS,
		log:       deps.Log,
		reconcile: cfg.Reconcile == nil || bool(*cfg.Reconcile),
		interval:  cfg.ReconcileInterval.Std(),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_rules_actions_total", Help: "EMS API calls made by a rule.",
		}, []string{"rule", "command"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_rules_skipped_total", Help: "Rule actions not taken, by reason.",
		}, []string{"rule", "reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_rules_failures_total", Help: "Rule actions that failed (retried or dead-lettered by the dispatcher).",
		}, []string{"rule"}),
	}
	seen := map[string]bool{}
	for _, r := range rs {
		for _, t := range r.events {
			if !seen[t] {
				seen[t] = true
				e.events = append(e.events, t)
			}
		}
	}
	if deps.Metrics != nil {
		for _, c := range []prometheus.Collector{e.actions, e.skipped, e.failures} {
			if err := deps.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("register rules metrics: %w", err)
			}
		}
	}
	return e, nil
}

// Name returns the instance name.
func (e *Engine) Name() string { return e.name }

// Events returns the union of the rules' event names, globs expanded.
func (e *Engine) Events() []string { return slices.Clone(e.events) }

// Handle runs the actions of every rule that subscribes to ev's type and passes its filter.
// Rules act independently: a failing rule does not stop the others, and a retry of the event
// repeats only what is not done yet, since every action checks EMS's state first. The error is
// permanent only when every failure is.
func (e *Engine) Handle(ctx context.Context, ev *event.Event) error {
	var matched []*rule
	for _, r := range e.rules {
		if slices.Contains(r.events, ev.Type) {
			matched = append(matched, r)
		}
	}
	if len(matched) == 0 {
		return nil
	}
	if owner, ok := ev.Payload.UserVar(TagInstance); ok {
		for _, r := range matched {
			e.skip(r, ev, ReasonLoopGuard, "created by emsflow instance "+owner)
		}
		return nil
	}
	data, payload := newData(ev)
	var retryable, permanent []error
	for _, r := range matched {
		err := e.apply(ctx, r, ev, data, payload)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return err
		case plugins.IsPermanent(err):
			e.failures.WithLabelValues(r.name).Inc()
			permanent = append(permanent, err)
		default:
			e.failures.WithLabelValues(r.name).Inc()
			retryable = append(retryable, err)
		}
	}
	switch {
	case len(retryable) > 0 && len(permanent) > 0:
		// Only the retryable failures are wrapped, so the whole is retried.
		return fmt.Errorf("%w; also failed permanently: %v", errors.Join(retryable...), errors.Join(permanent...))
	case len(retryable) > 0:
		return errors.Join(retryable...)
	case len(permanent) > 0:
		return plugins.Permanent(errors.Join(permanent...))
	}
	return nil
}

// apply runs one rule's action for one event.
func (e *Engine) apply(ctx context.Context, r *rule, ev *event.Event, data *Data, payload event.Payload) error {
	if !r.filter.Match(ev) {
		e.skip(r, ev, ReasonFilter, "")
		return nil
	}
	ps, err := r.action.render(data, payload)
	if err != nil {
		if errors.Is(err, errEmptyValue) {
			e.skip(r, ev, ReasonEmptyValue, err.Error())
		} else {
			e.skip(r, ev, ReasonTemplateError, err.Error())
		}
		return nil
	}
	target, client, err := e.target(r, ev)
	if err != nil {
		return plugins.Permanent(fmt.Errorf("rule %s: %w", r.name, err))
	}
	cmd := r.action.cmd
	if cmd.creates {
		ps.Add(TagInstance, e.name)
		ps.Add(TagRule, r.name)
	}
	defer e.locks.Lock(lockKey(target, cmd, ps))()

	ps, reason, err := e.precheck(ctx, client, cmd, ps)
	if err != nil {
		return fmt.Errorf("rule %s: check before %s on %s: %w", r.name, cmd.name, target, err)
	}
	if reason != "" {
		e.skip(r, ev, reason, "")
		return nil
	}
	_, err = client.Call(ctx, cmd.name, ps)
	if err != nil && isRemoval(cmd) && plugins.IsPermanent(err) {
		// EMS answers FAIL when the stream, config or timer went away between the check and
		// the call: then there is nothing left to do.
		if _, reason, cerr := e.precheck(ctx, client, cmd, ps); cerr == nil && reason == ReasonGone {
			e.skip(r, ev, ReasonGone, err.Error())
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("rule %s: %w", r.name, err)
	}
	e.actions.WithLabelValues(r.name, cmd.name).Inc()
	e.log.Info().Str(logfield.Rule, r.name).Str(logfield.Command, cmd.name).Str(logfield.EMS, target).
		Str(logfield.EventType, ev.Type).Str(logfield.Stream, data.Name).Msg("rule action taken")
	return nil
}

// target returns the EMS an action runs on: the rule's, or the one that sent the event.
func (e *Engine) target(r *rule, ev *event.Event) (string, *emsclient.Client, error) {
	name := r.ems
	if name == "" {
		name = ev.EMS
		if _, ok := e.ems[name]; !ok {
			name = e.defEMS
		}
	}
	c, ok := e.ems[name]
	if !ok {
		return "", nil, fmt.Errorf("no EMS client for event from %q (configured: %v, default %q)", ev.EMS, e.emsNames, e.defEMS)
	}
	return name, c, nil
}

func (e *Engine) skip(r *rule, ev *event.Event, reason, detail string) {
	e.skipped.WithLabelValues(r.name, reason).Inc()
	l := e.log.Debug()
	if reason == ReasonTemplateError || reason == ReasonEmptyValue {
		l = e.log.Warn()
	}
	l.Str(logfield.Rule, r.name).Str(logfield.EventType, ev.Type).Str(logfield.EventKey, ev.Key()).
		Str(logfield.Reason, reason).Str("detail", detail).Msg("rule action skipped")
}

func isRemoval(c *command) bool {
	return c.check == checkStream || c.check == checkConfig || c.check == checkTimerGone
}

// precheck looks at EMS's state before an action. It returns a skip reason when the action's
// effect is already there, and the parameters to send (a create*Stream keeps only the streams
// that have no output of that kind in the group yet).
func (e *Engine) precheck(ctx context.Context, c *emsclient.Client, cmd *command, ps emsclient.Params) (emsclient.Params, string, error) {
	get := func(k string) string { v, _ := ps.Get(k); return v }
	switch cmd.check {
	case checkGroup:
		lc, err := c.ListConfig(ctx)
		if err != nil {
			return nil, "", err
		}
		return reduceGroup(ps, configsOfKind(lc, cmd.kind))
	case checkPull, checkPush, checkRecord:
		lc, err := c.ListConfig(ctx)
		if err != nil {
			return nil, "", err
		}
		entries, keys := lc.Pull, []string{"uri", "localStreamName"}
		switch cmd.check {
		case checkPush:
			entries, keys = lc.Push, []string{"uri", "localStreamName", "targetStreamName"}
		case checkRecord:
			entries, keys = lc.Record, []string{"localStreamName", "pathToFile"}
		}
		for _, en := range entries {
			if sameFields(en, ps, keys) {
				return ps, ReasonExists, nil
			}
		}
		return ps, "", nil
	case checkTimer:
		ts, err := c.ListTimers(ctx)
		if err != nil {
			return nil, "", err
		}
		for _, t := range ts {
			if t.Value == get("value") && maps.Equal(t.UserVars, ps.UserVars()) {
				return ps, ReasonExists, nil
			}
		}
		return ps, "", nil
	case checkTimerGone:
		ts, err := c.ListTimers(ctx)
		if err != nil {
			return nil, "", err
		}
		if !slices.ContainsFunc(ts, func(t emsclient.Timer) bool { return strconv.FormatUint(t.ID, 10) == get("id") }) {
			return ps, ReasonGone, nil
		}
		return ps, "", nil
	case checkStream:
		streams, err := c.ListStreams(ctx)
		if err != nil {
			return nil, "", err
		}
		id, byID := ps.Get("id")
		name := get("localStreamName")
		for _, s := range streams {
			if byID {
				if u, ok := s.UniqueID(); ok && strconv.FormatUint(u, 10) == id {
					return ps, "", nil
				}
			} else if s.Name() == name && s.IsInbound() {
				return ps, "", nil
			}
		}
		return ps, ReasonGone, nil
	case checkConfig:
		lc, err := c.ListConfig(ctx)
		if err != nil {
			return nil, "", err
		}
		id, byID := ps.Get("id")
		group := get("groupName")
		for _, en := range lc.All() {
			if byID {
				if u, ok := en.Uint64("configId"); ok && strconv.FormatUint(u, 10) == id {
					return ps, "", nil
				}
			} else if g, _ := en.String("groupName"); g == group {
				return ps, "", nil
			}
		}
		return ps, ReasonGone, nil
	}
	return ps, "", nil
}

func configsOfKind(lc *emsclient.ConfigList, kind string) []event.Payload {
	switch kind {
	case "hls":
		return lc.HLS
	case "hds":
		return lc.HDS
	case "dash":
		return lc.DASH
	case "mss":
		return lc.MSS
	}
	return nil
}

// sameFields reports whether a listConfig entry has the action's value for every key the action
// sets (keys it leaves to EMS's default are not compared).
func sameFields(entry event.Payload, ps emsclient.Params, keys []string) bool {
	for _, k := range keys {
		want, set := ps.Get(k)
		if !set {
			continue
		}
		if got, _ := entry.String(k); got != want {
			return false
		}
	}
	return true
}

// reduceGroup drops from a create*Stream the streams that already have a config of the kind in
// the group (bandwidths follow their streams), and reports ReasonExists when none is left.
func reduceGroup(ps emsclient.Params, entries []event.Payload) (emsclient.Params, string, error) {
	group, _ := ps.Get("groupName")
	have := map[string]bool{}
	for _, en := range entries {
		if g, _ := en.String("groupName"); g != group {
			continue
		}
		if n, ok := en.String("localStreamName"); ok {
			have[n] = true
		}
	}
	names, _ := ps.Lookup("localStreamNames")
	var keep []int
	for i, n := range names.Values {
		if !have[n] {
			keep = append(keep, i)
		}
	}
	switch {
	case len(keep) == 0:
		return ps, ReasonExists, nil
	case len(keep) == len(names.Values):
		return ps, "", nil
	}
	bw, hasBW := ps.Lookup("bandwidths")
	out := make(emsclient.Params, 0, len(ps))
	for _, p := range ps {
		switch {
		case p.Key == names.Key, hasBW && p.Key == bw.Key && len(bw.Values) == len(names.Values):
			vals := make([]string, 0, len(keep))
			for _, i := range keep {
				vals = append(vals, p.Values[i])
			}
			out.AddList(p.Key, vals...)
		default:
			out = append(out, p)
		}
	}
	return out, "", nil
}

// ReconcileInterval returns how often Reconcile runs after start; 0 means only at start.
func (e *Engine) ReconcileInterval() time.Duration { return e.interval }

// Reconcile runs the rules of inStreamCreated, outStreamCreated and streamCreated over the
// streams every configured EMS runs now, as if their creation events arrived again: a stream
// whose event was lost still gets its action. The actions' own checks keep this from creating
// anything twice. An EMS that cannot be listed is reported and the others are still done.
func (e *Engine) Reconcile(ctx context.Context) error {
	if !e.reconcile {
		return nil
	}
	types := map[string]bool{}
	for _, r := range e.rules {
		for _, t := range r.events {
			types[t] = true
		}
	}
	if !types[event.InStreamCreated] && !types[event.OutStreamCreated] && !types[event.StreamCreated] {
		return nil
	}
	var errs []error
	for _, name := range e.emsNames {
		streams, err := e.ems[name].ListStreams(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", name, err))
			continue
		}
		for _, s := range streams {
			typ := event.StreamCreated
			switch st := s.StreamType(); {
			case len(st) > 0 && st[0] == 'I':
				typ = event.InStreamCreated
			case len(st) > 0 && st[0] == 'O':
				typ = event.OutStreamCreated
			}
			if !types[typ] {
				continue
			}
			ev := &event.Event{Type: typ, Payload: s, EMS: name}
			if err := e.Handle(ctx, ev); err != nil {
				if ctx.Err() != nil {
					return err
				}
				errs = append(errs, fmt.Errorf("reconcile %s stream %s: %w", name, s.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}
