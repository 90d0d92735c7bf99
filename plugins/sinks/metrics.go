package sinks

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the plugin's collectors, all labelled by sink name.
type metrics struct {
	deliveredEvents  *prometheus.CounterVec
	deliveredBatches *prometheus.CounterVec
	failures         *prometheus.CounterVec
	retries          *prometheus.CounterVec
	deadLettered     *prometheus.CounterVec
	duplicates       *prometheus.CounterVec
	depth            *prometheus.GaugeVec
	latency          *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	lbl := []string{"sink"}
	m := &metrics{
		deliveredEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_sink_delivered_events_total", Help: "Events delivered by an event sink.",
		}, lbl),
		deliveredBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_sink_delivered_batches_total", Help: "Batches (POSTs, file writes, emails) delivered by an event sink.",
		}, lbl),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_sink_failures_total", Help: "Failed delivery attempts of an event sink.",
		}, lbl),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_sink_retries_total", Help: "Delivery attempts scheduled again after a failure.",
		}, lbl),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_sink_dead_lettered_total", Help: "Events given up by an event sink and written to its dead-letter file.",
		}, lbl),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_sink_duplicates_total", Help: "Events handed over again and not queued twice.",
		}, lbl),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "emsflow_sink_queue_depth", Help: "Events queued durably and not yet delivered.",
		}, lbl),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "emsflow_sink_delivery_latency_seconds", Help: "Time from queueing an event to its delivery.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, lbl),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	reg1 := func(err error) { errs = append(errs, err) }
	m.deliveredEvents = register(reg, m.deliveredEvents, reg1)
	m.deliveredBatches = register(reg, m.deliveredBatches, reg1)
	m.failures = register(reg, m.failures, reg1)
	m.retries = register(reg, m.retries, reg1)
	m.deadLettered = register(reg, m.deadLettered, reg1)
	m.duplicates = register(reg, m.duplicates, reg1)
	m.depth = register(reg, m.depth, reg1)
	m.latency = register(reg, m.latency, reg1)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register sink metrics: %w", err)
	}
	return m, nil
}

// register registers c, or returns the collector already registered under its name when the
// same plugin is built twice on one registry (check-config, then serve).
func register[C prometheus.Collector](reg prometheus.Registerer, c C, fail func(error)) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if ex, ok := are.ExistingCollector.(C); ok {
			return ex
		}
	}
	fail(err)
	return c
}
