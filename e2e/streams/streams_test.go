// Package streams_test is the end-to-end evidence of issue 4 (the StreamAutoRouter,
// StreamRecorder and StreamLoadBalancer plugins) through a running emsflow: every event goes the
// whole way, from an EMS simulator's POST on the webhook through the journal and the dispatcher
// to the plugin, and every effect is observed where an operator would see it: push, pull and
// record configs in the simulators' listConfig, streams in their listStreams, MP4 files on disk,
// and emsflow's own /metrics and log. The simulators duplicate every event POST, emsflow is
// killed (SIGKILL) and stopped (SIGTERM) between events, and a simulator that drops every event
// leaves the work to reconciliation.
package streams_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/loopback"
	"github.com/emsflow/emsflow/internal/servicetest"
)

// waitTimeout bounds every wait for something emsflow or a simulator does in the background.
const waitTimeout = 45 * time.Second

// requireEndToEnd skips in -short mode: these tests build and run the binary.
func requireEndToEnd(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the emsflow binary")
	}
}

// waitFor polls cond until it holds, failing the test with what it waited for otherwise.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !servicetest.Eventually(t.Context(), waitTimeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
	}
}

// fleet is a set of EMS simulators, by name, on addresses reserved before emsflow starts.
type fleet struct {
	t         *testing.T
	hc        *http.Client
	api, rtmp map[string]string // reserved listen addresses, by simulator name

	mu   sync.Mutex
	sims map[string]*emssim.Sim
	pid  uint64 // the last process id given to a simulator
}

// newFleet reserves an API and an RTMP address for each name; start brings a simulator up.
func newFleet(t *testing.T, names ...string) *fleet {
	t.Helper()
	f := &fleet{
		t:    t,
		hc:   &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}},
		api:  map[string]string{},
		rtmp: map[string]string{},
		sims: map[string]*emssim.Sim{},
	}
	for _, n := range names {
		// Reserved, not listened on: emsflow's configuration names them before the simulators,
		// which need emsflow's webhook URL for their event sink, can be built.
		f.api[n] = loopback.MustAddr(t)
		f.rtmp[n] = loopback.MustAddr(t)
	}
	return f
}

// apiURL returns the API URL of simulator n.
func (f *fleet) apiURL(n string) string { return "http://" + f.api[n] }

// rtmpURL returns the RTMP base (push target, pull source without the stream name) of n.
func (f *fleet) rtmpURL(n string) string { return "rtmp://" + f.rtmp[n] + "/live" }

// ems returns emsflow's "ems" section naming the given simulators.
func (f *fleet) ems(names ...string) map[string]any {
	out := map[string]any{}
	for _, n := range names {
		out[n] = map[string]string{"api_url": f.apiURL(n)}
	}
	return out
}

// member returns a load balancer destination object for simulator n.
func (f *fleet) member(n string) map[string]string {
	return map[string]string{"api_url": f.apiURL(n), "rtmp_url": f.rtmpURL(n)}
}

// start starts simulator n on its reserved addresses, with a process id of its own. With svc set, its events go to
// svc's webhook under /evowebservices/<n>, so emsflow attributes them to EMS n; with svc nil it
// has no event sink (a camera, not an EMS emsflow knows). It is closed when the test ends,
// before emsflow is killed.
func (f *fleet) start(n string, svc *servicetest.Service, faults emssim.Faults) *emssim.Sim {
	f.t.Helper()
	// Each start is a new EMS process with its own PID, as a restarted EMS has: the simulators
	// run in the test's process, and a restarted one with that PID would post a serverStarted
	// byte-identical to its predecessor's when both fall in the same second, which the journal
	// rightly drops as a duplicate.
	f.mu.Lock()
	f.pid++
	pid := 4000 + f.pid
	f.mu.Unlock()
	cfg := emssim.Config{
		ProcessID:         pid,
		APIAddr:           f.api[n],
		RTMPAddr:          f.rtmp[n],
		MediaDir:          f.t.TempDir(),
		FFmpeg:            "/usr/bin/ffmpeg",
		ReconnectInterval: 100 * time.Millisecond,
		Faults:            faults,
		Log:               zerolog.New(zerolog.NewTestWriter(f.t)).Level(zerolog.WarnLevel).With().Str("sim", n).Logger(),
	}
	if svc != nil {
		cfg.Sinks = []emssim.Sink{{URL: svc.URL("/evowebservices/" + n)}}
	}
	s, err := emssim.New(cfg)
	if err != nil {
		f.t.Fatalf("new simulator %s: %v", n, err)
	}
	if err := s.Start(f.t.Context()); err != nil {
		f.t.Fatalf("start simulator %s: %v", n, err)
	}
	f.t.Cleanup(func() { _ = s.Close() })
	f.mu.Lock()
	f.sims[n] = s
	f.mu.Unlock()
	return s
}

