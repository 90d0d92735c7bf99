package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The embedded journal enforces max_bytes itself, a whole block file at a time.
//
// Left to nats-server, a stream at its byte limit drops its oldest message for each one stored,
// and each drop loads that message's whole block (8 MB), held only weakly between drops, so a
// full journal carried a second block and its garbage (peak RSS 94 against 64 MB, journal only
// at saturation with a 256 MiB max_bytes, builds alternated). Purging up to the first message of
// a block file instead deletes whole blocks: nothing is loaded while their per-subject counts are
// in memory (nats-server keeps them two minutes after a block's last use; an older block is read
// once to rebuild them), and no tombstone is written.
//
// Block boundaries are not part of nats-server's API, so the trimmer reads them from the block
// files: each record starts with its length (4 bytes, little endian, top bit = has headers) and
// its sequence (8 bytes, top two bits = tombstone or erased). A misread can only make a purge
// unaligned (slower), never remove more: the purge sequence is bounded by the excess the stream
// state reports, at its mean message size. The stream keeps its own limit, trimSlack above
// max_bytes, for bursts between two checks and for a layout the trimmer cannot read.

const (
	// trimMinBytes is the smallest max_bytes the trimmer handles: its slack (an eighth) must hold
	// two whole blocks, 8 MB each from 32 MB up, so that the oldest block is wholly over max_bytes
	// before nats-server's own limit acts.
	trimMinBytes = 128 << 20
	// trimInterval is how often the trimmer compares the stream's size with max_bytes.
	trimInterval = 100 * time.Millisecond
	// trimScan bounds how much of a block's start is read to find its first live message.
	trimScan = 64 << 10

	recordHeaderLen = 22      // length, sequence, timestamp, subject length
	recordHeaderBit = 1 << 31 // in the length: the record has NATS headers
	recordDeadBits  = 3 << 62 // in the sequence: a tombstone or an erased message
)

// streamLimit is the byte limit given to the stream: max_bytes itself, or max_bytes and its
// slack when the embedded journal trims. External servers enforce max_bytes themselves.
func streamLimit(maxBytes int64, embedded bool) int64 {
	if !trims(maxBytes, embedded) {
		return orUnlimited(maxBytes)
	}
	return maxBytes + trimSlack(maxBytes)
}

func trims(maxBytes int64, embedded bool) bool { return embedded && maxBytes >= trimMinBytes }

// trimSlack is how far over max_bytes the stream may grow before nats-server's own limit acts.
func trimSlack(maxBytes int64) int64 { return maxBytes / 8 }

// trimmer keeps the embedded event stream at max_bytes.
type trimmer struct {
	j      *Journal
	dir    string // the stream's block files
	max    uint64
	slack  uint64
	cancel context.CancelFunc
	done   chan struct{}
	warned bool // about trimming that does not happen, once
}

func (j *Journal) startTrimmer() {
	ctx, cancel := context.WithCancel(context.Background())
	t := &trimmer{
		j:      j,
		dir:    filepath.Join(j.store, "jetstream", globalAccount, "streams", j.cfg.Stream, "msgs"),
		max:    uint64(j.cfg.MaxBytes),
		slack:  uint64(trimSlack(j.cfg.MaxBytes)),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	j.trim = t
	go t.run(ctx)
}

// globalAccount is the account of a server without accounts configured: the directory
// nats-server keeps its streams in.
const globalAccount = "$G"

func (t *trimmer) stop() {
	t.cancel()
	<-t.done
}

func (t *trimmer) run(ctx context.Context) {
	defer close(t.done)
	tick := time.NewTicker(trimInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := t.trimOnce(ctx); err != nil && ctx.Err() == nil {
			t.j.log.Debug().Err(err).Msg("journal trim")
		}
	}
}

// trimOnce purges whole blocks from the front of the stream while it holds more than max_bytes,
// keeping at least max_bytes.
func (t *trimmer) trimOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	info, err := t.j.str.Info(ctx)
	if err != nil {
		return err
	}
	s := info.State
	if s.Bytes <= t.max || s.Msgs == 0 {
		return nil
	}
	// At the stream's mean message size, the messages before want hold the excess; a purge
	// never goes past want.
	want := s.FirstSeq + (s.Bytes-t.max)/max(s.Bytes/s.Msgs, 1)
	seq, err := blockStart(t.dir, s.FirstSeq, want)
	if err == nil && seq == 0 && s.Bytes > t.max+t.slack/2 {
		// Over by a block and more, a block boundary should be there to purge to.
		err = errors.New("no block boundary found in " + t.dir)
	}
	if err != nil {
		if !t.warned {
			t.warned = true
			t.j.log.Warn().Err(err).Msg("journal: cannot trim to max_bytes by whole blocks; nats-server's own limit, an eighth higher, keeps it, at more memory")
		}
		return err
	}
	if seq == 0 {
		return nil
	}
	if err := t.j.str.Purge(ctx, jetstream.WithPurgeSequence(seq)); err != nil {
		return err
	}
	t.j.log.Debug().Uint64("first", s.FirstSeq).Uint64("removed", seq-s.FirstSeq).Msg("journal trimmed to max_bytes")
	return nil
}

// blockStart returns the last first-sequence of a block file in (first, want], or 0 when no
// block starts there.
func blockStart(dir string, first, want uint64) (uint64, error) {
	files, err := blockFiles(dir)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, trimScan)
	var found, prev uint64
	for _, f := range files[1:] { // the oldest block holds first: nothing to gain there
		seq, err := firstLive(f, buf)
		if err != nil {
			return 0, err
		}
		if seq == 0 {
			continue // only tombstones in the scanned part: not a boundary to purge to
		}
		if seq <= prev {
			return 0, errors.New("block files out of sequence order in " + dir)
		}
		prev = seq
		if seq > want {
			break
		}
		if seq > first {
			found = seq
		}
	}
	return found, nil
}

// blockFiles returns the paths of the block files in dir, oldest (lowest number) first.
func blockFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var idx []int
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".blk"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				idx = append(idx, i)
			}
		}
	}
	if len(idx) == 0 {
		return nil, errors.New("no block files in " + dir)
	}
	slices.Sort(idx)
	files := make([]string, len(idx))
	for k, i := range idx {
		files[k] = filepath.Join(dir, strconv.Itoa(i)+".blk")
	}
	return files, nil
}

// firstLive returns the sequence of the first record of a block file that is a message, 0 when
// the scanned start holds none.
func firstLive(path string, buf []byte) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil // purged since the listing
		}
		return 0, err
	}
	n, err := io.ReadFull(f, buf)
	f.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return firstLiveRecord(buf[:n]), nil
}

// firstLiveRecord returns the sequence of the first message record in b, skipping tombstones
// and erased messages; 0 when b holds no whole record header of one.
func firstLiveRecord(b []byte) uint64 {
	for len(b) >= recordHeaderLen {
		rl := binary.LittleEndian.Uint32(b) &^ recordHeaderBit
		seq := binary.LittleEndian.Uint64(b[4:])
		if seq&recordDeadBits == 0 {
			return seq
		}
		if rl < recordHeaderLen || uint64(rl) > uint64(len(b)) {
			return 0
		}
		b = b[rl:]
	}
	return 0
}
