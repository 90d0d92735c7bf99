package emsclient

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error is every failure of an EMS API call except a cancelled or expired context. It says
// whether retrying can help (Permanent) and how long the server asked to wait (RetryAfter); the
// dispatcher finds both through interfaces, so callers may wrap it freely.
//
// Classification, in this one place:
//   - EMS answered status FAIL: permanent; Description is EMS's reason.
//   - HTTP 408, 429 and 5xx except 501: retryable, honouring Retry-After.
//   - Any other non-2xx status: permanent.
//   - A 2xx body that is not an EMS JSON envelope: retryable (see Client.Call).
//   - Network errors and timeouts: retryable, except a TLS certificate that does not verify.
//   - Invalid arguments, refused before anything is sent: permanent.
//
// Error strings name the command and the API URL with its password redacted; they never carry
// the password or the encoded parameters (which may hold stream URIs with credentials).
type Error struct {
	// Command is the EMS command that failed, as sent.
	Command string
	// HTTPStatus is the HTTP status of the answer, or 0 when the failure was not HTTP-level.
	HTTPStatus int
	// Status is EMS's status ("FAIL"), when EMS answered with its JSON envelope.
	Status string
	// Description is EMS's description of the failure, when it gave one.
	Description string

	api        string // redacted API URL
	permanent  bool
	retryAfter time.Duration
	err        error // underlying cause, if any
}

// Error formats as "ems <command>: <what went wrong> (<redacted API URL>)", for example
// "ems pushStream: FAIL: Syntax error. Parameter localStreamName is invalid (http://127.0.0.1:7777)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("ems ")
	b.WriteString(e.Command)
	b.WriteString(": ")
	switch {
	case e.HTTPStatus != 0:
		fmt.Fprintf(&b, "HTTP %d %s", e.HTTPStatus, http.StatusText(e.HTTPStatus))
		if e.Status != "" || e.Description != "" {
			fmt.Fprintf(&b, ": %s", joinNonEmpty(e.Status, e.Description))
		}
		if e.retryAfter > 0 {
			fmt.Fprintf(&b, ", retry after %s", e.retryAfter)
		}
	case e.err != nil:
		b.WriteString(e.err.Error())
	default:
		b.WriteString(joinNonEmpty(e.Status, e.Description))
	}
	if e.api != "" {
		b.WriteString(" (")
		b.WriteString(e.api)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the underlying cause (a network error, for example), or nil.
func (e *Error) Unwrap() error { return e.err }

// Permanent reports whether retrying the same call cannot succeed.
func (e *Error) Permanent() bool { return e.permanent }

// RetryAfter returns the delay the server asked for with Retry-After, or 0.
func (e *Error) RetryAfter() time.Duration { return e.retryAfter }

// Interface guards: the dispatcher detects these methods (plugins.IsPermanent, plugins.RetryAfter).
var (
	_ error                                   = (*Error)(nil)
	_ interface{ Permanent() bool }           = (*Error)(nil)
	_ interface{ RetryAfter() time.Duration } = (*Error)(nil)
)

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ": " + b
}

func (c *Client) newError(command string) *Error {
	return &Error{Command: command, api: c.redacted}
}

// invalid is a call refused before sending: bad arguments are not fixed by retrying.
func (c *Client) invalid(command string, err error) *Error {
	e := c.newError(command)
	e.err = fmt.Errorf("invalid request: %w", err)
	e.permanent = true
	return e
}

// transportError classifies a failure to get an answer at all.
func (c *Client) transportError(command string, err error) *Error {
	e := c.newError(command)
	e.err = unwrapURLError(err)
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		// A certificate that does not verify is configuration, not weather.
		e.permanent = true
	}
	return e
}

// unwrapURLError drops *url.Error's wrapping: its message quotes the request URL, which holds
// the encoded parameters.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// retryableStatus reports whether an HTTP status is worth retrying: 408, 429 and 5xx except
// 501 Not Implemented.
func retryableStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return true
	case code == http.StatusNotImplemented:
		return false
	case code >= 500 && code <= 599:
		return true
	}
	return false
}

// retryAfter reads Retry-After as delay-seconds or an HTTP-date relative to now. Absent,
// malformed or past values give 0.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 || n > int64(365*24*time.Hour/time.Second) {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}
