package provenance

import (
	"encoding/json"
	"testing"

	"github.com/emsflow/emsflow/event"
)

func TestCreator(t *testing.T) {
	tests := []struct {
		name string
		p    event.Payload
		want string
	}{
		{"listConfig entry", event.Payload{"_emsflow": "LB"}, "LB"},
		{"pulled stream", event.Payload{"pullSettings": map[string]any{"_emsflow": "LB"}}, "LB"},
		{"pushed stream by pageUrl", event.Payload{"pageUrl": "emsflow:Router"}, "Router"},
		{"encoder page url", event.Payload{"pageUrl": "https://example.com/player"}, ""},
		{"untagged", event.Payload{"name": "cam"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Creator(tt.p)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("Creator: got %q, %v, want %q", got, ok, tt.want)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	for uri, want := range map[string]string{
		"rtmp://Edge.example.com/live": "edge.example.com:1935",
		"rtmp://10.0.0.1:1936/app":     "10.0.0.1:1936",
		"rtmps://edge/live":            "edge:443",
		"rtmp://[::1]/live":            "[::1]:1935",
	} {
		e, ok := ParseEndpoint(uri)
		if !ok || e.String() != want {
			t.Errorf("ParseEndpoint(%s) = %s, %v, want %s", uri, e, ok, want)
		}
	}
	published := event.Payload{"tcUrl": "rtmp://10.0.0.5/live", "nearIp": "10.0.0.5", "nearPort": json.Number("1935"),
		"farIp": "10.0.0.9", "farPort": json.Number("50111")}
	if got := Ingest(published); len(got) != 2 || got[0].String() != "10.0.0.5:1935" || got[1] != got[0] {
		t.Errorf("Ingest of a published stream: %v", got)
	}
	pulled := event.Payload{"tcUrl": "rtmp://src/live/x", "nearPort": json.Number("40000"), "nearIp": "10.0.0.5",
		"pullSettings": map[string]any{}, "farIp": "10.0.0.7", "farPort": json.Number("1935")}
	if got := Ingest(pulled); len(got) != 0 {
		t.Errorf("Ingest of a pulled stream: %v, want none", got)
	}
	if far, ok := Far(pulled); !ok || far.String() != "10.0.0.7:1935" {
		t.Errorf("Far: %v %v", far, ok)
	}
}
