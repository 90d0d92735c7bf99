package journal

import (
	"crypto/rand"
	"encoding/binary"
	"testing"
)

// TestKeySetMatchesMap checks the off-heap set against a Go map over random digests, counters
// (keys that are not hashes), a repeated key and the all-zero digest, through several growths.
func TestKeySetMatchesMap(t *testing.T) {
	s := newKeySet()
	defer s.free()
	want := map[digest]bool{}
	add := func(k digest) {
		s.add(k)
		want[k] = true
	}
	for i := range 20000 {
		var k digest
		if i%2 == 0 {
			_, _ = rand.Read(k[:])
		} else {
			binary.LittleEndian.PutUint64(k[:], uint64(i))
		}
		add(k)
		if i%1000 == 0 {
			add(k) // again: no second copy
		}
	}
	add(digest{})
	add(digest{})
	if s.n != len(want) {
		t.Fatalf("set holds %d keys, want %d", s.n, len(want))
	}
	if slots := s.bytes() / keySize; s.n*4 > slots*3 || slots < keySetMinSize*16 {
		t.Fatalf("%d keys in %d slots: the set did not grow as it filled", s.n, slots)
	}
	for k := range want {
		if !s.has(k) {
			t.Fatalf("key %x added but not found", k)
		}
	}
	for i := range 20000 {
		var k digest
		_, _ = rand.Read(k[:])
		if s.has(k) != want[k] {
			t.Fatalf("has(%x) = %v, want %v", k, s.has(k), want[k])
		}
		binary.LittleEndian.PutUint64(k[:], uint64(i))
		binary.LittleEndian.PutUint64(k[8:], 1) // a counter key never added
		if s.has(k) {
			t.Fatalf("has(%x) = true for a key never added", k)
		}
	}
	empty := newKeySet()
	defer empty.free()
	if empty.has(digest{}) || empty.has(digest{1}) {
		t.Fatal("an empty set holds keys")
	}
}
