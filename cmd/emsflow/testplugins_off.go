//go:build !emsflowtest

package main

import "github.com/emsflow/emsflow/plugins"

// registerTestPlugins adds nothing to a production build.
func registerTestPlugins(*plugins.Registry) {}
