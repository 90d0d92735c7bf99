package event

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestKey(t *testing.T) {
	const raw = `{"id":3,"payload":{"PID":12800,"file":"F:\\media\\1_0001.mp4"},"processId":12800,"timestamp":1505971910,"type":"recordChunkCreated"}`
	decode := func(t *testing.T, ems, body string) *Event {
		t.Helper()
		ev, err := Decode([]byte(body))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		ev.EMS = ems
		return ev
	}
	sum := sha256.Sum256([]byte("edge1\n" + raw))
	want := hex.EncodeToString(sum[:])[:32]

	tests := []struct {
		name     string
		a, b     *Event
		wantSame bool
	}{
		{"identical bytes same ems", decode(t, "edge1", raw), decode(t, "edge1", raw), true},
		{"surrounding whitespace is not part of the event", decode(t, "edge1", raw), decode(t, "edge1", "\n  "+raw+"\n"), true},
		{"same bytes other ems", decode(t, "edge1", raw), decode(t, "edge2", raw), false},
		{"different id", decode(t, "edge1", raw), decode(t, "edge1", `{"id":4,"payload":{"PID":12800,"file":"F:\\media\\1_0001.mp4"},"processId":12800,"timestamp":1505971910,"type":"recordChunkCreated"}`), false},
		{"built event is stable", &Event{Type: TimerTriggered, ID: 9, EMS: "a"}, &Event{Type: TimerTriggered, ID: 9, EMS: "a"}, true},
		{"built events differ by id", &Event{Type: TimerTriggered, ID: 9, EMS: "a"}, &Event{Type: TimerTriggered, ID: 10, EMS: "a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := tt.a.Key(), tt.b.Key()
			if len(ka) != 32 {
				t.Fatalf("len(Key()) = %d, want 32 (%q)", len(ka), ka)
			}
			if got := ka == kb; got != tt.wantSame {
				t.Errorf("keys %s and %s: same = %v, want %v", ka, kb, got, tt.wantSame)
			}
		})
	}
	t.Run("matches the documented hash", func(t *testing.T) {
		if got := decode(t, "edge1", raw).Key(); got != want {
			t.Errorf("Key() = %s, want %s", got, want)
		}
	})
	t.Run("built event hashes its envelope", func(t *testing.T) {
		ev := &Event{Type: TimerTriggered, ID: 9, EMS: "a"}
		env, err := ev.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(append([]byte("a\n"), env...))
		if got, want := ev.Key(), hex.EncodeToString(s[:])[:32]; got != want {
			t.Errorf("Key() = %s, want %s", got, want)
		}
	})
}
