package recorder

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/emsclient/emstest"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

func deps(a *emstest.Server) plugins.Deps {
	return plugins.Deps{Log: zerolog.Nop(), EMS: map[string]*emsclient.Client{"a": a.Client()}, DefaultEMS: "a"}
}

func ev(typ string, p event.Payload) *event.Event {
	q := event.Payload{"type": "INR", "uniqueId": json.Number("101")}
	maps.Copy(q, p)
	return &event.Event{Type: typ, EMS: "a", Payload: q}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name     string
		params   string
		stream   string
		wantPath string
		wantErr  string
	}{
		{"guide form", `{"file_location": "/var/media", "period_time": 3600}`, "cam1", "/var/media/cam1", ""},
		{"ini form, windows folder", `{"file_location": "C:\\xampp\\media\\", "period_time": "60"}`, "cam1", `C:\xampp\media\cam1`, ""},
		{"duration form, ts", `{"file_location": "/m/", "period_time": "1h", "format": "ts"}`, "a/../b", "/m/a_.._b", ""},
		{"hidden name", `{"file_location": "/m", "period_time": 1}`, "..x", "/m/_x", ""},
		{"relative folder", `{"file_location": "media", "period_time": 60}`, "", "", "must be an absolute path"},
		{"no folder", `{"period_time": 60}`, "", "", "file_location is required"},
		{"no period", `{"file_location": "/m"}`, "", "", "period_time is required"},
		{"period too long", `{"file_location": "/m", "period_time": 86400}`, "", "", "not between 1 and 86399"},
		{"period not whole", `{"file_location": "/m", "period_time": 1.5}`, "", "", "whole number"},
		{"bad format", `{"file_location": "/m", "period_time": 60, "format": "mkv"}`, "", "", `format "mkv"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Factory("Rec", json.RawMessage(tt.params), deps(emstest.NewServer(t)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.(*Recorder).cfg.pathFor(tt.stream); got != tt.wantPath {
				t.Errorf("path: got %s, want %s", got, tt.wantPath)
			}
		})
	}
}

// TestRecordOnceAndCleanUp: the record command as sent, once for a duplicated event; on close
// only this instance's config goes, and not while the stream is live again.
func TestRecordOnceAndCleanUp(t *testing.T) {
	a := emstest.NewServer(t)
	r, err := New("Rec", Config{FileLocation: "/var/media", PeriodTime: plugins.Duration(600e9)}, deps(a))
	if err != nil {
		t.Fatal(err)
	}
	created := ev(event.InStreamCreated, event.Payload{"name": "cam1"})
	for range 2 {
		if err := r.Handle(t.Context(), created); err != nil {
			t.Fatal(err)
		}
	}
	calls := a.CallsTo("record")
	if len(calls) != 1 {
		t.Fatalf("got %d record calls, want 1", len(calls))
	}
	want := "localStreamName=cam1 pathToFile=/var/media/cam1 type=mp4 overwrite=0 keepAlive=1 chunkLength=600 winQtCompat=1 waitForIDR=1 _emsflow=Rec _emsflowOrigin=a _localStreamName=cam1"
	if got := calls[0].Params.Text(); got != want {
		t.Errorf("record:\n got %s\nwant %s", got, want)
	}
	// Someone else's recording of the same stream elsewhere stays.
	if _, err := a.Client().Record(t.Context(), emsclient.RecordParams{LocalStreamName: "cam1", PathToFile: "/other/cam1"}); err != nil {
		t.Fatal(err)
	}

	closed := ev(event.InStreamClosed, event.Payload{"name": "cam1"})
	a.Handle("listStreams", func(emsclient.Params) (int, any) {
		return 0, emstest.Success("Available streams", []any{map[string]any{"name": "cam1", "type": "INR", "uniqueId": 102}})
	})
	if err := r.Handle(t.Context(), closed); err != nil {
		t.Fatal(err)
	}
	if n := len(a.CallsTo("removeConfig")); n != 0 || r.metrics.Skipped("stream_live") != 1 {
		t.Errorf("removed %d configs of a stream that is live again", n)
	}
	a.Handle("listStreams", nil)
	if err := r.Handle(t.Context(), closed); err != nil {
		t.Fatal(err)
	}
	rm := a.CallsTo("removeConfig")
	if len(rm) != 1 {
		t.Fatalf("got %d removeConfig calls, want 1", len(rm))
	}
	if got, _ := rm[0].Params.Get("id"); got != "1" {
		t.Errorf("removed config %s, want 1 (ours)", got)
	}
}

// TestSkipsReplicas: streams emsflow brought here are not recorded unless record_replicas.
func TestSkipsReplicas(t *testing.T) {
	replica := event.Payload{"name": "cam1", "pullSettings": map[string]any{"_emsflow": "LB", "uri": "rtmp://10.0.0.1/live/cam1"}}
	for _, all := range []bool{false, true} {
		a := emstest.NewServer(t)
		r, err := New("Rec", Config{FileLocation: "/m", PeriodTime: plugins.Duration(60e9), RecordReplicas: all}, deps(a))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Handle(t.Context(), ev(event.InStreamCreated, replica)); err != nil {
			t.Fatal(err)
		}
		want := 0
		if all {
			want = 1
		}
		if n := len(a.CallsTo("record")); n != want {
			t.Errorf("record_replicas=%v: got %d record calls, want %d", all, n, want)
		}
	}
}

func TestRecordFailIsPermanent(t *testing.T) {
	a := emstest.NewServer(t)
	a.FailNext("record", 1, emstest.EMSFail("Syntax error. Parameter pathToFile is invalid"))
	r, err := New("Rec", Config{FileLocation: "/m", PeriodTime: plugins.Duration(60e9)}, deps(a))
	if err != nil {
		t.Fatal(err)
	}
	err = r.Handle(t.Context(), ev(event.InStreamCreated, event.Payload{"name": "cam1"}))
	if !plugins.IsPermanent(err) || !strings.Contains(err.Error(), "pathToFile is invalid") {
		t.Fatalf("error %v, want a permanent one with EMS's description", err)
	}
}
