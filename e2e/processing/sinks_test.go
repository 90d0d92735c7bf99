package processing_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/servicetest"
)

// sinksConfig is a service whose only plugin is an EventSinks instance named Sinks with the
// given sinks (a JSON array).
func sinksConfig(sinks string) string {
	return `{
  // short backoff so that redelivery after a restart comes within seconds
  "dispatch": {"timeout": "10s", "initial_backoff": "50ms", "max_backoff": "500ms"},
  "journal": {"data_dir": "data"},
  "log": {"level": "warn"},
  "plugins": {
    "Sinks": {"type": "EventSinks", "plugin_switch": "enabled", "parameters": {"sinks": ` + sinks + `}},
  },
}`
}

// delivered is one POST an HTTP receiver accepted.
type delivered struct {
	ids   []uint64
	names []string
	ems   []string
}

// hookReceiver is a real HTTP event receiver on 127.0.0.1. It checks Flussonic's sha1
// signature of every request with its own computation, and can play dead (503).
type hookReceiver struct {
	t   *testing.T
	srv *httptest.Server
	key string

	mu      sync.Mutex
	down    bool
	refused int // requests answered 503
	badSig  []string
	batches []delivered
	// held, when not nil, makes the next accepted request be recorded, then closes held and
	// never answers: the handler waits until the sender goes away.
	held chan struct{}
}

