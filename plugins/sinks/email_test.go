package sinks

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/sinks/internal/smtptest"
)

// testPassword is the SMTP password of the TLS tests; it must never show in errors or logs.
const testPassword = "pw-XYZZY-tls"

// clearVerbs are the only commands a client may send before TLS when TLS is required.
var clearVerbs = []string{"EHLO", "HELO", "STARTTLS", "QUIT"}

// TestEmailTLS delivers one digest per case straight through the email deliverer, against a
// server that offers STARTTLS, implicit TLS, or no TLS, with a certificate from the CA of the
// sink's ca_file or from another CA, and checks what the server saw in clear.
func TestEmailTLS(t *testing.T) {
	ca, other := smtptest.NewCA(t), smtptest.NewCA(t)
	tests := []struct {
		name     string
		opt      []smtptest.Option
		scheme   string
		starttls bool
		// wantErr is empty when the digest must arrive; else the error must contain each.
		wantErr       []string
		wantPermanent bool
	}{
		{name: "starttls", opt: []smtptest.Option{smtptest.WithStartTLS(ca.ServerConfig(t))}, scheme: "smtp", starttls: true},
		{name: "smtps", opt: []smtptest.Option{smtptest.WithImplicitTLS(ca.ServerConfig(t))}, scheme: "smtps"},
		{name: "starttls not offered", scheme: "smtp", starttls: true, wantErr: []string{"smtp starttls at smtp://alerts:xxxxx@127.0.0.1:", "does not offer STARTTLS"}},
		{name: "starttls untrusted certificate", opt: []smtptest.Option{smtptest.WithStartTLS(other.ServerConfig(t))},
			scheme: "smtp", starttls: true, wantErr: []string{"smtp starttls at", "x509: certificate signed by unknown authority"}},
		{name: "smtps untrusted certificate", opt: []smtptest.Option{smtptest.WithImplicitTLS(other.ServerConfig(t))},
			scheme: "smtps", wantErr: []string{"tls handshake with smtps://alerts:xxxxx@127.0.0.1:", "x509: certificate signed by unknown authority"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.New(t, tt.opt...)
			h := newHarness(t)
			ca.WriteFile(t, filepath.Join(h.dir, "ca.pem")) // ca_file is relative to the config's folder
			params := `{"sinks":[{"name":"noc","url":"` + tt.scheme + `://alerts:` + testPassword + `@` + srv.Addr + `",
				"starttls":` + map[bool]string{true: "true", false: "false"}[tt.starttls] + `, "ca_file": "ca.pem",
				"from":"emsflow@example.com","to":["noc@example.com"],"subject":"source lost"}]}`
			s := h.build(t, params)
			batch := []record{{Seq: 1, Key: "k1", At: time.Now().UnixNano(), EMS: "edge1", Event: closedEvent(t, 1, "cam1").Raw}}
			// The sender gives every delivery the sink's timeout; so does this test, so that a
			// client and server waiting for each other fail the test quickly.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			err := s.sinks[0].d.deliver(ctx, batch)
			srv.Close() // wait for the session to end, so that everything it saw is recorded

			if err != nil && strings.Contains(err.Error(), testPassword) {
				t.Error("the error shows the SMTP password")
			}
			var verbs []string
			for _, c := range srv.Commands() {
				verbs = append(verbs, c.Verb)
				if !c.TLS && !slices.Contains(clearVerbs, c.Verb) {
					t.Errorf("%s sent in clear, want only %v before TLS", c.Verb, clearVerbs)
				}
			}
			msgs := srv.Messages()
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("deliver: got no error, want one containing %q", tt.wantErr)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("deliver: got error %v, want one containing %q", err, want)
					}
				}
				if got := plugins.IsPermanent(err); got != tt.wantPermanent {
					t.Errorf("deliver error %v: permanent %v, want %v", err, got, tt.wantPermanent)
				}
				for _, v := range []string{"AUTH", "MAIL", "RCPT", "DATA"} {
					if slices.Contains(verbs, v) {
						t.Errorf("commands %v: %s sent although TLS failed", verbs, v)
					}
				}
				if len(msgs) != 0 {
					t.Errorf("got %d messages, want none", len(msgs))
				}
				return
			}
			if err != nil {
				t.Fatalf("deliver: %v", err)
			}
			if len(msgs) != 1 {
				t.Fatalf("got %d messages, want 1 (commands %v)", len(msgs), verbs)
			}
			m := msgs[0]
			if m.Auth != "alerts:"+testPassword {
				t.Error("AUTH PLAIN: the server did not get the configured user and password")
			}
			if !m.AuthTLS || !m.TLS {
				t.Errorf("AUTH over TLS %v, DATA over TLS %v; want both over TLS", m.AuthTLS, m.TLS)
			}
			if !strings.Contains(m.Data, "Subject: source lost: 1 event\r\n") || !strings.Contains(m.Data, "stream=cam1") {
				t.Errorf("digest:\n%s", m.Data)
			}
			if tt.starttls && !slices.Equal(verbs[:3], []string{"EHLO", "STARTTLS", "EHLO"}) {
				t.Errorf("commands %v: want EHLO STARTTLS EHLO first", verbs)
			}
		})
	}
}

