package recorder

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emsflow/emsflow/plugins"
)

// Kind is the plugin type name in configuration.
const Kind = "StreamRecorder"

// DefaultReconcileInterval is how often the recorder compares what records with what should.
const DefaultReconcileInterval = 60 * time.Second

// Config holds the recorder's parameters. The web-services guide's form loads as printed:
// {"file_location": "/var/media", "period_time": 3600}.
type Config struct {
	// FileLocation is the folder on the EMS host the recordings go to, as an absolute path
	// (POSIX, or Windows for an EMS on Windows); a stream's files are <file_location>/<name>...
	FileLocation string `json:"file_location"`
	// PeriodTime is how long each file is: EMS starts a new one every period_time, 1s to
	// 86399s, given in seconds (3600) or as a duration ("1h").
	PeriodTime plugins.Duration `json:"period_time"`
	// Format is the file type: mp4 (default), ts or flv.
	Format string `json:"format"`
	// CleanupOnClose removes the record config when its stream closes, so nothing is left
	// behind; default true. When false, EMS keeps the config and resumes recording (into new
	// files) when a stream of that name comes back.
	CleanupOnClose *bool `json:"cleanup_on_close"`
	// RecordReplicas also records streams emsflow itself brought to an EMS (a router's push,
	// a load balancer's replica); default false, so one stream is recorded once, where it
	// entered the fleet.
	RecordReplicas bool `json:"record_replicas"`
	// EMS names the configured EMS servers whose streams are recorded; default all of them.
	EMS []string `json:"ems"`
	// ReconcileInterval is how often every live stream is checked for its recording; default
	// 60s, 0 only at start.
	ReconcileInterval *plugins.Duration `json:"reconcile_interval"`
}

// Validate checks the parameters; it reports every problem. ems lists the configured EMS
// names.
func (c *Config) Validate(ems []string) error {
	var errs []error
	switch {
	case c.FileLocation == "":
		errs = append(errs, errors.New("file_location is required"))
	case !isAbs(c.FileLocation):
		errs = append(errs, fmt.Errorf("file_location %q must be an absolute path on the EMS host", c.FileLocation))
	}
	p := c.PeriodTime.Std()
	switch {
	case p == 0:
		errs = append(errs, errors.New("period_time is required: 1 to 86399 seconds"))
	case p < time.Second || p > 86399*time.Second:
		errs = append(errs, fmt.Errorf("period_time %s is not between 1 and 86399 seconds", p))
	case p%time.Second != 0:
		errs = append(errs, fmt.Errorf("period_time %s is not a whole number of seconds", p))
	}
	switch c.Format {
	case "", "mp4", "ts", "flv":
	default:
		errs = append(errs, fmt.Errorf("format %q is not mp4, ts or flv", c.Format))
	}
	for _, n := range c.EMS {
		if !slices.Contains(ems, n) {
			errs = append(errs, fmt.Errorf("ems %q is not a configured EMS (configured: %s)", n, strings.Join(ems, ", ")))
		}
	}
	if c.ReconcileInterval != nil && *c.ReconcileInterval < 0 {
		errs = append(errs, errors.New("reconcile_interval must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *Config) format() string {
	if c.Format == "" {
		return "mp4"
	}
	return c.Format
}

func (c *Config) cleanup() bool { return c.CleanupOnClose == nil || *c.CleanupOnClose }

func (c *Config) interval() time.Duration {
	if c.ReconcileInterval == nil {
		return DefaultReconcileInterval
	}
	return c.ReconcileInterval.Std()
}

// isAbs accepts absolute paths of the EMS host, which may run Linux or Windows: /var/media,
// C:\media, C:/media, \\server\share.
func isAbs(p string) bool {
	switch {
	case strings.HasPrefix(p, "/"), strings.HasPrefix(p, `\\`):
		return true
	case len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/'):
		c := p[0] | 0x20
		return 'a' <= c && c <= 'z'
	}
	return false
}

// pathFor returns the pathToFile of stream name: file_location, then the name made safe as
// one file name (no separators, no leading dots), with file_location's own separator.
func (c *Config) pathFor(name string) string {
	sep := "/"
	if strings.Contains(c.FileLocation, `\`) && !strings.Contains(c.FileLocation, "/") {
		sep = `\`
	}
	dir := strings.TrimRight(c.FileLocation, `/\`)
	safe := strings.Map(func(r rune) rune {
		switch r {
		case '/', '\\', ':', 0:
			return '_'
		}
		return r
	}, name)
	if strings.HasPrefix(safe, ".") {
		safe = "_" + strings.TrimLeft(safe, ".")
	}
	return dir + sep + safe
}
