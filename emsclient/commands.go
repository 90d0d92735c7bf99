package emsclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emsflow/emsflow/event"
)

// Field conventions of the parameter structs below, which use EMS's own parameter names
// (reference §3.3):
//   - A string or number field is sent when it is not empty or zero; zero means EMS's default.
//   - A *bool or *uint field is sent when it is not nil, for EMS defaults that differ from the
//     Go zero value (keepAlive=1 for example). Bool and Uint make the pointers.
//   - A bool field is sent as 1 when true and left out when false, EMS's default being 0,
//     unless its doc says "always sent": those are the parameters whose defaults the sources
//     disagree on (reference §7), or where an implicit default would be dangerous.
//   - UserVars are sent last, sorted by name, as "_name=value"; every name must start with "_".
//     EMS stores them with the config and echoes them in events and listings.

// Bool returns a pointer to v, for the optional *bool parameters.
func Bool(v bool) *bool { return &v }

// Uint returns a pointer to v, for the optional *uint parameters.
func Uint(v uint) *uint { return &v }

// StreamConfig is the stored config EMS returns for pullStream, pushStream and record.
type StreamConfig struct {
	// ConfigID is the config id, the one removeConfig takes (not a stream id).
	ConfigID uint64
	// LocalStreamName is the local stream name of the config.
	LocalStreamName string
	// Data is the whole config as EMS returned it.
	Data event.Payload
}

// GroupConfig is what EMS returns for createHLSStream, createHDSStream, createDASHStream and
// createMSSStream: one config per local stream of the group.
type GroupConfig struct {
	// GroupName is the group name EMS used.
	GroupName string
	// ConfigIDs are the config ids created, one per local stream.
	ConfigIDs []uint64
	// Data is the whole answer as EMS returned it.
	Data event.Payload
}

// PullStreamParams are the parameters of pullStream: pull an external stream in.
type PullStreamParams struct {
	// URI is the source (uri), required: rtmp://, rtsp://, rtp://, dmpegtsudp://, http://...
	URI string
	// LocalStreamName names the stream inside EMS; EMS makes one up when empty.
	LocalStreamName string
	// KeepAlive reconnects when the source is lost; nil leaves EMS's default (1).
	KeepAlive *bool
	// ForceTCP forces RTSP over TCP. Always sent: its default differs between EMS versions.
	ForceTCP bool
	// TCURL, PageURL and SwfURL are RTMP connect fields (tcUrl, pageUrl, swfUrl).
	TCURL, PageURL, SwfURL string
	// RangeStart and RangeEnd select a range of a VOD source; nil leaves EMS's -2 and -1.
	RangeStart, RangeEnd *int64
	// TTL and TOS set the IP TTL and TOS of the connection.
	TTL, TOS uint
	// RTCPDetectionInterval is in seconds (rtcpDetectionInterval).
	RTCPDetectionInterval uint
	// EmulateUserAgent is the user agent EMS presents (emulateUserAgent).
	EmulateUserAgent string
	// IsAudio, AudioCodecBytes, SPSBytes and PPSBytes describe a raw RTP source.
	IsAudio                             *bool
	AudioCodecBytes, SPSBytes, PPSBytes string
	// SSMIP is the source-specific multicast address (ssmIp).
	SSMIP string
	// HTTPProxy is "ip:port" or "self" (httpProxy).
	HTTPProxy string
	// HTTPStreamType is the type of an http:// source (EMS 2.0, httpStreamType).
	HTTPStreamType string
	// SendRenewStream sends an RTMP FCSubscribe renew (sendRenewStream).
	SendRenewStream bool
	// UserVars are "_" variables stored with the config.
	UserVars map[string]string
}

func (p PullStreamParams) params() (Params, error) {
	var errs []error
	if p.URI == "" {
		errs = append(errs, errors.New("uri is required"))
	}
	var ps Params
	addStr(&ps, "uri", p.URI)
	addStr(&ps, "localStreamName", p.LocalStreamName)
	addBoolPtr(&ps, "keepAlive", p.KeepAlive)
	ps.AddBool("forceTcp", p.ForceTCP)
	addStr(&ps, "tcUrl", p.TCURL)
	addStr(&ps, "pageUrl", p.PageURL)
	addStr(&ps, "swfUrl", p.SwfURL)
	if p.RangeStart != nil {
		ps.AddInt("rangeStart", *p.RangeStart)
	}
	if p.RangeEnd != nil {
		ps.AddInt("rangeEnd", *p.RangeEnd)
	}
	addUint(&ps, "ttl", p.TTL)
	addUint(&ps, "tos", p.TOS)
	addUint(&ps, "rtcpDetectionInterval", p.RTCPDetectionInterval)
	addStr(&ps, "emulateUserAgent", p.EmulateUserAgent)
	addBoolPtr(&ps, "isAudio", p.IsAudio)
	addStr(&ps, "audioCodecBytes", p.AudioCodecBytes)
	addStr(&ps, "spsBytes", p.SPSBytes)
	addStr(&ps, "ppsBytes", p.PPSBytes)
	addStr(&ps, "ssmIp", p.SSMIP)
	addStr(&ps, "httpProxy", p.HTTPProxy)
	addStr(&ps, "httpStreamType", p.HTTPStreamType)
	addTrue(&ps, "sendRenewStream", p.SendRenewStream)
	errs = append(errs, addUserVars(&ps, p.UserVars))
	return ps, errors.Join(errs...)
}

