package emssim

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/emsflow/emsflow/emsclient"
)

// args reads API parameters the way EMS's GATHER_* macros do (reference §3.1): names compared
// case-insensitively, values trimmed, numbers required to be exact decimals, booleans read with
// atoi (so "true" is false). The first problem is kept in fail, worded as EMS words it.
type args struct {
	ps   emsclient.Params
	fail string
}

func (a *args) failf(format string, v ...any) {
	if a.fail == "" {
		a.fail = fmt.Sprintf(format, v...)
	}
}

func (a *args) has(name string) bool {
	_, ok := a.ps.Lookup(name)
	return ok
}

func (a *args) raw(name string) (string, bool) {
	v, ok := a.ps.Get(name)
	return strings.TrimSpace(v), ok
}

func (a *args) str(name, def string) string {
	if v, ok := a.raw(name); ok {
		return v
	}
	return def
}

func (a *args) mandatory(name string) string {
	v, _ := a.raw(name)
	if v == "" {
		a.failf("Syntax error. Parameter %s is invalid", name)
	}
	return v
}

func (a *args) number(name string, mandatory bool, lo, hi, def uint64) uint64 {
	v, ok := a.raw(name)
	if !ok {
		if mandatory {
			a.failf("Syntax error. Parameter %s is invalid", name)
		}
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != v {
		a.failf("Syntax error. Parameter %s is invalid", name)
		return def
	}
	if (lo != 0 && n < lo) || n > hi {
		a.failf("Syntax error. Parameter %s is invalid. Range: %d - %d", name, lo, hi)
		return def
	}
	return n
}

func (a *args) num(name string, lo, hi, def uint64) uint64 { return a.number(name, false, lo, hi, def) }

func (a *args) signed(name string, lo, hi, def int64) int64 {
	v, ok := a.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != v {
		a.failf("Syntax error. Parameter %s is invalid", name)
		return def
	}
	if n < lo || n > hi {
		a.failf("Syntax error. Parameter %s is invalid. Range: %d - %d", name, lo, hi)
		return def
	}
	return n
}

// boolean reads a flag as EMS does: atoi(value) != 0. "true" and "yes" are false.
func (a *args) boolean(name string, def bool) bool {
	v, ok := a.raw(name)
	if !ok {
		return def
	}
	return atoi(v) != 0
}

// list reads a mandatory list ("a,b"); a single value is a one-element list.
func (a *args) list(name string) []string {
	p, ok := a.ps.Lookup(name)
	if !ok {
		a.failf("Syntax error. Parameter %s is invalid", name)
		return nil
	}
	var out []string
	for _, v := range p.Values {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		a.failf("Syntax error. Parameter %s is invalid", name)
	}
	return out
}

// optList reads an optional list; absent gives nil.
func (a *args) optList(name string) []string {
	p, ok := a.ps.Lookup(name)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(p.Values))
	for _, v := range p.Values {
		out = append(out, strings.TrimSpace(v))
	}
	return out
}

// userVars copies every "_" parameter into dst, as EMS's GatherCustomParameters does.
func (a *args) userVars(dst obj) {
	for k, v := range a.ps.UserVars() {
		dst[k] = v
	}
}

// atoi is C's atoi: optional blanks and sign, then leading digits; anything else gives 0.
func atoi(s string) int64 {
	s = strings.TrimLeft(s, " \t\n\r\v\f")
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var n int64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int64(s[i]-'0')
	}
	if neg {
		return -n
	}
	return n
}

// uriObj is EMS's parsed URI variant, as pullStream and pushStream answer it.
func uriObj(raw string) (obj, *url.URL, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, nil, false
	}
	host, port := splitHostPort(peerAddr(u))
	doc := u.Path
	docName := doc[strings.LastIndexByte(doc, '/')+1:]
	docPath := strings.TrimSuffix(doc, docName)
	pass, _ := u.User.Password()
	return obj{
		"document":                       docName,
		"documentPath":                   docPath,
		"documentWithFullParameters":     docName + query(u),
		"fullDocumentPath":               doc,
		"fullDocumentPathWithParameters": doc + query(u),
		"fullUri":                        raw,
		"fullUriWithAuth":                raw,
		"host":                           u.Hostname(),
		"ip":                             host,
		"originalUri":                    raw,
		"parameters":                     obj{},
		"password":                       pass,
		"port":                           port,
		"portSpecified":                  u.Port() != "",
		"scheme":                         strings.ToLower(u.Scheme),
		"userName":                       u.User.Username(),
	}, u, true
}

func query(u *url.URL) string {
	if u.RawQuery == "" {
		return ""
	}
	return "?" + u.RawQuery
}
