package rules

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
)

// Tags every action that creates something on EMS carries, so that emsflow never reacts to its
// own creations (EMS echoes "_" variables in events and listings, reference §1.3).
const (
	// TagInstance is the user variable holding the Rules instance name.
	TagInstance = "_emsflow"
	// TagRule is the user variable holding the rule name.
	TagRule = "_emsflowRule"
)

// check says how an action finds out that its effect is already there.
type check int

const (
	checkGroup     check = iota + 1 // create*Stream: a config of that kind for the stream and group
	checkPull                       // pullStream: a pull config with the same uri (and name)
	checkPush                       // pushStream: a push config with the same stream and uri
	checkRecord                     // record: a record config with the same stream and path
	checkTimer                      // setTimer: a timer with the same value and variables
	checkStream                     // shutdownStream: the stream is gone
	checkConfig                     // removeConfig: the config is gone
	checkTimerGone                  // removeTimer: the timer is gone
)

// command describes one EMS API command a rule may run.
type command struct {
	name string
	// required lists groups of parameters; each group needs at least one of its members.
	required [][]string
	// creates marks commands that make something on EMS; they carry TagInstance and TagRule.
	creates bool
	check   check
	// kind is the listConfig kind of a create*Stream command.
	kind string
}

// commands are the EMS API commands rules may run, the ones emsclient knows that change
// something. Names compare case-insensitively, as EMS compares them.
var commands = []command{
	{name: "pullStream", required: [][]string{{"uri"}}, creates: true, check: checkPull},
	{name: "pushStream", required: [][]string{{"uri"}, {"localStreamName"}}, creates: true, check: checkPush},
	{name: "record", required: [][]string{{"localStreamName"}, {"pathToFile"}}, creates: true, check: checkRecord},
	{name: "createHLSStream", required: groupRequired, creates: true, check: checkGroup, kind: "hls"},
	{name: "createHDSStream", required: groupRequired, creates: true, check: checkGroup, kind: "hds"},
	{name: "createDASHStream", required: groupRequired, creates: true, check: checkGroup, kind: "dash"},
	{name: "createMSSStream", required: groupRequired, creates: true, check: checkGroup, kind: "mss"},
	{name: "shutdownStream", required: [][]string{{"id", "localStreamName"}}, check: checkStream},
	{name: "removeConfig", required: [][]string{{"id", "groupName"}}, check: checkConfig},
	{name: "setTimer", required: [][]string{{"value"}}, creates: true, check: checkTimer},
	{name: "removeTimer", required: [][]string{{"id"}}, check: checkTimerGone},
}

// groupRequired are the parameters every create*Stream action needs. groupName is required,
// as in emsclient: EMS would otherwise invent one, which could not be found again to tell
// whether the output already exists.
var groupRequired = [][]string{{"localStreamNames"}, {"targetFolder"}, {"groupName"}}

// CommandNames returns the EMS API commands a rule action may run.
func CommandNames() []string {
	out := make([]string, 0, len(commands))
	for _, c := range commands {
		out = append(out, c.name)
	}
	return out
}

func lookupCommand(name string) (*command, bool) {
	for i := range commands {
		if strings.EqualFold(commands[i].name, name) {
			return &commands[i], true
		}
	}
	return nil, false
}

// action is a parsed rule action: a command and its parameters, each list element its own
// template, so that a value from an event is always one element of one parameter.
type action struct {
	cmd    *command
	params []paramTemplate
}

type paramTemplate struct {
	key   string
	elems []*template.Template
}

