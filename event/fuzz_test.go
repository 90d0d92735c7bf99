package event

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unsafe"
)

// FuzzDecodeEnvelopeAgrees: the fast envelope decoders accept exactly what Decode accepts and
// read the same envelope and Raw, DecodeEnvelope the same customData, DecodeHeader no payload.
func FuzzDecodeEnvelopeAgrees(f *testing.F) {
	files, _ := filepath.Glob("../webhook/testdata/*.json")
	for _, fn := range files {
		if b, err := os.ReadFile(fn); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		`{"type":"x"}`, `{"TYPE":"a","type":"b"}`, `{"type":"x","payload":{"customData":{"a":[1,"}"]}}}`,
		`{"type":"x","payload":"s"}`, `{"type":"x","id":"12"}`, `{"type":"\u0078","payload":{"customData":null}}`,
		` {"type" : "x" , "payload" : { "customData" : 1.5e3 } } `, `{"type":"x","payload":{"customData":1,"customData":"b"}}`, `{"type":"x","payload":{"custom\u0044ata":"e"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		full, ferr := Decode(data)
		env, eerr := DecodeEnvelope(data)
		hdr, herr := DecodeHeader(data)
		if (ferr == nil) != (eerr == nil) || (ferr == nil) != (herr == nil) {
			t.Fatalf("Decode err %v, DecodeEnvelope err %v, DecodeHeader err %v, for %q", ferr, eerr, herr, data)
		}
		if ferr != nil {
			return
		}
		for _, e := range []*Event{env, hdr} {
			if full.Type != e.Type || full.ID != e.ID || full.Timestamp != e.Timestamp || full.ProcessID != e.ProcessID || string(full.Raw) != string(e.Raw) {
				t.Fatalf("envelopes differ for %q: %+v vs %+v", data, full, e)
			}
		}
		if len(hdr.Payload) != 0 {
			t.Fatalf("DecodeHeader read a payload for %q: %v", data, hdr.Payload)
		}
		fcd, fok := full.Payload.Lookup("customData")
		ecd, eok := env.Payload.Lookup("customData")
		fs, _ := scalarString(fcd)
		es, _ := scalarString(ecd)
		if fok != eok || fs != es {
			t.Fatalf("customData differs for %q: %v,%v vs %v,%v", data, fcd, fok, ecd, eok)
		}
	})
}

// FuzzDecodeBodyAgrees: DecodeBody reads what DecodeBatchEnvelopes and DecodeBatchHeaders read,
// single events and batches alike, and its events' Raw point into the body it was given.
func FuzzDecodeBodyAgrees(f *testing.F) {
	for _, s := range []string{
		`{"type":"x","id":3}`, ` [{"type":"a"}, {"type":"b","payload":{"customData":"c"}}] `, `[]`, `[{"id":1}]`,
		`{"type":"x","payload":{"customData":{"k":1}}}`, `[{"type":"x"},3]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, withCustomData := range []bool{false, true} {
			want, werr := DecodeBatchHeaders(data)
			if withCustomData {
				want, werr = DecodeBatchEnvelopes(data)
			}
			body := bytes.Clone(data)
			got, gerr := DecodeBody(body, withCustomData)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("customData %v: errors %v vs %v for %q", withCustomData, werr, gerr, data)
			}
			if len(want) != len(got) {
				t.Fatalf("customData %v: %d events vs %d for %q", withCustomData, len(want), len(got), data)
			}
			for i := range want {
				w, g := want[i], got[i]
				if w.Type != g.Type || w.ID != g.ID || w.Timestamp != g.Timestamp || w.ProcessID != g.ProcessID ||
					string(w.Raw) != string(g.Raw) || fmt.Sprint(w.Payload) != fmt.Sprint(g.Payload) {
					t.Fatalf("customData %v: event %d differs for %q: %+v vs %+v", withCustomData, i, data, w, g)
				}
			}
			if len(got) == 1 && len(body) > 0 && bytes.TrimSpace(body)[0] == '{' && !aliases(got[0].Raw, body) {
				t.Fatalf("the Raw of a single event is a copy, not a slice of the body, for %q", data)
			}
		}
	})
}

// aliases reports whether sub lies inside buf's memory.
func aliases(sub, buf []byte) bool {
	if len(sub) == 0 || len(buf) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return p >= start && p < start+uintptr(len(buf))
}

// TestDecodeHeadersCopies: the decoders that are not handed the body copy what they keep, so
// the receiver's pooled buffers can be reused.
func TestDecodeHeadersCopies(t *testing.T) {
	body := []byte(`{"type":"x","id":1}`)
	for name, decode := range map[string]func([]byte) ([]*Event, error){
		"DecodeBatchHeaders": DecodeBatchHeaders, "DecodeBatchEnvelopes": DecodeBatchEnvelopes,
	} {
		evs, err := decode(body)
		if err != nil {
			t.Fatal(err)
		}
		if aliases(evs[0].Raw, body) {
			t.Errorf("%s: Raw points into the body", name)
		}
	}
}
