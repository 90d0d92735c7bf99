// Package transcoderesetter is the TranscodeResetter plugin of the PHP web services: when EMS
// reports that audio stopped on an inbound stream (audioFeedStopped), the stream is shut down
// with permanently=1 (reference §4.5), so that whatever feeds it (typically a transcoder) starts
// over. The payload is {id, localStreamName}: the stream's uniqueId and name.
//
// What it adds to the original: the payload is checked (an event naming no stream is a
// permanent error instead of being silently ignored); the stream is looked up first and left
// alone when EMS no longer has it, or when the id or name now belongs to a stream that started
// after the event (an EMS restart reuses ids, a publisher reconnects under the same name), so a
// redelivered or retried event never cuts a healthy stream; an EMS FAIL answer (the stream is
// gone) ends the work instead of being logged and forgotten, while an unreachable EMS or a 5xx
// is retried. Optionally videoFeedStopped triggers the same reset, and permanently=0 can be
// chosen so a keepAlive pull reconnects instead of being removed.
//
// The shutdown is sent by id alone (id=<id> permanently=1): the original also sent
// localStreamName, which EMS ignores when id is given, and emsclient names a stream by exactly
// one of the two. Nothing is created on EMS, so there is nothing to tag; the event carries no
// settings block, so emsflow's provenance marks cannot be read from it either.
package transcoderesetter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/internal/act"
)

// Skip reasons of this plugin (label values of emsflow_transcoderesetter_skipped_total), besides
// act.SkipScope.
const (
	// SkipBadPayload: the event names no stream; it is also returned as a permanent error.
	SkipBadPayload = "bad_payload"
	// SkipGone: EMS no longer has the stream the event is about.
	SkipGone = "gone"
)

// actionShutdown is the action label of the shutdowns made.
const actionShutdown = "shutdown"

// Resetter is one TranscodeResetter instance. Handle is safe for concurrent use.
type Resetter struct {
	name    string
	cfg     Config
	events  []string
	ems     map[string]*emsclient.Client
	fleet   act.Scope
	log     zerolog.Logger
	metrics *act.Metrics
}

var _ plugins.Plugin = (*Resetter)(nil)

// Factory builds a Resetter from its configuration parameters, for the plugin registry.
var Factory = plugins.FactoryOf(New)

// New validates cfg and returns a Resetter. It does no I/O.
func New(name string, cfg Config, deps plugins.Deps) (*Resetter, error) {
	if err := cfg.Validate(slices.Sorted(maps.Keys(deps.EMS))); err != nil {
		return nil, err
	}
	events := []string{event.AudioFeedStopped}
	if cfg.VideoFeedStopped {
		events = append(events, event.VideoFeedStopped)
	}
	return &Resetter{
		name: name, cfg: cfg, events: events, ems: deps.EMS,
		fleet: act.NewScope(deps.EMS, deps.DefaultEMS, cfg.EMS), log: deps.Log,
		metrics: act.NewMetrics(deps.Metrics, "transcoderesetter"),
	}, nil
}

// Name returns the instance name.
func (r *Resetter) Name() string { return r.name }

// Events returns audioFeedStopped, and videoFeedStopped when video_feed_stopped is set.
func (r *Resetter) Events() []string { return slices.Clone(r.events) }

// Handle shuts down the stream an audioFeedStopped (or videoFeedStopped) event names. A payload
// without a stream, and EMS answers a retry cannot fix other than FAIL, are permanent errors; a
// stream EMS no longer has is done.
func (r *Resetter) Handle(ctx context.Context, ev *event.Event) error {
	if !slices.Contains(r.events, ev.Type) {
		return nil
	}
	src := r.fleet.Source(ev)
	st, err := streamOf(ev.Payload)
	if err != nil {
		r.skip(src, st, SkipBadPayload, err.Error())
		return plugins.Permanent(fmt.Errorf("reset stream of %s event from %s: %w", ev.Type, src, err))
	}
	client, ok := r.ems[src]
	if !ok {
		return plugins.Permanent(fmt.Errorf("reset %s: no EMS client for %q", st, src))
	}
	if !r.fleet.Contains(src) {
		r.skip(src, st, act.SkipScope, "")
		return nil
	}

	info, err := client.GetStreamInfo(ctx, st.ref())
	if desc, gone := emsFail(err); gone {
		r.skip(src, st, SkipGone, desc)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reset %s on %s: %w", st, src, err)
	}
	if why, other := st.replacedBy(info, ev.Timestamp); other {
		r.skip(src, st, SkipGone, why)
		return nil
	}
	p := emsclient.ShutdownParams{Permanently: r.cfg.permanently()}
	switch id, ok := info.UniqueID(); {
	case st.id != 0:
		p.ID = st.id
	case ok && id != 0:
		p.ID = id // found by name: shut down exactly the stream that was checked
	default:
		p.LocalStreamName = st.name
	}
	err = client.ShutdownStream(ctx, p)
	if desc, gone := emsFail(err); gone {
		r.skip(src, st, SkipGone, desc)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reset %s on %s: %w", st, src, err)
	}
	r.metrics.Action(actionShutdown)
	r.log.Info().Str(logfield.EMS, src).Str(logfield.Stream, st.name).Uint64(logfield.StreamID, p.ID).
		Str(logfield.EventType, ev.Type).Msg("shut down stream whose feed stopped")
	return nil
}

