# emsflow: `make run` runs the service, `make test` runs every test.
# Tools the tests need are installed or built here, cached under .tools/ (git-ignored).

SHELL        := /bin/bash
GO           ?= go
TOOLS        := $(CURDIR)/.tools
TOOLBIN      := $(TOOLS)/bin
VERSITYGW    := $(TOOLBIN)/versitygw
VERSITYGW_VERSION := v1.8.0
GOLANGCI     := $(TOOLBIN)/golangci-lint
GOLANGCI_VERSION := v2.6.2
CONFIG       ?= $(if $(wildcard config.ini),config.ini,config.ini.example)
VERSION      ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -X main.version=$(VERSION)

export PATH := $(TOOLBIN):$(PATH)
export EMSFLOW_VERSITYGW := $(VERSITYGW)

.PHONY: run build test test-short bench lint tools ffmpeg versitygw demo clean

## run: the service on config.ini if present, else config.ini.example (embedded journal under ./data)
run: build
	./bin/emsflow serve --config $(CONFIG)

## build: bin/emsflow and bin/emssim
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/emsflow ./cmd/emsflow
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/emssim ./cmd/emssim

## test: every test, race detector on, integration included
test: tools
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

## test-short: unit tests only (no tool installs)
test-short:
	$(GO) test -short -count=1 ./...

## bench: webhook ingest against a bare handler, S3 upload against a plain transfermanager loop
bench: BENCH_COUNT ?= 3
bench: tools
	$(GO) build -o bin/emsflow ./cmd/emsflow
	./scripts/bench-ingest.sh
	@echo
	@echo "s3 upload benchmark: 1 MB segments at 50 segments/s over 4 streams, versitygw on loopback; median of $(BENCH_COUNT) runs"
	@set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkUpload$$' -benchtime 1x -count $(BENCH_COUNT) -timeout 10m ./plugins/s3upload/ | awk '\
	  function median(name,   n, i, j, v, a) { \
	    n = split(runs[name], a, " "); \
	    for (i = 2; i <= n; i++) { v = a[i] + 0; for (j = i - 1; j > 0 && a[j] + 0 > v; j--) a[j + 1] = a[j]; a[j + 1] = v } \
	    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 \
	  } \
	  /^BenchmarkUpload/ { for (i = 3; i < NF; i += 2) runs[$$(i + 1)] = runs[$$(i + 1)] " " $$i; found++ } \
	  { print } \
	  END { \
	    if (!found) { print "error: BenchmarkUpload reported no figures"; exit 1 } \
	    printf "event-to-object latency: p50 %.1f ms, p99 %.1f ms\n", median("latency-p50-ms"), median("latency-p99-ms"); \
	    printf "throughput: emsflow uploader %.1f MB/s, plain transfermanager loop %.1f MB/s (same files, same run)\n", median("uploader-MB/s"), median("plain-MB/s"); \
	    r = median("ratio"); \
	    printf "ratio uploader/plain: %.2f (target >= 0.8; runs:%s)%s\n", r, runs["ratio"], (r < 0.8 ? "  BELOW TARGET" : "") \
	  }'

## lint: gofmt, go vet, golangci-lint
lint: $(GOLANGCI)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GOLANGCI) run ./...

## tools: everything the tests need (ffmpeg from Debian, versitygw built at a pinned version)
tools: ffmpeg versitygw

ffmpeg:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  echo "ffmpeg not found: installing it from Debian's packages (needs root)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: ffmpeg is missing and I am not root: run 'sudo apt-get install -y ffmpeg'"; exit 1; fi; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
	    || { echo "error: 'apt-get install ffmpeg' failed; install ffmpeg and ffprobe by hand"; exit 1; }; \
	fi

versitygw: $(VERSITYGW)
$(VERSITYGW):
	@echo "building versitygw $(VERSITYGW_VERSION) into $(TOOLBIN) (about a minute, once)"
	@mkdir -p $(TOOLBIN)
	cd /tmp && GOBIN=$(TOOLBIN) GOFLAGS=-mod=mod $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION) \
	  || { echo "error: could not build versitygw from the Go module proxy"; exit 1; }

$(GOLANGCI):
	@mkdir -p $(TOOLBIN)
	cd /tmp && GOBIN=$(TOOLBIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

## demo: emssim with a published stream posting to emsflow; watch events.jsonl grow
demo: build
	./scripts/demo.sh

clean:
	rm -rf bin data events.jsonl*
