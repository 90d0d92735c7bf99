package plugins

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/event"
)

type countPlugin struct {
	name  string
	count int
}

func (p *countPlugin) Name() string                               { return p.name }
func (p *countPlugin) Events() []string                           { return nil }
func (p *countPlugin) Handle(context.Context, *event.Event) error { return nil }

func newCountPlugin(name string, cfg struct {
	Count int `json:"count"`
}, _ Deps) (*countPlugin, error) {
	if cfg.Count < 0 {
		return nil, errors.New("count must not be negative")
	}
	return &countPlugin{name: name, count: cfg.Count}, nil
}

func TestFactoryOf(t *testing.T) {
	f := FactoryOf(newCountPlugin)

	p, err := f("c", []byte(`{"count":"3"}`), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := p.(*countPlugin); !ok || c.count != 3 || c.Name() != "c" {
		t.Errorf("got %#v, want a countPlugin named c with count 3", p)
	}

	p, err = f("c", []byte(`{"count":-1}`), Deps{})
	if err == nil || p != nil {
		t.Errorf("constructor error: got (%#v, %v), want a nil Plugin and the error", p, err)
	}

	p, err = f("c", []byte(`{"count":"many","colour":1}`), Deps{})
	if err == nil || p != nil || !strings.Contains(err.Error(), `parameter "count"`) || !strings.Contains(err.Error(), `unknown parameter "colour"`) {
		t.Errorf("bad parameters: got (%#v, %v), want both problems and no plugin", p, err)
	}
}
