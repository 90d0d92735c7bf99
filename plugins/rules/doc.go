// Package rules is the Rules plugin: custom stream processing, as the EMS documentation
// describes it ("to automatically create HLS/HDS/MSS/DASH streams out of new inbound streams,
// call createHLSStream in response to each new inbound stream event; to close inbound streams
// when the associated outbound stream is lost, call shutdownStream when you receive an outbound
// stream closed event").
//
// # Configuration
//
// The parameters hold a list of rules. Each rule names the events it reacts to, optional
// filters, and one action: an EMS API call in EMS's own command-line form, its values templated
// from the event. The two workflows above:
//
//	"Rules": {"plugin_switch": "enabled", "parameters": {"rules": [
//	  {"name": "hls-for-new-streams",
//	   "events": ["inStreamCreated"],
//	   "action": "createHLSStream localStreamNames={{.Name}} targetFolder=/var/evo/hls groupName={{.Name}} playlistType=rolling chunkLength=2"},
//	  {"name": "close-input-when-push-lost",
//	   "events": ["outStreamClosed"],
//	   "only": ["pushSettings.localStreamName=*"],
//	   "action": "shutdownStream id={{.Payload.inStreamUniqueId}} permanently=0"}
//	]}}
//
// Keys of a rule:
//
//   - name: names the rule in logs, metrics and the _emsflowRule tag; default rule-<n>.
//   - events: event names or globs over the known names ("*StreamClosed", "hls*"), checked at
//     start. A comma-separated string is accepted too.
//   - only, except: Flussonic-style filters, as for the event sinks (see internal/filter):
//     "type=...", "ems=...", payload fields with dots ("pushSettings.uri=rtmp://*"),
//     "payload.type=INR" for the stream type tag.
//   - action: "<command> key=value ...". The commands a rule may run are pullStream,
//     pushStream, record, createHLSStream, createHDSStream, createDASHStream, createMSSStream,
//     shutdownStream, removeConfig, setTimer and removeTimer; their mandatory parameters are
//     checked at start (create*Stream actions need groupName). Values escape space, "=", ","
//     and "\" with a backslash; an unescaped comma separates list elements
//     ("localStreamNames={{.Name}},{{.Name}}_low").
//   - ems: the configured EMS the action runs on; empty means the EMS that sent the event.
//
// Top-level keys besides rules: reconcile (default true) runs the rules of inStreamCreated,
// outStreamCreated and streamCreated over the streams the EMS servers already run, at start
// and every reconcile_interval (default 0: only at start), so events lost while emsflow was
// down are made up for.
//
// # Templates
//
// Each list element of each value is its own text/template, so a value from an event is always
// exactly one element of one parameter: a stream named "a b=c,d" cannot add parameters or list
// elements, whatever it contains. The data is Data: .Type, .EMS, .Name, .UniqueID,
// .StreamType, .File and .Payload (the payload as a map: .Payload.pullSettings.uri). Functions:
// payload "a.b" (a dotted payload field), setting "key" (a key of the stream's settings block,
// such as setting "configId"), base, dir, ext, stem, lower, upper, trimPrefix, trimSuffix,
// replace and default. Templates are parsed and executed against a sample event of each of the
// rule's event types at start, so unknown fields, unknown functions and syntax errors stop the
// service then.
//
// When a value renders empty for an event (the field is null or absent, such as the
// inStreamUniqueId of an output whose input is unknown), or names a payload field the event does
// not have, the action is skipped, logged with the reason and counted; no broken command is sent.
//
// # Loops and duplicates
//
// Actions that create something (pulls, pushes, records, create*Stream, timers) carry the user
// variables _emsflow=<instance name> and _emsflowRule=<rule name>. EMS echoes them in the
// events of what was created; an event with _emsflow at its top level or in any settings block
// is never acted on, whichever emsflow instance created it.
//
// Actions are idempotent where EMS allows. Before a create*Stream, listConfig is read and the
// streams that already have a config of that kind in the group are left out (nothing is sent
// when none is left); before pushStream, pullStream and record, a config with the same stream,
// uri or path skips the action; before setTimer, a timer with the same value and variables
// does. Before shutdownStream, removeConfig and removeTimer, a stream, config or timer already
// gone skips the action. Check and action run under a lock per target EMS and thing checked
// (the group of a create*Stream, the uri of a pull, the stream and uri of a push, the stream and
// path of a record, the value of a timer), so concurrent deliveries of one event cannot both
// create, and a slow call about one stream does not hold up actions about the others.
//
// # Ordering
//
// The events of one stream on one EMS are handled one at a time, in the order they were
// journaled (the plugin is a plugins.Keyer): a rule on inStreamClosed or outStreamClosed never
// acts before the rule on that stream's inStreamCreated has finished. The stream is the inbound
// stream: an output's events count for the stream named by the localStreamName of its settings
// block (a push's own name is its target's). Events of different streams, and events about no
// stream (timers, files, processes, the server), run concurrently. EMS itself does not promise
// to send events in order (each goes over its own connection), so this orders what emsflow
// received, not what EMS did. Reconcile is not ordered with events; the checks before each
// action keep it from creating twice.
//
// Metrics: emsflow_rules_actions_total{rule,command}, emsflow_rules_skipped_total{rule,reason}
// with reasons loop_guard, filter, exists, gone, empty_value and template_error, and
// emsflow_rules_failures_total{rule}.
package rules
