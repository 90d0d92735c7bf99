// Package loopback hands out loopback TCP addresses for tests and tools that must name an
// address before the process that will listen on it starts: emsflow's configuration names the
// EMS simulators' API addresses before they run, a test restarts emsflow or a simulator on the
// address it had.
//
// The usual trick, listening on port 0 and closing, returns a port from the kernel's ephemeral
// range, and that range is also where every outgoing connection takes its local port: between
// the close and the real listen, any client on the machine (emsflow dialling an EMS, a parallel
// test) can take it, and the listen fails with "address already in use". Addr picks from below
// the ephemeral range instead, where the kernel never assigns a port by itself, checks that
// nothing listens there, and never hands the same port out twice in one process.
package loopback

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port Addr hands out: clear of the well-known and registered ports that
// system services commonly listen on.
const lowest = 10000

// defaultEphemeral is Linux's default ephemeral range, used where the running kernel's cannot
// be read; other systems start theirs higher (49152).
var defaultEphemeral = [2]int{32768, 60999}

// minPorts is the fewest ports a range outside the ephemeral one must offer to be used.
const minPorts = 1000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Addr returns "127.0.0.1:<port>" for a port that nothing listened on a moment ago, that the
// kernel does not give to outgoing connections, and that no earlier call in this process
// returned.
//
// Where the kernel's ephemeral range leaves too few ports on either side (some containers give
// it 1024-65535), Addr falls back to a port the kernel picks, which is what it was meant to
// avoid, but still works most of the time.
func Addr() (string, error) {
	lo, hi, ok := outside(ephemeral())
	if !ok {
		return kernelPick()
	}
	return pick(lo, hi, 200)
}

// outside returns the range of ports Addr uses given the ephemeral range [elo, ehi]: below it
// if there is room, else above it.
func outside(elo, ehi int) (lo, hi int, ok bool) {
	switch {
	case elo-lowest >= minPorts:
		return lowest, elo, true
	case 65536-(ehi+1) >= minPorts:
		return max(ehi+1, lowest), 65536, true
	}
	return 0, 0, false
}

// kernelPick returns a port the kernel chose, closed again.
func kernelPick() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// pick tries up to tries random ports in [lo, hi).
func pick(lo, hi, tries int) (string, error) {
	if hi <= lo {
		return "", fmt.Errorf("loopback: no ports between %d and %d", lo, hi)
	}
	mu.Lock()
	defer mu.Unlock()
	var last error
	for range tries {
		port := lo + rand.IntN(hi-lo)
		if given[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			last = err
			continue
		}
		if err := l.Close(); err != nil {
			return "", err
		}
		given[port] = true
		return addr, nil
	}
	if last == nil {
		last = errors.New("every port tried was handed out already")
	}
	return "", fmt.Errorf("loopback: no free port between %d and %d after %d tries: %w", lo, hi, tries, last)
}

// ephemeral returns the first and last port of the kernel's ephemeral range.
func ephemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeral[0], defaultEphemeral[1]
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultEphemeral[0], defaultEphemeral[1]
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo > hi {
		return defaultEphemeral[0], defaultEphemeral[1]
	}
	return lo, hi
}

// TB is the part of testing.TB that MustAddr needs.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// MustAddr is Addr for tests: it fails t if no address can be found.
func MustAddr(t TB) string {
	t.Helper()
	addr, err := Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
