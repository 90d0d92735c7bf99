package emssim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/emsclient"
)

// The example URLs of reference §3.1/§3.3, with the command and parameters they document.
var referenceURLs = []struct {
	name, path, command string
	params              map[string]string
}{
	{"pullstream docs", "/pullstream?params=dXJpPXJ0c3A6Ly9sb2NhbGhvc3Q6NTU0NC92b2QvbXA0LmJ1bm55Lm1wNCBsb2NhbHN0cmVhbW5hbWU9YnVubnkp", "pullstream",
		map[string]string{"uri": "rtsp://localhost:5544/vod/mp4.bunny.mp4", "localstreamname": "bunny)"}},
	{"pullStream", "/pullStream?params=dXJpPXJ0bXA6Ly8xOTIuMTY4LjEuNS9saXZlL2NhbTEgbG9jYWxTdHJlYW1OYW1lPWNhbTEga2VlcEFsaXZlPTEgZm9yY2VUY3A9MA==", "pullStream",
		map[string]string{"uri": "rtmp://192.168.1.5/live/cam1", "localStreamName": "cam1", "keepAlive": "1", "forceTcp": "0"}},
	{"pushStream", "/pushStream?params=dXJpPXJ0bXA6Ly8xMC4wLjAuNy9saXZlIGxvY2FsU3RyZWFtTmFtZT1jYW0xIHRhcmdldFN0cmVhbU5hbWU9Y2FtMSBrZWVwQWxpdmU9MQ==", "pushStream",
		map[string]string{"uri": "rtmp://10.0.0.7/live", "localStreamName": "cam1", "targetStreamName": "cam1", "keepAlive": "1"}},
	{"record", "/record?params=bG9jYWxTdHJlYW1OYW1lPWNhbTEgcGF0aFRvRmlsZT0vdmFyL2V2b3N0cmVhbW1zL21lZGlhL2NhbTEgdHlwZT1tcDQgb3ZlcndyaXRlPTAga2VlcEFsaXZlPTEgY2h1bmtMZW5ndGg9NjAwIHdpblF0Q29tcGF0PTEgX2pvYj00Mg==", "record",
		map[string]string{"localStreamName": "cam1", "pathToFile": "/var/evostreamms/media/cam1", "type": "mp4", "overwrite": "0", "keepAlive": "1", "chunkLength": "600", "winQtCompat": "1", "_job": "42"}},
	{"createHLSStream", "/createHLSStream?params=bG9jYWxTdHJlYW1OYW1lcz1jYW0xIHRhcmdldEZvbGRlcj0vdmFyL2V2by13ZWJyb290IGdyb3VwTmFtZT1jYW0xIHBsYXlsaXN0VHlwZT1yb2xsaW5nIHBsYXlsaXN0TGVuZ3RoPTEwIGNodW5rTGVuZ3RoPTYga2VlcEFsaXZlPTE=", "createHLSStream",
		map[string]string{"localStreamNames": "cam1", "targetFolder": "/var/evo-webroot", "groupName": "cam1", "playlistType": "rolling", "playlistLength": "10", "chunkLength": "6", "keepAlive": "1"}},
	{"createHDSStream", "/createHDSStream?params=bG9jYWxTdHJlYW1OYW1lcz1jYW0xIHRhcmdldEZvbGRlcj0vdmFyL2V2by13ZWJyb290IGdyb3VwTmFtZT1oZHMgcGxheWxpc3RUeXBlPXJvbGxpbmc=", "createHDSStream",
		map[string]string{"localStreamNames": "cam1", "targetFolder": "/var/evo-webroot", "groupName": "hds", "playlistType": "rolling"}},
	{"createDASHStream", "/createDASHStream?params=bG9jYWxTdHJlYW1OYW1lcz1jYW0xIHRhcmdldEZvbGRlcj0vdmFyL2V2by13ZWJyb290IGdyb3VwTmFtZT1kYXNo", "createDASHStream",
		map[string]string{"localStreamNames": "cam1", "targetFolder": "/var/evo-webroot", "groupName": "dash"}},
	{"createMSSStream", "/createMSSStream?params=bG9jYWxTdHJlYW1OYW1lcz1jYW0xIHRhcmdldEZvbGRlcj0vdmFyL2V2by13ZWJyb290IGdyb3VwTmFtZT1tc3M=", "createMSSStream",
		map[string]string{"localStreamNames": "cam1", "targetFolder": "/var/evo-webroot", "groupName": "mss"}},
	{"shutdownStream", "/shutdownStream?params=aWQ9NTUgcGVybWFuZW50bHk9MA==", "shutdownStream",
		map[string]string{"id": "55", "permanently": "0"}},
	{"getStreamInfo", "/getStreamInfo?params=bG9jYWxTdHJlYW1OYW1lPWNhbTE=", "getStreamInfo",
		map[string]string{"localStreamName": "cam1"}},
	{"removeConfig", "/removeConfig?params=aWQ9NyByZW1vdmVIbHNIZHNGaWxlcz0x", "removeConfig",
		map[string]string{"id": "7", "removeHlsHdsFiles": "1"}},
	{"setTimer", "/setTimer?params=dmFsdWU9MzYwMCBfdW5pcXVlSWQ9MTI=", "setTimer",
		map[string]string{"value": "3600", "_uniqueId": "12"}},
}

