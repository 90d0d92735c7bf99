package sinks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fileDeliverer appends batches to a JSON-lines file and rotates it by size and by time.
//
// Time rotation happens at multiples of the period (UTC): a file is rotated before the first
// write in a later period than its last write, so rotation survives restarts without extra
// state. Rotated files are renamed to name-<UTC start of rotation>.ext beside the file.
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
	var data []byte
	for _, r := range batch {
		data = append(append(data, eventJSON(r)...), '\n')
	}
	if d.f == nil {
		if err := d.open(); err != nil {
			return err
		}
	}
	now := d.now()
	if d.size > 0 && ((d.every > 0 && d.periodOf(now).After(d.period)) ||
		(d.maxBytes > 0 && d.size+int64(len(data)) > d.maxBytes)) {
		if err := d.rotate(now); err != nil {
			return err
		}
	}
	if _, err := d.f.Write(data); err != nil {
		// Cut a partial write so the file stays whole lines; the batch is written again.
		_ = d.f.Truncate(d.size)
		return fmt.Errorf("write sink file: %w", err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("sync sink file: %w", err)
	}
	d.size += int64(len(data))
	d.period = d.periodOf(now)
	return nil
}

func (d *fileDeliverer) rotate(now time.Time) error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("close sink file: %w", err)
	}
	d.f = nil
	ext := filepath.Ext(d.path)
	base := strings.TrimSuffix(d.path, ext)
	stamp := now.UTC().Format("20060102T150405.000Z")
	target := base + "-" + stamp + ext
	for i := 1; ; i++ {
		if _, err := os.Stat(target); errors.Is(err, os.ErrNotExist) {
			break
		}
		target = fmt.Sprintf("%s-%s-%d%s", base, stamp, i, ext)
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
