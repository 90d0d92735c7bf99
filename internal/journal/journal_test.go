package journal

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
)

func TestToken(t *testing.T) {
	tests := map[string]string{
		"inStreamCreated": "inStreamCreated",
		"ems-1_B":         "ems-1_B",
		"":                otherToken,
		"a.b":             otherToken,
		"a b":             otherToken,
		"a*":              otherToken,
		">":               otherToken,
		"évent":           otherToken,
	}
	for in, want := range tests {
		if got := Token(in); got != want {
			t.Errorf("Token(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseAck(t *testing.T) {
	tests := []struct {
		ack     string
		wantErr string // empty: stored
	}{
		{`{"stream":"EMS_EVENTS","seq":12}`, ""},
		{`{"stream":"EMS_EVENTS","seq":12,"duplicate":true}`, ""},
		{`{"stream":"EMS_EVENTS","domain":"hub","seq":3}`, ""},
		{` {"seq":3,"stream":"EMS_EVENTS"}`, ""},
		{`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"EMS_EVENTS","seq":0}`, "maximum messages exceeded"},
		{`{"stream":"EMS_EVENTS","error":{"code":400,"description":"bad"}}`, "bad"},
		{`{"seq":3}`, "names no stream"},
		{`not json`, "read publish acknowledgement"},
		{``, "read publish acknowledgement"},
	}
	for _, tt := range tests {
		err := parseAck([]byte(tt.ack))
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("parseAck(%s) = %v, want nil", tt.ack, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("parseAck(%s) = %v, want an error with %q", tt.ack, err, tt.wantErr)
		}
	}
}

// openWithFixture opens an embedded journal in a temporary folder and decodes the
// inStreamCreated fixture; the journal is closed when the test ends.
func openWithFixture(t *testing.T) (*Journal, *event.Event) {
	t.Helper()
	j, err := Open(t.Context(), Config{DataDir: t.TempDir(), DedupeWindow: time.Minute}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j, fixture(t)
}

// fixture decodes the inStreamCreated fixture.
func fixture(t *testing.T) *event.Event {
	t.Helper()
	body, err := os.ReadFile("../../webhook/testdata/inStreamCreated.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.DecodeEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestAppendThroughServer: an event is stored once however often it is appended (by the
// journal's own index: no message id goes to the embedded server), a message the
// stream refuses comes back as the server's error, and a subject no stream takes fails after
// the retries instead of hanging.
func TestAppendThroughServer(t *testing.T) {
	j, ev := openWithFixture(t)
	ev.EMS = "ems1"
	for range 3 {
		if err := j.Append(t.Context(), []*event.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := j.Stream().Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages after three appends of one event, want 1", info.State.Msgs)
	}
	got, err := j.Stream().GetLastMsgForSubject(t.Context(), Subject("ems1", event.InStreamCreated))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != string(ev.Raw) || got.Header.Get(HeaderEMS) != "ems1" || got.Header.Get("Nats-Msg-Id") != "" {
		t.Errorf("stored message: headers %v, body equal %v", got.Header, string(got.Data) == string(ev.Raw))
	}

	cfg := info.Config
	cfg.MaxMsgSize = 100
	if _, err := j.JetStream().UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	ev2 := *ev
	ev2.EMS = "ems2"
	if err := j.Append(t.Context(), []*event.Event{&ev2}); err == nil || !strings.Contains(err.Error(), "maximum") {
		t.Errorf("append over the stream's message size = %v, want the server's refusal", err)
	}

	err = j.publish(t.Context(), &nats.Msg{Subject: "nostream.x", Data: []byte("{}")})
	if err == nil || !strings.Contains(err.Error(), "no stream answered") {
		t.Errorf("publish to a subject no stream takes = %v, want 'no stream answered'", err)
	}
}

// TestCollector: the gauges report what the streams hold, and a journal that cannot answer is
// reported as a scrape error instead of stale or zero counts.
func TestCollector(t *testing.T) {
	j, ev := openWithFixture(t)
	ev2 := *ev
	ev.EMS, ev2.EMS = "ems1", "ems2"
	if err := j.Append(t.Context(), []*event.Event{ev, &ev2, ev}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(j.Collector())
	got := gather(t, reg)
	want := map[string]float64{
		`emsflow_journal_messages{stream="events"}`:      2,
		`emsflow_journal_messages{stream="dead"}`:        0,
		`emsflow_journal_last_sequence{stream="events"}`: 2,
		`emsflow_journal_scrape_errors{stream="events"}`: 0,
		`emsflow_journal_scrape_errors{stream="dead"}`:   0,
		`emsflow_journal_dedupe_keys{}`:                  2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if b := got[`emsflow_journal_bytes{stream="events"}`]; b < float64(2*len(ev.Raw)) {
		t.Errorf("events stream bytes = %v, want at least the two bodies (%d)", b, 2*len(ev.Raw))
	}

	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	got = gather(t, reg)
	if _, ok := got[`emsflow_journal_messages{stream="events"}`]; ok || got[`emsflow_journal_scrape_errors{stream="events"}`] != 1 {
		t.Errorf("after Close: %v, want only scrape errors", got)
	}
}

// TestLastSequenceCountsEvicted: once max_bytes drops the oldest events, the stream holds fewer
// messages than it stored, and last_sequence still counts every one stored, which is what tells
// "retention dropped it" from "it was never stored".
func TestLastSequenceCountsEvicted(t *testing.T) {
	ev := fixture(t)
	const stored = 10
	j, err := Open(t.Context(), Config{DataDir: t.TempDir(), DedupeWindow: time.Minute, MaxBytes: int64(3 * len(ev.Raw))}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	for i := range stored {
		e := *ev
		e.EMS = fmt.Sprintf("ems%d", i)
		if err := j.Append(t.Context(), []*event.Event{&e}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(j.Collector())
	got := gather(t, reg)
	if held := got[`emsflow_journal_messages{stream="events"}`]; held < 1 || held >= stored {
		t.Errorf("messages held = %v, want between 1 and %d (max_bytes is three bodies)", held, stored-1)
	}
	if last := got[`emsflow_journal_last_sequence{stream="events"}`]; last != stored {
		t.Errorf("last_sequence = %v, want %d", last, stored)
	}
}

// gather returns every gauge of reg as name{labels} → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}
