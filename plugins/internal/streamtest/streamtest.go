// Package streamtest runs a small fleet of EMS simulators (internal/emssim) for the tests of the
// stream plugins: every simulator posts its events to one in-test receiver, which decodes them,
// attributes them to their simulator by name and hands them to the attached plugins the way the
// dispatcher does (each event in its own goroutine, retryable errors retried, optionally every
// event twice to mimic at-least-once delivery). It stands in for cmd/emsflow until the
// end-to-end tests run the service itself.
package streamtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/loopback"
	"github.com/emsflow/emsflow/plugins"
)

// sinkPath is the path the simulators post to; the simulator's name follows it.
const sinkPath = "/evowebservices/"

// Fleet is a set of named simulators and the plugins their events go to.
type Fleet struct {
	t   testing.TB
	ctx context.Context
	hc  *http.Client
	rec *httptest.Server
	reg *prometheus.Registry

	mu       sync.Mutex
	sims     map[string]*emssim.Sim
	names    []string
	attached []plugins.Plugin
	twice    bool
	closing  bool
	failures []error
	handled  int
	wg       sync.WaitGroup
}

// Options tunes the simulators of a fleet.
type Options struct {
	// Configure, when set, adjusts each simulator's config before it starts.
	Configure func(name string, cfg *emssim.Config)
}

// New starts one simulator per name (on free loopback ports, media under t.TempDir()) and
// the receiver their events go to. Everything stops when the test ends.
func New(t testing.TB, opts Options, names ...string) *Fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{
		t: t, ctx: ctx, sims: map[string]*emssim.Sim{}, names: slices.Clone(names),
		hc:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}},
		reg: prometheus.NewRegistry(),
	}
	f.rec = httptest.NewServer(http.HandlerFunc(f.receive))
	t.Cleanup(func() { // runs last: after the simulators closed
		cancel()
		f.wg.Wait()
		f.rec.Close()
	})
	for _, n := range names {
		// Ports below the ephemeral range: Restart listens on them again, and an outgoing
		// connection could take an ephemeral one in between.
		f.startSim(n, opts, loopback.MustAddr(t), loopback.MustAddr(t))
	}
	t.Cleanup(func() { // runs first: no new work once the test body is done
		f.mu.Lock()
		f.closing = true
		f.mu.Unlock()
		cancel()
	})
	return f
}

func (f *Fleet) startSim(name string, opts Options, apiAddr, rtmpAddr string) {
	f.t.Helper()
	cfg := emssim.Config{
		APIAddr: apiAddr, RTMPAddr: rtmpAddr,
		Sinks:             []emssim.Sink{{URL: f.rec.URL + sinkPath + name}},
		MediaDir:          f.t.TempDir(),
		FFmpeg:            "/usr/bin/ffmpeg",
		ReconnectInterval: 100 * time.Millisecond,
		Log:               zerolog.New(zerolog.NewTestWriter(f.t)).Level(zerolog.WarnLevel),
	}
	if opts.Configure != nil {
		opts.Configure(name, &cfg)
	}
	s, err := emssim.New(cfg)
	if err != nil {
		f.t.Fatalf("new simulator %s: %v", name, err)
	}
	if err := s.Start(f.t.Context()); err != nil {
		f.t.Fatalf("start simulator %s: %v", name, err)
	}
	f.t.Cleanup(func() { _ = s.Close() })
	f.mu.Lock()
	f.sims[name] = s
	f.mu.Unlock()
}

// Sim returns the simulator named name.
func (f *Fleet) Sim(name string) *emssim.Sim {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sims[name]
	if !ok {
		f.t.Fatalf("no simulator %s", name)
	}
	return s
}

// Restart closes a simulator and starts an empty one on the same ports, as an EMS that
// restarted and lost its runtime configuration.
func (f *Fleet) Restart(name string, opts Options) {
	f.t.Helper()
	old := f.Sim(name)
	api := strings.TrimPrefix(old.APIURL(), "http://")
	rtmp := strings.TrimSuffix(strings.TrimPrefix(old.RTMPURL(), "rtmp://"), "/live")
	if err := old.Close(); err != nil {
		f.t.Logf("close simulator %s: %v", name, err)
	}
	f.startSim(name, opts, api, rtmp)
}

// Client returns an EMS API client for the simulator named name.
func (f *Fleet) Client(name string) *emsclient.Client {
	f.t.Helper()
	c, err := emsclient.New(f.Sim(name).APIURL(), f.hc)
	if err != nil {
		f.t.Fatalf("client for %s: %v", name, err)
	}
	return c
}

