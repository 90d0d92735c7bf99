// Command benchingest measures webhook ingest: a realistic inStreamCreated (about 2 KB, a
// distinct id per request so the journal's dedupe does not short-cut anything) POSTed by wrk
// with 64 connections to emsflow's durable webhook, and in the same run the same load against a
// bare net/http handler that answers 200 and does nothing. emsflow runs twice, each on a fresh
// journal: with no plugin subscribed (ingest alone: webhook and journal), and with EventLog
// consuming the same events while they arrive (the dispatcher competes for the same cores). The
// three targets take turns in slices (-slices, 4 of 5 s by default), since the shared machine's
// speed drifts over a minute. It prints events/s, p50 and p99, the ratio to the bare handler
// and emsflow's peak RSS for each, and fails unless the journal holds every accepted event
// (journal only) and EventLog wrote every accepted event once. With -rates it then measures
// emsflow with EventLog at fixed rates below saturation (peak RSS and latency at what a fleet
// really sends).
//
//	go run ./internal/tools/benchingest -emsflow bin/emsflow -duration 20s
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emsflow/emsflow/internal/loopback"
)

func main() {
	bare := flag.Bool("bare", false, "run the bare handler on -addr (used by the benchmark itself)")
	addr := flag.String("addr", "", "listen address for -bare")
	bin := flag.String("emsflow", "bin/emsflow", "emsflow binary")
	fixture := flag.String("fixture", "webhook/testdata/inStreamCreated.json", "event body template")
	dur := flag.Duration("duration", 20*time.Second, "load duration per target")
	conns := flag.Int("connections", 64, "wrk connections")
	slices := flag.Int("slices", 4, "slices each target's load is cut into, the targets taking turns")
	rates := flag.String("rates", "", "after the saturating run, comma-separated fixed rates (events/s) to measure emsflow's peak RSS and latency at, each on a fresh journal")
	flag.Parse()
	if *bare {
		serveBare(*addr)
		return
	}
	if *slices < 1 || *dur/time.Duration(*slices) < time.Second {
		fmt.Fprintln(os.Stderr, "benchingest: -slices must be at least 1, and -duration/-slices at least 1s")
		os.Exit(2)
	}
	if err := run(*bin, *fixture, *dur, *conns, *slices); err != nil {
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
	rss      int64  // peak, bytes
	p99Range string // of the slices, for a combined result
	rps      float64
	p50, p99 time.Duration
	non2xx   int
	requests int
}

func run(bin, fixture string, dur time.Duration, conns, slices int) error {
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

	// Baseline: the bare handler, in its own process like emsflow.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bareAddr, err := loopback.Addr()
	if err != nil {
		return err
	}
	bareCmd := exec.Command(self, "-bare", "-addr", bareAddr)
	if err := bareCmd.Start(); err != nil {
		return err
	}
	defer func() { _ = bareCmd.Process.Kill() }()
	if err := waitHTTP("http://" + bareAddr + "/"); err != nil {
		return err
	}

	// emsflow twice, each on a fresh journal: with no plugin subscribed (ingest as such: webhook
	// and journal), and with EventLog consuming the events as they arrive.
	jDir, eDir := filepath.Join(tmp, "journal-only"), filepath.Join(tmp, "eventlog")
	jEms, jAddr, err := startEmsflow(bin, jDir, false)
	if err != nil {
		return err
	}
	defer func() { _ = jEms.Process.Kill() }()
	eEms, eAddr, err := startEmsflow(bin, eDir, true)
	if err != nil {
		return err
	}
	defer func() { _ = eEms.Process.Kill() }()

	// This machine's speed drifts (it is shared), so the load is cut into slices taken in turn
	// (bare, journal only, EventLog, bare, ...): a ratio then compares slices seconds apart, not
	// runs a minute apart.
	slice := dur / time.Duration(slices)
	fmt.Printf("ingest benchmark: %d-byte inStreamCreated, wrk %d connections, %s per target in %d slices of %s taken in turn, %d cores\n",
		len(body), conns, dur, slices, slice, numCPU())
	var bs, js, es []result
	var lagged string
	// Journal only: peak RSS at the end of each slice, and whether the journal was full by then.
	// Past max_bytes the journal drops its oldest events. Left to nats-server's own limit that
	// cost memory of its own (README, Development), so the two are still reported apart.
	var jHWM []int64
	var jFull []bool
	for i := range slices {
		script := filepath.Join(tmp, fmt.Sprintf("post-%d.lua", i+1))
		if err := os.WriteFile(script, []byte(luaScript(string(body), i+1)), 0o600); err != nil {
			return err
		}
		b, err := load("http://"+bareAddr+"/evowebservices", script, slice, conns)
		if err != nil {
			return fmt.Errorf("bare handler: %w", err)
		}
		j, err := load("http://"+jAddr+"/evowebservices", script, slice, conns)
		if err != nil {
			return fmt.Errorf("emsflow (journal only): %w", err)
		}
		jHWM = append(jHWM, peakRSS(jEms.Process.Pid))
		// One scrape: requests still in flight when wrk stopped may store events between two.
		v := metrics(jAddr, heldRe, lastSeqRe)
		jFull = append(jFull, v[0] != "?" && v[1] != "?" && v[0] != v[1])
		e, err := load("http://"+eAddr+"/evowebservices", script, slice, conns)
		if err != nil {
			return fmt.Errorf("emsflow + EventLog: %w", err)
		}
		bs, js, es = append(bs, b), append(js, j), append(es, e)
		// How far the dispatcher kept up: ingest alone is faster when EventLog falls behind. It
		// catches up before the next slice, so its backlog takes no CPU from the others.
		handled, accepted := metric(eAddr, handRe), metric(eAddr, accRe)
		t0 := time.Now()
		settleEventLog(eAddr, 2*time.Minute)
		if i == slices-1 {
			lagged = fmt.Sprintf("EventLog had handled %s of %s events when the last slice ended, all %s later",
				handled, accepted, time.Since(t0).Round(100*time.Millisecond))
		}
	}
	b, j, e := combine("bare net/http", bs), combine("emsflow (journal only)", js), combine("emsflow + EventLog", es)
	j.rss, e.rss = peakRSS(jEms.Process.Pid), peakRSS(eEms.Process.Pid)

	// p50 and p99 are the medians of the slices' (wrk reports no histogram to merge).
	fmt.Printf("%-24s %10s %9s %9s %17s %8s %14s\n", "target", "events/s", "p50", "p99", "p99 per slice", "non-2xx", "peak RSS (MB)")
	for _, r := range []result{b, j, e} {
		rss := ""
		if r.rss > 0 {
			rss = fmt.Sprintf("%.1f", float64(r.rss)/1e6)
		}
		fmt.Printf("%-24s %10.0f %9s %9s %17s %8d %14s\n", r.name, r.rps, r.p50, r.p99, r.p99Range, r.non2xx, rss)
	}
	fmt.Printf("ingest (journal only): ratio %.2f (per slice %s; target >= 0.5), p99 %s (median of the slices' p99, which range %s; target <= 10ms), peak RSS %.1f MB (target <= 80 MB; %s)\n",
		j.rps/b.rps, ratios(js, bs), j.p99, j.p99Range, float64(j.rss)/1e6, rssBeforeFull(jHWM, jFull))
	fmt.Printf("ingest while EventLog consumes: ratio %.2f (per slice %s), p99 %s, peak RSS %.1f MB\n",
		e.rps/b.rps, ratios(es, bs), e.p99, float64(e.rss)/1e6)

	// Nothing lost: the journal stored every event emsflow accepted (the ids are distinct, so
	// dedupe must not drop any), and EventLog wrote every accepted event once. A fast machine
	// fills the default 1 GiB max_bytes within the run; from then on each event stored drops the
	// oldest, so the check counts what the stream ever stored (its last sequence on a fresh
	// journal), not what it still holds.
	var errs []error
	jAcc, stored := settle(jAddr, accRe, lastSeqRe)
	held := metric(jAddr, heldRe)
	retention := "and holds them all"
	if held != stored {
		h, _ := strconv.Atoi(held)
		s, _ := strconv.Atoi(stored)
		retention = fmt.Sprintf("and holds %s: the 1 GiB max_bytes dropped the oldest %d", held, s-h)
	}
	fmt.Printf("journal only: emsflow accepted %s events (%d requests), the journal stored %s %s\n", jAcc, j.requests, stored, retention)
	if jAcc == "?" || jAcc != stored {
		errs = append(errs, fmt.Errorf("journal only: accepted %s events, journal stored %s", jAcc, stored))
	}
	settleEventLog(eAddr, 2*time.Minute)
	eAcc := metric(eAddr, accRe)
	lines, distinct := countLines(filepath.Join(eDir, "events.jsonl*"))
	fmt.Printf("with EventLog: emsflow accepted %s events (%d requests); EventLog wrote %d lines, %d distinct; %s; fetch errors (stalls): %s\n",
		eAcc, e.requests, lines, distinct, lagged, metric(eAddr, consErrRe))
	if distinct != lines {
		errs = append(errs, fmt.Errorf("EventLog wrote %d duplicate lines", lines-distinct))
	}
	if eAcc != strconv.Itoa(distinct) {
		errs = append(errs, fmt.Errorf("EventLog logged %d distinct events, the webhook accepted %s", distinct, eAcc))
	}
	return errors.Join(errs...)
}

// rssBeforeFull says the peak RSS of the journal-only emsflow up to the last slice that ended
// before its journal reached max_bytes, and the peaks slice by slice, full ones marked.
func rssBeforeFull(hwm []int64, full []bool) string {
	var before int64 = -1
	var per []string
	for i, h := range hwm {
		mark := ""
		if full[i] {
			mark = " full"
		} else {
			before = h
		}
		per = append(per, fmt.Sprintf("%.1f%s", float64(h)/1e6, mark))
	}
	at := "the journal was full after the first slice"
	if before >= 0 {
		at = fmt.Sprintf("%.1f MB until the journal reached its max_bytes", float64(before)/1e6)
		if !full[len(full)-1] {
			at = "the journal stayed below its max_bytes"
		}
	}
	return fmt.Sprintf("%s; after each slice: %s", at, strings.Join(per, ", "))
}

// combine sums the slices of one target: events/s over the whole time under load, the median
// of the slices' p50 and p99, and the range of their p99.
func combine(name string, rs []result) result {
	out := result{name: name}
	var secs float64
	var p50s, p99s []time.Duration
	for _, r := range rs {
		out.requests += r.requests
		out.non2xx += r.non2xx
		secs += float64(r.requests) / r.rps
		p50s, p99s = append(p50s, r.p50), append(p99s, r.p99)
	}
	out.rps = float64(out.requests) / secs
	slices.Sort(p50s)
	slices.Sort(p99s)
	out.p50, out.p99 = median(p50s), median(p99s)
	out.p99Range = fmt.Sprintf("%s–%s", p99s[0].Round(10*time.Microsecond), p99s[len(p99s)-1].Round(10*time.Microsecond))
	return out
}

// median of sorted durations.
func median(d []time.Duration) time.Duration {
	if n := len(d); n%2 == 0 {
		return (d[n/2-1] + d[n/2]) / 2
	}
	return d[len(d)/2]
}

// ratios is the range of the per-slice ratios a[i]/b[i].
func ratios(a, b []result) string {
	lo, hi := 0.0, 0.0
	for i := range a {
		r := a[i].rps / b[i].rps
		if i == 0 || r < lo {
			lo = r
		}
		if r > hi {
			hi = r
		}
	}
	return fmt.Sprintf("%.2f–%.2f", lo, hi)
}

// inputs returns the absolute path of the emsflow binary and the event body template, compact.
func inputs(bin, fixture string) (string, []byte, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", nil, err
	}
	body, err := os.ReadFile(fixture)
	if err != nil {
		return "", nil, err
	}
	// EMS posts each event as one line of compact JSON; the fixture is wrapped for reading.
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return "", nil, fmt.Errorf("fixture %s: %w", fixture, err)
	}
	return abs, compact.Bytes(), nil
}

