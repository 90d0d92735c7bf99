// Package emssim simulates an EvoStream Media Server on the wire: its HTTP API (request and
// response forms of reference §3), its RPC event sinks (reference §1), stream and config
// bookkeeping with EMS's ids and cascades, and real media written by ffmpeg in EMS's file
// layout (reference §1.6.2). It is meant for tests (in-process, on free ports) and demos (the
// cmd/emssim binary), and it can inject faults: lost, duplicated, delayed and reordered events,
// and failing or slow API calls.
//
// # Streams between simulators
//
// Every simulator listens on an "RTMP" address besides its API. Nothing speaks RTMP there: the
// listener serves the simulator's admin endpoints (/_sim/...), and a pushStream to
// rtmp://host:port/live or a pullStream from rtmp://host:port/live/name is carried out as admin
// calls to the simulator listening at host:port. So pushes and pulls work between simulators
// in one process and across processes alike, and a push to an address where no simulator
// listens fails to connect, as it would on a real EMS. The admin calls carry what the RTMP
// connect carries: the config's tcUrl, swfUrl and pageUrl (tcUrl and swfUrl default to the URI
// connected to), the user agent, and the connecting side's ephemeral port. So the far simulator
// reports them on its side of the stream (farPort, tcUrl, swfUrl, pageUrl, userAgent), as EMS
// does; a push's config and user variables stay on the pushing side.
//
// # Admin endpoints
//
// Served under /_sim/ on both the API and the RTMP address:
//
//	POST /_sim/publish?name=N     an encoder publishes N (inStreamCreated, type INR); optional
//	                              tcUrl, swfUrl, pageUrl, agent, farIp, farPort: its connect
//	POST /_sim/unpublish?name=N   the encoder of N disconnects (its outputs close with it)
//	GET  /_sim/faults             the injected faults (JSON, durations in nanoseconds)
//	PUT  /_sim/faults             replace them
//	GET  /_sim/events             delivery counters and the recent delivery log
//	POST /_sim/play, GET /_sim/alive, POST /_sim/close   used by peers for pulls and pushes
package emssim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/internal/logfield"
)

// Config configures a simulator. The zero value is usable: it listens on EMS's default ports.
type Config struct {
	// APIAddr is the HTTP API listen address; default 127.0.0.1:7777. Use 127.0.0.1:0 for a
	// free port.
	APIAddr string
	// RTMPAddr is the address pushes target and pulls read from (see the package comment);
	// default 127.0.0.1:1935. Use 127.0.0.1:0 for a free port.
	RTMPAddr string
	// Sinks are the RPC event sinks.
	Sinks []Sink
	// MediaDir is where relative targetFolder and pathToFile values are resolved; empty means
	// the working directory, as for EMS.
	MediaDir string
	// IP is the simulator's own address as it appears in payloads ("ip", "nearIp");
	// default 127.0.0.1.
	IP string
	// ProcessID is the PID reported in events; default the process's own.
	ProcessID uint64
	// Faults are injected from the start; see SetFaults.
	Faults Faults
	// Seed seeds the generator behind every random decision (faults, generated names).
	Seed uint64
	// FFmpeg is the ffmpeg binary; default "ffmpeg" from PATH.
	FFmpeg string
	// FPS is the frame rate of the synthetic source; default 10 (cheap on shared machines).
	FPS int
	// ReconnectInterval is how often keepAlive pulls and pushes retry and check their peer;
	// default 1s, as EMS.
	ReconnectInterval time.Duration
	// AcceptUnknownPeers makes pulls from and pushes to addresses where no simulator listens
	// succeed with a synthetic peer, instead of failing to connect as EMS would.
	AcceptUnknownPeers bool
	// Log receives the simulator's own diagnostics.
	Log zerolog.Logger
	// Now is the clock for timestamps; default time.Now.
	Now func() time.Time
}

// Sim is one simulated EMS. Its methods are safe for concurrent use.
type Sim struct {
	cfg  Config
	log  zerolog.Logger
	now  func() time.Time
	em   *emitter
	hc   *http.Client
	kick chan struct{}

	mu           sync.Mutex
	rng          *rand.Rand
	faults       Faults
	nextStreamID uint64
	nextConfigID uint64
	nextTimerID  uint64
	streams      map[uint64]*stream
	configs      map[uint64]*config
	timers       map[uint64]*timer
	reserved     map[string]bool // record paths being written, so a restart picks the next name
	masters      map[string]*masterState
	pids         []int // every ffmpeg started, for tests that check none is left
	closed       bool
	// nextEphemeral counts outbound connections (under mu); see ephemeralPortLocked.
	nextEphemeral uint64

	apiLn, rtmpLn net.Listener
	apiSrv        *http.Server
	rtmpSrv       *http.Server
	staging       string
	ctx           context.Context
	cancel        context.CancelFunc
	wg            sync.WaitGroup // goroutines owned by the simulator (jobs, connector, timers)
}

