package emsclient_test

import (
	"encoding/base64"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/emsclient"
)

func TestParseText(t *testing.T) {
	tests := []struct {
		name string
		text string
		want emsclient.Params
	}{
		{"plain", "uri=rtmp://h/live localStreamName=cam1", emsclient.Params{
			{Key: "uri", Values: []string{"rtmp://h/live"}},
			{Key: "localStreamName", Values: []string{"cam1"}},
		}},
		{"list", "localStreamNames=a,b,c bandwidths=500,1000,1500", emsclient.Params{
			{Key: "localStreamNames", Values: []string{"a", "b", "c"}},
			{Key: "bandwidths", Values: []string{"500", "1000", "1500"}},
		}},
		{"escaped space", `pathToFile=/media/my\ cam`, emsclient.Params{
			{Key: "pathToFile", Values: []string{"/media/my cam"}},
		}},
		{"escaped equals comma backslash", `_note=a\=b\,c\\d`, emsclient.Params{
			{Key: "_note", Values: []string{`a=b,c\d`}},
		}},
		{"extra spaces and trailing space", "  id=55   permanently=0 ", emsclient.Params{
			{Key: "id", Values: []string{"55"}},
			{Key: "permanently", Values: []string{"0"}},
		}},
		{"empty value", "tcUrl=", emsclient.Params{{Key: "tcUrl", Values: []string{""}}}},
		{"empty text", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := emsclient.ParseText(tt.text)
			if err != nil {
				t.Fatalf("ParseText(%q): %v", tt.text, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseText(%q) = %#v, want %#v", tt.text, got, tt.want)
			}
		})
	}
}

func TestParseTextErrors(t *testing.T) {
	for _, text := range []string{"novalue", "a=1 novalue", "=x"} {
		if got, err := emsclient.ParseText(text); err == nil {
			t.Errorf("ParseText(%q) = %v, want an error", text, got)
		}
	}
}

func TestParamsRoundTrip(t *testing.T) {
	var ps emsclient.Params
	ps.Add("uri", "rtmp://user:pa ss@host/live?x=1&y=2")
	ps.Add("pathToFile", `C:\media\my cam`)
	ps.AddList("localStreamNames", "a b", "c,d", `e\`, "f=g")
	ps.AddBool("keepAlive", true)
	ps.AddBool("forceTcp", false)
	ps.AddInt("rangeStart", -2)
	ps.AddUint("id", 1<<63+5)
	ps.Add("_tag", "emsflow,router=1")
	ps.Add("empty", "")

	wantText := `uri=rtmp://user:pa\ ss@host/live?x\=1&y\=2 pathToFile=C:\\media\\my\ cam ` +
		`localStreamNames=a\ b,c\,d,e\\,f\=g keepAlive=1 forceTcp=0 rangeStart=-2 id=9223372036854775813 ` +
		`_tag=emsflow\,router\=1 empty=`
	if got := ps.Text(); got != wantText {
		t.Errorf("Text() =\n%s\nwant\n%s", got, wantText)
	}
	back, err := emsclient.ParseText(ps.Text())
	if err != nil {
		t.Fatalf("ParseText: %v", err)
	}
	if !reflect.DeepEqual(back, ps) {
		t.Errorf("ParseText(Text()) = %#v, want %#v", back, ps)
	}
	dec, err := emsclient.DecodeParams(ps.Encode())
	if err != nil {
		t.Fatalf("DecodeParams: %v", err)
	}
	if !reflect.DeepEqual(dec, ps) {
		t.Errorf("DecodeParams(Encode()) = %#v, want %#v", dec, ps)
	}
	if got, _ := dec.Get("LOCALSTREAMNAMES"); got != "a b,c,d,e\\,f=g" {
		t.Errorf("Get is not case-insensitive or joins wrongly: %q", got)
	}
	if got := dec.UserVars(); !reflect.DeepEqual(got, map[string]string{"_tag": "emsflow,router=1"}) {
		t.Errorf("UserVars() = %v", got)
	}
}

// The docs' example (reference §3.1) decodes with a stray ")" that belongs to the value.
func TestDecodeParamsDocsExample(t *testing.T) {
	ps, err := emsclient.DecodeParams("dXJpPXJ0c3A6Ly9sb2NhbGhvc3Q6NTU0NC92b2QvbXA0LmJ1bm55Lm1wNCBsb2NhbHN0cmVhbW5hbWU9YnVubnkp")
	if err != nil {
		t.Fatalf("DecodeParams: %v", err)
	}
	want := emsclient.Params{
		{Key: "uri", Values: []string{"rtsp://localhost:5544/vod/mp4.bunny.mp4"}},
		{Key: "localstreamname", Values: []string{"bunny)"}},
	}
	if !reflect.DeepEqual(ps, want) {
		t.Errorf("got %#v, want %#v", ps, want)
	}
	if name, _ := ps.Get("localStreamName"); name != "bunny)" {
		t.Errorf("Get(localStreamName) = %q, want %q", name, "bunny)")
	}
}

func TestDecodeParamsPadding(t *testing.T) {
	padded := base64.StdEncoding.EncodeToString([]byte("id=7 removeHlsHdsFiles=1 x=a"))
	if !strings.HasSuffix(padded, "=") {
		t.Fatalf("test text must need padding, got %s", padded)
	}
	for _, in := range []string{padded, strings.TrimRight(padded, "=")} {
		ps, err := emsclient.DecodeParams(in)
		if err != nil {
			t.Fatalf("DecodeParams(%q): %v", in, err)
		}
		if v, _ := ps.Get("x"); v != "a" || len(ps) != 3 {
			t.Errorf("DecodeParams(%q) = %v", in, ps)
		}
	}
	if _, err := emsclient.DecodeParams("not base64!"); err == nil {
		t.Error("DecodeParams(not base64!) gave no error")
	}
}

func TestParseRequest(t *testing.T) {
	// A value whose base64 holds '+' and '/': a server that URL-unescaped the query would read
	// '+' as a space and fail to decode.
	var ps emsclient.Params
	ps.Add("uri", "rtmp://h/live>?>?")
	ps.Add("localStreamName", "cam~1")
	enc := ps.Encode()
	if !strings.ContainsAny(enc, "+/") {
		t.Fatalf("test params must encode with + or /, got %s", enc)
	}
	tests := []struct {
		name, target, wantCmd string
		wantParams            emsclient.Params
	}{
		{"plain", "/pullStream?params=" + enc, "pullStream", ps},
		{"apiProxy path", "/myPseudoDomain/pullstream?params=" + enc, "pullstream", ps},
		{"trailing slash", "/pd/version/", "version", nil},
		{"first query parameter whatever its name", "/pd/pullStream?p=" + enc + "&other=1", "pullStream", ps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, nil)
			cmd, got, err := emsclient.ParseRequest(r)
			if err != nil {
				t.Fatalf("ParseRequest(%s): %v", tt.target, err)
			}
			if cmd != tt.wantCmd {
				t.Errorf("command = %q, want %q", cmd, tt.wantCmd)
			}
			if !reflect.DeepEqual(got, tt.wantParams) {
				t.Errorf("params = %#v, want %#v", got, tt.wantParams)
			}
		})
	}
	if _, _, err := emsclient.ParseRequest(httptest.NewRequest("GET", "/", nil)); err == nil {
		t.Error("ParseRequest(/) gave no error")
	}
}
