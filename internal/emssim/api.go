package emssim

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/internal/logfield"
)

// response is EMS's API answer (reference §3.2). FAIL answers carry data null.
type response struct {
	status, description string
	data                any
}

func ok(desc string, data any) response { return response{"SUCCESS", desc, data} }
func fail(desc string) response         { return response{"FAIL", desc, nil} }

type handlerFunc func(s *Sim, a *args) response

// commands are the API commands the simulator knows, by lowercase name (EMS lowercases the
// command before dispatching, reference §3.1).
var commands = map[string]handlerFunc{
	"version":                (*Sim).cmdVersion,
	"pullstream":             (*Sim).cmdPullStream,
	"pushstream":             (*Sim).cmdPushStream,
	"record":                 (*Sim).cmdRecord,
	"createhlsstream":        (*Sim).cmdCreateHLS,
	"createhdsstream":        (*Sim).cmdCreateHDS,
	"createdashstream":       (*Sim).cmdCreateDASH,
	"createmssstream":        (*Sim).cmdCreateMSS,
	"shutdownstream":         (*Sim).cmdShutdownStream,
	"removeconfig":           (*Sim).cmdRemoveConfig,
	"liststreams":            (*Sim).cmdListStreams,
	"liststreamsids":         (*Sim).cmdListStreamsIDs,
	"getstreaminfo":          (*Sim).cmdGetStreamInfo,
	"getstreamscount":        (*Sim).cmdGetStreamsCount,
	"isstreamrunning":        (*Sim).cmdIsStreamRunning,
	"listinboundstreamnames": (*Sim).cmdListInboundStreamNames,
	"listconfig":             (*Sim).cmdListConfig,
	"getconfiginfo":          (*Sim).cmdGetConfigInfo,
	"settimer":               (*Sim).cmdSetTimer,
	"listtimers":             (*Sim).cmdListTimers,
	"removetimer":            (*Sim).cmdRemoveTimer,
}

// needsParams lists the commands that answer "No parameters provided" when called bare
// (EMS's HAS_PARAMETERS).
var needsParams = map[string]bool{
	"pullstream": true, "pushstream": true, "record": true, "createhlsstream": true,
	"createhdsstream": true, "createdashstream": true, "createmssstream": true,
	"shutdownstream": true, "removeconfig": true, "getstreaminfo": true, "isstreamrunning": true,
	"getconfiginfo": true, "settimer": true, "removetimer": true,
}

func (s *Sim) apiHandler() http.Handler {
	admin := s.adminHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_sim/") {
			admin.ServeHTTP(w, r)
			return
		}
		s.serveAPI(w, r)
	})
}

func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request) {
	command, params, err := emsclient.ParseRequest(r)
	responseID := ""
	var resp response
	if err != nil {
		resp = fail(fmt.Sprintf("Invalid command: %v", err))
		s.writeAPI(w, resp, responseID)
		return
	}
	cmd := strings.ToLower(command)
	a := &args{ps: params}
	if v, ok := a.raw("commandId"); ok {
		responseID = v
	}
	s.mu.Lock()
	f, faulty := s.apiFault(cmd)
	s.mu.Unlock()
	if faulty && f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch {
	case faulty && f.HTTPStatus != 0:
		w.Header().Set("Connection", "close")
		w.WriteHeader(f.HTTPStatus)
		return
	case faulty && f.Fail != "":
		resp = fail(f.Fail)
	default:
		h, known := commands[cmd]
		switch {
		case !known:
			resp = fail(fmt.Sprintf("command %s not known. Type help for list of commands", cmd))
		case needsParams[cmd] && len(params) == 0:
			resp = fail("Syntax error. No parameters provided")
		default:
			resp = h(s, a)
		}
	}
	s.log.Debug().Str(logfield.Command, cmd).Str(logfield.Status, resp.status).Str(logfield.Reason, resp.description).Msg("api call")
	s.writeAPI(w, resp, responseID)
}

func (s *Sim) writeAPI(w http.ResponseWriter, resp response, responseID string) {
	body := obj{"data": resp.data, "description": resp.description, "status": resp.status}
	if responseID != "" {
		body["responseId"] = responseID
	}
	out, err := marshalEMS(body)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	// RMS answers text/plain and closes the connection (reference §3.2).
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Connection", "close")
	_, _ = w.Write(out)
}

