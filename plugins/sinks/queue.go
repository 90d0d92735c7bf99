package sinks

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// record is one queued event. It carries what delivery needs without the journal: the event as
// received, the EMS that sent it, and when it was queued (for resend_timeout and digests).
type record struct {
	// Seq numbers records in queue order, from 1.
	Seq uint64 `json:"seq"`
	// Key is the event's dedupe key (event.Event.Key).
	Key string `json:"key"`
	// At is when the record was appended, in Unix nanoseconds.
	At int64 `json:"at"`
	// EMS is the sending EMS's name.
	EMS string `json:"ems,omitempty"`
	// Event is the event's JSON as received.
	Event json.RawMessage `json:"event"`

	// pos is where the record ends on disk; not stored.
	pos position
}

// position addresses a byte offset in a segment.
type position struct {
	seg   int    // index into queue.segs when the position was taken
	first uint64 // that segment's first sequence number, which survives index shifts
	off   int64  // byte offset
}

// segment is one append-only file, named after the sequence number of its first record.
type segment struct {
	first uint64
	path  string
	size  int64
}

const (
	segmentExt      = ".seg"
	commitFile      = "commit"
	recordHeader    = 8 // uint32 length, uint32 CRC-32C
	maxRecordBytes  = 64 << 20
	defaultSegBytes = 16 << 20
	dedupeWindow    = 16384
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// queue is a small durable FIFO: append-only segment files of length-prefixed, checksummed
// records, and a commit file holding the sequence number of the first undelivered record.
//
// Appends are fsynced before append returns. One reader (the sink's sender) peeks a batch from
// the commit point and acks it once delivered; acking rewrites the commit file atomically and
// deletes segments that hold only delivered records. A torn tail left by a crash is truncated
// at open. A crash between delivery and ack redelivers that batch: delivery is at least once.
//
// The queue remembers the keys of recent records (those still on disk, and the last
// dedupeWindow appended) so that an event the dispatcher hands over twice is queued once.
type queue struct {
	dir      string
	segLimit int64

	mu      sync.Mutex
	segs    []segment
	w       *os.File // the last segment, open for append
	nextSeq uint64
	pending int
	keys    map[string]struct{}
	ring    []string
	ringPos int

	// cursor is the position of the first undelivered record; only the reader moves it.
	cursor position
	acked  uint64 // first undelivered sequence number

	notify chan struct{}
}

// openQueue opens or creates the queue in dir.
func openQueue(dir string, segLimit int64) (*queue, error) {
	if segLimit <= 0 {
		segLimit = defaultSegBytes
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create queue folder: %w", err)
	}
	q := &queue{dir: dir, segLimit: segLimit, nextSeq: 1, keys: map[string]struct{}{}, notify: make(chan struct{}, 1)}
	acked, err := q.readCommit()
	if err != nil {
		return nil, err
	}
	q.acked = acked
	if err := q.load(); err != nil {
		return nil, err
	}
	if len(q.segs) == 0 {
		if err := q.roll(); err != nil {
			return nil, err
		}
	} else {
		last := q.segs[len(q.segs)-1]
		f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, fmt.Errorf("open segment: %w", err)
		}
		q.w = f
	}
	return q, nil
}

func (q *queue) readCommit() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(q.dir, commitFile))
	if errors.Is(err, os.ErrNotExist) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read queue commit: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("queue commit file %s is corrupt: %w", filepath.Join(q.dir, commitFile), err)
	}
	return n, nil
}

