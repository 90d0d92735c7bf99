// Package event is the EMS event vocabulary: the envelope EMS posts for each notification, the
// event type names, and typed accessors for the payload fields plugins act on.
//
// Decoding is tolerant, as EMS's wire format varies between versions (reference §1.2, §1.3):
// the envelope fields id, timestamp and processId are optional, 64-bit integers are kept without
// loss (payload numbers are json.Number), and unknown fields are preserved in Payload.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Event is one EMS notification.
//
// The envelope fields mirror EMS's JSON. EMS is not part of the wire format: it is the name of
// the configured EMS server that sent the event, attributed by the webhook.
type Event struct {
	// Type is the EMS event name, such as InStreamCreated.
	Type string
	// ID is EMS's per-process event counter; 0 when the older envelope omitted it.
	ID uint64
	// Timestamp is the Unix time in seconds at which EMS logged the event; 0 when absent.
	Timestamp uint64
	// ProcessID is the PID of the EMS process; 0 when absent.
	ProcessID uint64
	// Payload is the event data, decoded with json.Number for every number.
	Payload Payload
	// EMS is the name of the EMS server the event came from, set by the receiver.
	EMS string
	// Raw is the event exactly as received, for forwarding and journaling.
	Raw json.RawMessage
}

// ErrNoType is returned by Decode for an event without a type.
var ErrNoType = errors.New("event has no type")

// Decode parses one EMS event from its JSON form. The event must be a JSON object with a
// non-empty string "type"; everything else is optional.
func Decode(data []byte) (*Event, error) {
	var env struct {
		envelope
		Payload json.RawMessage `json:"payload"`
	}
	ev, err := decodeEnvelope(data, &env.envelope, &env)
	if err != nil {
		return nil, err
	}
	ev.Payload = Payload{}
	if p := bytes.TrimSpace(env.Payload); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		if p[0] != '{' {
			return nil, errors.New("event payload is not a JSON object")
		}
		dec := json.NewDecoder(bytes.NewReader(p))
		dec.UseNumber()
		if err := dec.Decode(&ev.Payload); err != nil {
			return nil, fmt.Errorf("decode payload: %w", err)
		}
	}
	return ev, nil
}

// DecodeEnvelope parses one event as Decode does and checks it the same way, but reads from the
// payload only customData (the sink's value, which attribution needs): the returned Payload holds
// that key alone. Building the whole payload is most of the cost of receiving an event, and the
// receiver only stores Raw; consumers Decode it fully. It validates the JSON, then walks only the
// top-level members and those of the payload, without reflection.
func DecodeEnvelope(data []byte) (*Event, error) { return decodeEnvelopeOnly(data, true, false) }

// DecodeHeader is DecodeEnvelope without customData: the returned Payload is empty. It is for
// readers that need the envelope and Raw only (EventLog; the receiver when no EMS is told
// apart by customData).
func DecodeHeader(data []byte) (*Event, error) { return decodeEnvelopeOnly(data, false, false) }

// decodeEnvelopeOnly is DecodeEnvelope (withCustomData) or DecodeHeader; with owned, the
// event's Raw is data itself rather than a copy.
func decodeEnvelopeOnly(data []byte, withCustomData, owned bool) (*Event, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, errors.New("event is not a JSON object")
	}
	var env envelope
	var payload []byte
	if !validate(data, func(key []byte, val []byte) {
		// encoding/json matches field names case-insensitively, so Decode does too; keep the
		// two decoders in agreement (the last of duplicate members wins in both).
		switch {
		case bytes.EqualFold(key, keyType):
			raw := json.RawMessage(val)
			env.Type = &raw
		case bytes.EqualFold(key, keyID):
			env.ID = val
		case bytes.EqualFold(key, keyTimestamp):
			env.Timestamp = val
		case bytes.EqualFold(key, keyProcessID):
			env.ProcessID = val
		case bytes.EqualFold(key, keyPayload):
			payload = val
		}
	}) {
		// Let the standard decoder describe the problem.
		var v any
		return nil, fmt.Errorf("decode event: %w", json.Unmarshal(data, &v))
	}
	raw := data
	if !owned {
		raw = bytes.Clone(data)
	}
	ev, err := envelopeEvent(raw, &env)
	if err != nil {
		return nil, err
	}
	ev.Payload = Payload{}
	if len(payload) == 0 || bytes.Equal(payload, []byte("null")) {
		return ev, nil
	}
	if payload[0] != '{' {
		return nil, errors.New("event payload is not a JSON object")
	}
	if !withCustomData {
		return ev, nil
	}
	var cd []byte
	// Most events have no customData: skip the walk unless the name, or an escape that could
	// spell it, is there.
	if bytes.Contains(payload, keyCustomData) || bytes.Contains(payload, []byte(`\u`)) {
		_ = topLevel(payload, func(key []byte, val []byte) {
			if string(key) == "customData" {
				cd = val
			}
		})
	}
	if cd == nil {
		return ev, nil
	}
	// The usual values, null and a plain string, without a decoder.
	if bytes.Equal(cd, []byte("null")) {
		ev.Payload["customData"] = nil
	} else if s, ok := jsonString(cd); ok {
		ev.Payload["customData"] = s
	} else {
		dec := json.NewDecoder(bytes.NewReader(cd))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("decode payload.customData: %w", err)
		}
		ev.Payload["customData"] = v
	}
	return ev, nil
}

