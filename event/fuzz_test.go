package event

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeEnvelopeAgrees: the fast envelope decoder accepts exactly what Decode accepts and
// reads the same envelope and customData.
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
		if (ferr == nil) != (eerr == nil) {
			t.Fatalf("Decode err %v, DecodeEnvelope err %v, for %q", ferr, eerr, data)
		}
		if ferr != nil {
			return
		}
		if full.Type != env.Type || full.ID != env.ID || full.Timestamp != env.Timestamp || full.ProcessID != env.ProcessID {
			t.Fatalf("envelopes differ for %q: %+v vs %+v", data, full, env)
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
