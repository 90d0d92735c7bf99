package emssim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emsflow/emsflow/internal/logfield"
)

var errNoPeer = errors.New("no simulator at that address")

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

func splitHostPort(hp string) (string, int) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// peerAddr returns host:port of a stream URI, with the scheme's default port.
func peerAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "rtmp", "rtmpt":
			port = "1935"
		case "rtsp":
			port = "554"
		case "https", "rtmps":
			port = "443"
		default:
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// goOwned runs f in a goroutine the simulator waits for on Close.
func (s *Sim) goOwned(f func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
}

func (s *Sim) kickConnector() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// peerCall calls one admin endpoint of the simulator at base and returns the uniqueId it
// answers. A connection error is errNoPeer; a non-2xx answer is an error naming the status.
func (s *Sim) peerCall(base, op string, q map[string]string) (uint64, error) {
	vals := url.Values{}
	for k, v := range q {
		vals.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	method := http.MethodPost
	if op == "alive" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, base+"/_sim/"+op+"?"+vals.Encode(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errNoPeer, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("peer %s %s: HTTP %d %s", base, op, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var r struct {
		UniqueID uint64 `json:"uniqueId"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("%w: not a simulator answer", errNoPeer)
	}
	return r.UniqueID, nil
}

// connector is EMS's reconnect loop: it connects pulls and pushes, checks that connected ones
// still have their counterpart, and retries keepAlive ones every ReconnectInterval.
func (s *Sim) connector() {
	t := time.NewTicker(s.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		s.connectRound()
	}
}

type connTask struct {
	cfgID    uint64
	kind     string
	check    bool // check a connected one; otherwise connect
	peer     string
	peerName string
	link     *peerLink
	streamID uint64
}

func (s *Sim) connectRound() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var tasks []connTask
	for _, id := range s.sortedConfigIDs() {
		c := s.configs[id]
		if c.kind != "pull" && c.kind != "push" {
			continue
		}
		t := connTask{cfgID: c.id, kind: c.kind, peer: c.peer, peerName: c.peerName}
		switch {
		case c.stream != nil:
			if c.stream.link == nil {
				continue
			}
			t.check, t.link, t.streamID = true, c.stream.link, c.stream.id
		case c.attempted && !c.keepAlive:
			continue
		case c.kind == "push" && s.inboundByName(c.name) == nil:
			continue
		}
		tasks = append(tasks, t)
	}
	s.mu.Unlock()

	for _, t := range tasks {
		s.runConnTask(t)
	}
}

func (s *Sim) runConnTask(t connTask) {
	base := "http://" + t.peer
	if t.check {
		_, err := s.peerCall(base, "alive", map[string]string{"id": u64(t.link.id)})
		if err == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if st := s.streams[t.streamID]; st != nil && st.link == t.link {
			st.link = nil // the counterpart is gone already
			s.closeStreamLocked(st, false)
		}
		return
	}
	s.mu.Lock()
	c := s.configs[t.cfgID]
	if c == nil || c.stream != nil || s.closed {
		s.mu.Unlock()
		return
	}
	c.attempted = true
	c.setStatus(statusConnecting, s.now(), 0)
	name := c.name
	// What the RTMP connect carries to the peer: the connect fields and the user agent
	// (flashVer, from emulateUserAgent), sent from a local ephemeral port.
	uriKey, agent := "targetUri", userAgent
	if t.kind == "pull" {
		uriKey, agent = "uri", userAgent+" player"
	}
	conn := connectOf(c.settings, uriKey)
	if ua, _ := c.settings["emulateUserAgent"].(string); ua != "" {
		agent = ua
	}
	localPort := s.ephemeralPortLocked()
	s.mu.Unlock()

	var remoteID uint64
	var err error
	q := map[string]string{
		"name": t.peerName, "farIp": s.cfg.IP, "farPort": strconv.Itoa(localPort), "agent": agent,
		"tcUrl": conn.tcURL, "swfUrl": conn.swfURL, "pageUrl": conn.pageURL,
	}
	if t.kind == "pull" {
		remoteID, err = s.peerCall(base, "play", q)
	} else {
		remoteID, err = s.peerCall(base, "publish", q)
	}
	synthetic := err != nil && errors.Is(err, errNoPeer) && s.cfg.AcceptUnknownPeers

	s.mu.Lock()
	defer s.mu.Unlock()
	c = s.configs[t.cfgID]
	if c == nil || c.stream != nil || s.closed {
		if err == nil {
			s.goOwned(func() { _, _ = s.peerCall(base, "close", map[string]string{"id": u64(remoteID)}) })
		}
		return
	}
	if err != nil && !synthetic {
		s.log.Debug().Err(err).Str(logfield.Stream, name).Uint64(logfield.ConfigID, c.id).Msg("connect failed")
		c.setStatus(statusConnectionFailed, s.now(), 0)
		if !c.keepAlive {
			delete(s.configs, c.id)
		}
		return
	}
	var link *peerLink
	if err == nil {
		link = &peerLink{base: base, id: remoteID}
	}
	peerHost, peerPort := splitHostPort(t.peer)
	if t.kind == "pull" {
		if s.nameTaken(name) && s.inboundByName(name) != nil {
			c.setStatus(statusConnectionFailed, s.now(), 0)
			if link != nil {
				s.goOwned(func() { _, _ = s.peerCall(base, "close", map[string]string{"id": u64(remoteID)}) })
			}
			return
		}
		st := s.openInboundLocked(name, opPull, c, localPort, peerHost, peerPort, conn, userAgent)
		st.link = link
		return
	}
	in := s.inboundByName(name)
	if in == nil {
		c.setStatus(statusConnecting, s.now(), 0)
		if link != nil {
			s.goOwned(func() { _, _ = s.peerCall(base, "close", map[string]string{"id": u64(remoteID)}) })
		}
		return
	}
	st := s.newStreamLocked(t.peerName, "ONR", opPush, in, c)
	st.nearIP, st.nearPort, st.farIP, st.farPort = s.cfg.IP, localPort, peerHost, peerPort
	st.conn, st.agent = conn, agent
	st.link = link
	c.setStatus(statusStreaming, s.now(), st.id)
	s.em.emit("outStreamCreated", s.statsLocked(st, true))
}

// adminHandler serves /_sim/: the calls peers make to each other and the operator's controls.
func (s *Sim) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/_sim/publish", s.handlePublish)
	mux.HandleFunc("/_sim/unpublish", s.handleUnpublish)
	mux.HandleFunc("/_sim/play", s.handlePlay)
	mux.HandleFunc("/_sim/alive", s.handleAlive)
	mux.HandleFunc("/_sim/close", s.handleClose)
	mux.HandleFunc("/_sim/faults", s.handleFaults)
	mux.HandleFunc("/_sim/events", s.handleEvents)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Sim) handlePublish(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name is required"})
		return
	}
	farPort, _ := strconv.Atoi(q.Get("farPort"))
	farIP := q.Get("farIp")
	if farIP == "" {
		farIP, _ = splitHostPort(r.RemoteAddr)
	}
	agent := q.Get("agent")
	if agent == "" {
		agent = "FMLE/3.0 (compatible; FMSc/1.0)"
	}
	conn := connectFromQuery(q)
	id, err := s.publish(name, farIP, farPort, agent, conn)
	if err != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"uniqueId": id})
}

func (s *Sim) handleUnpublish(w http.ResponseWriter, r *http.Request) {
	if !s.Unpublish(r.URL.Query().Get("name")) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such inbound stream"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "closed"})
}

func (s *Sim) handlePlay(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	farPort, _ := strconv.Atoi(q.Get("farPort"))
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.inboundByName(q.Get("name"))
	if in == nil || s.closed {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "stream not found"})
		return
	}
	st := s.newStreamLocked(in.name, "ONR", opStandard, in, nil)
	st.nearIP, st.nearPort, st.farIP, st.farPort, st.agent = s.cfg.IP, s.rtmpPort(), q.Get("farIp"), farPort, q.Get("agent")
	st.conn = connectFromQuery(q)
	s.em.emit("outStreamCreated", s.statsLocked(st, true))
	writeJSON(w, http.StatusOK, map[string]uint64{"uniqueId": st.id})
}

func (s *Sim) handleAlive(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseUint(r.URL.Query().Get("id"), 10, 64)
	s.mu.Lock()
	_, ok := s.streams[id]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "stream not found"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"uniqueId": id})
}

func (s *Sim) handleClose(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseUint(r.URL.Query().Get("id"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "stream not found"})
		return
	}
	st.link = nil // the caller is the counterpart and is gone
	s.closeStreamLocked(st, false)
	writeJSON(w, http.StatusOK, map[string]uint64{"uniqueId": id})
}

func (s *Sim) handleFaults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, s.CurrentFaults())
	case http.MethodPut, http.MethodPost:
		var f Faults
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		s.SetFaults(f)
		writeJSON(w, http.StatusOK, s.CurrentFaults())
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (s *Sim) handleEvents(w http.ResponseWriter, _ *http.Request) {
	stats, log := s.em.snapshot()
	writeJSON(w, http.StatusOK, map[string]any{"stats": stats, "deliveries": log})
}

// Publish makes an encoder publish stream name into the simulator (an RTMP publish: type INR,
// no pullSettings) and returns its uniqueId. Outputs configured for the name start.
func (s *Sim) Publish(name string) (uint64, error) {
	return s.publish(name, "127.0.0.1", 50000+int(s.nextStreamIDPeek()%10000), "FMLE/3.0 (compatible; FMSc/1.0)", rtmpConnect{})
}

func (s *Sim) nextStreamIDPeek() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextStreamID
}

// connectFromQuery reads the RTMP connect fields a peer's admin call carries.
func connectFromQuery(q url.Values) rtmpConnect {
	return rtmpConnect{tcURL: q.Get("tcUrl"), swfURL: q.Get("swfUrl"), pageURL: q.Get("pageUrl")}
}

// publish opens an inbound stream published from farIP:farPort with the connect fields conn;
// an empty tcUrl is the simulator's own RTMP address, an empty swfUrl the tcUrl.
func (s *Sim) publish(name, farIP string, farPort int, agent string, conn rtmpConnect) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("simulator closed")
	}
	if s.nameTaken(name) {
		return 0, fmt.Errorf("stream name %s already taken", name)
	}
	if conn.tcURL == "" {
		conn.tcURL = "rtmp://" + net.JoinHostPort(s.cfg.IP, strconv.Itoa(s.rtmpPort())) + "/live"
	}
	if conn.swfURL == "" {
		conn.swfURL = conn.tcURL
	}
	st := s.openInboundLocked(name, opStandard, nil, s.rtmpPort(), farIP, farPort, conn, agent)
	return st.id, nil
}

// Unpublish ends the publish of an inbound stream, as when the encoder disconnects; its
// outputs close with it. It reports whether such a stream existed.
func (s *Sim) Unpublish(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.inboundByName(name)
	if st == nil {
		return false
	}
	s.closeStreamLocked(st, false)
	return true
}
