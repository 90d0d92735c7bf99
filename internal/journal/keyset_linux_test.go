package journal

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"
)

// statusKB reads a field of /proc/self/status in kB.
func statusKB(tb testing.TB, field string) int {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkKeySetPeak measures the resident memory a set reaches while 400,000 keys (about 20 s
// of saturating ingest) go in, table growth included: the process's peak RSS (VmHWM, reset
// through /proc/self/clear_refs) above what it was before, per key.
func BenchmarkKeySetPeak(b *testing.B) {
	const keys = 400_000
	for b.Loop() {
		b.StopTimer()
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			b.Skipf("cannot reset the peak RSS: %v", err)
		}
		before := statusKB(b, "VmRSS")
		s := newKeySet()
		b.StartTimer()
		for i := range keys {
			var k digest
			binary.LittleEndian.PutUint64(k[:], uint64(i)+1)
			s.add(k)
		}
		b.StopTimer()
		peak := statusKB(b, "VmHWM")
		b.ReportMetric(float64(peak-before)*1024/keys, "peak-B/key")
		b.ReportMetric(float64(s.bytes())/keys, "B/key")
		s.free()
		b.StartTimer()
	}
}
