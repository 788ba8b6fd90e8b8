#!/usr/bin/env bash
# The main job, end to end: build release, start search-server on its embedded feed set, put
# the tutorial's load on it, profile it from the outside for 10 s, write out/cpu.pb.gz,
# out/cpu.svg and out/cpu.folded, print the top 10 functions, and stop everything it started.
# Usage: scripts/demo.sh            (run as root, or it re-runs itself with sudo for recording)
#        PORT=5050 DURATION=10 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-5000}"
DURATION="${DURATION:-10}"
OUT="${OUT:-out}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "==> building release binaries"
cargo build --release --locked -p search-server -p profiler --bins

server_pid=""
load_pid=""
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT INT TERM

echo "==> starting search-server on 127.0.0.1:$PORT (embedded feeds)"
./target/release/search-server --listen "127.0.0.1:$PORT" &
server_pid=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then echo "demo: search-server exited at start" >&2; exit 1; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null

URL="http://127.0.0.1:$PORT/search?term=house&cnn=on&bbc=on&nyt=on"
LOAD_SECS=$((DURATION + 3))
echo "==> load: oha -m POST -c 8 -z ${LOAD_SECS}s \"$URL\" (the tutorial's load, for the whole recording)"
oha --no-tui -m POST -c 8 -z "${LOAD_SECS}s" "$URL" > "/tmp/demo-oha.$$.txt" 2>&1 &
load_pid=$!
sleep 1

mkdir -p "$OUT"
echo "==> recording pid $server_pid for ${DURATION}s from the outside"
$SUDO ./target/release/profiler record --pid "$server_pid" --duration "${DURATION}s" \
  -o "$OUT/cpu.pb.gz" --flamegraph "$OUT/cpu.svg" --folded "$OUT/cpu.folded"

wait "$load_pid" 2>/dev/null || true
load_pid=""
echo
echo "==> load summary"
grep -E 'Requests/sec|Success rate|99.00%' "/tmp/demo-oha.$$.txt" || tail -n 20 "/tmp/demo-oha.$$.txt"
rm -f "/tmp/demo-oha.$$.txt"

echo
echo "==> top 10 functions (flat CPU)"
./target/release/profiler top "$OUT/cpu.pb.gz" -n 10

echo
echo "==> files"
echo "  capture     $OUT/cpu.pb.gz   (go tool pprof -top $OUT/cpu.pb.gz; profiler top/list/diff)"
echo "  flame graph $OUT/cpu.svg     (open in a browser)"
echo "  folded      $OUT/cpu.folded"
