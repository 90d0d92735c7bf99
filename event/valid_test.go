package event

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validSeeds are inputs at the edges of the JSON grammar.
var validSeeds = []string{
	``, ` `, `{}`, `[]`, `[ ]`, `{ }`, `{"a":1}`, `{"a":1,}`, `[1,]`, `[,1]`, `{"a" 1}`, `{1:1}`,
	`"x"`, `"\u00e9"`, `"\u00g9"`, `"\x"`, "\"\t\"", "\"\x7f\"", "\"\xff\"", `"abc`, `"\"`,
	`0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e`, `1e+`, `1E-7`, `1e5.5`, `-1.5e+10`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `nullnull`, `1 2`, `{} {}`, `[[[]]]`, `[[[]]`,
	`{"a":{"b":[1,{"c":null}]}}`, `{"a":"}"}`, "\r\n{\t\"a\" : [ 1 , 2 ] }\n", `{"a":1}x`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

func addFixtures(f *testing.F) {
	files, _ := filepath.Glob("../webhook/testdata/*.json")
	for _, fn := range files {
		if b, err := os.ReadFile(fn); err == nil {
			f.Add(b)
		}
	}
	for _, s := range validSeeds {
		f.Add([]byte(s))
	}
}

func TestValidAgreesOnSeeds(t *testing.T) {
	for _, s := range validSeeds {
		if got, want := validate([]byte(s), nil), json.Valid([]byte(s)); got != want {
			t.Errorf("validate(%.40q) = %v, encoding/json says %v", s, got, want)
		}
	}
}

// TestValidStringBytes puts every byte value at every offset of strings long enough for
// stringEnd to read them eight bytes at a time, with an escape before or not: the word scan must
// stop where the byte scan would.
func TestValidStringBytes(t *testing.T) {
	for n := range 20 {
		for at := range n + 1 {
			for _, before := range []string{"", `\"`, `\u00e9`} {
				for v := range 256 {
					s := []byte(`{"k":"` + before + strings.Repeat("a", at) + string(rune(0)) + strings.Repeat("b", n-at) + `","z":1}`)
					s[len(`{"k":"`)+len(before)+at] = byte(v)
					if got, want := validate(s, nil), json.Valid(s); got != want {
						t.Fatalf("validate(%q) = %v, encoding/json says %v", s, got, want)
					}
				}
			}
		}
	}
}

func FuzzValidAgrees(f *testing.F) {
	addFixtures(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := validate(data, nil), json.Valid(data); got != want {
			t.Fatalf("validate(%q) = %v, encoding/json says %v", data, got, want)
		}
	})
}

func FuzzAppendCompactAgrees(f *testing.F) {
	addFixtures(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, data); err != nil {
			t.Fatal(err)
		}
		if got := AppendCompact([]byte("prefix"), data); string(got) != "prefix"+want.String() {
			t.Fatalf("AppendCompact(%q) = %q, encoding/json says %q", data, got[6:], want.String())
		}
	})
}

func BenchmarkValid(b *testing.B) {
	data, err := os.ReadFile("../webhook/testdata/inStreamCreated.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if !json.Valid(data) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("event", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if !validate(data, nil) {
				b.Fatal("invalid")
			}
		}
	})
}

func FuzzJSONStringAgrees(f *testing.F) {
	for _, s := range []string{`"x"`, `"a\"b"`, `"\u00e9"`, "\"\xff\"", "\"\t\"", `"abc`, `12`, `""`, `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		werr := json.Unmarshal(raw, &want)
		got, ok := jsonString(raw)
		if ok != (werr == nil) || got != want {
			t.Fatalf("jsonString(%q) = %q, %v; encoding/json: %q, %v", raw, got, ok, want, werr)
		}
	})
}

// FuzzValidateMembers: the members validate reports while checking are those topLevel finds in
// the checked object, in order.
func FuzzValidateMembers(f *testing.F) {
	addFixtures(f)
	f.Add([]byte(`{"a":{},"b":[],"c":{"d":[1,{}]},"e":"}","f":1}`))
	f.Add([]byte(`{"a\u0062":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got []string
		ok := validate(data, func(k, v []byte) { got = append(got, string(k)+"="+string(v)) })
		if ok != json.Valid(data) {
			t.Fatalf("validate(%q) = %v", data, ok)
		}
		trimmed := bytes.TrimSpace(data)
		if !ok || len(trimmed) == 0 || trimmed[0] != '{' {
			return
		}
		var want []string
		if err := topLevel(data, func(k, v []byte) { want = append(want, string(k)+"="+string(v)) }); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("members of %q: validate %q, topLevel %q", data, got, want)
		}
	})
}