func TestReferenceURLsParse(t *testing.T) {
	for _, tc := range referenceURLs {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:7777"+tc.path, nil)
			cmd, ps, err := emsclient.ParseRequest(r)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if cmd != tc.command {
				t.Errorf("command = %q, want %q", cmd, tc.command)
			}
			if len(ps) != len(tc.params) {
				t.Errorf("got %d params %v, want %d", len(ps), ps, len(tc.params))
			}
			for k, want := range tc.params {
				if got, ok := ps.Get(k); !ok || got != want {
					t.Errorf("param %s = %q (present %v), want %q", k, got, ok, want)
				}
			}
		})
	}
}

// TestReferenceURLsAnswerShapes sends the reference's URLs, raw, to a simulator without
// streams: every answer is EMS's {data, description, status} object.
func TestReferenceURLsAnswerShapes(t *testing.T) {
	sim := startSim(t, Config{MediaDir: t.TempDir()})
	wantStatus := map[string]string{
		"pullstream docs": "SUCCESS", "pullStream": "SUCCESS", "pushStream": "FAIL", "record": "SUCCESS",
		"createHLSStream": "SUCCESS", "createHDSStream": "SUCCESS", "createDASHStream": "SUCCESS",
		"createMSSStream": "FAIL", "shutdownStream": "FAIL", "getStreamInfo": "FAIL", "removeConfig": "SUCCESS",
		"setTimer": "SUCCESS",
	}
	for _, tc := range referenceURLs {
		t.Run(tc.name, func(t *testing.T) {
			r := getURL(t, sim.APIURL()+tc.path)
			var shape map[string]json.RawMessage
			if err := json.Unmarshal(r.Raw, &shape); err != nil {
				t.Fatalf("answer is not a JSON object: %s", r.Raw)
			}
			for _, k := range []string{"data", "description", "status"} {
				if _, ok := shape[k]; !ok {
					t.Errorf("answer lacks %q: %s", k, r.Raw)
				}
			}
			if r.Status != wantStatus[tc.name] {
				t.Errorf("status = %s (%s), want %s", r.Status, r.Description, wantStatus[tc.name])
			}
			if r.Status == "FAIL" && string(r.Data) != "null" {
				t.Errorf("FAIL data = %s, want null", r.Data)
			}
		})
	}
}

