// Package processing_test is the end-to-end evidence of issue 6 (the Rules and EventSinks
// plugins) through a running emsflow: every event goes the whole way, from an HTTP POST on the
// webhook (sent by emssim or by the test) through the journal and the dispatcher to the plugin,
// and the effects are observed where an operator would see them: configs and media files on the
// simulated EMS, requests at a real HTTP receiver, messages at a real SMTP server. Processes are
// stopped with SIGTERM and killed with SIGKILL between events and their delivery.
package processing_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsflow/emsflow/internal/servicetest"
)

// waitTimeout bounds every wait for something emsflow does in the background.
const waitTimeout = 45 * time.Second

// requireEndToEnd skips in -short mode: these tests build and run the binary.
func requireEndToEnd(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the emsflow binary")
	}
}

// waitFor polls cond until it holds, failing the test with what it waited for otherwise.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !servicetest.Eventually(t.Context(), waitTimeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
	}
}

// envelope is one EMS event in EMS's wire form (reference §1.2) about stream name.
func envelope(id int, typ, name string) string {
	return fmt.Sprintf(`{"id":%d,"payload":{"PID":4242,"appName":"evostreamms","customData":null,"name":%q,"type":"INR","uniqueId":%d},"processId":4242,"timestamp":1506336133,"type":%q}`,
		id, name, id, typ)
}

// post sends one event to emsflow's webhook and requires 200: accepted means journaled.
func post(t *testing.T, svc *servicetest.Service, body string) {
	t.Helper()
	code, err := svc.Post("/evowebservices", body)
	if err != nil || code != http.StatusOK {
		t.Fatalf("post event: code %d, err %v", code, err)
	}
}

// metric returns the value of the sample of name whose labels include want, summed over the
// samples that match; 0 when there is none. It reads emsflow's /metrics (Prometheus text form).
func metric(t *testing.T, svc *servicetest.Service, name string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(svc.URL("/metrics"))
	if err != nil {
		t.Fatalf("get metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	var sum float64
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		sample, value, ok := cutLast(line, " ")
		if !ok {
			continue
		}
		n, labels := sample, ""
		if i := strings.IndexByte(sample, '{'); i >= 0 {
			n, labels = sample[:i], strings.TrimSuffix(sample[i+1:], "}")
		}
		if n != name || !hasLabels(labels, want) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric %s: %v", line, err)
		}
		sum += v
	}
	return sum
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// hasLabels reports whether the label text `a="x",b="y"` has every pair of want. Label values
// here never hold commas or quotes.
func hasLabels(text string, want map[string]string) bool {
	got := map[string]string{}
	for pair := range strings.SplitSeq(text, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if ok {
			got[k] = strings.Trim(v, `"`)
		}
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// smtpServer is a minimal real SMTP server on 127.0.0.1 that keeps every message it receives.
// It speaks the plain dialogue net/smtp uses (greeting, EHLO/HELO, MAIL, RCPT, DATA with
// dot-unstuffing, RSET, NOOP, QUIT), without TLS or authentication.
//
// plugins/sinks/internal/smtptest is the same thing, but internal to plugins/sinks.
type smtpServer struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup

	mu   sync.Mutex
	msgs []mail
}

// mail is one received message.
type mail struct {
	from string
	to   []string
	data string
}

func newSMTPServer(t *testing.T) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{addr: ln.Addr().String(), ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				s.session(c)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *smtpServer) messages() []mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mail(nil), s.msgs...)
}

func (s *smtpServer) session(c net.Conn) {
	r := bufio.NewReader(c)
	reply := func(line string) { _, _ = io.WriteString(c, line+"\r\n") }
	reply("220 e2e smtp ready")
	var m mail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply("250-e2e")
			reply("250 8BITMIME")
		case "HELO", "NOOP":
			reply("250 ok")
		case "RSET":
			m = mail{}
			reply("250 ok")
		case "MAIL":
			m.from = angle(arg)
			reply("250 ok")
		case "RCPT":
			m.to = append(m.to, angle(arg))
			reply("250 ok")
		case "DATA":
			reply("354 end with <CRLF>.<CRLF>")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			m.data = data.String()
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
			m = mail{}
			reply("250 queued")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 not implemented")
		}
	}
}

// angle returns the address in "FROM:<a@b>" or "TO:<a@b>".
func angle(arg string) string {
	if i, j := strings.IndexByte(arg, '<'), strings.IndexByte(arg, '>'); i >= 0 && j > i {
		return arg[i+1 : j]
	}
	return arg
}

// fileExists reports whether path is a non-empty regular file.
func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() > 0
}
