// Package recorder is the StreamRecorder plugin: every new inbound stream is recorded to
// <file_location>/<name> and a new file starts every period_time seconds for as long as the
// stream lives (reference §4.2), without the original's flaws.
//
// Rotation is EMS's own: record with chunkLength=period_time writes <name>_part0000.mp4,
// _part0001, ... The original cut the record writer with a timer and let keepAlive restart it;
// that lost the seconds between cut and restart and left timers behind when events were missed.
// There are no timers here, so there are none to remove.
//
// A duplicated event, a restart or a reconciliation pass never makes a second recording: the
// EMS's listConfig is checked under a per-stream lock first. Streams that emsflow brought to an
// EMS (a router's push, a load balancer's replica) are not recorded again unless
// record_replicas is set. When a stream closes its record config is removed (cleanup_on_close,
// default true), unless a stream of that name is live again by then. Reconcile records live
// streams whose event was missed and removes configs left behind by missed closes.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

// localStreamNameVar is the original StreamRecorder's user variable; it is kept on emsflow's
// records so that recordChunk* events name their stream for the uploaders (reference §4.2).
const localStreamNameVar = "_localStreamName"

// Recorder is one StreamRecorder instance. Handle and Reconcile are safe for concurrent use.
type Recorder struct {
	name    string
	cfg     Config
	ems     map[string]*emsclient.Client
	fleet   act.Scope
	log     zerolog.Logger
	metrics *act.Metrics
	locks   act.Locks
}

var (
	_ plugins.Plugin     = (*Recorder)(nil)
	_ plugins.Reconciler = (*Recorder)(nil)
)

// Factory builds a Recorder from its configuration parameters, for the plugin registry.
var Factory = plugins.FactoryOf(New)

// New validates cfg and returns a Recorder. It does no I/O: file_location is a folder on the
// EMS host, which may not be this one.
func New(name string, cfg Config, deps plugins.Deps) (*Recorder, error) {
	if err := cfg.Validate(slices.Sorted(maps.Keys(deps.EMS))); err != nil {
		return nil, err
	}
	return &Recorder{
		name: name, cfg: cfg, ems: deps.EMS, fleet: act.NewScope(deps.EMS, deps.DefaultEMS, cfg.EMS), log: deps.Log,
		metrics: act.NewMetrics(deps.Metrics, "recorder"),
	}, nil
}

// Name returns the instance name.
func (r *Recorder) Name() string { return r.name }

// Events returns inStreamCreated (start recording) and inStreamClosed (clean up).
func (r *Recorder) Events() []string {
	return []string{event.InStreamCreated, event.InStreamClosed}
}

// ReconcileInterval returns reconcile_interval.
func (r *Recorder) ReconcileInterval() time.Duration { return r.cfg.interval() }

// Handle records the stream of an inStreamCreated event, or cleans up after an inStreamClosed.
func (r *Recorder) Handle(ctx context.Context, ev *event.Event) error {
	if ev.Type != event.InStreamCreated && ev.Type != event.InStreamClosed {
		return nil
	}
	src := r.fleet.Source(ev)
	client, ok := r.ems[src]
	if !ok {
		return plugins.Permanent(fmt.Errorf("record %s: no EMS client for %q", ev.Payload.Name(), src))
	}
	if !r.fleet.Contains(src) {
		r.skip(src, ev.Payload.Name(), act.SkipScope, "")
		return nil
	}
	if ev.Type == event.InStreamClosed {
		if !r.cfg.cleanup() || !ev.Payload.IsInbound() || ev.Payload.Name() == "" {
			return nil
		}
		return r.cleanup(ctx, src, client, ev.Payload.Name(), false)
	}
	return r.ensureRecord(ctx, src, client, ev.Payload, act.NewSnapshot(r.ems), false)
}

