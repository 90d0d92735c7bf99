package emssim

import (
	"strings"
	"time"
)

// Faults are the failures the simulator injects, for tests of everything that talks to it. The
// zero value injects nothing. Random decisions come from the simulator's seeded generator, so a
// run with the same seed and the same sequence of events makes the same decisions. In JSON
// (the admin endpoint, the binary's --faults) durations are nanoseconds.
type Faults struct {
	// DropRate is the fraction of event POSTs (per sink) that are silently not sent, as when
	// the receiver is unreachable: EMS neither queues nor retries (reference §1.1). The event id
	// is still consumed, so the receiver sees a gap.
	DropRate float64 `json:"dropRate"`
	// DuplicateRate is the fraction of event POSTs sent twice, byte-identical.
	DuplicateRate float64 `json:"duplicateRate"`
	// Delay postpones every event POST by this much.
	Delay time.Duration `json:"delay"`
	// Jitter adds a random extra delay in [0, Jitter) to each POST. Delayed POSTs are sent
	// independently, so Jitter reorders events.
	Jitter time.Duration `json:"jitter"`
	// StopPosting drops every event (counted as dropped) while set.
	StopPosting bool `json:"stopPosting"`
	// API injects failures into API commands, keyed by command name (case-insensitive) or "*"
	// for every command.
	API map[string]APIFault `json:"api,omitempty"`
}

// APIFault is the failure injected into one API command.
type APIFault struct {
	// HTTPStatus, when not zero, answers with this HTTP status and an empty body (a 500 from a
	// proxy in front of EMS, for example).
	HTTPStatus int `json:"httpStatus,omitempty"`
	// Fail, when not empty, answers status FAIL with this description and data null, without
	// executing the command.
	Fail string `json:"fail,omitempty"`
	// Latency delays the answer by this much (the command still executes unless HTTPStatus
	// or Fail is set).
	Latency time.Duration `json:"latency,omitempty"`
	// Rate is the fraction of calls affected; 0 means every call.
	Rate float64 `json:"rate,omitempty"`
	// Times, when positive, limits the fault to the next Times affected calls; then it is
	// spent (useful for "fail twice, then succeed").
	Times int `json:"times,omitempty"`
}

// apiFault returns the fault for command and consumes one use of it. Callers hold s.mu.
func (s *Sim) apiFault(command string) (APIFault, bool) {
	for _, key := range []string{strings.ToLower(command), "*"} {
		for k, f := range s.faults.API {
			if strings.ToLower(k) != key {
				continue
			}
			if f.Rate > 0 && f.Rate < 1 && s.rng.Float64() >= f.Rate {
				return APIFault{}, false
			}
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					delete(s.faults.API, k)
				} else {
					s.faults.API[k] = f
				}
			}
			return f, true
		}
	}
	return APIFault{}, false
}

// SetFaults replaces the injected faults.
func (s *Sim) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.API = cloneAPIFaults(f.API)
	s.faults = f
	s.em.setFaults(f)
}

// CurrentFaults returns the faults now in force.
func (s *Sim) CurrentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	f.API = cloneAPIFaults(f.API)
	return f
}

func cloneAPIFaults(m map[string]APIFault) map[string]APIFault {
	if m == nil {
		return nil
	}
	out := make(map[string]APIFault, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
