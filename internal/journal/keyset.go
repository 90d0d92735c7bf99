package journal

import "encoding/binary"

// keySet is a set of digests in one block of memory outside the Go heap (mapKeys), an open
// addressing table probed linearly, holding the first 96 bits of each (setKey). The dedupe
// index holds up to millions of keys for the whole window: on the heap, even in a map without
// pointers that the collector does not scan, they count towards the heap the collector lets
// grow to twice what is live (GOGC=100), so every key cost its own bytes and table slack twice
// over in resident memory. Off the heap they cost their table once, and a dropped slice's table
// goes back to the system at once.
//
// keySet is not safe for concurrent use; dedupe guards it with its mutex.
type keySet struct {
	mem   []byte // slots*keySize bytes; an all-zero slot is empty
	mask  uint64 // slots-1, slots a power of two
	shift uint   // 64-log2(slots), for the slot of a hash
	n     int    // keys held, zero included
	zero  bool   // the all-zero key, which cannot be told from an empty slot, is held
}

// setKey is what the set keeps of a digest: its first 96 bits, three quarters of the memory of
// all 128. A new event is then taken for a duplicate of one of the n events in the window with
// a chance of n/2^96: 5 in 10^23 at 4 million (30,000 events/s over the default 2 minutes), as
// far from a practical concern as the whole digest was.
type setKey [12]byte

func toSetKey(k digest) setKey { return setKey(k[:len(setKey{})]) }

const (
	keySize       = len(setKey{})
	keySetMinSize = 1024 // slots of a new set: 12 KiB
)

func newKeySet() *keySet {
	s := &keySet{}
	s.alloc(keySetMinSize)
	return s
}

func (s *keySet) alloc(slots int) {
	s.mem = mapKeys(slots * keySize)
	s.mask = uint64(slots - 1)
	s.shift = 64
	for n := slots; n > 1; n >>= 1 {
		s.shift--
	}
}

// slot returns where the probe for k starts. Digests are hashes already, but a multiplicative
// mix keeps the table sound for keys that are not (the benchmark's counters).
func (s *keySet) slot(k *setKey) uint64 {
	return (binary.LittleEndian.Uint64(k[:8]) * 0x9E3779B97F4A7C15) >> s.shift
}

func (s *keySet) has(d digest) bool {
	k := toSetKey(d)
	if k == (setKey{}) {
		return s.zero
	}
	for i := s.slot(&k); ; i = (i + 1) & s.mask {
		switch *(*setKey)(s.mem[i*uint64(keySize):]) {
		case k:
			return true
		case setKey{}:
			return false
		}
	}
}

func (s *keySet) add(d digest) {
	k := toSetKey(d)
	if k == (setKey{}) {
		if !s.zero {
			s.zero = true
			s.n++
		}
		return
	}
	if (s.n+1)*4 > int(s.mask+1)*3 { // keep the load at 3/4 or less
		s.grow()
	}
	if s.insert(k) {
		s.n++
	}
}

// insert puts k in its slot and says whether it was new.
func (s *keySet) insert(k setKey) bool {
	for i := s.slot(&k); ; i = (i + 1) & s.mask {
		p := (*setKey)(s.mem[i*uint64(keySize):])
		switch *p {
		case k:
			return false
		case setKey{}:
			*p = k
			return true
		}
	}
}

// grow moves the keys to a table twice the size. A key's slot is the top bits of its mixed
// hash, so a key in slot i of the old table lands in slot 2i or 2i+1 of the new one, or a
// little after: reading the old table in order fills the new one in order, and each stretch of
// the old table read goes back to the system at once (releaseKeys). The two tables then hold
// little more than the new one's size between them, where keeping the old one whole until the
// end made the peak one and a half times that (24 MB rather than 16 at 400k keys).
func (s *keySet) grow() {
	old := s.mem
	s.alloc(2 * len(old) / keySize)
	for start := 0; start < len(old); start += growChunk {
		end := min(start+growChunk, len(old))
		for o := start; o < end; o += keySize {
			if k := *(*setKey)(old[o:]); k != (setKey{}) {
				s.insert(k)
			}
		}
		releaseKeys(old[start:end])
	}
	unmapKeys(old)
}

// growChunk is how much of the old table grow reads before releasing it: a whole number of
// pages and of keys (768 KiB, 192 pages of 4 KiB).
const growChunk = keySize << 16

// bytes is the memory the set holds.
func (s *keySet) bytes() int { return len(s.mem) }

// free returns the set's memory; the set must not be used again.
func (s *keySet) free() {
	if s.mem != nil {
		unmapKeys(s.mem)
		s.mem = nil
	}
}