// PullStream pulls an external stream into EMS. SUCCESS only means the pull was queued: watch
// inStreamCreated or listConfig for the outcome.
func (c *Client) PullStream(ctx context.Context, p PullStreamParams) (*StreamConfig, error) {
	return c.streamCommand(ctx, "pullStream", p.params)
}

// PushStreamParams are the parameters of pushStream: push a local stream out.
type PushStreamParams struct {
	// URI is the destination (uri), required; for RTMP without the stream name.
	URI string
	// LocalStreamName is the local stream to push, required.
	LocalStreamName string
	// TargetStreamName is the name at the destination; EMS uses LocalStreamName when empty.
	TargetStreamName string
	// TargetStreamType is the RTMP publish type: live, record or append.
	TargetStreamType string
	// KeepAlive re-establishes the push when it drops; nil leaves EMS's default (1).
	KeepAlive *bool
	// TCURL, PageURL and SwfURL are RTMP connect fields (tcUrl, pageUrl, swfUrl).
	TCURL, PageURL, SwfURL string
	// TTL and TOS set the IP TTL and TOS of the connection.
	TTL, TOS uint
	// EmulateUserAgent is the user agent EMS presents (emulateUserAgent).
	EmulateUserAgent string
	// HTTPProxy is "ip:port" or "self" (httpProxy).
	HTTPProxy string
	// RTMPAbsoluteTimestamps sends absolute RTMP timestamps (rtmpAbsoluteTimestamps).
	RTMPAbsoluteTimestamps bool
	// SendChunkSizeRequest nil leaves EMS's default (1); set false for Akamai HD ingest.
	SendChunkSizeRequest *bool
	// UseSourcePts keeps the source's presentation timestamps (useSourcePts).
	UseSourcePts bool
	// UserVars are "_" variables stored with the config.
	UserVars map[string]string
}

func (p PushStreamParams) params() (Params, error) {
	var errs []error
	if p.URI == "" {
		errs = append(errs, errors.New("uri is required"))
	}
	if p.LocalStreamName == "" {
		errs = append(errs, errors.New("localStreamName is required"))
	}
	switch p.TargetStreamType {
	case "", "live", "record", "append":
	default:
		errs = append(errs, fmt.Errorf("targetStreamType %q is not live, record or append", p.TargetStreamType))
	}
	var ps Params
	addStr(&ps, "uri", p.URI)
	addStr(&ps, "localStreamName", p.LocalStreamName)
	addStr(&ps, "targetStreamName", p.TargetStreamName)
	addStr(&ps, "targetStreamType", p.TargetStreamType)
	addBoolPtr(&ps, "keepAlive", p.KeepAlive)
	addStr(&ps, "tcUrl", p.TCURL)
	addStr(&ps, "pageUrl", p.PageURL)
	addStr(&ps, "swfUrl", p.SwfURL)
	addUint(&ps, "ttl", p.TTL)
	addUint(&ps, "tos", p.TOS)
	addStr(&ps, "emulateUserAgent", p.EmulateUserAgent)
	addStr(&ps, "httpProxy", p.HTTPProxy)
	addTrue(&ps, "rtmpAbsoluteTimestamps", p.RTMPAbsoluteTimestamps)
	addBoolPtr(&ps, "sendChunkSizeRequest", p.SendChunkSizeRequest)
	addTrue(&ps, "useSourcePts", p.UseSourcePts)
	errs = append(errs, addUserVars(&ps, p.UserVars))
	return ps, errors.Join(errs...)
}

// PushStream pushes a local stream to another server.
func (c *Client) PushStream(ctx context.Context, p PushStreamParams) (*StreamConfig, error) {
	return c.streamCommand(ctx, "pushStream", p.params)
}

