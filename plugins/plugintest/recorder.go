// Package plugintest holds plugins for tests of the dispatcher and of the whole service: an
// in-memory Recorder whose behaviour a test scripts, and a file-backed idempotent Ledger that
// survives a process kill.
package plugintest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// Recorder is a plugin that records every Handle call and answers what Script says.
type Recorder struct {
	name   string
	events []string
	// Script decides the outcome of a call; attempt counts calls for the event's key, from 1.
	// Nil means success.
	Script func(ctx context.Context, ev *event.Event, attempt int) error
	// Key, when set, makes the Recorder a plugins.Keyer.
	Key func(ev *event.Event) string

	mu       sync.Mutex
	attempts map[string]int
	handled  []*event.Event
	notify   chan struct{}
}

var _ plugins.Plugin = (*Recorder)(nil)

// NewRecorder returns a Recorder subscribed to events.
func NewRecorder(name string, events ...string) *Recorder {
	return &Recorder{name: name, events: events, attempts: map[string]int{}, notify: make(chan struct{}, 1)}
}

// Name returns the instance name.
func (r *Recorder) Name() string { return r.name }

// Events returns the subscribed events.
func (r *Recorder) Events() []string { return r.events }

// Handle records the call and returns Script's answer; successful events are kept in order.
func (r *Recorder) Handle(ctx context.Context, ev *event.Event) error {
	r.mu.Lock()
	r.attempts[ev.Key()]++
	n := r.attempts[ev.Key()]
	script := r.Script
	r.mu.Unlock()
	defer func() { // deferred, so a panicking script still wakes Wait
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}()
	var err error
	if script != nil {
		err = script(ctx, ev, n)
	}
	if err == nil {
		r.mu.Lock()
		r.handled = append(r.handled, ev)
		r.mu.Unlock()
	}
	return err
}

// Handled returns the events handled successfully, in completion order.
func (r *Recorder) Handled() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.handled)
}

// Attempts returns how many times the event with key was handed to the plugin.
func (r *Recorder) Attempts(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[key]
}

// Calls returns the total number of Handle calls.
func (r *Recorder) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.attempts {
		n += c
	}
	return n
}

// Wait blocks until cond holds, checking after every Handle call, or until ctx ends.
func (r *Recorder) Wait(ctx context.Context, cond func(*Recorder) bool) error {
	for {
		if cond(r) {
			return nil
		}
		select {
		case <-r.notify:
		case <-ctx.Done():
			return fmt.Errorf("plugin %s: condition not met: %w", r.name, context.Cause(ctx))
		}
	}
}

// OrderKey implements plugins.Keyer when Key is set.
func (r *Recorder) OrderKey(ev *event.Event) string {
	if r.Key == nil {
		return ""
	}
	return r.Key(ev)
}