// New builds a simulator; it does no I/O. Start makes it listen.
func New(cfg Config) (*Sim, error) {
	if cfg.APIAddr == "" {
		cfg.APIAddr = "127.0.0.1:7777"
	}
	if cfg.RTMPAddr == "" {
		cfg.RTMPAddr = "127.0.0.1:1935"
	}
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if cfg.ProcessID == 0 {
		cfg.ProcessID = uint64(os.Getpid())
	}
	if cfg.FFmpeg == "" {
		cfg.FFmpeg = "ffmpeg"
	}
	if cfg.FPS <= 0 {
		cfg.FPS = 10
	}
	if cfg.ReconnectInterval <= 0 {
		cfg.ReconnectInterval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for _, sk := range cfg.Sinks {
		if sk.URL == "" {
			return nil, errors.New("event sink without url")
		}
	}
	s := &Sim{
		cfg: cfg, log: cfg.Log, now: cfg.Now,
		hc:           &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}},
		kick:         make(chan struct{}, 1),
		rng:          rand.New(rand.NewPCG(cfg.Seed, cfg.Seed+1)),
		nextStreamID: 100, // stream ids and config ids are separate counters (reference §1.6.1)
		nextConfigID: 1,
		nextTimerID:  1,
		streams:      map[uint64]*stream{},
		configs:      map[uint64]*config{},
		timers:       map[uint64]*timer{},
		reserved:     map[string]bool{},
		masters:      map[string]*masterState{},
	}
	s.em = newEmitter(cfg.Sinks, cfg.ProcessID, cfg.Seed+2, cfg.Now, cfg.Log)
	s.SetFaults(cfg.Faults)
	return s, nil
}

// Start binds the API and RTMP listeners, starts serving and logs serverStarted. The context
// bounds only the start itself.
func (s *Sim) Start(ctx context.Context) error {
	var lc net.ListenConfig
	var err error
	if s.apiLn, err = lc.Listen(ctx, "tcp", s.cfg.APIAddr); err != nil {
		return fmt.Errorf("listen api on %s: %w", s.cfg.APIAddr, err)
	}
	if s.rtmpLn, err = lc.Listen(ctx, "tcp", s.cfg.RTMPAddr); err != nil {
		_ = s.apiLn.Close()
		return fmt.Errorf("listen rtmp on %s: %w", s.cfg.RTMPAddr, err)
	}
	if s.staging, err = os.MkdirTemp("", "emssim-staging-"); err != nil {
		_ = s.apiLn.Close()
		_ = s.rtmpLn.Close()
		return fmt.Errorf("create staging folder: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.apiSrv = &http.Server{Handler: s.apiHandler(), ReadHeaderTimeout: 5 * time.Second}
	s.rtmpSrv = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	s.em.start()
	s.wg.Add(3)
	go func() { defer s.wg.Done(); _ = s.apiSrv.Serve(s.apiLn) }()
	go func() { defer s.wg.Done(); _ = s.rtmpSrv.Serve(s.rtmpLn) }()
	go func() { defer s.wg.Done(); s.connector() }()
	s.em.emit("serverStarted", versionInfo())
	s.log.Info().Str("api", s.APIURL()).Str("rtmp", s.RTMPURL()).Msg("ems simulator started")
	return nil
}

// APIURL returns the API base URL, such as http://127.0.0.1:7777.
func (s *Sim) APIURL() string { return "http://" + s.apiLn.Addr().String() }

// RTMPURL returns the push target of this simulator, such as rtmp://127.0.0.1:1935/live.
func (s *Sim) RTMPURL() string { return "rtmp://" + s.rtmpLn.Addr().String() + "/live" }

// Close shuts every stream (finishing their files and events), stops timers and listeners,
// logs serverStopping, and lets queued events go out for a few seconds.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed || s.cancel == nil {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ids := s.sortedStreamIDs()
	for _, id := range ids {
		if st := s.streams[id]; st != nil && st.in == nil {
			s.closeStreamLocked(st, false)
		}
	}
	for _, id := range s.sortedStreamIDs() {
		if st := s.streams[id]; st != nil {
			s.closeStreamLocked(st, false)
		}
	}
	for _, t := range s.timers {
		t.stop()
	}
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.apiSrv.Shutdown(ctx)
	_ = s.rtmpSrv.Shutdown(ctx)
	s.cancel()
	s.wg.Wait()
	s.em.emit("serverStopping", versionInfo())
	s.em.close(3 * time.Second)
	return os.RemoveAll(s.staging)
}

// EventStats returns delivery counters over all sinks.
func (s *Sim) EventStats() EventStats {
	st, _ := s.em.snapshot()
	return st
}

// Deliveries returns the recent delivery log (what was posted, failed or dropped, per sink).
func (s *Sim) Deliveries() []Delivery {
	_, d := s.em.snapshot()
	return d
}

// ffmpegPIDs returns the process ids of every ffmpeg the simulator started.
func (s *Sim) ffmpegPIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.pids...)
}

func (s *Sim) sortedStreamIDs() []uint64 {
	ids := make([]uint64, 0, len(s.streams))
	for id := range s.streams {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (s *Sim) sortedConfigIDs() []uint64 {
	ids := make([]uint64, 0, len(s.configs))
	for id := range s.configs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// resolvePath makes a relative EMS path relative to MediaDir, as EMS resolves relative paths
// against its own folder.
func (s *Sim) resolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) || s.cfg.MediaDir == "" {
		return p
	}
	return filepath.Join(s.cfg.MediaDir, p)
}

// randomString returns n random letters, for EMS's generated names (stream_xxxxxxxx).
func (s *Sim) randomString(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[s.rng.IntN(len(letters))]
	}
	return string(b)
}

func (s *Sim) logEmitErr(err error, what string) {
	if err != nil {
		s.log.Warn().Err(err).Str(logfield.Reason, what).Msg("simulator media error")
	}
}

func versionInfo() obj {
	return obj{
		"banner":        "EvoStream Media Server (www.evostream.com) version 2.0.0 build 5547 with hash: 0000000000000000000000000000000000000000 on branch: emssim - QBert - (built for emsflow emssim)",
		"branchName":    "emssim",
		"buildDate":     "2017-09-28T00:00:00.000",
		"buildNumber":   "5547",
		"codeName":      "QBert",
		"hash":          "0000000000000000000000000000000000000000",
		"releaseNumber": "2.0.0",
	}
}
