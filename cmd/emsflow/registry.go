package main

import (
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/autorouter"
	"github.com/emsflow/emsflow/plugins/eventlog"
	"github.com/emsflow/emsflow/plugins/loadbalancer"
	"github.com/emsflow/emsflow/plugins/recorder"
	"github.com/emsflow/emsflow/plugins/rules"
	"github.com/emsflow/emsflow/plugins/s3upload"
	"github.com/emsflow/emsflow/plugins/sinks"
	"github.com/emsflow/emsflow/plugins/transcoderesetter"
)

// registry lists every plugin type this binary knows. Test builds add more (registry_test.go's
// build tag).
func registry() *plugins.Registry {
	r := plugins.NewRegistry()
	r.Register(eventlog.Kind, eventlog.Factory)
	r.Register(autorouter.Kind, autorouter.Factory)
	r.Register(recorder.Kind, recorder.Factory)
	r.Register(loadbalancer.Kind, loadbalancer.Factory)
	r.Register(transcoderesetter.Kind, transcoderesetter.Factory)
	r.Register(string(s3upload.KindHLS), s3upload.HLSFactory)
	r.Register(string(s3upload.KindHDS), s3upload.HDSFactory)
	r.Register(string(s3upload.KindDASH), s3upload.DASHFactory)
	r.Register(string(s3upload.KindRecord), s3upload.RecordFactory)
	r.Register(sinks.Kind, sinks.Factory)
	r.Register(rules.Kind, rules.Factory)
	registerTestPlugins(r)
	return r
}