// RecordParams are the parameters of record: record a stream to files. A record may be set up
// before its stream exists.
type RecordParams struct {
	// LocalStreamName is the stream to record, required.
	LocalStreamName string
	// PathToFile is the folder and base file name (pathToFile), required; EMS appends the
	// extension from Type. With DateFolderStructure it is a folder.
	PathToFile string
	// Type is mp4, ts or flv; EMS's default is mp4.
	Type string
	// Overwrite replaces an existing file instead of writing name_0001.ext. Always sent.
	Overwrite bool
	// KeepAlive restarts recording whenever the stream comes back; nil leaves EMS's default (1).
	KeepAlive *bool
	// ChunkLength is the length of each file in seconds (chunkLength); 0 writes one file.
	ChunkLength uint
	// WaitForIDR starts the recording on a key frame. Always sent: its default is disputed.
	WaitForIDR bool
	// WinQtCompat writes MP4 that Windows QuickTime plays. Always sent: its default is disputed.
	WinQtCompat bool
	// DateFolderStructure writes <pathToFile>/<stream>/<YYYYMMDD>/<stream>-<date>-<time>.<type>.
	DateFolderStructure bool
	// UserVars are "_" variables stored with the config and echoed in recordChunk* events.
	UserVars map[string]string
}

func (p RecordParams) params() (Params, error) {
	var errs []error
	if p.LocalStreamName == "" {
		errs = append(errs, errors.New("localStreamName is required"))
	}
	if p.PathToFile == "" {
		errs = append(errs, errors.New("pathToFile is required"))
	}
	switch p.Type {
	case "", "mp4", "ts", "flv":
	default:
		errs = append(errs, fmt.Errorf("type %q is not mp4, ts or flv", p.Type))
	}
	var ps Params
	addStr(&ps, "localStreamName", p.LocalStreamName)
	addStr(&ps, "pathToFile", p.PathToFile)
	addStr(&ps, "type", p.Type)
	ps.AddBool("overwrite", p.Overwrite)
	addBoolPtr(&ps, "keepAlive", p.KeepAlive)
	addUint(&ps, "chunkLength", p.ChunkLength)
	ps.AddBool("winQtCompat", p.WinQtCompat)
	ps.AddBool("waitForIDR", p.WaitForIDR)
	addTrue(&ps, "dateFolderStructure", p.DateFolderStructure)
	errs = append(errs, addUserVars(&ps, p.UserVars))
	return ps, errors.Join(errs...)
}

// Record records a local stream to files.
func (c *Client) Record(ctx context.Context, p RecordParams) (*StreamConfig, error) {
	return c.streamCommand(ctx, "record", p.params)
}

// HLSParams are the parameters of createHLSStream. Output goes to
// <targetFolder>/<groupName>/<localStreamName>/.
type HLSParams struct {
	// LocalStreamNames are the streams of the group (localStreamNames), at least one.
	LocalStreamNames []string
	// TargetFolder is the root folder on the EMS host (targetFolder), required.
	TargetFolder string
	// GroupName is required: EMS versions disagree on the default, and a random one could not
	// be found again.
	GroupName string
	// Bandwidths are one per stream, for the master playlist; empty leaves them unset.
	Bandwidths []uint64
	// PlaylistType is appending (EMS's default) or rolling.
	PlaylistType string
	// PlaylistLength is the number of chunks of a rolling playlist; 0 leaves EMS's 10.
	PlaylistLength uint
	// PlaylistName names the child playlist; EMS's default is playlist.m3u8.
	PlaylistName string
	// ChunkLength is the target chunk length in seconds; 0 leaves EMS's 10.
	ChunkLength uint
	// MaxChunkLength caps the chunk length in seconds; 0 leaves it uncapped.
	MaxChunkLength uint
	// ChunkBaseName is the chunk file prefix; EMS's default is segment.
	ChunkBaseName string
	// ChunkOnIDR, KeepAlive, OverwriteDestination and CreateMasterPlaylist default to 1 in
	// EMS; nil leaves them.
	ChunkOnIDR, KeepAlive, OverwriteDestination, CreateMasterPlaylist *bool
	// StaleRetentionCount is how many old chunks stay on disk; nil leaves EMS's default
	// (the playlist length).
	StaleRetentionCount *uint
	// CleanupDestination empties the folder at start; CleanupOnClose when the stream closes.
	CleanupDestination, CleanupOnClose bool
	// HLSResume continues an existing playlist (hlsResume).
	HLSResume bool
	// DRMType is none (EMS's default), evo, SAMPLE-AES or verimatrix.
	DRMType string
	// AESKeyCount is the number of keys for encryption; 0 leaves EMS's 5.
	AESKeyCount uint
	// AudioOnly writes audio-only chunks.
	AudioOnly bool
	// UseByteRange writes one file with byte ranges of FileLength bytes.
	UseByteRange bool
	// FileLength is the file length for UseByteRange.
	FileLength uint
	// UseSystemTime stamps chunks with the system time.
	UseSystemTime bool
	// OffsetTime and StartOffset shift timestamps.
	OffsetTime, StartOffset int64
	// UserVars are "_" variables stored with the configs.
	UserVars map[string]string
}

