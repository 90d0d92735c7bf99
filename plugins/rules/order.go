package rules

import "github.com/emsflow/emsflow/event"

// streamEvents are the event types that are about one stream; the others (timers, files,
// processes, the server...) carry no stream name that means the same thing.
var streamEvents = map[string]bool{
	event.InStreamCreated: true, event.OutStreamCreated: true, event.StreamCreated: true,
	event.InStreamClosed: true, event.OutStreamClosed: true, event.StreamClosed: true,
	event.InStreamCodecsUpdated: true, event.OutStreamCodecsUpdated: true, event.StreamCodecsUpdated: true,
	event.AudioFeedStopped: true, event.VideoFeedStopped: true,
}

// OrderKey makes the dispatcher hand over the events of one stream on one EMS one at a time,
// in journal order, so that a rule on inStreamClosed or outStreamClosed (shutdownStream,
// removeConfig) never acts before the rule on the inStreamCreated that came before it
// (createHLSStream, pushStream) has finished. Events of other streams, and events about no
// stream, still run concurrently. See streamKey for which name identifies the stream.
func (e *Engine) OrderKey(ev *event.Event) string { return streamKey(ev) }

// streamKey names the stream an event is about, on the EMS that sent it: "<ems>\x00<local
// stream name>", or "" for events about no stream.
//
// The name is that of the inbound stream, the one rules are written about: for inbound streams
// payload.name; for outputs the localStreamName of their settings block, because an output's own
// name is not always its input's (a push is named after its target stream), while HLS, HDS,
// DASH, MSS and record outputs and players carry the input's name as their own too. A name
// rather than a uniqueId, because outputs often carry no inStreamUniqueId (it is null in EMS's
// own events) and because a stream that reconnects under the same name gets a new id, yet its
// closed and created events must still be handled in that order. audioFeedStopped and
// videoFeedStopped carry the name as a top-level localStreamName.
//
// Every other event (timers, file and segment events, processes, the server, sessions) gets ""
// so it runs concurrently with everything: file events carry no stream name, and the names in
// the others (an application's name, a timer's variables) are not stream names. A stream event
// with no name at all (the documented streamCreated of a nameless neutral stream) gets "" too.
func streamKey(ev *event.Event) string {
	if !streamEvents[ev.Type] {
		return ""
	}
	name := ""
	for _, b := range settingsBlocks { // each carries the localStreamName of its input
		if n, ok := ev.Payload.String(b + ".localStreamName"); ok && n != "" {
			name = n
			break
		}
	}
	if name == "" {
		name = ev.Payload.Name()
	}
	if name == "" {
		name, _ = ev.Payload.String("localStreamName")
	}
	if name == "" {
		return ""
	}
	return ev.EMS + "\x00" + name
}
