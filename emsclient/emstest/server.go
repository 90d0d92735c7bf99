// Package emstest is an httptest fake of the EMS HTTP API for tests: it records every call,
// answers unscripted commands with plausible SUCCESS answers, and can be scripted per command
// (Handle) or made to fail the next calls (FailNext).
//
// It keeps just enough state to be consistent with itself: configs created by pullStream,
// pushStream, record and create*Stream appear in listConfig until removeConfig, and timers from
// setTimer appear in listTimers until removeTimer. It runs no streams; a faithful simulator is
// internal/emssim's job.
package emstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsflow/emsflow/emsclient"
)

// Call is one request the server received.
type Call struct {
	// Command is the command as sent (EMS compares it case-insensitively).
	Command string
	// Params are the decoded parameters; nil when there were none or they did not decode.
	Params emsclient.Params
	// RawQuery is the query string exactly as received, to check that nothing was
	// percent-encoded.
	RawQuery string
	// Path is the request path, including an apiProxy pseudo-domain.
	Path string
	// User is the basic-auth user name sent, or "".
	User string
	// Time is when the call arrived, by the server's clock.
	Time time.Time
}

// HandlerFunc answers one command: an HTTP status (0 means 200) and a body. A string or []byte
// body is written as is; anything else is encoded as JSON. Success and Fail build EMS bodies.
type HandlerFunc func(params emsclient.Params) (status int, body any)

// Failure is an answer FailNext gives instead of the normal one.
type Failure struct {
	// HTTPStatus answers with this HTTP status and, unless Body is set, a plain-text body such
	// as "503 Service Unavailable", as a proxy in front of EMS would.
	HTTPStatus int
	// RetryAfter is the Retry-After header sent with HTTPStatus (seconds or an HTTP date).
	RetryAfter string
	// Body replaces the body; ContentType its type (default text/plain).
	Body, ContentType string
	// EMSFail answers HTTP 200 with status FAIL and this description, as EMS does.
	EMSFail string
	// Drop closes the connection without answering.
	Drop bool
}

// HTTPError is a Failure answering with an HTTP status and an optional Retry-After.
func HTTPError(status int, retryAfter string) Failure {
	return Failure{HTTPStatus: status, RetryAfter: retryAfter}
}

// EMSFail is a Failure answering {"status":"FAIL","description":description,"data":null}.
func EMSFail(description string) Failure { return Failure{EMSFail: description} }

// Drop is a Failure that closes the connection without an answer.
func Drop() Failure { return Failure{Drop: true} }

// NotJSON is a Failure answering HTTP 200 with an HTML page, as a misconfigured proxy would.
func NotJSON() Failure {
	return Failure{HTTPStatus: http.StatusOK, ContentType: "text/html", Body: "<html><body>Bad gateway</body></html>"}
}

// Success returns an EMS SUCCESS body carrying data.
func Success(description string, data any) map[string]any {
	return map[string]any{"status": "SUCCESS", "description": description, "data": data}
}

// Fail returns an EMS FAIL body with the description.
func Fail(description string) map[string]any {
	return map[string]any{"status": "FAIL", "description": description, "data": nil}
}

// Any is the command name that makes FailNext match every command.
const Any = "*"

type pending struct {
	f Failure
	n int
}

// Server is a fake EMS API on a loopback listener. It is safe for concurrent use.
type Server struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	now      func() time.Time
	calls    []Call
	handlers map[string]HandlerFunc
	failures map[string][]*pending
	user     string
	pass     string
	auth     bool
	state    state
}

// NewServer starts a fake EMS API, closed when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		now:      time.Now,
		handlers: map[string]HandlerFunc{},
		failures: map[string][]*pending{},
		state:    newState(),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.srv.Close)
	return s
}

// URL returns the API base URL, "http://127.0.0.1:<port>".
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server early, for example to test a refused connection.
func (s *Server) Close() { s.srv.Close() }

// Client returns a client for this server, with the credentials RequireBasicAuth set.
func (s *Server) Client() *emsclient.Client {
	s.t.Helper()
	s.mu.Lock()
	auth, user, pass := s.auth, s.user, s.pass
	s.mu.Unlock()
	u, err := url.Parse(s.srv.URL)
	if err != nil {
		s.t.Fatalf("emstest: parse server url: %v", err)
	}
	if auth {
		u.User = url.UserPassword(user, pass)
	}
	c, err := emsclient.New(u.String(), s.srv.Client())
	if err != nil {
		s.t.Fatalf("emstest: new client: %v", err)
	}
	return c
}

