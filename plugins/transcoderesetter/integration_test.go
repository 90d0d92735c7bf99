package transcoderesetter

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins/internal/streamtest"
)

// wait bounds how long a test waits for the simulator to do something.
const wait = 30 * time.Second

// TestAgainstSimulator runs the resetter against the EMS simulator: the stream whose audio
// stopped is shut down; a redelivery after a publisher came back under the same name (a new
// stream id) leaves the new stream running.
func TestAgainstSimulator(t *testing.T) {
	f := streamtest.New(t, streamtest.Options{}, "a")
	sim := f.Sim("a")
	p, err := Factory("TranscodeResetter", json.RawMessage(`{}`), f.Deps("TranscodeResetter"))
	if err != nil {
		t.Fatal(err)
	}
	r := p.(*Resetter)
	id, err := sim.Publish("transcoded1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Publish("other"); err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{
		Type: event.AudioFeedStopped, EMS: "a", Timestamp: uint64(time.Now().Unix()),
		Payload: event.Payload{"id": json.Number(strconv.FormatUint(id, 10)), "localStreamName": "transcoded1"},
	}
	if err := r.Handle(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	live, err := f.Inbound(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := live["transcoded1"]; ok {
		t.Error("transcoded1 still runs")
	}
	if _, ok := live["other"]; !ok {
		t.Error("another stream was shut down too")
	}

	newID, err := sim.Publish("transcoded1")
	if err != nil {
		t.Fatal(err)
	}
	if newID == id {
		t.Fatalf("the simulator reused id %d", id)
	}
	if err := r.Handle(t.Context(), ev); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	live, err = f.Inbound(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := live["transcoded1"]; !ok {
		t.Error("the redelivered event shut down the new transcoded1")
	} else if got, _ := st.UniqueID(); got != newID {
		t.Errorf("transcoded1 runs as id %d, want %d", got, newID)
	}
	if got := r.metrics.Actions(actionShutdown); got != 1 {
		t.Errorf("shutdowns %v, want 1", got)
	}
	if got := r.metrics.Skipped(SkipGone); got != 1 {
		t.Errorf("gone skips %v, want 1", got)
	}
}

// TestPermanentlyAgainstSimulator: with permanently=1 (the default) a pulled stream's config
// goes with it and it stays down; with permanently=0 the keepAlive pull brings it back as a new
// stream, which is the reset.
func TestPermanentlyAgainstSimulator(t *testing.T) {
	tests := []struct {
		name       string
		params     string
		comesBack  bool
		pullConfig int
	}{
		{"permanently (default)", `{}`, false, 0},
		{"cut only", `{"permanently": false}`, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := streamtest.New(t, streamtest.Options{}, "b", "src")
			if _, err := f.Sim("src").Publish("camera"); err != nil {
				t.Fatal(err)
			}
			b := f.Client("b")
			if _, err := b.PullStream(t.Context(), emsclient.PullStreamParams{
				URI: f.Sim("src").RTMPURL() + "/camera", LocalStreamName: "transcoded1", KeepAlive: emsclient.Bool(true),
			}); err != nil {
				t.Fatal(err)
			}
			var id uint64
			streamtest.WaitFor(t, wait, "the pull to run", func() bool {
				live, err := f.Inbound(t.Context(), "b")
				id, _ = live["transcoded1"].UniqueID()
				return err == nil && id != 0
			})
			p, err := Factory("TranscodeResetter", json.RawMessage(tt.params), f.Deps("TranscodeResetter"))
			if err != nil {
				t.Fatal(err)
			}
			ev := &event.Event{
				Type: event.AudioFeedStopped, EMS: "b", Timestamp: uint64(time.Now().Unix()),
				Payload: event.Payload{"id": json.Number(strconv.FormatUint(id, 10)), "localStreamName": "transcoded1"},
			}
			if err := p.Handle(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
			cl, err := f.Configs(t.Context(), "b")
			if err != nil {
				t.Fatal(err)
			}
			if n := len(cl.Pull); n != tt.pullConfig {
				t.Errorf("%d pull configs left, want %d", n, tt.pullConfig)
			}
			if !tt.comesBack {
				live, err := f.Inbound(t.Context(), "b")
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := live["transcoded1"]; ok {
					t.Error("transcoded1 still runs")
				}
				return
			}
			streamtest.WaitFor(t, wait, "the pull to reconnect as a new stream", func() bool {
				live, err := f.Inbound(t.Context(), "b")
				got, _ := live["transcoded1"].UniqueID()
				return err == nil && got != 0 && got != id
			})
		})
	}
}
