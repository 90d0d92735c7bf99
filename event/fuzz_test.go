package event

import (
	"os"
	"path/filepath"
	"testing"
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
