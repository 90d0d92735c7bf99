package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// document is a configuration file read into a form both the JSON and the INI form share; Load
// applies it to the defaults.
type document struct {
	// settings holds the fixed service sections (server, journal, log, dispatch) by name.
	settings map[string][]kv
	// ems is nil when the file has no EMS section; then the defaults stay.
	ems []namedSection
	// plugins is nil when the file has no plugins; then the defaults stay.
	plugins []namedSection
	// hasEMS and hasPlugins say the file has the section, even empty.
	hasEMS, hasPlugins bool
}

// kv is one setting. Value is a string, json.Number, bool, nil, []any or map[string]any; a
// plugin's "parameters" is a json.RawMessage. Line is set for the INI form.
type kv struct {
	Key   string
	Value any
	Line  int
}

// namedSection is one EMS or plugin entry.
type namedSection struct {
	Name   string
	Fields []kv
	Line   int
}

// serviceSections are the fixed sections of service settings; "ems" and "plugins" are named
// sections handled apart.
var serviceSections = []string{"server", "journal", "log", "dispatch"}

// topLevelKeys are the keys a JSON-form file may have at its top level.
var topLevelKeys = []string{"server", "journal", "ems", "log", "dispatch", "plugins"}

// isJSONForm reports whether the file is in the JSON form: its first byte that is not space
// or part of a comment (// or /* */ as in JSON, ; or # as in INI) is "{".
func isJSONForm(src []byte) bool {
	s := bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	for {
		s = bytes.TrimLeft(s, " \t\r\n")
		switch {
		case bytes.HasPrefix(s, []byte("//")), bytes.HasPrefix(s, []byte(";")), bytes.HasPrefix(s, []byte("#")):
			i := bytes.IndexByte(s, '\n')
			if i < 0 {
				return false
			}
			s = s[i+1:]
		case bytes.HasPrefix(s, []byte("/*")):
			i := bytes.Index(s[2:], []byte("*/"))
			if i < 0 {
				return false
			}
			s = s[2+i+2:]
		default:
			return len(s) > 0 && s[0] == '{'
		}
	}
}

// parseJSONForm reads the JSON form. A syntax error is fatal and returned alone; problems with
// the shape are all collected.
func parseJSONForm(src []byte) (*document, []error) {
	src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	clean, err := sanitizeJSON(src)
	if err != nil {
		return nil, []error{err}
	}
	var probe any
	dec := json.NewDecoder(bytes.NewReader(clean))
	if err := dec.Decode(&probe); err != nil {
		return nil, []error{syntaxError(src, err)}
	}
	top, err := objectMembers(clean)
	if err != nil {
		return nil, []error{syntaxError(src, err)}
	}
	doc := &document{settings: map[string][]kv{}}
	if looksLikePluginsMap(top) {
		// The Node plugins.json: the top level is the plugins map itself.
		errs := doc.readPlugins(top)
		return doc, errs
	}
	var errs []error
	for _, m := range top {
		switch m.Name {
		case "ems":
			errs = append(errs, doc.readEMS(m.Value)...)
		case "plugins":
			ms, err := objectMembers(m.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("plugins: %w", err))
				continue
			}
			errs = append(errs, doc.readPlugins(ms)...)
		default:
			if !slices.Contains(serviceSections, m.Name) {
				errs = append(errs, fmt.Errorf("%q: unknown section (known: %s)", m.Name, strings.Join(topLevelKeys, ", ")))
				continue
			}
			kvs, err := jsonSettings(m.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
				continue
			}
			doc.settings[m.Name] = kvs
		}
	}
	return doc, errs
}

// looksLikePluginsMap reports whether the top level is the Node plugins.json: no service
// section names, and some member an object with a plugin_switch. (Not every member: one entry
// missing its plugin_switch is better reported as that than as an unknown section.)
func looksLikePluginsMap(top []member) bool {
	found := false
	for _, m := range top {
		if slices.Contains(topLevelKeys, m.Name) {
			return false
		}
		ms, err := objectMembers(m.Value)
		if err == nil && slices.ContainsFunc(ms, func(m member) bool { return m.Name == "plugin_switch" }) {
			found = true
		}
	}
	return found
}

func jsonSettings(raw json.RawMessage) ([]kv, error) {
	ms, err := objectMembers(raw)
	if err != nil {
		return nil, err
	}
	out := make([]kv, 0, len(ms))
	for _, m := range ms {
		v, err := decodeValue(m.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, kv{Key: m.Name, Value: v})
	}
	return out, nil
}

func (d *document) readEMS(raw json.RawMessage) []error {
	d.hasEMS = true
	ms, err := objectMembers(raw)
	if err != nil {
		return []error{fmt.Errorf("ems: %w (name each EMS: {\"default\": {\"api_url\": ...}})", err)}
	}
	var errs []error
	for _, m := range ms {
		kvs, err := jsonSettings(m.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("ems.%s: %w", m.Name, err))
			continue
		}
		d.ems = append(d.ems, namedSection{Name: m.Name, Fields: kvs})
	}
	return errs
}

