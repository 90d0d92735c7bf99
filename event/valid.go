package event

import (
	"encoding/binary"
	"math/bits"
)

// validate reports whether data is one JSON value, exactly as encoding/json.Valid does (fuzzed
// for agreement in FuzzValidAgrees), in one pass without the standard scanner's per-byte
// function calls: receiving an event is mostly this check, so its speed is the webhook's. As
// encoding/json does, it accepts invalid UTF-8 inside strings and refuses nesting deeper than
// 10000.
//
// When data is an object and member is not nil, validate also calls member with the name
// (unquoted) and the raw value of each of its top-level members, in order, as it passes them:
// the envelope is read in the same pass that checks the JSON. When validate returns false, the
// calls made so far are meaningless.
func validate(data []byte, member func(key, val []byte)) bool {
	// stack holds, per open container, '{' or '['.
	var stack []byte
	var key []byte // the top-level member's name, and where its value starts
	valStart := 0
	i := skipSpace(data, 0)
	for {
		// A value starts at data[i].
		if i >= len(data) {
			return false
		}
		switch c := data[i]; {
		case c == '{' || c == '[':
			if len(stack) >= maxNesting {
				return false
			}
			stack = append(stack, c)
			i = skipSpace(data, i+1)
			if i < len(data) && data[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				ks := i
				if i = objectKey(data, i); i < 0 {
					return false
				}
				if member != nil && len(stack) == 1 {
					key, valStart = data[ks:stringEnd(data, ks)], i
				}
			}
			continue
		case c == '"':
			if i = stringEnd(data, i); i < 0 {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if i = numberEnd(data, i); i < 0 {
				return false
			}
		case c == 't':
			if i = literalEnd(data, i, "true"); i < 0 {
				return false
			}
		case c == 'f':
			if i = literalEnd(data, i, "false"); i < 0 {
				return false
			}
		case c == 'n':
			if i = literalEnd(data, i, "null"); i < 0 {
				return false
			}
		default:
			return false
		}
		// After a value: close containers or move to the next element.
		for {
			if member != nil && len(stack) == 1 && stack[0] == '{' {
				// A value of the root object ends here.
				name, err := unquote(key)
				if err != nil {
					return false
				}
				member(name, data[valStart:i])
			}
			i = skipSpace(data, i)
			if len(stack) == 0 {
				return i == len(data)
			}
			if i >= len(data) {
				return false
			}
			open := stack[len(stack)-1]
			if data[i] == open+2 {
				stack = stack[:len(stack)-1]
				i++
				continue // the closed container is a value too
			}
			if data[i] != ',' {
				return false
			}
			i = skipSpace(data, i+1)
			if open == '{' {
				ks := i
				if i = objectKey(data, i); i < 0 {
					return false
				}
				if member != nil && len(stack) == 1 {
					key, valStart = data[ks:stringEnd(data, ks)], i
				}
			}
			break
		}
	}
}

// maxNesting is encoding/json's limit on nested arrays and objects.
const maxNesting = 10000

// objectKey reads `"key" :` at data[i] and returns the index of the value after it, or -1.
func objectKey(data []byte, i int) int {
	if i >= len(data) || data[i] != '"' {
		return -1
	}
	if i = stringEnd(data, i); i < 0 {
		return -1
	}
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != ':' {
		return -1
	}
	return skipSpace(data, i+1)
}

// stringEnd returns the index after the string starting at data[i] ('"'), or -1 if it is not a
// valid JSON string.
func stringEnd(data []byte, i int) int {
	for i++; i < len(data); i++ {
		// Most of a string is plain bytes: pass them eight at a time, up to the first that is not.
		for i+8 <= len(data) {
			if m := specialBytes(binary.LittleEndian.Uint64(data[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(data) {
			return -1
		}
		c := data[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		switch c {
		case '"':
			return i + 1
		case '\\':
			i++
			if i >= len(data) {
				return -1
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(data) {
					return -1
				}
				for _, h := range data[i+1 : i+5] {
					if !isHex(h) {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
	return -1
}

// specialBytes flags, in the word w of eight string bytes (the first in the low byte), those that
// end or escape a JSON string or may not appear in one: '"', '\\' and control characters. Each
// test is the classic "has a zero byte" trick, (v-0x01..)&^v&0x80..: it flags every byte that
// passes it, and may also flag bytes above one that does (a borrow runs upwards), never below.
// So the lowest flagged byte, the only one used, is exact; a word with none is plain.
func specialBytes(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q := w ^ (ones * '"')
	b := w ^ (ones * '\\')
	return ((q-ones)&^q | (b-ones)&^b | (w-ones*0x20)&^w) & highs
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// numberEnd returns the index after the number starting at data[i], or -1.
func numberEnd(data []byte, i int) int {
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return -1
	case data[i] == '0':
		i++
	case data[i] >= '1' && data[i] <= '9':
		i = digitsEnd(data, i+1)
	default:
		return -1
	}
	if i < len(data) && data[i] == '.' {
		j := digitsEnd(data, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digitsEnd(data, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digitsEnd(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

func literalEnd(data []byte, i int, lit string) int {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// AppendCompact appends the valid JSON src to dst without the whitespace between tokens, as
// encoding/json.Compact does but without its per-byte scanner. src must be valid JSON (every
// decoded Event's Raw is); whitespace inside strings is kept.
func AppendCompact(dst, src []byte) []byte {
	start := 0
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '"':
			i = skipString(src, i) - 1
		case ' ', '\t', '\n', '\r':
			dst = append(dst, src[start:i]...)
			start = i + 1
		}
	}
	return append(dst, src[start:]...)
}
