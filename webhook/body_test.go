package webhook

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/event"
)

// TestBodiesKeepTheirEvents: an event's Raw stays what was posted after later requests, whether
// its body was read into a recycled buffer that is not freed yet (Content-Length, as EMS
// sends), into a buffer of its own (a larger body), or into a pooled one that the next chunked
// request reuses. The requests are read one after the other on one goroutine, so the pools
// hand the same buffers back when they can.
func TestBodiesKeepTheirEvents(t *testing.T) {
	env := newTestEnv(t, Config{}, nil, nil)
	var (
		bodies []string
		evs    []*event.Event
	)
	for i := range 32 {
		pad := 100 + i
		if i%8 == 1 {
			pad += smallBodySize // over the recycled size: a buffer of its own
		}
		body := fmt.Sprintf(`{"type":"timerTriggered","id":%d,"payload":{"pad":%q}}`, i, strings.Repeat(string(rune('a'+i%26)), pad))
		bodies = append(bodies, body)
		var r io.Reader = strings.NewReader(body)
		if i%4 == 2 {
			r = unsized{r} // chunked: the pooled buffer, freed when read
		}
		req := httptest.NewRequest("POST", "/evowebservices", r)
		got, sb, err := env.srv.readEvents(httptest.NewRecorder(), req)
		if err != nil || len(got) != 1 {
			t.Fatalf("body %d: %v, %d events", i, err, len(got))
		}
		if recycled := sb != nil; recycled != (i%4 != 2 && i%8 != 1) {
			t.Errorf("body %d (%d bytes): read into a recycled buffer %v", i, len(body), recycled)
		}
		evs = append(evs, got[0])
	}
	for i, ev := range evs {
		if string(ev.Raw) != bodies[i] {
			t.Errorf("event %d's Raw changed after later requests: %.60s...", i, ev.Raw)
		}
	}
}
