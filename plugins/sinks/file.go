package sinks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// fileDeliverer appends batches to a JSON-lines file and rotates it by size and by time.
//
// Time rotation happens at multiples of the period (UTC): a file is rotated before the first
// write in a later period than its last write, so rotation survives restarts without extra
// state. Rotated files are renamed to name-<UTC time of rotation>-<n>.ext beside the file, so
// that their names sort in order.
type fileDeliverer struct {
	path     string
	maxBytes int64
	every    time.Duration
	now      func() time.Time

	f      *os.File
	size   int64
	period time.Time // the rotation period of the last write
}

func newFileDeliverer(path string, maxBytes int64, every time.Duration, now func() time.Time) *fileDeliverer {
	return &fileDeliverer{path: path, maxBytes: maxBytes, every: every, now: now}
}

func (d *fileDeliverer) periodOf(t time.Time) time.Time {
	if d.every <= 0 {
		return time.Time{}
	}
	return t.UTC().Truncate(d.every)
}

func (d *fileDeliverer) open() error {
	if err := os.MkdirAll(filepath.Dir(d.path), 0o750); err != nil {
		return fmt.Errorf("create sink file folder: %w", err)
	}
	f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open sink file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat sink file: %w", err)
	}
	d.f, d.size = f, fi.Size()
	d.period = d.periodOf(fi.ModTime())
	if d.size == 0 {
		d.period = d.periodOf(d.now())
	}
	return nil
}

func (d *fileDeliverer) deliver(_ context.Context, batch []record) error {
	if d.f == nil {
		if err := d.open(); err != nil {
			return err
		}
	}
	now := d.now()
	if d.size > 0 && d.every > 0 && d.periodOf(now).After(d.period) {
		if err := d.rotate(now); err != nil {
			return err
		}
	}
	// A batch is split between files at line boundaries, so a file outgrows max_bytes only
	// when a single line is larger.
	var buf []byte
	for _, r := range batch {
		line := append(slices.Clone(eventJSON(r)), '\n')
		if d.maxBytes > 0 && d.size+int64(len(buf)+len(line)) > d.maxBytes && d.size+int64(len(buf)) > 0 {
			if err := d.write(buf); err != nil {
				return err
			}
			buf = buf[:0]
			if err := d.rotate(now); err != nil {
				return err
			}
		}
		buf = append(buf, line...)
	}
	if err := d.write(buf); err != nil {
		return err
	}
	d.period = d.periodOf(now)
	return nil
}

// write appends whole lines and syncs them. A redelivered batch may repeat lines that an
// earlier, failed attempt wrote: delivery is at least once.
func (d *fileDeliverer) write(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if _, err := d.f.Write(data); err != nil {
		// Cut a partial write so the file stays whole lines.
		_ = d.f.Truncate(d.size)
		return fmt.Errorf("write sink file: %w", err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("sync sink file: %w", err)
	}
	d.size += int64(len(data))
	return nil
}

// rotate renames the current file to name-<UTC time>-<n>.ext, n counting from 1 for files
// rotated in the same millisecond, and opens a new one.
func (d *fileDeliverer) rotate(now time.Time) error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("close sink file: %w", err)
	}
	d.f = nil
	ext := filepath.Ext(d.path)
	base := strings.TrimSuffix(d.path, ext)
	stamp := now.UTC().Format("20060102T150405.000Z")
	var target string
	for i := 1; ; i++ {
		target = fmt.Sprintf("%s-%s-%03d%s", base, stamp, i, ext)
		if _, err := os.Stat(target); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err := os.Rename(d.path, target); err != nil {
		return fmt.Errorf("rotate sink file: %w", err)
	}
	if err := syncDir(filepath.Dir(d.path)); err != nil {
		return err
	}
	return d.open()
}

func (d *fileDeliverer) close() error {
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}