// TestEmailStartTLSThroughPlugin runs two STARTTLS sinks through the plugin: one whose server
// offers STARTTLS gets its digest over TLS; one whose server does not keeps its events queued
// and retries, and the logs say why without showing the password.
func TestEmailStartTLSThroughPlugin(t *testing.T) {
	ca := smtptest.NewCA(t)
	good := smtptest.New(t, smtptest.WithStartTLS(ca.ServerConfig(t)))
	plain := smtptest.New(t)
	h := newHarness(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	ca.WriteFile(t, caFile)
	s := h.build(t, `{"sinks":[
		{"name":"good","url":"smtp://alerts:`+testPassword+`@`+good.Addr+`","starttls":true,"from":"a@example.com",
		 "to":"b@example.com","digest_interval":"1ms","resend_delay":"1ms","resend_max_delay":"2ms","ca_file":"`+caFile+`"},
		{"name":"plain","url":"smtp://alerts:`+testPassword+`@`+plain.Addr+`","starttls":true,"from":"a@example.com",
		 "to":"b@example.com","digest_interval":"1ms","resend_delay":"1ms","resend_max_delay":"2ms"}]}`)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.close(t, s) })
	handle(t, s, closedEvent(t, 1, "cam1"))
	eventually(t, "the digest over TLS", func() bool { return len(good.Messages()) == 1 })
	eventually(t, "retries to the server without STARTTLS", func() bool { return h.metric(t, s.m.retries, "plain") >= 2 })
	if m := good.Messages()[0]; !m.AuthTLS || !m.TLS || !strings.Contains(m.Data, "stream=cam1") {
		t.Errorf("digest: AUTH over TLS %v, DATA over TLS %v, data:\n%s", m.AuthTLS, m.TLS, m.Data)
	}
	if n := h.metric(t, s.m.deadLettered, "plain"); n != 0 {
		t.Errorf("dead-lettered %v events for a server without STARTTLS, want them kept queued", n)
	}
	if d := s.sinks[1].q.depth(); d != 1 {
		t.Errorf("queue depth of the sink without STARTTLS: got %d, want 1", d)
	}
	for _, c := range plain.Commands() {
		if !slices.Contains(clearVerbs, c.Verb) {
			t.Errorf("%s sent to a server without STARTTLS", c.Verb)
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "does not offer STARTTLS") {
		t.Errorf("logs do not say the server lacks STARTTLS:\n%s", logs)
	}
	encoded := base64.StdEncoding.EncodeToString([]byte("\x00alerts\x00" + testPassword))
	if strings.Contains(logs, testPassword) || strings.Contains(logs, encoded) {
		t.Error("the logs show the SMTP password")
	}
}
