// Package emsclient is a typed client for the EvoStream Media Server (EMS) HTTP API.
//
// A command is a GET of <base>/<command>?params=<base64 of "k=v k=v">, answered with a JSON
// envelope {"status","description","data"} (reference §3). The wire form of the parameters lives
// in wire.go; this file holds the transport, errors.go the classification of failures, and
// commands.go and lists.go the typed commands.
//
// The client does not retry: it classifies every failure as permanent or retryable (see Error)
// and leaves retrying to the one layer that owns it, the dispatcher.
package emsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	// maxCommandLength is EMS's limit on "<command> <params text>" (reference §3.1).
	maxCommandLength = 16 * 1024
	// maxBodyBytes bounds how much of a response is read; listStreams on a busy server is the
	// largest answer and stays far below it.
	maxBodyBytes = 64 << 20
	// drainBytes bounds how much of an unread body is drained so the connection can be reused.
	drainBytes = 1 << 20
)

// Client calls one EMS server's HTTP API, directly (http://host:7777) or through the EMS web
// server's apiProxy (http://user:pass@host:8888/pseudoDomain). It is safe for concurrent use.
type Client struct {
	base     string // scheme://host[/path], without credentials or a trailing slash
	redacted string // base with the password replaced, for String and errors
	user     string
	pass     string
	auth     bool
	hc       *http.Client
	now      func() time.Time
}

// Option configures a Client.
type Option func(*Client)

// WithClock sets the clock used to turn an HTTP-date Retry-After into a delay. The default is
// time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *Client) {
		if now != nil {
			c.now = now
		}
	}
}

// New returns a client for the API at apiURL, which is either the plain form
// "http://host:7777" or the apiProxy form "http://user:pass@host:8888/pseudoDomain"
// (reference §3.1). Credentials in the URL are sent as HTTP basic auth and never printed.
//
// hc is the HTTP client used for every call; its Timeout (or the ctx of each call) bounds a
// call. It must not be nil: a shared default client has no timeout.
func New(apiURL string, hc *http.Client, opts ...Option) (*Client, error) {
	if hc == nil {
		return nil, errors.New("new ems client: http client is nil")
	}
	u, err := url.Parse(strings.TrimSpace(apiURL))
	if err != nil {
		// *url.Error quotes the whole input, credentials included: keep only its cause.
		return nil, fmt.Errorf("new ems client: api url is not a valid URL: %w", unwrapURLError(err))
	}
	redacted := u.Redacted()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("new ems client: api url %s: scheme must be http or https", redacted)
	case u.Host == "":
		return nil, fmt.Errorf("new ems client: api url %s: no host", redacted)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("new ems client: api url %s: must not have a query", redacted)
	case u.Fragment != "":
		return nil, fmt.Errorf("new ems client: api url %s: must not have a fragment", redacted)
	case u.Opaque != "":
		return nil, fmt.Errorf("new ems client: api url %s: not a hierarchical URL", redacted)
	}
	c := &Client{hc: hc, now: time.Now}
	if u.User != nil {
		c.auth = true
		c.user = u.User.Username()
		c.pass, _ = u.User.Password()
		u.User = nil
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c.base = u.String()
	if c.auth {
		u.User = url.UserPassword(c.user, "xxxxx")
		if c.pass == "" {
			u.User = url.User(c.user)
		}
	}
	c.redacted = u.String()
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// String returns the API URL with the password redacted.
func (c *Client) String() string { return c.redacted }

// BaseURL returns the API URL with the password redacted; commands are appended to it.
func (c *Client) BaseURL() string { return c.redacted }

var _ fmt.Stringer = (*Client)(nil)

// Response is EMS's answer envelope (reference §3.2).
type Response struct {
	// Status is "SUCCESS" or "FAIL". SUCCESS only means that EMS parsed and queued the command.
	Status string
	// Description is EMS's human-readable description of the outcome.
	Description string
	// Data is the command's result as sent, or nil when EMS sent null.
	Data json.RawMessage
	// ResponseID echoes the commandId parameter, when one was sent.
	ResponseID string
}

// DecodeData decodes Data into v with json.Number for numbers held in interfaces, so that 64-bit
// ids survive. A null or absent Data leaves v untouched.
func (r *Response) DecodeData(v any) error {
	if isNull(r.Data) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(r.Data))
	dec.UseNumber()
	return dec.Decode(v)
}

