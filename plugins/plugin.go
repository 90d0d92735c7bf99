// Package plugins holds the plugin contract, the registry that main fills, and the dependencies
// handed to every plugin.
//
// A plugin declares the EMS events it handles and handles them. The dispatcher builds its routing
// table from Events at start, gives each plugin instance its own durable consumer, and calls
// Handle for every matching event at least once.
package plugins

import (
	"context"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
)

// Plugin is one configured plugin instance.
//
// Handle may be called more than once for the same event (delivery is at least once) and
// concurrently for different events, so it must be idempotent: check state before acting, use
// deterministic keys, tag what is created on EMS with a "_" user variable. Handle returns when the
// work is done. A returned error is retried with backoff by the dispatcher unless it is marked
// with Permanent; a panic is recovered and treated as a permanent failure.
type Plugin interface {
	// Name returns the instance name from configuration.
	Name() string
	// Events returns the event types the instance subscribes to; fixed for its life.
	Events() []string
	// Handle does the work for one event.
	Handle(ctx context.Context, ev *event.Event) error
}

// Starter is implemented by plugins that acquire resources or check their environment before the
// first event. A Start error stops the service at start.
type Starter interface {
	Start(ctx context.Context) error
}

// Closer is implemented by plugins that hold resources. Close is called once, after the
// dispatcher stopped calling Handle.
type Closer interface {
	Close(ctx context.Context) error
}

// Reconciler is implemented by plugins that repair drift between desired and actual state
// (level-triggered). The service calls Reconcile after Start and then every ReconcileInterval;
// a zero interval means only at start.
type Reconciler interface {
	Reconcile(ctx context.Context) error
	ReconcileInterval() time.Duration
}

// Keyer is implemented by plugins that need events with the same key handled in order, one at a
// time (for example all files of one stream folder). Events with different keys still run
// concurrently. An empty key means no ordering constraint.
type Keyer interface {
	OrderKey(ev *event.Event) string
}

// EnvelopeReader is implemented by plugins that read only an event's envelope and raw bytes
// (Type, ID, Timestamp, ProcessID, EMS, Raw, Key), never its payload, such as a log that writes
// the event as received. The dispatcher then skips building the payload, which is most of the
// cost of decoding an event; Payload holds at most customData.
type EnvelopeReader interface {
	EnvelopeOnly() bool
}

// Deps are the dependencies handed to a plugin's constructor. Nothing is global.
type Deps struct {
	// Log is the logger, already carrying the plugin instance name.
	Log zerolog.Logger
	// EMS holds a client for each configured EMS server, by name.
	EMS map[string]*emsclient.Client
	// DefaultEMS is the name of the EMS used when an event does not say which one sent it.
	DefaultEMS string
	// HTTPClient is the client for EMS servers that are not configured by name (for example the
	// load balancer's destinations) and for outbound HTTP.
	HTTPClient *http.Client
	// Now is the clock.
	Now func() time.Time
	// Metrics registers the plugin's own collectors; a "plugin" label is already attached.
	Metrics prometheus.Registerer
	// DataDir is a folder the plugin instance owns for local state; it exists.
	DataDir string
	// ConfigDir is the folder of the configuration file; relative paths resolve against it.
	ConfigDir string
	// RTMPURLs holds, by EMS name, where other servers pull that EMS's streams from
	// (ems.<name>.rtmp_url: "rtmp://host:1935/live", no stream name), for the EMS servers
	// whose configuration sets one. Nil or a missing name means none was configured.
	RTMPURLs map[string]string
}

// Resolve makes a relative path from the configuration absolute against ConfigDir, and cleans it.
func (d Deps) Resolve(p string) string {
	if !filepath.IsAbs(p) && d.ConfigDir != "" {
		p = filepath.Join(d.ConfigDir, p)
	}
	return filepath.Clean(p)
}

// EMSFor returns the client for the EMS that sent ev, falling back to the default EMS.
func (d Deps) EMSFor(ev *event.Event) (*emsclient.Client, bool) {
	if ev != nil && ev.EMS != "" {
		if c, ok := d.EMS[ev.EMS]; ok {
			return c, true
		}
	}
	c, ok := d.EMS[d.DefaultEMS]
	return c, ok
}
