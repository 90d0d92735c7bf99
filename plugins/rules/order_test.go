package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/emsclient/emstest"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/dispatch"
	"github.com/emsflow/emsflow/internal/journal"
)

// holdingEMS is a proxy in front of an emstest server that holds the first createHLSStream of
// each group (the first call that names a stream; the listConfig check before it names none)
// until release is called, and forwards everything else at once. emstest records a call when
// the proxy forwards it, so its call log is the order in which calls took effect.
type holdingEMS struct {
	fake    *emstest.Server
	srv     *httptest.Server
	proxy   *httputil.ReverseProxy
	release func()
	gate    chan struct{}

	mu      sync.Mutex
	seen    map[string]bool
	held    map[string]bool
	maxHeld int // most first calls held at one time
}

func newHoldingEMS(t *testing.T) *holdingEMS {
	t.Helper()
	h := &holdingEMS{fake: emstest.NewServer(t), gate: make(chan struct{}), seen: map[string]bool{}, held: map[string]bool{}}
	u, err := url.Parse(h.fake.URL())
	if err != nil {
		t.Fatal(err)
	}
	h.proxy = httputil.NewSingleHostReverseProxy(u)
	var once sync.Once
	h.release = func() { once.Do(func() { close(h.gate) }) }
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *holdingEMS) serve(w http.ResponseWriter, r *http.Request) {
	cmd, ps, _ := emsclient.ParseRequest(r)
	group, _ := ps.Get("groupName")
	h.mu.Lock()
	hold := strings.EqualFold(cmd, "createHLSStream") && !h.seen[group]
	if hold {
		h.seen[group] = true
		h.held[group] = true
		h.maxHeld = max(h.maxHeld, len(h.held))
	}
	h.mu.Unlock()
	if hold {
		select {
		case <-h.gate:
		case <-r.Context().Done():
		}
		h.mu.Lock()
		delete(h.held, group)
		h.mu.Unlock()
	}
	h.proxy.ServeHTTP(w, r)
}

func (h *holdingEMS) heldNow() (now, most int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held), h.maxHeld
}

// observed is the Engine as the dispatcher sees it, recording the events handled. Embedding
// promotes the Engine's methods, OrderKey included when it has one.
type observed struct {
	*Engine

	mu   sync.Mutex
	done []*event.Event
	errs []error
}

func (o *observed) Handle(ctx context.Context, ev *event.Event) error {
	err := o.Engine.Handle(ctx, ev)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = append(o.done, ev)
	if err != nil {
		o.errs = append(o.errs, fmt.Errorf("%s %s: %w", ev.Type, ev.Payload.Name(), err))
	}
	return err
}

func (o *observed) handled(typ string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, ev := range o.done {
		if typ == "" || ev.Type == typ {
			n++
		}
	}
	return n
}

// dispatchWorkers is the dispatcher's concurrency in TestDispatchKeepsStreamOrder.
const dispatchWorkers = 4

// workerOf is the worker the dispatcher hands a key to (internal/dispatch: FNV-1a of the key,
// modulo the concurrency).
func workerOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % dispatchWorkers)
}