func (d *document) readPlugins(ms []member) []error {
	d.hasPlugins = true
	var errs []error
	for _, m := range ms {
		fields, err := objectMembers(m.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("plugins.%s: %w", m.Name, err))
			continue
		}
		sec := namedSection{Name: m.Name}
		for _, f := range fields {
			if f.Name == "parameters" {
				sec.Fields = append(sec.Fields, kv{Key: f.Name, Value: f.Value})
				continue
			}
			v, err := decodeValue(f.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("plugins.%s.%s: %w", m.Name, f.Name, err))
				continue
			}
			sec.Fields = append(sec.Fields, kv{Key: f.Name, Value: v})
		}
		d.plugins = append(d.plugins, sec)
	}
	return errs
}

// pluginSectionKeys are the keys [Plugins] accepts after a plugin name, as in
// "MyRouter.type = StreamAutoRouter": they cannot live in the plugin's own section, which holds
// its parameters.
var pluginSectionKeys = []string{"type", "concurrency", "timeout"}

// parseINIForm reads the INI form.
//
// [Plugins] lists the plugins in order with "Name = enabled|disabled"; "Name.type",
// "Name.concurrency" and "Name.timeout" set the other plugin fields. A plugin listed without a
// [Name] section has no parameters. A [Name] section that is neither a service section nor
// listed in [Plugins] is an error, since nothing says whether it should run (and it is most
// often a misspelt name).
func parseINIForm(src []byte) (*document, []error) {
	src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	sections, errs := parseINI(src)
	doc := &document{settings: map[string][]kv{}}
	var pluginList *iniSection
	others := map[string]iniSection{}
	for i := range sections {
		s := sections[i]
		lname := strings.ToLower(s.Name)
		switch {
		case slices.Contains(serviceSections, lname):
			kvs, e := iniSettings(s, lname)
			errs = append(errs, e...)
			doc.settings[lname] = kvs
		case lname == "ems" || strings.HasPrefix(lname, "ems."):
			name := DefaultEMSName
			if lname != "ems" {
				name = strings.TrimSpace(s.Name[len("ems."):])
			}
			kvs, e := iniSettings(s, "ems."+name)
			errs = append(errs, e...)
			doc.hasEMS = true
			doc.ems = append(doc.ems, namedSection{Name: name, Fields: kvs, Line: s.Line})
		case lname == "plugins":
			pluginList = &sections[i]
		default:
			others[s.Name] = s
		}
	}
	if pluginList != nil {
		doc.hasPlugins = true
		idx := map[string]int{}
		for _, e := range pluginList.Entries {
			at := fmt.Sprintf("plugins.%s (line %d)", e.Key, e.Line)
			if e.Append || e.Sub != "" {
				errs = append(errs, fmt.Errorf("%s: [Plugins] entries are Name = enabled|disabled", at))
				continue
			}
			name, field, isField := strings.Cut(e.Key, ".")
			if !isField {
				if _, dup := idx[name]; dup {
					errs = append(errs, fmt.Errorf("%s: listed twice", at))
					continue
				}
				idx[name] = len(doc.plugins)
				doc.plugins = append(doc.plugins, namedSection{
					Name:   name,
					Line:   e.Line,
					Fields: []kv{{Key: "plugin_switch", Value: e.Value, Line: e.Line}},
				})
				continue
			}
			i, ok := idx[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: %s must come after the line %s = enabled|disabled", at, e.Key, name))
				continue
			}
			if !slices.Contains(pluginSectionKeys, field) {
				errs = append(errs, fmt.Errorf("%s: unknown plugin setting %q (known: %s)", at, field, strings.Join(pluginSectionKeys, ", ")))
				continue
			}
			doc.plugins[i].Fields = append(doc.plugins[i].Fields, kv{Key: field, Value: e.Value, Line: e.Line})
		}
		for i := range doc.plugins {
			p := &doc.plugins[i]
			s, ok := others[p.Name]
			if !ok {
				continue
			}
			delete(others, p.Name)
			params, e := iniPluginParams(s, "plugins."+p.Name)
			errs = append(errs, e...)
			p.Fields = append(p.Fields, kv{Key: "parameters", Value: json.RawMessage(params), Line: s.Line})
		}
	}
	for _, s := range sections {
		if _, left := others[s.Name]; left {
			errs = append(errs, fmt.Errorf("[%s] (line %d): not a service section (%s, ems, ems.<name>, Plugins) and not listed in [Plugins]; add %s = enabled or disabled there",
				s.Name, s.Line, strings.Join(serviceSections, ", "), s.Name))
		}
	}
	return doc, errs
}
