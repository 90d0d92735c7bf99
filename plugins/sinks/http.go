package sinks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/emsflow/emsflow/plugins"
)

// Header names of the signatures.
const (
	// HeaderSignature carries Flussonic's SHA1 signature.
	HeaderSignature = "X-Signature"
	// HeaderWebhookID, HeaderWebhookTimestamp and HeaderWebhookSignature carry the Standard
	// Webhooks signature.
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// httpDeliverer POSTs a batch as a JSON array.
type httpDeliverer struct {
	url       string
	redacted  string
	client    *http.Client
	headers   map[string]Secret
	signature string
	key       []byte
	now       func() time.Time
}

func newHTTPDeliverer(sc SinkConfig, client *http.Client, now func() time.Time) (*httpDeliverer, error) {
	d := &httpDeliverer{url: string(sc.URL), redacted: sc.RedactedURL(), client: client, headers: sc.Headers, signature: sc.Signature, now: now}
	switch sc.Signature {
	case SignatureSHA1:
		d.key = []byte(sc.SignKey)
	case SignatureStandardWebhooks:
		k, err := standardWebhooksKey(string(sc.SignKey))
		if err != nil {
			return nil, err
		}
		d.key = k
	}
	return d, nil
}

func (d *httpDeliverer) close() error { return nil }

func (d *httpDeliverer) deliver(ctx context.Context, batch []record) error {
	body := encodeBatch(batch)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return plugins.Permanent(fmt.Errorf("build request to %s: %w", d.redacted, err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "emsflow")
	for h, v := range d.headers {
		req.Header.Set(h, string(v))
	}
	switch d.signature {
	case SignatureSHA1:
		req.Header.Set(HeaderSignature, SignSHA1(body, d.key))
	case SignatureStandardWebhooks:
		id := batchID(batch)
		ts := d.now().Unix()
		req.Header.Set(HeaderWebhookID, id)
		req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderWebhookSignature, SignStandardWebhooks(d.key, id, ts, body))
	}
	resp, err := d.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, query tokens included; name the redacted one instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post %d events to %s: %w", len(batch), d.redacted, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return classifyHTTP(resp, d.redacted, d.now())
}

// httpError is a non-2xx answer, classified as the house style says: 408, 429 and 5xx other
// than 501 are worth retrying, honouring Retry-After; other statuses are permanent.
type httpError struct {
	status     int
	url        string
	retryAfter time.Duration
}

func (e *httpError) Error() string {
	return fmt.Sprintf("post to %s: %d %s", e.url, e.status, http.StatusText(e.status))
}

// Permanent reports whether retrying cannot help.
func (e *httpError) Permanent() bool {
	switch {
	case e.status == http.StatusRequestTimeout, e.status == http.StatusTooManyRequests:
		return false
	case e.status >= 500 && e.status != http.StatusNotImplemented:
		return false
	}
	return true
}

// RetryAfter returns the delay the receiver asked for.
func (e *httpError) RetryAfter() time.Duration { return e.retryAfter }

func classifyHTTP(resp *http.Response, redacted string, now time.Time) error {
	e := &httpError{status: resp.StatusCode, url: redacted}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs > 0 {
			e.retryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil && t.After(now) {
			e.retryAfter = t.Sub(now)
		}
	}
	return e
}

// SignSHA1 is Flussonic's signature: the hex SHA1 of the body followed by the key.
func SignSHA1(body, key []byte) string {
	h := sha1.New()
	h.Write(body)
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil))
}

// SignStandardWebhooks returns the Standard Webhooks signature header value: "v1," and the
// base64 HMAC-SHA256 of "id.timestamp.body" under key (the bytes after "whsec_", decoded).
func SignStandardWebhooks(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// batchID is a message id that is the same for every attempt at a batch, across restarts.
func batchID(batch []record) string {
	h := sha256.New()
	for _, r := range batch {
		h.Write([]byte(r.Key))
		h.Write([]byte{'\n'})
	}
	return "msg_" + hex.EncodeToString(h.Sum(nil))[:32]
}

// encodeBatch renders a batch as a JSON array of events.
func encodeBatch(batch []record) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, r := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(eventJSON(r))
	}
	b.WriteByte(']')
	return b.Bytes()
}

// eventJSON returns the event as received with an "ems" field added first when the sending EMS
// is known. Events are JSON objects (event.Decode checks it).
func eventJSON(r record) []byte {
	raw := bytes.TrimSpace(r.Event)
	if r.EMS == "" || len(raw) < 2 || raw[0] != '{' {
		return raw
	}
	name, _ := json.Marshal(r.EMS)
	rest := bytes.TrimSpace(raw[1:])
	out := make([]byte, 0, len(raw)+len(name)+8)
	out = append(out, `{"ems":`...)
	out = append(out, name...)
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}
