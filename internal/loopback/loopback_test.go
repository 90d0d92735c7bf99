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
		elo, ehi := ephemeral()
		if p := port(t, addr); p < lowest || (p >= elo && p <= ehi) {
			t.Fatalf("%s below %d or in the ephemeral range [%d, %d]", addr, lowest, elo, ehi)
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
		elo, ehi := ephemeral()
		if p := port(t, c.LocalAddr().String()); p < elo || p > ehi {
			t.Fatalf("outgoing connection got local port %d, outside the ephemeral range [%d, %d]", p, elo, ehi)
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

// TestOutside: below the ephemeral range when it leaves room, else above it, else nothing.
func TestOutside(t *testing.T) {
	for _, tc := range []struct {
		elo, ehi, lo, hi int
		ok               bool
	}{
		{32768, 60999, lowest, 32768, true}, // Linux's default
		{49152, 65535, lowest, 49152, true}, // the IANA range
		{1024, 40000, 40001, 65536, true},   // room above only
		{1024, 65000, 0, 0, false},          // room on neither side
		{10500, 65000, 0, 0, false},
	} {
		lo, hi, ok := outside(tc.elo, tc.ehi)
		if lo != tc.lo || hi != tc.hi || ok != tc.ok {
			t.Errorf("outside(%d, %d) = %d, %d, %v; want %d, %d, %v", tc.elo, tc.ehi, lo, hi, ok, tc.lo, tc.hi, tc.ok)
		}
	}
}
