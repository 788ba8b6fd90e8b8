#!/usr/bin/env bash
# Costs of `profiler record` itself, on a loaded process: (1) the time from the end of a 30 s,
# 999 Hz recording to all three outputs (pprof, SVG, folded) written, (2) the profiler's own CPU
# over a 30 s recording at 99 Hz, as % of one core (from its summary, which uses getrusage, and
# cross-checked from /proc/PID/stat). The loaded process is search-server under oha load
# (TARGET=server, the default) or the cpu_split workload (TARGET=cpu_split).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: sudo scripts/bench-record.sh [SECONDS]            (default 30)

Records a loaded process for SECONDS at 999 Hz, then at 99 Hz, writing pprof, SVG and folded
outputs each time, and prints the profiler's CPU while sampling and its summary (which says
how long the outputs took after sampling ended).

Environment: TARGET=server (search-server under oha -c 8 load, the default) or
TARGET=cpu_split (the profiler's 60/30/10 example workload); PORT (5078) for the server.
Needs: root; oha and curl for TARGET=server (scripts/setup.sh installs them).

Examples:
  sudo scripts/bench-record.sh
  sudo scripts/bench-record.sh 10
  sudo TARGET=cpu_split scripts/bench-record.sh 30
EOF
}

case "${1:-}" in -h | --help) usage; exit 0 ;; esac
SECS="${1:-30}"
TARGET="${TARGET:-server}"
PORT="${PORT:-5078}"
is_positive_int "$SECS" || bad_usage "SECONDS must be a positive whole number, got '$SECS'; see --help"
is_positive_int "$PORT" || bad_usage "PORT must be a port number, got '$PORT'"
case "$TARGET" in server|cpu_split) ;; *) bad_usage "TARGET must be server or cpu_split, got '$TARGET'" ;; esac
require_root "recording needs root" "$@"
[ "$TARGET" != server ] || require_tools oha curl
cd "$REPO"

echo "==> building release binaries" >&2
cargo build --release -q -p profiler --bins
PROFILER="$(release_dir)/profiler"
WORK="$(mktemp -d /tmp/bench-record.XXXXXX)"
pids=()
SERVER_PID=""
cleanup() {
  # The server too if it never came up (start_search_server exits before it is in pids).
  for p in "${pids[@]}" $SERVER_PID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

LIFE=$((SECS * 2 + 30))
if [ "$TARGET" = server ]; then
  cargo build --release -q -p search-server --bins
  start_search_server "$(release_dir)/search-server" "$PORT" "$WORK/server.log"
  target_pid="$SERVER_PID"
  oha -z "${LIFE}s" -c 8 --no-tui "http://127.0.0.1:$PORT/search?term=house&cnn=on&bbc=on&nyt=on" >/dev/null 2>&1 &
  pids+=("$!")
else
  cargo build --release -q -p profiler --example cpu_split
  "$(release_dir)/examples/cpu_split" "$LIFE" >/dev/null &
  target_pid=$!
  pids+=("$target_pid")
fi
sleep 2

cpu_secs() {
  awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.3f\n", ($12 + $13) / tck }' "/proc/$1/stat"
}

run() { # run HZ: records SECS at HZ with all three outputs; prints the summary
  local hz="$1"
  "$PROFILER" record --pid "$target_pid" -d "${SECS}s" -F "$hz" -o "$WORK/cpu.pb.gz" \
    --flamegraph "$WORK/cpu.svg" --folded "$WORK/cpu.folded" 2>"$WORK/summary-$hz.txt" &
  local rec=$!
  # Sample the recorder's CPU just before sampling ends (excludes the finishing work).
  sleep "$((SECS - 1))"
  local cpu_during
  cpu_during="$(cpu_secs "$rec" 2>/dev/null || echo nan)"
  wait "$rec"
  echo "--- $TARGET, $SECS s at $hz Hz: profiler CPU in the first $((SECS - 1)) s of sampling: ${cpu_during} s" \
       "($(awk -v c="$cpu_during" -v s="$((SECS - 1))" 'BEGIN { printf "%.2f", 100 * c / s }')% of one core)"
  cat "$WORK/summary-$hz.txt"
}

run 999
run 99
