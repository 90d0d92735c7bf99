package dispatch

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	handled, failed, retried, dead, panics *prometheus.CounterVec
	consumeErrors                          *prometheus.CounterVec
	latency                                *prometheus.HistogramVec
	pending                                *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "emsflow", Subsystem: "plugin", Name: name, Help: help,
		}, []string{"plugin"})
	}
	m := &metrics{
		handled: counter("handled_total", "Events a plugin handled successfully."),
		failed:  counter("failed_total", "Handle calls that returned an error or panicked."),
		retried: counter("retried_total", "Events scheduled for another attempt after a failure."),
		dead:    counter("dead_lettered_total", "Events moved to the dead-letter stream."),
		panics:  counter("panics_total", "Plugin panics recovered by the dispatcher."),
		consumeErrors: counter("consume_errors_total",
			"Errors fetching a plugin's events from the journal (missed heartbeats, a consumer recreated); fetching carries on."),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "emsflow", Subsystem: "plugin", Name: "handle_duration_seconds",
			Help:    "Duration of one Handle call.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14),
		}, []string{"plugin"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "emsflow", Subsystem: "plugin", Name: "pending_events",
			Help: "Events journaled for a plugin and not yet settled (pending plus unacknowledged).",
		}, []string{"plugin"}),
	}
	for _, c := range []prometheus.Collector{m.handled, m.failed, m.retried, m.dead, m.panics, m.consumeErrors, m.latency, m.pending} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
