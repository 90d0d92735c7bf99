package streams_test

import (
	"testing"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/servicetest"
	"github.com/emsflow/emsflow/plugins/provenance"
)

// TestLoadBalancerThroughService: a stream A pulls from a camera is replicated onto B and C, one
// pull each, although every event POST comes twice; the replicas' own events are not replicated
// back; a SIGTERM and restart of emsflow changes nothing; C restarted empty gets its replica
// back from its serverStarted event; and when A's pull config goes, so do the replicas.
//
// reconcile_interval is 0 (only at start), so everything after the start is done by events
// through the service, not by a periodic pass.
func TestLoadBalancerThroughService(t *testing.T) {
	requireEndToEnd(t)
	t.Parallel()
	f := newFleet(t, "a", "b", "c", "camera")
	// A is a member of the group too: its RTMP address, on a free port, is where B and C pull
	// from; a member is never made to pull from itself.
	svc := servicetest.Start(t, t.TempDir(), serviceConfig(t, f.ems("a", "b", "c"), map[string]pluginEntry{
		"StreamLoadBalancer": {"StreamLoadBalancer", map[string]any{
			"destination_uri":    []map[string]string{f.member("a"), f.member("b"), f.member("c")},
			"reconcile_interval": 0,
		}},
	}))
	dup := emssim.Faults{DuplicateRate: 1}
	a := f.start("a", svc, dup)
	f.start("b", svc, dup)
	f.start("c", svc, dup)
	camera := f.start("camera", nil, emssim.Faults{})

	const name = "cam1"
	if _, err := camera.Publish(name); err != nil {
		t.Fatal(err)
	}
	origin, err := f.client("a").PullStream(t.Context(), emsclient.PullStreamParams{
		URI: f.rtmpURL("camera") + "/" + name, LocalStreamName: name, KeepAlive: emsclient.Bool(true),
	})
	if err != nil {
		t.Fatalf("origin pull on A: %v", err)
	}
	for _, d := range []string{"b", "c"} {
		waitFor(t, name+" replicated on "+d, func() bool { return len(f.inbound(d, name)) == 1 })
	}
	waitFor(t, "the replicas' own inStreamCreated skipped", func() bool {
		return counter(t, svc, "loadbalancer", "skipped", "StreamLoadBalancer", "loop_guard") >= 2 ||
			made(t, svc, "loadbalancer", "StreamLoadBalancer", "pull") > 2
	})
	waitFor(t, "emsflow accepting the duplicate inStreamCreated POST from A", func() bool {
		return duplicatesAccepted(a, event.InStreamCreated) >= 1
	})

	// checkReplicas asserts one tagged replica pull from A on each of B and C, and on A its
	// origin pull only.
	checkReplicas := func(when string) {
		t.Helper()
		if n := len(named(f.configs("a").Pull, name)); n != 1 {
			t.Errorf("%s: A has %d pulls of %s, want its origin pull only", when, n, name)
		}
		for _, d := range []string{"b", "c"} {
			pulls := named(f.configs(d).Pull, name)
			if len(pulls) != 1 {
				t.Fatalf("%s: %s has %d pulls of %s, want 1: %v", when, d, len(pulls), name, pulls)
			}
			if got, want := provenance.PullSource(pulls[0]), f.rtmpURL("a")+"/"+name; got != want {
				t.Errorf("%s: %s pulls %s, want %s", when, d, got, want)
			}
			if by, _ := provenance.Creator(pulls[0]); by != "StreamLoadBalancer" || provenance.Origin(pulls[0]) != "a" {
				t.Errorf("%s: %s replica tagged creator %q origin %q, want StreamLoadBalancer and a", when, d, by, provenance.Origin(pulls[0]))
			}
		}
	}
	checkReplicas("after duplicated events")
	// The simulators' serverStarted events make the balancer reconcile too, so a pull may be a
	// repair rather than an action; either way there are two.
	if got := made(t, svc, "loadbalancer", "StreamLoadBalancer", "pull"); got != 2 {
		t.Errorf("pulls made: %v, want 2", got)
	}

	// SIGTERM and restart: the reconciliation at start finds everything in place.
	svc.Stop()
	mark := len(svc.Log())
	svc.Restart()
	waitFor(t, "the reconciliation at restart", func() bool { return reconciledIn(svc.Log()[mark:], "StreamLoadBalancer") >= 1 })
	checkReplicas("after SIGTERM and restart")
	if got := made(t, svc, "loadbalancer", "StreamLoadBalancer", "pull"); got != 0 {
		t.Errorf("pulls made after the restart: %v, want 0", got)
	}

	// C restarts empty. Its serverStarted event, through emsflow, makes the balancer reconcile
	// and bring the replica back; there is no periodic pass to do it otherwise.
	c := f.restart("c", svc, dup)
	waitFor(t, name+" back on the restarted C", func() bool { return len(f.inbound("c", name)) == 1 })
	checkReplicas("after C restarted empty")
	if got := counter(t, svc, "loadbalancer", "repairs", "StreamLoadBalancer", "pull"); got != 1 {
		t.Errorf("repairs after C restarted: %v pulls, want 1", got)
	}
	started := false
	for _, d := range c.Deliveries() {
		if d.Type == event.ServerStarted && d.Outcome == "posted" && d.Status == 200 {
			started = true
		}
	}
	if !started {
		t.Error("emsflow did not accept the restarted C's serverStarted")
	}

	// A's pull config goes: its inStreamClosed makes the balancer remove both replicas.
	if err := f.client("a").RemoveConfig(t.Context(), emsclient.RemoveConfigParams{ID: origin.ConfigID}); err != nil {
		t.Fatalf("remove the origin pull on A: %v", err)
	}
	for _, d := range []string{"b", "c"} {
		waitFor(t, "the replica removed from "+d, func() bool { return len(named(f.configs(d).Pull, name)) == 0 })
		waitFor(t, name+" gone from "+d, func() bool { return len(f.inbound(d, name)) == 0 })
	}
	if got := counter(t, svc, "loadbalancer", "actions", "StreamLoadBalancer", "remove_replica"); got != 2 {
		t.Errorf("replicas removed: %v, want 2", got)
	}
}
