package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RedrivePrefix is where re-driven events go: "ems.events._redrive.<plugin>.<type>". The subject
// has one token more than an event subject, so no type filter of another plugin matches it and
// only the plugin that gave up on the event gets it again.
const RedrivePrefix = SubjectPrefix + "._redrive"

// RedriveFilter is the subject filter a plugin's consumer adds to receive its re-driven events.
func RedriveFilter(plugin string) string { return RedrivePrefix + "." + Token(plugin) + ".>" }

// DeadLetter is one event a plugin gave up on.
type DeadLetter struct {
	Seq            uint64          `json:"seq"`
	Plugin         string          `json:"plugin"`
	Error          string          `json:"error"`
	Attempts       int             `json:"attempts"`
	Subject        string          `json:"subject"`
	EMS            string          `json:"ems"`
	FirstDelivered time.Time       `json:"first_delivered"`
	DeadAt         time.Time       `json:"dead_at"`
	Event          json.RawMessage `json:"event"`
}

func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	d := DeadLetter{
		Seq:     m.Sequence,
		Plugin:  m.Header.Get(HeaderPlugin),
		Error:   m.Header.Get(HeaderError),
		Subject: m.Header.Get(HeaderSubject),
		EMS:     m.Header.Get(HeaderEMS),
		DeadAt:  m.Time,
		Event:   json.RawMessage(m.Data),
	}
	d.Attempts, _ = strconv.Atoi(m.Header.Get(HeaderAttempts))
	d.FirstDelivered, _ = time.Parse(time.RFC3339Nano, m.Header.Get(HeaderFirstAt))
	if !json.Valid(m.Data) {
		d.Event, _ = json.Marshal(string(m.Data))
	}
	return d
}

// DeadLetters returns up to limit dead letters, oldest first, of one plugin or (plugin "") all.
func (j *Journal) DeadLetters(ctx context.Context, plugin string, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	err := j.eachDead(ctx, func(m *jetstream.RawStreamMsg) bool {
		if plugin != "" && m.Header.Get(HeaderPlugin) != plugin {
			return true
		}
		out = append(out, deadLetterOf(m))
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

func (j *Journal) eachDead(ctx context.Context, fn func(*jetstream.RawStreamMsg) bool) error {
	info, err := j.dead.Info(ctx)
	if err != nil {
		return fmt.Errorf("dead-letter stream: %w", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := j.dead.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read dead letter %d: %w", seq, err)
		}
		if !fn(m) {
			return nil
		}
	}
	return nil
}

// Redrive sends dead letters back to the plugin that gave up on them, and removes them from the
// dead-letter stream once they are journaled again. seq 0 re-drives every dead letter of the
// plugin (plugin "" with seq 0: of every plugin). It returns how many were re-driven.
func (j *Journal) Redrive(ctx context.Context, plugin string, seq uint64) (int, error) {
	var picked []*jetstream.RawStreamMsg
	if seq != 0 {
		m, err := j.dead.GetMsg(ctx, seq)
		if err != nil {
			return 0, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		if plugin != "" && m.Header.Get(HeaderPlugin) != plugin {
			return 0, fmt.Errorf("dead letter %d belongs to plugin %s, not %s", seq, m.Header.Get(HeaderPlugin), plugin)
		}
		picked = append(picked, m)
	} else if err := j.eachDead(ctx, func(m *jetstream.RawStreamMsg) bool {
		if plugin == "" || m.Header.Get(HeaderPlugin) == plugin {
			picked = append(picked, m)
		}
		return true
	}); err != nil {
		return 0, err
	}
	n := 0
	for _, m := range picked {
		p := m.Header.Get(HeaderPlugin)
		orig := m.Header.Get(HeaderSubject)
		typ := orig[strings.LastIndexByte(orig, '.')+1:]
		out := nats.NewMsg(RedrivePrefix + "." + Token(p) + "." + typ)
		out.Data = m.Data
		out.Header.Set(HeaderEMS, m.Header.Get(HeaderEMS))
		out.Header.Set(HeaderReceived, m.Header.Get(HeaderReceived))
		id := "redrive:" + p + ":" + strconv.FormatUint(m.Sequence, 10)
		if _, err := j.js.PublishMsg(ctx, out, jetstream.WithMsgID(id)); err != nil {
			return n, fmt.Errorf("re-drive dead letter %d: %w", m.Sequence, err)
		}
		if err := j.dead.DeleteMsg(ctx, m.Sequence); err != nil {
			return n, fmt.Errorf("remove re-driven dead letter %d: %w", m.Sequence, err)
		}
		n++
	}
	return n, nil
}
