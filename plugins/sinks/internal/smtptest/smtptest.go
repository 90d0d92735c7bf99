// Package smtptest runs a minimal real SMTP server on 127.0.0.1 that records the messages it
// receives, for tests of code that sends email.
//
// It speaks the plain dialogue net/smtp uses: greeting, EHLO/HELO, AUTH PLAIN, MAIL FROM,
// RCPT TO, DATA with dot-unstuffing, RSET, NOOP and QUIT. With WithStartTLS it also advertises
// and performs STARTTLS; with WithImplicitTLS it speaks TLS from the first byte (smtps). It
// records every command with whether the session was encrypted at that moment, so that tests
// can check that credentials and mail only travelled under TLS. NewCA makes the certificates.
package smtptest

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sessionLimit bounds one session, handshake included.
const sessionLimit = 30 * time.Second

// Message is one received message.
type Message struct {
	// From is the MAIL FROM address.
	From string
	// To are the RCPT TO addresses.
	To []string
	// Data is the message as sent, headers and body, with CRLF line ends and dots unstuffed.
	Data string
	// Auth is the decoded AUTH PLAIN identity "user:password", empty without AUTH. Tests should
	// compare it rather than print it.
	Auth string
	// AuthTLS reports whether AUTH happened on an encrypted session.
	AuthTLS bool
	// TLS reports whether DATA happened on an encrypted session.
	TLS bool
}

// Command is one command the server received, in order across all sessions.
type Command struct {
	// Verb is the command word in upper case ("EHLO", "STARTTLS", "AUTH", ...), without its
	// arguments, so that recorded commands never hold credentials.
	Verb string
	// TLS reports whether the session was encrypted when the command arrived.
	TLS bool
	// Hello is the host name an EHLO or HELO gave; empty for other verbs.
	Hello string
}

// Option configures a server.
type Option func(*Server)

// WithStartTLS makes the server advertise STARTTLS on unencrypted sessions and upgrade them with
// cfg (see CA.ServerConfig).
func WithStartTLS(cfg *tls.Config) Option {
	return func(s *Server) { s.startTLS = cfg }
}

// WithImplicitTLS makes the server speak TLS with cfg from the first byte, as smtps does.
func WithImplicitTLS(cfg *tls.Config) Option {
	return func(s *Server) { s.implicit = cfg }
}

// Server is a running SMTP server.
type Server struct {
	// Addr is host:port of the listener.
	Addr string

	ln       net.Listener
	startTLS *tls.Config
	implicit *tls.Config
	wg       sync.WaitGroup
	mu       sync.Mutex
	msgs     []Message
	cmds     []Command
	tlsErrs  []error
	// reject, when non-zero, is the reply code given to DATA (for failure tests).
	reject int
}

// New starts a server that is stopped when the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s := &Server{Addr: ln.Addr().String(), ln: ln}
	for _, o := range opts {
		o(s)
	}
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

// Commands returns the commands received so far, from every session.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Command(nil), s.cmds...)
}

// TLSErrors returns the errors of the TLS handshakes that failed, such as a client refusing
// the server's certificate.
func (s *Server) TLSErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.tlsErrs...)
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
		// A bound on every session keeps a stuck client from hanging Close and the test.
		_ = c.SetDeadline(time.Now().Add(sessionLimit))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if s.implicit != nil {
				tc := tls.Server(c, s.implicit)
				if !s.handshake(tc) {
					_ = c.Close()
					return
				}
				c = tc
			}
			defer c.Close()
			s.session(c, s.implicit != nil)
		}()
	}
}

// handshake completes a server handshake and records its failure.
func (s *Server) handshake(tc *tls.Conn) bool {
	if err := tc.Handshake(); err != nil {
		s.mu.Lock()
		s.tlsErrs = append(s.tlsErrs, err)
		s.mu.Unlock()
		return false
	}
	return true
}

func (s *Server) session(c net.Conn, encrypted bool) {
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
		verb = strings.ToUpper(verb)
		s.mu.Lock()
		cmd := Command{Verb: verb, TLS: encrypted}
		if verb == "EHLO" || verb == "HELO" {
			cmd.Hello = arg
		}
		s.cmds = append(s.cmds, cmd)
		s.mu.Unlock()
		switch verb {
		case "EHLO":
			reply("250-smtptest")
			reply("250-8BITMIME")
			if s.startTLS != nil && !encrypted {
				reply("250-STARTTLS")
			}
			reply("250 AUTH PLAIN")
		case "HELO":
			reply("250 smtptest")
		case "STARTTLS":
			if s.startTLS == nil || encrypted {
				reply("502 not offered")
				continue
			}
			if r.Buffered() > 0 {
				// Commands pipelined after STARTTLS would be read in clear (RFC 3207 section 5).
				reply("501 no pipelining before TLS")
				return
			}
			reply("220 go ahead")
			tc := tls.Server(c, s.startTLS)
			if !s.handshake(tc) {
				return
			}
			c, encrypted = tc, true
			r, w = bufio.NewReader(c), bufio.NewWriter(c)
			// The client must start again with EHLO and forget everything before TLS.
			m = Message{}
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
			m.AuthTLS = encrypted
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
			m.TLS = encrypted
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
			m = Message{Auth: m.Auth, AuthTLS: m.AuthTLS}
			reply("250 queued")
		case "RSET":
			m = Message{Auth: m.Auth, AuthTLS: m.AuthTLS}
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
