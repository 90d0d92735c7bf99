// Command benchingest measures webhook ingest: a realistic inStreamCreated (about 2 KB, a
// distinct id per request so the journal's dedupe does not short-cut anything) POSTed by wrk
// with 64 connections to emsflow's durable webhook, and in the same run the same load against a
// bare net/http handler that answers 200 and does nothing. emsflow runs twice, each time on a
// fresh journal: with no plugin subscribed (ingest alone: webhook and journal), and with EventLog
// consuming the same events while they arrive (the dispatcher competes for the same cores). It
// prints events/s, p50 and p99, the ratio to the bare handler and emsflow's peak RSS for each,
// and fails unless the journal holds every accepted event (journal only) and EventLog wrote every
// accepted event once. With -rates it then measures emsflow with EventLog at fixed rates below
// saturation (peak RSS and latency at what a fleet really sends).
//
//	go run ./internal/tools/benchingest -emsflow bin/emsflow -duration 20s
package main

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

func main() {
	bare := flag.Bool("bare", false, "run the bare handler on -addr (used by the benchmark itself)")
	addr := flag.String("addr", "", "listen address for -bare")
	bin := flag.String("emsflow", "bin/emsflow", "emsflow binary")
	fixture := flag.String("fixture", "webhook/testdata/inStreamCreated.json", "event body template")
	dur := flag.Duration("duration", 20*time.Second, "load duration per target")
	conns := flag.Int("connections", 64, "wrk connections")
	rates := flag.String("rates", "", "after the saturating run, comma-separated fixed rates (events/s) to measure emsflow's peak RSS and latency at, each on a fresh journal")
	flag.Parse()
	if *bare {
		serveBare(*addr)
		return
	}
	if err := run(*bin, *fixture, *dur, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "benchingest:", err)
		os.Exit(1)
	}
	if *rates != "" {
		if err := runRates(*bin, *fixture, *dur, *rates); err != nil {
			fmt.Fprintln(os.Stderr, "benchingest:", err)
			os.Exit(1)
		}
	}
}

func serveBare(addr string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	})
	if err := (&http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type result struct {
	name     string
	rss      int64 // peak, bytes
	rps      float64
	p50, p99 time.Duration
	non2xx   int
	requests int
}

func run(bin, fixture string, dur time.Duration, conns int) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk not found: install it with 'apt-get install wrk'")
	}
	bin, body, err := inputs(bin, fixture)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "benchingest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	script := filepath.Join(tmp, "post.lua")
	if err := os.WriteFile(script, []byte(luaScript(string(body))), 0o600); err != nil {
		return err
	}

	// Baseline: the bare handler, in its own process like emsflow.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bareAddr := freeAddr()
	bareCmd := exec.Command(self, "-bare", "-addr", bareAddr)
	if err := bareCmd.Start(); err != nil {
		return err
	}
	defer func() { _ = bareCmd.Process.Kill() }()
	if err := waitHTTP("http://" + bareAddr + "/"); err != nil {
		return err
	}

	fmt.Printf("ingest benchmark: %d-byte inStreamCreated, wrk %d connections, %s per target, %d cores\n",
		len(body), conns, dur, numCPU())
	b, err := load("http://"+bareAddr+"/evowebservices", script, dur, conns)
	if err != nil {
		return fmt.Errorf("bare handler: %w", err)
	}
	j, err := ingestOnly(bin, tmp, script, dur, conns)
	if err != nil {
		return err
	}
	e, err := withEventLog(bin, tmp, script, dur, conns)
	if err != nil {
		return err
	}
	fmt.Printf("%-26s %10s %10s %10s %8s %14s\n", "target", "events/s", "p50", "p99", "non-2xx", "peak RSS (MB)")
	fmt.Printf("%-26s %10.0f %10s %10s %8d %14s\n", "bare net/http", b.rps, b.p50, b.p99, b.non2xx, "")
	for _, r := range []result{j.result, e.result} {
		fmt.Printf("%-26s %10.0f %10s %10s %8d %14.1f\n", r.name, r.rps, r.p50, r.p99, r.non2xx, float64(r.rss)/1e6)
	}
	fmt.Printf("ingest (journal only): ratio %.2f (target >= 0.5), p99 %s (target <= 10ms), peak RSS %.1f MB (target <= 80 MB)\n",
		j.rps/b.rps, j.p99, float64(j.rss)/1e6)
	fmt.Printf("ingest while EventLog consumes: ratio %.2f, p99 %s, peak RSS %.1f MB\n", e.rps/b.rps, e.p99, float64(e.rss)/1e6)
	fmt.Println(j.check)
	fmt.Println(e.check)
	return errors.Join(j.err, e.err)
}

