package loadbalancer

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/plugins/internal/streamtest"
	"github.com/emsflow/emsflow/plugins/provenance"
)

const wait = 15 * time.Second

// group is the balancer's destination_uri for the fleet's a, b and c: full API URLs with the
// simulators' RTMP addresses.
func group(f *streamtest.Fleet) []map[string]string {
	var out []map[string]string
	for _, n := range []string{"a", "b", "c"} {
		out = append(out, map[string]string{"api_url": f.Sim(n).APIURL(), "rtmp_url": f.Sim(n).RTMPURL()})
	}
	return out
}

func newBalancer(t *testing.T, f *streamtest.Fleet, params map[string]any) *Balancer {
	t.Helper()
	raw, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Factory("LB", raw, f.Deps("LB"))
	if err != nil {
		t.Fatalf("factory: %v", err)
	}
	return p.(*Balancer)
}

func pullsOf(t *testing.T, f *streamtest.Fleet, sim, name string) []event.Payload {
	t.Helper()
	cl, err := f.Configs(t.Context(), sim)
	if err != nil {
		t.Fatalf("list configs of %s: %v", sim, err)
	}
	var out []event.Payload
	for _, p := range cl.Pull {
		if n, _ := p.String("localStreamName"); n == name {
			out = append(out, p)
		}
	}
	return out
}

func live(t *testing.T, f *streamtest.Fleet, sim, name string) bool {
	t.Helper()
	in, err := f.Inbound(t.Context(), sim)
	if err != nil {
		t.Fatalf("list streams of %s: %v", sim, err)
	}
	_, ok := in[name]
	return ok
}

// originPull makes simulator a pull cam1 from the camera simulator and returns the config id.
func originPull(t *testing.T, f *streamtest.Fleet) uint64 {
	t.Helper()
	if _, err := f.Sim("camera").Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	sc, err := f.Client("a").PullStream(t.Context(), emsclient.PullStreamParams{
		URI: f.Sim("camera").RTMPURL() + "/cam1", LocalStreamName: "cam1", KeepAlive: emsclient.Bool(true),
	})
	if err != nil {
		t.Fatalf("origin pull: %v", err)
	}
	return sc.ConfigID
}

// TestReplicatesHealsAndRemoves: a stream pulled on A is pulled by B and C from A, once each
// although every event comes twice; C restarted empty gets its replica back; removing A's pull
// config removes the replicas.
func TestReplicatesHealsAndRemoves(t *testing.T) {
	t.Parallel()
	f := streamtest.New(t, streamtest.Options{}, "a", "b", "c", "camera")
	lb := newBalancer(t, f, map[string]any{
		"destination_uri": group(f), "ems": []string{"a", "b", "c"}, "reconcile_interval": 0,
	})
	f.HandleTwice(true)
	f.Attach(lb)

	id := originPull(t, f)
	for _, d := range []string{"b", "c"} {
		streamtest.WaitFor(t, wait, "cam1 on "+d, func() bool { return live(t, f, d, "cam1") })
	}
	streamtest.WaitFor(t, wait, "replicas' own events skipped", func() bool { return lb.metrics.Skipped("loop_guard") >= 4 })
	if n := len(pullsOf(t, f, "a", "cam1")); n != 1 {
		t.Errorf("A has %d pulls of cam1, want its origin pull only", n)
	}
	for _, d := range []string{"b", "c"} {
		pulls := pullsOf(t, f, d, "cam1")
		if len(pulls) != 1 {
			t.Fatalf("%s has %d pulls of cam1, want 1", d, len(pulls))
		}
		if want := f.Sim("a").RTMPURL() + "/cam1"; provenance.PullSource(pulls[0]) != want {
			t.Errorf("%s pulls %s, want %s", d, provenance.PullSource(pulls[0]), want)
		}
		if by, _ := provenance.Creator(pulls[0]); by != "LB" || provenance.Origin(pulls[0]) != "a" {
			t.Errorf("%s replica tags: %v", d, pulls[0])
		}
	}
	// The simulators' own serverStarted events make the balancer reconcile too, so a pull may
	// be counted as a repair; either way there are exactly two.
	pulls := func() float64 { return lb.metrics.Actions("pull") + lb.metrics.Repairs("pull") }
	if got := pulls(); got != 2 {
		t.Errorf("pulls made: got %v, want 2", got)
	}

	// C restarts empty; its serverStarted (or the next reconciliation) brings the replica back.
	f.Restart("c", streamtest.Options{})
	streamtest.WaitFor(t, wait, "cam1 back on C", func() bool { return live(t, f, "c", "cam1") })
	if n := len(pullsOf(t, f, "c", "cam1")); n != 1 {
		t.Errorf("C has %d pulls of cam1 after healing, want 1", n)
	}
	if got := pulls(); got != 3 {
		t.Errorf("pulls made: got %v, want 3 (one to heal C)", got)
	}

	// The origin's config goes: so do the replicas.
	if err := f.Client("a").RemoveConfig(t.Context(), emsclient.RemoveConfigParams{ID: id}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"b", "c"} {
		streamtest.WaitFor(t, wait, "replica removed from "+d, func() bool { return len(pullsOf(t, f, d, "cam1")) == 0 })
	}
	for _, err := range f.Failures() {
		t.Errorf("handle failed: %v", err)
	}
}

