package streams_test

import (
	"testing"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/servicetest"
	"github.com/emsflow/emsflow/plugins/provenance"
)

// TestRouterThroughService: a token stream published on A arrives on B, pushed once; a stream
// without the token stays on A; every event POST comes twice and a redelivered event changes
// nothing; a second router on B pointing back at A never pushes the copy back; and after emsflow
// is killed (SIGKILL) and restarted, the stream is still pushed once while a stream published
// during the outage, whose event was lost, is routed by the reconciliation at start.
func TestRouterThroughService(t *testing.T) {
	requireEndToEnd(t)
	t.Parallel()
	f := newFleet(t, "a", "b")
	svc := servicetest.Start(t, t.TempDir(), serviceConfig(t, f.ems("a", "b"), map[string]pluginEntry{
		"StreamAutoRouter": {"StreamAutoRouter", map[string]any{
			"token": "live", "destination_uri": f.rtmpURL("b"), "ems": []string{"a"}, "reconcile_interval": "1s",
		}},
		"RouterB": {"StreamAutoRouter", map[string]any{
			"token": "live", "destination_uri": f.rtmpURL("a"), "ems": []string{"b"}, "reconcile_interval": "1s",
		}},
	}))
	dup := emssim.Faults{DuplicateRate: 1}
	a := f.start("a", svc, dup)
	f.start("b", svc, dup)

	const routed, other = "live_cam", "other"
	for _, n := range []string{routed, other} {
		if _, err := a.Publish(n); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, routed+" on B", func() bool { return len(f.inbound("b", routed)) == 1 })
	// Each wait also ends on the wrong outcome, which the checks below then report.
	waitFor(t, other+" skipped for want of the token", func() bool {
		return counter(t, svc, "autorouter", "skipped", "StreamAutoRouter", "token") >= 1 ||
			len(named(f.configs("a").Push, other)) > 0
	})
	waitFor(t, "RouterB recognising B's copy as emsflow's", func() bool {
		return counter(t, svc, "autorouter", "skipped", "RouterB", "loop_guard") >= 1 ||
			made(t, svc, "autorouter", "RouterB", "push") > 0
	})
	waitFor(t, "emsflow accepting the duplicate inStreamCreated POSTs of both streams", func() bool {
		return duplicatesAccepted(a, event.InStreamCreated) >= 2
	})

	// checkOnePush asserts the steady state: one tagged push of the token stream on A, nothing
	// pushed back from B, one copy on each side, the other stream left alone.
	checkOnePush := func(when string) {
		t.Helper()
		ca, cb := f.configs("a"), f.configs("b")
		pushes := named(ca.Push, routed)
		if len(pushes) != 1 {
			t.Fatalf("%s: A has %d pushes of %s, want 1: %v", when, len(pushes), routed, pushes)
		}
		if by, _ := provenance.Creator(pushes[0]); by != "StreamAutoRouter" || provenance.Origin(pushes[0]) != "a" {
			t.Errorf("%s: push tagged creator %q origin %q, want StreamAutoRouter and a", when, by, provenance.Origin(pushes[0]))
		}
		if got, want := provenance.PushTarget(pushes[0]), f.rtmpURL("b"); got != want {
			t.Errorf("%s: push target %q, want %q", when, got, want)
		}
		if len(cb.Push) != 0 {
			t.Errorf("%s: B has %d push configs, want none (no loop): %v", when, len(cb.Push), cb.Push)
		}
		if n := len(f.inbound("a", routed)); n != 1 {
			t.Errorf("%s: A has %d inbound %s streams, want 1 (nothing came back from B)", when, n, routed)
		}
		if n := len(f.inbound("b", routed)); n != 1 {
			t.Errorf("%s: B has %d inbound %s streams, want 1", when, n, routed)
		}
		if len(named(ca.Push, other)) != 0 || len(f.inbound("b", other)) != 0 {
			t.Errorf("%s: %s, without the token, was routed", when, other)
		}
	}
	checkOnePush("after duplicated events")
	if got := made(t, svc, "autorouter", "StreamAutoRouter", "push"); got != 1 {
		t.Errorf("StreamAutoRouter pushed %v times, want 1", got)
	}
	if got := made(t, svc, "autorouter", "RouterB", "push"); got != 0 {
		t.Errorf("RouterB pushed %v times, want 0", got)
	}

	// A redelivered inStreamCreated (a new envelope id, so the journal keeps it) reaches the
	// router, which finds the push and makes no second one.
	redeliver(t, svc, "a", event.InStreamCreated, f.inbound("a", routed)[0], 1_000_001)
	waitFor(t, "the redelivered event skipped as a duplicate", func() bool {
		return counter(t, svc, "autorouter", "skipped", "StreamAutoRouter", "duplicate") >= 1 ||
			made(t, svc, "autorouter", "StreamAutoRouter", "push") > 1
	})
	checkOnePush("after a redelivered event")

	// SIGKILL; a token stream published while emsflow is down loses its event for good (EMS
	// never retries). After the restart the reconciliation at start routes it, and neither the
	// event redelivery of a killed process nor reconciliation doubles the first push.
	svc.Kill()
	const late = "live_late"
	if _, err := a.Publish(late); err != nil {
		t.Fatal(err)
	}
	waitLost(t, a, event.InStreamCreated, 2) // the event and its duplicate
	mark := len(svc.Log())
	svc.Restart()
	waitFor(t, late+" on B after the restart", func() bool { return len(f.inbound("b", late)) == 1 })
	since := func(plugin string) int { return reconciledIn(svc.Log()[mark:], plugin) }
	waitFor(t, "two reconciliation passes of each router after the restart", func() bool {
		return since("StreamAutoRouter") >= 2 && since("RouterB") >= 2
	})
	checkOnePush("after SIGKILL and restart")
	if n := len(named(f.configs("a").Push, late)); n != 1 {
		t.Errorf("A has %d pushes of %s, want 1", n, late)
	}
	if got := counter(t, svc, "autorouter", "repairs", "StreamAutoRouter", "push"); got != 1 {
		t.Errorf("repairs after the restart: %v pushes, want 1 (%s only)", got, late)
	}
	if got := made(t, svc, "autorouter", "RouterB", "push"); got != 0 {
		t.Errorf("RouterB pushed %v times after the restart, want 0", got)
	}
	if n := len(f.configs("b").Push); n != 0 {
		t.Errorf("B has %d push configs after the restart, want none", n)
	}
}
