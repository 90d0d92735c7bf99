package plugintest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// LedgerConfig configures a Ledger.
type LedgerConfig struct {
	// Path of the effects file: one event key per line, each at most once.
	Path string `json:"path"`
	// CallsPath, when set, gets one line per Handle call, duplicates included.
	CallsPath string `json:"calls_path"`
	// GateFile, when set, makes Handle fail (retryably) until that file exists, so a test can
	// accept events and kill the process before they are handled.
	GateFile string `json:"gate_file"`
	// Events to subscribe to; default inStreamCreated.
	Events []string `json:"events"`
}

// Ledger is an idempotent file-backed plugin for crash tests: it appends each event's key to a
// file once, checking the file first, as a real plugin checks EMS state before acting.
type Ledger struct {
	name string
	cfg  LedgerConfig
	mu   sync.Mutex
	seen map[string]bool
}

var (
	_ plugins.Plugin  = (*Ledger)(nil)
	_ plugins.Starter = (*Ledger)(nil)
)

// LedgerFactory builds a Ledger for the registry of a test build.
func LedgerFactory(name string, params json.RawMessage, deps plugins.Deps) (plugins.Plugin, error) {
	var cfg LedgerConfig
	if err := plugins.DecodeParams(params, &cfg); err != nil {
		return nil, err
	}
	if cfg.Path == "" {
		return nil, errors.New("path is required")
	}
	for _, p := range []*string{&cfg.Path, &cfg.CallsPath, &cfg.GateFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(deps.ConfigDir, *p)
		}
	}
	if len(cfg.Events) == 0 {
		cfg.Events = []string{event.InStreamCreated}
	}
	return &Ledger{name: name, cfg: cfg, seen: map[string]bool{}}, nil
}

// Name returns the instance name.
func (l *Ledger) Name() string { return l.name }

// Events returns the subscribed events.
func (l *Ledger) Events() []string { return l.cfg.Events }

// Start loads the keys already in the file.
func (l *Ledger) Start(context.Context) error {
	keys, err := ReadLines(l.cfg.Path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, k := range keys {
		l.seen[k] = true
	}
	return nil
}

// Handle records the event key once.
func (l *Ledger) Handle(_ context.Context, ev *event.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.CallsPath != "" {
		if err := appendLine(l.cfg.CallsPath, ev.Key()); err != nil {
			return err
		}
	}
	if l.cfg.GateFile != "" {
		if _, err := os.Stat(l.cfg.GateFile); err != nil {
			return fmt.Errorf("gate %s closed", l.cfg.GateFile)
		}
	}
	if l.seen[ev.Key()] {
		return nil
	}
	if err := appendLine(l.cfg.Path, ev.Key()); err != nil {
		return err
	}
	l.seen[ev.Key()] = true
	return nil
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadLines returns the non-empty lines of a file.
func ReadLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}