func (s *Sim) cmdVersion(_ *args) response { return ok("Version", versionInfo()) }

func (s *Sim) cmdPullStream(a *args) response {
	st := obj{}
	uri := a.mandatory("uri")
	if a.fail != "" {
		return fail(a.fail)
	}
	uo, u, valid := uriObj(uri)
	if !valid {
		return fail("Invalid URI: " + uri)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st["uri"] = uri
	st["keepAlive"] = a.boolean("keepAlive", true)
	name := a.str("localStreamName", "")
	if name == "" {
		name = "stream_" + s.randomString(8)
	}
	st["localStreamName"] = name
	st["forceTcp"] = a.boolean("forceTcp", false)
	st["swfUrl"] = a.str("swfUrl", "")
	st["pageUrl"] = a.str("pageUrl", "")
	st["tcUrl"] = a.str("tcUrl", "")
	st["ttl"] = a.num("ttl", 0, 0x100, 0x100)
	st["tos"] = a.num("tos", 0, 0x100, 0x100)
	st["ssmIp"] = a.str("ssmIp", "")
	st["rtcpDetectionInterval"] = a.num("rtcpDetectionInterval", 0, 60, 10)
	st["emulateUserAgent"] = a.str("emulateUserAgent", userAgent+" player")
	st["isAudio"] = a.boolean("isAudio", true)
	st["audioCodecBytes"] = a.str("audioCodecBytes", "")
	st["spsBytes"] = a.str("spsBytes", "")
	st["ppsBytes"] = a.str("ppsBytes", "")
	st["httpProxy"] = a.str("httpProxy", "")
	st["rangeStart"] = a.signed("rangeStart", -2, 999999999, -2)
	st["rangeEnd"] = a.signed("rangeEnd", -1, 999999999, -1)
	st["sendRenewStream"] = a.boolean("sendRenewStream", false)
	st["sourceType"] = a.str("sourceType", "live")
	st["videoSourceIndex"] = "high"
	st["httpStreamType"] = "ts"
	st["saveToConfig"] = a.boolean("serializeToConfig", true)
	st["sendDummyPayload"] = false
	if a.fail != "" {
		return fail(a.fail)
	}
	if src := st["sourceType"]; src != "live" && src != "vod" {
		return fail("sourceType can only have values of live or vod")
	}
	if s.nameTaken(name) {
		return fail(fmt.Sprintf("Stream name %s already taken", name))
	}
	a.userVars(st)
	c := s.newConfigLocked("pull", name, st)
	c.peer = peerAddr(u)
	c.peerName = strings.TrimPrefix(u.Path[strings.LastIndexByte(u.Path, '/')+1:], "/")
	c.setStatus(statusConnecting, s.now(), 0)
	s.kickConnector()
	data := cloneObj(c.settings)
	data["uri"] = uo
	return ok(fmt.Sprintf("Stream %s enqueued for pulling", uri), data)
}

func (s *Sim) cmdPushStream(a *args) response {
	st := obj{}
	uri := a.mandatory("uri")
	name := a.mandatory("localStreamName")
	if a.fail != "" {
		return fail(a.fail)
	}
	uo, u, valid := uriObj(uri)
	if !valid {
		return fail("Invalid URI: " + uri)
	}
	st["localStreamName"] = name
	st["emulateUserAgent"] = a.str("emulateUserAgent", userAgent)
	target := a.str("targetStreamName", name)
	st["targetStreamName"] = target
	tst := a.str("targetStreamType", "live")
	if tst != "live" && tst != "record" && tst != "append" {
		return fail("Syntax error for targetStreamType parameter. Type help for details")
	}
	st["targetStreamType"] = tst
	st["swfUrl"] = a.str("swfUrl", "")
	st["pageUrl"] = a.str("pageUrl", "")
	st["tcUrl"] = a.str("tcUrl", "")
	st["keepAlive"] = a.boolean("keepAlive", true)
	st["ttl"] = a.num("ttl", 0, 0x100, 0x100)
	st["tos"] = a.num("tos", 0, 0x100, 0x100)
	st["forceTcp"] = a.boolean("forceTcp", false)
	st["rtmpAbsoluteTimestamps"] = a.boolean("rtmpAbsoluteTimestamps", false)
	st["httpProxy"] = a.str("httpProxy", "")
	st["useSourcePts"] = a.boolean("useSourcePts", false)
	st["sendChunkSizeRequest"] = a.boolean("sendChunkSizeRequest", true)
	st["targetUri"] = uri
	if a.fail != "" {
		return fail(a.fail)
	}
	a.userVars(st)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inboundByName(name) == nil {
		return fail("Unable to push requested stream")
	}
	c := s.newConfigLocked("push", name, st)
	c.peer = peerAddr(u)
	c.peerName = target
	c.setStatus(statusConnecting, s.now(), 0)
	s.kickConnector()
	data := cloneObj(c.settings)
	data["targetUri"] = uo
	return ok(fmt.Sprintf("Local stream %s enqueued for pushing to %s as %s", name, uri, target), data)
}

func (s *Sim) cmdRecord(a *args) response {
	st := obj{}
	name := a.mandatory("localStreamName")
	path := a.mandatory("pathToFile")
	typ := strings.ToLower(a.str("type", "mp4"))
	st["localStreamName"] = name
	st["pathToFile"] = path
	st["type"] = typ
	st["overwrite"] = a.boolean("overwrite", false)
	st["keepAlive"] = a.boolean("keepAlive", true)
	st["chunkLength"] = a.num("chunkLength", 0, 86400, 0)
	st["waitForIDR"] = a.boolean("waitForIDR", false)
	st["winQtCompat"] = a.boolean("winQtCompat", true)
	st["dateFolderStructure"] = a.boolean("dateFolderStructure", false)
	st["hasAudio"] = true
	st["preset"] = 0
	st["mp4BinPath"] = mp4BinPath
	if a.fail != "" {
		return fail(a.fail)
	}
	if typ != "mp4" && typ != "ts" && typ != "flv" {
		return fail(fmt.Sprintf("Syntax error. Parameter type is invalid: %s. Use one of mp4, ts, flv", typ))
	}
	a.userVars(st)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.newConfigLocked("record", name, st)
	c.settings["computedPathToFile"] = s.recordPathLocked(c, s.recordSessionLocked(c), 0)
	c.setStatus(statusWaitingForStream, s.now(), 0)
	s.activateOutputsLocked(name)
	return ok(fmt.Sprintf("Stream %s will be recorded to %s", name, path), cloneObj(c.settings))
}

// groupArgs are the parameters shared by createHLSStream, createHDSStream and createDASHStream.
type groupArgs struct {
	names, bandwidths []string
	target, group     string
}

func (s *Sim) readGroupArgs(a *args, kind string) (groupArgs, response, bool) {
	g := groupArgs{names: a.list("localStreamNames"), target: a.mandatory("targetFolder")}
	if a.fail != "" {
		return g, fail(a.fail), false
	}
	g.bandwidths = a.optList("bandwidths")
	if g.bandwidths == nil {
		g.bandwidths = make([]string, len(g.names))
		for i := range g.bandwidths {
			g.bandwidths[i] = "0"
		}
	}
	if len(g.bandwidths) != len(g.names) {
		return g, fail("Syntax error. Parameters localStreamNames and bandwidths have different number of elements"), false
	}
	g.group = a.str("groupName", "")
	if g.group == "" {
		g.group = kind + "_group_" + s.randomString(8)
	}
	g.target = s.resolvePath(g.target)
	return g, response{}, true
}

// folderName normalizes a stream name for use as a folder: name?x=1 becomes name_x_1
// (reference §1.6.2).
func folderName(name string) string {
	return strings.NewReplacer("?", "_", "=", "_", "&", "_").Replace(name)
}

func (s *Sim) cmdCreateHLS(a *args) response {
	s.mu.Lock()
	g, r, good := s.readGroupArgs(a, "hls")
	s.mu.Unlock()
	if !good {
		return r
	}
	common := obj{
		"playlistType":         a.str("playlistType", "appending"),
		"playlistLength":       a.num("playlistLength", 5, 999999, 10),
		"playlistName":         a.str("playlistName", "playlist.m3u8"),
		"chunkLength":          a.num("chunkLength", 1, 3600, 10),
		"maxChunkLength":       a.num("maxChunkLength", 0, 3600, 0),
		"chunkBaseName":        a.str("chunkBaseName", "segment"),
		"chunkOnIDR":           a.boolean("chunkOnIDR", true),
		"keepAlive":            a.boolean("keepAlive", true),
		"overwriteDestination": a.boolean("overwriteDestination", true),
		"createMasterPlaylist": a.boolean("createMasterPlaylist", true),
		"cleanupDestination":   a.boolean("cleanupDestination", false),
		"cleanupOnClose":       a.boolean("cleanupOnClose", false),
		"hlsResume":            a.boolean("hlsResume", false),
		"drmType":              a.str("drmType", "none"),
		"AESKeyCount":          a.num("AESKeyCount", 1, 999999, 5),
		"audioOnly":            a.boolean("audioOnly", false),
		"useByteRange":         a.boolean("useByteRange", false),
		"fileLength":           a.num("fileLength", 0, 1<<40, 0),
		"useSystemTime":        a.boolean("useSystemTime", false),
		"offsetTime":           a.num("offsetTime", 0, 1<<40, 0),
		"startOffset":          a.num("startOffset", 0, 1<<40, 0),
		"hlsVersion":           6,
		"publishingPoint":      "",
		"groupName":            g.group,
		"operationType":        opHLS,
	}
	common["staleRetentionCount"] = a.num("staleRetentionCount", 0, 999999, common["playlistLength"].(uint64))
	if a.fail != "" {
		return fail(a.fail)
	}
	if pt := common["playlistType"]; pt != "appending" && pt != "rolling" {
		return fail("Syntax error. Parameter playlistType is invalid")
	}
	a.userVars(common)
	groupFolder := filepath.Join(g.target, g.group)
	return s.createGroup("hls", g, common, func(st obj, name string) {
		st["groupTargetFolder"] = groupFolder + string(filepath.Separator)
		st["targetFolder"] = filepath.Join(groupFolder, folderName(name))
		st["masterPlaylistPath"] = filepath.Join(groupFolder, "playlist.m3u8")
	}, "HLS stream created")
}

func (s *Sim) cmdCreateHDS(a *args) response {
	s.mu.Lock()
	g, r, good := s.readGroupArgs(a, "hds")
	s.mu.Unlock()
	if !good {
		return r
	}
	common := obj{
		"playlistType":         a.str("playlistType", "appending"),
		"playlistLength":       a.num("playlistLength", 1, 999999, 10),
		"chunkLength":          a.num("chunkLength", 1, 3600, 10),
		"chunkBaseName":        a.str("chunkBaseName", "f4v"),
		"chunkOnIDR":           a.boolean("chunkOnIDR", true),
		"keepAlive":            a.boolean("keepAlive", true),
		"overwriteDestination": a.boolean("overwriteDestination", true),
		"createMasterPlaylist": a.boolean("createMasterPlaylist", true),
		"cleanupDestination":   a.boolean("cleanupDestination", false),
		"groupName":            g.group,
		"operationType":        opHDS,
		"publishingPoint":      "",
	}
	common["staleRetentionCount"] = a.num("staleRetentionCount", 0, 999999, common["playlistLength"].(uint64))
	manifest := a.str("manifestName", "")
	if a.fail != "" {
		return fail(a.fail)
	}
	a.userVars(common)
	groupFolder := filepath.Join(g.target, g.group)
	return s.createGroup("hds", g, common, func(st obj, name string) {
		m := manifest
		if m == "" {
			m = folderName(name)
		}
		st["manifestName"] = strings.TrimSuffix(m, ".f4m")
		st["groupTargetFolder"] = groupFolder + string(filepath.Separator)
		st["targetFolder"] = filepath.Join(groupFolder, folderName(name))
	}, "HDS stream created")
}

func (s *Sim) cmdCreateDASH(a *args) response {
	s.mu.Lock()
	g, r, good := s.readGroupArgs(a, "dash")
	s.mu.Unlock()
	if !good {
		return r
	}
	common := obj{
		"playlistType":         a.str("playlistType", "appending"),
		"playlistLength":       a.num("playlistLength", 1, 999999, 10),
		"manifestName":         a.str("manifestName", "manifest.mpd"),
		"chunkLength":          a.num("chunkLength", 1, 3600, 10),
		"chunkBaseName":        "",
		"chunkOnIDR":           a.boolean("chunkOnIDR", true),
		"keepAlive":            a.boolean("keepAlive", true),
		"overwriteDestination": a.boolean("overwriteDestination", true),
		"cleanupDestination":   a.boolean("cleanupDestination", false),
		"dynamicProfile":       a.boolean("dynamicProfile", true),
		"isAutoDASH":           false,
		"groupName":            g.group,
		"operationType":        opDASH,
		"publishingPoint":      "",
	}
	common["staleRetentionCount"] = a.num("staleRetentionCount", 0, 999999, common["playlistLength"].(uint64))
	if a.fail != "" {
		return fail(a.fail)
	}
	a.userVars(common)
	groupFolder := filepath.Join(g.target, g.group)
	return s.createGroup("dash", g, common, func(st obj, name string) {
		folder := filepath.Join(groupFolder, folderName(name))
		bw := fmt.Sprint(st["bandwidth"])
		st["groupTargetFolder"] = groupFolder + string(filepath.Separator)
		st["targetFolder"] = folder
		st["videoFolder"] = filepath.Join(folder, "video", bw)
		st["audioFolder"] = filepath.Join(folder, "audio", bw)
		st["manifestAbsolutePath"] = filepath.Join(groupFolder, st["manifestName"].(string))
	}, "DASH stream created")
}

// cmdCreateMSSStream checks the parameters like EMS, then refuses: the simulator writes no
// Smooth Streaming.
func (s *Sim) cmdCreateMSS(a *args) response {
	a.list("localStreamNames")
	a.mandatory("targetFolder")
	if a.fail != "" {
		return fail(a.fail)
	}
	return fail("MSS is not supported by this server")
}

// createGroup stores one config per stream of a create*Stream call and starts those whose
// stream is live.
func (s *Sim) createGroup(kind string, g groupArgs, common obj, perStream func(obj, string), desc string) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]uint64, 0, len(g.names))
	for i, name := range g.names {
		st := cloneObj(common)
		st["localStreamName"] = name
		st["bandwidth"] = atoi(g.bandwidths[i])
		perStream(st, name)
		st["timestamp"] = msDouble(s.now())
		c := s.newConfigLocked(kind, name, st)
		c.group = g.group
		c.setStatus(statusWaitingForStream, s.now(), 0)
		ids = append(ids, c.id)
	}
	for _, name := range g.names {
		s.activateOutputsLocked(name)
	}
	data := cloneObj(common)
	data["localStreamNames"] = g.names
	data["bandwidths"] = g.bandwidths
	data["targetFolder"] = g.target
	data["configIds"] = ids
	return ok(desc, data)
}

