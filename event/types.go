package event

// EMS event names (reference §2). An unknown name is still a valid event: it is accepted,
// journaled and routed to nobody.
const (
	InStreamCreated        = "inStreamCreated"
	OutStreamCreated       = "outStreamCreated"
	StreamCreated          = "streamCreated"
	InStreamClosed         = "inStreamClosed"
	OutStreamClosed        = "outStreamClosed"
	StreamClosed           = "streamClosed"
	InStreamCodecsUpdated  = "inStreamCodecsUpdated"
	OutStreamCodecsUpdated = "outStreamCodecsUpdated"
	StreamCodecsUpdated    = "streamCodecsUpdated"
	AudioFeedStopped       = "audioFeedStopped"
	VideoFeedStopped       = "videoFeedStopped"

	HLSChunkCreated          = "hlsChunkCreated"
	HLSChunkClosed           = "hlsChunkClosed"
	HLSChunkError            = "hlsChunkError"
	HLSChunkDeleted          = "hlsChunkDeleted"
	HLSChildPlaylistUpdated  = "hlsChildPlaylistUpdated"
	HLSMasterPlaylistUpdated = "hlsMasterPlaylistUpdated"

	HDSChunkCreated          = "hdsChunkCreated"
	HDSChunkClosed           = "hdsChunkClosed"
	HDSChunkError            = "hdsChunkError"
	HDSChunkDeleted          = "hdsChunkDeleted"
	HDSChildPlaylistUpdated  = "hdsChildPlaylistUpdated"
	HDSMasterPlaylistUpdated = "hdsMasterPlaylistUpdated"

	MSSChunkCreated    = "mssChunkCreated"
	MSSChunkClosed     = "mssChunkClosed"
	MSSChunkError      = "mssChunkError"
	MSSPlaylistUpdated = "mssPlaylistUpdated"

	DASHChunkCreated    = "dashChunkCreated"
	DASHChunkClosed     = "dashChunkClosed"
	DASHChunkError      = "dashChunkError"
	DASHChunkDeleted    = "dashChunkDeleted"
	DASHPlaylistUpdated = "dashPlaylistUpdated"

	RecordChunkCreated = "recordChunkCreated"
	RecordChunkClosed  = "recordChunkClosed"
	RecordChunkError   = "recordChunkError"

	StreamingSessionStarted = "streamingSessionStarted"
	StreamingSessionEnded   = "streamingSessionEnded"
	MediaFileDownloaded     = "mediaFileDownloaded"

	CLIRequest  = "cliRequest"
	CLIResponse = "cliResponse"

	ProcessStarted = "processStarted"
	ProcessStopped = "processStopped"

	TimerCreated   = "timerCreated"
	TimerTriggered = "timerTriggered"
	TimerClosed    = "timerClosed"

	ProtocolRegisteredToApp     = "protocolRegisteredToApp"
	ProtocolUnregisteredFromApp = "protocolUnregisteredFromApp"
	CarrierCreated              = "carrierCreated"
	CarrierClosed               = "carrierClosed"
	ApplicationStart            = "applicationStart"
	ApplicationStop             = "applicationStop"
	ServerStarted               = "serverStarted"
	ServerStopping              = "serverStopping"

	PlaylistItemStart      = "playlistItemStart"
	FirstPlaylistItemStart = "firstPlaylistItemStart"
	LastPlaylistItemStart  = "lastPlaylistItemStart"

	WebRTCStarted               = "webRTCStarted"
	WebRTCStopped               = "webRTCStopped"
	WebRTCPeerConnectionCreated = "webRTCPeerConnectionCreated"
	WebRTCPeerConnectionClosed  = "webRTCPeerConnectionClosed"
	WebRTCPeerStreamStarted     = "webRTCPeerStreamStarted"
	WebRTCPeerStreamClosed      = "webRTCPeerStreamClosed"
	WebRtcServiceStarted        = "webRtcServiceStarted"
	WebRtcServiceStopped        = "webRtcServiceStopped"
	WebRtcPeerConnected         = "webRtcPeerConnected"
	WebRtcPeerDisconnected      = "webRtcPeerDisconnected"
	WebRtcPeerError             = "webRtcPeerError"
	WSStreamStarted             = "WSStreamStarted"
	WSStreamClosed              = "WSStreamClosed"
)

// Known lists every event name EMS 1.7 and 2.0 document, in the order of reference §2. The
// dispatcher rejects a plugin that subscribes to a name not in this list.
var Known = []string{
	InStreamCreated, OutStreamCreated, StreamCreated, InStreamClosed, OutStreamClosed, StreamClosed,
	InStreamCodecsUpdated, OutStreamCodecsUpdated, StreamCodecsUpdated, AudioFeedStopped, VideoFeedStopped,
	HLSChunkCreated, HLSChunkClosed, HLSChunkError, HLSChunkDeleted, HLSChildPlaylistUpdated, HLSMasterPlaylistUpdated,
	HDSChunkCreated, HDSChunkClosed, HDSChunkError, HDSChunkDeleted, HDSChildPlaylistUpdated, HDSMasterPlaylistUpdated,
	MSSChunkCreated, MSSChunkClosed, MSSChunkError, MSSPlaylistUpdated,
	DASHChunkCreated, DASHChunkClosed, DASHChunkError, DASHChunkDeleted, DASHPlaylistUpdated,
	RecordChunkCreated, RecordChunkClosed, RecordChunkError,
	StreamingSessionStarted, StreamingSessionEnded, MediaFileDownloaded,
	CLIRequest, CLIResponse, ProcessStarted, ProcessStopped,
	TimerCreated, TimerTriggered, TimerClosed,
	ProtocolRegisteredToApp, ProtocolUnregisteredFromApp, CarrierCreated, CarrierClosed,
	ApplicationStart, ApplicationStop, ServerStarted, ServerStopping,
	PlaylistItemStart, FirstPlaylistItemStart, LastPlaylistItemStart,
	WebRTCStarted, WebRTCStopped, WebRTCPeerConnectionCreated, WebRTCPeerConnectionClosed,
	WebRTCPeerStreamStarted, WebRTCPeerStreamClosed,
	WebRtcServiceStarted, WebRtcServiceStopped, WebRtcPeerConnected, WebRtcPeerDisconnected, WebRtcPeerError,
	WSStreamStarted, WSStreamClosed,
}

var known = func() map[string]bool {
	m := make(map[string]bool, len(Known))
	for _, n := range Known {
		m[n] = true
	}
	return m
}()

// IsKnown reports whether name is a documented EMS event name.
func IsKnown(name string) bool { return known[name] }
