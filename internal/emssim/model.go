package emssim

import (
	"strings"
	"time"
)

// Operation types (connectionType / operationType), reference §1.6.1.
const (
	opStandard = 0
	opPull     = 1
	opPush     = 2
	opHLS      = 3
	opHDS      = 4
	opDASH     = 6
	opRecord   = 7
	opProcess  = 8
)

// listConfig status codes, reference §3.2.
const (
	statusStreaming        = 0
	statusConnecting       = 1
	statusWaitingForStream = 2
	statusConnected        = 3
	statusDisconnected     = 4
	statusConnectionFailed = 5
)

var statusText = map[int]string{
	statusStreaming:        "Streaming",
	statusConnecting:       "Connecting",
	statusWaitingForStream: "Waiting for stream",
	statusConnected:        "Connected",
	statusDisconnected:     "Disconnected",
	statusConnectionFailed: "Connection failed",
}

// stream is a live stream: inbound (INR) or outbound (ONR, OF*).
type stream struct {
	id       uint64
	name     string
	typ      string
	connType int
	created  time.Time
	in       *stream
	outs     []*stream
	cfg      *config
	nearIP   string
	nearPort int
	farIP    string
	farPort  int
	conn     rtmpConnect // INR and ONR: the RTMP connect fields of the stream's connection
	agent    string      // userAgent of players and pushes, serverAgent of pulls
	job      *job
	link     *peerLink // the stream's counterpart on another simulator
	closed   bool
}

// rtmpConnect holds the fields of an RTMP connect that EMS reports on the streams of that
// connection (reference §1.6.1: tcUrl, swfUrl, pageUrl). For a pull or a push they are what the
// connecting EMS sent, so the far EMS reports the same values on its side of the stream.
type rtmpConnect struct {
	tcURL, swfURL, pageURL string
}

// connectOf returns what EMS sends in the connect of a pull or push (RMS
// BaseRTMPAppProtocolHandler::ConnectForPullPush): the config's tcUrl, swfUrl and pageUrl, with
// tcUrl and swfUrl defaulting to the URI it connects to (settings[uriKey]) and pageUrl to "".
// Reference §1.6.1's real pulled stream shows these defaults.
func connectOf(settings obj, uriKey string) rtmpConnect {
	uri, _ := settings[uriKey].(string)
	c := rtmpConnect{}
	c.tcURL, _ = settings["tcUrl"].(string)
	c.swfURL, _ = settings["swfUrl"].(string)
	c.pageURL, _ = settings["pageUrl"].(string)
	if c.tcURL == "" {
		c.tcURL = uri
	}
	if c.swfURL == "" {
		c.swfURL = uri
	}
	return c
}

// peerLink is the counterpart of a pushed or pulled stream on another simulator.
type peerLink struct {
	base string // admin base URL of the peer
	id   uint64 // the counterpart's uniqueId there
}

func (st *stream) inbound() bool { return strings.HasPrefix(st.typ, "I") }

// config is a stored configuration: what pullStream, pushStream, record and create*Stream
// leave behind, with its own id (configId) distinct from stream ids.
type config struct {
	id        uint64
	kind      string // pull, push, hls, hds, dash, record
	settings  obj
	name      string // the local stream name it reads (outputs, push) or creates (pull)
	keepAlive bool
	stream    *stream
	cur, prev cfgStatus
	attempted bool
	peer      string // pull/push: host:port of the peer
	peerName  string // pull: the stream name at the source; push: the target stream name
	group     string // hls/hds/dash group name
	started   time.Time
}

type cfgStatus struct {
	code     int
	at       time.Time
	streamID uint64
}

func (c *config) setStatus(code int, at time.Time, streamID uint64) {
	if c.cur.code == code && c.cur.streamID == streamID && !c.cur.at.IsZero() {
		return
	}
	c.prev = c.cur
	c.cur = cfgStatus{code: code, at: at, streamID: streamID}
}

func statusObj(st cfgStatus) obj {
	return obj{
		"code":           st.code,
		"description":    statusText[st.code],
		"timestamp":      uint64(st.at.Unix()),
		"uniqueStreamId": st.streamID,
	}
}

// settingsKey names the settings block of a config kind in stream payloads.
func settingsKey(kind string) string {
	switch kind {
	case "pull":
		return "pullSettings"
	case "push":
		return "pushSettings"
	case "hls":
		return "hlsSettings"
	case "hds":
		return "hdsSettings"
	case "dash":
		return "dashSettings"
	case "record":
		return "recordSettings"
	}
	return ""
}