func (p HLSParams) params() (Params, error) {
	g := group{p.LocalStreamNames, p.TargetFolder, p.GroupName, p.Bandwidths, p.PlaylistType, p.PlaylistLength}
	ps, errs := g.params()
	addStr(&ps, "playlistName", p.PlaylistName)
	addUint(&ps, "chunkLength", p.ChunkLength)
	addUint(&ps, "maxChunkLength", p.MaxChunkLength)
	addStr(&ps, "chunkBaseName", p.ChunkBaseName)
	addBoolPtr(&ps, "chunkOnIDR", p.ChunkOnIDR)
	addBoolPtr(&ps, "keepAlive", p.KeepAlive)
	addBoolPtr(&ps, "overwriteDestination", p.OverwriteDestination)
	addUintPtr(&ps, "staleRetentionCount", p.StaleRetentionCount)
	addBoolPtr(&ps, "createMasterPlaylist", p.CreateMasterPlaylist)
	addTrue(&ps, "cleanupDestination", p.CleanupDestination)
	addTrue(&ps, "cleanupOnClose", p.CleanupOnClose)
	addTrue(&ps, "hlsResume", p.HLSResume)
	addStr(&ps, "drmType", p.DRMType)
	addUint(&ps, "AESKeyCount", p.AESKeyCount)
	addTrue(&ps, "audioOnly", p.AudioOnly)
	addTrue(&ps, "useByteRange", p.UseByteRange)
	addUint(&ps, "fileLength", p.FileLength)
	addTrue(&ps, "useSystemTime", p.UseSystemTime)
	if p.OffsetTime != 0 {
		ps.AddInt("offsetTime", p.OffsetTime)
	}
	if p.StartOffset != 0 {
		ps.AddInt("startOffset", p.StartOffset)
	}
	errs = append(errs, addUserVars(&ps, p.UserVars))
	return ps, errors.Join(errs...)
}

// CreateHLSStream starts HLS output for a group of local streams.
func (c *Client) CreateHLSStream(ctx context.Context, p HLSParams) (*GroupConfig, error) {
	return c.groupCommand(ctx, "createHLSStream", p.params)
}

// HDSParams are the parameters of createHDSStream.
type HDSParams struct {
	// LocalStreamNames are the streams of the group (localStreamNames), at least one.
	LocalStreamNames []string
	// TargetFolder is the root folder on the EMS host (targetFolder), required.
	TargetFolder string
	// GroupName is required, so that the output can be found again.
	GroupName string
	// Bandwidths are one per stream; empty leaves them unset.
	Bandwidths []uint64
	// PlaylistType is appending (EMS's default) or rolling.
	PlaylistType string
	// PlaylistLength is the number of chunks of a rolling playlist; 0 leaves EMS's 10.
	PlaylistLength uint
	// ManifestName names the manifest; EMS uses the stream name when empty.
	ManifestName string
	// ChunkLength is the target chunk length in seconds; 0 leaves EMS's 10.
	ChunkLength uint
	// ChunkBaseName is the fragment prefix; EMS's default is f4v.
	ChunkBaseName string
	// ChunkOnIDR, KeepAlive, OverwriteDestination and CreateMasterPlaylist default to 1 in
	// EMS; nil leaves them.
	ChunkOnIDR, KeepAlive, OverwriteDestination, CreateMasterPlaylist *bool
	// StaleRetentionCount is how many old chunks stay on disk; nil leaves EMS's default.
	StaleRetentionCount *uint
	// CleanupDestination empties the folder at start.
	CleanupDestination bool
	// UserVars are "_" variables stored with the configs.
	UserVars map[string]string
}

