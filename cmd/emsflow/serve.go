package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/internal/config"
	"github.com/emsflow/emsflow/internal/dispatch"
	"github.com/emsflow/emsflow/internal/journal"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/webhook"
)

// configError is a configuration problem (all of them, joined).
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

func indentLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  - " + l
	}
	return strings.Join(lines, "\n")
}

func loadConfig(path string, env []string, reg *plugins.Registry) (*config.Config, error) {
	cfg, err := config.Load(path, config.Options{Env: env, KnownKinds: reg.Kinds()})
	if err != nil {
		return nil, &configError{err}
	}
	return cfg, nil
}

func newLogger(cfg config.Log, w io.Writer) zerolog.Logger {
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	lvl, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// app is everything serve builds, kept for orderly shutdown.
type app struct {
	cfg     *config.Config
	log     zerolog.Logger
	reg     *prometheus.Registry
	journal *journal.Journal
	plugins []plugins.Plugin
	disp    *dispatch.Dispatcher
	web     *webhook.Server
	started atomic.Bool
}

// buildPlugins constructs every enabled plugin, or with enabled false every disabled one (which
// check-config uses to check their parameters too: constructors do no I/O).
func buildPlugins(cfg *config.Config, reg *plugins.Registry, ems map[string]*emsclient.Client,
	hc *http.Client, metrics prometheus.Registerer, log zerolog.Logger, enabled bool) ([]dispatch.Entry, error) {
	var entries []dispatch.Entry
	var errs []error
	for _, pc := range cfg.Plugins {
		if pc.Enabled != enabled {
			continue
		}
		dataDir := filepath.Join(cfg.Journal.DataDir, "plugins", pc.Name)
		deps := plugins.Deps{
			Log:        log.With().Str(logfield.Plugin, pc.Name).Str(logfield.PluginKind, pc.Type).Logger(),
			EMS:        ems,
			DefaultEMS: cfg.DefaultEMS(),
			HTTPClient: hc,
			Now:        time.Now,
			Metrics:    prometheus.WrapRegistererWith(prometheus.Labels{"plugin": pc.Name}, metrics),
			DataDir:    dataDir,
			ConfigDir:  cfg.Dir,
			RTMPURLs:   cfg.RTMPURLs(),
		}
		p, err := reg.Build(pc.Type, pc.Name, pc.Params, deps)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pol := dispatch.Policy{
			Timeout:        cfg.Dispatch.Timeout,
			InitialBackoff: cfg.Dispatch.InitialBackoff,
			MaxBackoff:     cfg.Dispatch.MaxBackoff,
			GiveUpAfter:    cfg.Dispatch.GiveUpAfter,
			MaxDeliver:     cfg.Dispatch.MaxDeliver,
			Concurrency:    cfg.Dispatch.Concurrency,
		}
		if pc.Concurrency > 0 {
			pol.Concurrency = pc.Concurrency
		}
		if pc.Timeout > 0 {
			pol.Timeout = pc.Timeout
		}
		entries = append(entries, dispatch.Entry{Plugin: p, Policy: pol})
	}
	return entries, errors.Join(errs...)
}

func emsClients(cfg *config.Config, hc *http.Client) (map[string]*emsclient.Client, error) {
	out := map[string]*emsclient.Client{}
	var errs []error
	for name, e := range cfg.EMS {
		c, err := emsclient.New(e.APIURL.Reveal(), hc)
		if err != nil {
			errs = append(errs, fmt.Errorf("ems.%s.api_url: %w", name, err))
			continue
		}
		out[name] = c
	}
	return out, errors.Join(errs...)
}

// newHTTPClient is the one client for EMS APIs and outbound HTTP. No overall timeout: every call
// carries the dispatcher's per-call deadline.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	t.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: t}
}

func webhookConfig(cfg *config.Config) (webhook.Config, error) {
	wc := webhook.Config{
		Listen:            cfg.Server.Listen,
		Paths:             cfg.Server.Paths,
		AuthToken:         cfg.Server.AuthToken.Reveal(),
		MaxBodyBytes:      cfg.Server.MaxBodyBytes,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		DefaultEMS:        cfg.DefaultEMS(),
	}
	var errs []error
	for _, name := range cfg.EMSNames() {
		e := cfg.EMS[name]
		addrs, err := webhook.ParseAddresses(e.Addresses)
		if err != nil {
			errs = append(errs, fmt.Errorf("ems.%s.addresses: %w", name, err))
		}
		wc.EMS = append(wc.EMS, webhook.EMSSource{Name: name, Addresses: addrs, CustomData: e.CustomData})
	}
	return wc, errors.Join(errs...)
}

