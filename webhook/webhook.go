// Package webhook is the HTTP receiver for EMS event notifications: it authenticates and
// limits each request, decodes EMS's JSON events tolerantly, attributes each event to the EMS
// that sent it, and answers 2xx only once the events are durably in the journal.
//
// Routes:
//
//	POST <path>, <path>/, <path>/<ems-name>   events; <path> is /evowebservices by default
//	GET  /healthz                               the process is serving
//	GET  /readyz                                the journal is ready and plugins are started
//	GET  /metrics                               Prometheus metrics
//
// An event request body is one EMS event (a JSON object, EMS's own format, one per POST) or a
// JSON array of events (a batch, for tools and replays). Answers: 200 {"accepted":N}; 400
// malformed JSON or an event without a string type; 401 missing or wrong token; 404 a path
// suffix naming an EMS that is not configured; 405 a method other than POST; 413 a body over
// the limit; 503 the journal did not store the events. Error bodies are {"error":"<one line>"}.
// Event types outside EMS's vocabulary are accepted and journaled; no plugin subscribes to them.
//
// # Attribution
//
// Every event is attributed to one configured EMS (event.Event.EMS), by the first rule that
// matches:
//
//  1. the path suffix: POST /evowebservices/<ems-name> (the sink url in that EMS's config.lua);
//     a suffix that names no configured EMS is answered 404, because a typo in a sink url should
//     be loud;
//  2. payload.customData, when it is a string or number equal to an EMS's CustomData (the sink's
//     customData in config.lua);
//  3. the peer address, when it is inside one of an EMS's Addresses (the first EMS in
//     configuration order wins on overlap);
//  4. otherwise the default EMS (Config.DefaultEMS; with a single EMS configured, that one).
//
// With several EMS configured, an event that matches none is still accepted under the default
// EMS, counted in emsflow_webhook_unattributed_events_total and logged: EMS never retries, so
// refusing it would lose it, while an operator can fix the attribution and re-drive. The
// unknown_ems rejection reason therefore only counts unknown path suffixes.
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/xid"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
)

// Paths the webhook serves besides the event paths.
const (
	healthPath  = "/healthz"
	readyPath   = "/readyz"
	metricsPath = "/metrics"
)

// requestIDField is the log field of the request ID; the header of the same value is
// X-Request-Id on every answer.
const requestIDField = "request_id"

// Journal is where accepted events go. Append returns only after every event is durable; an
// error means none or not all were stored, and the webhook answers 503 (EMS's event is then
// lost, as EMS never retries; tools replaying batches can retry, and the journal deduplicates
// by event.Event.Key). Append must not keep the events or their bytes once it returned nil: the
// webhook then reuses the buffer their Raw points into for a later request.
type Journal interface {
	Append(ctx context.Context, evs []*event.Event) error
}

// Readiness reports whether the service can take events: nil when ready.
type Readiness interface {
	Ready() error
}

// ReadinessFunc adapts a function to Readiness.
type ReadinessFunc func() error

// Ready calls f.
func (f ReadinessFunc) Ready() error { return f() }

// Server is the webhook HTTP server. It is safe for concurrent use.
type Server struct {
	cfg       Config
	journal   Journal
	ready     Readiness
	log       zerolog.Logger
	metrics   *metrics
	attr      *attributor
	deadlines *deadlines
	tokenSum  [sha256.Size]byte
	handler   http.Handler
	srv       *http.Server

	mu   sync.Mutex
	addr string
}