func (p HDSParams) params() (Params, error) {
	g := group{p.LocalStreamNames, p.TargetFolder, p.GroupName, p.Bandwidths, p.PlaylistType, p.PlaylistLength}
	ps, errs := g.params()
	addStr(&ps, "manifestName", p.ManifestName)
	addUint(&ps, "chunkLength", p.ChunkLength)
	addStr(&ps, "chunkBaseName", p.ChunkBaseName)
	addBoolPtr(&ps, "chunkOnIDR", p.ChunkOnIDR)
	addBoolPtr(&ps, "keepAlive", p.KeepAlive)
	addBoolPtr(&ps, "overwriteDestination", p.OverwriteDestination)
	addUintPtr(&ps, "staleRetentionCount", p.StaleRetentionCount)
	addBoolPtr(&ps, "createMasterPlaylist", p.CreateMasterPlaylist)
	addTrue(&ps, "cleanupDestination", p.CleanupDestination)
	errs = append(errs, addUserVars(&ps, p.UserVars))
	return ps, errors.Join(errs...)
}

// CreateHDSStream starts HDS output for a group of local streams.
func (c *Client) CreateHDSStream(ctx context.Context, p HDSParams) (*GroupConfig, error) {
	return c.groupCommand(ctx, "createHDSStream", p.params)
}

// DASHParams are the parameters of createDASHStream.
type DASHParams struct {
	// LocalStreamNames are the streams of the group (localStreamNames), at least one.
	LocalStreamNames []string
	// TargetFolder is the root folder on the EMS host (targetFolder), required.
	TargetFolder string
	// GroupName is required, so that the output can be found again.
	GroupName string
	// Bandwidths are one per stream; empty leaves them unset.
	Bandwidths []uint64
	// PlaylistType is appending (EMS's default) or rolling.
	PlaylistType string
	// PlaylistLength is the number of chunks of a rolling manifest; 0 leaves EMS's 10.
	PlaylistLength uint
	// ManifestName names the manifest; EMS's default is manifest.mpd.
	ManifestName string
	// ChunkLength is the target chunk length in seconds; 0 leaves EMS's 10.
	ChunkLength uint
	// ChunkOnIDR, KeepAlive and OverwriteDestination default to 1 in EMS; nil leaves them.
	ChunkOnIDR, KeepAlive, OverwriteDestination *bool
	// StaleRetentionCount is how many old chunks stay on disk; nil leaves EMS's default.
	StaleRetentionCount *uint
	// CleanupDestination empties the folder at start.
	CleanupDestination bool
	// DynamicProfile is 1 for live (EMS's default), 0 for VOD; nil leaves it.
	DynamicProfile *bool
	// UserVars are "_" variables stored with the configs.
	UserVars map[string]string
}

func (p DASHParams) params() (Params, error) {
	g := group{p.LocalStreamNames, p.TargetFolder, p.GroupName, p.Bandwidths, p.PlaylistType, p.PlaylistLength}
	ps, errs := g.params()
	addStr(&ps, "manifestName", p.ManifestName)
	addUint(&ps, "chunkLength", p.ChunkLength)
	addBoolPtr(&ps, "chunkOnIDR", p.ChunkOnIDR)
	addBoolPtr(&ps, "keepAlive", p.KeepAlive)
	addBoolPtr(&ps, "overwriteDestination", p.OverwriteDestination)
	addUintPtr(&ps, "staleRetentionCount", p.StaleRetentionCount)
	addTrue(&ps, "cleanupDestination", p.CleanupDestination)
	addBoolPtr(&ps, "dynamicProfile", p.DynamicProfile)
	errs = append(errs, addUserVars(&ps, p.UserVars))
	return ps, errors.Join(errs...)
}

// CreateDASHStream starts DASH output for a group of local streams.
func (c *Client) CreateDASHStream(ctx context.Context, p DASHParams) (*GroupConfig, error) {
	return c.groupCommand(ctx, "createDASHStream", p.params)
}

// MSSParams are the parameters of createMSSStream.
type MSSParams struct {
	// LocalStreamNames are the streams of the group (localStreamNames), at least one.
	LocalStreamNames []string
	// TargetFolder is the root folder on the EMS host (targetFolder), required.
	TargetFolder string
	// GroupName is required, so that the output can be found again.
	GroupName string
	// Bandwidths are one per stream; empty leaves them unset.
	Bandwidths []uint64
	// PlaylistType is appending (EMS's default) or rolling.
	PlaylistType string
	// PlaylistLength is the number of chunks of a rolling manifest; 0 leaves EMS's 10.
	PlaylistLength uint
	// ManifestName names the manifest; EMS's default is manifest.ismc.
	ManifestName string
	// ChunkLength is the target chunk length in seconds; 0 leaves EMS's 10.
	ChunkLength uint
	// ChunkOnIDR cuts chunks on key frames. Always sent: its default is disputed.
	ChunkOnIDR bool
	// KeepAlive, OverwriteDestination and IsLive default to 1 in EMS; nil leaves them.
	KeepAlive, OverwriteDestination, IsLive *bool
	// StaleRetentionCount is how many old chunks stay on disk; nil leaves EMS's default.
	StaleRetentionCount *uint
	// CleanupDestination empties the folder at start.
	CleanupDestination bool
	// ISMType is ismc (EMS's default) or isml for a publishing point.
	ISMType string
	// PublishingPoint is the ingest URL for isml (publishingPoint).
	PublishingPoint string
	// IngestMode is single or loop (ingestMode).
	IngestMode string
	// AudioBitrates and VideoBitrates are one per stream; empty leaves them unset.
	AudioBitrates, VideoBitrates []uint64
	// UserVars are "_" variables stored with the configs.
	UserVars map[string]string
}

