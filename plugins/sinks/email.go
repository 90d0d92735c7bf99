package sinks

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// emailDeliverer sends a batch as one plain-text digest through an SMTP server.
//
// net/smtp's PLAIN authentication refuses to send credentials unless the connection is TLS
// (smtps://, or starttls) or the server is on localhost.
type emailDeliverer struct {
	sink     string
	addr     string
	host     string
	redacted string
	implicit bool
	startTLS bool
	helo     string
	user     Secret
	pass     Secret
	from     string
	to       []string
	subject  string
	now      func() time.Time
	// tlsConfig is used for TLS; tests may trust their own CA.
	tlsConfig *tls.Config
}

func newEmailDeliverer(sc SinkConfig, now func() time.Time) (*emailDeliverer, error) {
	u, err := url.Parse(string(sc.URL))
	if err != nil {
		return nil, fmt.Errorf("parse smtp url: %w", err)
	}
	d := &emailDeliverer{
		sink: sc.Name, host: u.Hostname(), redacted: u.Redacted(), implicit: u.Scheme == "smtps",
		startTLS: sc.StartTLS, helo: sc.Helo, from: sc.From, to: []string(sc.To), subject: sc.Subject, now: now,
	}
	port := u.Port()
	if port == "" {
		port = "25"
		if d.implicit {
			port = "465"
		}
	}
	d.addr = net.JoinHostPort(d.host, port)
	if u.User != nil {
		d.user = Secret(u.User.Username())
		p, _ := u.User.Password()
		d.pass = Secret(p)
	}
	d.tlsConfig = &tls.Config{ServerName: d.host, MinVersion: tls.VersionTLS12}
	return d, nil
}

func (d *emailDeliverer) close() error { return nil }

func (d *emailDeliverer) deliver(ctx context.Context, batch []record) error {
	msg := d.message(batch)
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", d.redacted, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if d.implicit {
		// Shake hands now rather than on the first read, so that a certificate problem is
		// reported as such and not as a failed greeting.
		tc := tls.Client(conn, d.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fmt.Errorf("tls handshake with %s: %w", d.redacted, err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, d.host)
	if err != nil {
		conn.Close()
		return d.smtpErr("greeting", err)
	}
	defer c.Close()
	// net/smtp would say EHLO localhost, which servers that check the name refuse.
	if err := c.Hello(d.helo); err != nil {
		return d.smtpErr("ehlo", err)
	}
	if d.startTLS {
		// Retryable, like a refused connection or an untrusted certificate: the server or the
		// path to it (a middlebox stripping STARTTLS) can be fixed without restarting us, and the
		// events stay queued until then (or until resend_timeout). Nothing has been sent but EHLO.
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("smtp starttls at %s: server does not offer STARTTLS, so neither credentials nor mail are sent", d.redacted)
		}
		if err := c.StartTLS(d.tlsConfig); err != nil {
			return d.smtpErr("starttls", err)
		}
	}
	if d.user != "" {
		if err := c.Auth(smtp.PlainAuth("", string(d.user), string(d.pass), d.host)); err != nil {
			return d.smtpErr("authenticate", err)
		}
	}
	if err := c.Mail(d.from); err != nil {
		return d.smtpErr("mail from", err)
	}
	for _, to := range d.to {
		if err := c.Rcpt(to); err != nil {
			return d.smtpErr("rcpt to", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return d.smtpErr("data", err)
	}
	if _, err := w.Write(msg); err != nil {
		return d.smtpErr("write message", err)
	}
	if err := w.Close(); err != nil {
		return d.smtpErr("end message", err)
	}
	if err := c.Quit(); err != nil {
		return d.smtpErr("quit", err)
	}
	return nil
}

// smtpErr names the step; a 5xx reply is permanent.
func (d *emailDeliverer) smtpErr(step string, err error) error {
	err = fmt.Errorf("smtp %s at %s: %w", step, d.redacted, err)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return plugins.Permanent(err)
	}
	return err
}

// message builds the digest: headers, then one line per event.
func (d *emailDeliverer) message(batch []record) []byte {
	var b bytes.Buffer
	now := d.now().UTC()
	subject := fmt.Sprintf("%s: %d event", d.subject, len(batch))
	if len(batch) != 1 {
		subject += "s"
	}
	fmt.Fprintf(&b, "From: %s\r\n", d.from)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(d.to, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%s@emsflow>\r\n", batchID(batch), d.sink)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	first, last := time.Unix(0, batch[0].At).UTC(), time.Unix(0, batch[len(batch)-1].At).UTC()
	fmt.Fprintf(&b, "emsflow sink %s: %d events queued between %s and %s.\r\n\r\n", d.sink, len(batch),
		first.Format(time.DateTime), last.Format(time.DateTime))
	for _, r := range batch {
		b.WriteString(digestLine(r))
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// digestLine summarises one event: time (EMS's, else queueing time), type, stream or file, EMS.
func digestLine(r record) string {
	at := time.Unix(0, r.At).UTC()
	ev, err := event.Decode(r.Event)
	if err != nil {
		return at.Format(time.DateTime) + " UTC  (undecodable event)"
	}
	if ev.Timestamp > 0 {
		at = time.Unix(int64(ev.Timestamp), 0).UTC()
	}
	parts := []string{at.Format(time.DateTime) + " UTC", ev.Type}
	if name := ev.Payload.Name(); name != "" {
		parts = append(parts, "stream="+name)
	}
	if f := ev.Payload.File(); f != "" {
		parts = append(parts, "file="+f)
	}
	if r.EMS != "" {
		parts = append(parts, "ems="+r.EMS)
	}
	return oneLine(strings.Join(parts, "  "))
}

// oneLine keeps event-supplied text from breaking the message's lines.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