// Member names DecodeEnvelope looks for.
var (
	keyType       = []byte("type")
	keyID         = []byte("id")
	keyTimestamp  = []byte("timestamp")
	keyProcessID  = []byte("processId")
	keyPayload    = []byte("payload")
	keyCustomData = []byte("customData")
)

type envelope struct {
	Type      *json.RawMessage `json:"type"`
	ID        json.RawMessage  `json:"id"`
	Timestamp json.RawMessage  `json:"timestamp"`
	ProcessID json.RawMessage  `json:"processId"`
}

// decodeEnvelope unmarshals data into dst (a struct embedding *env) and builds the Event from
// the envelope fields.
func decodeEnvelope(data []byte, env *envelope, dst any) (*Event, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, errors.New("event is not a JSON object")
	}
	if err := json.Unmarshal(data, dst); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	return envelopeEvent(bytes.Clone(data), env)
}

// envelopeEvent checks the envelope fields and builds the Event, whose Raw is raw.
func envelopeEvent(raw []byte, env *envelope) (*Event, error) {
	if env.Type == nil {
		return nil, ErrNoType
	}
	typ, ok := jsonString(*env.Type)
	if !ok {
		return nil, fmt.Errorf("event type is not a string")
	}
	typ = strings.TrimSpace(typ)
	if typ == "" {
		return nil, ErrNoType
	}
	ev := &Event{Type: typ, Raw: json.RawMessage(raw)}
	var err error
	if ev.ID, err = optionalUint(env.ID); err != nil {
		return nil, fmt.Errorf("event id: %w", err)
	}
	if ev.Timestamp, err = optionalUint(env.Timestamp); err != nil {
		return nil, fmt.Errorf("event timestamp: %w", err)
	}
	if ev.ProcessID, err = optionalUint(env.ProcessID); err != nil {
		return nil, fmt.Errorf("event processId: %w", err)
	}
	return ev, nil
}

// DecodeBatch parses a request body holding either one event (a JSON object) or a batch (a
// JSON array of events). The error names the index of the first bad element of a batch.
func DecodeBatch(body []byte) ([]*Event, error) { return decodeBatch(body, Decode) }

// DecodeBatchEnvelopes is DecodeBatch with DecodeEnvelope for each event.
func DecodeBatchEnvelopes(body []byte) ([]*Event, error) { return decodeBatch(body, DecodeEnvelope) }

// DecodeBatchHeaders is DecodeBatch with DecodeHeader for each event.
func DecodeBatchHeaders(body []byte) ([]*Event, error) { return decodeBatch(body, DecodeHeader) }

// DecodeBody is DecodeBatchEnvelopes (withCustomData) or DecodeBatchHeaders for a body its
// caller gives up: the events' Raw are slices of body (or of a batch's elements, which are
// copies already) rather than copies of their own. The caller must not change body afterwards.
// It saves the receiver a copy of every event it takes.
func DecodeBody(body []byte, withCustomData bool) ([]*Event, error) {
	return decodeBatch(body, func(b []byte) (*Event, error) { return decodeEnvelopeOnly(b, withCustomData, true) })
}

func decodeBatch(body []byte, decode func([]byte) (*Event, error)) ([]*Event, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body")
	}
	if body[0] != '[' {
		ev, err := decode(body)
		if err != nil {
			return nil, err
		}
		return []*Event{ev}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, fmt.Errorf("decode batch: %w", err)
	}
	if len(items) == 0 {
		return nil, errors.New("empty batch")
	}
	evs := make([]*Event, 0, len(items))
	for i, it := range items {
		ev, err := decode(it)
		if err != nil {
			return nil, fmt.Errorf("batch element %d: %w", i, err)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// optionalUint reads a JSON number (or a numeric string, or null) as a uint64 without loss.
func optionalUint(raw json.RawMessage) (uint64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, nil
	}
	if raw[0] == '"' {
		s, ok := jsonString(raw)
		if !ok {
			return 0, errors.New("not a JSON string")
		}
		raw = []byte(s)
	}
	return parseUint(json.Number(raw))
}

// jsonString decodes the JSON string raw as encoding/json does, without reflection when it has
// no escapes (the usual case). ok is false when raw is not a JSON string.
func jsonString(raw []byte) (s string, ok bool) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' &&
		bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) && stringEnd(raw, 0) == n {
		return string(raw[1 : n-1]), true
	}
	return s, json.Unmarshal(raw, &s) == nil
}

// MarshalJSON encodes the event in EMS's envelope. When the event was decoded from the wire,
// the original bytes are returned unchanged.
func (e *Event) MarshalJSON() ([]byte, error) {
	if len(e.Raw) > 0 {
		return e.Raw, nil
	}
	env := struct {
		ID        uint64  `json:"id,omitempty"`
		Payload   Payload `json:"payload"`
		ProcessID uint64  `json:"processId,omitempty"`
		Timestamp uint64  `json:"timestamp,omitempty"`
		Type      string  `json:"type"`
	}{e.ID, e.Payload, e.ProcessID, e.Timestamp, e.Type}
	if env.Payload == nil {
		env.Payload = Payload{}
	}
	return json.Marshal(env)
}
