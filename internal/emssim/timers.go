package emssim

import (
	"fmt"
	"strconv"
	"time"
)

// timer is a setTimer timer: periodic (value in seconds) or absolute (HH:MM:SS daily, or
// YYYY-MM-DDTHH:MM:SS once).
type timer struct {
	id       uint64
	value    any // uint64 seconds, or the time string as given
	vars     obj
	count    uint64
	period   time.Duration
	at       time.Time // absolute: next trigger
	daily    bool
	stopCh   chan struct{}
	stopOnce bool
}

func (t *timer) stop() {
	if !t.stopOnce {
		t.stopOnce = true
		close(t.stopCh)
	}
}

func (t *timer) payload() obj {
	p := cloneObj(t.vars)
	p["timerId"] = t.id
	p["triggerCount"] = t.count
	p["value"] = t.value
	return p
}

func (s *Sim) cmdSetTimer(a *args) response {
	raw := a.mandatory("value")
	if a.fail != "" {
		return fail(a.fail)
	}
	t := &timer{vars: obj{}, stopCh: make(chan struct{})}
	a.userVars(t.vars)
	now := s.now()
	if n, err := strconv.ParseUint(raw, 10, 64); err == nil {
		if n < 1 || n > 86399 {
			return fail("Syntax error. Parameter value is invalid. Range: 1 - 86399")
		}
		t.value, t.period = n, time.Duration(n)*time.Second
	} else if at, err := time.ParseInLocation("2006-01-02T15:04:05", raw, now.Location()); err == nil {
		t.value, t.at = raw, at
	} else if hms, err := time.ParseInLocation("15:04:05", raw, now.Location()); err == nil {
		next := time.Date(now.Year(), now.Month(), now.Day(), hms.Hour(), hms.Minute(), hms.Second(), 0, now.Location())
		if !next.After(now) {
			next = next.AddDate(0, 0, 1)
		}
		t.value, t.at, t.daily = raw, next, true
	} else {
		return fail("Syntax error. Parameter value is invalid")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.id = s.nextTimerID
	s.nextTimerID++
	s.timers[t.id] = t
	s.em.emit("timerCreated", t.payload())
	s.goOwned(func() { s.runTimer(t) })
	return ok("Custom timer enqueued", obj{"timerId": t.id, "triggerCount": uint64(0), "value": t.value})
}

func (s *Sim) runTimer(t *timer) {
	for {
		var wait time.Duration
		if t.period > 0 {
			wait = t.period
		} else {
			wait = t.at.Sub(s.now())
		}
		tm := time.NewTimer(max(wait, 0))
		select {
		case <-t.stopCh:
			tm.Stop()
			return
		case <-s.ctx.Done():
			tm.Stop()
			return
		case <-tm.C:
		}
		s.mu.Lock()
		if s.timers[t.id] != t {
			s.mu.Unlock()
			return
		}
		// EMS increments triggerCount before logging timerTriggered (reference §1.6.3).
		t.count++
		s.em.emit("timerTriggered", t.payload())
		once := t.period == 0 && !t.daily
		if t.daily {
			t.at = t.at.AddDate(0, 0, 1)
		}
		if once {
			delete(s.timers, t.id)
			s.em.emit("timerClosed", t.payload())
			t.stop()
		}
		s.mu.Unlock()
		if once {
			return
		}
	}
}

func (s *Sim) cmdListTimers(_ *args) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []obj
	for id := uint64(1); id < s.nextTimerID; id++ {
		if t := s.timers[id]; t != nil {
			list = append(list, t.payload())
		}
	}
	if list == nil {
		return ok("Active timers", nil)
	}
	return ok("Active timers", list)
}

func (s *Sim) cmdRemoveTimer(a *args) response {
	id := a.number("id", true, 0, ^uint64(0), 0)
	if a.fail != "" {
		return fail(a.fail)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.timers[id]
	if t == nil {
		return fail(fmt.Sprintf("Timer %d not found", id))
	}
	delete(s.timers, id)
	t.stop()
	s.em.emit("timerClosed", t.payload())
	return ok("Timer removed", t.payload())
}
