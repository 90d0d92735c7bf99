package journal

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTimeout bounds the stream-info requests of one scrape, so a journal that does not answer
// delays /metrics by at most this much instead of hanging it.
const scrapeTimeout = 2 * time.Second

// Collector reports the size of the event and dead-letter streams, read from the server at
// each scrape. Register it once per Journal.
func (j *Journal) Collector() prometheus.Collector {
	return &collector{
		j: j,
		messages: prometheus.NewDesc("emsflow_journal_messages",
			"Messages held by a journal stream (events: accepted events within retention; dead: dead letters).",
			[]string{"stream"}, nil),
		lastSeq: prometheus.NewDesc("emsflow_journal_last_sequence",
			"Sequence of the newest message of a journal stream: how many it ever stored, those retention (max_age, max_bytes) dropped since included.",
			[]string{"stream"}, nil),
		bytes: prometheus.NewDesc("emsflow_journal_bytes",
			"Bytes held by a journal stream, to compare with journal.max_bytes (the embedded journal drops whole 4 MB blocks, so it holds up to one more).",
			[]string{"stream"}, nil),
		scrapeErrors: prometheus.NewDesc("emsflow_journal_scrape_errors",
			"1 when a journal stream's state could not be read for this scrape.",
			[]string{"stream"}, nil),
		dedupeKeys: prometheus.NewDesc("emsflow_journal_dedupe_keys",
			"Event keys the embedded journal remembers to drop duplicate POSTs (those of journal.dedupe_window and up to a quarter more, and publishes in flight), about 35 bytes each.",
			nil, nil),
	}
}

type collector struct {
	j                             *Journal
	messages, bytes, scrapeErrors *prometheus.Desc
	lastSeq                       *prometheus.Desc
	dedupeKeys                    *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.bytes
	ch <- c.lastSeq
	ch <- c.scrapeErrors
	ch <- c.dedupeKeys
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	for label, str := range map[string]jetstream.Stream{"events": c.j.str, "dead": c.j.dead} {
		failed := 1.0
		if str != nil {
			if info, err := str.Info(ctx); err == nil {
				failed = 0
				ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(info.State.Msgs), label)
				ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(info.State.Bytes), label)
				ch <- prometheus.MustNewConstMetric(c.lastSeq, prometheus.GaugeValue, float64(info.State.LastSeq), label)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.GaugeValue, failed, label)
	}
	if c.j.dd != nil {
		ch <- prometheus.MustNewConstMetric(c.dedupeKeys, prometheus.GaugeValue, float64(c.j.dd.len()))
	}
}
