package emssim

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPushPullBetweenSimulators: a push to another simulator's rtmp address appears there as
// an inbound stream with its own events; a pull creates an inbound stream with pullSettings;
// closing the source cascades; config ids and stream ids are distinct.
func TestPushPullBetweenSimulators(t *testing.T) {
	evA, evB, evC := newSink(t), newSink(t), newSink(t)
	a := startSim(t, Config{Sinks: []Sink{{URL: evA.srv.URL}}, Seed: 1})
	b := startSim(t, Config{Sinks: []Sink{{URL: evB.srv.URL}}, Seed: 2, IP: "127.0.0.2"})
	c := startSim(t, Config{Sinks: []Sink{{URL: evC.srv.URL}}, Seed: 3})

	if _, err := a.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	push := mustSucceed(t, rawCall(t, a.APIURL(), "pushStream",
		fmt.Sprintf("uri=%s localStreamName=cam1 targetStreamName=cam1b keepAlive=1 _tag=x", b.RTMPURL()))).object(t)
	pushCfg := num(push["configId"])

	waitFor(t, 5*time.Second, "push to arrive at b", func() bool { return evB.count("inStreamCreated") == 1 })
	onB := evB.ofType("inStreamCreated")[0].Env.Payload
	if onB["name"] != "cam1b" || onB["type"] != "INR" || onB["ip"] != "127.0.0.2" {
		t.Errorf("pushed stream at b: %v", onB)
	}
	waitFor(t, 5*time.Second, "outStreamCreated at a", func() bool { return evA.count("outStreamCreated") == 1 })
	out := evA.ofType("outStreamCreated")[0].Env.Payload
	ps, _ := out["pushSettings"].(map[string]any)
	if out["type"] != "ONR" || ps == nil || num(ps["configId"]) != pushCfg || ps["_tag"] != "x" || ps["targetStreamName"] != "cam1b" {
		t.Errorf("push output: type %v pushSettings %v", out["type"], ps)
	}
	if num(out["uniqueId"]) == pushCfg {
		t.Errorf("stream id %v equals config id %d", out["uniqueId"], pushCfg)
	}

	// c pulls cam1b from b: an inbound stream with pullSettings; b sees a player (ONR).
	pullURI := strings.TrimSuffix(b.RTMPURL(), "/live") + "/live/cam1b"
	pull := mustSucceed(t, rawCall(t, c.APIURL(), "pullStream",
		"uri="+pullURI+" localStreamName=relay keepAlive=1 _origin=test")).object(t)
	waitFor(t, 5*time.Second, "pull at c", func() bool { return evC.count("inStreamCreated") == 1 })
	pulled := evC.ofType("inStreamCreated")[0].Env.Payload
	pset, _ := pulled["pullSettings"].(map[string]any)
	if pulled["name"] != "relay" || pset == nil || pset["uri"] != pullURI || pset["keepAlive"] != true ||
		pset["_origin"] != "test" || num(pset["configId"]) != num(pull["configId"]) {
		t.Errorf("pulled stream: %v", pulled)
	}
	waitFor(t, 5*time.Second, "player at b", func() bool { return evB.count("outStreamCreated") == 1 })

	// listConfig on c: the pull is Streaming (code 0).
	lc := mustSucceed(t, rawCall(t, c.APIURL(), "listConfig", "")).object(t)
	pulls, _ := lc["pull"].([]any)
	if len(pulls) != 1 {
		t.Fatalf("listConfig pull = %v", lc["pull"])
	}
	cur := pulls[0].(map[string]any)["status"].(map[string]any)["current"].(map[string]any)
	if num(cur["code"]) != 0 || cur["description"] != "Streaming" {
		t.Errorf("pull status = %v, want 0 Streaming", cur)
	}

	// Closing cam1 on a cascades: a's push output closes, b's pushed stream and its player
	// close, c's pulled stream closes; c's keepAlive pull goes back to connecting.
	a.Unpublish("cam1")
	waitFor(t, 5*time.Second, "cascade", func() bool {
		return evA.count("outStreamClosed") == 1 && evB.count("inStreamClosed") == 1 &&
			evB.count("outStreamClosed") == 1 && evC.count("inStreamClosed") == 1
	})
	waitFor(t, 5*time.Second, "pull connecting again", func() bool {
		lc := mustSucceed(t, rawCall(t, c.APIURL(), "listConfig", "")).object(t)
		p := lc["pull"].([]any)[0].(map[string]any)["status"].(map[string]any)["current"].(map[string]any)
		code := num(p["code"])
		return code == statusConnecting || code == statusConnectionFailed
	})

	// cam1 comes back: the keepAlive push reconnects, then the keepAlive pull.
	if _, err := a.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "push and pull re-established", func() bool {
		return evB.count("inStreamCreated") == 2 && evC.count("inStreamCreated") == 2
	})

	// shutdownStream permanently=1 (the default) on c's pulled stream removes its config.
	mustSucceed(t, rawCall(t, c.APIURL(), "shutdownStream", "localStreamName=relay"))
	lc = mustSucceed(t, rawCall(t, c.APIURL(), "listConfig", "")).object(t)
	if n := len(lc["pull"].([]any)); n != 0 {
		t.Errorf("pull configs after permanent shutdown = %d, want 0", n)
	}
	if r := rawCall(t, c.APIURL(), "shutdownStream", "id=999999"); r.Status != "FAIL" || r.Description != "Stream no longer available" {
		t.Errorf("unknown id: %s", r.Raw)
	}
}