func TestParameterChecks(t *testing.T) {
	sim := startSim(t, Config{MediaDir: t.TempDir()})
	tests := []struct {
		name, cmd, text string
		wantStatus      string
		wantDesc        string
	}{
		{"unknown command", "fooBar", "", "FAIL", "command foobar not known. Type help for list of commands"},
		{"missing uri", "pullStream", "localStreamName=x", "FAIL", "Syntax error. Parameter uri is invalid"},
		{"no params", "pullStream", "", "FAIL", "Syntax error. No parameters provided"},
		{"missing pathToFile", "record", "localStreamName=x", "FAIL", "Syntax error. Parameter pathToFile is invalid"},
		{"missing localStreamNames", "createHLSStream", "targetFolder=/tmp", "FAIL", "Syntax error. Parameter localStreamNames is invalid"},
		{"number not decimal", "createHLSStream", "localStreamNames=a targetFolder=x chunkLength=01", "FAIL", "Syntax error. Parameter chunkLength is invalid"},
		{"number out of range", "createHLSStream", "localStreamNames=a targetFolder=x chunkLength=0", "FAIL", "Syntax error. Parameter chunkLength is invalid. Range: 1 - 3600"},
		{"bandwidths count", "createHLSStream", "localStreamNames=a,b targetFolder=x bandwidths=1", "FAIL", "Syntax error. Parameters localStreamNames and bandwidths have different number of elements"},
		{"shutdown without id", "shutdownStream", "permanently=1", "FAIL", "id or localStreamName parameters needs to be supplied"},
		{"case-insensitive names", "PULLSTREAM", "URI=rtmp://127.0.0.1:9/live/a LOCALSTREAMNAME=lower", "SUCCESS", "Stream rtmp://127.0.0.1:9/live/a enqueued for pulling"},
		{"name taken", "pullstream", "uri=rtmp://127.0.0.1:9/live/a localStreamName=lower", "FAIL", "Stream name lower already taken"},
		{"timer range", "setTimer", "value=0", "FAIL", "Syntax error. Parameter value is invalid. Range: 1 - 86399"},
		{"mss refused", "createMSSStream", "localStreamNames=a targetFolder=x", "FAIL", "MSS is not supported by this server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rawCall(t, sim.APIURL(), tc.cmd, tc.text)
			if r.Status != tc.wantStatus || r.Description != tc.wantDesc {
				t.Errorf("got %s %q, want %s %q", r.Status, r.Description, tc.wantStatus, tc.wantDesc)
			}
		})
	}

	t.Run("booleans read as atoi", func(t *testing.T) {
		r := mustSucceed(t, rawCall(t, sim.APIURL(), "pullStream", "uri=rtmp://127.0.0.1:9/live/b localStreamName=b keepAlive=true forceTcp=1 _owner=me"))
		d := r.object(t)
		if d["keepAlive"] != false {
			t.Errorf("keepAlive=true stored as %v, want false (EMS reads atoi)", d["keepAlive"])
		}
		if d["forceTcp"] != true {
			t.Errorf("forceTcp=1 stored as %v, want true", d["forceTcp"])
		}
		if d["_owner"] != "me" {
			t.Errorf("user variable _owner = %v, want me", d["_owner"])
		}
	})

	t.Run("commandId echoed as responseId", func(t *testing.T) {
		r := rawCall(t, sim.APIURL(), "listStreamsIds", "commandId=abc")
		if r.ResponseID != "abc" || r.Status != "SUCCESS" || string(r.Data) != "null" {
			t.Errorf("got %s", r.Raw)
		}
	})

	t.Run("answer form", func(t *testing.T) {
		resp, err := http.Get(sim.APIURL() + "/version")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
			t.Errorf("Content-Type = %q, want text/plain (RMS)", ct)
		}
		r := getURL(t, sim.APIURL()+"/version")
		if !strings.HasPrefix(string(r.Raw), `{"data":{"banner":`) || r.Description != "Version" {
			t.Errorf("version answer %s", r.Raw)
		}
	})
}