// load scans every segment: it finds the cursor, counts pending records, collects keys,
// truncates a torn tail, and deletes segments that are wholly delivered.
func (q *queue) load() error {
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return fmt.Errorf("list queue: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentExt)
		if !ok || e.IsDir() {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		q.segs = append(q.segs, segment{first: first, path: filepath.Join(q.dir, e.Name())})
	}
	slices.SortFunc(q.segs, func(a, b segment) int { return cmpUint(a.first, b.first) })
	cursorSet := false
	for i := range q.segs {
		s := &q.segs[i]
		good, err := scanSegment(s.path, func(r record, start int64) {
			if r.Seq >= q.nextSeq {
				q.nextSeq = r.Seq + 1
			}
			q.remember(r.Key)
			if r.Seq >= q.acked {
				q.pending++
				if !cursorSet {
					q.cursor = position{seg: i, first: s.first, off: start}
					cursorSet = true
				}
			}
		})
		if err != nil {
			return err
		}
		s.size = good
		if fi, err := os.Stat(s.path); err == nil && fi.Size() > good {
			// A torn or corrupt tail from a crash: the records after it were never acknowledged
			// to the dispatcher, which will hand them over again.
			if err := os.Truncate(s.path, good); err != nil {
				return fmt.Errorf("truncate torn queue tail: %w", err)
			}
		}
	}
	if !cursorSet && len(q.segs) > 0 {
		last := len(q.segs) - 1
		q.cursor = position{seg: last, first: q.segs[last].first, off: q.segs[last].size}
	}
	if n := len(q.segs); n > 0 && q.nextSeq < q.segs[n-1].first {
		q.nextSeq = q.segs[n-1].first
	}
	if q.nextSeq < q.acked {
		q.nextSeq = q.acked
	}
	return q.dropDelivered()
}

// scanSegment reads records until the end or the first bad one, calling fn with each record and
// its start offset, and returns the length of the good prefix.
func scanSegment(path string, fn func(r record, start int64)) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var off int64
	for {
		r, n, err := readRecord(br)
		if err != nil {
			return off, nil // end of file, or a torn tail that load truncates
		}
		fn(r, off)
		off += int64(n)
	}
}

// readRecord reads one framed record and returns it with its framed length.
func readRecord(br *bufio.Reader) (record, int, error) {
	var hdr [recordHeader]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return record{}, 0, err
	}
	n := binary.LittleEndian.Uint32(hdr[0:4])
	sum := binary.LittleEndian.Uint32(hdr[4:8])
	if n == 0 || n > maxRecordBytes {
		return record{}, 0, errors.New("bad record length")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return record{}, 0, err
	}
	if crc32.Checksum(body, crcTable) != sum {
		return record{}, 0, errors.New("bad record checksum")
	}
	var r record
	if err := json.Unmarshal(body, &r); err != nil {
		return record{}, 0, fmt.Errorf("decode record: %w", err)
	}
	return r, recordHeader + int(n), nil
}

func (q *queue) remember(key string) {
	if _, ok := q.keys[key]; ok {
		return
	}
	if len(q.ring) < dedupeWindow {
		q.ring = append(q.ring, key)
	} else {
		delete(q.keys, q.ring[q.ringPos])
		q.ring[q.ringPos] = key
		q.ringPos = (q.ringPos + 1) % dedupeWindow
	}
	q.keys[key] = struct{}{}
}

// roll starts a new segment named after the next sequence number.
func (q *queue) roll() error {
	if q.w != nil {
		if err := q.w.Close(); err != nil {
			return fmt.Errorf("close segment: %w", err)
		}
		q.w = nil
	}
	path := filepath.Join(q.dir, fmt.Sprintf("%020d%s", q.nextSeq, segmentExt))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	if err := syncDir(q.dir); err != nil {
		f.Close()
		return err
	}
	q.w = f
	q.segs = append(q.segs, segment{first: q.nextSeq, path: path})
	return nil
}