// TestDispatchKeepsStreamOrder drives the Engine through the real dispatcher and journal with 4
// workers. Three streams are created and then closed; inStreamCreated makes an HLS group,
// inStreamClosed removes it. The EMS holds each stream's createHLSStream until all three are
// held at once (so the streams ran concurrently) and a timer event journaled after every close
// has been handled (so a close free to overtake its create has done so, on the one worker
// left). The closes must still act after their creates: each group is created, then removed,
// and none is left behind.
//
// The stream names are picked so that their keys go to three different workers, leaving one
// for the timer event: with fewer workers than that, the dispatcher itself would serialise them.
func TestDispatchKeepsStreamOrder(t *testing.T) {
	ems := newHoldingEMS(t)
	deps := testDeps(t, map[string]string{"default": ems.srv.URL})
	p, err := Factory("rules1", json.RawMessage(`{"reconcile":false,"rules":[
	  {"name":"hls","events":["inStreamCreated"],
	   "action":"createHLSStream localStreamNames={{.Name}} targetFolder=/var/hls groupName={{.Name}}"},
	  {"name":"unhls","events":["inStreamClosed"],"action":"removeConfig groupName={{.Name}}"},
	  {"name":"untimer","events":["timerTriggered"],"action":"removeTimer id={{.Payload.timerId}}"}]}`), deps)
	if err != nil {
		t.Fatal(err)
	}
	plugin := &observed{Engine: p.(*Engine)}

	streamEvent := func(typ, name string, id int) *event.Event {
		ev := decodeEvent(t, fmt.Sprintf(`{"id":%d,"type":%q,"payload":{"PID":1,"name":%q,"uniqueId":%d,"type":"INR"}}`, id, typ, name, id))
		ev.EMS = "default"
		return ev
	}
	var names []string
	used := map[int]bool{}
	for i := 0; len(names) < dispatchWorkers-1; i++ {
		name := fmt.Sprintf("cam%d", i)
		if w := workerOf(streamKey(streamEvent(event.InStreamCreated, name, 1))); !used[w] {
			used[w] = true
			names = append(names, name)
		}
	}
	var evs []*event.Event
	for i, n := range names {
		evs = append(evs, streamEvent(event.InStreamCreated, n, i+1))
	}
	for i, n := range names {
		evs = append(evs, streamEvent(event.InStreamClosed, n, len(names)+i+1))
	}
	timer := decodeEvent(t, fmt.Sprintf(`{"id":%d,"type":"timerTriggered","payload":{"PID":1,"timerId":9,"triggerCount":1,"value":60}}`, len(evs)+1))
	timer.EMS = "default"
	evs = append(evs, timer)

	j, err := journal.Open(t.Context(), journal.Config{DataDir: t.TempDir(), DedupeWindow: time.Minute}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	d, err := dispatch.New(j, []dispatch.Entry{{Plugin: plugin, Policy: dispatch.Policy{
		Timeout: 20 * time.Second, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Concurrency: dispatchWorkers,
	}}}, prometheus.NewRegistry(), zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Stop(ctx); err != nil {
			t.Errorf("stop dispatcher: %v", err)
		}
		if err := j.Close(); err != nil {
			t.Errorf("close journal: %v", err)
		}
	})
	t.Cleanup(ems.release) // runs first: nothing stays held when the test fails early

	if err := j.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "every stream's createHLSStream held at once and the timer event handled", func() bool {
		held, _ := ems.heldNow()
		return held == len(names) && plugin.handled(event.TimerTriggered) == 1
	})
	ems.release()
	waitFor(t, 15*time.Second, "every event handled", func() bool { return plugin.handled("") == len(evs) })

	if _, most := ems.heldNow(); most != len(names) {
		t.Errorf("at most %d streams' calls were in flight at once, want %d: streams were serialised", most, len(names))
	}
	plugin.mu.Lock()
	for _, err := range plugin.errs {
		t.Errorf("Handle: %v", err)
	}
	plugin.mu.Unlock()
	calls := ems.fake.Calls()
	for _, n := range names {
		created, removed := -1, -1
		for i, c := range calls {
			g, _ := c.Params.Get("groupName")
			switch {
			case g != n:
			case strings.EqualFold(c.Command, "createHLSStream"):
				created = i
			case strings.EqualFold(c.Command, "removeConfig"):
				removed = i
			}
		}
		if created < 0 || removed < created {
			t.Errorf("stream %s: createHLSStream at call %d, removeConfig at call %d; want the create, then the remove", n, created, removed)
		}
	}
	lc, err := ems.fake.Client().ListConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range lc.HLS {
		g, _ := c.String("groupName")
		t.Errorf("HLS group %s left on EMS after its stream closed", g)
	}
}

