package emsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/emsflow/emsflow/event"
)

// ListStreams returns every stream EMS runs, each the same statistics object stream events carry
// (name, uniqueId, type, *Settings, ...).
func (c *Client) ListStreams(ctx context.Context) ([]event.Payload, error) {
	r, err := c.Call(ctx, "listStreams", nil)
	if err != nil {
		return nil, err
	}
	var out []event.Payload
	if err := decodeList(r, &out); err != nil {
		return nil, c.badData("listStreams", err)
	}
	return out, nil
}

// ListStreamsIDs returns the ids (uniqueId) of every stream EMS runs.
func (c *Client) ListStreamsIDs(ctx context.Context) ([]uint64, error) {
	r, err := c.Call(ctx, "listStreamsIds", nil)
	if err != nil {
		return nil, err
	}
	var raw []json.Number
	if err := decodeList(r, &raw); err != nil {
		return nil, c.badData("listStreamsIds", err)
	}
	ids := make([]uint64, 0, len(raw))
	for _, n := range raw {
		id, ok := asUint(n)
		if !ok {
			return nil, c.badData("listStreamsIds", fmt.Errorf("stream id %s is not an unsigned integer", n))
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// StreamRef names one stream: exactly one of ID (the stream's uniqueId) and LocalStreamName.
type StreamRef struct {
	// ID is the stream id (uniqueId).
	ID uint64
	// LocalStreamName is the stream's local name.
	LocalStreamName string
}

// GetStreamInfo returns one stream's statistics object.
func (c *Client) GetStreamInfo(ctx context.Context, ref StreamRef) (event.Payload, error) {
	var ps Params
	if err := addRef(&ps, ref.ID, ref.LocalStreamName, "localStreamName"); err != nil {
		return nil, c.invalid("getStreamInfo", err)
	}
	r, err := c.Call(ctx, "getStreamInfo", ps)
	if err != nil {
		return nil, err
	}
	return c.dataObject("getStreamInfo", r)
}

// Version returns EMS's version object (banner, releaseNumber, buildNumber, codeName, ...).
func (c *Client) Version(ctx context.Context) (event.Payload, error) {
	r, err := c.Call(ctx, "version", nil)
	if err != nil {
		return nil, err
	}
	return c.dataObject("version", r)
}

// ConfigList is the answer of listConfig: the stored configs by kind. Each entry is the config
// as stored (configId, localStreamName, uri, "_" variables, ...) plus status{current,previous};
// ConfigStatus reads the current status.
type ConfigList struct {
	Pull, Push, HLS, HDS, MSS, DASH, Record, Process []event.Payload
	// Data is the whole answer, including kinds not listed above (webrtc, metalistener, ...).
	Data event.Payload
}

// All returns every entry of every listed kind, in the order of the fields.
func (l *ConfigList) All() []event.Payload {
	var out []event.Payload
	for _, kind := range [][]event.Payload{l.Pull, l.Push, l.HLS, l.HDS, l.MSS, l.DASH, l.Record, l.Process} {
		out = append(out, kind...)
	}
	return out
}

// ListConfig returns every stored config.
func (c *Client) ListConfig(ctx context.Context) (*ConfigList, error) {
	r, err := c.Call(ctx, "listConfig", nil)
	if err != nil {
		return nil, err
	}
	data, err := c.dataObject("listConfig", r)
	if err != nil {
		return nil, err
	}
	if inner, ok := data.Object("data"); ok && !hasAny(data, configKinds) {
		data = inner // the EMS 2.0 data.data wrapping (reference §3.2)
	}
	l := &ConfigList{Data: data}
	dst := map[string]*[]event.Payload{
		"pull": &l.Pull, "push": &l.Push, "hls": &l.HLS, "hds": &l.HDS,
		"mss": &l.MSS, "dash": &l.DASH, "record": &l.Record, "process": &l.Process,
	}
	for key, v := range data {
		d, ok := dst[strings.ToLower(key)]
		if !ok || v == nil {
			continue
		}
		items, ok := v.([]any)
		if !ok {
			return nil, c.badData("listConfig", fmt.Errorf("%s is not a list", key))
		}
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				return nil, c.badData("listConfig", fmt.Errorf("%s[%d] is not an object", key, i))
			}
			*d = append(*d, event.Payload(m))
		}
	}
	return l, nil
}

var configKinds = []string{"pull", "push", "hls", "hds", "mss", "dash", "record", "process"}

func hasAny(p event.Payload, keys []string) bool {
	for _, k := range keys {
		if _, ok := p[k]; ok {
			return true
		}
	}
	return false
}

// StreamStatus is the status code of a listConfig entry (status.current.code).
type StreamStatus int

// Status codes of listConfig entries (reference §3.2).
const (
	StatusStreaming        StreamStatus = 0
	StatusConnecting       StreamStatus = 1
	StatusWaitingForStream StreamStatus = 2
	StatusConnected        StreamStatus = 3
	StatusDisconnected     StreamStatus = 4
	StatusConnectionFailed StreamStatus = 5
)

// String returns EMS's description of the status.
func (s StreamStatus) String() string {
	switch s {
	case StatusStreaming:
		return "Streaming"
	case StatusConnecting:
		return "Connecting"
	case StatusWaitingForStream:
		return "Waiting for stream"
	case StatusConnected:
		return "Connected"
	case StatusDisconnected:
		return "Disconnected"
	case StatusConnectionFailed:
		return "Connection failed"
	}
	return fmt.Sprintf("StreamStatus(%d)", int(s))
}

// ConfigStatus returns status.current.code of a listConfig entry; false when it has none.
func ConfigStatus(entry event.Payload) (StreamStatus, bool) {
	n, ok := entry.Uint64("status.current.code")
	if !ok || n > 1<<16 {
		return 0, false
	}
	return StreamStatus(n), true
}

// Timer is one entry of listTimers.
type Timer struct {
	// ID is the timer id (timerId), the one removeTimer takes.
	ID uint64
	// TriggerCount is how many times the timer fired.
	TriggerCount uint64
	// Value is the timer's value as EMS echoes it: seconds, or an absolute time.
	Value string
	// UserVars are the "_" variables given to setTimer.
	UserVars map[string]string
}

// ListTimers returns every timer.
func (c *Client) ListTimers(ctx context.Context) ([]Timer, error) {
	r, err := c.Call(ctx, "listTimers", nil)
	if err != nil {
		return nil, err
	}
	var items []event.Payload
	if err := decodeList(r, &items); err != nil {
		return nil, c.badData("listTimers", err)
	}
	out := make([]Timer, 0, len(items))
	for i, it := range items {
		id, ok := it.TimerID()
		if !ok {
			return nil, c.badData("listTimers", fmt.Errorf("timer %d has no timerId", i))
		}
		tc, _ := it.TriggerCount()
		out = append(out, Timer{ID: id, TriggerCount: tc, Value: it.TimerValue(), UserVars: it.UserVars("")})
	}
	return out, nil
}

// decodeList decodes a list answer into dst, a pointer to a slice. It accepts data as the list
// itself, as {"data": list} (the EMS 2.0 wrapping, reference §3.2), or null and {} for none.
func decodeList(r *Response, dst any) error {
	raw := bytes.TrimSpace(r.Data)
	if isNull(raw) {
		return nil
	}
	if raw[0] == '{' {
		var wrap map[string]json.RawMessage
		if err := json.Unmarshal(raw, &wrap); err != nil {
			return fmt.Errorf("data: %w", err)
		}
		inner, ok := wrap["data"]
		if !ok {
			if len(wrap) == 0 {
				return nil
			}
			return errors.New("data is an object without a data list")
		}
		raw = bytes.TrimSpace(inner)
		if isNull(raw) {
			return nil
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("data is not a list: %w", err)
	}
	return nil
}
