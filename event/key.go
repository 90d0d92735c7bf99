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
	d := e.Digest()
	return hex.EncodeToString(d[:])
}

// Digest is Key as 16 bytes: the first half of the SHA-256 of the EMS name, a newline and the
// event's bytes as received.
func (e *Event) Digest() [16]byte {
	raw := []byte(e.Raw)
	if len(raw) == 0 {
		// MarshalJSON of an envelope built from decoded values cannot fail; an empty body still
		// gives a stable key.
		raw, _ = e.MarshalJSON()
	}
	return Digest(e.EMS, raw)
}

// Digest returns the dedupe digest of an event body received from the named EMS, the same as
// the event's own Digest: the journal recomputes it from a stored message.
func Digest(ems string, raw []byte) [16]byte {
	h := sha256.New()
	h.Write([]byte(ems))
	h.Write([]byte{'\n'})
	h.Write(raw)
	var sum [sha256.Size]byte
	var d [16]byte
	copy(d[:], h.Sum(sum[:0]))
	return d
}