// Call runs one API command: GET <base>/<command> without params, or
// GET <base>/<command>?params=<params.Encode()> with them, the base64 appended raw since EMS does
// no URL-unescaping. The body is parsed as JSON whatever its Content-Type (EMS sends text/plain).
//
// A FAIL answer returns the Response together with a permanent *Error carrying EMS's
// description. Every other failure is an *Error too, classified in one place (see Error),
// except a cancelled or expired ctx, whose error is returned wrapped (errors.Is works) and is
// not marked as anything. Call does not retry.
func (c *Client) Call(ctx context.Context, command string, params Params) (*Response, error) {
	if err := checkCommand(command); err != nil {
		return nil, c.invalid(command, err)
	}
	if err := checkParams(params); err != nil {
		return nil, c.invalid(command, err)
	}
	target := c.base + "/" + command
	if len(params) > 0 {
		text := params.Text()
		if n := len(command) + 1 + len(text); n > maxCommandLength {
			return nil, c.invalid(command, fmt.Errorf("command is %d bytes, EMS accepts at most %d", n, maxCommandLength))
		}
		target += "?params=" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		// The error would quote the URL, params included: keep only that it failed.
		return nil, c.invalid(command, errors.New("cannot build the request URL"))
	}
	req.Header.Set("Accept", "application/json, text/plain")
	if c.auth {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("ems %s (%s): %w", command, c.redacted, ctxErr)
		}
		return nil, c.transportError(command, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
		_ = resp.Body.Close()
	}()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("ems %s (%s): %w", command, c.redacted, ctxErr)
		}
		return nil, c.transportError(command, fmt.Errorf("read response: %w", unwrapURLError(err)))
	}
	return c.classify(command, resp, body)
}

// classify turns an HTTP answer into a Response or an *Error.
func (c *Client) classify(command string, resp *http.Response, body []byte) (*Response, error) {
	r, jsonErr := parseResponse(body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := c.newError(command)
		e.HTTPStatus = resp.StatusCode
		if jsonErr == nil {
			e.Status, e.Description = r.Status, r.Description
		}
		e.permanent = !retryableStatus(resp.StatusCode)
		if !e.permanent {
			e.retryAfter = retryAfter(resp.Header, c.now())
		}
		return nil, e
	}
	if jsonErr != nil {
		// EMS always answers with a JSON envelope. Anything else on a 2xx comes from something
		// between us and EMS (an apiProxy, a load balancer or captive HTML error page) or is a
		// truncated answer: we cannot tell whether EMS ran the command, and such conditions are
		// usually transient, so it is retryable; the dispatcher's retry cap still bounds it.
		e := c.newError(command)
		e.err = fmt.Errorf("response is not JSON (HTTP %d, %s, %d bytes): %w",
			resp.StatusCode, contentType(resp), len(body), jsonErr)
		return nil, e
	}
	switch {
	case strings.EqualFold(r.Status, "SUCCESS"):
		return r, nil
	case strings.EqualFold(r.Status, "FAIL"):
		e := c.newError(command)
		e.Status, e.Description = r.Status, r.Description
		e.permanent = true
		return r, e
	default:
		// A JSON body without EMS's status is not an EMS answer either (see above).
		e := c.newError(command)
		e.Status, e.Description = r.Status, r.Description
		e.err = fmt.Errorf("response has no EMS status (got %q)", r.Status)
		return nil, e
	}
}

// parseResponse decodes the answer envelope leniently: only the first JSON value counts, and a
// responseId may be a string or a number.
func parseResponse(body []byte) (*Response, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body")
	}
	if body[0] != '{' {
		return nil, errors.New("body is not a JSON object")
	}
	var env struct {
		Status      json.RawMessage `json:"status"`
		Description json.RawMessage `json:"description"`
		Data        json.RawMessage `json:"data"`
		ResponseID  json.RawMessage `json:"responseId"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		return nil, err
	}
	r := &Response{
		Status:      rawText(env.Status),
		Description: rawText(env.Description),
		ResponseID:  rawText(env.ResponseID),
	}
	if !isNull(env.Data) {
		r.Data = env.Data
	}
	return r, nil
}

// rawText returns a JSON string's value, or a scalar's literal text; null gives "".
func rawText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if isNull(raw) {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

func contentType(resp *http.Response) string {
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		return ct
	}
	return "no content type"
}

// checkCommand accepts EMS command names: letters and digits only, so that nothing can be
// smuggled into the request path.
func checkCommand(command string) error {
	if command == "" {
		return errors.New("empty command name")
	}
	for i := 0; i < len(command); i++ {
		ch := command[i]
		if (ch < 'a' || ch > 'z') && (ch < 'A' || ch > 'Z') && (ch < '0' || ch > '9') {
			return fmt.Errorf("command name %q has a character other than a letter or digit", command)
		}
	}
	return nil
}

// checkParams refuses what the wire form cannot carry: empty or unescapable names, empty lists,
// and control characters, which EMS's command-line parser would cut the command at.
func checkParams(ps Params) error {
	var errs []error
	for _, p := range ps {
		if p.Key == "" {
			errs = append(errs, errors.New("parameter with an empty name"))
			continue
		}
		if strings.ContainsAny(p.Key, " =,\\") || hasControl(p.Key) {
			errs = append(errs, fmt.Errorf("parameter name %q has a space, '=', ',', '\\' or control character", p.Key))
		}
		if len(p.Values) == 0 {
			errs = append(errs, fmt.Errorf("parameter %s has no value", p.Key))
		}
		for _, v := range p.Values {
			if hasControl(v) {
				errs = append(errs, fmt.Errorf("parameter %s has a control character in its value", p.Key))
				break
			}
		}
	}
	return errors.Join(errs...)
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
