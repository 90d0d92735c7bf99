// Package filter selects EMS events with Flussonic's event-sink filter semantics, shared by the
// event sinks and the rules plugins.
//
// A Filter has two lists of sets, Only and Except. A set is a list of key=value conditions and
// fully matches an event when every key in it equals one of its listed values. An event is
// dropped when any Except set fully matches it; otherwise it passes when there are no Only sets
// or when any Only set fully matches. Except is therefore checked before Only.
//
// Keys address the event:
//
//   - "type" is the EMS event name (inStreamClosed, hlsChunkClosed, ...);
//   - "ems" is the name of the configured EMS server that sent the event;
//   - "payload.X" is payload field X, for fields whose names collide with the two above
//     ("payload.type" is the stream type tag such as INR);
//   - anything else is a payload field, with dots for nested fields: "name", "file",
//     "customData", "hlsSettings.groupName".
//
// Values are compared as strings (numbers and booleans in their JSON spelling) and may be globs:
// "*" matches any run of characters including "/", "?" one character, "\" quotes the next one.
// A missing field, a null, an object or an array never matches, not even "*": "name=*" means
// "has a name".
//
// In configuration a set is either Flussonic's string form, space-separated pairs with
// comma-separated values ("type=inStreamCreated,inStreamClosed name=cam*"), or a JSON object
// whose values are a comma-separated string or an array of strings ({"name": ["a,b", "c"]} keeps
// commas inside array items).
package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emsflow/emsflow/event"
)

// Filter is a pair of Only and Except set lists. The zero Filter passes every event.
type Filter struct {
	// Only lists the sets of which one must fully match, when not empty.
	Only Sets `json:"only"`
	// Except lists the sets of which none may fully match.
	Except Sets `json:"except"`
}

// Match reports whether ev passes the filter.
func (f Filter) Match(ev *event.Event) bool {
	for _, s := range f.Except {
		if s.Match(ev) {
			return false
		}
	}
	if len(f.Only) == 0 {
		return true
	}
	for _, s := range f.Only {
		if s.Match(ev) {
			return true
		}
	}
	return false
}

// Types returns the exact event types the filter can pass, when every Only set names the
// "type" key with literal values only; ok is false when any event type may pass. Subscribers
// use it to declare fewer events to the dispatcher.
func (f Filter) Types() (types []string, ok bool) {
	if len(f.Only) == 0 {
		return nil, false
	}
	for _, s := range f.Only {
		c, found := s.cond(KeyType)
		if !found {
			return nil, false
		}
		for _, g := range c.globs {
			lit, isLit := g.literal()
			if !isLit {
				return nil, false
			}
			if !slices.Contains(types, lit) {
				types = append(types, lit)
			}
		}
	}
	return types, true
}

// IsZero reports whether the filter has no sets and so passes everything.
func (f Filter) IsZero() bool { return len(f.Only) == 0 && len(f.Except) == 0 }

// String renders the filter in Flussonic's syntax, for logs and error messages.
func (f Filter) String() string {
	var parts []string
	for _, s := range f.Only {
		parts = append(parts, "only "+s.String())
	}
	for _, s := range f.Except {
		parts = append(parts, "except "+s.String())
	}
	return strings.Join(parts, "; ")
}

// Keys with a meaning of their own; every other key is a payload field.
const (
	// KeyType addresses the EMS event name.
	KeyType = "type"
	// KeyEMS addresses the name of the EMS server that sent the event.
	KeyEMS = "ems"
	// PayloadPrefix addresses a payload field explicitly ("payload.type").
	PayloadPrefix = "payload."
)

// Sets is a list of sets. In JSON it is an array of sets, or a single set.
type Sets []Set

// UnmarshalJSON reads an array of sets (strings or objects), a single string or a single object.
// An empty string or null gives no sets.
func (ss *Sets) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*ss = nil
		return nil
	case len(b) > 0 && b[0] == '[':
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return fmt.Errorf("filter sets: %w", err)
		}
		out := make(Sets, 0, len(items))
		var errs []error
		for i, it := range items {
			var s Set
			if err := s.UnmarshalJSON(it); err != nil {
				errs = append(errs, fmt.Errorf("set %d: %w", i+1, err))
				continue
			}
			out = append(out, s)
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		*ss = out
		return nil
	case len(b) > 0 && b[0] == '"':
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return fmt.Errorf("filter sets: %w", err)
		}
		if strings.TrimSpace(str) == "" {
			*ss = nil
			return nil
		}
	}
	var s Set
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	*ss = Sets{s}
	return nil
}

// Set is a list of key=value conditions that must all hold.
type Set struct {
	conds []cond
}

// cond is one key with its allowed values.
type cond struct {
	key   string
	globs []glob
}

