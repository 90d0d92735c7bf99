package filter

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// glob is one compiled value pattern. A value without wildcards is matched by string equality.
//
// The syntax is deliberately smaller than path.Match: "*" matches any run of characters,
// including "/" (so "/media/*" matches every file below /media, as an operator filtering EMS file
// events expects), "?" matches exactly one character, and "\" makes the next character literal.
// There are no character classes, so "[" and "]" are ordinary characters, as they are in stream
// names.
type glob struct {
	// raw is the pattern as configured, for messages.
	raw string
	// parts are the literal pieces between wildcards, with escapes removed.
	parts []string
	// ops are the wildcards between parts: '*' or '?'; len(ops) == len(parts)-1.
	ops []byte
}

// compileGlob parses a value pattern. It fails only on a trailing backslash.
func compileGlob(s string) (glob, error) {
	g := glob{raw: s}
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 == len(s) {
				return glob{}, errors.New("pattern ends with a lone backslash")
			}
			i++
			cur.WriteByte(s[i])
		case '*', '?':
			g.parts = append(g.parts, cur.String())
			g.ops = append(g.ops, c)
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	g.parts = append(g.parts, cur.String())
	return g, nil
}

// literal reports whether the pattern has no wildcards, and returns its value.
func (g glob) literal() (string, bool) {
	if len(g.ops) == 0 {
		return g.parts[0], true
	}
	return "", false
}

// match reports whether the whole of s matches the pattern.
func (g glob) match(s string) bool {
	if lit, ok := g.literal(); ok {
		return s == lit
	}
	return matchFrom(g.parts, g.ops, s)
}

// matchFrom matches s against parts[0] op[0] parts[1] ... by backtracking over the "*"
// positions. Patterns are short and configured by an operator, so the simple recursion is fine.
func matchFrom(parts []string, ops []byte, s string) bool {
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	if len(ops) == 0 {
		return s == ""
	}
	switch ops[0] {
	case '?':
		if s == "" {
			return false
		}
		_, n := utf8.DecodeRuneInString(s)
		return matchFrom(parts[1:], ops[1:], s[n:])
	default: // '*'
		for i := 0; i <= len(s); i++ {
			if matchFrom(parts[1:], ops[1:], s[i:]) {
				return true
			}
		}
		return false
	}
}