// serve runs the service until ctx ends, then shuts down in reverse order of start.
func serve(ctx context.Context, path string, env []string, stderr io.Writer) error {
	reg := registry()
	cfg, err := loadConfig(path, env, reg)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	a := &app{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	hc := newHTTPClient()
	ems, err := emsClients(cfg, hc)
	if err != nil {
		return &configError{err}
	}
	entries, err := buildPlugins(cfg, reg, ems, hc, a.reg, log, true)
	if err != nil {
		return &configError{err}
	}
	wc, err := webhookConfig(cfg)
	if err != nil {
		return &configError{err}
	}
	for _, e := range entries {
		a.plugins = append(a.plugins, e.Plugin)
		if err := os.MkdirAll(filepath.Join(cfg.Journal.DataDir, "plugins", e.Plugin.Name()), 0o750); err != nil {
			return fmt.Errorf("plugin data dir: %w", err)
		}
	}

	log.Info().Str("version", buildVersion()).Str("config", orDefault(cfg.File, "<embedded defaults>")).
		Int(logfield.Count, len(entries)).Msg("emsflow starting")

	a.journal, err = journal.Open(ctx, journal.Config{
		DataDir:      cfg.Journal.DataDir,
		URL:          cfg.Journal.URL.Reveal(),
		Stream:       cfg.Journal.Stream,
		MaxAge:       cfg.Journal.MaxAge,
		MaxBytes:     cfg.Journal.MaxBytes,
		DedupeWindow: cfg.Journal.DedupeWindow,
		Replicas:     cfg.Journal.Replicas,
	}, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := a.journal.Close(); err != nil {
			log.Warn().Err(err).Msg("close journal")
		}
		log.Info().Msg("journal closed")
	}()
	if err := a.reg.Register(a.journal.Collector()); err != nil {
		return fmt.Errorf("register journal metrics: %w", err)
	}

	a.disp, err = dispatch.New(a.journal, entries, a.reg, log)
	if err != nil {
		return &configError{err}
	}
	started, err := a.startPlugins(ctx)
	defer a.closePlugins(started)
	if err != nil {
		return err
	}
	// Consumers exist before the webhook accepts anything, so no accepted event can miss them.
	if err := a.disp.Start(ctx); err != nil {
		return err
	}
	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	a.startReconcilers(bgCtx, &bg)

	wc.Admin = newAdmin(a.journal, log)
	a.web, err = webhook.New(wc, a.journal, webhook.ReadinessFunc(a.ready), a.reg, a.reg, log)
	if err != nil {
		stopBG()
		bg.Wait()
		return &configError{err}
	}
	l, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		stopBG()
		bg.Wait()
		return fmt.Errorf("listen on %s: %w (is another service using the port? set server.listen or EMSFLOW_SERVER_LISTEN)", cfg.Server.Listen, err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.web.Serve(l) }()
	a.started.Store(true)
	log.Info().Str("addr", l.Addr().String()).Msg("emsflow ready")

	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case err = <-serveErr:
		log.Error().Err(err).Msg("webhook stopped")
	}
	a.started.Store(false)

	// Reverse order: stop accepting, stop background work, let handlers finish, close plugins
	// (deferred), close the journal (deferred).
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	if werr := a.web.Shutdown(sctx); werr != nil {
		log.Warn().Err(werr).Msg("webhook shutdown")
	}
	stopBG()
	bg.Wait()
	if derr := a.disp.Stop(sctx); derr != nil {
		log.Warn().Err(derr).Msg("dispatcher stopped with handlers still running; their events will be redelivered")
	}
	return err
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (a *app) ready() error {
	if err := a.journal.Ready(); err != nil {
		return err
	}
	if !a.started.Load() {
		return errors.New("plugins not started")
	}
	return nil
}

// startPlugins starts every Starter in order and returns those started, for closing.
func (a *app) startPlugins(ctx context.Context) ([]plugins.Plugin, error) {
	var started []plugins.Plugin
	for _, p := range a.plugins {
		if s, ok := p.(plugins.Starter); ok {
			if err := s.Start(ctx); err != nil {
				return started, fmt.Errorf("start plugin %s: %w", p.Name(), err)
			}
		}
		started = append(started, p)
	}
	return started, nil
}

func (a *app) closePlugins(started []plugins.Plugin) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(started) - 1; i >= 0; i-- {
		if c, ok := started[i].(plugins.Closer); ok {
			if err := c.Close(ctx); err != nil {
				a.log.Warn().Err(err).Str(logfield.Plugin, started[i].Name()).Msg("close plugin")
			}
		}
	}
}

// startReconcilers runs each Reconciler at start and then on its interval, until ctx ends.
func (a *app) startReconcilers(ctx context.Context, wg *sync.WaitGroup) {
	for _, p := range a.plugins {
		r, ok := p.(plugins.Reconciler)
		if !ok {
			continue
		}
		log := a.log.With().Str(logfield.Plugin, p.Name()).Logger()
		wg.Go(func() {
			for {
				start := time.Now()
				if err := r.Reconcile(ctx); err != nil && ctx.Err() == nil {
					log.Warn().Err(err).Msg("reconcile")
				} else if ctx.Err() == nil {
					log.Debug().Dur(logfield.Duration, time.Since(start)).Msg("reconciled")
				}
				iv := r.ReconcileInterval()
				if iv <= 0 {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(iv):
				}
			}
		})
	}
}
