package emssim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// obj is a JSON object as EMS's Variant map serializes it: Go's encoder sorts map keys, which is
// the order of EMS's std::map (reference §1.3).
type obj = map[string]any

// double is a number EMS stores as a double: it prints with four decimals ("1.0000").
type double float64

// MarshalJSON prints the value as EMS does (%.4f).
func (d double) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(d), 'f', 4, 64), nil
}

// msDouble returns t as milliseconds since the epoch, the unit of creationTimestamp.
func msDouble(t time.Time) double { return double(float64(t.UnixNano()) / 1e6) }

// emsTime formats t as EMS's Variant date strings: UTC, no zone, ".000" (reference §1.3).
func emsTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") + ".000" }

// marshalEMS encodes v as EMS's JSON serializer does: sorted keys, no HTML escaping, and "/"
// escaped as "\/" (the EMS 1.7.1 capture shows "feature\/azure_license"). A "/" can only occur
// inside strings in JSON, so replacing it after encoding is safe.
func marshalEMS(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	out := bytes.TrimRight(buf.Bytes(), "\n")
	return bytes.ReplaceAll(out, []byte("/"), []byte(`\/`)), nil
}

// tagNumeric packs a stream or codec tag ("INR", "VH264") as EMS does: the characters
// left-aligned in a uint64 (INR → 5282249572905648128, reference §1.3).
func tagNumeric(tag string) uint64 {
	var v uint64
	for i := 0; i < len(tag) && i < 8; i++ {
		v |= uint64(tag[i]) << (56 - 8*uint(i))
	}
	return v
}

// cloneObj copies an object one level deep plus nested objects, so a stored config can be
// echoed without aliasing.
func cloneObj(m obj) obj {
	if m == nil {
		return nil
	}
	out := make(obj, len(m))
	for k, v := range m {
		if sub, ok := v.(obj); ok {
			v = cloneObj(sub)
		}
		out[k] = v
	}
	return out
}
