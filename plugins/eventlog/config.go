package eventlog

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emsflow/emsflow/event"
)

// Defaults for zero Config fields.
const (
	DefaultMaxBytes = 100 << 20
	DefaultMaxFiles = 5
)

// Config is the EventLog's parameters.
type Config struct {
	// Path is the log file; a relative path resolves against the configuration file's folder.
	Path string `json:"path"`
	// MaxBytes is the size at which the file is rotated; default 100 MiB. A single line larger
	// than MaxBytes is still written, to a file of its own.
	MaxBytes int64 `json:"max_bytes"`
	// MaxFiles is how many rotated files are kept (path.1 newest ... path.N oldest); default 5.
	MaxFiles int `json:"max_files"`
	// Events are the event types logged; default every known EMS event (event.Known). In the
	// INI form a comma-separated list is accepted.
	Events []string `json:"events"`
	// Fsync makes every line reach the disk before Handle returns (one flush per event). Without
	// it a written line survives a crash of emsflow, as it is in the kernel's page cache, but
	// not necessarily a power loss or kernel crash.
	Fsync bool `json:"fsync"`
}

// withDefaults returns c with zero fields replaced by defaults and event lists split on commas.
func (c Config) withDefaults() Config {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxFiles == 0 {
		c.MaxFiles = DefaultMaxFiles
	}
	if c.Events == nil {
		c.Events = slices.Clone(event.Known)
	} else {
		var evs []string
		for _, e := range c.Events {
			for part := range strings.SplitSeq(e, ",") {
				if part = strings.TrimSpace(part); part != "" {
					evs = append(evs, part)
				}
			}
		}
		c.Events = evs
	}
	return c
}

// Validate reports every problem of the configuration (after defaults), joined.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if strings.TrimSpace(c.Path) == "" {
		errs = append(errs, errors.New("parameter \"path\" is required: the file events are written to"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("parameter \"max_bytes\": %d must be positive", c.MaxBytes))
	}
	if c.MaxFiles < 0 {
		errs = append(errs, fmt.Errorf("parameter \"max_files\": %d must be at least 1", c.MaxFiles))
	}
	if len(c.Events) == 0 {
		errs = append(errs, errors.New("parameter \"events\" is empty: leave it out to log every known event"))
	}
	seen := map[string]bool{}
	for _, e := range c.Events {
		switch {
		case !event.IsKnown(e):
			errs = append(errs, fmt.Errorf("parameter \"events\": unknown event %q (known: %s)", e, strings.Join(event.Known, ", ")))
		case seen[e]:
			errs = append(errs, fmt.Errorf("parameter \"events\": %q listed twice", e))
		}
		seen[e] = true
	}
	return errors.Join(errs...)
}