func (s *Sim) newConfigLocked(kind, name string, settings obj) *config {
	c := &config{id: s.nextConfigID, kind: kind, name: name, settings: settings, started: s.now()}
	s.nextConfigID++
	settings["configId"] = c.id
	if _, has := settings["operationType"]; !has {
		settings["operationType"] = map[string]int{"pull": opPull, "push": opPush, "record": opRecord}[kind]
	}
	c.keepAlive, _ = settings["keepAlive"].(bool)
	s.configs[c.id] = c
	return c
}

func (s *Sim) cmdShutdownStream(a *args) response {
	if !a.has("id") && !a.has("localStreamName") {
		return fail("id or localStreamName parameters needs to be supplied")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var st *stream
	if a.has("id") {
		id := a.number("id", true, 0, ^uint64(0), 0)
		if a.fail != "" {
			return fail(a.fail)
		}
		st = s.streams[id]
	} else {
		name := a.mandatory("localStreamName")
		if a.fail != "" {
			return fail(a.fail)
		}
		st = s.inboundByName(name)
	}
	permanently := a.boolean("permanently", true)
	if st == nil {
		return fail("Stream no longer available")
	}
	data := obj{
		"protocolStackInfo": obj{"carrier": nil, "id": st.id, "stack": []obj{{"type": st.typ}}},
		"streamInfo":        s.statsLocked(st, true),
	}
	s.closeStreamLocked(st, permanently)
	return ok("Stream closed", data)
}

func (s *Sim) cmdRemoveConfig(a *args) response {
	var id uint64
	group := ""
	if a.has("id") {
		id = a.number("id", true, 0, 0xffffffff, 0)
	} else if a.has("groupName") {
		group = a.mandatory("groupName")
	} else if a.has("hlsHdsMssGroup") {
		group = a.mandatory("hlsHdsMssGroup")
	}
	if a.fail != "" {
		return fail(a.fail)
	}
	if id == 0 && group == "" {
		return fail("No id nor group name provided")
	}
	removeFiles := a.boolean("removeHlsHdsFiles", false)
	s.mu.Lock()
	defer s.mu.Unlock()
	var sample any
	for _, cid := range s.sortedConfigIDs() {
		c := s.configs[cid]
		if (id != 0 && c.id != id) || (id == 0 && c.group != group) {
			continue
		}
		if sample == nil {
			sample = cloneObj(c.settings)
		}
		s.removeConfigLocked(c, removeFiles)
	}
	// EMS answers SUCCESS even when nothing matched (data null).
	return ok("Configuration terminated", sample)
}

func (s *Sim) cmdListStreams(_ *args) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []obj
	for _, id := range s.sortedStreamIDs() {
		list = append(list, s.statsLocked(s.streams[id], true))
	}
	if list == nil {
		return ok("Available streams", nil)
	}
	return ok("Available streams", list)
}

