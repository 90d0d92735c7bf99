package webhook

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emsflow/emsflow/event"
)

// Rejection reasons, the values of the reason label of emsflow_webhook_rejected_total.
const (
	ReasonBadJSON            = "bad_json"
	ReasonNoType             = "no_type"
	ReasonTooLarge           = "too_large"
	ReasonUnauthorized       = "unauthorized"
	ReasonJournalUnavailable = "journal_unavailable"
	ReasonUnknownEMS         = "unknown_ems"
	ReasonMethod             = "method"
)

// unknownTypeLabel is the type label of events whose type is not in event.Known, so that a
// sender cannot grow the label set without bound.
const unknownTypeLabel = "unknown"

type metrics struct {
	received     *prometheus.CounterVec
	accepted     *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	unattributed prometheus.Counter
	panics       prometheus.Counter
	duration     *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_webhook_events_received_total",
			Help: "Events decoded from requests, by EMS event type (types not in the EMS vocabulary count as \"unknown\").",
		}, []string{"type"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_webhook_events_accepted_total",
			Help: "Events durably stored in the journal and acknowledged, by the EMS they were attributed to.",
		}, []string{"ems"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emsflow_webhook_rejected_total",
			Help: "Event requests answered with an error, by reason.",
		}, []string{"reason"}),
		unattributed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_webhook_unattributed_events_total",
			Help: "Events accepted under the default EMS because several EMS are configured and none matched.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "emsflow_webhook_panics_total",
			Help: "Panics recovered while serving HTTP requests.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "emsflow_webhook_request_duration_seconds",
			Help:    "Duration of event requests, from the first byte read to the answer, by HTTP status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"code"}),
	}
	for _, c := range []prometheus.Collector{m.received, m.accepted, m.rejected, m.unattributed, m.panics, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	for _, r := range []string{ReasonBadJSON, ReasonNoType, ReasonTooLarge, ReasonUnauthorized, ReasonJournalUnavailable, ReasonUnknownEMS, ReasonMethod} {
		m.rejected.WithLabelValues(r)
	}
	return m, nil
}

func typeLabel(t string) string {
	if event.IsKnown(t) {
		return t
	}
	return unknownTypeLabel
}