// target is one emsflow target's figures and the check that it lost nothing.
type target struct {
	result
	check string // what was verified, for the report
	err   error  // the check failed
}

// ingestOnly measures the webhook and journal alone: no plugin subscribes, so nothing reads
// the journal during the load. The journal must then hold exactly the accepted events (the
// ids are distinct, so dedupe must not drop any).
func ingestOnly(bin, dir, script string, dur time.Duration, conns int) (target, error) {
	dir = filepath.Join(dir, "journal-only")
	ems, addr, err := startEmsflow(bin, dir, false)
	if err != nil {
		return target{}, err
	}
	defer func() { _ = ems.Process.Kill() }()
	r, err := load("http://"+addr+"/evowebservices", script, dur, conns)
	if err != nil {
		return target{}, fmt.Errorf("emsflow: %w", err)
	}
	r.name, r.rss = "emsflow (journal only)", peakRSS(ems.Process.Pid)
	// Requests in flight when wrk stopped are still answered; wait until the count is stable.
	accepted, stored := settle(addr, accRe, storedRe)
	out := target{result: r, check: fmt.Sprintf("journal only: emsflow accepted %s events (%d requests), the journal holds %s", accepted, r.requests, stored)}
	if accepted == "?" || accepted != stored {
		out.err = fmt.Errorf("journal only: accepted %s events, journal holds %s", accepted, stored)
	}
	return out, nil
}

// withEventLog measures ingest while EventLog consumes the same events, and checks that every
// accepted event was written to its file once.
func withEventLog(bin, dir, script string, dur time.Duration, conns int) (target, error) {
	dir = filepath.Join(dir, "eventlog")
	ems, addr, err := startEmsflow(bin, dir, true)
	if err != nil {
		return target{}, err
	}
	defer func() { _ = ems.Process.Kill() }()
	r, err := load("http://"+addr+"/evowebservices", script, dur, conns)
	if err != nil {
		return target{}, fmt.Errorf("emsflow: %w", err)
	}
	r.name, r.rss = "emsflow + EventLog", peakRSS(ems.Process.Pid)
	// How far the dispatcher kept up: ingest alone is faster when EventLog falls behind.
	handledAtEnd, acceptedAtEnd := metric(addr, handRe), metric(addr, accRe)
	settleStart := time.Now()
	settleEventLog(addr, 2*time.Minute)
	caughtUp := time.Since(settleStart)
	accepted := metric(addr, accRe) // after the requests still in flight when wrk stopped
	lines, distinct := countLines(filepath.Join(dir, "events.jsonl*"))
	out := target{result: r, check: fmt.Sprintf("with EventLog: emsflow accepted %s events (%d requests); EventLog wrote %d lines, %d distinct; "+
		"it had handled %s of %s events when the load ended, all %s later",
		accepted, r.requests, lines, distinct, handledAtEnd, acceptedAtEnd, caughtUp.Round(100*time.Millisecond))}
	switch {
	case distinct != lines:
		out.err = fmt.Errorf("EventLog wrote %d duplicate lines", lines-distinct)
	case accepted != strconv.Itoa(distinct):
		out.err = fmt.Errorf("EventLog logged %d distinct events, the webhook accepted %s", distinct, accepted)
	}
	return out, nil
}