// HTTPClient returns an HTTP client for this server, to build clients for other URL forms
// (an apiProxy path, credentials).
func (s *Server) HTTPClient() *http.Client { return s.srv.Client() }

// SetClock sets the clock that stamps Call.Time.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// RequireBasicAuth makes the server answer 401 to requests without these credentials, as the
// EMS web server's apiProxy does.
func (s *Server) RequireBasicAuth(user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth, s.user, s.pass = true, user, pass
}

// Handle scripts the answer to a command (matched case-insensitively), replacing the default
// one. A nil fn restores the default.
func (s *Server) Handle(command string, fn HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fn == nil {
		delete(s.handlers, strings.ToLower(command))
		return
	}
	s.handlers[strings.ToLower(command)] = fn
}

// FailNext makes the next n calls of command (case-insensitive; Any for every command) answer
// with f. Calls to FailNext queue: a second one applies after the first is used up.
func (s *Server) FailNext(command string, n int, f Failure) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(command)
	s.failures[key] = append(s.failures[key], &pending{f: f, n: n})
}

// Calls returns every call received, in arrival order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CallsTo returns the calls of one command, matched case-insensitively.
func (s *Server) CallsTo(command string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if strings.EqualFold(c.Command, command) {
			out = append(out, c)
		}
	}
	return out
}

// Reset forgets the recorded calls. Scripts, pending failures and state stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// EMS closes the connection after every answer. Doing the same also keeps Go's transport
	// from silently re-sending a GET after a dropped connection.
	w.Header().Set("Connection", "close")
	command, params, perr := emsclient.ParseRequest(r)
	user, gotPass, hasAuth := r.BasicAuth()

	s.mu.Lock()
	s.calls = append(s.calls, Call{
		Command: command, Params: params, RawQuery: r.URL.RawQuery, Path: r.URL.Path,
		User: user, Time: s.now(),
	})
	authOK := !s.auth || (hasAuth && user == s.user && gotPass == s.pass)
	var fail *Failure
	if authOK && command != "" {
		fail = s.takeFailure(strings.ToLower(command))
	}
	handler := s.handlers[strings.ToLower(command)]
	s.mu.Unlock()

	switch {
	case !authOK:
		w.Header().Set("WWW-Authenticate", `Basic realm="EMS API"`)
		writeBody(w, http.StatusUnauthorized, "Unauthorized", "text/plain")
		return
	case command == "":
		writeJSON(w, http.StatusOK, Fail("command not known. Type help for list of commands"))
		return
	case fail != nil:
		s.writeFailure(w, *fail)
		return
	case perr != nil:
		writeJSON(w, http.StatusOK, Fail("Syntax error. "+perr.Error()))
		return
	case handler != nil:
		status, body := handler(params)
		if status == 0 {
			status = http.StatusOK
		}
		switch b := body.(type) {
		case string:
			writeBody(w, status, b, "text/plain")
		case []byte:
			writeBody(w, status, string(b), "text/plain")
		default:
			writeJSON(w, status, body)
		}
		return
	}
	s.mu.Lock()
	body := s.state.answer(command, params)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// takeFailure pops the next scripted failure for a command, the command's own before Any's.
func (s *Server) takeFailure(key string) *Failure {
	for _, k := range []string{key, Any} {
		q := s.failures[k]
		if len(q) == 0 {
			continue
		}
		f := q[0].f
		q[0].n--
		if q[0].n == 0 {
			s.failures[k] = q[1:]
		}
		return &f
	}
	return nil
}

func (s *Server) writeFailure(w http.ResponseWriter, f Failure) {
	switch {
	case f.Drop:
		hj, ok := w.(http.Hijacker)
		if !ok {
			s.t.Errorf("emstest: cannot drop the connection: no http.Hijacker")
			return
		}
		conn, _, err := hj.Hijack()
		if err != nil {
			s.t.Errorf("emstest: hijack: %v", err)
			return
		}
		_ = conn.Close()
	case f.EMSFail != "":
		writeJSON(w, http.StatusOK, Fail(f.EMSFail))
	default:
		status := f.HTTPStatus
		if status == 0 {
			status = http.StatusInternalServerError
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		if f.Body != "" {
			ct := f.ContentType
			if ct == "" {
				ct = "text/plain"
			}
			writeBody(w, status, f.Body, ct)
			return
		}
		writeBody(w, status, fmt.Sprintf("%d %s", status, http.StatusText(status)), "text/plain")
	}
}

// writeJSON answers as EMS does: JSON with Content-Type text/plain (reference §3.2).
func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		writeBody(w, http.StatusInternalServerError, "emstest: encode answer: "+err.Error(), "text/plain")
		return
	}
	writeBody(w, status, string(b), "text/plain")
}