// stream is the stream a feed-stopped event names: its uniqueId, its name, or both.
type stream struct {
	id   uint64
	name string
}

func (s stream) String() string {
	switch {
	case s.id != 0 && s.name != "":
		return fmt.Sprintf("stream %q (id %d)", s.name, s.id)
	case s.id != 0:
		return fmt.Sprintf("stream id %d", s.id)
	}
	return fmt.Sprintf("stream %q", s.name)
}

// ref names the stream for getStreamInfo: by id when known, the exact stream that stopped.
func (s stream) ref() emsclient.StreamRef {
	if s.id != 0 {
		return emsclient.StreamRef{ID: s.id}
	}
	return emsclient.StreamRef{LocalStreamName: s.name}
}

// streamOf reads payload.id and payload.localStreamName. One of them is required; an id that is
// not a stream id is an error even when a name is given.
func streamOf(p event.Payload) (stream, error) {
	var s stream
	s.name, _ = p.String("localStreamName")
	s.name = strings.TrimSpace(s.name)
	if raw, ok := p.Lookup("id"); ok && raw != nil {
		id, ok := p.Uint64("id")
		if !ok || id == 0 {
			return s, fmt.Errorf("payload.id %v is not a stream id", raw)
		}
		s.id = id
	}
	if s.id == 0 && s.name == "" {
		return s, errors.New("payload has neither id nor localStreamName: no stream to shut down")
	}
	return s, nil
}

// replacedBy reports whether the stream EMS describes in info is not the one that stopped: it
// has another name (the id was reused after an EMS restart), or it was created after the event
// was logged (creationTimestamp is in ms, the event's timestamp in whole seconds, both from the
// EMS host's clock). eventTime 0 (an envelope without timestamp) skips the time check.
func (s stream) replacedBy(info event.Payload, eventTime uint64) (string, bool) {
	if n, ok := info.String("name"); ok && s.name != "" && n != s.name {
		return fmt.Sprintf("id %d now belongs to stream %q", s.id, n), true
	}
	created, ok := millis(info, "creationTimestamp")
	if eventTime != 0 && ok && created >= float64(eventTime+1)*1000 {
		return fmt.Sprintf("the stream running now was created after the event (%.0f ms > %d s)", created, eventTime), true
	}
	return "", false
}

// millis reads a number field such as creationTimestamp (ms, with decimals).
func millis(p event.Payload, key string) (float64, bool) {
	v, ok := p.Lookup(key)
	if !ok {
		return 0, false
	}
	var f float64
	var err error
	switch x := v.(type) {
	case json.Number:
		f, err = x.Float64()
	case float64:
		f = x
	case string:
		f, err = strconv.ParseFloat(x, 64)
	default:
		return 0, false
	}
	if err != nil || math.IsNaN(f) || f <= 0 {
		return 0, false
	}
	return f, true
}

// emsFail reports whether err is EMS's own FAIL answer, and its description. For getStreamInfo
// and shutdownStream with parameters built here, FAIL means EMS has no such stream.
func emsFail(err error) (string, bool) {
	var e *emsclient.Error
	if err == nil || !errors.As(err, &e) || e.HTTPStatus != 0 || !strings.EqualFold(e.Status, "FAIL") {
		return "", false
	}
	return "EMS has no such stream: " + e.Description, true
}

func (r *Resetter) skip(src string, st stream, reason, detail string) {
	r.metrics.Skip(reason)
	if detail != "" {
		reason += ": " + detail
	}
	e := r.log.Debug().Str(logfield.EMS, src).Str(logfield.Reason, reason)
	if st.name != "" {
		e = e.Str(logfield.Stream, st.name)
	}
	if st.id != 0 {
		e = e.Uint64(logfield.StreamID, st.id)
	}
	e.Msg("skipped")
}