// luaScript makes each request's body unique by rewriting the envelope id and uniqueId.
// inputs returns the absolute path of the emsflow binary and the event body template.
func inputs(bin, fixture string) (string, []byte, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", nil, err
	}
	body, err := os.ReadFile(fixture)
	return abs, body, err
}

// startEmsflow runs emsflow on a fresh journal in dir, with EventLog enabled or not, and waits
// until it is ready.
func startEmsflow(bin, dir string, eventLog bool) (*exec.Cmd, string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, "", err
	}
	addr := freeAddr()
	cfg := filepath.Join(dir, "config.ini")
	sw := "disabled"
	if eventLog {
		sw = "enabled"
	}
	if err := os.WriteFile(cfg, []byte(`{"log": {"level": "warn"}, "journal": {"data_dir": "data"},
	  "plugins": {"EventLog": {"plugin_switch": "`+sw+`", "parameters": {"path": "events.jsonl", "max_files": 1000}}}}`), 0o600); err != nil {
		return nil, "", err
	}
	ems := exec.Command(bin, "serve", "--config", cfg)
	ems.Dir = dir
	ems.Env = append(os.Environ(), "EMSFLOW_SERVER_LISTEN="+addr)
	ems.Stderr = os.Stderr
	if err := ems.Start(); err != nil {
		return nil, "", err
	}
	if err := waitHTTP("http://" + addr + "/readyz"); err != nil {
		_ = ems.Process.Kill()
		return nil, "", err
	}
	return ems, addr, nil
}

// rateConns is the number of wrk connections of a fixed-rate run.
const rateConns = 10

// runRates measures emsflow alone at fixed rates below saturation, each on a fresh journal:
// what an EMS fleet sends is tens to hundreds of events per second, not wrk's maximum.
func runRates(bin, fixture string, dur time.Duration, rates string) error {
	bin, body, err := inputs(bin, fixture)
	if err != nil {
		return err
	}
	fmt.Printf("\nfixed rates: %d wrk connections, %s each, fresh journal per rate\n", rateConns, dur)
	fmt.Printf("%-10s %12s %10s %10s %14s %12s\n", "target/s", "events/s", "p50", "p99", "peak RSS (MB)", "logged")
	for f := range strings.SplitSeq(rates, ",") {
		rate, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || rate <= 0 {
			return fmt.Errorf("bad rate %q", f)
		}
		if err := runRate(bin, body, dur, rate); err != nil {
			return fmt.Errorf("rate %d: %w", rate, err)
		}
	}
	return nil
}

func runRate(bin string, body []byte, dur time.Duration, rate int) error {
	tmp, err := os.MkdirTemp("", "benchingest-rate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// Each connection waits between requests so that together they send about rate per second.
	delayMS := max(1, rateConns*1000/rate)
	script := filepath.Join(tmp, "post.lua")
	lua := luaScript(string(body)) + fmt.Sprintf("\nfunction delay()\n  return %d\nend\n", delayMS)
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return err
	}
	ems, addr, err := startEmsflow(bin, tmp, true)
	if err != nil {
		return err
	}
	defer func() { _ = ems.Process.Kill() }()
	r, err := load("http://"+addr+"/evowebservices", script, dur, rateConns)
	if err != nil {
		return err
	}
	rss := peakRSS(ems.Process.Pid)
	settleEventLog(addr, 2*time.Minute)
	lines, distinct := countLines(filepath.Join(tmp, "events.jsonl*"))
	fmt.Printf("%-10d %12.0f %10s %10s %14.1f %12d\n", rate, r.rps, r.p50, r.p99, float64(rss)/1e6, distinct)
	if distinct != lines || r.non2xx > 0 {
		return fmt.Errorf("%d duplicate lines, %d non-2xx answers", lines-distinct, r.non2xx)
	}
	return nil
}

