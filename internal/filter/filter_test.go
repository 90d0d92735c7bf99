package filter

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/event"
)

// ev builds an event from an EMS JSON envelope and the sending EMS's name.
func ev(t *testing.T, ems, raw string) *event.Event {
	t.Helper()
	e, err := event.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	e.EMS = ems
	return e
}

func filterOf(t *testing.T, js string) Filter {
	t.Helper()
	var f Filter
	if err := json.Unmarshal([]byte(js), &f); err != nil {
		t.Fatalf("unmarshal filter %s: %v", js, err)
	}
	return f
}

func TestFilterMatch(t *testing.T) {
	created := func(name string) string {
		return `{"id":1,"type":"inStreamCreated","payload":{"name":"` + name + `","type":"INR","uniqueId":7,"customData":null}}`
	}
	closed := func(name string) string {
		return `{"id":2,"type":"inStreamClosed","payload":{"name":"` + name + `","type":"INR","uniqueId":7}}`
	}
	const (
		hlsChunk  = `{"id":3,"type":"hlsChunkClosed","payload":{"file":"/var/evo-webroot/hls/cam1/cam1_720p/segment_12.ts","segmentDuration":4000.0000}}`
		outHLS    = `{"id":4,"type":"outStreamCreated","payload":{"name":"cam1","type":"OFHLS","hlsSettings":{"groupName":"live","configId":12,"_emsflow":"auto"},"customData":"tenantA"}}`
		outHLSvod = `{"id":5,"type":"outStreamCreated","payload":{"name":"cam2","type":"OFHLS","hlsSettings":{"groupName":"vod","configId":13}}}`
		timer     = `{"id":6,"type":"timerTriggered","payload":{"timerId":3,"triggerCount":1,"value":"60"}}`
	)
	tests := []struct {
		name   string
		filter string // JSON
		ems    string
		event  string
		want   bool
	}{
		// Flussonic example 1: "only event=stream_opened,stream_closed" passes only those events.
		{"fl1 created passes", `{"only":["type=inStreamCreated,inStreamClosed"]}`, "", created("cam1"), true},
		{"fl1 closed passes", `{"only":["type=inStreamCreated,inStreamClosed"]}`, "", closed("cam1"), true},
		{"fl1 chunk dropped", `{"only":["type=inStreamCreated,inStreamClosed"]}`, "", hlsChunk, false},
		// Flussonic example 2: "only media=cam1 event=source_lost" and "only media=cam2": every key
		// of a set must match, and any one set suffices.
		{"fl2 cam1 closed passes first set", `{"only":["name=cam1 type=inStreamClosed","name=cam2"]}`, "", closed("cam1"), true},
		{"fl2 cam1 created fails first set", `{"only":["name=cam1 type=inStreamClosed","name=cam2"]}`, "", created("cam1"), false},
		{"fl2 cam2 any type passes second set", `{"only":["name=cam1 type=inStreamClosed","name=cam2"]}`, "", created("cam2"), true},
		{"fl2 cam3 dropped", `{"only":["name=cam1 type=inStreamClosed","name=cam2"]}`, "", closed("cam3"), false},
		// Flussonic example 3: "except event=client_play" drops those even when an only matches.
		{"fl3 except wins over only", `{"only":["name=cam1"],"except":["type=outStreamCreated"]}`, "", outHLS, false},
		{"fl3 only still passes others", `{"only":["name=cam1"],"except":["type=outStreamCreated"]}`, "", closed("cam1"), true},
		{"fl3 except alone passes the rest", `{"except":["type=hlsChunkClosed"]}`, "", created("x"), true},
		{"fl3 except alone drops", `{"except":["type=hlsChunkClosed"]}`, "", hlsChunk, false},
		// Flussonic example 4: "only media=cam1,cam2" is a list of allowed values.
		{"fl4 cam1", `{"only":["name=cam1,cam2"]}`, "", closed("cam1"), true},
		{"fl4 cam2", `{"only":["name=cam1,cam2"]}`, "", created("cam2"), true},
		{"fl4 cam3", `{"only":["name=cam1,cam2"]}`, "", created("cam3"), false},
		// Globs.
		{"glob prefix", `{"only":["type=hls*"]}`, "", hlsChunk, true},
		{"glob prefix miss", `{"only":["type=hls*"]}`, "", created("a"), false},
		{"glob star crosses slashes", `{"only":["file=/var/evo-webroot/hls/*.ts"]}`, "", hlsChunk, true},
		{"glob question mark", `{"only":["name=cam?"]}`, "", created("cam7"), true},
		{"glob question mark one char only", `{"only":["name=cam?"]}`, "", created("cam17"), false},
		{"glob escaped star is literal", `{"only":["name=cam\\*"]}`, "", created("cam1"), false},
		{"glob escaped star matches star", `{"only":["name=cam\\*"]}`, "", created("cam*"), true},
		{"star requires presence", `{"only":["name=*"]}`, "", timer, false},
		{"star on present field", `{"only":["name=*"]}`, "", created("x"), true},
		{"null field is absent", `{"only":["customData=*"]}`, "", created("x"), false},
		// Nested and numeric keys.
		{"nested key", `{"only":["hlsSettings.groupName=live"]}`, "", outHLS, true},
		{"nested key other value", `{"only":["hlsSettings.groupName=live"]}`, "", outHLSvod, false},
		{"nested key absent", `{"only":["hlsSettings.groupName=live"]}`, "", closed("cam1"), false},
		{"nested user variable", `{"only":["hlsSettings._emsflow=auto"]}`, "", outHLS, true},
		{"number field", `{"only":["hlsSettings.configId=12,14"]}`, "", outHLS, true},
		{"custom data", `{"only":["customData=tenant*"]}`, "", outHLS, true},
		{"object is not a value", `{"only":["hlsSettings=*"]}`, "", outHLS, false},
		// The event type and the payload's own type tag.
		{"payload type tag", `{"only":["payload.type=OFHLS"]}`, "", outHLS, true},
		{"type is the event name", `{"only":["type=OFHLS"]}`, "", outHLS, false},
		// The sending EMS.
		{"ems matches", `{"only":["ems=edge-*"]}`, "edge-2", created("a"), true},
		{"ems differs", `{"only":["ems=edge-*"]}`, "origin", created("a"), false},
		{"ems absent", `{"only":["ems=*"]}`, "", created("a"), false},
		// Except before only, and several except sets.
		{"second except set", `{"except":["type=hlsChunkClosed","name=secret*"]}`, "", created("secret1"), false},
		{"except needs every key", `{"except":["type=inStreamClosed name=cam1"]}`, "", created("cam1"), true},
		// Object forms.
		{"object comma string", `{"only":[{"type":"inStreamClosed","name":"cam1,cam2"}]}`, "", closed("cam2"), true},
		{"object array keeps commas", `{"only":[{"name":["a,b"]}]}`, "", created("a,b"), true},
		{"object array no split", `{"only":[{"name":["a,b"]}]}`, "", created("a"), false},
		{"single set string", `{"only":"type=inStreamClosed"}`, "", closed("x"), true},
		{"zero filter passes", `{}`, "", timer, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filterOf(t, tt.filter)
			if got := f.Match(ev(t, tt.ems, tt.event)); got != tt.want {
				t.Errorf("filter %s on %s: got %v, want %v", f, tt.event, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, filter, want string
	}{
		{"empty key", `{"only":["=x"]}`, "empty key"},
		{"no equals", `{"only":["type"]}`, "is not key=value"},
		{"empty value", `{"only":["type="]}`, "empty value"},
		{"empty list item", `{"only":["name=a,,b"]}`, "empty value"},
		{"repeated key", `{"only":["name=a name=b"]}`, "repeated"},
		{"bad glob", `{"only":["name=a\\"]}`, "lone backslash"},
		{"bad path", `{"only":["hlsSettings..groupName=x"]}`, "empty path segment"},
		{"bare payload", `{"only":["payload=x"]}`, "name a payload field"},
		{"empty object", `{"only":[{}]}`, "empty filter set"},
		{"object bad value", `{"only":[{"name":{"a":1}}]}`, "must be a string"},
		{"object empty array", `{"only":[{"name":[]}]}`, "no value"},
		{"not a set", `{"except":[42]}`, "must be a string"},
		{"names the set", `{"except":["type=a","x"]}`, "set 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Filter
			err := json.Unmarshal([]byte(tt.filter), &f)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("unmarshal %s: got error %v, want one containing %q", tt.filter, err, tt.want)
			}
		})
	}
}

func TestTypes(t *testing.T) {
	tests := []struct {
		name, filter string
		want         []string
		wantOK       bool
	}{
		{"no only", `{"except":["type=a"]}`, nil, false},
		{"exact", `{"only":["type=inStreamClosed name=x","type=inStreamCreated,inStreamClosed"]}`, []string{"inStreamClosed", "inStreamCreated"}, true},
		{"glob", `{"only":["type=hls*"]}`, nil, false},
		{"one set without type", `{"only":["type=a","name=x"]}`, nil, false},
		{"escaped literal", `{"only":["type=a\\*"]}`, []string{"a*"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := filterOf(t, tt.filter).Types()
			if ok != tt.wantOK || !slices.Equal(got, tt.want) {
				t.Errorf("Types: got %v, %v, want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestSetStringRoundTrip(t *testing.T) {
	const in = "type=inStreamCreated,inStreamClosed name=cam*"
	s := MustParseSet(in)
	if got := s.String(); got != in {
		t.Errorf("String: got %q, want %q", got, in)
	}
	b, err := json.Marshal(Filter{Only: Sets{s}})
	if err != nil {
		t.Fatal(err)
	}
	var back Filter
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	if got := back.String(); got != "only "+in {
		t.Errorf("round trip: got %q, want %q", got, "only "+in)
	}
}