// startEmsflow runs emsflow on a fresh journal in dir, with EventLog enabled or not, and waits
// until it is ready.
func startEmsflow(bin, dir string, eventLog bool) (*exec.Cmd, string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, "", err
	}
	addr, err := loopback.Addr()
	if err != nil {
		return nil, "", err
	}
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

// rateConns is the number of wrk connections of a fixed-rate run: one per 50 events/s, so
// that each connection waits 20 ms between requests, between 10 and 200 connections. wrk's
// delay runs after each answer, so a connection sends one request per delay plus latency: with
// a delay long against the latency the rate comes close to the target (with 10 connections and
// a 2 ms delay, 5000/s came out at 3,570/s).
func rateConns(rate int) int { return min(max(rate/50, 10), 200) }

// runRates measures emsflow alone at fixed rates below saturation, each on a fresh journal:
// what an EMS fleet sends is tens to hundreds of events per second, not wrk's maximum.
func runRates(bin, fixture string, dur time.Duration, rates string) error {
	bin, body, err := inputs(bin, fixture)
	if err != nil {
		return err
	}
	fmt.Printf("\nfixed rates: wrk connections waiting between requests, %s each, fresh journal per rate\n", dur)
	fmt.Printf("%-10s %6s %12s %10s %10s %14s %12s\n", "target/s", "conns", "events/s", "p50", "p99", "peak RSS (MB)", "logged")
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
	conns := rateConns(rate)
	delayMS := max(1, conns*1000/rate)
	script := filepath.Join(tmp, "post.lua")
	lua := luaScript(string(body), 1) + fmt.Sprintf("\nfunction delay()\n  return %d\nend\n", delayMS)
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return err
	}
	ems, addr, err := startEmsflow(bin, tmp, true)
	if err != nil {
		return err
	}
	defer func() { _ = ems.Process.Kill() }()
	r, err := load("http://"+addr+"/evowebservices", script, dur, conns)
	if err != nil {
		return err
	}
	rss := peakRSS(ems.Process.Pid)
	settleEventLog(addr, 2*time.Minute)
	lines, distinct := countLines(filepath.Join(tmp, "events.jsonl*"))
	fmt.Printf("%-10d %6d %12.0f %10s %10s %14.1f %12d\n", rate, conns, r.rps, r.p50, r.p99, float64(rss)/1e6, distinct)
	if distinct != lines || r.non2xx > 0 {
		return fmt.Errorf("%d duplicate lines, %d non-2xx answers", lines-distinct, r.non2xx)
	}
	return nil
}