func TestPullFromMissingSourceAndPushOfMissingStream(t *testing.T) {
	sim := startSim(t, Config{})
	mustSucceed(t, rawCall(t, sim.APIURL(), "pullStream", "uri=rtmp://127.0.0.1:1/live/none localStreamName=ghost keepAlive=1"))
	waitFor(t, 5*time.Second, "connection failed status", func() bool {
		lc := mustSucceed(t, rawCall(t, sim.APIURL(), "listConfig", "")).object(t)
		st := lc["pull"].([]any)[0].(map[string]any)["status"].(map[string]any)
		cur := num(st["current"].(map[string]any)["code"])
		return cur == statusConnectionFailed || cur == statusConnecting
	})
	r := rawCall(t, sim.APIURL(), "listStreamsIds", "")
	if string(r.Data) != "null" {
		t.Errorf("a pull without source made streams: %s", r.Raw)
	}
	if r := rawCall(t, sim.APIURL(), "pushStream", "uri=rtmp://127.0.0.1:1/live localStreamName=nothere"); r.Status != "FAIL" {
		t.Errorf("push of a missing stream: %s", r.Raw)
	}
}

func TestTimers(t *testing.T) {
	ev := newSink(t)
	sim := startSim(t, Config{Sinks: []Sink{{URL: ev.srv.URL}}})
	r := mustSucceed(t, rawCall(t, sim.APIURL(), "setTimer", "value=1 _uniqueId=12"))
	if r.Description != "Custom timer enqueued" {
		t.Errorf("description %q", r.Description)
	}
	id := num(r.object(t)["timerId"])
	waitFor(t, 5*time.Second, "two triggers", func() bool { return ev.count("timerTriggered") >= 2 })
	trig := ev.ofType("timerTriggered")
	for i, tr := range trig[:2] {
		p := tr.Env.Payload
		if num(p["triggerCount"]) != uint64(i+1) || p["_uniqueId"] != "12" || num(p["timerId"]) != id || num(p["value"]) != 1 {
			t.Errorf("trigger %d payload %v", i, p)
		}
	}
	lt := mustSucceed(t, rawCall(t, sim.APIURL(), "listTimers", ""))
	if !strings.Contains(string(lt.Data), `"_uniqueId":"12"`) {
		t.Errorf("listTimers %s", lt.Raw)
	}
	mustSucceed(t, rawCall(t, sim.APIURL(), "removeTimer", fmt.Sprintf("id=%d", id)))
	waitFor(t, 5*time.Second, "timerClosed", func() bool { return ev.count("timerClosed") == 1 })
	if ev.count("timerCreated") != 1 {
		t.Errorf("timerCreated count %d", ev.count("timerCreated"))
	}
	if r := rawCall(t, sim.APIURL(), "removeTimer", fmt.Sprintf("id=%d", id)); r.Status != "FAIL" {
		t.Errorf("removing a removed timer: %s", r.Raw)
	}
}

