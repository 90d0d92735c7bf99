package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/filter"
	"github.com/emsflow/emsflow/plugins"
)

// Config is the Rules plugin's parameters.
type Config struct {
	// Rules are applied to every event in order; each rule acts on its own.
	Rules RuleList `json:"rules"`
	// Reconcile runs the rules of inStreamCreated, outStreamCreated and streamCreated over the
	// streams every configured EMS already runs, at start and every ReconcileInterval, so that
	// streams whose events were lost while emsflow was down are handled too. Default true.
	Reconcile *Switch `json:"reconcile"`
	// ReconcileInterval is how often to reconcile after start; 0 means only at start.
	ReconcileInterval plugins.Duration `json:"reconcile_interval"`
}

// RuleConfig is one rule.
type RuleConfig struct {
	// Name names the rule in logs, metrics and the _emsflowRule tag; default rule-<n>.
	Name string `json:"name"`
	// Events are EMS event names or globs over them ("inStreamCreated", "*StreamClosed").
	Events StringList `json:"events"`
	// Only and Except are Flussonic-style filters (internal/filter): the rule acts on an event
	// that no Except set matches and, when Only is given, one Only set matches.
	Only filter.Sets `json:"only"`
	// Except: see Only.
	Except filter.Sets `json:"except"`
	// Action is an EMS API command in EMS's command-line form, values templated from the event:
	// "createHLSStream localStreamNames={{.Name}} targetFolder=/var/hls groupName={{.Name}}".
	Action string `json:"action"`
	// EMS is the configured EMS the action runs on; empty means the EMS that sent the event.
	EMS string `json:"ems"`
}

// RuleList is the list of rules. Each rule is decoded strictly (unknown keys are errors). In the
// INI form, where parameters are strings, the list may be given as a JSON array in a string.
type RuleList []RuleConfig

// UnmarshalJSON reads a JSON array of rules, or a string holding one.
func (l *RuleList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(strings.TrimSpace(s))
		if len(b) == 0 {
			*l = nil
			return nil
		}
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return fmt.Errorf("rules must be a list of rule objects: %w", err)
	}
	out := make(RuleList, 0, len(items))
	var errs []error
	for i, it := range items {
		var r RuleConfig
		dec := json.NewDecoder(bytes.NewReader(it))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			errs = append(errs, fmt.Errorf("rule %d: %w (keys: name, events, only, except, action, ems)", i+1, err))
			continue
		}
		out = append(out, r)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	*l = out
	return nil
}

// Switch is a boolean that configuration may give as true/false or, in the INI form, as a
// string ("true", "1", "yes", "on", "enabled" and their opposites).
type Switch bool

// UnmarshalJSON reads a JSON boolean or a boolean string.
func (s *Switch) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case bool:
		*s = Switch(x)
		return nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "1", "true", "yes", "on", "enabled":
			*s = true
			return nil
		case "0", "false", "no", "off", "disabled":
			*s = false
			return nil
		}
	}
	return fmt.Errorf("%s is not a boolean", b)
}

// StringList is a list of strings given as a JSON array or as one comma-separated string.
type StringList []string

// UnmarshalJSON reads ["a","b"] or "a,b".
func (l *StringList) UnmarshalJSON(b []byte) error {
	var items []string
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
		if err := json.Unmarshal(b, &items); err != nil {
			return err
		}
	} else {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("want a list of strings or a comma-separated string: %w", err)
		}
		items = []string{s}
	}
	var out StringList
	for _, it := range items {
		for part := range strings.SplitSeq(it, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	*l = out
	return nil
}

// rule is a validated rule, ready to act.
type rule struct {
	name   string
	events []string
	filter filter.Filter
	action *action
	ems    string
	text   string
}

// compile validates the configuration against the configured EMS names and returns the rules.
// Every problem is reported, joined.
func (c Config) compile(emsNames []string) ([]*rule, error) {
	if len(c.Rules) == 0 {
		return nil, errors.New("rules: at least one rule is required")
	}
	var errs []error
	if c.ReconcileInterval < 0 {
		errs = append(errs, errors.New("reconcile_interval must not be negative"))
	}
	names := map[string]bool{}
	var out []*rule
	for i, rc := range c.Rules {
		name := strings.TrimSpace(rc.Name)
		if name == "" {
			name = fmt.Sprintf("rule-%d", i+1)
		}
		r, rerrs := compileRule(name, rc, emsNames)
		if names[name] {
			rerrs = append(rerrs, errors.New("name used by an earlier rule"))
		}
		names[name] = true
		for _, e := range rerrs {
			errs = append(errs, fmt.Errorf("rule %q: %w", name, e))
		}
		if len(rerrs) == 0 {
			out = append(out, r)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func compileRule(name string, rc RuleConfig, emsNames []string) (*rule, []error) {
	var errs []error
	r := &rule{name: name, filter: filter.Filter{Only: rc.Only, Except: rc.Except}, ems: rc.EMS, text: rc.Action}
	evs, err := expandEvents(rc.Events)
	if err != nil {
		errs = append(errs, err)
	}
	r.events = evs
	if rc.EMS != "" && !slices.Contains(emsNames, rc.EMS) {
		errs = append(errs, fmt.Errorf("ems %q is not configured (configured: %s)", rc.EMS, strings.Join(emsNames, ", ")))
	}
	a, err := parseAction(rc.Action)
	if err != nil {
		errs = append(errs, fmt.Errorf("action: %w", err))
	} else {
		r.action = a
		for _, typ := range evs {
			if err := a.validate(typ); err != nil {
				errs = append(errs, fmt.Errorf("action on %s: %w", typ, err))
				break // the same mistake would be reported once per event type
			}
		}
	}
	return r, errs
}

// expandEvents turns names and globs into known EMS event names, in event.Known's order.
func expandEvents(patterns []string) ([]string, error) {
	if len(patterns) == 0 {
		return nil, errors.New("events: at least one event name or glob is required")
	}
	want := map[string]bool{}
	var errs []error
	for _, p := range patterns {
		if !strings.ContainsAny(p, "*?[") {
			if !event.IsKnown(p) {
				errs = append(errs, fmt.Errorf("events: unknown event %q", p))
			}
			want[p] = true
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("events: bad glob %q: %w", p, err))
			continue
		}
		n := 0
		for _, k := range event.Known {
			if ok, _ := path.Match(p, k); ok {
				want[k] = true
				n++
			}
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("events: glob %q matches no known event", p))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var out []string
	for _, k := range event.Known {
		if want[k] {
			out = append(out, k)
		}
	}
	return out, nil
}