func writeBody(w http.ResponseWriter, status int, body, contentType string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// state is the little the fake remembers between calls. The caller holds Server.mu.
type state struct {
	nextConfigID uint64
	nextTimerID  uint64
	configs      map[string][]map[string]any // by listConfig kind
	timers       []map[string]any
}

func newState() state {
	return state{nextConfigID: 1, nextTimerID: 1, configs: map[string][]map[string]any{}}
}

// kinds lists the listConfig kinds in the order EMS prints them.
var kinds = []string{"pull", "push", "hls", "hds", "mss", "dash", "record", "process"}

// answer builds the default answer to a command.
func (st *state) answer(command string, ps emsclient.Params) map[string]any {
	get := func(k string) string { v, _ := ps.Get(k); return v }
	switch strings.ToLower(command) {
	case "pullstream":
		cfg := st.newConfig("pull", 1, ps)
		if get("localStreamName") == "" {
			cfg["localStreamName"] = fmt.Sprintf("stream_%d", cfg["configId"])
		}
		return Success("Stream "+get("uri")+" enqueued for pulling", cfg)
	case "pushstream":
		cfg := st.newConfig("push", 2, ps)
		if get("targetStreamName") == "" {
			cfg["targetStreamName"] = get("localStreamName")
		}
		return Success("Local stream "+get("localStreamName")+" enqueued for pushing to "+get("uri"), cfg)
	case "record":
		cfg := st.newConfig("record", 7, ps)
		typ := get("type")
		if typ == "" {
			typ = "mp4"
			cfg["type"] = typ
		}
		p := get("pathToFile")
		if path.Ext(p) == "" {
			p += "." + typ
		}
		cfg["computedPathToFile"] = p
		return Success("Stream "+get("localStreamName")+" enqueued for recording", cfg)
	case "createhlsstream":
		return st.newGroup("hls", 3, ps)
	case "createhdsstream":
		return st.newGroup("hds", 4, ps)
	case "createmssstream":
		return st.newGroup("mss", 5, ps)
	case "createdashstream":
		return st.newGroup("dash", 6, ps)
	case "removeconfig":
		id, _ := strconv.ParseUint(get("id"), 10, 64)
		group := get("groupName")
		var removed []any
		for _, k := range kinds {
			st.configs[k] = slices.DeleteFunc(st.configs[k], func(c map[string]any) bool {
				if (id != 0 && c["configId"] == id) || (group != "" && c["groupName"] == group) {
					removed = append(removed, c["configId"])
					return true
				}
				return false
			})
		}
		return Success("Configuration removed", map[string]any{"configIds": removed})
	case "shutdownstream":
		name := get("localStreamName")
		if name != "" && get("permanently") != "0" {
			for _, k := range []string{"pull", "push", "record"} {
				st.configs[k] = slices.DeleteFunc(st.configs[k], func(c map[string]any) bool {
					return c["localStreamName"] == name
				})
			}
		}
		id, _ := strconv.ParseUint(get("id"), 10, 64)
		return Success("Stream closed", map[string]any{
			"protocolStackInfo": map[string]any{"carrier": map[string]any{}, "stack": []any{}},
			"streamInfo":        map[string]any{"uniqueId": id, "name": name},
		})
	case "liststreams":
		return Success("Available streams", []any{})
	case "liststreamsids":
		return Success("Available stream IDs", []any{})
	case "getstreaminfo":
		id, _ := strconv.ParseUint(get("id"), 10, 64)
		if id == 0 {
			id = 1
		}
		name := get("localStreamName")
		if name == "" {
			name = "stream"
		}
		return Success("Stream information", map[string]any{"uniqueId": id, "name": name, "type": "INR", "typeNumeric": uint64(5282249572905648128)})
	case "listconfig":
		out := map[string]any{}
		for _, k := range kinds {
			out[k] = append([]map[string]any{}, st.configs[k]...)
		}
		return Success("Run-time configuration", out)
	case "settimer":
		t := map[string]any{"timerId": st.nextTimerID, "triggerCount": 0, "value": numberOrString(get("value"))}
		st.nextTimerID++
		for k, v := range ps.UserVars() {
			t[k] = v
		}
		st.timers = append(st.timers, t)
		return Success("Custom timer enqueued", t)
	case "listtimers":
		return Success("Available timers", append([]map[string]any{}, st.timers...))
	case "removetimer":
		id, _ := strconv.ParseUint(get("id"), 10, 64)
		st.timers = slices.DeleteFunc(st.timers, func(t map[string]any) bool { return t["timerId"] == id })
		return Success("Timer removed", nil)
	case "version":
		return Success("Version", map[string]any{
			"banner":        "EvoStream Media Server (www.evostream.com) version 1.7.1 build 4497 with hash: b62c38564f9e5cee5f76ea30ca03d3a25fdc6d87 on branch: feature/azure_license - PacMan|m| - (built for Ubuntu-16.04-x86_64 on 2016-08-11T10:22:40.000)",
			"branchName":    "feature/azure_license",
			"buildDate":     "2016-08-11T10:22:40.000",
			"buildNumber":   "4497",
			"codeName":      "PacMan|m|",
			"hash":          "b62c38564f9e5cee5f76ea30ca03d3a25fdc6d87",
			"releaseNumber": "1.7.1",
		})
	}
	return Success(command+" done", map[string]any{})
}

// newConfig stores a config echoing the parameters, with a new configId.
func (st *state) newConfig(kind string, op int, ps emsclient.Params) map[string]any {
	cfg := map[string]any{
		"configId":      st.nextConfigID,
		"operationType": op,
		"keepAlive":     true,
		"status": map[string]any{
			"current":  map[string]any{"code": 0, "description": "Streaming", "timestamp": 0, "uniqueStreamId": 0},
			"previous": map[string]any{"code": 1, "description": "Connecting", "timestamp": 0, "uniqueStreamId": 0},
		},
	}
	st.nextConfigID++
	for _, p := range ps {
		cfg[p.Key] = echo(p)
	}
	st.configs[kind] = append(st.configs[kind], cfg)
	return cfg
}

// newGroup stores one config per local stream of a create*Stream group.
func (st *state) newGroup(kind string, op int, ps emsclient.Params) map[string]any {
	group, _ := ps.Get("groupName")
	if group == "" {
		group = fmt.Sprintf("%s_group_%08d", kind, st.nextConfigID)
	}
	names := []string{}
	if p, ok := ps.Lookup("localStreamNames"); ok {
		names = p.Values
	}
	ids := []uint64{}
	for _, n := range names {
		var one emsclient.Params
		for _, p := range ps {
			if !strings.EqualFold(p.Key, "localStreamNames") {
				one = append(one, p)
			}
		}
		cfg := st.newConfig(kind, op, one)
		cfg["groupName"] = group
		cfg["localStreamName"] = n
		ids = append(ids, cfg["configId"].(uint64))
	}
	tf, _ := ps.Get("targetFolder")
	data := map[string]any{"configIds": ids, "groupName": group, "localStreamNames": names, "targetFolder": tf}
	if kind == "hls" {
		data["hlsVersion"] = 3
	}
	return Success(strings.ToUpper(kind)+" stream created", data)
}

// echo turns a parameter back into the JSON value EMS would store: lists stay lists, numbers
// become numbers, 1/0 of known booleans become booleans.
func echo(p emsclient.Param) any {
	if len(p.Values) > 1 {
		return p.Values
	}
	v := p.Value()
	if strings.HasPrefix(p.Key, "_") {
		return v // EMS echoes user variables as strings
	}
	if boolParams[strings.ToLower(p.Key)] && (v == "0" || v == "1") {
		return v == "1"
	}
	return numberOrString(v)
}

var boolParams = map[string]bool{
	"keepalive": true, "forcetcp": true, "overwrite": true, "waitforidr": true, "winqtcompat": true,
	"chunkonidr": true, "overwritedestination": true, "createmasterplaylist": true,
	"cleanupdestination": true, "cleanuponclose": true, "hlsresume": true, "audioonly": true,
	"usebyterange": true, "usesystemtime": true, "datefolderstructure": true, "islive": true,
	"dynamicprofile": true, "isaudio": true, "sendrenewstream": true, "rtmpabsolutetimestamps": true,
	"sendchunksizerequest": true, "usesourcepts": true,
}

func numberOrString(v string) any {
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		return n
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	return v
}