// TestReconcileReplicatesWithoutEvents: no EMS sends a single event; reconciliation replicates
// within one interval, and removes the replicas once the origin's config is gone.
func TestReconcileReplicatesWithoutEvents(t *testing.T) {
	t.Parallel()
	f := streamtest.New(t, streamtest.Options{Configure: func(_ string, cfg *emssim.Config) {
		cfg.Faults.StopPosting = true
	}}, "a", "b", "c", "camera")
	lb := newBalancer(t, f, map[string]any{
		"destination_uri": group(f), "ems": []string{"a", "b", "c"}, "reconcile_interval": "500ms",
	})
	f.Attach(lb)
	f.RunReconciler(lb)
	id := originPull(t, f)
	for _, d := range []string{"b", "c"} {
		streamtest.WaitFor(t, wait, "cam1 on "+d, func() bool { return live(t, f, d, "cam1") })
	}
	if err := f.Client("a").RemoveConfig(t.Context(), emsclient.RemoveConfigParams{ID: id}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"b", "c"} {
		streamtest.WaitFor(t, wait, "replica removed from "+d, func() bool { return len(pullsOf(t, f, d, "cam1")) == 0 })
	}
	if got, rm := lb.metrics.Repairs("pull"), lb.metrics.Repairs("remove_replica"); got != 2 || rm != 2 {
		t.Errorf("repairs: %v pulls and %v removals, want 2 and 2", got, rm)
	}
	if f.Handled() != 0 {
		t.Errorf("%d events handled; the simulators should have dropped them all", f.Handled())
	}
}

// TestReplicatesFromConfiguredRTMPURLs: the group is given by API URLs alone, which is not where
// the simulators serve RTMP; with each EMS's rtmp_url configured (Deps.RTMPURLs, as serve fills
// it from ems.<name>.rtmp_url) the replicas pull from the origin's real RTMP address and play.
func TestReplicatesFromConfiguredRTMPURLs(t *testing.T) {
	t.Parallel()
	f := streamtest.New(t, streamtest.Options{}, "a", "b", "c", "camera")
	var apis []string
	deps := f.Deps("LB")
	deps.RTMPURLs = map[string]string{}
	for _, n := range []string{"a", "b", "c"} {
		apis = append(apis, f.Sim(n).APIURL())
		deps.RTMPURLs[n] = f.Sim(n).RTMPURL()
	}
	raw, err := json.Marshal(map[string]any{"destination_uri": apis, "ems": []string{"a", "b", "c"}, "reconcile_interval": 0})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Factory("LB", raw, deps)
	if err != nil {
		t.Fatalf("factory: %v", err)
	}
	f.Attach(p)

	originPull(t, f)
	for _, d := range []string{"b", "c"} {
		streamtest.WaitFor(t, wait, "cam1 on "+d, func() bool { return live(t, f, d, "cam1") })
		pulls := pullsOf(t, f, d, "cam1")
		if len(pulls) != 1 {
			t.Fatalf("%s has %d pulls of cam1, want 1", d, len(pulls))
		}
		if want := f.Sim("a").RTMPURL() + "/cam1"; provenance.PullSource(pulls[0]) != want {
			t.Errorf("%s pulls %s, want %s", d, provenance.PullSource(pulls[0]), want)
		}
	}
	if n := len(pullsOf(t, f, "a", "cam1")); n != 1 {
		t.Errorf("A has %d pulls of cam1, want its origin pull only", n)
	}
	for _, err := range f.Failures() {
		t.Errorf("handle failed: %v", err)
	}
}
