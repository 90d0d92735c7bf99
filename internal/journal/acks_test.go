package journal

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// awaitFlight waits for a flight to end and returns its error.
func awaitFlight(t *testing.T, f *flight) error {
	t.Helper()
	select {
	case <-f.done:
		return f.err
	case <-time.After(10 * time.Second):
		t.Fatal("flight never ended")
		return nil
	}
}

// TestAcksEndFlights drives the publisher against the embedded server: a stored message ends
// its flight without error and its key is remembered; a subject no stream captures ends its
// flight with no-responders and the key is released; a subject whose only listener never
// answers ends its flight at the sweep after flightTimeout; closing the journal fails what is
// still waiting.
func TestAcksEndFlights(t *testing.T) {
	j, ev := openWithFixture(t)
	a := j.acks
	claim := func(name string) (digest, *flight) {
		t.Helper()
		var k digest
		copy(k[:], name)
		f, owner := j.dd.claim(k, time.Now())
		if !owner {
			t.Fatalf("%s: not the owner of a fresh key", name)
		}
		return k, f
	}

	k, f := claim("stored")
	if err := a.publish(k, f, j.message(ev, "now")); err != nil {
		t.Fatal(err)
	}
	if err := awaitFlight(t, f); err != nil {
		t.Fatalf("stored message: %v", err)
	}
	if f, _ := j.dd.claim(k, time.Now()); f != nil {
		t.Error("key of a stored message not remembered")
	}

	k, f = claim("nobody")
	if err := a.publish(k, f, &nats.Msg{Subject: "nobody.listens"}); err != nil {
		t.Fatal(err)
	}
	if err := awaitFlight(t, f); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("publish to no stream ended with %v, want no responders", err)
	}
	if f, owner := j.dd.claim(k, time.Now()); f == nil || !owner {
		t.Error("key of a failed publish still held")
	}

	mute, err := j.nc.SubscribeSync("mute.listener")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	k, f = claim("silent")
	if err := a.publish(k, f, &nats.Msg{Subject: "mute.listener"}); err != nil {
		t.Fatal(err)
	}
	if _, err := mute.NextMsg(10 * time.Second); err != nil {
		t.Fatal(err) // the message went out, and nobody will answer it
	}
	a.sweep(time.Now(), flightTimeout, errors.New("late"))
	select {
	case <-f.done:
		t.Fatal("sweep ended a flight younger than flightTimeout")
	default:
	}
	a.sweep(time.Now().Add(flightTimeout+time.Second), flightTimeout, errors.New("late"))
	if err := awaitFlight(t, f); err == nil || err.Error() != "late" {
		t.Fatalf("silent publish ended with %v, want the sweep's error", err)
	}

	k, f = claim("closing")
	if err := a.publish(k, f, &nats.Msg{Subject: "mute.listener"}); err != nil {
		t.Fatal(err)
	}
	if err := j.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = mute.Unsubscribe() // a sync subscription holding a message would stall the drain
	_ = j.Close()
	if err := awaitFlight(t, f); err == nil || !strings.Contains(err.Error(), "journal closed") {
		t.Fatalf("flight pending at close ended with %v, want journal closed", err)
	}
}