// ParseSet parses Flussonic's string form: space-separated key=v1,v2 pairs.
func ParseSet(s string) (Set, error) {
	var set Set
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return Set{}, errors.New("empty filter set")
	}
	var errs []error
	for _, f := range fields {
		key, vals, ok := strings.Cut(f, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%q is not key=value", f))
			continue
		}
		if err := set.add(key, strings.Split(vals, ",")); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Set{}, errors.Join(errs...)
	}
	return set, nil
}

// MustParseSet is ParseSet for constant sets in code and tests; it panics on a bad set.
func MustParseSet(s string) Set {
	set, err := ParseSet(s)
	if err != nil {
		panic(fmt.Sprintf("filter: %v", err))
	}
	return set
}

// NewSet builds a set from a map of keys to allowed values, validating it like ParseSet.
// Values are taken as given (not split on commas).
func NewSet(m map[string][]string) (Set, error) {
	if len(m) == 0 {
		return Set{}, errors.New("empty filter set")
	}
	var set Set
	var errs []error
	for _, k := range sortedKeys(m) {
		if err := set.add(k, m[k]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Set{}, errors.Join(errs...)
	}
	return set, nil
}

func (s *Set) add(key string, vals []string) error {
	key = strings.TrimSpace(key)
	if key == "" {
		return errors.New("empty key")
	}
	if strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
		return fmt.Errorf("key %q: empty path segment", key)
	}
	if key == PayloadPrefix[:len(PayloadPrefix)-1] {
		return fmt.Errorf("key %q: name a payload field, such as payload.type", key)
	}
	if _, dup := s.cond(key); dup {
		return fmt.Errorf("key %q repeated in one set: list its values once, as %s=a,b", key, key)
	}
	if len(vals) == 0 {
		return fmt.Errorf("key %q has no value", key)
	}
	c := cond{key: key}
	for _, v := range vals {
		if v == "" {
			return fmt.Errorf("key %q has an empty value", key)
		}
		g, err := compileGlob(v)
		if err != nil {
			return fmt.Errorf("key %q value %q: %w", key, v, err)
		}
		c.globs = append(c.globs, g)
	}
	s.conds = append(s.conds, c)
	return nil
}

func (s Set) cond(key string) (cond, bool) {
	for _, c := range s.conds {
		if c.key == key {
			return c, true
		}
	}
	return cond{}, false
}

// Match reports whether every condition of the set holds for ev. The empty set matches nothing.
func (s Set) Match(ev *event.Event) bool {
	if len(s.conds) == 0 || ev == nil {
		return false
	}
	for _, c := range s.conds {
		v, ok := Resolve(ev, c.key)
		if !ok {
			return false
		}
		if !slices.ContainsFunc(c.globs, func(g glob) bool { return g.match(v) }) {
			return false
		}
	}
	return true
}

// String renders the set in Flussonic's string form.
func (s Set) String() string {
	parts := make([]string, 0, len(s.conds))
	for _, c := range s.conds {
		vals := make([]string, 0, len(c.globs))
		for _, g := range c.globs {
			vals = append(vals, g.raw)
		}
		parts = append(parts, c.key+"="+strings.Join(vals, ","))
	}
	return strings.Join(parts, " ")
}

// MarshalJSON writes the string form.
func (s Set) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads the string form or an object of key to a comma-separated string, an array
// of strings, or a JSON number or boolean.
func (s *Set) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return fmt.Errorf("filter set: %w", err)
		}
		set, err := ParseSet(str)
		if err != nil {
			return err
		}
		*s = set
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("filter set must be a string such as \"type=inStreamClosed name=cam1,cam2\" or an object, got %.40s", b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("filter set: %w", err)
	}
	vals := make(map[string][]string, len(m))
	var errs []error
	for k, v := range m {
		switch x := v.(type) {
		case string:
			vals[k] = strings.Split(x, ",")
		case json.Number:
			vals[k] = []string{x.String()}
		case bool:
			vals[k] = []string{fmt.Sprint(x)}
		case []any:
			for _, it := range x {
				str, ok := it.(string)
				if !ok {
					if n, isNum := it.(json.Number); isNum {
						str, ok = n.String(), true
					}
				}
				if !ok {
					errs = append(errs, fmt.Errorf("key %q: array items must be strings", k))
					break
				}
				vals[k] = append(vals[k], str)
			}
			if len(x) == 0 {
				errs = append(errs, fmt.Errorf("key %q has no value", k))
			}
		default:
			errs = append(errs, fmt.Errorf("key %q: value must be a string or an array of strings", k))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	set, err := NewSet(vals)
	if err != nil {
		return err
	}
	*s = set
	return nil
}

// Resolve returns the string value a filter key addresses in ev, and whether it is present.
func Resolve(ev *event.Event, key string) (string, bool) {
	switch {
	case key == KeyType:
		return ev.Type, ev.Type != ""
	case key == KeyEMS:
		return ev.EMS, ev.EMS != ""
	case strings.HasPrefix(key, PayloadPrefix):
		return ev.Payload.String(strings.TrimPrefix(key, PayloadPrefix))
	default:
		return ev.Payload.String(key)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