// HTTPClient returns the HTTP client the fleet's EMS clients use.
func (f *Fleet) HTTPClient() *http.Client { return f.hc }

// Registry returns the metrics registry Deps hands to plugins.
func (f *Fleet) Registry() *prometheus.Registry { return f.reg }

// Deps returns plugin dependencies with a client for every simulator, by name; the first
// simulator is the default EMS. Every call registers on the same metrics registry, as a
// restarted plugin in one process would.
func (f *Fleet) Deps(plugin string) plugins.Deps {
	ems := map[string]*emsclient.Client{}
	for _, n := range f.names {
		ems[n] = f.Client(n)
	}
	return plugins.Deps{
		Log:        zerolog.New(zerolog.NewTestWriter(f.t)).Level(zerolog.InfoLevel).With().Str("plugin", plugin).Logger(),
		EMS:        ems,
		DefaultEMS: f.names[0],
		HTTPClient: f.hc,
		Now:        time.Now,
		Metrics:    prometheus.WrapRegistererWith(prometheus.Labels{"plugin": plugin}, f.reg),
		DataDir:    f.t.TempDir(),
		ConfigDir:  f.t.TempDir(),
	}
}

// Attach makes the fleet's events go to p, from now on.
func (f *Fleet) Attach(p plugins.Plugin) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached = append(f.attached, p)
}

// Detach stops events going to p (a plugin that "stopped" before a restart).
func (f *Fleet) Detach(p plugins.Plugin) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached = slices.DeleteFunc(f.attached, func(q plugins.Plugin) bool { return q == p })
}

// HandleTwice makes every event go to each plugin twice, concurrently, as a redelivery would.
func (f *Fleet) HandleTwice(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.twice = on
}

// Failures returns the errors that were permanent or still failing after the retries.
func (f *Fleet) Failures() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.failures)
}

// Handled returns how many Handle calls succeeded.
func (f *Fleet) Handled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.handled
}

// RunReconciler calls r.Reconcile now and then every r.ReconcileInterval() until the test
// ends, as the service does. Reconcile errors are logged, not failures: an unreachable EMS is
// expected in some tests.
func (f *Fleet) RunReconciler(r plugins.Reconciler) {
	f.wg.Go(func() {
		for {
			if err := r.Reconcile(f.ctx); err != nil && f.ctx.Err() == nil {
				f.t.Logf("reconcile: %v", err)
			}
			iv := r.ReconcileInterval()
			if iv <= 0 {
				return
			}
			t := time.NewTimer(iv)
			select {
			case <-f.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	})
}

func (f *Fleet) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ev, err := event.Decode(body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ev.EMS = strings.TrimPrefix(r.URL.Path, sinkPath)
	w.WriteHeader(http.StatusOK)

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return
	}
	copies := 1
	if f.twice {
		copies = 2
	}
	for _, p := range f.attached {
		if !slices.Contains(p.Events(), ev.Type) {
			continue
		}
		for range copies {
			f.wg.Go(func() { f.deliver(p, ev) })
		}
	}
}

// deliver calls Handle until it succeeds, fails for good, or 50 attempts pass.
func (f *Fleet) deliver(p plugins.Plugin, ev *event.Event) {
	var err error
	for attempt := 1; attempt <= 50; attempt++ {
		ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
		err = p.Handle(ctx, ev)
		cancel()
		if err == nil {
			f.mu.Lock()
			f.handled++
			f.mu.Unlock()
			return
		}
		if plugins.IsPermanent(err) || f.ctx.Err() != nil {
			break
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-f.ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	if f.ctx.Err() != nil && !plugins.IsPermanent(err) {
		return // the test is over
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, fmt.Errorf("%s %s from %s (%s): %w", p.Name(), ev.Type, ev.EMS, ev.Payload.Name(), err))
}

// WaitFor polls cond every 50 ms until it holds, failing the test after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		tm := time.NewTimer(50 * time.Millisecond)
		<-tm.C
	}
}

// Inbound returns the live inbound streams of the simulator named name, by stream name.
func (f *Fleet) Inbound(ctx context.Context, name string) (map[string]event.Payload, error) {
	list, err := f.Client(name).ListStreams(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]event.Payload{}
	for _, s := range list {
		if s.IsInbound() {
			out[s.Name()] = s
		}
	}
	return out, nil
}

// Configs returns the listConfig answer of the simulator named name.
func (f *Fleet) Configs(ctx context.Context, name string) (*emsclient.ConfigList, error) {
	return f.Client(name).ListConfig(ctx)
}
