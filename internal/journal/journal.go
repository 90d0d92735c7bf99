// Package journal keeps accepted EMS events durably in a NATS JetStream stream, either on an
// embedded in-process server with file storage under a data folder, or on an external NATS
// server or cluster reached by URL. It also owns the dead-letter stream.
//
// Each event is one message on subject "ems.events.<ems>.<type>", its body the event exactly as
// EMS sent it, and its EMS name in a header. A duplicate POST within the dedupe window is stored
// once: the embedded journal keeps the dedupe keys of the window itself (see dedupe), an external
// one sends each key as the JetStream message id, so that every emsflow sharing the cluster
// shares the server's index.
package journal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
)

// Subject layout and headers.
const (
	SubjectPrefix = "ems.events"
	DeadPrefix    = "emsflow.dead"

	HeaderEMS      = "Emsflow-Ems"
	HeaderReceived = "Emsflow-Received"

	// Dead-letter headers.
	HeaderPlugin   = "Emsflow-Plugin"
	HeaderError    = "Emsflow-Error"
	HeaderAttempts = "Emsflow-Attempts"
	HeaderSubject  = "Emsflow-Subject"
	HeaderSequence = "Emsflow-Sequence"
	HeaderFirstAt  = "Emsflow-First-Delivered"
)

// otherToken is the subject token for event types that are not safe subject tokens.
const otherToken = "_other"

// Config configures the journal.
type Config struct {
	// DataDir holds the embedded server's storage. Unused with URL.
	DataDir string
	// URL of an external NATS server or cluster (comma-separated); empty runs an embedded one.
	URL string
	// Stream is the JetStream stream name for events; the dead-letter stream is "<Stream>_DEAD".
	Stream string
	// MaxAge and MaxBytes bound retention; zero means unlimited. The embedded journal keeps a
	// MaxBytes of 64 MiB and more itself, in whole blocks (see trim.go).
	MaxAge   time.Duration
	MaxBytes int64
	// DedupeWindow is how long a message id is remembered for duplicate detection.
	DedupeWindow time.Duration
	// Replicas is the stream replica count (external clusters only).
	Replicas int
	// SyncAlways makes the embedded server fsync every write before acknowledging it. Without it
	// an acknowledged event survives a process crash (it is written to the file) but a power loss
	// within the sync interval can lose it.
	SyncAlways bool
}

// Journal is the durable event log.
type Journal struct {
	cfg    Config
	log    zerolog.Logger
	srv    *server.Server // nil with an external URL
	nc     *nats.Conn
	closed chan struct{} // closed by the connection's ClosedHandler
	js     jetstream.JetStream
	str    jetstream.Stream
	dead   jetstream.Stream
	dd     *dedupe  // the embedded journal's dedupe index; nil with an external URL
	acks   *acks    // the embedded journal's publisher; nil with an external URL
	store  string   // the embedded server's store directory
	trim   *trimmer // keeps the embedded stream at MaxBytes; nil when nats-server does it
}

