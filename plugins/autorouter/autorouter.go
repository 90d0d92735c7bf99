// Package autorouter is the StreamAutoRouter plugin: every inbound stream whose name contains a
// token is pushed over RTMP, under the same name, to one or more destinations (reference §4.1),
// without the original's flaws.
//
// What it fixes: the push keeps itself alive (keepAlive=1 by default); a duplicated event, a
// restart or a reconciliation pass never makes a second push (the source EMS's listConfig is
// checked under a per-stream lock first); nothing is pushed to the EMS the stream is on; and no
// stream that emsflow created is ever routed again, which makes loops impossible even when the
// destination runs a router pointing back (see package provenance for the marks used). A missed
// event is repaired by Reconcile, which walks every configured EMS's live streams.
package autorouter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/internal/act"
	"github.com/emsflow/emsflow/plugins/provenance"
)

// Router is one StreamAutoRouter instance. Handle and Reconcile are safe for concurrent use.
type Router struct {
	name    string
	cfg     Config
	dests   []destination
	ems     map[string]*emsclient.Client
	fleet   act.Scope
	log     zerolog.Logger
	metrics *act.Metrics
	locks   act.Locks
}

var (
	_ plugins.Plugin     = (*Router)(nil)
	_ plugins.Reconciler = (*Router)(nil)
)

// Factory builds a Router from its configuration parameters, for the plugin registry.
var Factory = plugins.FactoryOf(New)

// New validates cfg and returns a Router. It does no I/O.
func New(name string, cfg Config, deps plugins.Deps) (*Router, error) {
	if err := cfg.Validate(slices.Sorted(maps.Keys(deps.EMS))); err != nil {
		return nil, err
	}
	r := &Router{
		name: name, cfg: cfg, ems: deps.EMS, fleet: act.NewScope(deps.EMS, deps.DefaultEMS, cfg.EMS), log: deps.Log,
		metrics: act.NewMetrics(deps.Metrics, "autorouter"),
	}
	for _, d := range cfg.DestinationURI {
		pd, _ := parseDestination(d) // validated above
		r.dests = append(r.dests, pd)
	}
	return r, nil
}

// Name returns the instance name.
func (r *Router) Name() string { return r.name }

// Events returns inStreamCreated: a stream is routed when it appears. (The original also
// pushed again on inStreamClosed.)
func (r *Router) Events() []string { return []string{event.InStreamCreated} }

// ReconcileInterval returns reconcile_interval.
func (r *Router) ReconcileInterval() time.Duration { return r.cfg.interval() }

// Handle routes the stream of an inStreamCreated event. EMS failures that a retry cannot fix
// (a FAIL answer) are permanent and carry EMS's description.
func (r *Router) Handle(ctx context.Context, ev *event.Event) error {
	if ev.Type != event.InStreamCreated {
		return nil
	}
	src := r.fleet.Source(ev)
	client, ok := r.ems[src]
	if !ok {
		return plugins.Permanent(fmt.Errorf("route %s: no EMS client for %q", ev.Payload.Name(), src))
	}
	if !r.fleet.Contains(src) {
		r.skip(src, ev.Payload.Name(), "", act.SkipScope, "")
		return nil
	}
	return r.route(ctx, src, client, ev.Payload, act.NewSnapshot(r.ems), false)
}

