#!/usr/bin/env bash
# Overhead of profiling a loaded service: search-server throughput under oha load with no
# profiler, with `profiler record` at 99 Hz and 999 Hz, and with `perf record -g` at the same
# rates. Runs are interleaved (every round runs each mode once, in a rotated order) so drift on
# the shared machine hits all modes alike; each profiled run is reported as a ratio to the
# unprofiled runs of its own round, and the median over rounds is the result. Also reports the
# recorders' own CPU (utime+stime from /proc/PID/stat over the load window) as % of one core.
# Each run is preceded by WARM_SECS of unmeasured load with the recorder attached, so a
# recorder's one-off start costs (see scripts/bench-record.sh) are not counted as overhead.
# Usage: sudo scripts/bench-overhead.sh [ROUNDS] [SECONDS_PER_RUN]        (defaults 3 and 10)
#        CONNECTIONS=8 PORT=5077 WARM_SECS=3 sudo scripts/bench-overhead.sh 5 15
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

ROUNDS="${1:-3}"
RUN_SECS="${2:-10}"
CONNECTIONS="${CONNECTIONS:-8}"
WARM_SECS="${WARM_SECS:-3}"
PORT="${PORT:-5077}"
for v in "$ROUNDS" "$RUN_SECS" "$CONNECTIONS" "$PORT" "$WARM_SECS"; do
  case "$v" in ''|*[!0-9]*|0) echo "bench-overhead: '$v' is not a positive whole number (ROUNDS, SECONDS_PER_RUN, CONNECTIONS, PORT, WARM_SECS)" >&2; exit 2 ;; esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "bench-overhead: recording needs root (eBPF and perf); run: sudo $0 $*" >&2
  exit 1
fi
for tool in perf oha curl python3; do
  command -v "$tool" >/dev/null || { echo "bench-overhead: $tool not found; run scripts/setup.sh" >&2; exit 1; }
done

echo "==> building release binaries" >&2
cargo build --release --locked -q -p search-server -p profiler --bins
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
SERVER="$TARGET_DIR/release/search-server"
PROFILER="$TARGET_DIR/release/profiler"
URL="http://127.0.0.1:$PORT/search?term=house&cnn=on&bbc=on&nyt=on"

WORK="$(mktemp -d /tmp/bench-overhead.XXXXXX)"
server_pid=""
recorder_pid=""
cleanup() {
  [ -n "$recorder_pid" ] && kill -INT "$recorder_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

"$SERVER" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "bench-overhead: search-server exited at start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null

# CPU seconds (utime+stime) of a pid: fields 14 and 15 of /proc/PID/stat, after the `(comm)`.
cpu_secs() {
  awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.3f\n", ($12 + $13) / tck }' "/proc/$1/stat" 2>/dev/null || echo 0
}

load() { # load SECONDS OUT.json: successful requests/s over the run
  oha --no-tui --output-format json -c "$CONNECTIONS" -z "${1}s" -m POST "$URL" > "$2"
}

echo "==> warm-up: ${RUN_SECS}s of load" >&2
load "$RUN_SECS" "$WORK/warmup.json"

MODES=(none profiler-99 profiler-999 perf-99 perf-999)
results="$WORK/results.tsv"
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round so no mode always runs first or last.
  order=()
  for i in "${!MODES[@]}"; do order+=("${MODES[$(( (i + round - 1) % ${#MODES[@]} ))]}"); done
  for mode in "${order[@]}"; do
    rate="${mode##*-}"
    recorder_pid=""
    case "$mode" in
      profiler-*)
        "$PROFILER" record --pid "$server_pid" -F "$rate" --duration "$((RUN_SECS + 30))s" \
          -o "$WORK/cap.pb.gz" >"$WORK/rec.out" 2>"$WORK/rec.err" &
        recorder_pid=$! ;;
      perf-*)
        perf record -q -F "$rate" -g -p "$server_pid" -o "$WORK/perf.data" >"$WORK/rec.out" 2>"$WORK/rec.err" &
        recorder_pid=$! ;;
    esac
    # Let the recorder attach, then run WARM_SECS of unmeasured load in every mode: a
    # recorder's one-off start (loading, first symbolization of the server's debug info) is
    # reported by scripts/bench-record.sh; this measures the steady state of a long recording.
    [ -n "$recorder_pid" ] && sleep 2
    load "$WARM_SECS" "$WORK/warm.json"
    cpu0=0; [ -n "$recorder_pid" ] && cpu0="$(cpu_secs "$recorder_pid")"
    t0="$(date +%s.%N)"
    load "$RUN_SECS" "$WORK/run.json"
    t1="$(date +%s.%N)"
    cpu1=0; [ -n "$recorder_pid" ] && cpu1="$(cpu_secs "$recorder_pid")"
    if [ -n "$recorder_pid" ]; then
      kill -INT "$recorder_pid" 2>/dev/null || true
      # perf record ends on SIGINT by re-raising it once its file is written: 130 is its success.
      status=0; wait "$recorder_pid" || status=$?
      if [ "$status" -ne 0 ] && ! { [ "$status" -eq 130 ] && [ "${mode%%-*}" = perf ]; }; then
        echo "bench-overhead: $mode recorder failed (exit $status):" >&2; cat "$WORK/rec.err" >&2; exit 1
      fi
      recorder_pid=""
    fi
    rps="$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["requestsPerSec"]*s["successRate"])' "$WORK/run.json")"
    own="$(awk -v a="$cpu0" -v b="$cpu1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.3f", 100 * (b - a) / (e - s) }')"
    printf '%s\t%s\t%s\t%s\n' "$round" "$mode" "$rps" "$own" >> "$results"
    printf 'round %s  %-13s %10.1f req/s  recorder CPU %5.2f%% of a core\n' "$round" "$mode" "$rps" "$own" >&2
  done
