package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// topLevel calls fn with the key and raw value of each member of the JSON object data, which
// must already be valid JSON (json.Valid). Keys with escapes are unquoted; values are returned
// as they appear, surrounding spaces trimmed.
func topLevel(data []byte, fn func(key []byte, val []byte)) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errors.New("not a JSON object")
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil
	}
	for i < len(data) {
		ks := i
		i = skipString(data, i)
		key, err := unquote(data[ks:i])
		if err != nil {
			return err
		}
		i = skipSpace(data, i)
		i = skipSpace(data, i+1) // ':'
		vs := i
		i = skipValue(data, i)
		fn(key, data[vs:i])
		i = skipSpace(data, i)
		if i >= len(data) || data[i] == '}' {
			return nil
		}
		i = skipSpace(data, i+1) // ','
	}
	return nil
}

// unquote returns the content of the JSON string s: a subslice when it has no escapes, else
// the decoded bytes.
func unquote(s []byte) ([]byte, error) {
	if bytes.IndexByte(s, '\\') < 0 {
		return s[1 : len(s)-1], nil
	}
	var k string
	if err := json.Unmarshal(s, &k); err != nil {
		return nil, fmt.Errorf("object key: %w", err)
	}
	return []byte(k), nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string starting at data[i] ('"').
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the value starting at data[i].
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(data) {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}