func TestEnvelopeAndSinks(t *testing.T) {
	all, filtered := newSink(t), newSink(t)
	sim := startSim(t, Config{ProcessID: 4242, Sinks: []Sink{
		{URL: all.srv.URL + "/evowebservices", CustomData: map[string]any{"who": "all"}},
		{URL: filtered.srv.URL + "/streams/update-list", EnabledEvents: []string{"inStreamClosed"}},
	}})
	if _, err := sim.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	sim.Unpublish("cam1")
	waitFor(t, 5*time.Second, "inStreamClosed on both sinks", func() bool {
		return all.count("inStreamClosed") == 1 && filtered.count("inStreamClosed") == 1
	})
	got := all.all()
	types := []string{}
	for _, r := range got {
		types = append(types, r.Env.Type)
	}
	if want := []string{"serverStarted", "inStreamCreated", "inStreamCodecsUpdated", "inStreamClosed"}; !slices.Equal(types, want) {
		t.Fatalf("types = %v, want %v", types, want)
	}
	for i, r := range got {
		if r.Env.ID != uint64(i+1) {
			t.Errorf("event %d id = %d, want %d", i, r.Env.ID, i+1)
		}
		if r.Env.ProcessID != 4242 || num(r.Env.Payload["PID"]) != 4242 {
			t.Errorf("processId %d / PID %v, want 4242", r.Env.ProcessID, r.Env.Payload["PID"])
		}
		if ua := r.Header.Get("User-Agent"); ua != "EvoStream Media Server (www.evostream.com)" {
			t.Errorf("User-Agent = %q", ua)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if cd, _ := r.Env.Payload["customData"].(map[string]any); cd["who"] != "all" {
			t.Errorf("customData = %v, want the sink's", r.Env.Payload["customData"])
		}
		if r.Env.Timestamp == 0 {
			t.Error("timestamp missing")
		}
		assertSortedKeys(t, r.Body)
	}
	// The filtered sink got only its event, with the same id and customData null.
	f := filtered.all()
	if len(f) != 1 || f[0].Env.ID != 4 || f[0].Env.Payload["customData"] != nil {
		t.Errorf("filtered sink got %d events, first %s", len(f), f[0].Body)
	}
	if !bytes.Contains(f[0].Body, []byte(`"customData":null`)) {
		t.Errorf("customData not null: %s", f[0].Body)
	}
	// One event per POST, each on a new connection.
	all.mu.Lock()
	conns := all.conns
	all.mu.Unlock()
	if conns != len(got) {
		t.Errorf("%d connections for %d events, want one each", conns, len(got))
	}
	created := got[1].Env.Payload
	for k, want := range map[string]any{"type": "INR", "name": "cam1", "ip": "127.0.0.1", "appName": "evostreamms", "processType": "origin"} {
		if created[k] != want {
			t.Errorf("inStreamCreated.%s = %v, want %v", k, created[k], want)
		}
	}
	if _, has := created["pullSettings"]; has {
		t.Error("a published stream has pullSettings")
	}
	if num(created["typeNumeric"]) != 5282249572905648128 && !bytes.Contains(got[1].Body, []byte(`"typeNumeric":5282249572905648128`)) {
		t.Errorf("typeNumeric of INR wrong: %s", got[1].Body)
	}
	if !bytes.Contains(got[1].Body, []byte(`"upTime":`)) || !bytes.Contains(got[1].Body, []byte(`.`)) {
		t.Errorf("doubles not printed with decimals: %s", got[1].Body)
	}
}

// assertSortedKeys checks that every JSON object in body lists its keys in ascending order,
// as EMS's sorted map serializes.
func assertSortedKeys(t *testing.T, body []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		obj  bool
		last string
		key  bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, frame{obj: true, key: true})
				continue
			case '[':
				stack = append(stack, frame{})
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		} else if len(stack) > 0 && stack[len(stack)-1].obj && stack[len(stack)-1].key {
			k := tok.(string)
			top := &stack[len(stack)-1]
			if top.last != "" && k < top.last {
				t.Errorf("key %q after %q: not sorted in %s", k, top.last, body)
			}
			top.last, top.key = k, false
			continue
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].key = true
		}
	}
}
