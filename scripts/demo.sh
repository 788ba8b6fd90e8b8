#!/usr/bin/env bash
# The main job, end to end: build release, start search-server on its embedded feed set, put
# the tutorial's load on it, profile it from the outside for 10 s, write out/cpu.pb.gz,
# out/cpu.svg and out/cpu.folded, print the top 10 functions, and stop everything it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: scripts/demo.sh      (as root, or it records through sudo)

Runs scripts/setup.sh, builds the release binaries, starts search-server on 127.0.0.1:PORT
over its embedded feeds, puts the tutorial's load on it (oha -m POST -c 8), records it from
the outside for DURATION seconds, writes OUT/cpu.pb.gz, OUT/cpu.svg and OUT/cpu.folded,
prints the top 10 functions, and stops everything it started.

Environment: PORT (default 5000), DURATION (seconds, default 10), OUT (directory, default out).

Examples:
  sudo scripts/demo.sh
  sudo PORT=5050 DURATION=20 OUT=/tmp/demo scripts/demo.sh
EOF
}

case "${1:-}" in
  "") ;;
  -h | --help) usage; exit 0 ;;
  *) bad_usage "unknown argument '$1'; settings come from the environment, see --help" ;;
esac
PORT="${PORT:-5000}"
DURATION="${DURATION:-10}"
OUT="${OUT:-out}"
is_positive_int "$PORT" || bad_usage "PORT=$PORT is not a port number"
is_positive_int "$DURATION" || bad_usage "DURATION=$DURATION is not a positive whole number of seconds"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
cd "$REPO"
mkdir -p "$OUT"

bash scripts/setup.sh

echo "==> building release binaries"
cargo build --release --locked -p search-server -p profiler --bins
BIN="$(release_dir)"

SERVER_PID=""
load_pid=""
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
  [ -z "$SERVER_PID" ] || stop_process "$SERVER_PID"
}
trap cleanup EXIT INT TERM

echo "==> starting search-server on 127.0.0.1:$PORT (embedded feeds)"
start_search_server "$BIN/search-server" "$PORT" "$OUT/server.log"

URL="http://127.0.0.1:$PORT/search?term=house&cnn=on&bbc=on&nyt=on"
LOAD_SECS=$((DURATION + 3))
echo "==> load: oha -m POST -c 8 -z ${LOAD_SECS}s \"$URL\" (the tutorial's load, for the whole recording)"
oha --no-tui -m POST -c 8 -z "${LOAD_SECS}s" "$URL" > "/tmp/demo-oha.$$.txt" 2>&1 &
load_pid=$!
sleep 1

echo "==> recording pid $SERVER_PID for ${DURATION}s from the outside"
$SUDO "$BIN/profiler" record --pid "$SERVER_PID" --duration "${DURATION}s" \
  -o "$OUT/cpu.pb.gz" --flamegraph "$OUT/cpu.svg" --folded "$OUT/cpu.folded"

wait "$load_pid" 2>/dev/null || true
load_pid=""
echo
echo "==> load summary"
grep -E 'Requests/sec|Success rate|99.00%' "/tmp/demo-oha.$$.txt" || tail -n 20 "/tmp/demo-oha.$$.txt"
rm -f "/tmp/demo-oha.$$.txt"

echo
echo "==> top 10 functions (flat CPU)"
"$BIN/profiler" top "$OUT/cpu.pb.gz" -n 10

echo
echo "==> files"
echo "  capture     $OUT/cpu.pb.gz   (go tool pprof -top $OUT/cpu.pb.gz; profiler top/list/diff)"
echo "  flame graph $OUT/cpu.svg     (open in a browser)"
echo "  folded      $OUT/cpu.folded"
echo "  server log  $OUT/server.log"
