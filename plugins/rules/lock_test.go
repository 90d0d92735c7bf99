package rules

import (
	"fmt"
	"testing"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
)

func TestLockKey(t *testing.T) {
	params := func(t *testing.T, text string) emsclient.Params {
		t.Helper()
		ps, err := emsclient.ParseText(text)
		if err != nil {
			t.Fatalf("parse %q: %v", text, err)
		}
		return ps
	}
	cmd := func(name string) *command {
		c, ok := lookupCommand(name)
		if !ok {
			t.Fatalf("no command %s", name)
		}
		return c
	}
	tests := []struct {
		name       string
		cmdA, psA  string
		cmdB, psB  string
		targetB    string // default "default"
		wantShared bool
	}{
		{"same group, other options", "createHLSStream", "localStreamNames=a groupName=a targetFolder=/x",
			"createHLSStream", "localStreamNames=a,a_low groupName=a targetFolder=/y", "", true},
		{"groups of two streams", "createHLSStream", "localStreamNames=a groupName=a targetFolder=/x",
			"createHLSStream", "localStreamNames=b groupName=b targetFolder=/x", "", false},
		{"same group, other kind", "createHLSStream", "localStreamNames=a groupName=a targetFolder=/x",
			"createDASHStream", "localStreamNames=a groupName=a targetFolder=/x", "", false},
		{"same group, other EMS", "createHLSStream", "localStreamNames=a groupName=a targetFolder=/x",
			"createHLSStream", "localStreamNames=a groupName=a targetFolder=/x", "edge", false},
		{"pull by uri, name optional", "pullStream", "uri=rtmp://o/live/a",
			"pullStream", "uri=rtmp://o/live/a localStreamName=a", "", true},
		{"pulls of two uris", "pullStream", "uri=rtmp://o/live/a", "pullStream", "uri=rtmp://o/live/b", "", false},
		{"push, target name optional", "pushStream", "uri=rtmp://d/live localStreamName=a",
			"pushStream", "uri=rtmp://d/live localStreamName=a targetStreamName=x", "", true},
		{"pushes of two streams", "pushStream", "uri=rtmp://d/live localStreamName=a",
			"pushStream", "uri=rtmp://d/live localStreamName=b", "", false},
		{"record of one stream and path", "record", "localStreamName=a pathToFile=/r/a",
			"record", "localStreamName=a pathToFile=/r/a type=ts", "", true},
		{"records to two paths", "record", "localStreamName=a pathToFile=/r/a", "record", "localStreamName=a pathToFile=/r/b", "", false},
		{"timers of one value", "setTimer", "value=60 _x=1", "setTimer", "value=60 _x=2", "", true},
		{"shutdown by id", "shutdownStream", "id=4", "shutdownStream", "id=4 permanently=0", "", true},
		{"shutdown by id and by name", "shutdownStream", "id=4", "shutdownStream", "localStreamName=4", "", false},
		{"remove config and create group", "removeConfig", "groupName=a",
			"createHLSStream", "localStreamNames=a groupName=a targetFolder=/x", "", false},
		{"values are not concatenated", "record", "localStreamName=a pathToFile=b\\ c",
			"record", "localStreamName=a\\ b pathToFile=c", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := tc.targetB
			if tb == "" {
				tb = "default"
			}
			a := lockKey("default", cmd(tc.cmdA), params(t, tc.psA))
			b := lockKey(tb, cmd(tc.cmdB), params(t, tc.psB))
			if got := a == b; got != tc.wantShared {
				t.Errorf("shared = %v, want %v (keys %q, %q)", got, tc.wantShared, a, b)
			}
		})
	}
}

// TestConcurrentEventsOfStreamsCreateSharedThingOnce: the lock is no longer one per EMS, but
// events of different streams whose actions make the same thing still create it once.
func TestConcurrentEventsOfStreamsCreateSharedThingOnce(t *testing.T) {
	f := newFixture(t, `{"rules":[{"name":"origin","events":["inStreamCreated"],
	  "action":"pullStream uri=rtmp://origin/live/clock localStreamName=clock"}]}`)
	var evs []*event.Event
	for i := range 8 {
		evs = append(evs, inStreamCreated(t, fmt.Sprintf("cam%d", i), i+1))
	}
	f.handleAtOnce(t, evs...)
	if n := len(f.def.CallsTo("pullStream")); n != 1 {
		t.Fatalf("pullStream calls = %d, want 1", n)
	}
}