func (p MSSParams) params() (Params, error) {
	g := group{p.LocalStreamNames, p.TargetFolder, p.GroupName, p.Bandwidths, p.PlaylistType, p.PlaylistLength}
	ps, errs := g.params()
	addStr(&ps, "manifestName", p.ManifestName)
	addUint(&ps, "chunkLength", p.ChunkLength)
	ps.AddBool("chunkOnIDR", p.ChunkOnIDR)
	addBoolPtr(&ps, "keepAlive", p.KeepAlive)
	addBoolPtr(&ps, "overwriteDestination", p.OverwriteDestination)
	addUintPtr(&ps, "staleRetentionCount", p.StaleRetentionCount)
	addTrue(&ps, "cleanupDestination", p.CleanupDestination)
	switch p.ISMType {
	case "", "ismc", "isml":
	default:
		errs = append(errs, fmt.Errorf("ismType %q is not ismc or isml", p.ISMType))
	}
	addStr(&ps, "ismType", p.ISMType)
	addStr(&ps, "publishingPoint", p.PublishingPoint)
	addStr(&ps, "ingestMode", p.IngestMode)
	addBoolPtr(&ps, "isLive", p.IsLive)
	errs = append(errs, addUintList(&ps, "audioBitrates", p.AudioBitrates, len(p.LocalStreamNames)))
	errs = append(errs, addUintList(&ps, "videoBitrates", p.VideoBitrates, len(p.LocalStreamNames)))
	errs = append(errs, addUserVars(&ps, p.UserVars))
	return ps, errors.Join(errs...)
}

// CreateMSSStream starts Microsoft Smooth Streaming output for a group of local streams.
func (c *Client) CreateMSSStream(ctx context.Context, p MSSParams) (*GroupConfig, error) {
	return c.groupCommand(ctx, "createMSSStream", p.params)
}

// ShutdownParams are the parameters of shutdownStream. Exactly one of ID and LocalStreamName
// is set.
type ShutdownParams struct {
	// ID is the stream id (payload.uniqueId), not a config id.
	ID uint64
	// LocalStreamName names an inbound stream; its outbound streams close with it.
	LocalStreamName string
	// Permanently also removes the stream's pull, push or record config so it does not come
	// back. Always sent, because EMS's default is 1: false just cuts the stream.
	Permanently bool
}

func (p ShutdownParams) params() (Params, error) {
	var ps Params
	err := addRef(&ps, p.ID, p.LocalStreamName, "localStreamName")
	ps.AddBool("permanently", p.Permanently)
	return ps, err
}

// ShutdownStream closes a stream.
func (c *Client) ShutdownStream(ctx context.Context, p ShutdownParams) error {
	return c.simpleCommand(ctx, "shutdownStream", p.params)
}

// RemoveConfigParams are the parameters of removeConfig. Exactly one of ID and GroupName is
// set.
type RemoveConfigParams struct {
	// ID is the config id (configId), not a stream id.
	ID uint64
	// GroupName removes every config of an HLS, HDS or process group.
	GroupName string
	// RemoveHLSHDSFiles also deletes the group's files (removeHlsHdsFiles).
	RemoveHLSHDSFiles bool
}

func (p RemoveConfigParams) params() (Params, error) {
	var ps Params
	err := addRef(&ps, p.ID, p.GroupName, "groupName")
	addTrue(&ps, "removeHlsHdsFiles", p.RemoveHLSHDSFiles)
	return ps, err
}

// RemoveConfig stops a config's stream and deletes the config.
func (c *Client) RemoveConfig(ctx context.Context, p RemoveConfigParams) error {
	return c.simpleCommand(ctx, "removeConfig", p.params)
}