// restart closes simulator n and starts an empty one on the same addresses: an EMS that
// restarted and lost its runtime configuration.
func (f *fleet) restart(n string, svc *servicetest.Service, faults emssim.Faults) *emssim.Sim {
	f.t.Helper()
	if err := f.sim(n).Close(); err != nil {
		f.t.Logf("close simulator %s: %v", n, err)
	}
	return f.start(n, svc, faults)
}

// sim returns the running simulator n.
func (f *fleet) sim(n string) *emssim.Sim {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sims[n]
	if !ok {
		f.t.Fatalf("simulator %s is not started", n)
	}
	return s
}

// client returns an EMS API client for simulator n.
func (f *fleet) client(n string) *emsclient.Client {
	f.t.Helper()
	c, err := emsclient.New(f.apiURL(n), f.hc)
	if err != nil {
		f.t.Fatalf("client for %s: %v", n, err)
	}
	return c
}

// configs returns the listConfig answer of simulator n.
func (f *fleet) configs(n string) *emsclient.ConfigList {
	f.t.Helper()
	cl, err := f.client(n).ListConfig(f.t.Context())
	if err != nil {
		f.t.Fatalf("list configs of %s: %v", n, err)
	}
	return cl
}

// named returns the entries of list whose localStreamName is name.
func named(list []event.Payload, name string) []event.Payload {
	var out []event.Payload
	for _, p := range list {
		if n, _ := p.String("localStreamName"); n == name {
			out = append(out, p)
		}
	}
	return out
}

// inbound returns the live inbound streams named name on simulator n (more than one would be a
// duplicate arriving from somewhere).
func (f *fleet) inbound(n, name string) []event.Payload {
	f.t.Helper()
	list, err := f.client(n).ListStreams(f.t.Context())
	if err != nil {
		f.t.Fatalf("list streams of %s: %v", n, err)
	}
	var out []event.Payload
	for _, s := range list {
		if s.IsInbound() && s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// duplicatesAccepted counts the second POSTs of duplicated events of type typ that emsflow
// answered with 200, from the simulator's delivery log: proof that the duplicates really went
// into the service.
func duplicatesAccepted(s *emssim.Sim, typ string) int {
	n := 0
	for _, d := range s.Deliveries() {
		if d.Duplicate && d.Type == typ && d.Outcome == "posted" && d.Status == http.StatusOK {
			n++
		}
	}
	return n
}

// waitLost waits until simulator s has given up on n POSTs of events of type typ (duplicates
// included) because nothing answered: events lost while emsflow was down, which must not reach
// the restarted process late.
func waitLost(t *testing.T, s *emssim.Sim, typ string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d %s POSTs lost", n, typ), func() bool {
		lost := 0
		for _, d := range s.Deliveries() {
			if d.Type == typ && d.Outcome == "failed" {
				lost++
			}
		}
		return lost >= n
	})
}

// pluginEntry is one instance in emsflow's "plugins" section.
type pluginEntry struct {
	kind   string
	params map[string]any
}