// Reconcile records every live inbound stream that should be recorded and is not, and, with
// cleanup_on_close, removes this instance's record configs whose stream is gone. Each repair is
// logged and counted.
func (r *Recorder) Reconcile(ctx context.Context) error {
	ctx, cancel := act.ReconcileContext(ctx)
	defer cancel()
	snap := act.NewSnapshot(r.ems)
	var errs []error
	for _, src := range r.fleet.Names() {
		// Configs before streams: a config this list lacks belongs to a stream made later,
		// and a config whose stream is missing from the later stream list is really orphaned.
		cl, err := snap.Configs(ctx, src)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", src, err))
			continue
		}
		streams, err := snap.Streams(ctx, src)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", src, err))
			continue
		}
		client := r.ems[src]
		live := act.LiveInbound(streams)
		for _, name := range slices.Sorted(maps.Keys(live)) {
			if err := r.ensureRecord(ctx, src, client, live[name], snap, true); err != nil {
				errs = append(errs, err)
			}
		}
		if !r.cfg.cleanup() {
			continue
		}
		orphans := map[string]bool{}
		for _, rec := range cl.Record {
			n, _ := rec.String("localStreamName")
			if by, _ := provenance.Creator(rec); by == r.name && live[n] == nil {
				orphans[n] = true
			}
		}
		for _, n := range slices.Sorted(maps.Keys(orphans)) {
			if err := r.cleanup(ctx, src, client, n, true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ensureRecord records one inbound stream of EMS src unless it is emsflow's own or already
// recorded. With repair set it runs for reconciliation: skips are not counted, a record counts
// as a repair.
func (r *Recorder) ensureRecord(ctx context.Context, src string, client *emsclient.Client, stream event.Payload, snap *act.Snapshot, repair bool) error {
	name := stream.Name()
	skip := func(reason, detail string) {
		if !repair {
			r.skip(src, name, reason, detail)
		}
	}
	if !stream.IsInbound() || name == "" {
		skip(act.SkipNotInbound, stream.StreamType())
		return nil
	}
	if !r.cfg.RecordReplicas {
		if by, ok := provenance.Creator(stream); ok {
			skip(act.SkipLoopGuard, "created by emsflow instance "+by)
			return nil
		}
		peers, peerErrs := snap.Peers(ctx, src)
		for _, err := range peerErrs {
			r.log.Warn().Err(err).Str(logfield.EMS, src).Str(logfield.Stream, name).Msg("replica check made without an unreachable EMS")
		}
		if peer, ok := provenance.PushedBy(stream, peers); ok {
			skip(act.SkipLoopGuard, "pushed here by emsflow from "+peer)
			return nil
		}
	}
	path := r.cfg.pathFor(name)
	if repair {
		cl, err := snap.Configs(ctx, src)
		if err != nil {
			return fmt.Errorf("record %s on %s: %w", name, src, err)
		}
		if r.hasRecord(cl, name, path) {
			return nil
		}
	}
	unlock := r.locks.Lock(src + "\x00" + name)
	defer unlock()
	cl, err := client.ListConfig(ctx)
	if err != nil {
		return fmt.Errorf("record %s on %s: list configs: %w", name, src, err)
	}
	if r.hasRecord(cl, name, path) {
		skip(act.SkipDuplicate, "")
		return nil
	}
	vars := provenance.Vars(r.name, src)
	vars[localStreamNameVar] = name
	sc, err := client.Record(ctx, emsclient.RecordParams{
		LocalStreamName: name,
		PathToFile:      path,
		Type:            r.cfg.format(),
		Overwrite:       false,
		KeepAlive:       emsclient.Bool(true),
		ChunkLength:     uint(r.cfg.PeriodTime.Std() / time.Second),
		WaitForIDR:      true,
		WinQtCompat:     true,
		UserVars:        vars,
	})
	if err != nil {
		return fmt.Errorf("record %s on %s: %w", name, src, err)
	}
	l, msg := r.log.Info(), "recording stream"
	if repair {
		r.metrics.Repair("record")
		l, msg = r.log.Warn(), "repaired: recording stream that was not recorded"
	} else {
		r.metrics.Action("record")
	}
	l.Str(logfield.EMS, src).Str(logfield.Stream, name).Str(logfield.File, path).
		Uint64(logfield.ConfigID, sc.ConfigID).Msg(msg)
	return nil
}

// hasRecord reports whether stream name is recorded already: by this instance, or by anyone
// to the same path.
func (r *Recorder) hasRecord(cl *emsclient.ConfigList, name, path string) bool {
	for _, rec := range cl.Record {
		if n, _ := rec.String("localStreamName"); n != name {
			continue
		}
		if by, _ := provenance.Creator(rec); by == r.name {
			return true
		}
		if p, _ := rec.String("pathToFile"); samePath(p, path) {
			return true
		}
	}
	return false
}

func samePath(a, b string) bool {
	norm := func(s string) string { return strings.TrimRight(event.NormalizePath(s), "/") }
	return a != "" && norm(a) == norm(b)
}

// cleanup removes this instance's record configs of stream name on src, unless the stream is
// live again.
func (r *Recorder) cleanup(ctx context.Context, src string, client *emsclient.Client, name string, repair bool) error {
	unlock := r.locks.Lock(src + "\x00" + name)
	defer unlock()
	streams, err := client.ListStreams(ctx)
	if err != nil {
		return fmt.Errorf("clean up record of %s on %s: %w", name, src, err)
	}
	if _, live := act.LiveInbound(streams)[name]; live {
		if !repair {
			r.skip(src, name, act.SkipLive, "")
		}
		return nil
	}
	cl, err := client.ListConfig(ctx)
	if err != nil {
		return fmt.Errorf("clean up record of %s on %s: %w", name, src, err)
	}
	var errs []error
	for _, rec := range cl.Record {
		n, _ := rec.String("localStreamName")
		by, _ := provenance.Creator(rec)
		id, ok := rec.Uint64("configId")
		if n != name || by != r.name || !ok {
			continue
		}
		if err := client.RemoveConfig(ctx, emsclient.RemoveConfigParams{ID: id}); err != nil {
			errs = append(errs, fmt.Errorf("remove record config %d of %s on %s: %w", id, name, src, err))
			continue
		}
		l, msg := r.log.Info(), "removed record config of closed stream"
		if repair {
			r.metrics.Repair("remove_record")
			l, msg = r.log.Warn(), "repaired: removed record config left behind by a closed stream"
		} else {
			r.metrics.Action("remove_record")
		}
		l.Str(logfield.EMS, src).Str(logfield.Stream, name).Uint64(logfield.ConfigID, id).Msg(msg)
	}
	return act.Join(errs...)
}

func (r *Recorder) skip(src, name, reason, detail string) {
	r.metrics.Skip(reason)
	if detail != "" {
		reason += ": " + detail
	}
	r.log.Debug().Str(logfield.EMS, src).Str(logfield.Stream, name).Str(logfield.Reason, reason).Msg("skipped")
}
