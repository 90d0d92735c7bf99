package processing_test

import (
	"bufio"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/emssim"
	"github.com/emsflow/emsflow/internal/loopback"
	"github.com/emsflow/emsflow/internal/servicetest"
	"github.com/emsflow/emsflow/plugins/rules"
)

// rulesConfig is a service with the Rules plugin running the two workflows of the EMS
// documentation (plugins/rules doc, config.ini.example) against two EMS servers, a and b. HLS
// outputs are made for a's streams only (the only set), with one-second chunks under hlsRoot.
func rulesConfig(apiA, apiB, hlsRoot string) string {
	return `{
  "dispatch": {"timeout": "10s", "initial_backoff": "100ms", "max_backoff": "1s"},
  "journal": {"data_dir": "data"},
  "ems": {"a": {"api_url": "http://` + apiA + `"}, "b": {"api_url": "http://` + apiB + `"}},
  "log": {"level": "info"},
  "plugins": {
    "Rules": {"plugin_switch": "enabled", "parameters": {"rules": [
      {"name": "hls-for-new-streams",
       "events": ["inStreamCreated"],
       "only": ["ems=a"],
       "action": "createHLSStream localStreamNames={{.Name}} targetFolder=` + hlsRoot + ` groupName={{.Name}} playlistType=rolling chunkLength=1"},
      {"name": "close-input-when-push-lost",
       "events": ["outStreamClosed"],
       "only": ["pushSettings.localStreamName=*"],
       "action": "shutdownStream id={{.Payload.inStreamUniqueId}} permanently=0"},
    ]}},
  },
}`
}

