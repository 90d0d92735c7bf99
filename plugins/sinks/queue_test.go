package sinks

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func appendN(t *testing.T, q *queue, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		added, err := q.append(fmt.Sprintf("k%d", i), "ems", int64(i), json.RawMessage(fmt.Sprintf(`{"id":%d,"type":"x"}`, i)))
		if err != nil || !added {
			t.Fatalf("append %d: added %v, err %v", i, added, err)
		}
	}
}

func ids(t *testing.T, recs []record) []int {
	t.Helper()
	var out []int
	for _, r := range recs {
		var v struct{ ID int }
		if err := json.Unmarshal(r.Event, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v.ID)
	}
	return out
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestQueueSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	q, err := openQueue(dir, 200) // about three records per segment
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, q, 1, 10)
	if n := len(segments(t, dir)); n < 3 {
		t.Fatalf("segments: got %d, want several for 10 records of ~70 bytes at 200 bytes each", n)
	}
	b, err := q.peek(4)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, b); !slices.Equal(got, seq(1, 4)) {
		t.Fatalf("peek: got %v, want 1..4", got)
	}
	if again, _ := q.peek(4); !slices.Equal(ids(t, again), seq(1, 4)) {
		t.Fatalf("peek is not repeatable: got %v", ids(t, again))
	}
	segsBefore := len(segments(t, dir))
	if err := q.ack(b); err != nil {
		t.Fatal(err)
	}
	if n := len(segments(t, dir)); n >= segsBefore {
		t.Errorf("after ack: %d segments, want fewer than %d (delivered segments deleted)", n, segsBefore)
	}
	if d := q.depth(); d != 6 {
		t.Errorf("depth: got %d, want 6", d)
	}
	if added, _ := q.append("k9", "ems", 0, json.RawMessage(`{"id":9}`)); added {
		t.Error("a recent key was queued twice")
	}
	if err := q.close(); err != nil {
		t.Fatal(err)
	}

	q2, err := openQueue(dir, 200)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.close()
	if d := q2.depth(); d != 6 {
		t.Errorf("depth after reopen: got %d, want 6", d)
	}
	if added, _ := q2.append("k7", "ems", 0, json.RawMessage(`{"id":7}`)); added {
		t.Error("an undelivered key was queued again after reopen")
	}
	appendN(t, q2, 11, 12)
	rest, err := q2.peek(100)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, rest); !slices.Equal(got, seq(5, 12)) {
		t.Errorf("after reopen: got %v, want 5..12", got)
	}
	if rest[len(rest)-1].Seq != 12 {
		t.Errorf("sequence numbers continue: got %d, want 12", rest[len(rest)-1].Seq)
	}
}

// TestQueueTornTail simulates a crash in the middle of an append: the partial record is cut
// off at open and later appends are readable.
func TestQueueTornTail(t *testing.T) {
	tests := []struct {
		name string
		tail []byte
	}{
		{"partial header", []byte{0x30, 0}},
		{"partial body", []byte{0x40, 0, 0, 0, 1, 2, 3, 4, '{', '"'}},
		{"bad checksum", append([]byte{5, 0, 0, 0, 9, 9, 9, 9}, []byte(`{"a":`)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			q, err := openQueue(dir, 0)
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, q, 1, 3)
			q.close()
			seg := segments(t, dir)[0]
			f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tt.tail); err != nil {
				t.Fatal(err)
			}
			f.Close()

			q2, err := openQueue(dir, 0)
			if err != nil {
				t.Fatalf("reopen after a torn tail: %v", err)
			}
			defer q2.close()
			appendN(t, q2, 4, 5)
			got, err := q2.peek(10)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(t, got), seq(1, 5)) {
				t.Errorf("got %v, want 1..5", ids(t, got))
			}
		})
	}
}

func TestQueueCorruptCommit(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, commitFile), []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openQueue(dir, 0); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("open with a corrupt commit file: got %v, want an error naming it", err)
	}
}
