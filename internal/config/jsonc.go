package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// sanitizeJSON turns JSON with comments and trailing commas into plain JSON. Comments (// to
// the end of the line, /* to */) and trailing commas before } or ] are replaced by spaces, so
// the result has the same length and every offset still points at the same line and column of
// the original. Strings, with their escapes, are left alone: "http://host" is not a comment.
func sanitizeJSON(src []byte) ([]byte, error) {
	out := bytes.Clone(src)
	const (
		code = iota
		str
		lineComment
		blockComment
	)
	state := code
	blockStart := 0
	for i := 0; i < len(out); i++ {
		c := out[i]
		switch state {
		case str:
			switch c {
			case '\\':
				i++ // the escaped byte cannot end the string
			case '"':
				state = code
			}
		case lineComment:
			if c == '\n' {
				state = code
			} else if c != '\r' {
				out[i] = ' '
			}
		case blockComment:
			if c == '*' && i+1 < len(out) && out[i+1] == '/' {
				out[i], out[i+1] = ' ', ' '
				i++
				state = code
			} else if c != '\n' && c != '\r' {
				out[i] = ' '
			}
		default:
			switch {
			case c == '"':
				state = str
			case c == '/' && i+1 < len(out) && out[i+1] == '/':
				out[i], out[i+1] = ' ', ' '
				i++
				state = lineComment
			case c == '/' && i+1 < len(out) && out[i+1] == '*':
				out[i], out[i+1] = ' ', ' '
				blockStart = i
				i++
				state = blockComment
			}
		}
	}
	if state == blockComment {
		line, col := position(src, blockStart)
		return nil, fmt.Errorf("line %d, column %d: comment /* is not closed", line, col)
	}
	// Comments are gone, so a trailing comma is a comma outside strings whose next non-space
	// byte closes an object or array.
	inStr := false
	for i := 0; i < len(out); i++ {
		c := out[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case ',':
			j := i + 1
			for j < len(out) && isSpace(out[j]) {
				j++
			}
			if j < len(out) && (out[j] == '}' || out[j] == ']') {
				out[i] = ' '
			}
		}
	}
	return out, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// position returns the 1-based line and column of offset in src.
func position(src []byte, offset int) (line, col int) {
	offset = min(max(offset, 0), len(src))
	before := src[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = offset - bytes.LastIndexByte(before, '\n')
	return line, col
}

// member is one name/value pair of a JSON object, in document order.
type member struct {
	Name  string
	Value json.RawMessage
}

// objectMembers returns the members of the JSON object raw in document order. Duplicate names
// are errors: the last one silently winning hides mistakes.
func objectMembers(raw json.RawMessage) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errNotObject
	}
	var ms []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("%q appears twice", name)
		}
		seen[name] = true
		ms = append(ms, member{Name: name, Value: v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the closing }")
	}
	return ms, nil
}

var errNotObject = errors.New("must be a JSON object")

// decodeValue decodes one JSON value with numbers kept as json.Number.
func decodeValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// marshal is json.Marshal without HTML escaping, so "<redacted>" prints as itself.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// syntaxError makes a JSON decoding error point at a line and column of src.
func syntaxError(src []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := position(src, int(se.Offset))
		return fmt.Errorf("line %d, column %d: %v", line, col, se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("unexpected end of file: an object or string is not closed")
	}
	return err
}
