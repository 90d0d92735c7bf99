// Package smtptest runs a minimal real SMTP server on 127.0.0.1 that records the messages it
// receives, for tests of code that sends email.
//
// It speaks the plain dialogue net/smtp uses: greeting, EHLO/HELO, AUTH PLAIN, MAIL FROM,
// RCPT TO, DATA with dot-unstuffing, RSET, NOOP and QUIT. It offers no TLS.
package smtptest

import (
	"bufio"
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Message is one received message.
type Message struct {
	// From is the MAIL FROM address.
	From string
	// To are the RCPT TO addresses.
	To []string
	// Data is the message as sent, headers and body, with CRLF line ends and dots unstuffed.
	Data string
	// Auth is the decoded AUTH PLAIN identity "user:password", empty without AUTH.
	Auth string
}

// Server is a running SMTP server.
type Server struct {
	// Addr is host:port of the listener.
	Addr string

	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	msgs []Message
	// reject, when non-zero, is the reply code given to DATA (for failure tests).
	reject int
}

// New starts a server that is stopped when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s := &Server{Addr: ln.Addr().String(), ln: ln}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Close stops the listener and waits for open sessions.
func (s *Server) Close() {
	_ = s.ln.Close()
	s.wg.Wait()
}

// Messages returns the messages received so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// RejectData makes DATA answer code (such as 451 or 554); 0 accepts again.
func (s *Server) RejectData(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject = code
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.session(c)
		}()
	}
}

func (s *Server) session(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(line string) bool {
		_, _ = w.WriteString(line + "\r\n")
		return w.Flush() == nil
	}
	reply("220 smtptest ready")
	var m Message
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply("250-smtptest")
			reply("250-8BITMIME")
			reply("250 AUTH PLAIN")
		case "HELO":
			reply("250 smtptest")
		case "AUTH":
			mech, initial, _ := strings.Cut(arg, " ")
			if !strings.EqualFold(mech, "PLAIN") {
				reply("504 unsupported mechanism")
				continue
			}
			b, err := base64.StdEncoding.DecodeString(initial)
			parts := strings.Split(string(b), "\x00")
			if err != nil || len(parts) != 3 {
				reply("501 bad credentials encoding")
				continue
			}
			m.Auth = parts[1] + ":" + parts[2]
			reply("235 authenticated")
		case "MAIL":
			m.From = addr(arg)
			reply("250 ok")
		case "RCPT":
			m.To = append(m.To, addr(arg))
			reply("250 ok")
		case "DATA":
			s.mu.Lock()
			code := s.reject
			s.mu.Unlock()
			if code != 0 {
				reply(strconv.Itoa(code) + " rejected by test")
				continue
			}
			reply("354 end with .")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				l = strings.TrimPrefix(l, ".") // dot-stuffing
				data.WriteString(l)
			}
			m.Data = data.String()
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
			m = Message{Auth: m.Auth}
			reply("250 queued")
		case "RSET":
			m = Message{Auth: m.Auth}
			reply("250 ok")
		case "NOOP":
			reply("250 ok")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 not implemented")
		}
	}
}

// addr extracts the address from "FROM:<a@b>" or "TO:<a@b> PARAMS".
func addr(arg string) string {
	_, v, _ := strings.Cut(arg, ":")
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '>'); i >= 0 {
		v = v[:i+1]
	}
	return strings.Trim(v, "<>")
}
