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
// its body was read into a buffer of its own (Content-Length) or into a pooled one that the
// next chunked request reuses. The requests are read one after the other on one goroutine, so
// the pool hands the same buffer back.
func TestBodiesKeepTheirEvents(t *testing.T) {
	env := newTestEnv(t, Config{}, nil, nil)
	var (
		bodies []string
		evs    []*event.Event
	)
	for i := range 32 {
		body := fmt.Sprintf(`{"type":"timerTriggered","id":%d,"payload":{"pad":%q}}`, i, strings.Repeat(string(rune('a'+i%26)), 100+i))
		bodies = append(bodies, body)
		var r io.Reader = strings.NewReader(body)
		if i%4 != 0 {
			r = unsized{r} // chunked: the pooled buffer
		}
		req := httptest.NewRequest("POST", "/evowebservices", r)
		got, err := env.srv.readEvents(httptest.NewRecorder(), req)
		if err != nil || len(got) != 1 {
			t.Fatalf("body %d: %v, %d events", i, err, len(got))
		}
		evs = append(evs, got[0])
	}
	for i, ev := range evs {
		if string(ev.Raw) != bodies[i] {
			t.Errorf("event %d's Raw changed after later requests: %.60s...", i, ev.Raw)
		}
	}
}