// TimerParams are the parameters of setTimer.
type TimerParams struct {
	// Value is a period in seconds (1 to 86399, the timer repeats), or an absolute time of day
	// "HH:MM:SS" or date and time "YYYY-MM-DDTHH:MM:SS" (the timer fires once).
	Value string
	// UserVars are "_" variables echoed in the timer's events and in listTimers.
	UserVars map[string]string
}

func (p TimerParams) params() (Params, error) {
	var errs []error
	if err := checkTimerValue(p.Value); err != nil {
		errs = append(errs, err)
	}
	var ps Params
	addStr(&ps, "value", p.Value)
	errs = append(errs, addUserVars(&ps, p.UserVars))
	return ps, errors.Join(errs...)
}

// TimerEvery returns the setTimer value of a periodic timer firing every d, rounded down to
// whole seconds.
func TimerEvery(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10)
}

func checkTimerValue(v string) error {
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		if n < 1 || n > 86399 {
			return fmt.Errorf("timer value %d is not between 1 and 86399 seconds", n)
		}
		return nil
	}
	if _, err := time.Parse(time.TimeOnly, v); err == nil {
		return nil
	}
	if _, err := time.Parse("2006-01-02T15:04:05", v); err == nil {
		return nil
	}
	return fmt.Errorf("timer value %q is not seconds, HH:MM:SS or YYYY-MM-DDTHH:MM:SS", v)
}

// SetTimer creates a timer and returns its id. EMS posts timerTriggered with the UserVars on
// every pulse.
func (c *Client) SetTimer(ctx context.Context, p TimerParams) (uint64, error) {
	ps, err := p.params()
	if err != nil {
		return 0, c.invalid("setTimer", err)
	}
	r, err := c.Call(ctx, "setTimer", ps)
	if err != nil {
		return 0, err
	}
	data, err := c.dataObject("setTimer", r)
	if err != nil {
		return 0, err
	}
	id, ok := data.Uint64("timerId")
	if !ok {
		return 0, c.badData("setTimer", errors.New("no timerId in the answer"))
	}
	return id, nil
}

// RemoveTimer removes a timer; EMS posts timerClosed.
func (c *Client) RemoveTimer(ctx context.Context, id uint64) error {
	return c.simpleCommand(ctx, "removeTimer", func() (Params, error) {
		if id == 0 {
			return nil, errors.New("timer id is required")
		}
		var ps Params
		ps.AddUint("id", id)
		return ps, nil
	})
}

// group holds the parameters every create*Stream command shares.
type group struct {
	names          []string
	targetFolder   string
	groupName      string
	bandwidths     []uint64
	playlistType   string
	playlistLength uint
}

func (g group) params() (Params, []error) {
	var errs []error
	if len(g.names) == 0 {
		errs = append(errs, errors.New("localStreamNames needs at least one name"))
	}
	if slices.Contains(g.names, "") {
		errs = append(errs, errors.New("localStreamNames has an empty name"))
	}
	if g.targetFolder == "" {
		errs = append(errs, errors.New("targetFolder is required"))
	}
	if g.groupName == "" {
		errs = append(errs, errors.New("groupName is required (EMS would make up a random one)"))
	}
	switch g.playlistType {
	case "", "appending", "rolling":
	default:
		errs = append(errs, fmt.Errorf("playlistType %q is not appending or rolling", g.playlistType))
	}
	var ps Params
	if len(g.names) > 0 {
		ps.AddList("localStreamNames", g.names...)
	}
	addStr(&ps, "targetFolder", g.targetFolder)
	addStr(&ps, "groupName", g.groupName)
	if err := addUintList(&ps, "bandwidths", g.bandwidths, len(g.names)); err != nil {
		errs = append(errs, err)
	}
	addStr(&ps, "playlistType", g.playlistType)
	addUint(&ps, "playlistLength", g.playlistLength)
	return ps, errs
}

func addStr(ps *Params, key, v string) {
	if v != "" {
		ps.Add(key, v)
	}
}

func addUint(ps *Params, key string, v uint) {
	if v != 0 {
		ps.AddUint(key, uint64(v))
	}
}

func addUintPtr(ps *Params, key string, v *uint) {
	if v != nil {
		ps.AddUint(key, uint64(*v))
	}
}

func addBoolPtr(ps *Params, key string, v *bool) {
	if v != nil {
		ps.AddBool(key, *v)
	}
}

func addTrue(ps *Params, key string, v bool) {
	if v {
		ps.AddBool(key, true)
	}
}

// addUintList appends a per-stream list, which must have one value per stream.
func addUintList(ps *Params, key string, vs []uint64, streams int) error {
	if len(vs) == 0 {
		return nil
	}
	if len(vs) != streams {
		return fmt.Errorf("%s has %d values for %d streams", key, len(vs), streams)
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.FormatUint(v, 10)
	}
	ps.AddList(key, s...)
	return nil
}