func luaScript(body string) string {
	body = strings.TrimSpace(body)
	body = regexp.MustCompile(`"id":\s*\d+`).ReplaceAllString(body, `"id":__ID__`)
	// wrk runs one Lua state per thread: the thread number set in setup() keeps the ids of two
	// threads apart (with only a per-thread counter, or math.random's shared default seed, both
	// threads send the same ids, and half the load is dedupe hits instead of stored events).
	return fmt.Sprintf(`
local template = [==[%s]==]
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local id = string.format("%%d%%012d", tid, counter)
  local b = string.gsub(template, "__ID__", id)
  return wrk.format(nil, nil, nil, b)
end
`, body)
}

var (
	reqRe    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	nonRe    = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	totRe    = regexp.MustCompile(`(\d+) requests in`)
	pctRe    = regexp.MustCompile(`^\s+(50|99)%\s+([\d.]+)(us|ms|s)`)
	cpuRe    = regexp.MustCompile(`^processor`)
	hwmRe    = regexp.MustCompile(`VmHWM:\s+(\d+) kB`)
	accRe    = regexp.MustCompile(`emsflow_webhook_events_accepted_total\{[^}]*\} (\S+)`)
	handRe   = regexp.MustCompile(`emsflow_plugin_handled_total\{plugin="EventLog"\} (\S+)`)
	storedRe = regexp.MustCompile(`emsflow_journal_messages\{stream="events"\} (\S+)`)
	unitNS   = map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9}
)

func load(url, script string, dur time.Duration, conns int) (result, error) {
	out, err := exec.Command("wrk", "-t", "2", "-c", strconv.Itoa(conns), "-d", dur.String(), "--latency", "-s", script, url).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var r result
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if m := reqRe.FindStringSubmatch(line); m != nil {
			r.rps, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := nonRe.FindStringSubmatch(line); m != nil {
			r.non2xx, _ = strconv.Atoi(m[1])
		}
		if m := totRe.FindStringSubmatch(line); m != nil {
			r.requests, _ = strconv.Atoi(m[1])
		}
		if m := pctRe.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			d := time.Duration(v * unitNS[m[3]])
			if m[1] == "50" {
				r.p50 = d
			} else {
				r.p99 = d
			}
		}
	}
	if r.rps == 0 {
		return r, fmt.Errorf("could not read wrk output:\n%s", out)
	}
	return r, nil
}

func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	m := hwmRe.FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb * 1024
}

// metric returns the sum of the samples of one metric, as text.
func metric(addr string, re *regexp.Regexp) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, m := range re.FindAllSubmatch(b, -1) {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		sum += v
	}
	return strconv.FormatFloat(sum, 'f', 0, 64)
}

// settle waits until two metrics agree and stay unchanged for a second (requests still in
// flight when wrk stopped are answered by then), and returns them.
func settle(addr string, a, b *regexp.Regexp) (string, string) {
	var va, vb string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		va, vb = metric(addr, a), metric(addr, b)
		time.Sleep(time.Second)
		if va != "?" && va == vb && va == metric(addr, a) {
			break
		}
	}
	return va, vb
}

// settleEventLog waits until EventLog has handled as many events as the webhook accepted (the
// ids are distinct, so every accepted event is stored and handled once), so its file is whole.
func settleEventLog(addr string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if acc, done := metric(addr, accRe), metric(addr, handRe); acc != "?" && acc == done {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "EventLog has not handled every accepted event after %s\n", limit)
}

// countLines counts the lines of the files matching pattern, and the distinct ones (by hash).
func countLines(pattern string) (lines, distinct int) {
	files, _ := filepath.Glob(pattern)
	seen := map[[32]byte]struct{}{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			lines++
			seen[sha256.Sum256(sc.Bytes())] = struct{}{}
		}
		fh.Close()
	}
	return lines, len(seen)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	n := 0
	for l := range strings.SplitSeq(string(b), "\n") {
		if cpuRe.MatchString(l) {
			n++
		}
	}
	return n
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering after 30s", url)
}
