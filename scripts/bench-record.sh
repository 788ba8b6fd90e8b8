#!/usr/bin/env bash
# Costs of `profiler record` itself, on a loaded process: (1) the time from the end of a 30 s,
# 999 Hz recording to all three outputs (pprof, SVG, folded) written, (2) the profiler's own CPU
# over a 30 s recording at 99 Hz, as % of one core (from its summary, which uses getrusage, and
# cross-checked from /proc/PID/stat). The loaded process is search-server under oha load
# (TARGET=server, the default) or the cpu_split workload (TARGET=cpu_split).
# Usage: sudo scripts/bench-record.sh [SECONDS]            (default 30)
#        TARGET=cpu_split sudo scripts/bench-record.sh 30
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SECS="${1:-30}"
TARGET="${TARGET:-server}"
PORT="${PORT:-5078}"
case "$SECS" in ''|*[!0-9]*|0) echo "bench-record: SECONDS must be a positive whole number, got '$SECS'" >&2; exit 2 ;; esac
case "$TARGET" in server|cpu_split) ;; *) echo "bench-record: TARGET must be server or cpu_split, got '$TARGET'" >&2; exit 2 ;; esac
if [ "$(id -u)" -ne 0 ]; then
  echo "bench-record: recording needs root; run: sudo $0 $*" >&2
  exit 1
fi

echo "==> building release binaries" >&2
cargo build --release -q -p profiler --bins
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
PROFILER="$TARGET_DIR/release/profiler"
WORK="$(mktemp -d /tmp/bench-record.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

LIFE=$((SECS * 2 + 30))
if [ "$TARGET" = server ]; then
  command -v oha >/dev/null || { echo "bench-record: oha not found; run scripts/setup.sh" >&2; exit 1; }
  cargo build --release -q -p search-server --bins
  "$TARGET_DIR/release/search-server" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
  target_pid=$!
  pids+=("$target_pid")
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  oha -z "${LIFE}s" -c 8 --no-tui "http://127.0.0.1:$PORT/search?term=house&cnn=on&bbc=on&nyt=on" >/dev/null 2>&1 &
  pids+=("$!")
else
  cargo build --release -q -p profiler --example cpu_split
  "$TARGET_DIR/release/examples/cpu_split" "$LIFE" >/dev/null &
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