// addRef appends "id" or the named alternative, exactly one of which must be set.
func addRef(ps *Params, id uint64, name, nameKey string) error {
	switch {
	case id != 0 && name != "":
		return fmt.Errorf("set id or %s, not both", nameKey)
	case id != 0:
		ps.AddUint("id", id)
	case name != "":
		ps.Add(nameKey, name)
	default:
		return fmt.Errorf("id or %s is required", nameKey)
	}
	return nil
}

// addUserVars appends user variables sorted by name, so the same call builds the same URL.
func addUserVars(ps *Params, vars map[string]string) error {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var errs []error
	for _, k := range keys {
		if err := checkUserVar(k); err != nil {
			errs = append(errs, err)
			continue
		}
		ps.Add(k, vars[k])
	}
	return errors.Join(errs...)
}

func checkUserVar(k string) error {
	if !strings.HasPrefix(k, "_") || len(k) < 2 {
		return fmt.Errorf("user variable %q must start with \"_\" and have a name", k)
	}
	if strings.ContainsAny(k, " =,\\") || hasControl(k) {
		return fmt.Errorf("user variable %q has a space, '=', ',', '\\' or control character", k)
	}
	return nil
}

// streamCommand runs pullStream, pushStream or record and reads the stored config.
func (c *Client) streamCommand(ctx context.Context, command string, build func() (Params, error)) (*StreamConfig, error) {
	ps, err := build()
	if err != nil {
		return nil, c.invalid(command, err)
	}
	r, err := c.Call(ctx, command, ps)
	if err != nil {
		return nil, err
	}
	sc := &StreamConfig{Data: lenientObject(r)}
	data := sc.Data
	sc.ConfigID, _ = data.Uint64("configId")
	sc.LocalStreamName, _ = data.String("localStreamName")
	return sc, nil
}

// groupCommand runs a create*Stream command and reads the configs it made.
func (c *Client) groupCommand(ctx context.Context, command string, build func() (Params, error)) (*GroupConfig, error) {
	ps, err := build()
	if err != nil {
		return nil, c.invalid(command, err)
	}
	r, err := c.Call(ctx, command, ps)
	if err != nil {
		return nil, err
	}
	gc := &GroupConfig{Data: lenientObject(r)}
	data := gc.Data
	gc.GroupName, _ = data.String("groupName")
	if v, ok := data.Lookup("configIds"); ok {
		if ids, ok := v.([]any); ok {
			for _, x := range ids {
				if id, ok := asUint(x); ok {
					gc.ConfigIDs = append(gc.ConfigIDs, id)
				}
			}
		}
	}
	if id, ok := data.Uint64("configId"); ok && len(gc.ConfigIDs) == 0 {
		gc.ConfigIDs = []uint64{id}
	}
	return gc, nil
}

// lenientObject decodes the data of a command that changed something on EMS. The command ran,
// so a data shape we do not know must not become an error that a retry would repeat (a second
// pull, push or record): an unreadable data gives an empty Payload and zero fields.
func lenientObject(r *Response) event.Payload {
	p := event.Payload{}
	if err := r.DecodeData(&p); err != nil {
		return event.Payload{}
	}
	return p
}

// asUint reads a decoded JSON number (or numeric string) as a uint64 without loss.
func asUint(v any) (uint64, bool) { return event.Payload{"v": v}.Uint64("v") }

// simpleCommand runs a command whose answer carries nothing the caller needs.
func (c *Client) simpleCommand(ctx context.Context, command string, build func() (Params, error)) error {
	ps, err := build()
	if err != nil {
		return c.invalid(command, err)
	}
	_, err = c.Call(ctx, command, ps)
	return err
}

// dataObject decodes an answer's data as an object; null gives an empty Payload.
func (c *Client) dataObject(command string, r *Response) (event.Payload, error) {
	p := event.Payload{}
	if isNull(r.Data) {
		return p, nil
	}
	if err := r.DecodeData(&p); err != nil {
		return nil, c.badData(command, fmt.Errorf("data is not an object: %w", err))
	}
	return p, nil
}

// badData is a SUCCESS answer whose data has an unexpected shape. It is retryable: a proxy or a
// truncated answer is likelier than an EMS that changed its format.
func (c *Client) badData(command string, err error) *Error {
	e := c.newError(command)
	e.Status = "SUCCESS"
	e.err = fmt.Errorf("unexpected answer: %w", err)
	return e
}