// New builds a server; it does no I/O. reg receives the webhook's metrics and gatherer is what
// /metrics exposes; when both are nil a private registry serves both. A nil ready means always
// ready. Invalid configuration is an error listing every problem.
func New(cfg Config, j Journal, ready Readiness, reg prometheus.Registerer, gatherer prometheus.Gatherer, log zerolog.Logger) (*Server, error) {
	if j == nil {
		return nil, errors.New("new webhook: journal is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook config: %w", err)
	}
	cfg = cfg.withDefaults()
	if reg == nil && gatherer == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	}
	if reg == nil || gatherer == nil {
		return nil, errors.New("new webhook: registerer and gatherer must both be set or both be nil")
	}
	if ready == nil {
		ready = ReadinessFunc(func() error { return nil })
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		journal:   j,
		ready:     ready,
		log:       log,
		metrics:   m,
		attr:      newAttributor(cfg),
		deadlines: newDeadlines(cfg.AppendTimeout),
		addr:      cfg.Listen,
	}
	if cfg.AuthToken != "" {
		s.tokenSum = sha256.Sum256([]byte(cfg.AuthToken))
	}
	s.handler = s.routes(gatherer)
	s.srv = &http.Server{
		Addr:              cfg.Listen,
		Handler:           s.handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          stdlog.New(errorLogWriter{log}, "", 0),
	}
	return s, nil
}

// Handler returns the server's HTTP handler, for tests and benchmarks.
func (s *Server) Handler() http.Handler { return s.handler }

// ListenAndServe listens on Config.Listen and serves until Shutdown; it then returns nil.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(l)
}

// Serve serves on l until Shutdown; it then returns nil. Serve closes l.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.addr = l.Addr().String()
	s.mu.Unlock()
	s.log.Info().Str("addr", l.Addr().String()).Strs(logfield.Path, s.cfg.Paths).Msg("webhook listening")
	if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve webhook: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight requests (and so their journal
// appends) to finish, or for ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down webhook: %w", err)
	}
	return nil
}

