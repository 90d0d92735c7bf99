package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// iniSection is one [section] of an INI file, its entries in file order.
type iniSection struct {
	Name    string
	Line    int
	Entries []iniEntry
}

// iniEntry is one "key = value" line. "key[] = v" sets Append, "key[sub] = v" sets Sub.
type iniEntry struct {
	Key    string
	Sub    string
	Append bool
	Value  string
	Line   int
}

// parseINI reads the PHP web services' INI form as parse_ini_file does for the parts people
// use: [sections]; key = value; values bare, "double quoted" (with \" and \\ escapes) or
// 'single quoted'; ";" starts a comment anywhere in a bare value (so "period_time = 60;" is 60)
// and a line starting with ";" or "#" is a comment; key[] = v appends to a list and
// key[name] = v builds an object. A key outside any section, a repeated section and a line
// that is not one of these are errors naming the line (never its content, which may be a secret).
func parseINI(src []byte) ([]iniSection, []error) {
	var (
		sections []iniSection
		errs     []error
		seen     = map[string]int{}
	)
	lines := bytes.Split(src, []byte("\n"))
	for i, raw := range lines {
		lineNo := i + 1
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			rest := ""
			if end >= 0 {
				rest = strings.TrimSpace(line[end+1:])
			}
			if end < 0 || (rest != "" && rest[0] != ';' && rest[0] != '#') {
				errs = append(errs, fmt.Errorf("line %d: a section header is [name]", lineNo))
				continue
			}
			name := strings.TrimSpace(line[1:end])
			if name == "" {
				errs = append(errs, fmt.Errorf("line %d: empty section name", lineNo))
				continue
			}
			if first, dup := seen[strings.ToLower(name)]; dup {
				errs = append(errs, fmt.Errorf("line %d: section [%s] appears twice (first at line %d)", lineNo, name, first))
			}
			seen[strings.ToLower(name)] = lineNo
			sections = append(sections, iniSection{Name: name, Line: lineNo})
			continue
		}
		key, rawValue, ok := strings.Cut(line, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: expected key = value or [section]", lineNo))
			continue
		}
		if len(sections) == 0 {
			errs = append(errs, fmt.Errorf("line %d: key outside a [section]", lineNo))
			continue
		}
		e := iniEntry{Line: lineNo}
		key = strings.TrimSpace(key)
		if open := strings.IndexByte(key, '['); open >= 0 {
			if !strings.HasSuffix(key, "]") {
				errs = append(errs, fmt.Errorf("line %d: a list key is name[] or name[key]", lineNo))
				continue
			}
			e.Sub = strings.TrimSpace(key[open+1 : len(key)-1])
			e.Append = e.Sub == ""
			key = strings.TrimSpace(key[:open])
		}
		if key == "" {
			errs = append(errs, fmt.Errorf("line %d: empty key", lineNo))
			continue
		}
		e.Key = key
		v, err := iniValue(strings.TrimSpace(rawValue))
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", lineNo, err))
			continue
		}
		e.Value = v
		s := &sections[len(sections)-1]
		s.Entries = append(s.Entries, e)
	}
	return sections, errs
}

// iniValue unquotes one value and drops its trailing comment.
func iniValue(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	var v strings.Builder
	rest := ""
	switch q := s[0]; q {
	case '"', '\'':
		closed := false
		i := 1
		for ; i < len(s); i++ {
			c := s[i]
			if q == '"' && c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
				v.WriteByte(s[i+1])
				i++
				continue
			}
			if c == q {
				closed = true
				break
			}
			v.WriteByte(c)
		}
		if !closed {
			return "", fmt.Errorf("quoted value is not closed")
		}
		rest = strings.TrimSpace(s[i+1:])
		if rest != "" && rest[0] != ';' && rest[0] != '#' {
			return "", fmt.Errorf("text after the closing quote")
		}
		return v.String(), nil
	}
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s), nil
}

// iniPluginParams turns a plugin's [Name] section into a JSON object, keys in file order and
// every value a string (or a list or object of strings).
func iniPluginParams(s iniSection, loc string) (json.RawMessage, []error) {
	type param struct {
		key    string
		scalar *string
		list   []string
		obj    [][2]string
	}
	var (
		params []*param
		byKey  = map[string]*param{}
		errs   []error
	)
	for _, e := range s.Entries {
		p := byKey[e.Key]
		if p == nil {
			p = &param{key: e.Key}
			byKey[e.Key] = p
			params = append(params, p)
		}
		at := fmt.Sprintf("%s.%s (line %d)", loc, e.Key, e.Line)
		switch {
		case e.Append:
			if p.scalar != nil || p.obj != nil {
				errs = append(errs, fmt.Errorf("%s: mixes %s[] with another form of %s", at, e.Key, e.Key))
				continue
			}
			p.list = append(p.list, e.Value)
		case e.Sub != "":
			if p.scalar != nil || p.list != nil {
				errs = append(errs, fmt.Errorf("%s: mixes %s[%s] with another form of %s", at, e.Key, e.Sub, e.Key))
				continue
			}
			for _, kv := range p.obj {
				if kv[0] == e.Sub {
					errs = append(errs, fmt.Errorf("%s: %s[%s] appears twice", at, e.Key, e.Sub))
				}
			}
			p.obj = append(p.obj, [2]string{e.Sub, e.Value})
		default:
			if p.scalar != nil || p.list != nil || p.obj != nil {
				errs = append(errs, fmt.Errorf("%s: %s appears twice", at, e.Key))
				continue
			}
			v := e.Value
			p.scalar = &v
		}
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range params {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, p.key)
		b.WriteByte(':')
		switch {
		case p.scalar != nil:
			writeJSONString(&b, *p.scalar)
		case p.obj != nil:
			b.WriteByte('{')
			for j, kv := range p.obj {
				if j > 0 {
					b.WriteByte(',')
				}
				writeJSONString(&b, kv[0])
				b.WriteByte(':')
				writeJSONString(&b, kv[1])
			}
			b.WriteByte('}')
		default:
			b.WriteByte('[')
			for j, v := range p.list {
				if j > 0 {
					b.WriteByte(',')
				}
				writeJSONString(&b, v)
			}
			b.WriteByte(']')
		}
	}
	b.WriteByte('}')
	return b.Bytes(), errs
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := marshal(s) // a string always marshals
	b.Write(enc)
}

// iniSettings turns a service section's entries into settings: key[] entries become lists.
func iniSettings(s iniSection, loc string) ([]kv, []error) {
	var (
		out  []kv
		idx  = map[string]int{}
		errs []error
	)
	for _, e := range s.Entries {
		at := fmt.Sprintf("%s.%s (line %d)", loc, e.Key, e.Line)
		i, dup := idx[e.Key]
		switch {
		case e.Sub != "":
			errs = append(errs, fmt.Errorf("%s: %s[%s] is not a service setting form; use %s[] or a comma list", at, e.Key, e.Sub, e.Key))
		case e.Append && dup:
			list, ok := out[i].Value.([]any)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: mixes %s[] with %s", at, e.Key, e.Key))
				continue
			}
			out[i].Value = append(list, e.Value)
		case e.Append:
			idx[e.Key] = len(out)
			out = append(out, kv{Key: e.Key, Value: []any{e.Value}, Line: e.Line})
		case dup:
			errs = append(errs, fmt.Errorf("%s: %s appears twice", at, e.Key))
		default:
			idx[e.Key] = len(out)
			out = append(out, kv{Key: e.Key, Value: e.Value, Line: e.Line})
		}
	}
	return out, errs
}