// luaScript makes each request's body unique by rewriting the envelope id: run (from 1), wrk's
// thread number and a per-thread counter. Every wrk invocation starts its counters again, so
// each invocation against the same journal needs its own run number, or its events are
// duplicates of the previous invocation's (dropped by dedupe, or stored twice once the dedupe
// window has passed).
func luaScript(body string, run int) string {
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
  local id = string.format("%d%%d%%012d", tid, counter)
  local b = string.gsub(template, "__ID__", id)
  return wrk.format(nil, nil, nil, b)
end
`, body, run)
}

var (
	reqRe     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	nonRe     = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	totRe     = regexp.MustCompile(`(\d+) requests in`)
	pctRe     = regexp.MustCompile(`^\s+(50|99)%\s+([\d.]+)(us|ms|s)`)
	cpuRe     = regexp.MustCompile(`^processor`)
	hwmRe     = regexp.MustCompile(`VmHWM:\s+(\d+) kB`)
	accRe     = regexp.MustCompile(`emsflow_webhook_events_accepted_total\{[^}]*\} (\S+)`)
	handRe    = regexp.MustCompile(`emsflow_plugin_handled_total\{plugin="EventLog"\} (\S+)`)
	consErrRe = regexp.MustCompile(`emsflow_plugin_consume_errors_total\{plugin="EventLog"\} (\S+)`)
	heldRe    = regexp.MustCompile(`emsflow_journal_messages\{stream="events"\} (\S+)`)
	lastSeqRe = regexp.MustCompile(`emsflow_journal_last_sequence\{stream="events"\} (\S+)`)
	unitNS    = map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9}
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
			d := time.Duration(math.Round(v*unitNS[m[3]]/1e3)) * time.Microsecond // wrk prints at most µs precision
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
func metric(addr string, re *regexp.Regexp) string { return metrics(addr, re)[0] }

// metrics returns the sums of the samples of each metric from one scrape, as text ("?" each when
// the scrape fails).
func metrics(addr string, res ...*regexp.Regexp) []string {
	out := make([]string, len(res))
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		for i := range out {
			out[i] = "?"
		}
		return out
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for i, re := range res {
		var sum float64
		for _, m := range re.FindAllSubmatch(body, -1) {
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			sum += v
		}
		out[i] = strconv.FormatFloat(sum, 'f', 0, 64)
	}
	return out
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
