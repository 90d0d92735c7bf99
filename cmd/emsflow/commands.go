package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/internal/admin"
	"github.com/emsflow/emsflow/internal/journal"
)

func newAdmin(j *journal.Journal, log zerolog.Logger) http.Handler { return admin.New(j, log) }

// cmdCheckConfig loads, validates and builds every plugin (constructors do no I/O), then prints
// the effective configuration with secrets redacted. A disabled plugin's problems are warnings:
// serve does not build it, and the EvoStream web services' own config files list plugins
// disabled with placeholder parameters, which must not stop them loading.
func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	reg := registry()
	cfg, err := loadConfig(*path, os.Environ(), reg)
	var disabledErr error
	if err == nil {
		hc := newHTTPClient()
		clients, cerr := emsClients(cfg, hc)
		_, perr := buildPlugins(cfg, reg, clients, hc, prometheus.NewRegistry(), zerolog.Nop(), true)
		_, disabledErr = buildPlugins(cfg, reg, clients, hc, prometheus.NewRegistry(), zerolog.Nop(), false)
		_, werr := webhookConfig(cfg)
		if cerr != nil || perr != nil || werr != nil {
			err = joinNonNil(cerr, perr, werr)
		}
	}
	if disabledErr != nil {
		fmt.Fprintf(stderr, "warning: disabled plugins that would not start if enabled:\n%s\n", indentLines(disabledErr.Error()))
	}
	if err != nil {
		fmt.Fprintf(stderr, "configuration %s is invalid:\n%s\n", orDefault(*path, "<embedded defaults>"), indentLines(err.Error()))
		return 1
	}
	out, err := cfg.Redacted()
	if err != nil {
		fmt.Fprintf(stderr, "print configuration: %v\n", err)
		return 1
	}
	stdout.Write(out)
	fmt.Fprintln(stdout)
	fmt.Fprintf(stderr, "configuration %s is valid\n", orDefault(cfg.File, "<embedded defaults>"))
	return 0
}

func joinNonNil(errs ...error) error {
	var parts []string
	for _, e := range errs {
		if e != nil {
			parts = append(parts, e.Error())
		}
	}
	return fmt.Errorf("%s", strings.Join(parts, "\n"))
}

// cmdDeadLetters talks to a running service's admin endpoints, found from the configuration.
func cmdDeadLetters(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "redrive") {
		fmt.Fprintln(stderr, "usage: emsflow deadletters list|redrive [--config FILE] [--plugin NAME] [--seq N] [--limit N]")
		return 2
	}
	fs := flag.NewFlagSet("deadletters", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	plugin := fs.String("plugin", "", "plugin instance name")
	seq := fs.Uint64("seq", 0, "one dead letter's sequence number")
	limit := fs.Int("limit", 100, "list at most this many")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path, os.Environ(), registry())
	if err != nil {
		fmt.Fprintf(stderr, "configuration is invalid:\n%s\n", indentLines(err.Error()))
		return 1
	}
	host, port, err := net.SplitHostPort(cfg.Server.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "server.listen %q: %v\n", cfg.Server.Listen, err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	q := url.Values{}
	if *plugin != "" {
		q.Set("plugin", *plugin)
	}
	method, p := http.MethodGet, "/admin/deadletters"
	if args[0] == "list" {
		q.Set("limit", fmt.Sprint(*limit))
	} else {
		method, p = http.MethodPost, "/admin/deadletters/redrive"
		if *seq != 0 {
			q.Set("seq", fmt.Sprint(*seq))
		}
	}
	u := "http://" + net.JoinHostPort(host, port) + p + "?" + q.Encode()
	req, _ := http.NewRequest(method, u, bytes.NewReader(nil))
	if tok := cfg.Server.AuthToken.Reveal(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "is emsflow running? %s %s: %v\n", method, p, err)
		return 1
	}
	defer resp.Body.Close()
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		fmt.Fprintf(stderr, "read the answer to %s %s: %v\n", method, p, err)
		return 1
	}
	if resp.StatusCode >= 300 {
		return 1
	}
	return 0
}
