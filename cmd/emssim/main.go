// Command emssim runs an EMS simulator: EMS's HTTP API on --api, event POSTs to every --sink,
// real media written by ffmpeg, and the /_sim/ admin endpoints (publish, unpublish, faults,
// events) on both the API and the --rtmp address. See internal/emssim for the behaviour.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/internal/emssim"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "emssim:", err)
		os.Exit(1)
	}
}

// parseSink reads "URL[;events=a,b][;customData=<json>]".
func parseSink(v string) (emssim.Sink, error) {
	parts := strings.Split(v, ";")
	sk := emssim.Sink{URL: strings.TrimSpace(parts[0])}
	if sk.URL == "" {
		return sk, errors.New("sink without url")
	}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(p, "=")
		switch strings.TrimSpace(k) {
		case "events":
			for _, e := range strings.Split(val, ",") {
				if e = strings.TrimSpace(e); e != "" {
					sk.EnabledEvents = append(sk.EnabledEvents, e)
				}
			}
		case "customData":
			if err := json.Unmarshal([]byte(val), &sk.CustomData); err != nil {
				return sk, fmt.Errorf("sink customData is not JSON: %w", err)
			}
		default:
			return sk, fmt.Errorf("unknown sink option %q (want events= or customData=)", k)
		}
	}
	return sk, nil
}

func run(argv []string) error {
	fs := flag.NewFlagSet("emssim", flag.ContinueOnError)
	var cfg emssim.Config
	var publish []string
	fs.StringVar(&cfg.APIAddr, "api", "127.0.0.1:7777", "HTTP API listen address (EMS's inboundHttpJsonCli)")
	fs.StringVar(&cfg.RTMPAddr, "rtmp", "127.0.0.1:1935", "address pushes target and pulls read from (serves /_sim/ for peers)")
	fs.Func("sink", "RPC event sink: URL[;events=a,b][;customData=<json>] (repeatable)", func(v string) error {
		sk, err := parseSink(v)
		if err == nil {
			cfg.Sinks = append(cfg.Sinks, sk)
		}
		return err
	})
	fs.Func("publish", "publish a synthetic inbound stream with this name at start (repeatable)", func(v string) error {
		publish = append(publish, v)
		return nil
	})
	fs.StringVar(&cfg.MediaDir, "media-dir", "", "folder relative targetFolder/pathToFile values are resolved against")
	fs.StringVar(&cfg.IP, "ip", "127.0.0.1", "the simulator's address in payloads")
	fs.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "seed for faults and generated names")
	fs.StringVar(&cfg.FFmpeg, "ffmpeg", "ffmpeg", "ffmpeg binary")
	fs.IntVar(&cfg.FPS, "fps", 10, "frame rate of the synthetic source")
	fs.DurationVar(&cfg.ReconnectInterval, "reconnect", time.Second, "keepAlive reconnect interval")
	fs.BoolVar(&cfg.AcceptUnknownPeers, "accept-unknown-peers", false, "pulls and pushes to addresses without a simulator succeed with a synthetic peer")
	faults := fs.String("faults", "", `initial faults as JSON, e.g. {"dropRate":0.1,"api":{"pushStream":{"fail":"boom"}}}`)
	level := fs.String("log-level", "info", "log level")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		return fmt.Errorf("parse log level: %w", err)
	}
	cfg.Log = zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Logger()
	if *faults != "" {
		dec := json.NewDecoder(strings.NewReader(*faults))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg.Faults); err != nil {
			return fmt.Errorf("parse faults: %w", err)
		}
	}
	sim, err := emssim.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sim.Start(ctx); err != nil {
		return err
	}
	for _, name := range publish {
		if _, err := sim.Publish(name); err != nil {
			_ = sim.Close()
			return fmt.Errorf("publish %s: %w", name, err)
		}
	}
	<-ctx.Done()
	return sim.Close()
}