func (s *Sim) cmdListStreamsIDs(_ *args) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.sortedStreamIDs()
	if len(ids) == 0 {
		return ok("Available stream IDs", nil)
	}
	return ok("Available stream IDs", ids)
}

func (s *Sim) cmdGetStreamsCount(_ *args) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ok("Active streams count", obj{"streamCount": len(s.streams)})
}

func (s *Sim) cmdListInboundStreamNames(_ *args) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, id := range s.sortedStreamIDs() {
		if st := s.streams[id]; st.inbound() {
			names = append(names, st.name)
		}
	}
	if names == nil {
		return ok("Available inbound stream names", nil)
	}
	return ok("Available inbound stream names", names)
}

// findStream resolves getStreamInfo/isStreamRunning's id or localStreamName.
func (s *Sim) findStream(a *args) (*stream, response, bool) {
	hasID, hasName := a.has("id"), a.has("localStreamName")
	if !hasID && !hasName {
		return nil, fail("id or localStreamName parameters needs to be supplied"), false
	}
	if hasID && hasName {
		return nil, fail("id and localStreamName must not go together, choose only 1"), false
	}
	if hasID {
		id := a.number("id", true, 0, ^uint64(0), 0)
		if a.fail != "" {
			return nil, fail(a.fail), false
		}
		st := s.streams[id]
		if st == nil {
			return nil, fail(fmt.Sprintf("Stream 0:%d not found", uint32(id))), false
		}
		return st, response{}, true
	}
	name := a.mandatory("localStreamName")
	if a.fail != "" {
		return nil, fail(a.fail), false
	}
	for _, id := range s.sortedStreamIDs() {
		if st := s.streams[id]; st.name == name {
			return st, response{}, true
		}
	}
	return nil, fail(fmt.Sprintf("Stream %s not found", name)), false
}

func (s *Sim) cmdGetStreamInfo(a *args) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, r, found := s.findStream(a)
	if !found {
		return r
	}
	return ok("Stream information", s.statsLocked(st, true))
}

func (s *Sim) cmdIsStreamRunning(a *args) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, r, found := s.findStream(a)
	if !found && r.description != "" && !strings.Contains(r.description, "not found") {
		return r
	}
	return ok("Stream status:", obj{"Running": found})
}

func (s *Sim) cmdListConfig(_ *args) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	data := obj{}
	for _, k := range []string{"pull", "push", "hls", "hds", "mss", "dash", "record", "process", "webrtc", "metalistener"} {
		data[k] = []obj{}
	}
	for _, id := range s.sortedConfigIDs() {
		c := s.configs[id]
		data[c.kind] = append(data[c.kind].([]obj), s.configEntryLocked(c))
	}
	return ok("Run-time configuration", data)
}

func (s *Sim) cmdGetConfigInfo(a *args) response {
	id := a.number("id", true, 0, ^uint64(0), 0)
	if a.fail != "" {
		return fail(a.fail)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.configs[id]
	if c == nil {
		return fail("Config ID not found")
	}
	return ok("Configuration Info", s.configEntryLocked(c))
}
