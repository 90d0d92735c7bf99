package rules

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"text/template"

	"github.com/emsflow/emsflow/event"
)

// Data is what an action's templates see: {{.Name}}, {{.Payload.pullSettings.uri}}, ...
//
// Fields are strings, empty when the event lacks them. A template that renders an empty value
// skips the action (an event without what the action needs is not an error); a template that
// names a payload field the event does not have fails the same way, and both are counted.
type Data struct {
	// Type is the event name, such as inStreamCreated.
	Type string
	// EMS is the name of the configured EMS that sent the event.
	EMS string
	// Name is the stream's local name (payload.name).
	Name string
	// UniqueID is the stream id (payload.uniqueId), the id shutdownStream id= takes.
	UniqueID string
	// StreamType is the stream type tag (payload.type), such as INR, ONR or OFHLS.
	StreamType string
	// File is payload.file of a file event, with "/" separators.
	File string
	// Payload is the whole payload, a map indexable by field: {{.Payload.inStreamUniqueId}},
	// {{index .Payload "pullSettings" "uri"}}. JSON nulls read as empty strings.
	Payload any
}

// newData builds the template data of an event.
func newData(ev *event.Event) (*Data, event.Payload) {
	p := ev.Payload
	if p == nil {
		p = event.Payload{}
	}
	d := &Data{
		Type:       ev.Type,
		EMS:        ev.EMS,
		Name:       p.Name(),
		StreamType: p.StreamType(),
		File:       p.File(),
		Payload:    map[string]any(nullsToEmpty(p).(event.Payload)),
	}
	if id, ok := p.UniqueID(); ok {
		d.UniqueID = strconv.FormatUint(id, 10)
	}
	return d, p
}

// nullsToEmpty copies a decoded JSON value with every null replaced by "", so that a template
// printing a null field renders empty (and the action is skipped) instead of "<no value>".
func nullsToEmpty(v any) any {
	switch x := v.(type) {
	case nil:
		return ""
	case event.Payload:
		out := make(event.Payload, len(x))
		for k, e := range x {
			out[k] = nullsToEmpty(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = nullsToEmpty(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = nullsToEmpty(e)
		}
		return out
	}
	return v
}

// anyPayload is the sample payload of validation: every field exists, at any depth.
type anyPayload map[string]anyPayload

// sampleData is the data validation executes templates against.
func sampleData(typ string) *Data {
	return &Data{
		Type: typ, EMS: "sample", Name: "sample", UniqueID: "1", StreamType: "INR",
		File: "/sample/stream/segment_1.ts", Payload: anyPayload{},
	}
}

// boundFuncs returns the template functions, payload and setting reading p. Templates are
// parsed with boundFuncs(nil) and executed with the functions bound to the event's payload.
//
//	payload "a.b"       the payload field at a dotted path, "" when absent, null or not a scalar
//	setting "key"       key in the stream's settings block (pullSettings, pushSettings,
//	                    hlsSettings, ...); with a dot, a dotted payload path like payload
//	base, dir, ext      path.Base, path.Dir and path.Ext of a path with "/" separators
//	stem                the base name without its extension
//	lower, upper        case mapping
//	trimPrefix p s, trimSuffix x s, replace old new s
//	default d v         v, or d when v is empty
func boundFuncs(p event.Payload) template.FuncMap {
	return template.FuncMap{
		"payload": func(dotted string) string {
			s, _ := p.String(dotted)
			return s
		},
		"setting": func(key string) string {
			if strings.Contains(key, ".") {
				s, _ := p.String(key)
				return s
			}
			for _, block := range settingsBlocks {
				if s, ok := p.String(block + "." + key); ok {
					return s
				}
			}
			return ""
		},
		"base":       func(v any) string { return pathOp(path.Base, v) },
		"dir":        func(v any) string { return pathOp(path.Dir, v) },
		"ext":        func(v any) string { return pathOp(path.Ext, v) },
		"stem":       func(v any) string { return pathOp(stem, v) },
		"lower":      func(v any) string { return strings.ToLower(str(v)) },
		"upper":      func(v any) string { return strings.ToUpper(str(v)) },
		"trimPrefix": func(prefix string, v any) string { return strings.TrimPrefix(str(v), prefix) },
		"trimSuffix": func(suffix string, v any) string { return strings.TrimSuffix(str(v), suffix) },
		"replace":    func(old, new string, v any) string { return strings.ReplaceAll(str(v), old, new) },
		"default": func(d string, v any) string {
			if s := str(v); s != "" {
				return s
			}
			return d
		},
	}
}

var settingsBlocks = []string{
	event.PullSettings, event.PushSettings, event.HLSSettings, event.HDSSettings,
	event.MSSSettings, event.DASHSettings, event.RecordSettings, event.ProcessSettings,
}

func pathOp(op func(string) string, v any) string {
	s := event.NormalizePath(str(v))
	if s == "" {
		return ""
	}
	return op(s)
}

func stem(p string) string {
	b := path.Base(p)
	return strings.TrimSuffix(b, path.Ext(b))
}

// str formats a template value: strings and numbers as they are, null and objects as "".
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case map[string]any, event.Payload, anyPayload, []any:
		return ""
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}
