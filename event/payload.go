package event

import (
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
)

// Payload is an event's payload as decoded from JSON, with json.Number for numbers so that
// 64-bit ids survive. Nested objects are Payload values too (map[string]any underneath).
type Payload map[string]any

// Settings block names found in stream payloads (reference §1.6.1).
const (
	PullSettings    = "pullSettings"
	PushSettings    = "pushSettings"
	HLSSettings     = "hlsSettings"
	HDSSettings     = "hdsSettings"
	MSSSettings     = "mssSettings"
	DASHSettings    = "dashSettings"
	RecordSettings  = "recordSettings"
	ProcessSettings = "processSettings"
)

// Lookup returns the value at a dotted path such as "hlsSettings.groupName".
func (p Payload) Lookup(dotted string) (any, bool) {
	var cur any = map[string]any(p)
	for part := range strings.SplitSeq(dotted, ".") {
		m, ok := asMap(cur)
		if !ok {
			return nil, false
		}
		cur, ok = m[part]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

// String returns the value at a dotted path as a string. Numbers and booleans are formatted;
// null, objects and arrays give ("", false).
func (p Payload) String(dotted string) (string, bool) {
	v, ok := p.Lookup(dotted)
	if !ok {
		return "", false
	}
	return scalarString(v)
}

// Uint64 returns the value at a dotted path as an unsigned integer, without loss for 64-bit
// values. Numeric strings are accepted, as EMS echoes user variables as strings.
func (p Payload) Uint64(dotted string) (uint64, bool) {
	v, ok := p.Lookup(dotted)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case json.Number:
		n, err := parseUint(x)
		return n, err == nil
	case string:
		n, err := parseUint(json.Number(x))
		return n, err == nil
	case float64:
		if x < 0 || x != math.Trunc(x) || x > math.MaxUint64 {
			return 0, false
		}
		return uint64(x), true
	}
	return 0, false
}

// Bool returns the value at a dotted path as a boolean. EMS serializes booleans as JSON true and
// false; 1/0 numbers and "true"/"1" strings are accepted too.
func (p Payload) Bool(dotted string) (bool, bool) {
	v, ok := p.Lookup(dotted)
	if !ok {
		return false, false
	}
	switch x := v.(type) {
	case bool:
		return x, true
	case json.Number:
		return x.String() != "0", true
	case string:
		b, err := strconv.ParseBool(x)
		return b, err == nil
	}
	return false, false
}

// Object returns the nested object at a dotted path.
func (p Payload) Object(dotted string) (Payload, bool) {
	v, ok := p.Lookup(dotted)
	if !ok {
		return nil, false
	}
	m, ok := asMap(v)
	return Payload(m), ok
}

// Name returns the stream's local name (payload.name); stream events carry no top-level
// localStreamName (reference §1.6.1).
func (p Payload) Name() string {
	s, _ := p.String("name")
	return s
}

// UniqueID returns the stream id (payload.uniqueId), the id shutdownStream and getStreamInfo
// take. It is not a config id.
func (p Payload) UniqueID() (uint64, bool) { return p.Uint64("uniqueId") }

// StreamType returns the stream type tag such as INR, ONR, OFHLS or OFMP4.
func (p Payload) StreamType() string {
	s, _ := p.String("type")
	return s
}

// IsInbound reports whether the stream type tag is an inbound one (it starts with I).
func (p Payload) IsInbound() bool { return strings.HasPrefix(p.StreamType(), "I") }

// Settings returns one of the settings blocks (PullSettings, HLSSettings, ...) when present.
func (p Payload) Settings(block string) (Payload, bool) { return p.Object(block) }

// ConfigID returns the configId of a settings block: the id removeConfig takes.
func (p Payload) ConfigID(block string) (uint64, bool) { return p.Uint64(block + ".configId") }

// UserVars returns the user variables (names starting with "_") at the top level of the payload
// and, when block is not empty, inside that settings block; the block's win on a clash. Values
// are formatted as strings; null values are left out.
func (p Payload) UserVars(block string) map[string]string {
	out := map[string]string{}
	collect := func(m Payload) {
		for k, v := range m {
			if strings.HasPrefix(k, "_") {
				if s, ok := scalarString(v); ok {
					out[k] = s
				}
			}
		}
	}
	collect(p)
	if block != "" {
		if b, ok := p.Settings(block); ok {
			collect(b)
		}
	}
	return out
}

// UserVar returns one user variable (name includes the leading "_") from the payload top level
// or from any settings block.
func (p Payload) UserVar(name string) (string, bool) {
	if s, ok := p.String(name); ok {
		return s, true
	}
	for _, block := range []string{PullSettings, PushSettings, RecordSettings, HLSSettings, HDSSettings, DASHSettings, MSSSettings, ProcessSettings} {
		if s, ok := p.String(block + "." + name); ok {
			return s, true
		}
	}
	return "", false
}

// File returns payload.file of a file event with separators normalised to "/" (EMS on Windows
// mixes "/" and "\", reference §1.3) and repeated separators folded. A Windows drive letter is
// kept ("F:/media/x.mp4").
func (p Payload) File() string {
	s, _ := p.String("file")
	return NormalizePath(s)
}

// NormalizePath turns an EMS file path into a slash-separated one: "\" becomes "/", and runs of
// separators are folded. It does not resolve ".." or make the path absolute.
func NormalizePath(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(s, `\`, "/")
	var b strings.Builder
	b.Grow(len(s))
	prevSlash := false
	for _, r := range s {
		if r == '/' {
			if prevSlash {
				continue
			}
			prevSlash = true
		} else {
			prevSlash = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// PathTail returns the last n slash-separated components of a normalised path, joined by "/".
// It returns fewer when the path is shorter.
func PathTail(p string, n int) string {
	parts := strings.Split(strings.Trim(NormalizePath(p), "/"), "/")
	if len(parts) > n {
		parts = parts[len(parts)-n:]
	}
	return path.Join(parts...)
}

// TimerID returns timerId of a timer event.
func (p Payload) TimerID() (uint64, bool) { return p.Uint64("timerId") }

// TriggerCount returns triggerCount of a timer event.
func (p Payload) TriggerCount() (uint64, bool) { return p.Uint64("triggerCount") }

// TimerValue returns the timer's value as EMS echoes it: seconds, or an absolute time string.
func (p Payload) TimerValue() string {
	s, _ := p.String("value")
	return s
}

// CustomData returns payload.customData, the value the EMS sink configuration attached.
func (p Payload) CustomData() (any, bool) {
	v, ok := p.Lookup("customData")
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case Payload:
		return m, true
	case map[string]any:
		return m, true
	}
	return nil, false
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

func parseUint(n json.Number) (uint64, error) {
	s := n.String()
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return u, nil
	}
	// EMS prints doubles with four decimals ("1.0000"); accept integral ones.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f >= math.MaxUint64 {
		return 0, fmt.Errorf("%q is not an unsigned integer", s)
	}
	return uint64(f), nil
}
