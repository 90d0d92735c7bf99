#!/usr/bin/env bash
# Ingest benchmark: emsflow's durable webhook against a bare net/http handler, same load, same run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "wrk not found: installing it from Debian's packages"
  [ "$(id -u)" = 0 ] || { echo "error: run 'sudo apt-get install -y wrk'"; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
go run ./internal/tools/benchingest -emsflow bin/emsflow -duration "${BENCH_DURATION:-20s}" -connections 64 \
  -rates "${BENCH_RATES:-100,1000,5000}"
