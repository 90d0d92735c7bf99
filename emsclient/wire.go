package emsclient

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Param is one API parameter. EMS reads a value containing an unescaped comma as a list, so a
// parameter holds one value or several.
type Param struct {
	Key    string
	Values []string
}

// Value returns the parameter's value, list elements joined by ",".
func (p Param) Value() string { return strings.Join(p.Values, ",") }

// Params is an ordered list of API parameters, in the order they are sent.
type Params []Param

// Add appends a scalar parameter.
func (ps *Params) Add(key, value string) { *ps = append(*ps, Param{Key: key, Values: []string{value}}) }

// AddList appends a list parameter (EMS reads "a,b" as a list).
func (ps *Params) AddList(key string, values ...string) {
	*ps = append(*ps, Param{Key: key, Values: append([]string(nil), values...)})
}

// AddBool appends a boolean as EMS reads it: 1 or 0 (EMS reads "true" as false, reference §3.1).
func (ps *Params) AddBool(key string, v bool) {
	s := "0"
	if v {
		s = "1"
	}
	ps.Add(key, s)
}

// AddUint appends an unsigned integer.
func (ps *Params) AddUint(key string, v uint64) { ps.Add(key, strconv.FormatUint(v, 10)) }

// AddInt appends an integer.
func (ps *Params) AddInt(key string, v int64) { ps.Add(key, strconv.FormatInt(v, 10)) }

// Get returns the value of the first parameter named key, compared case-insensitively as EMS
// compares parameter names. A list is joined by ",".
func (ps Params) Get(key string) (string, bool) {
	if p, ok := ps.Lookup(key); ok {
		return p.Value(), true
	}
	return "", false
}

// Lookup returns the first parameter named key, case-insensitively.
func (ps Params) Lookup(key string) (Param, bool) {
	for _, p := range ps {
		if strings.EqualFold(p.Key, key) {
			return p, true
		}
	}
	return Param{}, false
}

// UserVars returns the parameters whose names start with "_" (EMS stores and echoes them).
func (ps Params) UserVars() map[string]string {
	out := map[string]string{}
	for _, p := range ps {
		if strings.HasPrefix(p.Key, "_") {
			out[p.Key] = p.Value()
		}
	}
	return out
}

// Text returns the command-line form EMS parses: "k=v k=v", with space, "=", "," and "\"
// escaped by a backslash inside values and list elements joined by bare commas.
func (ps Params) Text() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.Key)
		b.WriteByte('=')
		for j, v := range p.Values {
			if j > 0 {
				b.WriteByte(',')
			}
			escapeInto(&b, v)
		}
	}
	return b.String()
}

// Encode returns the base64 (standard alphabet, padded) of Text: the value of ?params=. It is not
// to be percent-encoded: EMS does no URL-unescaping (reference §3.1).
func (ps Params) Encode() string { return base64.StdEncoding.EncodeToString([]byte(ps.Text())) }

func escapeInto(b *strings.Builder, v string) {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case ' ', '=', ',', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}

// ParseText parses EMS's command-line parameter form ("k=v k=v", backslash escapes for space,
// "=", "," and "\", an unescaped comma separating list elements), as EMS's JSON CLI parser does.
// A token without "=" is an error.
func ParseText(s string) (Params, error) {
	var ps Params
	i := 0
	for i < len(s) {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i >= len(s) {
			break
		}
		// key: up to an unescaped '='
		var key strings.Builder
		for i < len(s) && s[i] != '=' && s[i] != ' ' {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			key.WriteByte(s[i])
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return nil, fmt.Errorf("parameter %q has no value (want key=value)", key.String())
		}
		i++ // '='
		var vals []string
		var cur strings.Builder
		for i < len(s) && s[i] != ' ' {
			switch s[i] {
			case '\\':
				if i+1 < len(s) {
					i++
				}
				cur.WriteByte(s[i])
			case ',':
				vals = append(vals, cur.String())
				cur.Reset()
			default:
				cur.WriteByte(s[i])
			}
			i++
		}
		vals = append(vals, cur.String())
		if key.Len() == 0 {
			return nil, errors.New("parameter with an empty name")
		}
		ps = append(ps, Param{Key: key.String(), Values: vals})
	}
	return ps, nil
}

// DecodeParams decodes the value of ?params= (base64 of the command-line form). Like EMS, it
// tolerates a missing padding.
func DecodeParams(b64 string) (Params, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
		if err != nil {
			return nil, fmt.Errorf("params are not base64: %w", err)
		}
	}
	return ParseText(string(raw))
}

// ParseRequest reads an API request the way EMS does: the command is the last path element
// (so the apiProxy form /<pseudoDomain>/<command> works too), and the parameters are the
// base64 value of the first query parameter, read without URL-unescaping. The command is
// returned as sent; EMS compares command names case-insensitively.
func ParseRequest(r *http.Request) (command string, params Params, err error) {
	p := strings.TrimRight(r.URL.Path, "/")
	command = p[strings.LastIndexByte(p, '/')+1:]
	if command == "" {
		return "", nil, errors.New("no command in the request path")
	}
	q := r.URL.RawQuery
	if q == "" {
		return command, nil, nil
	}
	first, _, _ := strings.Cut(q, "&")
	_, val, _ := strings.Cut(first, "=")
	params, err = DecodeParams(val)
	return command, params, err
}
