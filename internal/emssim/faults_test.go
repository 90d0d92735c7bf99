package emssim

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// churn makes n inbound publish/unpublish cycles: three events each.
func churn(t *testing.T, sim *Sim, n int) {
	t.Helper()
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		if _, err := sim.Publish(name); err != nil {
			t.Fatal(err)
		}
		sim.Unpublish(name)
	}
}

func TestDropRate(t *testing.T) {
	ev := newSink(t)
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}, Seed: 7})
	waitFor(t, 5*time.Second, "serverStarted", func() bool { return len(ev.all()) == 1 })
	sim.SetFaults(Faults{DropRate: 0.5})
	churn(t, sim, 134) // 402 events
	const n = 402
	waitFor(t, 10*time.Second, "all deliveries settled", func() bool {
		st := sim.EventStats()
		return st.Dropped+st.Posted+st.Failed == n+1
	})
	st := sim.EventStats()
	// Binomial(402, 0.5): mean 201, sd ~10; allow 5 sd.
	if st.Dropped < 151 || st.Dropped > 251 {
		t.Errorf("dropped %d of %d, want about half", st.Dropped, n)
	}
	got := len(ev.all()) - 1
	if uint64(got) != n-st.Dropped {
		t.Errorf("receiver got %d, want %d (emitted) - %d (dropped)", got, n, st.Dropped)
	}
	// Dropped events leave gaps in the id sequence, as lost events do on a real EMS.
	maxID := uint64(0)
	for _, r := range ev.all() {
		maxID = max(maxID, r.Env.ID)
	}
	if maxID <= uint64(got+1) && st.Dropped > 0 {
		t.Errorf("no gaps in ids: max id %d for %d received", maxID, got+1)
	}
}

func TestDuplicatesAreByteIdentical(t *testing.T) {
	ev := newSink(t)
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}, Seed: 9})
	waitFor(t, 5*time.Second, "serverStarted", func() bool { return len(ev.all()) == 1 })
	sim.SetFaults(Faults{DuplicateRate: 0.3})
	churn(t, sim, 40)
	waitFor(t, 10*time.Second, "deliveries settled", func() bool {
		st := sim.EventStats()
		return st.Posted == 121+st.Duplicated && st.Duplicated > 0
	})
	byID := map[uint64][][]byte{}
	for _, r := range ev.all() {
		byID[r.Env.ID] = append(byID[r.Env.ID], r.Body)
	}
	dups := 0
	for id, bodies := range byID {
		if len(bodies) > 2 {
			t.Errorf("id %d posted %d times", id, len(bodies))
		}
		if len(bodies) == 2 {
			dups++
			if !bytes.Equal(bodies[0], bodies[1]) {
				t.Errorf("duplicate of id %d differs:\n%s\n%s", id, bodies[0], bodies[1])
			}
		}
	}
	if uint64(dups) != sim.EventStats().Duplicated || dups == 0 {
		t.Errorf("%d duplicated ids seen, stats say %d", dups, sim.EventStats().Duplicated)
	}
}

func TestDelayJitterReorders(t *testing.T) {
	ev := newSink(t)
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}, Seed: 11})
	waitFor(t, 5*time.Second, "serverStarted", func() bool { return len(ev.all()) == 1 })
	sim.SetFaults(Faults{Delay: 10 * time.Millisecond, Jitter: 300 * time.Millisecond})
	churn(t, sim, 20)
	waitFor(t, 10*time.Second, "all 60 delayed events", func() bool { return len(ev.all()) == 61 })
	inversions := 0
	all := ev.all()
	for i := 1; i < len(all); i++ {
		if all[i].Env.ID < all[i-1].Env.ID {
			inversions++
		}
	}
	if inversions == 0 {
		t.Error("jitter did not reorder any event")
	}
}

func TestStopPosting(t *testing.T) {
	ev := newSink(t)
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}})
	waitFor(t, 5*time.Second, "serverStarted", func() bool { return len(ev.all()) == 1 })
	sim.SetFaults(Faults{StopPosting: true})
	churn(t, sim, 5)
	if st := sim.EventStats(); st.Dropped != 15 {
		t.Errorf("dropped %d, want 15", st.Dropped)
	}
	sim.SetFaults(Faults{})
	churn(t, sim, 1)
	waitFor(t, 5*time.Second, "posting resumed", func() bool { return len(ev.all()) == 4 })
	if first := ev.all()[1].Env.ID; first != 17 {
		t.Errorf("first event after the outage has id %d, want 17 (15 lost)", first)
	}
}

func TestAPIFaults(t *testing.T) {
	sim := startSim(t, Config{})
	sim.SetFaults(Faults{API: map[string]APIFault{
		"listStreams":    {HTTPStatus: http.StatusInternalServerError},
		"pullstream":     {Fail: "injected failure", Times: 2},
		"listConfig":     {Latency: 300 * time.Millisecond},
		"listStreamsIds": {Fail: "never", Rate: 0.0000001},
	}})
	if r := rawCall(t, sim.APIURL(), "listStreams", ""); r.HTTPStatus != http.StatusInternalServerError {
		t.Errorf("listStreams HTTP %d, want 500", r.HTTPStatus)
	}
	for i := range 2 {
		r := rawCall(t, sim.APIURL(), "pullStream", "uri=rtmp://127.0.0.1:1/live/x localStreamName=x")
		if r.Status != "FAIL" || r.Description != "injected failure" || string(r.Data) != "null" {
			t.Errorf("call %d: %s", i, r.Raw)
		}
	}
	if r := rawCall(t, sim.APIURL(), "pullStream", "uri=rtmp://127.0.0.1:1/live/x localStreamName=x"); r.Status != "SUCCESS" {
		t.Errorf("third pullStream after Times=2: %s", r.Raw)
	}
	start := time.Now()
	mustSucceed(t, rawCall(t, sim.APIURL(), "listConfig", ""))
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("listConfig answered after %s, want at least the injected 300ms", d)
	}
	// A rate that practically never fires leaves the command alone.
	mustSucceed(t, rawCall(t, sim.APIURL(), "listStreamsIds", ""))

	// The admin endpoint sets and shows faults too.
	req, _ := http.NewRequest(http.MethodPut, sim.APIURL()+"/_sim/faults", strings.NewReader(`{"api":{"version":{"fail":"down"}}}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /_sim/faults: %v %v", err, resp)
	}
	resp.Body.Close()
	if r := rawCall(t, sim.APIURL(), "version", ""); r.Status != "FAIL" || r.Description != "down" {
		t.Errorf("version after admin fault: %s", r.Raw)
	}
}
