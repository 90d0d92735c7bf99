package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/servicetest"
	"github.com/emsflow/emsflow/plugins/plugintest"
)

// ledgerConfig is a service with one idempotent file-backed plugin whose Handle fails until the
// gate file exists.
func ledgerConfig(dir string, extra string) string {
	return fmt.Sprintf(`{
  // short deadlines so that redelivery after a crash comes within seconds
  "dispatch": {"timeout": "2s", "initial_backoff": "50ms", "max_backoff": "200ms"},
  "journal": {"data_dir": %q},
  "log": {"level": "warn"},
  "plugins": {
    "Ledger": {"type": "TestLedger", "plugin_switch": "enabled",
               "parameters": {"path": "ledger.txt", "calls_path": "calls.txt", "gate_file": "gate"}},
    %s
  },
}`, filepath.Join(dir, "data"), extra)
}

func inStreamCreated(i int) string {
	return fmt.Sprintf(`{"id":%d,"payload":{"PID":4242,"appName":"evostreamms","customData":null,"name":"cam%d","type":"INR","uniqueId":%d},"processId":4242,"timestamp":1506336133,"type":"inStreamCreated"}`, i, i, i)
}

func keyOf(t *testing.T, body string) string {
	t.Helper()
	ev, err := event.Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ev.EMS = "default"
	return ev.Key()
}

// TestCrashLosesNoAcceptedEvent: N events accepted, the process killed with SIGKILL before
// handling any of them, restarted: all N handled, each once.
func TestCrashLosesNoAcceptedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary")
	}
	dir := t.TempDir()
	svc := servicetest.Start(t, dir, ledgerConfig(dir, ""))
	const n = 300
	want := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		body := inStreamCreated(i)
		code, err := svc.Post("/evowebservices", body)
		if err != nil || code != http.StatusOK {
			t.Fatalf("post %d: code %d err %v", i, code, err)
		}
		want = append(want, keyOf(t, body))
	}
	// The gate is closed: nothing can have been handled yet.
	if got, _ := plugintest.ReadLines(filepath.Join(dir, "ledger.txt")); len(got) != 0 {
		t.Fatalf("%d events handled before the kill; the gate should have held them", len(got))
	}
	svc.Kill()

	if err := os.WriteFile(filepath.Join(dir, "gate"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	svc.Restart()
	var got []string
	ok := servicetest.Eventually(t.Context(), 90*time.Second, func() bool {
		got, _ = plugintest.ReadLines(filepath.Join(dir, "ledger.txt"))
		return len(got) >= n
	})
	if !ok {
		t.Fatalf("after restart %d of %d accepted events handled", len(got), n)
	}
	svc.Stop()
	got, _ = plugintest.ReadLines(filepath.Join(dir, "ledger.txt"))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("ledger holds %d keys, want the %d accepted ones, each once", len(got), len(want))
	}
	calls, _ := plugintest.ReadLines(filepath.Join(dir, "calls.txt"))
	t.Logf("%d events, %d Handle calls in total (retries while the gate was closed included)", n, len(calls))
}

// TestDuplicatePostStoredOnce: EMS-identical POSTs within the dedupe window reach the plugin once.
func TestDuplicatePostStoredOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gate"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	svc := servicetest.Start(t, dir, ledgerConfig(dir, ""))
	body := inStreamCreated(1)
	for range 5 {
		if code, err := svc.Post("/evowebservices", body); err != nil || code != http.StatusOK {
			t.Fatalf("post: %d %v", code, err)
		}
	}
	// A different event after the duplicates: once it is handled, the duplicates would have been.
	if code, err := svc.Post("/evowebservices", inStreamCreated(2)); err != nil || code != http.StatusOK {
		t.Fatalf("post: %d %v", code, err)
	}
	servicetest.Eventually(t.Context(), 30*time.Second, func() bool {
		got, _ := plugintest.ReadLines(filepath.Join(dir, "ledger.txt"))
		return len(got) >= 2
	})
	// The journal's gauges, as an operator sees them: two events stored.
	resp, err := http.Get(svc.URL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `emsflow_journal_messages{stream="events"} 2` + "\n"; !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %q", want)
	}
	svc.Stop()
	calls, _ := plugintest.ReadLines(filepath.Join(dir, "calls.txt"))
	if len(calls) != 2 {
		t.Errorf("plugin called %d times for one event posted 5 times and one other, want 2", len(calls))
	}
}

