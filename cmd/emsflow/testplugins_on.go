//go:build emsflowtest

package main

import (
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/plugintest"
)

// registerTestPlugins adds the crash-test Ledger to binaries built with -tags emsflowtest.
func registerTestPlugins(r *plugins.Registry) {
	r.Register("TestLedger", plugintest.LedgerFactory)
}