// Reconcile makes sure every live inbound stream that should be routed is pushed to every
// destination, on every EMS in scope. Each push it has to make is a repair, logged and counted.
func (r *Router) Reconcile(ctx context.Context) error {
	ctx, cancel := act.ReconcileContext(ctx)
	defer cancel()
	snap := act.NewSnapshot(r.ems)
	var errs []error
	for _, src := range r.fleet.Names() {
		// Configs before streams: a push made after this list is for a stream that is new in
		// the stream list, and the fresh check under the lock sees it.
		if _, err := snap.Configs(ctx, src); err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", src, err))
			continue
		}
		streams, err := snap.Streams(ctx, src)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", src, err))
			continue
		}
		for _, st := range streams {
			if !st.IsInbound() {
				continue
			}
			if err := r.route(ctx, src, r.ems[src], st, snap, true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// route pushes one inbound stream of EMS src to every destination that should have it. With
// repair set it runs for reconciliation: skips are not counted, pushes count as repairs.
func (r *Router) route(ctx context.Context, src string, client *emsclient.Client, stream event.Payload, snap *act.Snapshot, repair bool) error {
	name := stream.Name()
	skip := func(target, reason, detail string) {
		if !repair {
			r.skip(src, name, target, reason, detail)
		}
	}
	switch {
	case !stream.IsInbound() || name == "":
		skip("", act.SkipNotInbound, stream.StreamType())
		return nil
	case r.cfg.Token != "" && !strings.Contains(name, r.cfg.Token):
		skip("", act.SkipToken, "")
		return nil
	}
	if by, ok := provenance.Creator(stream); ok {
		skip("", act.SkipLoopGuard, "created by emsflow instance "+by)
		return nil
	}
	peers, peerErrs := snap.Peers(ctx, src)
	for _, err := range peerErrs {
		r.log.Warn().Err(err).Str(logfield.EMS, src).Str(logfield.Stream, name).Msg("loop guard checked without an unreachable EMS")
	}
	if peer, ok := provenance.PushedBy(stream, peers); ok {
		skip("", act.SkipLoopGuard, "pushed here by emsflow from "+peer)
		return nil
	}
	far, hasFar := provenance.Far(stream)
	var errs []error
	for _, d := range r.dests {
		switch {
		case r.isSelf(d, client, stream):
			skip(d.uri, act.SkipSelf, "")
			continue
		case hasFar && far == d.endpoint:
			skip(d.uri, act.SkipLoopGuard, "the stream comes from the destination")
			continue
		}
		if err := r.ensurePush(ctx, src, client, name, d, snap, repair); err != nil {
			errs = append(errs, err)
		}
	}
	return act.Join(errs...)
}

// ensurePush pushes stream name of src to d unless a push of it there exists. The check is
// made again under the stream's lock right before pushing.
func (r *Router) ensurePush(ctx context.Context, src string, client *emsclient.Client, name string, d destination, snap *act.Snapshot, repair bool) error {
	if repair {
		cl, err := snap.Configs(ctx, src)
		if err != nil {
			return fmt.Errorf("push %s from %s to %s: %w", name, src, d.uri, err)
		}
		if hasPush(cl, name, d) {
			return nil
		}
	}
	unlock := r.locks.Lock(src + "\x00" + name + "\x00" + d.uri)
	defer unlock()
	cl, err := client.ListConfig(ctx)
	if err != nil {
		return fmt.Errorf("push %s from %s to %s: list configs: %w", name, src, d.uri, err)
	}
	if hasPush(cl, name, d) {
		if !repair {
			r.skip(src, name, d.uri, act.SkipDuplicate, "")
		}
		return nil
	}
	sc, err := client.PushStream(ctx, emsclient.PushStreamParams{
		URI:              d.uri,
		LocalStreamName:  name,
		TargetStreamName: name,
		KeepAlive:        emsclient.Bool(r.cfg.keepAlive()),
		PageURL:          provenance.PageURL(r.name),
		UserVars:         provenance.Vars(r.name, src),
	})
	if err != nil {
		return fmt.Errorf("push %s from %s to %s: %w", name, src, d.uri, err)
	}
	l := r.log.Info()
	msg := "pushed stream"
	if repair {
		r.metrics.Repair("push")
		l = r.log.Warn()
		msg = "repaired: pushed stream that had no push"
	} else {
		r.metrics.Action("push")
	}
	l.Str(logfield.EMS, src).Str(logfield.Stream, name).Str(logfield.Target, d.uri).
		Uint64(logfield.ConfigID, sc.ConfigID).Msg(msg)
	return nil
}

// hasPush reports whether a push config of stream name to d exists, whoever made it.
func hasPush(cl *emsclient.ConfigList, name string, d destination) bool {
	for _, p := range cl.Push {
		ln, _ := p.String("localStreamName")
		if ln == name && provenance.PushTargetName(p) == name && sameTarget(provenance.PushTarget(p), d.uri) {
			return true
		}
	}
	return false
}

// sameTarget compares two RTMP URIs by endpoint and path.
func sameTarget(a, b string) bool {
	ea, ok1 := provenance.ParseEndpoint(a)
	eb, ok2 := provenance.ParseEndpoint(b)
	if !ok1 || !ok2 || ea != eb {
		return false
	}
	return uriPath(a) == uriPath(b)
}

func uriPath(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return strings.Trim(u.Path, "/")
}

// isSelf reports whether d is the EMS the stream is on: where the stream was published to, or,
// for a destination given without a port, an EMS on the same host (its API host, or the
// stream's own address).
func (r *Router) isSelf(d destination, client *emsclient.Client, stream event.Payload) bool {
	if slices.Contains(provenance.Ingest(stream), d.endpoint) {
		return true
	}
	if !d.bare {
		return false
	}
	hosts := []string{}
	if u, err := url.Parse(client.BaseURL()); err == nil {
		hosts = append(hosts, strings.ToLower(u.Hostname()))
	}
	for _, k := range []string{"ip", "nearIp"} {
		if s, ok := stream.String(k); ok && s != "" {
			hosts = append(hosts, strings.ToLower(s))
		}
	}
	return slices.Contains(hosts, d.endpoint.Host)
}

func (r *Router) skip(src, name, target, reason, detail string) {
	r.metrics.Skip(reason)
	if detail != "" {
		reason += ": " + detail
	}
	e := r.log.Debug().Str(logfield.EMS, src).Str(logfield.Stream, name).Str(logfield.Reason, reason)
	if target != "" {
		e = e.Str(logfield.Target, target)
	}
	e.Msg("skipped")
}
