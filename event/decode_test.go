package event

import (
	"strings"
	"testing"
)

func TestDecodeAndDecodeEnvelopeAgree(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string
	}{
		{"current envelope", `{"id":18446744073709551615,"payload":{"customData":"edge-1","name":"cam1","uniqueId":4294967297},"processId":12,"timestamp":1506336133,"type":"inStreamCreated"}`, ""},
		{"old envelope", `{"payload":{"name":"","type":"NR","uniqueId":1},"type":"streamCreated"}`, ""},
		{"null payload", `{"payload":null,"type":"serverStopping"}`, ""},
		{"numeric customData", `{"payload":{"customData":123},"type":"x"}`, ""},
		{"no type", `{"payload":{}}`, "no type"},
		{"empty type", `{"type":"  "}`, "no type"},
		{"type not a string", `{"type":5}`, "not a string"},
		{"payload not an object", `{"type":"x","payload":[1]}`, "payload is not a JSON object"},
		{"not an object", `[1]`, "not a JSON object"},
		{"malformed", `{"type":"x",`, "decode event"},
		{"id not a number", `{"type":"x","id":"abc"}`, "event id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			full, ferr := Decode([]byte(tc.body))
			env, eerr := DecodeEnvelope([]byte(tc.body))
			if tc.wantErr != "" {
				if ferr == nil || !strings.Contains(ferr.Error(), tc.wantErr) {
					t.Errorf("Decode error = %v, want %q", ferr, tc.wantErr)
				}
				if eerr == nil || !strings.Contains(eerr.Error(), tc.wantErr) {
					t.Errorf("DecodeEnvelope error = %v, want %q", eerr, tc.wantErr)
				}
				return
			}
			if ferr != nil || eerr != nil {
				t.Fatalf("errors: Decode %v, DecodeEnvelope %v", ferr, eerr)
			}
			if full.Type != env.Type || full.ID != env.ID || full.Timestamp != env.Timestamp || full.ProcessID != env.ProcessID || string(full.Raw) != string(env.Raw) {
				t.Errorf("envelopes differ: %+v vs %+v", full, env)
			}
			fcd, fok := full.Payload.String("customData")
			ecd, eok := env.Payload.String("customData")
			if fcd != ecd || fok != eok {
				t.Errorf("customData: Decode %q,%v DecodeEnvelope %q,%v", fcd, fok, ecd, eok)
			}
			if full.Key() != env.Key() {
				t.Errorf("keys differ")
			}
		})
	}
}
