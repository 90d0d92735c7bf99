// Package servicetest runs the real emsflow binary for end-to-end tests: built once per test
// process with the emsflowtest tag (which adds the plugintest plugins), started on a free
// loopback port with a configuration the test writes, and stopped with SIGTERM or killed with
// SIGKILL to prove what survives a crash.
package servicetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emsflow/emsflow/internal/loopback"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/emsflow with -tags emsflowtest once and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "emsflow-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "emsflow")
		cmd := exec.Command("go", "build", "-tags", "emsflowtest", "-o", binPath, "github.com/emsflow/emsflow/cmd/emsflow")
		cmd.Dir = moduleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build emsflow: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Service is one emsflow process.
type Service struct {
	t      testing.TB
	Dir    string // folder of config.ini; relative paths in the config resolve here
	Config string // path of config.ini
	Addr   string // host:port the webhook listens on
	Env    []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// Start writes config (JSON or INI form) to dir/config.ini and starts emsflow on a free loopback
// port (EMSFLOW_SERVER_LISTEN), returning once /readyz answers 200. extraEnv adds variables.
func Start(t testing.TB, dir, config string, extraEnv ...string) *Service {
	t.Helper()
	s := &Service{t: t, Dir: dir, Config: filepath.Join(dir, "config.ini"), Addr: loopback.MustAddr(t)}
	if err := os.WriteFile(s.Config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Env = append(os.Environ(), "EMSFLOW_SERVER_LISTEN="+s.Addr)
	s.Env = append(s.Env, extraEnv...)
	s.start()
	t.Cleanup(func() {
		s.mu.Lock()
		running := s.cmd != nil
		s.mu.Unlock()
		if running {
			s.Kill()
		}
		if t.Failed() {
			t.Logf("emsflow log:\n%s", s.Log())
		}
	})
	return s
}

func (s *Service) start() {
	s.t.Helper()
	cmd := exec.Command(Binary(s.t), "serve", "--config", s.Config)
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	if s.log == nil {
		s.log = &syncBuffer{}
	}
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			s.t.Fatalf("emsflow exited during start (%v):\n%s", cmd.ProcessState, s.Log())
		default:
		}
		resp, err := http.Get(s.URL("/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("emsflow not ready after 60s:\n%s", s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL returns the service URL of path.
func (s *Service) URL(path string) string { return "http://" + s.Addr + path }

// Post sends one request body to the event path and returns the status code.
func (s *Service) Post(path, body string) (int, error) {
	resp, err := http.Post(s.URL(path), "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// Kill sends SIGKILL and waits for the process to die.
func (s *Service) Kill() { s.signal(syscall.SIGKILL) }

// Stop sends SIGTERM, waits, and fails the test unless the exit was clean.
func (s *Service) Stop() {
	s.t.Helper()
	cmd := s.signal(syscall.SIGTERM)
	if cmd != nil && !cmd.ProcessState.Success() {
		s.t.Errorf("emsflow exited with %v after SIGTERM", cmd.ProcessState)
	}
}

func (s *Service) signal(sig syscall.Signal) *exec.Cmd {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		s.t.Errorf("emsflow did not exit within 60s of %v", sig)
	}
	return cmd
}

// Restart starts the process again on the same address, configuration and data.
func (s *Service) Restart() {
	s.t.Helper()
	s.start()
}

// Log returns everything the process printed so far.
func (s *Service) Log() string { return s.log.String() }

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