// Open starts (or connects to) NATS and creates or updates the event and dead-letter streams.
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*Journal, error) {
	if cfg.Stream == "" {
		cfg.Stream = "EMS_EVENTS"
	}
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	j := &Journal{cfg: cfg, log: log, closed: make(chan struct{})}
	opts := []nats.Option{
		nats.Name("emsflow"),
		nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(j.closed) }),
		// Asynchronous errors (a slow consumer, a permission violation) say why deliveries
		// stall; without a handler nats.go keeps them to itself.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			e := log.Warn().Err(err)
			if sub != nil {
				e = e.Str("subject", sub.Subject)
			}
			e.Msg("nats connection error")
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("disconnected from nats")
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info().Msg("reconnected to nats") }),
	}
	var err error
	if cfg.URL == "" {
		if err := j.startEmbedded(); err != nil {
			return nil, err
		}
		// nats.go's default 2s handshake timeout is too short for a server that is recovering
		// its store after a crash on a busy machine: the start then failed with "read pipe: i/o
		// timeout". Nothing is listening on a network, so waiting longer costs nothing.
		j.nc, err = nats.Connect("", append(opts, nats.InProcessServer(j.srv), nats.Timeout(embeddedConnectTimeout))...)
	} else {
		j.nc, err = nats.Connect(cfg.URL, opts...)
	}
	if err != nil {
		j.shutdownServer()
		return nil, fmt.Errorf("connect to nats: %w", redactURLError(err, cfg.URL))
	}
	if j.js, err = jetstream.New(j.nc); err != nil {
		j.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	sc := jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "EMS events accepted by emsflow",
		Subjects:    []string{SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.DedupeWindow,
		Replicas:    cfg.Replicas,
		Discard:     jetstream.DiscardOld,
	}
	limitStream(&sc, cfg.MaxBytes, j.srv != nil)
	if j.str, err = j.js.CreateOrUpdateStream(ctx, sc); err != nil {
		j.Close()
		return nil, fmt.Errorf("create stream %s: %w", cfg.Stream, err)
	}
	dc := jetstream.StreamConfig{
		Name:        cfg.Stream + "_DEAD",
		Description: "events a plugin gave up on, with the last error",
		Subjects:    []string{DeadPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxBytes:    orUnlimited(cfg.MaxBytes),
		Duplicates:  time.Hour,
		Replicas:    cfg.Replicas,
	}
	if j.dead, err = j.js.CreateOrUpdateStream(ctx, dc); err != nil {
		j.Close()
		return nil, fmt.Errorf("create stream %s: %w", dc.Name, err)
	}
	if j.srv != nil {
		j.dd = newDedupe(cfg.DedupeWindow, time.Now())
		if err := j.loadDedupe(ctx); err != nil {
			j.Close()
			return nil, err
		}
		if j.acks, err = newAcks(j.nc, j.dd); err != nil {
			j.Close()
			return nil, err
		}
		if trims(cfg.MaxBytes, j.srv != nil) {
			j.startTrimmer()
		}
	}
	return j, nil
}

// embeddedConnectTimeout bounds the in-process connection handshake with the embedded server.
const embeddedConnectTimeout = 30 * time.Second

func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

func (j *Journal) startEmbedded() error {
	dir, err := filepath.Abs(j.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("journal data dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create journal data dir: %w", err)
	}
	opts := &server.Options{
		ServerName: "emsflow",
		JetStream:  true,
		StoreDir:   dir,
		DontListen: true, // in-process connections only: nothing to configure, nothing exposed
		NoSigs:     true,
		NoLog:      true,
		SyncAlways: j.cfg.SyncAlways,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("start embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("start embedded nats: not ready after 30s (is another emsflow using " + dir + "?)")
	}
	j.srv, j.store = srv, dir
	return nil
}

// Subject returns the subject an event is stored under.
func Subject(ems, typ string) string {
	return SubjectPrefix + "." + Token(ems) + "." + Token(typ)
}

// TypeFilter returns the subject filter matching one event type from every EMS.
func TypeFilter(typ string) string { return SubjectPrefix + ".*." + Token(typ) }

// Token maps a name to a subject token: names made of letters, digits, "_" and "-" are kept,
// anything else (an unknown event type with a dot or space in it) becomes "_other".
func Token(s string) string {
	if s == "" {
		return otherToken
	}
	for i := range len(s) {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return otherToken
		}
	}
	return s
}

// Append stores events durably and returns once the server acknowledged every one. A duplicate
// (same key within the dedupe window) is acknowledged without being stored again.
func (j *Journal) Append(ctx context.Context, evs []*event.Event) error {
	received := time.Now().UTC().Format(time.RFC3339Nano)
	switch {
	case j.dd == nil:
		return j.appendWithMsgIDs(ctx, evs, received)
	case len(evs) == 1:
		return j.appendOne(ctx, evs[0], received)
	default:
		return j.appendBatch(ctx, evs, received)
	}
}

// appendOne stores one event through the dedupe index.
func (j *Journal) appendOne(ctx context.Context, ev *event.Event, received string) error {
	k := ev.Digest()
	for {
		f, owner := j.dd.claim(k, time.Now())
		if f == nil {
			return nil // stored within the window
		}
		if owner {
			_ = j.acks.publish(k, f, j.message(ev, received)) // an error ends f
		}
		select {
		case <-f.done:
			if f.err == nil {
				return nil
			}
			if owner {
				return fmt.Errorf("journal %s: %w", ev.Type, f.err)
			}
			// The other request's publish failed: claim the key again and publish this one.
		case <-ctx.Done():
			return fmt.Errorf("journal %s: %w", ev.Type, context.Cause(ctx))
		}
	}
}

// appendBatch stores a batch through the dedupe index, in order, its publishes pipelined. A
// duplicate inside the batch waits for the first copy's publish.
func (j *Journal) appendBatch(ctx context.Context, evs []*event.Event, received string) error {
	var (
		waits []*flight
		err   error
	)
	now := time.Now()
	for _, ev := range evs {
		k := ev.Digest()
		f, owner := j.dd.claim(k, now)
		switch {
		case f == nil:
			continue
		case !owner:
		case err != nil: // an earlier publish of the batch failed: release the rest
			j.dd.finish(k, f, err, now)
		default:
			if perr := j.acks.publish(k, f, j.message(ev, received)); perr != nil {
				err = fmt.Errorf("journal %s: %w", ev.Type, perr)
			}
		}
		waits = append(waits, f)
	}
	for _, f := range waits {
		select {
		case <-f.done:
			if f.err != nil {
				return fmt.Errorf("journal: %w", f.err)
			}
		case <-ctx.Done():
			return fmt.Errorf("journal: %w", context.Cause(ctx))
		}
	}
	return nil
}

// appendWithMsgIDs stores events on an external server, whose message-id index drops
// duplicates.
func (j *Journal) appendWithMsgIDs(ctx context.Context, evs []*event.Event, received string) error {
	if len(evs) == 1 {
		if err := j.publish(ctx, j.message(evs[0], received)); err != nil {
			return fmt.Errorf("journal %s: %w", evs[0].Type, err)
		}
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for _, ev := range evs {
		f, err := j.js.PublishMsgAsync(j.message(ev, received))
		if err != nil {
			return fmt.Errorf("journal %s: %w", ev.Type, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("journal: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("journal: %w", context.Cause(ctx))
		}
	}
	return nil
}

// loadDedupe reads back the keys of the events stored within the last dedupe window, so a
// duplicate POST after a restart is still stored once. The keys are recomputed from the stored
// messages; they count as stored now, so they are remembered up to one window longer than
// needed.
func (j *Journal) loadDedupe(ctx context.Context) error {
	info, err := j.str.Info(ctx)
	if err != nil {
		return fmt.Errorf("read back dedupe keys: %w", err)
	}
	st := info.State
	began := time.Now()
	since := began.Add(-j.cfg.DedupeWindow)
	if st.Msgs == 0 || st.LastTime.Before(since) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, loadDedupeTimeout)
	defer cancel()
	cons, err := j.str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &since,
	})
	if err != nil {
		return fmt.Errorf("read back dedupe keys: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read back dedupe keys: %w", err)
	}
	defer it.Stop()
	n := 0
	for {
		// A bounded wait recovers a pull the client forgot to renew (see dispatch's nextWait).
		m, err := it.Next(jetstream.NextMaxWait(time.Second))
		if errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return fmt.Errorf("read back dedupe keys (%d of the last %s read): %w", n, j.cfg.DedupeWindow, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read back dedupe keys: %w", err)
		}
		j.dd.remember(event.Digest(m.Headers().Get(HeaderEMS), m.Data()), began)
		n++
		if md.Sequence.Stream >= st.LastSeq {
			break
		}
	}
	j.log.Info().Int(logfield.Count, n).Dur(logfield.Duration, time.Since(began)).
		Msg("dedupe keys of the last window read back from the journal")
	return nil
}

// loadDedupeTimeout bounds reading back the dedupe keys at start.
const loadDedupeTimeout = 5 * time.Minute

// message is the journal message of an event; on an external server its dedupe key is the
// JetStream message id.
func (j *Journal) message(ev *event.Event, received string) *nats.Msg {
	data := []byte(ev.Raw)
	if len(data) == 0 {
		data, _ = ev.MarshalJSON()
	}
	h := nats.Header{
		HeaderEMS:      {ev.EMS},
		HeaderReceived: {received},
	}
	if j.dd == nil {
		h[jetstream.MsgIDHeader] = []string{ev.Key()}
	}
	return &nats.Msg{Subject: Subject(ev.EMS, ev.Type), Data: data, Header: h}
}

// publish stores one message and waits for the server's acknowledgement, as jetstream's
// PublishMsg does (a request retried twice, 250 ms apart, while no stream answers, as during a
// cluster leader change), but reads the usual acknowledgement without reflection: the journal
// makes one per event.
func (j *Journal) publish(ctx context.Context, m *nats.Msg) error {
	resp, err := j.nc.RequestMsgWithContext(ctx, m)
	for try := 0; errors.Is(err, nats.ErrNoResponders) && try < 2; try++ {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no stream answered: %w", context.Cause(ctx))
		case <-time.After(250 * time.Millisecond):
		}
		resp, err = j.nc.RequestMsgWithContext(ctx, m)
	}
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("no stream answered on %s: %w", m.Subject, err)
		}
		return err
	}
	return parseAck(resp.Data)
}

