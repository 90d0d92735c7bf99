package journal_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/journal"
)

// BenchmarkAppend measures one-event appends from many goroutines, as the webhook makes them.
func BenchmarkAppend(b *testing.B) {
	body, err := os.ReadFile("../../webhook/testdata/inStreamCreated.json")
	if err != nil {
		b.Fatal(err)
	}
	j, err := journal.Open(b.Context(), journal.Config{DataDir: b.TempDir(), DedupeWindow: time.Minute}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	var n atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev, err := event.DecodeEnvelope(body) // as the webhook decodes
			if err != nil {
				b.Fatal(err)
			}
			ev.EMS = fmt.Sprint("e", n.Add(1)) // distinct keys
			if err := j.Append(b.Context(), []*event.Event{ev}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
