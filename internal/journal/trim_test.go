package journal

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
)

// TestTrimRemovesWholeBlocks: past max_bytes, the embedded journal drops its oldest events a
// whole block file at a time and keeps at least max_bytes: the first event held is the first
// record of the oldest block file (nats-server's own limit, dropping one message per message
// stored, leaves a partly emptied block), and every event was stored. The stream has no byte
// limit of its own, and its block files are trimBlockSize, not nats-server's 8 MB for a
// byte-limited stream.
func TestTrimRemovesWholeBlocks(t *testing.T) {
	const maxBytes = trimMinBytes
	dir := t.TempDir()
	var logs bytes.Buffer
	j, err := Open(t.Context(), Config{DataDir: dir, DedupeWindow: time.Minute, MaxBytes: maxBytes}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	info, err := j.Stream().Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; c.MaxBytes != -1 || c.MaxMsgsPerSubject != noSubjectLimit {
		t.Errorf("stream max_bytes %d, max per subject %d; want none and %d", c.MaxBytes, c.MaxMsgsPerSubject, int64(noSubjectLimit))
	}

	// 64 KiB messages, 24 MiB more than max_bytes: six blocks' worth to trim. They go straight
	// to the stream: the trimmer does not look into them.
	body := make([]byte, 64<<10)
	publish := func(n int) {
		t.Helper()
		for range n {
			if err := j.publish(t.Context(), &nats.Msg{Subject: Subject("ems1", event.InStreamCreated), Data: body}); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := (maxBytes + 24<<20) / len(body)
	publish(n)

	msgs := filepath.Join(dir, "jetstream", globalAccount, "streams", "EMS_EVENTS", "msgs")
	within := maxBytes + trimBlockSize + 2*uint64(len(body)) // a block over, and a record's headers
	var first, oldest uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		if info, err = j.Stream().Info(t.Context()); err != nil {
			t.Fatal(err)
		}
		first, oldest = info.State.FirstSeq, oldestBlockStart(t, msgs)
		if (first == oldest && info.State.Bytes < within) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := info.State
	if s.LastSeq != uint64(n) || s.NumDeleted != 0 {
		t.Errorf("last sequence %d with %d deleted, want %d with none", s.LastSeq, s.NumDeleted, n)
	}
	if first != oldest {
		t.Errorf("first event held is %d, the oldest block file starts at %d: not trimmed by whole blocks", first, oldest)
	}
	if s.Bytes < maxBytes || s.Bytes >= within {
		t.Errorf("stream holds %d bytes, want max_bytes (%d) up to one %d-byte block more", s.Bytes, maxBytes, trimBlockSize)
	}
	if s.FirstSeq < 2 {
		t.Errorf("first sequence %d: nothing was trimmed", s.FirstSeq)
	}
	if big := largestBlock(t, msgs); big > trimBlockSize || big < trimBlockSize-2*int64(len(body)) {
		t.Errorf("largest block file %d bytes, want %d (up to a record less)", big, trimBlockSize)
	}

	// Block files it cannot read: within the slack nothing is purged; past it the oldest events
	// go regardless, down to max_bytes; the operator is told once. (logs is read once the
	// trimmer, its only writer, stopped.)
	j.trim.stop()
	if strings.Contains(logs.String(), "cannot trim") {
		t.Errorf("trimming warned: %s", logs.String())
	}
	j.trim.dir = filepath.Join(dir, "elsewhere")
	for range 2 {
		if err := j.trim.trimOnce(t.Context()); err == nil {
			t.Error("trimOnce without block files: want an error")
		}
	}
	if info, err = j.Stream().Info(t.Context()); err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq != s.FirstSeq {
		t.Errorf("first sequence %d after a failed trim within the slack, want %d", info.State.FirstSeq, s.FirstSeq)
	}
	publish(int(trimSlack(maxBytes)) / len(body))
	if err := j.trim.trimOnce(t.Context()); err != nil {
		t.Errorf("trimOnce past the slack: %v", err)
	}
	if info, err = j.Stream().Info(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b := info.State.Bytes; b < maxBytes-2*uint64(len(body)) || b > maxBytes+2*uint64(len(body)) {
		t.Errorf("past the slack without block files, the stream holds %d bytes after a trim, want max_bytes (%d) within a record", b, maxBytes)
	}
	if n := strings.Count(logs.String(), "cannot trim"); n != 1 {
		t.Errorf("warned %d times about block files it cannot read, want once: %s", n, logs.String())
	}
}

// TestTrimUpgrade: a stream created with nats-server's own byte limit (an older emsflow, or a
// smaller max_bytes) loses it when reopened by a journal that trims, and from the next start
// on is written in trimBlockSize blocks.
func TestTrimUpgrade(t *testing.T) {
	dir := t.TempDir()
	open := func(maxBytes int64) *Journal {
		t.Helper()
		j, err := Open(t.Context(), Config{DataDir: dir, DedupeWindow: time.Minute, MaxBytes: maxBytes}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	limits := func(j *Journal) (int64, int64) {
		t.Helper()
		info, err := j.Stream().Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.Config.MaxBytes, info.Config.MaxMsgsPerSubject
	}
	j := open(trimMinBytes - 1)
	if b, per := limits(j); b != trimMinBytes-1 || per != -1 {
		t.Errorf("below trimMinBytes: stream max_bytes %d, per subject %d; want %d, none", b, per, trimMinBytes-1)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = open(trimMinBytes)
	if b, per := limits(j); b != -1 || per != noSubjectLimit {
		t.Errorf("reopened to trim: stream max_bytes %d, per subject %d; want none, %d", b, per, int64(noSubjectLimit))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = open(trimMinBytes)
	t.Cleanup(func() { _ = j.Close() })
	body := make([]byte, 64<<10)
	for range 3 * trimBlockSize / len(body) {
		if err := j.publish(t.Context(), &nats.Msg{Subject: Subject("ems1", event.InStreamCreated), Data: body}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := filepath.Join(dir, "jetstream", globalAccount, "streams", "EMS_EVENTS", "msgs")
	if big := largestBlock(t, msgs); big > trimBlockSize {
		t.Errorf("largest block file %d bytes after a restart, want at most %d", big, trimBlockSize)
	}
}

// largestBlock returns the size of the largest block file in dir.
func largestBlock(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := blockFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var big int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		big = max(big, fi.Size())
	}
	return big
}

// oldestBlockStart returns the first message sequence of the lowest-numbered block file.
func oldestBlockStart(t *testing.T, dir string) uint64 {
	t.Helper()
	files, err := blockFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := firstLive(files[0], make([]byte, trimScan))
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func TestLimitStream(t *testing.T) {
	tests := []struct {
		max        int64
		embedded   bool
		bytes, per int64
	}{
		{1 << 30, true, -1, noSubjectLimit},
		{64 << 20, true, -1, noSubjectLimit},
		{64<<20 - 1, true, 64<<20 - 1, 0}, // too small for two whole blocks in the slack
		{1 << 30, false, 1 << 30, 0},      // an external server enforces it
		{0, true, -1, 0},
		{0, false, -1, 0},
	}
	for _, tt := range tests {
		var sc jetstream.StreamConfig
		limitStream(&sc, tt.max, tt.embedded)
		if sc.MaxBytes != tt.bytes || sc.MaxMsgsPerSubject != tt.per {
			t.Errorf("limitStream(%d, embedded %v): max_bytes %d, per subject %d; want %d, %d", tt.max, tt.embedded, sc.MaxBytes, sc.MaxMsgsPerSubject, tt.bytes, tt.per)
		}
	}
}

// record encodes a block record of size bytes as nats-server writes its header; a size under a
// header's still gets a whole header, with size as its length.
func record(seq uint64, headers bool, size int) []byte {
	b := make([]byte, max(size, recordHeaderLen))
	rl := uint32(size)
	if headers {
		rl |= recordHeaderBit
	}
	binary.LittleEndian.PutUint32(b, rl)
	binary.LittleEndian.PutUint64(b[4:], seq)
	return b
}

func TestFirstLiveRecord(t *testing.T) {
	const tomb, erased = 1 << 62, 1 << 63
	tests := []struct {
		name string
		b    []byte
		want uint64
	}{
		{"message", record(7, false, 40), 7},
		{"message with headers", record(7, true, 40), 7},
		{"tombstones first", slices.Concat(record(3|tomb, false, 30), record(5|erased, true, 50), record(9, true, 40)), 9},
		{"only tombstones", slices.Concat(record(3|tomb, false, 30), record(4|tomb, false, 30)), 0},
		{"length past the scan", slices.Concat(record(3|tomb, false, 30)[:25]), 0},
		{"length under a header", slices.Concat(record(3|tomb, false, 10), record(9, false, 40)), 0},
		{"short", record(7, false, 40)[:21], 0},
		{"empty", nil, 0},
	}
	for _, tt := range tests {
		if got := firstLiveRecord(tt.b); got != tt.want {
			t.Errorf("%s: firstLiveRecord = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestBlockStart: the purge point is the last block start in (first, want]; block files out of
// sequence order (a layout the trimmer misreads) are an error, not a guess.
func TestBlockStart(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, recs ...[]byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), slices.Concat(recs...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("1.blk", record(1, true, 100))
	write("2.blk", record(50|1<<62, false, 30), record(100, true, 100)) // a tombstone first
	write("10.blk", record(200, true, 100))                             // sorted by number, not name
	write("3.blk", record(150, true, 100))
	write("index.db", []byte("not a block"))
	tests := []struct{ first, want, got uint64 }{
		{1, 99, 0},
		{1, 100, 100},
		{1, 199, 150},
		{1, 1000, 200},
		{150, 199, 0}, // the oldest held already starts there
		{150, 1000, 200},
	}
	for _, tt := range tests {
		got, err := blockStart(dir, tt.first, tt.want)
		if err != nil || got != tt.got {
			t.Errorf("blockStart(first %d, want %d) = %d, %v; want %d", tt.first, tt.want, got, err, tt.got)
		}
	}

	write("11.blk", record(120, true, 100))
	if got, err := blockStart(dir, 1, 1000); err == nil {
		t.Errorf("blocks out of order: blockStart = %d, want an error", got)
	}
	if _, err := blockStart(filepath.Join(dir, "missing"), 1, 1000); err == nil {
		t.Error("missing folder: want an error")
	}
}