// parseAction parses "<command> k=v k=v" in EMS's command-line form. Values may hold templates
// ({{...}}, which may contain spaces); backslash escapes space, "=", "," and "\" outside them,
// and an unescaped comma separates list elements.
func parseAction(text string) (*action, error) {
	tokens, err := splitTokens(strings.TrimSpace(text))
	if err != nil {
		return nil, err
	}
	if len(tokens) == 0 {
		return nil, errors.New("action is empty: want \"<command> key=value ...\"")
	}
	cmdName := tokens[0]
	if strings.Contains(cmdName, "{{") || strings.Contains(cmdName, "=") {
		return nil, fmt.Errorf("action must start with a command name, got %q", cmdName)
	}
	cmd, ok := lookupCommand(cmdName)
	if !ok {
		return nil, fmt.Errorf("unknown command %q (allowed: %s)", cmdName, strings.Join(CommandNames(), ", "))
	}
	a := &action{cmd: cmd}
	var errs []error
	seen := map[string]bool{}
	stubs := boundFuncs(nil)
	for _, tok := range tokens[1:] {
		key, val, ok := cutUnescaped(tok, '=')
		if !ok {
			errs = append(errs, fmt.Errorf("%q is not key=value", tok))
			continue
		}
		if err := checkKey(key); err != nil {
			errs = append(errs, err)
			continue
		}
		lk := strings.ToLower(key)
		if seen[lk] {
			errs = append(errs, fmt.Errorf("parameter %s given twice", key))
			continue
		}
		seen[lk] = true
		if strings.EqualFold(key, TagInstance) || strings.EqualFold(key, TagRule) {
			errs = append(errs, fmt.Errorf("parameter %s is reserved: emsflow tags what it creates with it", key))
			continue
		}
		p := paramTemplate{key: key}
		for i, el := range splitUnescaped(val, ',') {
			if el == "" {
				errs = append(errs, fmt.Errorf("parameter %s: element %d is empty", key, i+1))
				continue
			}
			t, err := template.New(key).Funcs(stubs).Option("missingkey=error").Parse(unescape(el))
			if err != nil {
				errs = append(errs, fmt.Errorf("parameter %s: %w", key, err))
				continue
			}
			p.elems = append(p.elems, t)
		}
		a.params = append(a.params, p)
	}
	for _, group := range cmd.required {
		if !slices.ContainsFunc(group, func(k string) bool { return seen[strings.ToLower(k)] }) {
			errs = append(errs, fmt.Errorf("%s needs parameter %s", cmd.name, strings.Join(group, " or ")))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// checkKey accepts EMS parameter names: letters, digits and "_".
func checkKey(key string) error {
	if key == "" {
		return errors.New("parameter with an empty name")
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return fmt.Errorf("parameter name %q: only letters, digits and _ are allowed (no templates)", key)
		}
	}
	return nil
}

// errEmptyValue says a template rendered an empty value: the event lacks what the action needs.
var errEmptyValue = errors.New("empty value")

// render executes every parameter against data. The event values become list elements as they
// are: emsclient escapes space, "=", "," and "\" on the wire, so a value cannot add parameters
// or list elements. An element that renders empty gives an error wrapping errEmptyValue.
func (a *action) render(data *Data, payload event.Payload) (emsclient.Params, error) {
	funcs := boundFuncs(payload)
	ps := make(emsclient.Params, 0, len(a.params)+2)
	var buf bytes.Buffer
	for _, p := range a.params {
		vals := make([]string, 0, len(p.elems))
		for _, t := range p.elems {
			buf.Reset()
			c, err := t.Clone()
			if err != nil {
				return nil, fmt.Errorf("parameter %s: %w", p.key, err)
			}
			if err := c.Funcs(funcs).Execute(&buf, data); err != nil {
				return nil, fmt.Errorf("parameter %s: %w", p.key, err)
			}
			v := buf.String()
			if strings.TrimSpace(v) == "" {
				return nil, fmt.Errorf("parameter %s (%s): %w", p.key, t.Root.String(), errEmptyValue)
			}
			vals = append(vals, v)
		}
		ps.AddList(p.key, vals...)
	}
	return ps, nil
}

// validate executes every template against a sample event of type typ with a payload that
// has every field, so that unknown data fields, wrong function arguments and bad pipelines
// are found at start. Payload contents cannot be checked: they differ by EMS version.
func (a *action) validate(typ string) error {
	data := sampleData(typ)
	funcs := boundFuncs(nil)
	var errs []error
	for _, p := range a.params {
		for _, t := range p.elems {
			c, err := t.Clone()
			if err != nil {
				errs = append(errs, fmt.Errorf("parameter %s: %w", p.key, err))
				continue
			}
			if err := c.Funcs(funcs).Option("missingkey=zero").Execute(&bytes.Buffer{}, data); err != nil {
				errs = append(errs, fmt.Errorf("parameter %s: %w", p.key, err))
			}
		}
	}
	return errors.Join(errs...)
}

// splitTokens splits on spaces that are neither escaped nor inside a template action. Escapes
// are kept for the later stages.
func splitTokens(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	err := scan(s, func(i int, inAction, escaped bool) bool {
		if s[i] == ' ' && !inAction && !escaped {
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
			return true
		}
		cur.WriteByte(s[i])
		return true
	})
	if err != nil {
		return nil, err
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}

// cutUnescaped cuts s at the first sep that is neither escaped nor inside a template action.
func cutUnescaped(s string, sep byte) (before, after string, found bool) {
	at := -1
	_ = scan(s, func(i int, inAction, escaped bool) bool {
		if s[i] == sep && !inAction && !escaped {
			at = i
			return false
		}
		return true
	})
	if at < 0 {
		return s, "", false
	}
	return s[:at], s[at+1:], true
}

// splitUnescaped splits s at every sep that is neither escaped nor inside a template action.
func splitUnescaped(s string, sep byte) []string {
	var out []string
	start := 0
	_ = scan(s, func(i int, inAction, escaped bool) bool {
		if s[i] == sep && !inAction && !escaped {
			out = append(out, s[start:i])
			start = i + 1
		}
		return true
	})
	return append(out, s[start:])
}

// unescape removes EMS's backslash escapes outside template actions.
func unescape(s string) string {
	var b strings.Builder
	_ = scan(s, func(i int, inAction, escaped bool) bool {
		if s[i] == '\\' && !inAction && !escaped {
			return true // the escape itself; the next byte is taken as it is
		}
		b.WriteByte(s[i])
		return true
	})
	return b.String()
}

// scan walks s byte by byte and tells visit whether the byte is inside a template action
// ({{ ... }}, with Go string and rune literals inside skipped over) and whether it is escaped
// by a preceding backslash outside actions. visit returns false to stop. An unterminated action
// is an error.
func scan(s string, visit func(i int, inAction, escaped bool) bool) error {
	inAction := false
	var quote byte
	escaped := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inAction && quote != 0:
			if !visit(i, true, false) {
				return nil
			}
			switch {
			case c == '\\' && quote != '`' && i+1 < len(s):
				i++
				if !visit(i, true, false) {
					return nil
				}
			case c == quote:
				quote = 0
			}
			continue
		case inAction:
			if !visit(i, true, false) {
				return nil
			}
			switch {
			case c == '"' || c == '`' || c == '\'':
				quote = c
			case c == '}' && i+1 < len(s) && s[i+1] == '}':
				i++
				if !visit(i, true, false) {
					return nil
				}
				inAction = false
			}
			continue
		}
		if !escaped && c == '{' && i+1 < len(s) && s[i+1] == '{' {
			inAction = true
			if !visit(i, true, false) {
				return nil
			}
			i++
			if !visit(i, true, false) {
				return nil
			}
			continue
		}
		if !visit(i, false, escaped) {
			return nil
		}
		escaped = !escaped && c == '\\'
	}
	if inAction {
		return errors.New("unterminated template action: missing }}")
	}
	return nil
}
