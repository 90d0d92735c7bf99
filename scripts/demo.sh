#!/usr/bin/env bash
# make demo: emssim (an EMS simulator) publishes a stream and writes real HLS segments with
# ffmpeg; its event sink points at emsflow, whose EventLog plugin writes every event to
# demo/events.jsonl. Watch the events flow; Ctrl-C (or DEMO_SECONDS) ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed: make tools (or apt-get install ffmpeg)"; exit 1; }
DEMO_SECONDS=${DEMO_SECONDS:-30}
work=$(pwd)/demo
rm -rf "$work" && mkdir -p "$work/media"
cat > "$work/config.ini" <<CFG
{
  "server": {"listen": "127.0.0.1:4000"},
  "journal": {"data_dir": "data"},
  "ems": {"default": {"api_url": "http://127.0.0.1:7777"}},
  "log": {"level": "info", "format": "console"},
  "plugins": {"EventLog": {"plugin_switch": "enabled", "parameters": {"path": "events.jsonl"}}},
}
CFG
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

./bin/emsflow serve --config "$work/config.ini" 2> "$work/emsflow.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:4000/readyz >/dev/null && break; sleep 0.1; done
./bin/emssim --api 127.0.0.1:7777 --rtmp 127.0.0.1:1935 --media-dir "$work/media" \
  --sink "http://127.0.0.1:4000/evowebservices" --publish cam1 2> "$work/emssim.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:7777/version >/dev/null && break; sleep 0.1; done
# createHLSStream in EMS's own request form: base64 of "k=v k=v", not percent-encoded.
params=$(printf 'localStreamNames=cam1 targetFolder=%s groupName=cam1 chunkLength=2 playlistType=rolling playlistLength=5' "$work/media/hls" | base64 -w0)
curl -s "http://127.0.0.1:7777/createHLSStream?params=$params"; echo
echo "events flowing into $work/events.jsonl for ${DEMO_SECONDS}s:"
end=$((SECONDS + DEMO_SECONDS)); seen=0
while [ $SECONDS -lt $end ]; do
  if [ -f "$work/events.jsonl" ]; then
    n=$(wc -l < "$work/events.jsonl")
    if [ "$n" -gt "$seen" ]; then
      tail -n $((n - seen)) "$work/events.jsonl" | sed -E 's/.*"type":"([^"]+)".*/  event: \1/'
      seen=$n
    fi
  fi
  sleep 1
done
echo "done: $seen events logged; segments under $work/media/hls/cam1/cam1; metrics at http://127.0.0.1:4000/metrics while running"