func newHookReceiver(t *testing.T, key string) *hookReceiver {
	h := &hookReceiver{t: t, key: key}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	if h.down {
		h.refused++
		h.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if msg := h.verify(r.Header, body); msg != "" {
		h.badSig = append(h.badSig, msg)
	}
	var evs []struct {
		ID      uint64 `json:"id"`
		EMS     string `json:"ems"`
		Type    string `json:"type"`
		Payload struct {
			Name string `json:"name"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(body, &evs); err != nil {
		h.mu.Unlock()
		h.t.Errorf("receiver: body is not a JSON array of events: %v: %.200s", err, body)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var d delivered
	for _, ev := range evs {
		d.ids = append(d.ids, ev.ID)
		d.names = append(d.names, ev.Payload.Name)
		d.ems = append(d.ems, ev.EMS)
	}
	h.batches = append(h.batches, d)
	held := h.held
	h.held = nil
	h.mu.Unlock()
	if held != nil {
		close(held)
		<-r.Context().Done()
		return
	}
	w.WriteHeader(http.StatusOK)
}

// verify checks the request's signature with the receiver's own computation, independent of
// plugins/sinks, and returns what is wrong ("" when nothing is or there is no key).
func (h *hookReceiver) verify(hdr http.Header, body []byte) string {
	if b64, ok := strings.CutPrefix(h.key, "whsec_"); ok {
		// Standard Webhooks: "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>".
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return err.Error()
		}
		id, ts := hdr.Get("webhook-id"), hdr.Get("webhook-timestamp")
		if id == "" || ts == "" {
			return "webhook-id or webhook-timestamp missing"
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "."))
		m.Write(body)
		want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
		if !slices.Contains(strings.Fields(hdr.Get("webhook-signature")), want) {
			return fmt.Sprintf("webhook-signature %q does not sign a %d-byte body", hdr.Get("webhook-signature"), len(body))
		}
		return ""
	}
	if h.key != "" {
		// Flussonic's scheme: hex(sha1(body + key)).
		sum := sha1.Sum(append(slices.Clone(body), h.key...))
		if got := hdr.Get("X-Signature"); got != hex.EncodeToString(sum[:]) {
			return fmt.Sprintf("X-Signature %q does not sign a %d-byte body", got, len(body))
		}
	}
	return ""
}

// holdNext makes the next accepted request hang after it was recorded; the returned channel
// closes when it has been.
func (h *hookReceiver) holdNext() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = make(chan struct{})
	return h.held
}

func (h *hookReceiver) setDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = down
}

func (h *hookReceiver) refusedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refused
}

func (h *hookReceiver) all() []delivered {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.batches)
}

// ids returns every delivered envelope id in arrival order, repeats included.
func (h *hookReceiver) ids() []uint64 {
	var out []uint64
	for _, b := range h.all() {
		out = append(out, b.ids...)
	}
	return out
}

// names returns every delivered stream name in arrival order.
func (h *hookReceiver) names() []string {
	var out []string
	for _, b := range h.all() {
		out = append(out, b.names...)
	}
	return out
}

// has reports whether every id in [from, to] was delivered.
func (h *hookReceiver) has(from, to uint64) bool {
	seen := map[uint64]bool{}
	for _, id := range h.ids() {
		seen[id] = true
	}
	for id := from; id <= to; id++ {
		if !seen[id] {
			return false
		}
	}
	return true
}

func (h *hookReceiver) checkSignatures(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.badSig {
		t.Error(s)
	}
}

// firstDeliveries returns the ids in the order of their first delivery and how many deliveries
// repeated an id already delivered.
func firstDeliveries(ids []uint64) (first []uint64, repeats int) {
	seen := map[uint64]bool{}
	for _, id := range ids {
		if seen[id] {
			repeats++
			continue
		}
		seen[id] = true
		first = append(first, id)
	}
	return first, repeats
}

// checkOrder fails unless first deliveries are exactly from..to in order.
func checkOrder(t *testing.T, phase string, first []uint64, from, to uint64) {
	t.Helper()
	var want []uint64
	for id := from; id <= to; id++ {
		want = append(want, id)
	}
	if !slices.Equal(first, want) {
		t.Errorf("%s: ids in order of first delivery\n got %v\nwant %v", phase, first, want)
	}
}

// postRange posts inStreamCreated events with ids from..to, one stream each.
func postRange(t *testing.T, svc *servicetest.Service, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		post(t, svc, envelope(i, event.InStreamCreated, fmt.Sprintf("cam%d", i)))
	}
}

// TestHTTPSinkSignedOrderedBatchedDurable: events posted to emsflow reach a real HTTP receiver
// signed, in posting order, in batches of at most batch_size; events queued while the receiver
// is down survive a SIGKILL and a SIGTERM of emsflow and arrive, in order, once it is back; a
// batch in flight at a SIGKILL is sent again, and only that batch.
func TestHTTPSinkSignedOrderedBatchedDurable(t *testing.T) {
	requireEndToEnd(t)
	t.Parallel()
	const key = "e2e-sign-key"
	const batchSize = 5
	recv := newHookReceiver(t, key)
	dir := t.TempDir()
	svc := servicetest.Start(t, dir, sinksConfig(`[{"name": "hook", "url": "`+recv.srv.URL+`/ems",
	  "sign_key": "`+key+`", "signature": "sha1", "batch_size": 5, "throttle_delay": "200ms",
	  "resend_delay": "50ms", "resend_max_delay": "200ms", "timeout": "5s"}]`))
	depth := func() float64 { return metric(t, svc, "emsflow_sink_queue_depth", map[string]string{"sink": "hook"}) }

	// 1. Receiver up: 50 events, signed, in order, batches within the limit.
	postRange(t, svc, 1, 50)
	waitFor(t, "events 1..50 at the receiver", func() bool { return recv.has(1, 50) })
	first, repeats := firstDeliveries(recv.ids())
	checkOrder(t, "receiver up", first, 1, 50)
	if repeats != 0 {
		t.Errorf("receiver up: %d events delivered twice without any failure", repeats)
	}
	up := recv.all()
	for i, b := range up {
		if len(b.ids) == 0 || len(b.ids) > batchSize {
			t.Errorf("batch %d has %d events, want 1..%d", i, len(b.ids), batchSize)
		}
		for _, e := range b.ems {
			if e != "default" {
				t.Errorf("batch %d: event attributed to ems %q, want default", i, e)
			}
		}
	}
	t.Logf("receiver up: 50 events in %d POSTs", len(up))

	// 2. Receiver down: 20 events wait in the sink's durable queue; emsflow is killed with
	// SIGKILL; after the restart the receiver comes back and gets them all, in order.
	recv.setDown(true)
	postRange(t, svc, 51, 70)
	waitFor(t, "20 events queued for the dead receiver and a refused attempt", func() bool {
		return depth() == 20 && recv.refusedCount() > 0
	})
	svc.Kill()
	svc.Restart()
	// The queue came back from disk, not from the journal: Handle had acknowledged all 20.
	waitFor(t, "the queue of 20 reopened after SIGKILL", func() bool { return depth() == 20 })
	before := len(recv.all())
	recv.setDown(false)
	waitFor(t, "events 51..70 after the SIGKILL", func() bool { return recv.has(51, 70) })

	// 3. The same across a clean stop (SIGTERM) while the receiver is down.
	recv.setDown(true)
	postRange(t, svc, 71, 80)
	waitFor(t, "10 events queued for the dead receiver", func() bool { return depth() == 10 })
	svc.Stop()
	svc.Restart()
	waitFor(t, "the queue of 10 reopened after SIGTERM", func() bool { return depth() == 10 })
	recv.setDown(false)
	waitFor(t, "events 71..80 after the SIGTERM", func() bool { return recv.has(71, 80) })
	waitFor(t, "an empty queue", func() bool { return depth() == 0 })

	// 4. SIGKILL with a batch in flight: the receiver got it but emsflow never learnt so. The
	// batch must be sent again after the restart (at least once), and nothing else repeated.
	held := recv.holdNext()
	postRange(t, svc, 81, 85)
	select {
	case <-held:
	case <-t.Context().Done():
		t.Fatal("test ended before a batch was in flight")
	}
	inFlight := recv.all()[len(recv.all())-1].ids
	svc.Kill()
	svc.Restart()
	waitFor(t, "events 81..85 after the SIGKILL in flight", func() bool { return recv.has(81, 85) })
	waitFor(t, "an empty queue", func() bool { return depth() == 0 })
	svc.Stop()

	all := recv.ids()
	first, repeats = firstDeliveries(all)
	checkOrder(t, "overall", first, 1, 85)
	if repeats != len(inFlight) {
		t.Errorf("%d repeated deliveries, want exactly the %d events of the batch in flight at the kill %v",
			repeats, len(inFlight), inFlight)
	}
	// Ids never go back except where the in-flight batch starts again.
	backs := 0
	for i := 1; i < len(all); i++ {
		if all[i] <= all[i-1] {
			backs++
			if all[i] != inFlight[0] {
				t.Errorf("delivery %d goes back from id %d to %d, not to the batch in flight", i, all[i-1], all[i])
			}
		}
	}
	if backs > 1 {
		t.Errorf("ids go back %d times, want at most once (the resent batch)", backs)
	}
	// After an outage the queue holds more than a batch, so every POST must be full but the last.
	after := recv.all()[before:]
	full := 0
	for i, b := range after {
		if len(b.ids) > batchSize {
			t.Errorf("batch %d after the outage has %d events, more than batch_size %d", i, len(b.ids), batchSize)
		}
		if len(b.ids) == batchSize {
			full++
		}
	}
	if full == 0 {
		t.Errorf("no full batch among the %d POSTs after the outages, want batches of %d", len(after), batchSize)
	}
	recv.checkSignatures(t)
	t.Logf("85 events, %d POSTs, %d refused while down, %d repeated deliveries (the batch %v in flight at a SIGKILL)",
		len(recv.all()), recv.refusedCount(), repeats, inFlight)
}

// TestEmailSinkDigestsABurst: a burst of 15 inStreamClosed events, mixed with events the sink
// does not want, reaches a real SMTP server as one digest naming all 15 streams.
func TestEmailSinkDigestsABurst(t *testing.T) {
	requireEndToEnd(t)
	t.Parallel()
	smtpd := newSMTPServer(t)
	dir := t.TempDir()
	svc := servicetest.Start(t, dir, sinksConfig(`[{"name": "noc", "url": "smtp://`+smtpd.addr+`",
	  "from": "emsflow@example.com", "to": ["noc@example.com", "oncall@example.com"], "subject": "sources lost",
	  "only": ["type=inStreamClosed"], "digest_interval": "5s", "resend_delay": "100ms", "resend_max_delay": "500ms"}]`))

	var want []string
	for i := 1; i <= 15; i++ {
		name := fmt.Sprintf("lost%02d", i)
		want = append(want, name)
		post(t, svc, envelope(i, event.InStreamClosed, name))
		post(t, svc, envelope(100+i, event.InStreamCreated, fmt.Sprintf("new%02d", i)))
	}
	waitFor(t, "a digest email", func() bool { return len(smtpd.messages()) > 0 })
	// Every event of the burst is in the first email, so a second one could only be a repeat.
	waitFor(t, "the sink's queue to drain", func() bool {
		return metric(t, svc, "emsflow_sink_queue_depth", map[string]string{"sink": "noc"}) == 0 &&
			metric(t, svc, "emsflow_sink_delivered_events_total", map[string]string{"sink": "noc"}) == 15
	})
	svc.Stop()

	msgs := smtpd.messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d emails, want one digest", len(msgs))
	}
	m := msgs[0]
	if m.from != "emsflow@example.com" || !slices.Equal(m.to, []string{"noc@example.com", "oncall@example.com"}) {
		t.Errorf("envelope from %q to %v", m.from, m.to)
	}
	if !strings.Contains(m.data, "Subject: sources lost: 15 events\r\n") {
		t.Errorf("subject line missing or wrong in:\n%s", m.data)
	}
	var lines []string
	for l := range strings.Lines(m.data) {
		if strings.Contains(l, event.InStreamClosed) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 15 {
		t.Errorf("digest lists %d inStreamClosed lines, want 15:\n%s", len(lines), m.data)
	}
	for _, name := range want {
		if !strings.Contains(m.data, "stream="+name) {
			t.Errorf("digest does not list stream %s", name)
		}
	}
	if strings.Contains(m.data, "stream=new") || strings.Contains(m.data, event.InStreamCreated) {
		t.Errorf("digest lists events the only filter excludes:\n%s", m.data)
	}
}

// TestSinkFiltersPerSink: one EventSinks instance, three sinks: an except set drops matching
// events for one sink while another, unfiltered (and signed the Standard Webhooks way), gets
// them; a file sink with an only set keeps exactly its kind.
func TestSinkFiltersPerSink(t *testing.T) {
	requireEndToEnd(t)
	t.Parallel()
	const whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	all := newHookReceiver(t, whsec)
	public := newHookReceiver(t, "")
	dir := t.TempDir()
	svc := servicetest.Start(t, dir, sinksConfig(`[
	  {"name": "all", "url": "`+all.srv.URL+`/all", "throttle_delay": "50ms",
	   "signature": "standard-webhooks", "sign_key": "`+whsec+`"},
	  {"name": "public", "url": "`+public.srv.URL+`/public", "throttle_delay": "50ms",
	   "except": ["name=private*", "type=inStreamClosed name=cam2"]},
	  {"name": "closures", "url": "closures.jsonl", "only": ["type=inStreamClosed"]}]`))

	type ev struct {
		typ, name string
	}
	events := []ev{
		{event.InStreamCreated, "cam1"}, {event.InStreamCreated, "private1"}, {event.InStreamCreated, "cam2"},
		{event.InStreamClosed, "private1"}, {event.InStreamClosed, "cam2"}, {event.InStreamCreated, "private2"},
		{event.InStreamClosed, "cam1"},
		{event.OutStreamCreated, "last"}, // passes every sink but the file: when it arrives, all before it has
	}
	var wantAll, wantPublic, wantClosures []string
	for i, e := range events {
		post(t, svc, envelope(i+1, e.typ, e.name))
		label := e.typ + "/" + e.name
		wantAll = append(wantAll, label)
		if !strings.HasPrefix(e.name, "private") && (e.typ != event.InStreamClosed || e.name != "cam2") {
			wantPublic = append(wantPublic, label)
		}
		if e.typ == event.InStreamClosed {
			wantClosures = append(wantClosures, label)
		}
	}
	waitFor(t, "the last event at both receivers", func() bool {
		return slices.Contains(all.names(), "last") && slices.Contains(public.names(), "last")
	})
	closures := filepath.Join(dir, "closures.jsonl")
	waitFor(t, "the file sink to drain", func() bool {
		return metric(t, svc, "emsflow_sink_queue_depth", map[string]string{"sink": "closures"}) == 0 && fileExists(closures)
	})
	svc.Stop()

	labels := func(h *hookReceiver) []string {
		var out []string
		ids := h.ids()
		for _, id := range ids {
			e := events[id-1]
			out = append(out, e.typ+"/"+e.name)
		}
		return out
	}
	all.checkSignatures(t)
	if got := labels(all); !slices.Equal(got, wantAll) {
		t.Errorf("unfiltered sink got\n %v\nwant\n %v", got, wantAll)
	}
	if got := labels(public); !slices.Equal(got, wantPublic) {
		t.Errorf("sink with except sets got\n %v\nwant\n %v", got, wantPublic)
	}
	b, err := os.ReadFile(closures)
	if err != nil {
		t.Fatal(err)
	}
	var gotClosures []string
	for l := range strings.Lines(string(b)) {
		e, err := event.Decode([]byte(l))
		if err != nil {
			t.Fatalf("file sink line %q: %v", l, err)
		}
		gotClosures = append(gotClosures, e.Type+"/"+e.Payload.Name())
	}
	if !slices.Equal(gotClosures, wantClosures) {
		t.Errorf("file sink with an only set got\n %v\nwant\n %v", gotClosures, wantClosures)
	}
}
