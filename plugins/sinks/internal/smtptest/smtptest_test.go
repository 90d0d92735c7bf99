package smtptest

import (
	"crypto/tls"
	"net"
	"net/smtp"
	"strings"
	"testing"
)

// TestRecordsEncryption sends through net/smtp with and without STARTTLS, and over implicit
// TLS, and checks what the server records about encryption. net/smtp allows PLAIN in clear to
// 127.0.0.1, which is what lets the cleartext case happen at all.
func TestRecordsEncryption(t *testing.T) {
	ca := NewCA(t)
	tests := []struct {
		name     string
		opt      Option
		starttls bool
		implicit bool
		wantTLS  bool
	}{
		{"clear on a starttls server", WithStartTLS(ca.ServerConfig(t)), false, false, false},
		{"starttls", WithStartTLS(ca.ServerConfig(t)), true, false, true},
		{"implicit", WithImplicitTLS(ca.ServerConfig(t)), false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := New(t, tt.opt)
			cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
			var conn net.Conn
			var err error
			if tt.implicit {
				conn, err = tls.Dial("tcp", srv.Addr, cfg)
			} else {
				conn, err = net.Dial("tcp", srv.Addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := smtp.NewClient(conn, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if ok, _ := c.Extension("STARTTLS"); ok == tt.implicit {
				t.Errorf("STARTTLS advertised: got %v, want %v", ok, !tt.implicit)
			}
			if tt.starttls {
				if err := c.StartTLS(cfg); err != nil {
					t.Fatalf("starttls: %v", err)
				}
			}
			steps := []func() error{
				func() error { return c.Auth(smtp.PlainAuth("", "u", "p", "127.0.0.1")) },
				func() error { return c.Mail("a@example.com") },
				func() error { return c.Rcpt("b@example.com") },
			}
			for _, step := range steps {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte("Subject: x\r\n\r\n.dot\r\n")); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 {
				t.Fatalf("got %d messages, want 1", len(msgs))
			}
			m := msgs[0]
			if m.Auth != "u:p" || m.AuthTLS != tt.wantTLS || m.TLS != tt.wantTLS || m.Data != "Subject: x\r\n\r\n.dot\r\n" {
				t.Errorf("message: got auth %q over TLS %v, data over TLS %v, data %q; want over TLS %v",
					m.Auth, m.AuthTLS, m.TLS, m.Data, tt.wantTLS)
			}
			var verbs []string
			for _, cmd := range srv.Commands() {
				verbs = append(verbs, cmd.Verb)
				if cmd.Verb == "AUTH" && cmd.TLS != tt.wantTLS {
					t.Errorf("AUTH recorded with TLS %v, want %v", cmd.TLS, tt.wantTLS)
				}
			}
			if tt.starttls && !strings.HasPrefix(strings.Join(verbs, " "), "EHLO STARTTLS EHLO AUTH") {
				t.Errorf("commands: got %v, want EHLO STARTTLS EHLO AUTH ...", verbs)
			}
		})
	}
}

// TestUntrustedHandshakeRecorded checks that a client refusing the certificate shows up in
// TLSErrors and sends no command.
func TestUntrustedHandshakeRecorded(t *testing.T) {
	srv := New(t, WithImplicitTLS(NewCA(t).ServerConfig(t)))
	cfg := &tls.Config{RootCAs: NewCA(t).Pool(), ServerName: "127.0.0.1"}
	if _, err := tls.Dial("tcp", srv.Addr, cfg); err == nil {
		t.Fatal("dial: got nil error, want an unknown-authority error")
	}
	srv.Close()
	if errs := srv.TLSErrors(); len(errs) != 1 {
		t.Errorf("TLS errors: got %v, want 1", errs)
	}
	if cmds := srv.Commands(); len(cmds) != 0 {
		t.Errorf("commands: got %v, want none", cmds)
	}
}