done

python3 - "$results" "$ROUNDS" "$RUN_SECS" "$CONNECTIONS" <<'PY'
import statistics, sys
from collections import defaultdict
path, rounds, secs, conns = sys.argv[1:]
rps = defaultdict(dict); own = defaultdict(list)
for line in open(path):
    r, mode, v, cpu = line.split("\t")
    rps[mode][r] = float(v); own[mode].append(float(cpu))
targets = {"profiler-99": 1.0, "profiler-999": 3.0}
print(f"\nsearch-server under oha -c {conns}, {secs} s per run, {rounds} interleaved rounds")
print(f"{'mode':<14}{'req/s (median)':>16}{'ratio':>9}{'loss %':>9}{'recorder CPU % core':>22}  target")
base = rps["none"]
med_loss = {}
for mode in ["none", "profiler-99", "profiler-999", "perf-99", "perf-999"]:
    ratios = [rps[mode][r] / base[r] for r in rps[mode] if base.get(r)]
    ratio = statistics.median(ratios)
    loss = 100 * (1 - ratio); med_loss[mode] = loss
    cpu = statistics.median(own[mode]) if mode != "none" else 0.0
    target = ""
    if mode in targets:
        target = f"loss <= {targets[mode]:.0f}%: " + ("met" if loss <= targets[mode] else f"NOT MET ({loss:.2f}%)")
    print(f"{mode:<14}{statistics.median(rps[mode].values()):>16.1f}{ratio:>9.4f}{loss:>9.2f}{cpu:>22.2f}  {target}")
for rate in ("99", "999"):
    ours, theirs = med_loss[f"profiler-{rate}"], med_loss[f"perf-{rate}"]
    verdict = "met" if ours < theirs else "NOT MET"
    print(f"{rate} Hz: profiler loss {ours:.2f}% vs perf loss {theirs:.2f}%: less than perf: {verdict}")
cpu99 = statistics.median(own["profiler-99"])
print(f"profiler own CPU at 99 Hz: {cpu99:.2f}% of one core (target < 1%): {'met' if cpu99 < 1 else 'NOT MET'}")
print("per-round ratios:", {m: [round(rps[m][r] / base[r], 4) for r in sorted(rps[m])] for m in rps if m != "none"})
PY
