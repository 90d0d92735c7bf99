package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
)

func decodeEvent(t *testing.T, raw string) *event.Event {
	t.Helper()
	ev, err := event.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return ev
}

func renderText(t *testing.T, actionText string, ev *event.Event) (string, error) {
	t.Helper()
	a, err := parseAction(actionText)
	if err != nil {
		t.Fatalf("parseAction(%q): %v", actionText, err)
	}
	data, p := newData(ev)
	ps, err := a.render(data, p)
	if err != nil {
		return "", err
	}
	return a.cmd.name + " " + ps.Text(), nil
}

func TestRender(t *testing.T) {
	const inStream = `{"type":"inStreamCreated","payload":{"name":"cam1","uniqueId":18446744073709551615,"type":"INR",
	  "pullSettings":{"uri":"rtmp://src/live/cam1","configId":4},"outStreamsUniqueIds":null}}`
	const hlsOut = `{"type":"outStreamClosed","payload":{"name":"cam1","uniqueId":7,"type":"OFHLS","inStreamUniqueId":null,
	  "hlsSettings":{"groupName":"grp","configId":3,"targetFolder":"F:\\evo\\hls\\grp\\cam1"}}}`
	const pushOut = `{"type":"outStreamClosed","payload":{"name":"cam1","uniqueId":9,"type":"ONR","inStreamUniqueId":2,
	  "pushSettings":{"localStreamName":"cam1","uri":"rtmp://dst/live"}}}`
	const chunk = `{"type":"recordChunkClosed","payload":{"file":"F:\\media\\cam1_0001.MP4","_tenant":"acme"}}`

	tests := []struct {
		name, action, event string
		want                string
		wantErr             error // errEmptyValue, or nil for "any error" when wantAnyErr
		wantAnyErr          bool
	}{
		{"workflow 1", "createHLSStream localStreamNames={{.Name}} targetFolder=/var/hls groupName={{.Name}}", inStream,
			"createHLSStream localStreamNames=cam1 targetFolder=/var/hls groupName=cam1", nil, false},
		{"workflow 2", "shutdownStream id={{.Payload.inStreamUniqueId}} permanently=0", pushOut,
			"shutdownStream id=2 permanently=0", nil, false},
		{"64-bit id survives", "shutdownStream id={{.UniqueID}}", inStream,
			"shutdownStream id=18446744073709551615", nil, false},
		{"null renders empty and skips", "shutdownStream id={{.Payload.inStreamUniqueId}} permanently=0", hlsOut,
			"", errEmptyValue, false},
		{"absent field with payload renders empty", "pushStream uri={{payload \"pullSettings.uri\"}} localStreamName={{.Name}}", hlsOut,
			"", errEmptyValue, false},
		{"absent field by map access is a template error", "pushStream uri={{.Payload.pullSettings.uri}} localStreamName={{.Name}}", hlsOut,
			"", nil, true},
		{"nested payload and setting", "pushStream uri={{.Payload.pullSettings.uri}}/x localStreamName={{.Name}} _cfg={{setting \"configId\"}}", inStream,
			`pushStream uri=rtmp://src/live/cam1/x localStreamName=cam1 _cfg=4`, nil, false},
		{"index", `removeConfig id={{index .Payload "hlsSettings" "configId"}}`, hlsOut, "removeConfig id=3", nil, false},
		{"path functions on a Windows path", "record localStreamName={{stem .File | lower}} pathToFile={{dir .File}}/{{stem .File}}{{ext .File}} _t={{.Payload._tenant}}", chunk,
			`record localStreamName=cam1_0001 pathToFile=F:/media/cam1_0001.MP4 _t=acme`, nil, false},
		{"list elements stay separate", "createHLSStream localStreamNames={{.Name}},{{.Name}}_low bandwidths=1000,500 targetFolder=/h groupName=g", inStream,
			"createHLSStream localStreamNames=cam1,cam1_low bandwidths=1000,500 targetFolder=/h groupName=g", nil, false},
		{"escaped literal space and comma in config", `record localStreamName={{.Name}} pathToFile=/my\ media/a\,b`, inStream,
			`record localStreamName=cam1 pathToFile=/my\ media/a\,b`, nil, false},
		{"template with spaces and quotes", `setTimer value=10 _n={{replace "cam" "camera " .Name}}`, inStream,
			`setTimer value=10 _n=camera\ 1`, nil, false},
		{"default", `setTimer value={{.Payload.missing | default "30"}}`, hlsOut, "", nil, true},
		{"default on a null", `setTimer value={{.Payload.inStreamUniqueId | default "30"}}`, hlsOut, "setTimer value=30", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderText(t, tt.action, decodeEvent(t, tt.event))
			switch {
			case tt.wantErr != nil || tt.wantAnyErr:
				if err == nil {
					t.Fatalf("render = %q, want an error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if tt.wantAnyErr && errors.Is(err, errEmptyValue) {
					t.Fatalf("err = %v, want a template error", err)
				}
			case err != nil:
				t.Fatalf("render: %v", err)
			case got != tt.want:
				t.Errorf("render =\n %s\nwant\n %s", got, tt.want)
			}
		})
	}
}

// TestValuesCannotInject: whatever an event value holds, it stays one element of one parameter
// on the wire, as EMS parses it.
func TestValuesCannotInject(t *testing.T) {
	names := []string{
		"a b",
		"x targetFolder=/etc groupName=evil",
		"a,b,c",
		`back\slash`,
		`trailing\`,
		"eq=ual",
		"{{.Name}}",
	}
	a, err := parseAction("createHLSStream localStreamNames={{.Name}} targetFolder=/var/hls groupName=g_{{.Name}}")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			ev := &event.Event{Type: event.InStreamCreated, Payload: event.Payload{"name": name}}
			data, p := newData(ev)
			ps, err := a.render(data, p)
			if err != nil {
				t.Fatal(err)
			}
			// Parse the wire text as EMS does and compare.
			back, err := emsclient.ParseText(ps.Text())
			if err != nil {
				t.Fatalf("ParseText(%q): %v", ps.Text(), err)
			}
			if len(back) != 3 {
				t.Fatalf("EMS would read %d parameters from %q, want 3", len(back), ps.Text())
			}
			if n := back[0]; n.Key != "localStreamNames" || len(n.Values) != 1 || n.Values[0] != name {
				t.Errorf("localStreamNames = %q, want the single element %q", n.Values, name)
			}
			if v, _ := back.Get("targetFolder"); v != "/var/hls" {
				t.Errorf("targetFolder = %q", v)
			}
			if v, _ := back.Get("groupName"); v != "g_"+name {
				t.Errorf("groupName = %q, want %q", v, "g_"+name)
			}
		})
	}
}

func TestSplitTokens(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"cmd a=1  b=2", []string{"cmd", "a=1", "b=2"}},
		{`cmd a={{printf "%s %s" .Name "}}"}} b=x\ y`, []string{"cmd", `a={{printf "%s %s" .Name "}}"}}`, `b=x\ y`}},
		{"cmd a={{`raw } }}`}}", []string{"cmd", "a={{`raw } }}`}}"}},
		{`cmd a=\{{x`, []string{"cmd", `a=\{{x`}},
	}
	for _, tt := range tests {
		got, err := splitTokens(tt.in)
		if err != nil {
			t.Errorf("splitTokens(%q): %v", tt.in, err)
			continue
		}
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("splitTokens(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