// startSim starts a simulator whose API listens on apiAddr and whose events go to sinkURL.
func startSim(t *testing.T, apiAddr, sinkURL, mediaDir string, faults emssim.Faults) *emssim.Sim {
	t.Helper()
	s, err := emssim.New(emssim.Config{
		APIAddr: apiAddr, RTMPAddr: "127.0.0.1:0",
		Sinks:             []emssim.Sink{{URL: sinkURL}},
		MediaDir:          mediaDir,
		FFmpeg:            "/usr/bin/ffmpeg",
		ReconnectInterval: 100 * time.Millisecond,
		Faults:            faults,
		Log:               zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start simulator on %s: %v", apiAddr, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func emsClient(t *testing.T, s *emssim.Sim) *emsclient.Client {
	t.Helper()
	c, err := emsclient.New(s.APIURL(), &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hlsConfigs returns the HLS configs on an EMS.
func hlsConfigs(t *testing.T, c *emsclient.Client) []event.Payload {
	t.Helper()
	lc, err := c.ListConfig(t.Context())
	if err != nil {
		t.Fatalf("listConfig: %v", err)
	}
	return lc.HLS
}

// inbound reports whether an EMS runs an inbound stream called name.
func inbound(t *testing.T, c *emsclient.Client, name string) bool {
	t.Helper()
	streams, err := c.ListStreams(t.Context())
	if err != nil {
		t.Fatalf("listStreams: %v", err)
	}
	for _, s := range streams {
		if s.Name() == name && s.IsInbound() {
			return true
		}
	}
	return false
}

// listedSegment returns a segment that a media playlist under root lists (so it is complete),
// or "" when there is none yet.
func listedSegment(root string) string {
	var seg string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || seg != "" || d.IsDir() || filepath.Ext(path) != ".m3u8" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			l := strings.TrimSpace(sc.Text())
			if l != "" && !strings.HasPrefix(l, "#") && strings.HasSuffix(l, ".ts") {
				seg = filepath.Join(filepath.Dir(path), l)
				return filepath.SkipAll
			}
		}
		return nil
	})
	return seg
}

func requireMedia(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"/usr/bin/ffmpeg", "/usr/bin/ffprobe"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
}

// TestRulesThroughEmsflow runs the two custom-processing workflows through a running emsflow fed
// by two simulated EMS servers:
//   - EMS a posts every event twice; a stream published on a gets exactly one HLS output, made
//     by the rule and tagged, which writes real segments; after a SIGKILL and restart of
//     emsflow, reconciliation finds the output and creates nothing;
//   - a push from a to b that b loses closes on a, and the rule shuts the pushed stream down on
//     a; a push tagged as emsflow's own is left alone.
func TestRulesThroughEmsflow(t *testing.T) {
	requireEndToEnd(t)
	requireMedia(t)
	t.Parallel()
	dir := t.TempDir()
	media := filepath.Join(dir, "media")
	hlsRoot := filepath.Join(media, "hls")
	// The simulators' API addresses are named in emsflow's configuration before they run.
	apiA, apiB := loopback.MustAddr(t), loopback.MustAddr(t)
	svc := servicetest.Start(t, dir, rulesConfig(apiA, apiB, hlsRoot))
	a := startSim(t, apiA, svc.URL("/evowebservices/a"), media, emssim.Faults{DuplicateRate: 1})
	b := startSim(t, apiB, svc.URL("/evowebservices/b"), filepath.Join(dir, "media-b"), emssim.Faults{})
	ca, cb := emsClient(t, a), emsClient(t, b)
	count := func(name string, labels map[string]string) float64 { return metric(t, svc, name, labels) }
	hlsActions := map[string]string{"rule": "hls-for-new-streams", "command": "createHLSStream"}

	// 1. A published stream, its inStreamCreated posted twice: one HLS output, real segments.
	if _, err := a.Publish("cam1"); err != nil {
		t.Fatal(err)
	}
	var seg string
	waitFor(t, "a segment listed in cam1's HLS playlist", func() bool {
		seg = listedSegment(filepath.Join(hlsRoot, "cam1"))
		return seg != "" && fileExists(seg)
	})
	if got := count("emsflow_webhook_events_received_total", map[string]string{"type": event.InStreamCreated}); got != 2 {
		t.Errorf("inStreamCreated received %v times, want 2 (emssim posts every event twice)", got)
	}
	hls := hlsConfigs(t, ca)
	if len(hls) != 1 {
		t.Fatalf("HLS configs on a = %d, want 1: %v", len(hls), hls)
	}
	if n, _ := hls[0].String("localStreamName"); n != "cam1" {
		t.Errorf("HLS config for %q, want cam1", n)
	}
	if v, _ := hls[0].String(rules.TagInstance); v != "Rules" {
		t.Errorf("HLS config %s = %q, want the instance name Rules", rules.TagInstance, v)
	}
	if v, _ := hls[0].String(rules.TagRule); v != "hls-for-new-streams" {
		t.Errorf("HLS config %s = %q, want hls-for-new-streams", rules.TagRule, v)
	}
	if got := count("emsflow_rules_actions_total", hlsActions); got != 1 {
		t.Errorf("createHLSStream actions = %v, want 1", got)
	}
	if rel, err := filepath.Rel(filepath.Join(hlsRoot, "cam1"), seg); err != nil || strings.HasPrefix(rel, "..") {
		t.Errorf("segment %s is not under the rule's targetFolder/groupName", seg)
	}
	probe, err := exec.CommandContext(t.Context(), "/usr/bin/ffprobe", "-v", "error",
		"-show_entries", "stream=codec_name", "-of", "csv=p=0", seg).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", seg, err, probe)
	}
	if !strings.Contains(string(probe), "h264") {
		t.Errorf("ffprobe %s: %q, want an h264 stream", seg, probe)
	}

	// 2. SIGKILL and restart: reconciliation applies the inStreamCreated rule to the running
	// stream again, finds its HLS output and creates nothing.
	svc.Kill()
	svc.Restart()
	waitFor(t, "reconciliation to find cam1's HLS output", func() bool {
		return count("emsflow_rules_skipped_total", map[string]string{"rule": "hls-for-new-streams", "reason": rules.ReasonExists}) >= 1
	})
	if n := len(hlsConfigs(t, ca)); n != 1 {
		t.Errorf("HLS configs on a after restart = %d, want 1", n)
	}

	// 3. Pushes from a to b: cam1 by an operator, cam2 tagged as made by emsflow.
	if _, err := a.Publish("cam2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an HLS output for cam2", func() bool { return len(hlsConfigs(t, ca)) == 2 })
	for _, p := range []emsclient.PushStreamParams{
		{URI: b.RTMPURL(), LocalStreamName: "cam1", TargetStreamName: "cam1b", KeepAlive: emsclient.Bool(false)},
		{URI: b.RTMPURL(), LocalStreamName: "cam2", TargetStreamName: "cam2b", KeepAlive: emsclient.Bool(false),
			UserVars: map[string]string{rules.TagInstance: "autorouter"}},
	} {
		if _, err := ca.PushStream(t.Context(), p); err != nil {
			t.Fatalf("push %s: %v", p.LocalStreamName, err)
		}
	}
	waitFor(t, "both pushes to arrive at b", func() bool { return inbound(t, cb, "cam1b") && inbound(t, cb, "cam2b") })

	// b loses the tagged push first: the rule sees a's outStreamClosed and leaves cam2 alone.
	closeRule := "close-input-when-push-lost"
	if err := cb.ShutdownStream(t.Context(), emsclient.ShutdownParams{LocalStreamName: "cam2b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rule to skip the tagged push's close", func() bool {
		return count("emsflow_rules_skipped_total", map[string]string{"rule": closeRule, "reason": rules.ReasonLoopGuard}) >= 1
	})
	if !inbound(t, ca, "cam2") {
		t.Fatal("cam2 was shut down on a, but its push was tagged as emsflow's own")
	}

	// Then the operator's push: its close on a makes the rule shut cam1 down on a.
	if err := cb.ShutdownStream(t.Context(), emsclient.ShutdownParams{LocalStreamName: "cam1b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cam1 shut down on a", func() bool { return !inbound(t, ca, "cam1") })
	if got := count("emsflow_rules_actions_total", map[string]string{"rule": closeRule, "command": "shutdownStream"}); got != 1 {
		t.Errorf("shutdownStream actions = %v, want 1", got)
	}
	if !inbound(t, ca, "cam2") {
		t.Error("cam2 is gone from a; only cam1 lost its push")
	}
	if got := count("emsflow_rules_failures_total", nil); got != 0 {
		t.Errorf("rule failures = %v, want 0", got)
	}
	svc.Stop()
	st := a.EventStats()
	if st.Duplicated == 0 {
		t.Errorf("emssim a duplicated no event (%+v); the test did not exercise duplicates", st)
	}
	t.Logf("emssim a: %+v", st)
}
