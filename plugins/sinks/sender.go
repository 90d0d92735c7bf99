package sinks

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
)

// run is the sink's sender: it delivers the queue in order, one batch at a time, until stop is
// closed. Cancelling ctx aborts a delivery in flight (Close past its deadline).
func (k *sink) run(ctx context.Context) {
	defer close(k.done)
	var lastSend time.Time
	readFailing := false
	for {
		select {
		case <-k.stop:
			return
		default:
		}
		// Read the clock before the queue: a batch found ready then holds every event queued
		// before that moment (a digest must not miss the last event of a burst).
		now := k.now()
		batch, err := k.q.peek(k.cfg.BatchSize)
		if err != nil {
			if !readFailing {
				k.log.Error().Err(err).Msg("read sink queue")
				readFailing = true
			}
			if !k.wait(k.cfg.ResendMaxDelay.Std()) {
				return
			}
			continue
		}
		readFailing = false
		if len(batch) == 0 {
			if !k.wait(0) {
				return
			}
			continue
		}
		ready := lastSend.Add(k.minGap)
		if len(batch) < k.cfg.BatchSize {
			if t := time.Unix(0, batch[0].At).Add(k.linger); t.After(ready) {
				ready = t
			}
		}
		if d := ready.Sub(now); d > 0 {
			if !k.wait(d) {
				return
			}
			continue
		}
		if !k.deliver(ctx, batch) {
			return
		}
		lastSend = k.now()
	}
}

// deliver sends one batch until it is delivered or given up. It returns false when the sender
// must stop, leaving the batch queued.
func (k *sink) deliver(ctx context.Context, batch []record) bool {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, k.cfg.Timeout.Std())
		err := k.d.deliver(actx, batch)
		cancel()
		if err == nil {
			now := k.now()
			for _, r := range batch {
				k.m.latency.WithLabelValues(k.cfg.Name).Observe(max(0, now.Sub(time.Unix(0, r.At)).Seconds()))
			}
			k.m.deliveredEvents.WithLabelValues(k.cfg.Name).Add(float64(len(batch)))
			k.m.deliveredBatches.WithLabelValues(k.cfg.Name).Inc()
			if attempt > 1 {
				k.log.Info().Int(logfield.Attempt, attempt).Int(logfield.Count, len(batch)).Msg("sink delivered after retries")
			}
			return k.commit(batch)
		}
		if ctx.Err() != nil {
			return false
		}
		k.m.failures.WithLabelValues(k.cfg.Name).Inc()
		reason := ""
		age := k.now().Sub(time.Unix(0, batch[0].At))
		switch {
		case plugins.IsPermanent(err):
			reason = "permanent failure"
		case k.cfg.ResendLimit > 0 && attempt >= k.cfg.ResendLimit:
			reason = "resend_limit reached"
		case k.cfg.ResendTimeout > 0 && age >= k.cfg.ResendTimeout.Std():
			reason = "resend_timeout reached"
		}
		if reason != "" {
			k.log.Error().Err(err).Str(logfield.Reason, reason).Int(logfield.Attempt, attempt).
				Int(logfield.Count, len(batch)).Str(logfield.File, k.deadLetterPath()).Msg("sink gave up a batch; dead-lettered")
			if dlErr := k.deadLetter(batch, err, attempt); dlErr != nil {
				// Not acknowledging keeps the batch; it is given up again on the next attempt.
				k.log.Error().Err(dlErr).Msg("write sink dead letter")
				if !k.wait(k.cfg.ResendMaxDelay.Std()) {
					return false
				}
				continue
			}
			k.m.deadLettered.WithLabelValues(k.cfg.Name).Add(float64(len(batch)))
			return k.commit(batch)
		}
		delay := k.backoff(attempt)
		if ra, ok := plugins.RetryAfter(err); ok && ra > delay {
			delay = ra
		}
		if attempt == 1 {
			k.log.Warn().Err(err).Int(logfield.Count, len(batch)).Dur(logfield.Delay, delay).Msg("sink delivery failed; retrying")
		}
		k.m.retries.WithLabelValues(k.cfg.Name).Inc()
		if !k.sleep(delay) {
			return false
		}
	}
}

// commit acknowledges a finished batch; it returns false only when the sender must stop.
func (k *sink) commit(batch []record) bool {
	for {
		err := k.q.ack(batch)
		if err == nil {
			k.updateDepth()
			return true
		}
		k.log.Error().Err(err).Msg("commit sink queue")
		if !k.wait(k.cfg.ResendMaxDelay.Std()) {
			return false
		}
	}
}

// backoff is the capped exponential delay before attempt+1, with jitter in [d/2, d].
func (k *sink) backoff(attempt int) time.Duration {
	d := k.cfg.ResendDelay.Std()
	for i := 1; i < attempt && d < k.cfg.ResendMaxDelay.Std(); i++ {
		d *= 2
	}
	d = min(d, k.cfg.ResendMaxDelay.Std())
	return d/2 + rand.N(d/2+1)
}

// wait blocks until the queue grows, d passes (0: no limit), the tick passes, or stop closes;
// it returns false on stop.
func (k *sink) wait(d time.Duration) bool {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(min(d, k.tick))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-k.stop:
		return false
	case <-k.q.notify:
		return true
	case <-timer:
		return true
	}
}

// sleep waits for the backoff d on a real timer, ignoring queue growth; it returns false on
// stop. Backoff is a span of time, not a point on the injected clock, which only dates events.
func (k *sink) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-k.stop:
		return false
	case <-t.C:
		return true
	}
}