// parseAck checks a JetStream publish acknowledgement: {"stream":"S","seq":N[,...]} stores the
// message (or found it a duplicate), {"error":{...}} does not.
func parseAck(b []byte) error {
	if bytes.HasPrefix(b, []byte(`{"stream":"`)) && !bytes.Contains(b, []byte(`"error"`)) {
		return nil
	}
	var ack struct {
		Error  *jetstream.APIError `json:"error"`
		Stream string              `json:"stream"`
	}
	if err := json.Unmarshal(b, &ack); err != nil {
		return fmt.Errorf("read publish acknowledgement %q: %w", b, err)
	}
	if ack.Error != nil {
		return fmt.Errorf("nats: %w", ack.Error)
	}
	if ack.Stream == "" {
		return fmt.Errorf("publish acknowledgement names no stream: %q", b)
	}
	return nil
}

// DecodeMsg turns a journaled message back into an event.
func DecodeMsg(m jetstream.Msg) (*event.Event, error) { return decodeMsg(m, event.Decode) }

// DecodeMsgEnvelope is DecodeMsg without building the payload (event.DecodeHeader): for
// plugins that read the envelope and Raw only.
func DecodeMsgEnvelope(m jetstream.Msg) (*event.Event, error) {
	return decodeMsg(m, event.DecodeHeader)
}