// newStreamLocked registers a stream with the next uniqueId.
func (s *Sim) newStreamLocked(name, typ string, connType int, in *stream, cfg *config) *stream {
	st := &stream{id: s.nextStreamID, name: name, typ: typ, connType: connType, created: s.now(), in: in, cfg: cfg}
	s.nextStreamID++
	s.streams[st.id] = st
	if in != nil {
		in.outs = append(in.outs, st)
	}
	if cfg != nil {
		cfg.stream = st
	}
	return st
}

// inboundByName returns the live inbound stream with that name.
func (s *Sim) inboundByName(name string) *stream {
	for _, id := range s.sortedStreamIDs() {
		if st := s.streams[id]; st.inbound() && st.name == name {
			return st
		}
	}
	return nil
}

// nameTaken reports whether an inbound stream or a pull config already claims name.
func (s *Sim) nameTaken(name string) bool {
	if s.inboundByName(name) != nil {
		return true
	}
	for _, c := range s.configs {
		if c.kind == "pull" && c.name == name {
			return true
		}
	}
	return false
}

// openInboundLocked creates an inbound stream and logs inStreamCreated then
// inStreamCodecsUpdated (EMS learns the codecs after the first frames, reference §1.6.1), then
// starts the outputs waiting for it. nearPort is the simulator's side of the connection: its
// RTMP listener for a publish, a local ephemeral port for a pull.
func (s *Sim) openInboundLocked(name string, connType int, cfg *config, nearPort int, farIP string, farPort int, conn rtmpConnect, agent string) *stream {
	st := s.newStreamLocked(name, "INR", connType, nil, cfg)
	st.nearIP, st.nearPort = s.cfg.IP, nearPort
	st.farIP, st.farPort, st.conn, st.agent = farIP, farPort, conn, agent
	if cfg != nil {
		cfg.setStatus(statusStreaming, s.now(), st.id)
	}
	s.em.emit("inStreamCreated", s.statsLocked(st, false))
	s.em.emit("inStreamCodecsUpdated", s.statsLocked(st, true))
	s.activateOutputsLocked(name)
	s.kickConnector()
	return st
}

func (s *Sim) rtmpPort() int {
	_, port := splitHostPort(s.rtmpLn.Addr().String())
	return port
}

// ephemeralPortLocked returns the local port of the next outbound connection (a pull or a
// push), from Linux's default ephemeral range and never one the simulator listens on. The far
// EMS sees the connection coming from it, not from the simulator's RTMP address.
func (s *Sim) ephemeralPortLocked() int {
	const first, count = 32768, 60999 - 32768 + 1
	_, api := splitHostPort(s.apiLn.Addr().String())
	for {
		p := first + int(s.nextEphemeral%count)
		s.nextEphemeral++
		if p != s.rtmpPort() && p != api {
			return p
		}
	}
}

// activateOutputsLocked starts every HLS/HDS/DASH/record config waiting for stream name.
func (s *Sim) activateOutputsLocked(name string) {
	if s.closed {
		return
	}
	in := s.inboundByName(name)
	if in == nil {
		return
	}
	for _, id := range s.sortedConfigIDs() {
		c := s.configs[id]
		if c.stream != nil || c.name != name {
			continue
		}
		switch c.kind {
		case "hls", "hds", "dash", "record":
			s.startOutputLocked(c, in)
		}
	}
}

// closeStreamLocked closes a stream as EMS does: an inbound stream takes its outputs with it.
// With permanently the stream's config is removed; otherwise a keepAlive config comes back
// (outputs restart at once when their input is still there, pulls and pushes reconnect).
func (s *Sim) closeStreamLocked(st *stream, permanently bool) {
	if st.closed {
		return
	}
	st.closed = true
	delete(s.streams, st.id)
	if st.in != nil {
		for i, o := range st.in.outs {
			if o == st {
				st.in.outs = append(st.in.outs[:i:i], st.in.outs[i+1:]...)
				break
			}
		}
	}
	if st.inbound() {
		s.em.emit("inStreamClosed", s.statsLocked(st, true))
	}
	if st.link != nil {
		link := st.link
		s.goOwned(func() { _, _ = s.peerCall(link.base, "close", map[string]string{"id": u64(link.id)}) })
	}
	switch {
	case st.job != nil:
		payload := s.statsLocked(st, true)
		st.job.stop(func() { s.em.emit("outStreamClosed", payload) })
	case !st.inbound():
		s.em.emit("outStreamClosed", s.statsLocked(st, true))
	}
	for _, o := range append([]*stream(nil), st.outs...) {
		s.closeStreamLocked(o, false)
	}
	c := st.cfg
	if c == nil || c.stream != st {
		return
	}
	c.stream = nil
	if permanently || !c.keepAlive || s.closed {
		if permanently || !c.keepAlive {
			delete(s.configs, c.id)
		}
		return
	}
	switch c.kind {
	case "pull", "push":
		c.setStatus(statusConnecting, s.now(), 0)
		s.kickConnector()
	default:
		c.setStatus(statusWaitingForStream, s.now(), 0)
		s.activateOutputsLocked(c.name)
	}
}