// append queues one event durably. It returns false, without writing, when the key was queued
// recently.
func (q *queue) append(key, ems string, at int64, ev json.RawMessage) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.w == nil {
		return false, errors.New("queue is closed")
	}
	if _, dup := q.keys[key]; dup {
		return false, nil
	}
	body, err := json.Marshal(record{Seq: q.nextSeq, Key: key, At: at, EMS: ems, Event: ev})
	if err != nil {
		return false, fmt.Errorf("encode queue record: %w", err)
	}
	if len(body) > maxRecordBytes {
		return false, fmt.Errorf("event of %d bytes is too large to queue", len(body))
	}
	if last := q.segs[len(q.segs)-1]; last.size > 0 && last.size+int64(len(body)) > q.segLimit {
		if err := q.roll(); err != nil {
			return false, err
		}
	}
	buf := make([]byte, recordHeader+len(body))
	binary.LittleEndian.PutUint32(buf[0:4], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[4:8], crc32.Checksum(body, crcTable))
	copy(buf[recordHeader:], body)
	last := &q.segs[len(q.segs)-1]
	if _, err := q.w.Write(buf); err != nil {
		// Cut off a partial write so that later appends stay readable.
		_ = q.w.Truncate(last.size)
		return false, fmt.Errorf("append to queue: %w", err)
	}
	if err := q.w.Sync(); err != nil {
		_ = q.w.Truncate(last.size)
		return false, fmt.Errorf("sync queue: %w", err)
	}
	last.size += int64(len(buf))
	q.nextSeq++
	q.pending++
	q.remember(key)
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return true, nil
}

// depth returns the number of undelivered records.
func (q *queue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

// peek returns up to n undelivered records from the commit point, without consuming them.
func (q *queue) peek(n int) ([]record, error) {
	q.mu.Lock()
	segs := slices.Clone(q.segs)
	cur := q.cursor
	q.mu.Unlock()
	var out []record
	for si := cur.seg; si < len(segs) && len(out) < n; si++ {
		off := int64(0)
		if si == cur.seg {
			off = cur.off
		}
		if off >= segs[si].size {
			continue
		}
		f, err := os.Open(segs[si].path)
		if err != nil {
			return nil, fmt.Errorf("open segment: %w", err)
		}
		br := bufio.NewReader(io.NewSectionReader(f, off, segs[si].size-off))
		for len(out) < n && off < segs[si].size {
			r, size, err := readRecord(br)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("read queue %s at %d: %w", segs[si].path, off, err)
			}
			off += int64(size)
			r.pos = position{seg: si, first: segs[si].first, off: off}
			out = append(out, r)
		}
		f.Close()
	}
	return out, nil
}

// ack marks a batch returned by peek as delivered.
func (q *queue) ack(batch []record) error {
	if len(batch) == 0 {
		return nil
	}
	r := batch[len(batch)-1]
	if err := writeFileSync(filepath.Join(q.dir, commitFile), []byte(strconv.FormatUint(r.Seq+1, 10)+"\n")); err != nil {
		return fmt.Errorf("commit queue: %w", err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	// Segments are identified by their first sequence number, as ack may follow a roll.
	si := slices.IndexFunc(q.segs, func(s segment) bool { return s.first == r.pos.first })
	if si < 0 {
		return fmt.Errorf("ack: segment %d is gone", r.pos.first)
	}
	q.pending = max(0, q.pending-len(batch))
	q.acked = r.Seq + 1
	q.cursor = position{seg: si, first: r.pos.first, off: r.pos.off}
	return q.dropDelivered()
}

// dropDelivered deletes segments before the cursor's; the last segment is always kept.
func (q *queue) dropDelivered() error {
	if q.cursor.seg == 0 {
		return nil
	}
	for _, s := range q.segs[:q.cursor.seg] {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove delivered segment: %w", err)
		}
	}
	q.segs = slices.Delete(q.segs, 0, q.cursor.seg)
	q.cursor.seg = 0
	return nil
}

// close releases the append file. Records stay on disk for the next open.
func (q *queue) close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.w == nil {
		return nil
	}
	err := q.w.Close()
	q.w = nil
	return err
}

// writeFileSync replaces path atomically and durably.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder: %w", err)
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
