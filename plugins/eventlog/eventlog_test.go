package eventlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// The EMS payload fixtures are the webhook's: real captures from the reference.
const fixtures = "../../webhook/testdata"

func loadEvent(t *testing.T, name string) (*event.Event, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.Decode(raw)
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	ev.EMS = "default"
	return ev, raw
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s does not end with a newline", path)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func newLog(t *testing.T, cfg Config, deps plugins.Deps) *EventLog {
	t.Helper()
	l, err := New("events", cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := l.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = l.Close(t.Context()) })
	return l
}

func TestLinesAreTheRawEvents(t *testing.T) {
	dir := t.TempDir()
	l := newLog(t, Config{Path: "logs/sub/events.jsonl"}, plugins.Deps{ConfigDir: dir, Log: zerolog.Nop()})
	if want := filepath.Join(dir, "logs/sub/events.jsonl"); l.Path() != want {
		t.Fatalf("Path() = %q, want %q (relative to ConfigDir)", l.Path(), want)
	}
	files := []string{
		"inStreamCreated_uint64.json", "timerTriggered.json", "streamCreated_old.json", // one line, as EMS sends
		"serverStarted.json", "recordChunkClosed.json", "outStreamCreated_hls.json", // spread over lines
	}
	var raws [][]byte
	for _, f := range files {
		ev, raw := loadEvent(t, f)
		if err := l.Handle(t.Context(), ev); err != nil {
			t.Fatalf("Handle(%s): %v", f, err)
		}
		raws = append(raws, bytes.TrimSpace(raw))
	}
	lines := readLines(t, l.Path())
	if len(lines) != len(files) {
		t.Fatalf("%d lines, want %d", len(lines), len(files))
	}
	for i, line := range lines {
		t.Run(files[i], func(t *testing.T) {
			if !bytes.ContainsAny(raws[i], "\n") && !bytes.Equal(line, raws[i]) {
				t.Errorf("line = %s\nwant the event as sent: %s", line, raws[i])
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, raws[i]); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(line, compact.Bytes()) {
				t.Errorf("line = %s\nwant the compacted event: %s", line, compact.Bytes())
			}
			got, err := event.Decode(line)
			if err != nil {
				t.Fatalf("line does not decode: %v", err)
			}
			want, _ := loadEvent(t, files[i])
			if got.Type != want.Type || got.ID != want.ID || got.Timestamp != want.Timestamp {
				t.Errorf("decoded line = %s/%d/%d, want %s/%d/%d", got.Type, got.ID, got.Timestamp, want.Type, want.ID, want.Timestamp)
			}
		})
	}
	ev, _ := loadEvent(t, "inStreamCreated_uint64.json")
	got, err := event.Decode(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := got.Payload.Uint64("typeNumeric"); n != 5282249572905648128 {
		t.Errorf("typeNumeric from the log = %d, want 5282249572905648128", n)
	}
	if ev.Key() == "" {
		t.Error("empty key")
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	reg := prometheus.NewRegistry()
	mk := func(i int) string {
		return fmt.Sprintf(`{"id":%d,"payload":{"PID":1,"_uniqueId":"%d","customData":null,"timerId":9,"triggerCount":%d,"value":3600},"processId":1,"timestamp":1,"type":"timerTriggered"}`, i, i, i)
	}
	// Every line has the same length; a file holds two lines and a bit, not three.
	maxBytes := int64(2*(len(mk(1))+1) + 10)
	l := newLog(t, Config{Path: path, MaxBytes: maxBytes, MaxFiles: 2}, plugins.Deps{Log: zerolog.Nop(), Metrics: reg})
	var want []string
	for i := 1; i <= 9; i++ {
		line := mk(i)
		ev, err := event.Decode([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Handle(t.Context(), ev); err != nil {
			t.Fatalf("Handle %d: %v", i, err)
		}
		want = append(want, line)
	}
	// 9 lines, two per file: current holds 9, .1 holds 7-8, .2 holds 5-6; 1-4 rotated away.
	tests := []struct {
		file string
		ids  []int
	}{
		{path, []int{9}},
		{path + ".1", []int{7, 8}},
		{path + ".2", []int{5, 6}},
	}
	for _, tt := range tests {
		lines := readLines(t, tt.file)
		var got []int
		for _, line := range lines {
			ev, err := event.Decode(line)
			if err != nil {
				t.Fatalf("%s: %v", tt.file, err)
			}
			got = append(got, int(ev.ID))
			if string(line) != want[ev.ID-1] {
				t.Errorf("%s: line %s, want %s", tt.file, line, want[ev.ID-1])
			}
		}
		if !slices.Equal(got, tt.ids) {
			t.Errorf("%s holds ids %v, want %v", tt.file, got, tt.ids)
		}
		st, err := os.Stat(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over max_bytes %d", tt.file, st.Size(), maxBytes)
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 exists (err %v), want only max_files=2 rotated files", path, err)
	}
	if got := counterValue(t, l.rotations); got != 4 {
		t.Errorf("rotations = %v, want 4", got)
	}
	if got := counterValue(t, l.lines); got != 9 {
		t.Errorf("lines written = %v, want 9", got)
	}
}

func TestOversizedLineGetsItsOwnFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l := newLog(t, Config{Path: path, MaxBytes: 10}, plugins.Deps{Log: zerolog.Nop()})
	for _, f := range []string{"timerTriggered.json", "recordChunkCreated.json"} {
		ev, _ := loadEvent(t, f)
		if err := l.Handle(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(readLines(t, path)); n != 1 {
		t.Errorf("current file holds %d lines, want 1", n)
	}
	if n := len(readLines(t, path+".1")); n != 1 {
		t.Errorf("rotated file holds %d lines, want 1", n)
	}
}

func TestAppendsToExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte("{\"type\":\"serverStarted\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newLog(t, Config{Path: path}, plugins.Deps{Log: zerolog.Nop()})
	ev, _ := loadEvent(t, "timerTriggered.json")
	if err := l.Handle(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 2 || string(lines[0]) != `{"type":"serverStarted"}` {
		t.Errorf("lines = %q, want the old line kept and one appended", lines)
	}
}

func TestDuplicateSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l := newLog(t, Config{Path: path}, plugins.Deps{Log: zerolog.Nop()})
	ev, _ := loadEvent(t, "recordChunkClosed.json")
	again, _ := loadEvent(t, "recordChunkClosed.json")
	other, _ := loadEvent(t, "recordChunkClosed.json")
	other.EMS = "edge" // the same bytes from another EMS are another event
	for _, e := range []*event.Event{ev, again, ev, other} {
		if err := l.Handle(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(readLines(t, path)); n != 2 {
		t.Errorf("%d lines, want 2 (duplicates skipped, other EMS kept)", n)
	}
	if got := counterValue(t, l.duplicates); got != 2 {
		t.Errorf("duplicates skipped = %v, want 2", got)
	}
}

func TestKeyRingForgetsOldest(t *testing.T) {
	r := newKeyRing(3)
	for _, k := range []string{"a", "b", "c", "d"} {
		r.add(k)
	}
	for k, want := range map[string]bool{"a": false, "b": true, "c": true, "d": true} {
		if got := r.has(k); got != want {
			t.Errorf("has(%s) = %v, want %v", k, got, want)
		}
	}
}

func TestConcurrentHandle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l := newLog(t, Config{Path: path, MaxBytes: 4096, MaxFiles: 100}, plugins.Deps{Log: zerolog.Nop()})
	const workers, per = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				id := w*per + i + 1
				ev, err := event.Decode(fmt.Appendf(nil, `{"id":%d,"payload":{"file":"/x/%d.ts"},"type":"hlsChunkClosed"}`, id, id))
				if err != nil {
					errs <- err
					return
				}
				// Each event is delivered twice, concurrently with everything else.
				for range 2 {
					if err := l.Handle(t.Context(), ev); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	matches, err := filepath.Glob(path + "*")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, f := range matches {
		for _, line := range readLines(t, f) {
			ev, err := event.Decode(line)
			if err != nil {
				t.Fatalf("%s: broken line %q: %v", f, line, err)
			}
			seen[ev.ID]++
		}
	}
	if len(seen) != workers*per {
		t.Errorf("%d distinct events logged, want %d", len(seen), workers*per)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %d logged %d times, want 1", id, n)
		}
	}
}

func TestHandleAfterClose(t *testing.T) {
	l := newLog(t, Config{Path: filepath.Join(t.TempDir(), "e.jsonl")}, plugins.Deps{Log: zerolog.Nop()})
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	ev, _ := loadEvent(t, "timerTriggered.json")
	if err := l.Handle(t.Context(), ev); err == nil {
		t.Error("Handle after Close succeeded, want an error")
	}
}

func TestStartFailsOnUnwritableFolder(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := New("events", Config{Path: filepath.Join(blocker, "events.jsonl")}, plugins.Deps{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "events.jsonl") {
		t.Errorf("Start() = %v, want an error naming the file", err)
	}
}

func TestFactory(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name       string
		params     string
		wantErr    []string
		wantEvents []string
		wantPath   string
		wantMax    int64
		wantFiles  int
	}{
		{name: "defaults", params: `{"path":"events.jsonl"}`, wantEvents: event.Known, wantPath: filepath.Join(dir, "events.jsonl"), wantMax: DefaultMaxBytes, wantFiles: DefaultMaxFiles},
		{name: "ini strings", params: `{"path":"/var/log/e.jsonl","max_bytes":"1024","max_files":"3","events":"inStreamCreated, inStreamClosed,"}`,
			wantEvents: []string{event.InStreamCreated, event.InStreamClosed}, wantPath: "/var/log/e.jsonl", wantMax: 1024, wantFiles: 3},
		{name: "json list", params: `{"path":"e.jsonl","events":["hlsChunkClosed"],"fsync":true}`, wantEvents: []string{event.HLSChunkClosed}, wantPath: filepath.Join(dir, "e.jsonl"), wantMax: DefaultMaxBytes, wantFiles: DefaultMaxFiles},
		{name: "missing path", params: `{}`, wantErr: []string{`"path" is required`}},
		{name: "unknown key", params: `{"path":"e","maxbytes":1}`, wantErr: []string{`unknown parameter "maxbytes"`, "max_bytes"}},
		{name: "unknown event", params: `{"path":"e","events":["inStreamCreated","inStreamCreatd"]}`, wantErr: []string{`unknown event "inStreamCreatd"`}},
		{name: "empty events", params: `{"path":"e","events":[]}`, wantErr: []string{`"events" is empty`}},
		{name: "duplicate event", params: `{"path":"e","events":["timerTriggered","timerTriggered"]}`, wantErr: []string{`"timerTriggered" listed twice`}},
		{name: "bad numbers", params: `{"path":"e","max_bytes":-5,"max_files":-1}`, wantErr: []string{`"max_bytes": -5`, `"max_files": -1`}},
		{name: "wrong type", params: `{"path":"e","max_files":"many"}`, wantErr: []string{`"max_files"`, "not an integer"}},
		{name: "all problems at once", params: `{"events":["nope"],"max_bytes":-1}`, wantErr: []string{`"path" is required`, `unknown event "nope"`, `"max_bytes": -1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Factory("log1", json.RawMessage(tt.params), plugins.Deps{ConfigDir: dir, Log: zerolog.Nop()})
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("Factory succeeded, want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Factory: %v", err)
			}
			l := p.(*EventLog)
			if l.Name() != "log1" {
				t.Errorf("Name() = %q, want log1", l.Name())
			}
			if !slices.Equal(l.Events(), tt.wantEvents) {
				t.Errorf("Events() = %v, want %v", l.Events(), tt.wantEvents)
			}
			if l.Path() != tt.wantPath || l.cfg.MaxBytes != tt.wantMax || l.cfg.MaxFiles != tt.wantFiles {
				t.Errorf("path %q max %d files %d, want %q %d %d", l.Path(), l.cfg.MaxBytes, l.cfg.MaxFiles, tt.wantPath, tt.wantMax, tt.wantFiles)
			}
			if _, err := os.Stat(l.Path()); !os.IsNotExist(err) {
				t.Errorf("Factory touched the file system (stat %s: %v); constructors do no I/O", l.Path(), err)
			}
		})
	}
}

func TestRegistry(t *testing.T) {
	r := plugins.NewRegistry()
	r.Register(Kind, Factory)
	p, err := r.Build(Kind, "EventLog", json.RawMessage(`{"path":"e.jsonl"}`), plugins.Deps{ConfigDir: t.TempDir(), Log: zerolog.Nop(), Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if _, ok := p.(plugins.Starter); !ok {
		t.Error("EventLog is not a plugins.Starter")
	}
	if _, ok := p.(plugins.Closer); !ok {
		t.Error("EventLog is not a plugins.Closer")
	}
}