// connectFields returns the RTMP connect fields of a stream payload.
func connectFields(p map[string]any) [3]any { return [3]any{p["tcUrl"], p["swfUrl"], p["pageUrl"]} }

// streamByName returns the stream named name from a listStreams answer.
func streamByName(t *testing.T, base, name string) map[string]any {
	t.Helper()
	var list []map[string]any
	r := mustSucceed(t, rawCall(t, base, "listStreams", ""))
	if err := json.Unmarshal(r.Data, &list); err != nil {
		t.Fatalf("listStreams data: %v: %s", err, r.Data)
	}
	for _, st := range list {
		if st["name"] == name {
			return st
		}
	}
	t.Fatalf("listStreams of %s has no %s: %s", base, name, r.Data)
	return nil
}

// TestPushCarriesRTMPConnectToPeer: a push connects to the far EMS with the tcUrl, swfUrl and
// pageUrl of its config (tcUrl and swfUrl default to the target URI, pageUrl to ""), as EMS's
// ConnectForPullPush does; the far EMS reports them on the inbound stream it creates, in
// inStreamCreated, listStreams and getStreamInfo, and the pusher on its ONR output. The push's
// user variables stay on the pushing side.
func TestPushCarriesRTMPConnectToPeer(t *testing.T) {
	const explicitTC, explicitSWF = "rtmp://edge.example.com:1935/live", "http://example.com/player.swf"
	tests := []struct {
		name   string
		params string
		want   func(target string) [3]any
	}{
		{"emsflow's router mark", "pageUrl=emsflow:Router _emsflow=Router _emsflowOrigin=a",
			func(target string) [3]any { return [3]any{target, target, "emsflow:Router"} }},
		{"explicit tcUrl and swfUrl", "tcUrl=" + explicitTC + " swfUrl=" + explicitSWF + " pageUrl=http://example.com/watch",
			func(string) [3]any { return [3]any{explicitTC, explicitSWF, "http://example.com/watch"} }},
		{"defaults", "",
			func(target string) [3]any { return [3]any{target, target, ""} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evA, evB := newSink(t), newSink(t)
			a := startSim(t, Config{Sinks: []Sink{{URL: evA.srv.URL}}, Seed: 1})
			b := startSim(t, Config{Sinks: []Sink{{URL: evB.srv.URL}}, Seed: 2})
			if _, err := a.Publish("cam"); err != nil {
				t.Fatal(err)
			}
			mustSucceed(t, rawCall(t, a.APIURL(), "pushStream",
				strings.TrimSpace("uri="+b.RTMPURL()+" localStreamName=cam keepAlive=1 "+tt.params)))
			want := tt.want(b.RTMPURL())

			waitFor(t, 5*time.Second, "push to arrive at b", func() bool { return evB.count("inStreamCreated") == 1 })
			created := evB.ofType("inStreamCreated")[0].Env.Payload
			if got := connectFields(created); got != want {
				t.Errorf("b's inStreamCreated tcUrl, swfUrl, pageUrl = %q, want %q", got, want)
			}
			if created["type"] != "INR" || created["pushSettings"] != nil || created["_emsflow"] != nil {
				t.Errorf("b's pushed stream: type %v, pushSettings %v, _emsflow %v; want INR and no push config",
					created["type"], created["pushSettings"], created["_emsflow"])
			}
			if got := connectFields(streamByName(t, b.APIURL(), "cam")); got != want {
				t.Errorf("b's listStreams tcUrl, swfUrl, pageUrl = %q, want %q", got, want)
			}
			info := mustSucceed(t, rawCall(t, b.APIURL(), "getStreamInfo", "localStreamName=cam")).object(t)
			if got := connectFields(info); got != want {
				t.Errorf("b's getStreamInfo tcUrl, swfUrl, pageUrl = %q, want %q", got, want)
			}

			waitFor(t, 5*time.Second, "outStreamCreated at a", func() bool { return evA.count("outStreamCreated") == 1 })
			out := evA.ofType("outStreamCreated")[0].Env.Payload
			if got := connectFields(out); out["type"] != "ONR" || got != want {
				t.Errorf("a's push output: type %v, tcUrl, swfUrl, pageUrl = %q, want ONR and %q", out["type"], got, want)
			}
		})
	}
}