func decodeMsg(m jetstream.Msg, decode func([]byte) (*event.Event, error)) (*event.Event, error) {
	ev, err := decode(m.Data())
	if err != nil {
		return nil, err
	}
	ev.EMS = m.Headers().Get(HeaderEMS)
	return ev, nil
}

// Ready returns nil when the journal can accept events.
func (j *Journal) Ready() error {
	if j.nc == nil || !j.nc.IsConnected() {
		return errors.New("journal: not connected to nats")
	}
	if j.srv != nil && !j.srv.JetStreamEnabled() {
		return errors.New("journal: jetstream disabled")
	}
	return nil
}

// JetStream returns the JetStream context for consumers.
func (j *Journal) JetStream() jetstream.JetStream { return j.js }

// Stream returns the event stream.
func (j *Journal) Stream() jetstream.Stream { return j.str }

// DeadStream returns the dead-letter stream.
func (j *Journal) DeadStream() jetstream.Stream { return j.dead }

// Close drains the connection and stops the embedded server.
func (j *Journal) Close() error {
	if j.trim != nil {
		j.trim.stop()
	}
	var err error
	if j.nc != nil {
		if derr := j.nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
			err = derr
		}
		// Drain is asynchronous; wait for it so pending acks reach the server.
		select {
		case <-j.closed:
		case <-time.After(10 * time.Second):
		}
		j.nc.Close()
	}
	if j.acks != nil {
		j.acks.close()
	}
	if j.dd != nil {
		j.dd.close()
	}
	j.shutdownServer()
	return err
}

func (j *Journal) shutdownServer() {
	if j.srv != nil {
		j.srv.Shutdown()
		j.srv.WaitForShutdown()
		j.log.Debug().Str(logfield.Path, j.cfg.DataDir).Msg("embedded nats stopped")
	}
}

// redactURLError removes credentials of the NATS URL from an error message.
func redactURLError(err error, url string) error {
	if url == "" {
		return err
	}
	msg := err.Error()
	for u := range strings.SplitSeq(url, ",") {
		if i := strings.Index(u, "@"); i > 0 {
			msg = strings.ReplaceAll(msg, u[:i], "<redacted>")
		}
	}
	return errors.New(msg)
}
