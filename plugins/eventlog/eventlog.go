// Package eventlog is the EventLog plugin: it writes each subscribed event as one JSON line to a
// file rotated by size, the equivalent of EMS's own file sink with format="json", and the proof
// that the whole path from webhook through journal to plugin works.
//
// Each line is the event exactly as EMS sent it (event.Event.Raw; EMS sends one line per event,
// and a body spread over several lines is compacted onto one), so every line is parseable by
// event.Decode.
//
// Delivery is at least once. The plugin remembers the keys (event.Event.Key) of the last
// dedupeWindow events it wrote and skips a repeat, so a redelivery while the process runs does
// not write a second line; after a restart that memory is gone, and a redelivered event can
// appear twice in the log.
package eventlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
)

// Kind is the plugin type name used in configuration.
const Kind = "EventLog"

// dedupeWindow is how many recent event keys are remembered to skip redeliveries.
const dedupeWindow = 4096

var (
	_ plugins.Plugin         = (*EventLog)(nil)
	_ plugins.Starter        = (*EventLog)(nil)
	_ plugins.Closer         = (*EventLog)(nil)
	_ plugins.EnvelopeReader = (*EventLog)(nil)
)

// EventLog appends events to a JSON-lines file. Handle is safe for concurrent use; writes are
// serialized, so lines never interleave.
type EventLog struct {
	name   string
	cfg    Config
	path   string
	log    zerolog.Logger
	events []string

	lines      prometheus.Counter
	duplicates prometheus.Counter
	rotations  prometheus.Counter

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
	seen   *keyRing
}

// New builds an EventLog from typed configuration; it validates and does no I/O. A relative
// path resolves against deps.ConfigDir.
func New(name string, cfg Config, deps plugins.Deps) (*EventLog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := &EventLog{
		name:   name,
		cfg:    cfg,
		path:   deps.Resolve(cfg.Path),
		log:    deps.Log,
		events: cfg.Events,
		lines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_eventlog_lines_written_total",
			Help: "Event lines written to the event log.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_eventlog_duplicates_skipped_total",
			Help: "Redelivered events not written again.",
		}),
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_eventlog_rotations_total",
			Help: "Rotations of the event log file.",
		}),
		seen: newKeyRing(dedupeWindow),
	}
	if deps.Metrics != nil {
		for _, c := range []prometheus.Collector{l.lines, l.duplicates, l.rotations} {
			if err := deps.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("register eventlog metrics: %w", err)
			}
		}
	}
	return l, nil
}

// Factory builds an EventLog from raw parameters, for the plugin registry.
var Factory = plugins.FactoryOf(New)

// Name returns the instance name.
func (l *EventLog) Name() string { return l.name }

// Events returns the subscribed event types.
func (l *EventLog) Events() []string { return slices.Clone(l.events) }

// Path returns the resolved path of the log file.
func (l *EventLog) Path() string { return l.path }

// Start creates the file's folder and opens the file for appending.
func (l *EventLog) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return nil
	}
	return l.open()
}

// EnvelopeOnly reports that EventLog writes events as received and never reads their payload.
func (l *EventLog) EnvelopeOnly() bool { return true }

// Handle writes ev as one line, unless the same event was written recently.
func (l *EventLog) Handle(ctx context.Context, ev *event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := ev.MarshalJSON()
	if err != nil {
		return plugins.Permanent(fmt.Errorf("encode event: %w", err))
	}
	if bytes.ContainsAny(line, "\r\n") {
		// Raw newlines in JSON can only be whitespace between tokens (the event was decoded,
		// so it is valid JSON).
		line = event.AppendCompact(make([]byte, 0, len(line)+1), line)
	}
	line = append(slices.Clip(line), '\n')
	key := ev.Key()

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("event log is closed")
	}
	if l.seen.has(key) {
		l.duplicates.Inc()
		l.log.Debug().Str(logfield.EventKey, key).Str(logfield.EventType, ev.Type).Msg("duplicate event not logged again")
		return nil
	}
	if l.f == nil {
		if err := l.open(); err != nil {
			return err
		}
	}
	if l.size > 0 && l.size+int64(len(line)) > l.cfg.MaxBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(line)
	if err != nil {
		// Take back a partial line so the retry does not leave a broken one behind.
		if n > 0 {
			_ = l.f.Truncate(l.size)
		}
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	if l.cfg.Fsync {
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", l.path, err)
		}
	}
	l.size += int64(n)
	l.seen.add(key)
	l.lines.Inc()
	return nil
}

// Close flushes and closes the file. Handle fails after Close.
func (l *EventLog) Close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	syncErr := f.Sync()
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", l.path, err)
	}
	if syncErr != nil {
		return fmt.Errorf("sync %s: %w", l.path, syncErr)
	}
	return nil
}

// open opens the log file for appending; l.mu is held.
func (l *EventLog) open() error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return fmt.Errorf("create folder of %s: %w", l.path, err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", l.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat %s: %w", l.path, err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// rotate shifts path.1..path.N-1 to path.2..path.N (dropping path.N), moves path to path.1 and
// opens a fresh path; l.mu is held. When a rename fails the current file is reopened, so that
// logging goes on in a file larger than MaxBytes rather than stopping.
func (l *EventLog) rotate() error {
	if err := l.f.Close(); err != nil {
		l.log.Warn().Err(err).Str(logfield.File, l.path).Msg("close event log before rotation")
	}
	l.f = nil
	keep := l.cfg.MaxFiles
	var rotErr error
	if err := os.Remove(l.rotated(keep)); err != nil && !errors.Is(err, os.ErrNotExist) {
		rotErr = fmt.Errorf("remove %s: %w", l.rotated(keep), err)
	}
	for i := keep - 1; i >= 1 && rotErr == nil; i-- {
		if err := os.Rename(l.rotated(i), l.rotated(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			rotErr = fmt.Errorf("rotate %s: %w", l.rotated(i), err)
		}
	}
	if rotErr == nil {
		if err := os.Rename(l.path, l.rotated(1)); err != nil {
			rotErr = fmt.Errorf("rotate %s: %w", l.path, err)
		}
	}
	if err := l.open(); err != nil {
		return errors.Join(rotErr, err)
	}
	if rotErr != nil {
		l.log.Error().Err(rotErr).Str(logfield.File, l.path).Msg("event log rotation; writing on in the current file")
		return nil
	}
	l.rotations.Inc()
	l.log.Info().Str(logfield.File, l.path).Int(logfield.Count, keep).Msg("event log rotated")
	return nil
}

func (l *EventLog) rotated(i int) string { return l.path + "." + strconv.Itoa(i) }

// keyRing is a set of the last n keys added.
type keyRing struct {
	keys []string
	next int
	set  map[string]struct{}
}

func newKeyRing(n int) *keyRing {
	return &keyRing{keys: make([]string, n), set: make(map[string]struct{}, n)}
}

func (r *keyRing) has(k string) bool {
	_, ok := r.set[k]
	return ok
}

func (r *keyRing) add(k string) {
	if old := r.keys[r.next]; old != "" {
		delete(r.set, old)
	}
	r.keys[r.next] = k
	r.set[k] = struct{}{}
	r.next = (r.next + 1) % len(r.keys)
}
