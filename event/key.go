package event

import (
	"crypto/sha256"
	"encoding/hex"
)

// Key returns emsflow's dedupe key of the event: the first 32 hex digits of the SHA-256 of the
// EMS name, a newline and the event's bytes as received (its envelope from MarshalJSON when it
// was not decoded from the wire). A byte-identical duplicate POST from the same EMS gets the same
// key; the same bytes from two EMS servers do not, and neither do two real EMS events, whose
// envelope id and timestamp differ. Set EMS before calling Key.
func (e *Event) Key() string {
	raw := []byte(e.Raw)
	if len(raw) == 0 {
		// MarshalJSON of an envelope built from decoded values cannot fail; an empty body still
		// gives a stable key.
		raw, _ = e.MarshalJSON()
	}
	h := sha256.New()
	h.Write([]byte(e.EMS))
	h.Write([]byte{'\n'})
	h.Write(raw)
	return hex.EncodeToString(h.Sum(nil))[:32]
}