// serviceConfig returns emsflow's configuration (JSON form): an embedded journal under the
// test's folder, debug logs (the reconcilers' "reconciled" lines are counted), fast retries, the
// given EMS servers and plugin instances.
func serviceConfig(t *testing.T, ems map[string]any, plugins map[string]pluginEntry) string {
	t.Helper()
	ps := map[string]any{}
	for name, p := range plugins {
		ps[name] = map[string]any{"type": p.kind, "plugin_switch": "enabled", "parameters": p.params}
	}
	b, err := json.MarshalIndent(map[string]any{
		"journal":  map[string]any{"data_dir": "data"},
		"log":      map[string]any{"level": "debug", "format": "json"},
		"dispatch": map[string]any{"timeout": "5s", "initial_backoff": "100ms", "max_backoff": "1s"},
		"ems":      ems,
		"plugins":  ps,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// redeliver posts to emsflow an event of type typ about a stream, as EMS would, with an
// envelope id no real event had: not a byte-identical duplicate (which the journal drops), but a
// second event about the same stream, which only the plugin's own check can recognise.
func redeliver(t *testing.T, svc *servicetest.Service, ems, typ string, stream event.Payload, id uint64) {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"id": id, "payload": stream, "processId": 4242, "timestamp": time.Now().Unix(), "type": typ,
	})
	if err != nil {
		t.Fatal(err)
	}
	code, err := svc.Post("/evowebservices/"+ems, string(body))
	if err != nil || code != http.StatusOK {
		t.Fatalf("post %s to emsflow: code %d, err %v", typ, code, err)
	}
}

// metric returns the sum of the samples of name whose labels include want, read from emsflow's
// /metrics (Prometheus text form); 0 when there is none.
func metric(t *testing.T, svc *servicetest.Service, name string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(svc.URL("/metrics"))
	if err != nil {
		t.Fatalf("get metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	var sum float64
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		sample, value := line[:i], line[i+1:]
		n, labels := sample, ""
		if j := strings.IndexByte(sample, '{'); j >= 0 {
			n, labels = sample[:j], strings.TrimSuffix(sample[j+1:], "}")
		}
		if n != name || !hasLabels(labels, want) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric %s: %v", line, err)
		}
		sum += v
	}
	return sum
}

// hasLabels reports whether the label text `a="x",b="y"` has every pair of want. The label
// values read here never hold commas or quotes.
func hasLabels(text string, want map[string]string) bool {
	got := map[string]string{}
	for pair := range strings.SplitSeq(text, ",") {
		if k, v, ok := strings.Cut(pair, "="); ok {
			got[k] = strings.Trim(v, `"`)
		}
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// counter reads emsflow_<subsystem>_<name>_total{plugin, label=value} of a stream plugin: actions
// and repairs by action, skips by reason.
func counter(t *testing.T, svc *servicetest.Service, subsystem, name, plugin, value string) float64 {
	t.Helper()
	label := "action"
	if name == "skipped" {
		label = "reason"
	}
	return metric(t, svc, "emsflow_"+subsystem+"_"+name+"_total", map[string]string{"plugin": plugin, label: value})
}

// made returns how many times plugin did action, on an event or as a repair: which of the two
// depends on whether the event or a reconciliation pass got there first.
func made(t *testing.T, svc *servicetest.Service, subsystem, plugin, action string) float64 {
	t.Helper()
	return counter(t, svc, subsystem, "actions", plugin, action) + counter(t, svc, subsystem, "repairs", plugin, action)
}

// reconciledIn counts the complete reconciliation passes of plugin in a piece of emsflow's log
// (the reconcilers' debug line "reconciled"). A pass that failed logs "reconcile" instead and
// is not counted.
func reconciledIn(log, plugin string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e struct {
			Message string `json:"message"`
			Plugin  string `json:"plugin"`
		}
		if json.Unmarshal(line, &e) == nil && e.Message == "reconciled" && e.Plugin == plugin {
			n++
		}
	}
	return n
}