// TestDeadLettersCanBeListedAndRedriven: an event a plugin gave up on shows in the admin API and
// CLI with its error, and re-driving it reaches only that plugin.
func TestDeadLettersCanBeListedAndRedriven(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary")
	}
	dir := t.TempDir()
	// max_deliver 2: the closed gate dead-letters the event after two attempts.
	cfg := strings.Replace(ledgerConfig(dir, `"Log": {"type": "EventLog", "plugin_switch": "enabled", "parameters": {"path": "events.jsonl"}}`),
		`"timeout": "2s"`, `"timeout": "2s", "max_deliver": 2`, 1)
	svc := servicetest.Start(t, dir, cfg)
	if code, err := svc.Post("/evowebservices", inStreamCreated(7)); err != nil || code != http.StatusOK {
		t.Fatalf("post: %d %v", code, err)
	}
	var list struct {
		Count       int `json:"count"`
		DeadLetters []struct {
			Seq      uint64          `json:"seq"`
			Plugin   string          `json:"plugin"`
			Error    string          `json:"error"`
			Attempts int             `json:"attempts"`
			Event    json.RawMessage `json:"event"`
		} `json:"dead_letters"`
	}
	ok := servicetest.Eventually(t.Context(), 30*time.Second, func() bool {
		resp, err := http.Get(svc.URL("/admin/deadletters"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		list.Count = 0
		_ = json.NewDecoder(resp.Body).Decode(&list)
		return list.Count == 1
	})
	if !ok {
		t.Fatalf("no dead letter listed")
	}
	dl := list.DeadLetters[0]
	if dl.Plugin != "Ledger" || dl.Attempts != 2 || !strings.Contains(dl.Error, "gate") {
		t.Errorf("dead letter = %+v, want plugin Ledger, 2 attempts, the gate error", dl)
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, dl.Event)
	if compact.String() != inStreamCreated(7) {
		t.Errorf("dead letter event = %s, want the event as posted", dl.Event)
	}

	// Open the gate and re-drive through the CLI, as an operator would.
	if err := os.WriteFile(filepath.Join(dir, "gate"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(servicetest.Binary(t), "deadletters", "redrive", "--config", svc.Config, "--plugin", "Ledger")
	cmd.Env = svc.Env
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"redriven": 1`) {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	ok = servicetest.Eventually(t.Context(), 30*time.Second, func() bool {
		got, _ := plugintest.ReadLines(filepath.Join(dir, "ledger.txt"))
		return len(got) == 1
	})
	if !ok {
		t.Fatal("re-driven event not handled")
	}
	svc.Stop()
	// The EventLog handled the event once when it arrived; the re-drive must not reach it again.
	lines, _ := plugintest.ReadLines(filepath.Join(dir, "events.jsonl"))
	if len(lines) != 1 {
		t.Errorf("EventLog has %d lines, want 1 (re-drive goes only to the plugin that gave up)", len(lines))
	}
}

// TestExampleConfigIsValid: config.ini.example, which make run uses, passes check-config with the
// real registry, every plugin's parameters included (disabled ones too).
func TestExampleConfigIsValid(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check-config", "--config", "../../config.ini.example"}, &stdout, &stderr); code != 0 {
		t.Fatalf("check-config config.ini.example: exit %d\n%s", code, stderr.String())
	}
	for _, secret := range []string{"ABCDEFGHIJ1234567890", "change-me"} {
		if strings.Contains(stdout.String(), secret) {
			t.Errorf("check-config printed the secret %q", secret)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.ini")
	if err := os.WriteFile(good, []byte(`{"server": {"auth_token": "s3cr3t-token"}, "plugins": {"EventLog": {"plugin_switch": "enabled", "parameters": {"path": "e.jsonl"}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.ini")
	if err := os.WriteFile(bad, []byte(`{"server": {"listen": "nope", "max_body_bytes": -1},
	  "plugins": {"EventLog": {"plugin_switch": "on", "parameters": {}}, "Nope": {"plugin_switch": "enabled"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// The PHP web services' form: a plugin listed disabled with a placeholder parameter.
	disabledBad := filepath.Join(dir, "disabled.ini")
	if err := os.WriteFile(disabledBad, []byte("[Plugins]\nEventLog = enabled\nStreamRecorder = disabled\n\n[EventLog]\npath = e.jsonl\n\n[StreamRecorder]\nperiod_time = soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	enabledBad := filepath.Join(dir, "enabled.ini")
	if err := os.WriteFile(enabledBad, []byte("[Plugins]\nStreamRecorder = enabled\n\n[StreamRecorder]\nperiod_time = soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A sink's ca_file is read when the plugin is built, relative to the config file's folder.
	noCA := filepath.Join(dir, "noca.ini")
	if err := os.WriteFile(noCA, []byte(`{"plugins": {"EventSinks": {"plugin_switch": "enabled", "parameters": {"sinks": [
	  {"name": "ops", "url": "https://127.0.0.1:8443/events", "ca_file": "private-ca.pem"}]}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		file     string
		wantCode int
		wantOut  []string
		notOut   []string
	}{
		{"valid config printed redacted", good, 0, []string{`"auth_token": "\u003credacted\u003e"`, "is valid"}, []string{"s3cr3t-token"}},
		{"every problem listed", bad, 1, []string{"listen", "max_body_bytes", "plugin_switch", `unknown plugin "Nope"`}, nil},
		{"a disabled plugin's problem is a warning", disabledBad, 0, []string{"warning: disabled plugins", "StreamRecorder", "period_time", "is valid"}, nil},
		{"an enabled plugin's problem is an error", enabledBad, 1, []string{"is invalid", "StreamRecorder", "period_time"}, []string{"warning"}},
		{"a sink's unreadable ca_file is an error", noCA, 1, []string{"is invalid", "EventSinks", "sink ops: ca_file: open " + filepath.Join(dir, "private-ca.pem")}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"check-config", "--config", tc.file}, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) && !strings.Contains(out, strings.ReplaceAll(w, `\u003c`, "<")) && !strings.Contains(out, strings.ReplaceAll(strings.ReplaceAll(w, `\u003c`, "<"), `\u003e`, ">")) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.notOut {
				if strings.Contains(out, n) {
					t.Errorf("output contains %q", n)
				}
			}
		})
	}
}
