package plugins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DecodeParams decodes a plugin's parameters strictly into dst, a pointer to a struct with json
// tags. Unknown keys are errors that list the known ones.
//
// Parameters come from either configuration form: the JSON form has real types, the INI form has
// only strings. So top-level fields are coerced where the intent is unambiguous: a string into a
// number, boolean or Duration field, and a single string into a []string field ("a list of
// destinations is allowed" while the guide shows one). All problems are joined.
func DecodeParams(raw json.RawMessage, dst any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("decode params: dst must be a pointer to a struct, got %T", dst)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("parameters must be a JSON object: %w", err)
	}
	fields := jsonFields(rv.Elem().Type())
	var errs []error
	for key, val := range m {
		f, ok := fields[key]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown parameter %q (known: %s)", key, strings.Join(sortedKeys(fields), ", ")))
			continue
		}
		cv, err := coerce(f, val)
		if err != nil {
			errs = append(errs, fmt.Errorf("parameter %q: %w", key, err))
			continue
		}
		m[key] = cv
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("decode params: %w", err)
	}
	sd := json.NewDecoder(bytes.NewReader(b))
	sd.DisallowUnknownFields()
	if err := sd.Decode(dst); err != nil {
		return fmt.Errorf("parameters: %w", friendlyJSONError(err))
	}
	return nil
}

var durationType = reflect.TypeFor[Duration]()

func coerce(t reflect.Type, v any) (any, error) {
	// An optional parameter is a pointer (*bool for "default on"); coerce to what it points to.
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s, isString := v.(string)
	switch {
	case t == durationType:
		// Duration.UnmarshalJSON reads both forms; try it here so that its error is reported
		// with the parameter's name.
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		var d Duration
		if err := d.UnmarshalJSON(b); err != nil {
			return nil, err
		}
		return v, nil
	case !isString:
		return v, nil
	}
	s = strings.TrimSpace(s)
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a non-negative integer", s)
		}
		return n, nil
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return n, nil
	case reflect.Bool:
		switch strings.ToLower(s) {
		case "1", "true", "yes", "on", "enabled":
			return true, nil
		case "0", "false", "no", "off", "disabled", "":
			return false, nil
		}
		return nil, fmt.Errorf("%q is not a boolean", s)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return []string{s}, nil
		}
	}
	return v, nil
}

func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func friendlyJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s: got %s, want %s", te.Field, te.Value, te.Type)
	}
	return err
}

// Duration is a time.Duration that configuration may give as a Go duration string ("90s",
// "5m") or as a number of seconds (EvoStream's own parameters, such as period_time, are seconds).
type Duration time.Duration

// UnmarshalJSON reads "90s", "1m30s", 90 or "90".
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		s = strings.TrimSpace(s)
		if n, err := strconv.ParseFloat(s, 64); err == nil {
			*d = Duration(n * float64(time.Second))
			return nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (use 90s, 5m or a number of seconds)", s)
		}
		*d = Duration(v)
		return nil
	}
	n, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("%s is not a duration", b)
	}
	*d = Duration(n * float64(time.Second))
	return nil
}

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Std returns the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }
