package emstest_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/emsclient/emstest"
)

func TestFailNextCountsAndQueues(t *testing.T) {
	srv := emstest.NewServer(t)
	c := srv.Client()
	srv.FailNext("VERSION", 2, emstest.HTTPError(503, "1"))
	srv.FailNext("version", 1, emstest.EMSFail("later"))

	var got []string
	for range 4 {
		_, err := c.Version(t.Context())
		var e *emsclient.Error
		switch {
		case err == nil:
			got = append(got, "ok")
		case errors.As(err, &e) && e.HTTPStatus != 0:
			got = append(got, "http")
		case errors.As(err, &e) && e.Status == "FAIL":
			got = append(got, "fail")
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	want := []string{"http", "http", "fail", "ok"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("answers = %v, want %v", got, want)
		}
	}
	if n := len(srv.CallsTo("version")); n != 4 {
		t.Errorf("recorded %d version calls, want 4 (failures are recorded too)", n)
	}
}

func TestFailNextAnyAndOwnFirst(t *testing.T) {
	srv := emstest.NewServer(t)
	c := srv.Client()
	srv.FailNext(emstest.Any, 1, emstest.EMSFail("any"))
	srv.FailNext("listTimers", 1, emstest.EMSFail("own"))

	_, err := c.ListTimers(t.Context())
	var e *emsclient.Error
	if !errors.As(err, &e) || e.Description != "own" {
		t.Fatalf("first listTimers: %v, want the command's own failure first", err)
	}
	if _, err := c.ListStreams(t.Context()); !errors.As(err, &e) || e.Description != "any" {
		t.Fatalf("listStreams: %v, want the Any failure", err)
	}
	if _, err := c.ListTimers(t.Context()); err != nil {
		t.Fatalf("third call: %v, want success once failures are used up", err)
	}
	srv.FailNext("version", 0, emstest.EMSFail("never"))
	if _, err := c.Version(t.Context()); err != nil {
		t.Fatalf("FailNext with n=0 must do nothing: %v", err)
	}
}

func TestHandleAndReset(t *testing.T) {
	srv := emstest.NewServer(t)
	c := srv.Client()
	var seen emsclient.Params
	srv.Handle("GETSTREAMINFO", func(ps emsclient.Params) (int, any) {
		seen = ps
		return 0, emstest.Success("scripted", map[string]any{"uniqueId": 77, "name": "scripted"})
	})
	info, err := c.GetStreamInfo(t.Context(), emsclient.StreamRef{LocalStreamName: "cam 1"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Name() != "scripted" {
		t.Errorf("scripted answer not used: %v", info)
	}
	if v, _ := seen.Get("localStreamName"); v != "cam 1" {
		t.Errorf("handler saw params %v", seen)
	}

	srv.Handle("getStreamInfo", nil)
	info, err = c.GetStreamInfo(t.Context(), emsclient.StreamRef{LocalStreamName: "cam1"})
	if err != nil || info.Name() != "cam1" {
		t.Errorf("default answer not restored: %v, %v", info, err)
	}

	if n := len(srv.Calls()); n != 2 {
		t.Fatalf("Calls() = %d, want 2", n)
	}
	srv.Reset()
	if n := len(srv.Calls()); n != 0 {
		t.Errorf("after Reset, Calls() = %d, want 0", n)
	}
	if _, err := c.Version(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.CallsTo("Version")); n != 1 {
		t.Errorf("CallsTo after Reset = %d, want 1", n)
	}
}

func TestClockAndBadParams(t *testing.T) {
	srv := emstest.NewServer(t)
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	srv.SetClock(func() time.Time { return at })
	hc := srv.HTTPClient()
	resp, err := hc.Get(srv.URL() + "/pullStream?params=!!notbase64!!")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	calls := srv.Calls()
	if len(calls) != 1 || !calls[0].Time.Equal(at) || calls[0].Params != nil {
		t.Fatalf("calls = %+v, want one at %v without params", calls, at)
	}
	_, err = srv.Client().Call(t.Context(), "noSuchCommand", nil)
	if err != nil {
		t.Errorf("unscripted unknown command: %v, want the default SUCCESS", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	srv := emstest.NewServer(t)
	c := srv.Client()
	const n = 20
	var wg sync.WaitGroup
	ids := make(chan uint64, n)
	for range n {
		wg.Go(func() {
			sc, err := c.PullStream(t.Context(), emsclient.PullStreamParams{URI: "rtmp://h/live/x"})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- sc.ConfigID
		})
	}
	wg.Wait()
	close(ids)
	seen := map[uint64]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("configId %d given twice", id)
		}
		seen[id] = true
	}
	if len(seen) != n || len(srv.CallsTo("pullStream")) != n {
		t.Errorf("got %d distinct configIds and %d calls, want %d", len(seen), len(srv.CallsTo("pullStream")), n)
	}
	cfg, err := c.ListConfig(t.Context())
	if err != nil || len(cfg.Pull) != n {
		t.Errorf("listConfig pull = %d, %v; want %d", len(cfg.Pull), err, n)
	}
}
