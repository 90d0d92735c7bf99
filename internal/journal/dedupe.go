package journal

import (
	"sync"
	"time"
)

// dedupeSlices is how many slices the dedupe window is cut into. A key is forgotten between one
// window and one window and a slice after it was stored. A new slice's set starts small: sizing
// it from the last one's held memory for keys that never came when a burst ended.
const dedupeSlices = 4

// digest is an event's dedupe key (event.Digest): 128 bits, of which the index of the window
// keeps 96 (setKey), so that two distinct events sharing one is not a practical concern even
// with millions of keys in the window.
type digest = [16]byte

// dedupe remembers the digests of the events stored within the dedupe window, so a duplicate
// POST is acknowledged without being stored again. On the embedded server it replaces
// JetStream's message-id index, which keeps about 100 bytes and three heap objects per event in
// the window (the id string, an entry, map and array slots): 200 MB at 17k events/s over the
// default 2 minutes, all of it scanned by every GC cycle. Here a key is 12 bytes of the digest
// in a table off the Go heap (keySet), 16 to 32 bytes an event depending on how full the table
// is (31.5 at 400k keys in BenchmarkDedupeClaim), which the GC neither scans nor counts towards
// the heap it lets grow.
//
// A key is claimed before its event is published and released when the server answered. A
// second POST of an event whose publish is still in flight (EMS retrying after a slow answer)
// waits for that publish instead of storing the event a second time.
type dedupe struct {
	span time.Duration // one slice of the window

	mu      sync.Mutex
	slices  [dedupeSlices + 1]dedupeSlice // a ring, cur the newest
	cur     int
	pending map[digest]*flight
}

type dedupeSlice struct {
	start time.Time
	keys  *keySet
}

// flight is one publish in progress. done is closed once err is set.
type flight struct {
	done chan struct{}
	err  error
}

func newDedupe(window time.Duration, now time.Time) *dedupe {
	d := &dedupe{span: window / dedupeSlices, pending: map[digest]*flight{}}
	d.reset(now)
	return d
}

func (d *dedupe) reset(now time.Time) {
	for i := range d.slices {
		d.slices[i].drop()
	}
	d.cur = 0
	d.slices[0] = dedupeSlice{start: now, keys: newKeySet()}
}

func (s *dedupeSlice) drop() {
	if s.keys != nil {
		s.keys.free()
	}
	*s = dedupeSlice{}
}

// rotate starts new slices until the newest one covers now, dropping the oldest.
func (d *dedupe) rotate(now time.Time) {
	if now.Sub(d.slices[d.cur].start) >= time.Duration(len(d.slices))*d.span {
		d.reset(now) // idle for longer than the window: nothing is left to remember
		return
	}
	for now.Sub(d.slices[d.cur].start) >= d.span {
		last := d.slices[d.cur]
		d.cur = (d.cur + 1) % len(d.slices)
		d.slices[d.cur].drop()
		d.slices[d.cur] = dedupeSlice{start: last.start.Add(d.span), keys: newKeySet()}
	}
}

// claim looks k up. A nil flight means k was stored within the window: the event is a
// duplicate. Otherwise owner says whether the caller must publish the event and then call
// finish; a caller that is not the owner waits for f.done, and publishes itself (claiming again)
// if that publish failed.
func (d *dedupe) claim(k digest, now time.Time) (f *flight, owner bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f, ok := d.pending[k]; ok {
		return f, false
	}
	d.rotate(now)
	for i := range d.slices {
		if ks := d.slices[i].keys; ks != nil && ks.has(k) {
			return nil, false
		}
	}
	f = &flight{done: make(chan struct{})}
	d.pending[k] = f
	return f, true
}

// finish ends the owner's publish of k: on success k is remembered for the window, on failure
// it is released, so that a retry publishes it again.
func (d *dedupe) finish(k digest, f *flight, err error, now time.Time) {
	d.mu.Lock()
	delete(d.pending, k)
	if err == nil {
		d.add(k, now)
	}
	d.mu.Unlock()
	f.err = err
	close(f.done)
}

// remember records a key stored before this process started (read back from the stream).
func (d *dedupe) remember(k digest, now time.Time) {
	d.mu.Lock()
	d.add(k, now)
	d.mu.Unlock()
}

func (d *dedupe) add(k digest, now time.Time) {
	d.rotate(now)
	d.slices[d.cur].keys.add(k)
}

// len returns how many keys are remembered, expired ones still held included.
func (d *dedupe) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.pending)
	for i := range d.slices {
		if ks := d.slices[i].keys; ks != nil {
			n += ks.n
		}
	}
	return n
}

// bytes returns the memory the remembered keys hold.
func (d *dedupe) bytes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for i := range d.slices {
		if ks := d.slices[i].keys; ks != nil {
			n += ks.bytes()
		}
	}
	return n
}

// close returns the keys' memory; the index must not be used again.
func (d *dedupe) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.slices {
		d.slices[i].drop()
	}
}
