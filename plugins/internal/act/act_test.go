package act

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emsflow/emsflow/plugins"
)

func TestJoin(t *testing.T) {
	perm := plugins.Permanent(errors.New("FAIL: name taken"))
	retry := errors.New("connection refused")
	tests := []struct {
		name      string
		errs      []error
		nilWant   bool
		permanent bool
		contains  []string
	}{
		{"none", []error{nil, nil}, true, false, nil},
		{"all permanent", []error{perm, perm}, false, true, []string{"name taken"}},
		{"one retryable wins", []error{perm, retry}, false, false, []string{"connection refused", "name taken"}},
		{"retryable only", []error{retry}, false, false, []string{"connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Join(tt.errs...)
			if (err == nil) != tt.nilWant {
				t.Fatalf("Join: %v", err)
			}
			if err == nil {
				return
			}
			if plugins.IsPermanent(err) != tt.permanent {
				t.Errorf("permanent: got %v, want %v (%v)", plugins.IsPermanent(err), tt.permanent, err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q lacks %q", err, s)
				}
			}
		})
	}
}

// TestLocks: one key is held by one goroutine at a time; the map is emptied after use.
func TestLocks(t *testing.T) {
	var l Locks
	var wg sync.WaitGroup
	inside, max := 0, 0
	var mu sync.Mutex
	for range 50 {
		wg.Go(func() {
			unlock := l.Lock("k")
			mu.Lock()
			inside++
			max = maxOf(max, inside)
			mu.Unlock()
			mu.Lock()
			inside--
			mu.Unlock()
			unlock()
		})
	}
	wg.Wait()
	if max != 1 {
		t.Errorf("%d holders at once, want 1", max)
	}
	if len(l.m) != 0 {
		t.Errorf("%d keys left", len(l.m))
	}
}

func maxOf(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// TestMetricsReuseRegistration: a plugin rebuilt on the same registry counts on the same
// collectors instead of failing to register.
func TestMetricsReuseRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	m1 := NewMetrics(reg, "x")
	m2 := NewMetrics(reg, "x")
	m1.Action("push")
	m2.Action("push")
	if got := m1.Actions("push"); got != 2 {
		t.Fatalf("actions: got %v, want 2 on the shared collector", got)
	}
}
