package loopback

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAddr: addresses are loopback, below the ephemeral range, listenable, and never repeated.
func TestAddr(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		addr := MustAddr(t)
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		if p := port(t, addr); p < lowest || p >= ephemeralLow() {
			t.Fatalf("%s outside [%d, %d)", addr, lowest, ephemeralLow())
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on the address handed out: %v", err)
		}
		_ = l.Close()
	}
}

// TestOutgoingPortsAreEphemeral checks the premise Addr rests on: the local ports the kernel
// gives outgoing connections all lie in the range Addr stays out of.
func TestOutgoingPortsAreEphemeral(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	for range 200 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if p := port(t, c.LocalAddr().String()); p < ephemeralLow() {
			t.Fatalf("outgoing connection got local port %d, below the ephemeral range's %d", p, ephemeralLow())
		}
		_ = c.Close()
	}
}

// TestPickSkipsBusyAndGiven: a port something listens on is not returned, nor one returned before.
func TestPickSkipsBusyAndGiven(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busy := port(t, l.Addr().String())
	if _, err := pick(busy, busy+1, 5); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("pick of a port in use: %v, want address already in use", err)
	}
	_ = l.Close()
	addr, err := pick(busy, busy+1, 5)
	if err != nil || port(t, addr) != busy {
		t.Fatalf("pick of the freed port: %q, %v", addr, err)
	}
	if _, err := pick(busy, busy+1, 5); err == nil || !strings.Contains(err.Error(), "handed out already") {
		t.Fatalf("second pick of the same port: %v, want handed out already", err)
	}
	if _, err := pick(10, 10, 5); err == nil {
		t.Fatal("pick from an empty range succeeded")
	}
}
