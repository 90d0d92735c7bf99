package emssim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// received is one POST a test sink got.
type received struct {
	Body      []byte
	Header    http.Header
	Env       envelope
	FileSize  int64 // size of payload.file (or recordSettings.computedPathToFile) on arrival; -1 if absent
	Remote    string
	ArrivedAt time.Time
}

type envelope struct {
	ID        uint64         `json:"id"`
	Type      string         `json:"type"`
	Timestamp uint64         `json:"timestamp"`
	ProcessID uint64         `json:"processId"`
	Payload   map[string]any `json:"payload"`
}

// sink is a real HTTP receiver that records every event it is sent.
type sink struct {
	srv   *httptest.Server
	mu    sync.Mutex
	got   []received
	conns int
}

func newSink(t *testing.T) *sink {
	t.Helper()
	sk := &sink{}
	sk.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env envelope
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		_ = dec.Decode(&env)
		rec := received{Body: body, Header: r.Header.Clone(), Env: env, FileSize: -1, Remote: r.RemoteAddr, ArrivedAt: time.Now()}
		path, _ := env.Payload["file"].(string)
		if rs, ok := env.Payload["recordSettings"].(map[string]any); ok && path == "" {
			path, _ = rs["computedPathToFile"].(string)
		}
		if a, ok := env.Payload["arguments"].(string); ok && path == "" {
			path = strings.TrimPrefix(a, "-path=")
		}
		if path != "" {
			if fi, err := os.Stat(path); err == nil {
				rec.FileSize = fi.Size()
			}
		}
		sk.mu.Lock()
		sk.got = append(sk.got, rec)
		sk.mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError) // EMS ignores the answer
	}))
	sk.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			sk.mu.Lock()
			sk.conns++
			sk.mu.Unlock()
		}
	}
	sk.srv.Start()
	t.Cleanup(sk.srv.Close)
	return sk
}

func (sk *sink) all() []received {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return append([]received(nil), sk.got...)
}

func (sk *sink) ofType(typ string) []received {
	var out []received
	for _, r := range sk.all() {
		if r.Env.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

func (sk *sink) count(typ string) int { return len(sk.ofType(typ)) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startSim starts a simulator on free ports with the given sinks.
func startSim(t *testing.T, cfg Config) *Sim {
	t.Helper()
	cfg.APIAddr, cfg.RTMPAddr = "127.0.0.1:0", "127.0.0.1:0"
	if cfg.ReconnectInterval == 0 {
		cfg.ReconnectInterval = 100 * time.Millisecond
	}
	if cfg.FFmpeg == "" {
		cfg.FFmpeg = "/usr/bin/ffmpeg"
	}
	cfg.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type apiResp struct {
	Status      string          `json:"status"`
	Description string          `json:"description"`
	Data        json.RawMessage `json:"data"`
	ResponseID  string          `json:"responseId"`
	HTTPStatus  int             `json:"-"`
	Raw         []byte          `json:"-"`
}

// rawCall sends a raw EMS request URL: <base>/<cmd>?params=<base64 of text>, unescaped.
func rawCall(t *testing.T, base, cmd, text string) apiResp {
	t.Helper()
	u := base + "/" + cmd
	if text != "" {
		u += "?params=" + base64.StdEncoding.EncodeToString([]byte(text))
	}
	return getURL(t, u)
}

func getURL(t *testing.T, u string) apiResp {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := apiResp{HTTPStatus: resp.StatusCode, Raw: body}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("GET %s: answer is not JSON: %v: %s", u, err, body)
		}
	}
	return r
}

func (r apiResp) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Data))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("data is not an object: %v: %s", err, r.Data)
	}
	return m
}

func mustSucceed(t *testing.T, r apiResp) apiResp {
	t.Helper()
	if r.Status != "SUCCESS" {
		t.Fatalf("status %q (%s), want SUCCESS: %s", r.Status, r.Description, r.Raw)
	}
	return r
}

func num(v any) uint64 {
	switch x := v.(type) {
	case json.Number:
		n, _ := x.Int64()
		return uint64(n)
	case float64:
		return uint64(x)
	}
	return 0
}
