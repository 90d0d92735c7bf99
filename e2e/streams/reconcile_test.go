package streams_test

import (
	"testing"
	"time"

	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/servicetest"
)

// TestReconcileWithoutEvents: A drops every event it should post, so emsflow never hears of the
// stream published there; the reconciliation passes of the running service still route it to B,
// record it on A and replicate it onto C, each by the first or second pass that completes after
// the stream appeared (within one reconcile_interval of it).
func TestReconcileWithoutEvents(t *testing.T) {
	requireEndToEnd(t)
	t.Parallel()
	const interval = 2 * time.Second
	f := newFleet(t, "a", "b", "c")
	media := t.TempDir()
	plugins := map[string]pluginEntry{
		"StreamAutoRouter": {"StreamAutoRouter", map[string]any{
			"token": "live", "destination_uri": f.rtmpURL("b"), "ems": []string{"a"}, "reconcile_interval": interval.String(),
		}},
		"StreamRecorder": {"StreamRecorder", map[string]any{
			"file_location": media, "period_time": 2, "ems": []string{"a"}, "reconcile_interval": interval.String(),
		}},
		"StreamLoadBalancer": {"StreamLoadBalancer", map[string]any{
			"destination_uri": []map[string]string{f.member("a"), f.member("c")}, "ems": []string{"a"},
			"reconcile_interval": interval.String(),
		}},
	}
	svc := servicetest.Start(t, t.TempDir(), serviceConfig(t, f.ems("a", "b", "c"), plugins))
	a := f.start("a", svc, emssim.Faults{DropRate: 1})
	f.start("b", svc, emssim.Faults{})
	f.start("c", svc, emssim.Faults{})

	// The reconcilers are in their stride once each completed a pass after every EMS was up.
	marks := map[string]int{}
	for name := range plugins {
		marks[name] = reconciledIn(svc.Log(), name)
	}
	waitFor(t, "a complete reconciliation pass of each plugin", func() bool {
		for name, n := range marks {
			if reconciledIn(svc.Log(), name) <= n {
				return false
			}
		}
		return true
	})
	for name := range plugins {
		marks[name] = reconciledIn(svc.Log(), name)
	}
	const stream = "live_cam"
	if _, err := a.Publish(stream); err != nil {
		t.Fatal(err)
	}
	// done reports, per plugin, whether its work is visible on the EMS.
	done := map[string]func() bool{
		"StreamAutoRouter":   func() bool { return len(named(f.configs("a").Push, stream)) == 1 },
		"StreamRecorder":     func() bool { return len(named(f.configs("a").Record, stream)) == 1 },
		"StreamLoadBalancer": func() bool { return len(named(f.configs("c").Pull, stream)) == 1 },
	}
	passes := map[string]int{} // completed passes since the publication when the work was seen
	start := time.Now()
	waitFor(t, "the stream routed, recorded and replicated", func() bool {
		for name, ok := range done {
			if _, seen := passes[name]; !seen && ok() {
				passes[name] = reconciledIn(svc.Log(), name) - marks[name]
				t.Logf("%s: done %s after publication, %d passes completed by then", name, time.Since(start).Round(time.Millisecond), passes[name])
			}
		}
		return len(passes) == len(done)
	})
	for name, n := range passes {
		// The pass running at publication may have missed the stream; the next one cannot.
		if n > 2 {
			t.Errorf("%s: the work was seen after %d completed passes, want it done by the second", name, n)
		}
	}
	waitFor(t, stream+" live on B and C", func() bool {
		return len(f.inbound("b", stream)) == 1 && len(f.inbound("c", stream)) == 1
	})

	// Reconciliation did it all: repairs, no actions, and not one event from A reached emsflow.
	for _, c := range []struct{ subsystem, plugin, action string }{
		{"autorouter", "StreamAutoRouter", "push"},
		{"recorder", "StreamRecorder", "record"},
		{"loadbalancer", "StreamLoadBalancer", "pull"},
	} {
		if got := counter(t, svc, c.subsystem, "repairs", c.plugin, c.action); got != 1 {
			t.Errorf("%s repairs of %s: got %v, want 1", c.plugin, c.action, got)
		}
		if got := counter(t, svc, c.subsystem, "actions", c.plugin, c.action); got != 0 {
			t.Errorf("%s actions %s on events: got %v, want 0", c.plugin, c.action, got)
		}
	}
	if st := a.EventStats(); st.Dropped == 0 || st.Posted != 0 {
		t.Errorf("simulator A: %d events dropped, %d posted; want every event dropped", st.Dropped, st.Posted)
	}
	if got := metric(t, svc, "emsflow_webhook_events_accepted_total", map[string]string{"ems": "a"}); got != 0 {
		t.Errorf("emsflow accepted %v events from A, want 0", got)
	}
	if got := metric(t, svc, "emsflow_webhook_events_accepted_total", map[string]string{"ems": "b"}); got == 0 {
		t.Error("emsflow accepted no event from B: the webhook path is not working at all")
	}
}