// removeConfigLocked deletes a config and stops its stream.
func (s *Sim) removeConfigLocked(c *config, removeFiles bool) {
	if st := c.stream; st != nil {
		if st.job != nil && removeFiles {
			st.job.removeFiles = true
		}
		s.closeStreamLocked(st, true)
	}
	delete(s.configs, c.id)
}

// statsLocked is a stream's statistics object: listStreams, getStreamInfo and the stream
// events carry it (reference §1.6.1).
func (s *Sim) statsLocked(st *stream, codecsKnown bool) obj {
	now := s.now()
	up := now.Sub(st.created)
	secs := up.Seconds()
	fps := float64(s.cfg.FPS)
	o := obj{
		"appName":           "evostreamms",
		"bandwidth":         0,
		"connectionType":    st.connType,
		"creationTimestamp": msDouble(st.created),
		"farIp":             st.farIP,
		"farPort":           st.farPort,
		"ip":                st.nearIP,
		"name":              st.name,
		"nearIp":            st.nearIP,
		"nearPort":          st.nearPort,
		"port":              st.nearPort,
		"processId":         s.cfg.ProcessID,
		"processType":       "origin",
		"queryTimestamp":    msDouble(now),
		"type":              st.typ,
		"typeNumeric":       tagNumeric(st.typ),
		"uniqueId":          st.id,
		"upTime":            double(float64(up) / float64(time.Millisecond)),
	}
	acodec, vcodec := "AUNK", "VUNK"
	w, h := 0, 0
	if codecsKnown {
		acodec, vcodec, w, h = "AAAC", "VH264", 320, 240
	}
	o["audio"] = obj{
		"aveAudioBitRate": 48000, "bytesCount": uint64(secs * 6000), "codec": acodec, "codecNumeric": tagNumeric(acodec),
		"currAudioBitRate": 48000, "droppedBytesCount": 0, "droppedPacketsCount": 0, "packetsCount": uint64(secs * 43),
	}
	o["video"] = obj{
		"aveFrameRate": double(fps), "aveKeyFramesPerSec": double(1), "aveVideoBitRate": 150000,
		"bytesCount": uint64(secs * 18750), "codec": vcodec, "codecNumeric": tagNumeric(vcodec),
		"currFrameRate": double(fps), "currKeyFramesPerSec": double(1), "currVideoBitRate": 150000,
		"droppedBytesCount": 0, "droppedPacketsCount": 0, "height": h, "level": 12, "packetsCount": uint64(secs * fps),
		"profile": 66, "width": w,
	}
	if st.inbound() {
		if len(st.outs) == 0 {
			o["outStreamsUniqueIds"] = nil
		} else {
			ids := make([]uint64, 0, len(st.outs))
			for _, x := range st.outs {
				ids = append(ids, x.id)
			}
			o["outStreamsUniqueIds"] = ids
		}
	} else if st.in != nil {
		o["inStreamUniqueId"] = st.in.id
	} else {
		o["inStreamUniqueId"] = nil
	}
	switch st.typ {
	case "INR", "ONR":
		// RTMP streams report their connection's connect fields; file outputs have none
		// (reference §1.6.1's real OFHLS payload).
		o["tcUrl"], o["swfUrl"], o["pageUrl"] = st.conn.tcURL, st.conn.swfURL, st.conn.pageURL
	}
	switch st.typ {
	case "INR":
		if st.connType == opPull {
			o["serverAgent"] = st.agent
		} else {
			o["userAgent"] = st.agent
		}
	case "ONR":
		o["userAgent"] = st.agent
		o["streamAlias"] = st.name
		o["canDropFrames"] = true
	}
	if st.cfg != nil {
		if k := settingsKey(st.cfg.kind); k != "" {
			o[k] = cloneObj(st.cfg.settings)
		}
	}
	return o
}

// configEntryLocked is a listConfig entry: the stored config plus its status.
func (s *Sim) configEntryLocked(c *config) obj {
	e := cloneObj(c.settings)
	e["status"] = obj{"current": statusObj(c.cur), "previous": statusObj(c.prev)}
	return e
}