// Addr returns the address the server listens on once Serve has started (with the real port
// when Listen asked for port 0), and Config.Listen before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) routes(gatherer prometheus.Gatherer) http.Handler {
	r := chi.NewRouter()
	r.Use(s.requestID)
	if s.log.GetLevel() <= zerolog.DebugLevel {
		r.Use(s.accessLog) // outside the recoverer, so a panic's 500 is logged too
	}
	r.Use(s.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such path: "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	})
	r.Get(healthPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get(readyPath, s.handleReady)
	r.Method(http.MethodGet, metricsPath, promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: promLogger{s.log}}))

	if s.cfg.Admin != nil {
		r.With(s.requireToken).Mount("/admin", s.cfg.Admin)
	}

	ev := r.With(s.instrument)
	for _, p := range s.cfg.Paths {
		ev.HandleFunc(p, s.handleEvents)
		ev.HandleFunc(p+"/", s.handleEvents)
		ev.HandleFunc(p+"/{ems}", s.handleEvents)
		ev.HandleFunc(p+"/{ems}/", s.handleEvents)
	}
	return r
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := s.ready.Ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// handleEvents accepts one event or a batch into the journal.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.reject(w, r, http.StatusMethodNotAllowed, ReasonMethod, "method "+r.Method+" not allowed, use POST")
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="emsflow"`)
		s.reject(w, r, http.StatusUnauthorized, ReasonUnauthorized, "missing or wrong token")
		return
	}
	pathEMS := chi.URLParam(r, "ems")
	if pathEMS != "" && !s.attr.known(pathEMS) {
		msg := fmt.Sprintf("unknown EMS %q in path", pathEMS)
		if len(s.cfg.EMS) > 0 {
			msg += " (configured: " + strings.Join(emsNames(s.cfg.EMS), ", ") + ")"
		} else {
			msg += " (no EMS is configured by name)"
		}
		s.reject(w, r, http.StatusNotFound, ReasonUnknownEMS, msg)
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		s.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body of %d bytes is over the limit of %d", r.ContentLength, s.cfg.MaxBodyBytes))
		return
	}
	evs, body, err := s.readEvents(w, r)
	if err != nil {
		body.free()
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			s.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("body is over the limit of %d bytes", s.cfg.MaxBodyBytes))
		case errors.Is(err, event.ErrNoType):
			s.reject(w, r, http.StatusBadRequest, ReasonNoType, err.Error())
		default: // unreadable or malformed
			s.reject(w, r, http.StatusBadRequest, ReasonBadJSON, err.Error())
		}
		return
	}

	peer := peerAddr(r.RemoteAddr)
	unattributed := 0
	for _, ev := range evs {
		name, matched := s.attr.attribute(pathEMS, peer, ev)
		ev.EMS = name
		if !matched && s.attr.ambiguous() {
			unattributed++
		}
		s.metrics.received.WithLabelValues(typeLabel(ev.Type)).Inc()
	}
	if unattributed > 0 {
		s.metrics.unattributed.Add(float64(unattributed))
		s.requestLog(w, r).Warn().Str(logfield.Peer, r.RemoteAddr).Str(logfield.Path, r.URL.Path).
			Int(logfield.Count, unattributed).Str(logfield.EMS, s.attr.def).
			Msg("events match no configured ems; attributed to the default")
	}

	// The sender may hang up while the journal writes; the event was fully received, so it is
	// stored anyway (EMS never retries).
	if err := s.journal.Append(s.deadlines.at(time.Now()), evs); err != nil {
		s.requestLog(w, r).Error().Err(err).Int(logfield.Count, len(evs)).Str(logfield.EventType, evs[0].Type).
			Msg("journal append; answering 503")
		w.Header().Set("Retry-After", "1")
		s.reject(w, r, http.StatusServiceUnavailable, ReasonJournalUnavailable, "journal unavailable, events not stored")
		return // body is not reused: an append that failed may still hold it
	}
	defer body.free() // the journal holds the events now; nothing below reads their bytes
	debug := s.log.GetLevel() <= zerolog.DebugLevel
	for _, ev := range evs {
		s.metrics.accepted.WithLabelValues(ev.EMS).Inc()
		if debug {
			s.requestLog(w, r).Debug().Str(logfield.EventType, ev.Type).Uint64(logfield.EventID, ev.ID).
				Str(logfield.EventKey, ev.Key()).Str(logfield.EMS, ev.EMS).Msg("event accepted")
		}
	}
	if len(evs) == 1 {
		writeBody(w, http.StatusOK, acceptedOne)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"accepted": len(evs)})
}

// readEvents reads and decodes the request body. A body of known, usual size is read into a
// buffer that the events' Raw then share (event.DecodeBody): no copy per event. Up to
// smallBodySize the buffer is recycled, returned as the *smallBody the caller frees (nil
// otherwise). Others (chunked, or large enough that a sender could make the webhook reserve
// memory just by announcing a size) grow a pooled buffer as bytes arrive, and the decoder copies
// what it keeps. A body over the limit is an *http.MaxBytesError.
func (s *Server) readEvents(w http.ResponseWriter, r *http.Request) ([]*event.Event, *smallBody, error) {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	if n := r.ContentLength; n >= 0 && n <= maxPooledBody {
		var sb *smallBody
		var b []byte
		if n <= smallBodySize {
			sb = smallBodies.Get().(*smallBody)
			b = sb.b[:n]
		} else {
			b = make([]byte, n)
		}
		if _, err := io.ReadFull(body, b); err != nil {
			return nil, sb, fmt.Errorf("read body: %w", err)
		}
		evs, err := event.DecodeBody(b, s.attr.usesCustomData())
		return evs, sb, err
	}
	buf := getBodyBuffer()
	defer putBodyBuffer(buf)
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, nil, fmt.Errorf("read body: %w", err)
	}
	var (
		evs []*event.Event
		err error
	)
	if s.attr.usesCustomData() {
		evs, err = event.DecodeBatchEnvelopes(buf.Bytes())
	} else {
		evs, err = event.DecodeBatchHeaders(buf.Bytes())
	}
	return evs, nil, err
}

// smallBody is a recycled buffer for a body of known size up to smallBodySize, which EMS's
// events are (1 to 3 KB): under load, allocating one per request was a sixth of the bytes the
// service allocated.
type smallBody struct{ b []byte }

const smallBodySize = 8 << 10

var smallBodies = sync.Pool{New: func() any { return &smallBody{b: make([]byte, smallBodySize)} }}

// free returns the buffer for reuse; the events decoded from it must not be read after.
func (sb *smallBody) free() {
	if sb != nil {
		smallBodies.Put(sb)
	}
}

// acceptedOne is the answer to a POST of one event, written for every event EMS sends.
var acceptedOne = []byte(`{"accepted":1}` + "\n")

// bodyBuffers recycles the buffers of bodies of unknown or large size: the decoder copies what
// it keeps, so a buffer is free again once the request is answered. Buffers grown by a large
// batch are dropped.
var bodyBuffers = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 8<<10)) }}

const maxPooledBody = 64 << 10

func getBodyBuffer() *bytes.Buffer { return bodyBuffers.Get().(*bytes.Buffer) }

func putBodyBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBody {
		return
	}
	b.Reset()
	bodyBuffers.Put(b)
}

// requireToken answers 401 to requests without the auth token (when one is configured).
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			writeError(w, http.StatusUnauthorized, "missing or wrong token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized checks the token in constant time. The token is taken from the Authorization
// bearer header, else X-Emsflow-Token, else the token query parameter.
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.AuthToken == "" {
		return true
	}
	var given string
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		given = strings.TrimSpace(h[7:])
	}
	if given == "" {
		given = r.Header.Get("X-Emsflow-Token")
	}
	if given == "" {
		given = r.URL.Query().Get("token")
	}
	if given == "" {
		return false
	}
	// Hashing first makes the comparison independent of the token's length.
	sum := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

// reject counts, logs and answers an event request that is refused.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, status int, reason, msg string) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	e := s.requestLog(w, r).Warn()
	if status >= 500 {
		e = s.requestLog(w, r).Error()
	}
	if reason == ReasonUnauthorized {
		e = e.Bool(logfield.Security, true)
	}
	e.Str(logfield.Reason, reason).Int(logfield.Status, status).Str(logfield.Path, r.URL.Path).
		Str(logfield.Peer, r.RemoteAddr).Msg(oneLine(msg))
	writeError(w, status, msg)
}

// instrument records the event request duration by status code.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		defer func() {
			code := ww.Status()
			if code == 0 {
				code = http.StatusOK
			}
			s.metrics.duration.WithLabelValues(strconv.Itoa(code)).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(ww, r)
	})
}

// requestHeaderID is the header that carries the request ID on every answer.
const requestHeaderID = "X-Request-Id"

// requestID gives every answer an X-Request-Id, which the request's log lines carry too
// (requestLog). The logger is built only when a line is written: most requests write none.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()[requestHeaderID] = []string{xid.New().String()}
		next.ServeHTTP(w, r)
	})
}

// requestLog is the logger for lines about request r, answered on w.
func (s *Server) requestLog(w http.ResponseWriter, r *http.Request) *zerolog.Logger {
	l := s.log.With().Str(requestIDField, w.Header().Get(requestHeaderID)).Logger()
	return &l
}

// accessLog writes one debug line per request. The path only: the query string may carry the
// auth token.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		s.requestLog(w, r).Debug().
			Str("method", r.Method).
			Str(logfield.Path, r.URL.Path).
			Str(logfield.Peer, r.RemoteAddr).
			Int(logfield.Status, ww.Status()).
			Int("size", ww.BytesWritten()).
			Dur(logfield.Duration, time.Since(start)).
			Msg("http request")
	})
}

// recoverer turns a panic into a logged, counted 500. http.ErrAbortHandler is passed on, as
// net/http uses it to abort a response on purpose.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			s.metrics.panics.Inc()
			s.requestLog(w, r).Error().Str("panic", fmt.Sprint(v)).Str(logfield.Path, r.URL.Path).
				Bytes("stack", debug.Stack()).Msg("http handler panicked")
			writeError(w, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode answer"}`)
	}
	writeBody(w, status, append(b, '\n'))
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Header values shared by every answer (net/http only reads them).
var (
	contentTypeJSON = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": oneLine(msg)})
}

// oneLine keeps an error message on one line, as decoding errors may quote input.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "..."
	}
	return s
}

// errorLogWriter sends net/http's own error log (TLS handshakes, bad requests) to zerolog.
type errorLogWriter struct{ log zerolog.Logger }

func (e errorLogWriter) Write(p []byte) (int, error) {
	e.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// promLogger sends promhttp's errors to zerolog.
type promLogger struct{ log zerolog.Logger }

func (p promLogger) Println(v ...any) { p.log.Error().Msg(strings.TrimSpace(fmt.Sprintln(v...))) }
