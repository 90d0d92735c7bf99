// Package logfield names the structured log fields every package uses, so that one query finds
// one thing across the service (as Traefik's log field constants do).
package logfield

// Log field names. Messages are lowercase; values go in these fields.
const (
	Plugin     = "plugin"      // plugin instance name
	PluginKind = "plugin_kind" // plugin type name, such as StreamAutoRouter
	EventType  = "event_type"  // EMS event name
	EventID    = "event_id"    // EMS envelope id
	EventKey   = "event_key"   // emsflow's dedupe key of an event
	EMS        = "ems"         // configured EMS server name
	Stream     = "stream"      // local stream name
	StreamID   = "stream_id"   // EMS stream uniqueId
	ConfigID   = "config_id"   // EMS configId
	Command    = "command"     // EMS API command
	File       = "file"        // file path
	Bucket     = "bucket"      // S3 bucket
	Key        = "key"         // S3 object key
	UploadID   = "upload_id"   // S3 multipart upload id
	Attempt    = "attempt"     // delivery attempt, from 1
	Delay      = "delay"       // backoff before the next attempt
	Reason     = "reason"      // why something was skipped or refused
	Peer       = "peer"        // remote address of an HTTP client
	Path       = "path"        // HTTP path
	Status     = "status"      // HTTP status
	Duration   = "duration"    // how long something took
	Count      = "count"       // number of items
	Sink       = "sink"        // event sink name
	Rule       = "rule"        // rule name
	Security   = "security"    // set to true on security events (refused paths, bad auth)
	Target     = "target"      // where a push or pull goes or comes from (an RTMP URI or an EMS)
)
