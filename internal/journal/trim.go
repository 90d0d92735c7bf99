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
// and each drop loads that message's whole block, held only weakly between drops, so a full
// journal carried a second block and its garbage (peak RSS 94 against 64 MB, journal only at
// saturation with a 256 MiB max_bytes, builds alternated). Purging up to the first message of a
// block file instead deletes whole blocks: nothing is loaded while their per-subject counts are
// in memory (nats-server keeps them two minutes after a block's last use; an older block is read
// once to rebuild them), and no tombstone is written.
//
// The stream the trimmer keeps has no byte limit of its own but a per-subject limit that never
// binds (noSubjectLimit), because nats-server sizes a stream's block files by its limits: 8 MB
// with a byte limit of 32 MB and more, 4 MB with a per-subject limit and none on bytes or
// messages (autoTuneFileStorageBlockSize). The block being written is held in memory whole, and
// after ten idle seconds nats-server drops it, reads it back at the next write and then does not
// reuse its buffer, so a service with pauses in its load held two block buffers: peak RSS in
// `make bench` (journal only, 5 s slices between pauses, full at 1 GiB) was 66.4–67.8 MB with
// 4 MB blocks against 73.3–81.2 MB with 8 MB ones, builds alternated five times each.
//
// Block boundaries are not part of nats-server's API, so the trimmer reads them from the block
// files: each record starts with its length (4 bytes, little endian, top bit = has headers) and
// its sequence (8 bytes, top two bits = tombstone or erased). A misread can only make a purge
// unaligned (slower), never remove more: the purge sequence is bounded by the excess the stream
// state reports, at its mean message size. Past trimSlack over max_bytes without a boundary to
// purge to (block files it cannot read), the trimmer purges to max_bytes regardless, loading a
// block as nats-server's own limit would.

const (
	// trimMinBytes is the smallest max_bytes the trimmer handles: its slack (an eighth) must hold
	// two whole blocks, so that the oldest block is wholly over max_bytes before the slack is
	// used up. Smaller journals keep nats-server's own limit.
	trimMinBytes = 16 * trimBlockSize
	// trimBlockSize is the size of nats-server's block files for the stream the trimmer keeps.
	trimBlockSize = 4 << 20
	// noSubjectLimit is the per-subject message limit of the stream the trimmer keeps: set to
	// get trimBlockSize blocks, and too high to ever bind.
	noSubjectLimit = 1 << 62
	// trimInterval is how often the trimmer compares the stream's size with max_bytes.
	trimInterval = 100 * time.Millisecond
	// trimScan bounds how much of a block's start is read to find its first live message.
	trimScan = 64 << 10

	recordHeaderLen = 22      // length, sequence, timestamp, subject length
	recordHeaderBit = 1 << 31 // in the length: the record has NATS headers
	recordDeadBits  = 3 << 62 // in the sequence: a tombstone or an erased message
)

// limitStream sets the event stream's size limits. An external server, or a max_bytes too small
// for the trimmer, gets max_bytes as the stream's own limit; a stream the trimmer keeps gets
// none on bytes and noSubjectLimit per subject.
func limitStream(sc *jetstream.StreamConfig, maxBytes int64, embedded bool) {
	if !trims(maxBytes, embedded) {
		sc.MaxBytes = orUnlimited(maxBytes)
		return
	}
	sc.MaxBytes = -1
	sc.MaxMsgsPerSubject = noSubjectLimit
}

func trims(maxBytes int64, embedded bool) bool { return embedded && maxBytes >= trimMinBytes }

// trimSlack is how far over max_bytes the stream may grow before the trimmer stops waiting for
// a block boundary.
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
			t.j.log.Warn().Err(err).Msg("journal: cannot trim to max_bytes by whole blocks; past an eighth over it, the oldest events are dropped regardless, at more memory")
		}
		if s.Bytes <= t.max+t.slack {
			return err
		}
		seq = want
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
