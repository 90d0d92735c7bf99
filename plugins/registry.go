package plugins

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Factory builds a plugin instance from its name, its raw parameters (a JSON object) and its
// dependencies. It validates the parameters and does no I/O.
type Factory func(name string, params json.RawMessage, deps Deps) (Plugin, error)

// FactoryOf is the Factory of a plugin whose parameters decode (DecodeParams) into a C and whose
// constructor is newPlugin. A constructor's error comes back with a nil Plugin, not a typed nil.
func FactoryOf[C any, P Plugin](newPlugin func(name string, cfg C, deps Deps) (P, error)) Factory {
	return func(name string, params json.RawMessage, deps Deps) (Plugin, error) {
		var cfg C
		if err := DecodeParams(params, &cfg); err != nil {
			return nil, err
		}
		p, err := newPlugin(name, cfg, deps)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// Registry maps plugin type names (StreamAutoRouter, AmazonHLSUpload, ...) to factories. main
// fills it explicitly; there is no init() registration.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds a factory. Registering a type twice is a programmer error and panics.
func (r *Registry) Register(kind string, f Factory) {
	if _, dup := r.factories[kind]; dup {
		panic(fmt.Sprintf("plugins: %s registered twice", kind))
	}
	r.factories[kind] = f
}

// Kinds returns the registered type names, sorted.
func (r *Registry) Kinds() []string {
	ks := make([]string, 0, len(r.factories))
	for k := range r.factories {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Has reports whether kind is registered.
func (r *Registry) Has(kind string) bool {
	_, ok := r.factories[kind]
	return ok
}

// Build constructs one instance. An unknown kind is an ordinary error listing the known ones.
func (r *Registry) Build(kind, name string, params json.RawMessage, deps Deps) (Plugin, error) {
	f, ok := r.factories[kind]
	if !ok {
		return nil, fmt.Errorf("unknown plugin %q (known: %s)", kind, strings.Join(r.Kinds(), ", "))
	}
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	p, err := f(name, params, deps)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", name, err)
	}
	return p, nil
}