// TestStreamKey: the events of one inbound stream and of the outputs made from it share a key
// on one EMS; events about no stream have none. The files are the real payloads of reference
// §1.6 that the webhook tests use; the inline ones are built from the fields §1.6 documents.
func TestStreamKey(t *testing.T) {
	fixture := func(t *testing.T, file string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", "webhook", "testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const (
		pushOut = `{"id":30,"type":"outStreamCreated","payload":{"PID":1,"name":"cam1_remote","type":"ONR","uniqueId":12,
		  "inStreamUniqueId":null,"pushSettings":{"configId":5,"localStreamName":"cam1","targetStreamName":"cam1_remote","uri":"rtmp://10.0.0.2/live"}}}`
		pushLost = `{"id":31,"type":"outStreamClosed","payload":{"PID":1,"name":"cam1_remote","type":"ONR","uniqueId":12,
		  "inStreamUniqueId":3,"pushSettings":{"configId":5,"localStreamName":"cam1","targetStreamName":"cam1_remote","uri":"rtmp://10.0.0.2/live"}}}`
		published = `{"id":2,"type":"inStreamCreated","payload":{"PID":1,"name":"cam1","type":"INR","uniqueId":3,"outStreamsUniqueIds":null}}`
		player    = `{"id":32,"type":"outStreamCreated","payload":{"PID":1,"name":"cam1","streamAlias":"cam1","type":"ONR","uniqueId":13,"connectionType":0}}`
		codecs    = `{"id":4,"type":"inStreamCodecsUpdated","payload":{"PID":1,"name":"cam1","type":"INR","uniqueId":3}}`
		feed      = `{"id":40,"type":"videoFeedStopped","payload":{"PID":1,"id":3,"localStreamName":"cam1"}}`
		app       = `{"id":41,"type":"applicationStart","payload":{"PID":1,"id":1,"name":"evostreamms","config":{}}}`
		segInit   = `{"id":33,"type":"outStreamCreated","payload":{"PID":1,"name":"segInitwriter","type":"OFMP4","uniqueId":14,
		  "recordSettings":{"chunkLength":10,"computedPathToFile":"/w/dashc1/cam1/video/0/seg_init.mp4"}}}`
	)
	tests := []struct {
		name string
		raw  []byte
		ems  string
		want string
	}{
		{"pulled inStreamCreated", fixture(t, "inStreamCreated.json"), "default", "default\x004"},
		{"uint64 inStreamCreated", fixture(t, "inStreamCreated_uint64.json"), "default", "default\x004"},
		{"inStreamClosed", fixture(t, "inStreamClosed.json"), "default", "default\x001"},
		{"HLS outStreamCreated: its input's name", fixture(t, "outStreamCreated_hls.json"), "default", "default\x001"},
		{"record outStreamCreated", fixture(t, "outStreamCreated_record.json"), "default", "default\x001"},
		{"DASH outStreamClosed", fixture(t, "outStreamClosed_dash.json"), "default", "default\x001"},
		{"the EMS is part of the key", fixture(t, "inStreamClosed.json"), "edge", "edge\x001"},
		{"published inStreamCreated", []byte(published), "default", "default\x00cam1"},
		{"push outStreamCreated: the pushed stream, not the target name", []byte(pushOut), "default", "default\x00cam1"},
		{"push outStreamClosed", []byte(pushLost), "default", "default\x00cam1"},
		{"player outStreamCreated", []byte(player), "default", "default\x00cam1"},
		{"inStreamCodecsUpdated", []byte(codecs), "default", "default\x00cam1"},
		{"videoFeedStopped: top-level localStreamName", []byte(feed), "default", "default\x00cam1"},
		{"DASH init writer: its own name, no input named", []byte(segInit), "default", "default\x00segInitwriter"},
		{"nameless neutral streamCreated", fixture(t, "streamCreated_old.json"), "default", ""},
		{"hlsChunkClosed: a file, no stream", fixture(t, "hlsChunkClosed.json"), "default", ""},
		{"recordChunkCreated: a user variable is not a stream name", fixture(t, "recordChunkCreated.json"), "default", ""},
		{"recordChunkClosed", fixture(t, "recordChunkClosed.json"), "default", ""},
		{"timerTriggered", fixture(t, "timerTriggered.json"), "default", ""},
		{"serverStarted", fixture(t, "serverStarted.json"), "default", ""},
		{"applicationStart: an application's name is not a stream's", []byte(app), "default", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := event.Decode(tc.raw)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			ev.EMS = tc.ems
			e := &Engine{}
			if got := e.OrderKey(ev); got != tc.want {
				t.Errorf("OrderKey = %q, want %q", got, tc.want)
			}
		})
	}
}