// TestPushFarSideIsTheConnection: the far EMS sees a push coming from the pusher's side of the
// TCP connection (an ephemeral port, the pusher's ONR nearPort), not from its RTMP listener.
func TestPushFarSideIsTheConnection(t *testing.T) {
	evA, evB := newSink(t), newSink(t)
	a := startSim(t, Config{Sinks: []Sink{{URL: evA.srv.URL}}, Seed: 1})
	b := startSim(t, Config{Sinks: []Sink{{URL: evB.srv.URL}}, Seed: 2})
	if _, err := a.Publish("cam"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, rawCall(t, a.APIURL(), "pushStream", "uri="+b.RTMPURL()+" localStreamName=cam"))
	waitFor(t, 5*time.Second, "push on both sides", func() bool {
		return evB.count("inStreamCreated") == 1 && evA.count("outStreamCreated") == 1
	})
	in := evB.ofType("inStreamCreated")[0].Env.Payload
	out := evA.ofType("outStreamCreated")[0].Env.Payload
	_, aRTMP := splitHostPort(strings.TrimSuffix(strings.TrimPrefix(a.RTMPURL(), "rtmp://"), "/live"))
	_, bRTMP := splitHostPort(strings.TrimSuffix(strings.TrimPrefix(b.RTMPURL(), "rtmp://"), "/live"))
	if num(in["farPort"]) == uint64(aRTMP) || num(in["farPort"]) == 0 {
		t.Errorf("b sees the push from port %v, want an ephemeral port, not a's listener %d", in["farPort"], aRTMP)
	}
	if num(out["nearPort"]) != num(in["farPort"]) || num(out["farPort"]) != uint64(bRTMP) {
		t.Errorf("a's push output near %v far %v; want near = b's farPort %v, far = b's listener %d",
			out["nearPort"], out["farPort"], in["farPort"], bRTMP)
	}
}

// TestPullSendsRTMPConnect: a pull connects with its config's tcUrl, swfUrl and pageUrl; the
// puller's inbound stream reports them (tcUrl and swfUrl defaulting to the source URI, as in
// reference §1.6.1's real pulled stream), and so does the player output at the source.
func TestPullSendsRTMPConnect(t *testing.T) {
	evA, evB := newSink(t), newSink(t)
	a := startSim(t, Config{Sinks: []Sink{{URL: evA.srv.URL}}, Seed: 1})
	b := startSim(t, Config{Sinks: []Sink{{URL: evB.srv.URL}}, Seed: 2})
	if _, err := a.Publish("cam"); err != nil {
		t.Fatal(err)
	}
	uri := strings.TrimSuffix(a.RTMPURL(), "/live") + "/live/cam"
	mustSucceed(t, rawCall(t, b.APIURL(), "pullStream", "uri="+uri+" localStreamName=relay pageUrl=emsflow:LB _emsflow=LB"))
	waitFor(t, 5*time.Second, "pull on both sides", func() bool {
		return evB.count("inStreamCreated") == 1 && evA.count("outStreamCreated") == 1
	})
	want := [3]any{uri, uri, "emsflow:LB"}
	if got := connectFields(evB.ofType("inStreamCreated")[0].Env.Payload); got != want {
		t.Errorf("puller's inStreamCreated tcUrl, swfUrl, pageUrl = %q, want %q", got, want)
	}
	if got := connectFields(evA.ofType("outStreamCreated")[0].Env.Payload); got != want {
		t.Errorf("source's player output tcUrl, swfUrl, pageUrl = %q, want %q", got, want)
	}
}
