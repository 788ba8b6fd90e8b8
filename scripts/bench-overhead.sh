#!/usr/bin/env bash
# Overhead of profiling a loaded service: search-server throughput under oha load with no
# profiler, with `profiler record` at 99 Hz and 999 Hz, and with `perf record -g` at the same
# rates. Runs are interleaved (every round runs each mode once, in a rotated order) so drift on
# the shared machine hits all modes alike; each profiled run is reported as a ratio to the
# unprofiled runs of its own round, and the median over rounds is the result. Because the
# throughput of a shared 2-core machine is noisy, the script also measures CPU per request:
# the server's (exact, from schedstat; sampling interrupts are charged to it) plus the
# recorder's, relative to the unprofiled run. Also reports the recorders' own CPU
# (utime+stime from /proc/PID/stat over the load window) as % of one core, and the in-kernel
# time of the profiler's eBPF program (from its summary).
# Each run is preceded by WARM_SECS of unmeasured load with the recorder attached, so a
# recorder's one-off start costs (see scripts/bench-record.sh) are not counted as overhead.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: sudo scripts/bench-overhead.sh [ROUNDS] [SECONDS_PER_RUN]        (defaults 3 and 10)

Throughput and CPU per request that search-server loses to `profiler record` and to
`perf record -g`, at 99 and 999 Hz, in ROUNDS interleaved rounds of SECONDS_PER_RUN of
oha load each; prints each mode against the unprofiled runs of its round, and the medians.

Environment: CONNECTIONS (oha connections, default 8), PORT (5077), WARM_SECS (3: unmeasured
load with the recorder attached before each run).
Needs: root, perf, oha, curl and python3 (scripts/setup.sh installs them).

Examples:
  sudo scripts/bench-overhead.sh
  sudo flock /work/bench.lock scripts/bench-overhead.sh 10 15
  sudo CONNECTIONS=16 PORT=5077 WARM_SECS=5 scripts/bench-overhead.sh 5 15
EOF
}

case "${1:-}" in -h | --help) usage; exit 0 ;; esac
ROUNDS="${1:-3}"
RUN_SECS="${2:-10}"
CONNECTIONS="${CONNECTIONS:-8}"
WARM_SECS="${WARM_SECS:-3}"
PORT="${PORT:-5077}"
for v in "$ROUNDS" "$RUN_SECS" "$CONNECTIONS" "$PORT" "$WARM_SECS"; do
  is_positive_int "$v" || bad_usage "'$v' is not a positive whole number (ROUNDS, SECONDS_PER_RUN, CONNECTIONS, PORT, WARM_SECS); see --help"
done
require_root "recording needs root (eBPF and perf)" "$@"
require_tools perf oha curl python3
cd "$REPO"

echo "==> building release binaries" >&2
cargo build --release --locked -q -p search-server -p profiler --bins
SERVER="$(release_dir)/search-server"
PROFILER="$(release_dir)/profiler"
URL="http://127.0.0.1:$PORT/search?term=house&cnn=on&bbc=on&nyt=on"

WORK="$(mktemp -d /tmp/bench-overhead.XXXXXX)"
SERVER_PID=""
recorder_pid=""
cleanup() {
  [ -n "$recorder_pid" ] && kill -INT "$recorder_pid" 2>/dev/null || true
  [ -z "$SERVER_PID" ] || stop_process "$SERVER_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT

start_search_server "$SERVER" "$PORT" "$WORK/server.log"

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
        "$PROFILER" record --pid "$SERVER_PID" -F "$rate" --duration "$((RUN_SECS + 30))s" \
          -o "$WORK/cap.pb.gz" >"$WORK/rec.out" 2>"$WORK/rec.err" &
        recorder_pid=$! ;;
      perf-*)
        perf record -q -F "$rate" -g -p "$SERVER_PID" -o "$WORK/perf.data" >"$WORK/rec.out" 2>"$WORK/rec.err" &
        recorder_pid=$! ;;
    esac
    # Let the recorder attach, then run WARM_SECS of unmeasured load in every mode: a
    # recorder's one-off start (loading, first symbolization of the server's debug info) is
    # reported by scripts/bench-record.sh; this measures the steady state of a long recording.
    [ -n "$recorder_pid" ] && sleep 2
    load "$WARM_SECS" "$WORK/warm.json"
    cpu0=0; [ -n "$recorder_pid" ] && cpu0="$(cpu_secs "$recorder_pid")"
    rec_ns0=0; [ -n "$recorder_pid" ] && rec_ns0="$(run_ns "$recorder_pid")"
    srv_ns0="$(run_ns "$SERVER_PID")"
    t0="$(date +%s.%N)"
    load "$RUN_SECS" "$WORK/run.json"
    t1="$(date +%s.%N)"
    srv_ns1="$(run_ns "$SERVER_PID")"
    rec_ns1=0; [ -n "$recorder_pid" ] && rec_ns1="$(run_ns "$recorder_pid")"
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
    # The profiler's summary says what its eBPF program cost inside the kernel (BPF run-time
    # statistics): a figure the throughput noise of a shared machine does not blur.
    kernel="-"
    case "$mode" in profiler-*)
      kernel="$(sed -n 's/.*in kernel:.* \([0-9.]*\)% of one core).*/\1/p' "$WORK/rec.err")"
      kernel="${kernel:--}" ;;
    esac
    rps="$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["requestsPerSec"]*s["successRate"])' "$WORK/run.json")"
    requests="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["statusCodeDistribution"].get("200", 0))' "$WORK/run.json")"
    # Server and recorder CPU per successful request, in microseconds.
    srv_us="$(awk -v a="$srv_ns0" -v b="$srv_ns1" -v n="$requests" 'BEGIN { printf "%.3f", (b - a) / 1000 / (n > 0 ? n : 1) }')"
    rec_us="$(awk -v a="$rec_ns0" -v b="$rec_ns1" -v n="$requests" 'BEGIN { printf "%.3f", (b - a) / 1000 / (n > 0 ? n : 1) }')"
    own="$(awk -v a="$cpu0" -v b="$cpu1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.3f", 100 * (b - a) / (e - s) }')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$rps" "$own" "$kernel" "$srv_us" "$rec_us" >> "$results"
    printf 'round %s  %-13s %10.1f req/s  server %7.2f us/req  recorder %6.3f us/req (%5.2f%% of a core)  eBPF %s%% of a core\n' \
      "$round" "$mode" "$rps" "$srv_us" "$rec_us" "$own" "$kernel" >&2
  done
done

python3 - "$results" "$ROUNDS" "$RUN_SECS" "$CONNECTIONS" "$(nproc)" <<'PY'
import statistics, sys
from collections import defaultdict
path, rounds, secs, conns, ncpu = sys.argv[1:]
ncpu = int(ncpu)
rps = defaultdict(dict); own = defaultdict(list); kern = defaultdict(list)
srv = defaultdict(dict); rec = defaultdict(dict)
for line in open(path):
    r, mode, v, cpu, k, s_us, r_us = line.rstrip("\n").split("\t")
    rps[mode][r] = float(v); own[mode].append(float(cpu))
    srv[mode][r] = float(s_us); rec[mode][r] = float(r_us)
    if k != "-": kern[mode].append(float(k))
targets = {"profiler-99": 1.0, "profiler-999": 3.0}
modes = ["none", "profiler-99", "profiler-999", "perf-99", "perf-999"]
base = rps["none"]
bmed = statistics.median(base.values())
med = statistics.median
print(f"\nsearch-server under oha -c {conns}, {secs} s per run, {rounds} interleaved rounds")
print(f"noise: the unprofiled runs' throughput spans {100 * (min(base.values()) / bmed - 1):+.1f}% .. {100 * (max(base.values()) / bmed - 1):+.1f}% around its median")
print()
print("1) throughput, each run as a ratio to the unprofiled run of its round")
print(f"{'mode':<14}{'req/s (median)':>15}{'ratio':>8}{'loss %':>8}{'ratio min..max':>17}  target")
loss_tp = {}
for mode in modes:
    ratios = [rps[mode][r] / base[r] for r in rps[mode] if base.get(r)]
    loss = 100 * (1 - med(ratios)); loss_tp[mode] = loss
    target = ""
    if mode in targets:
        target = f"loss <= {targets[mode]:.0f}%: " + ("met" if loss <= targets[mode] else f"NOT MET ({loss:.2f}%)")
    print(f"{mode:<14}{med(rps[mode].values()):>15.1f}{med(ratios):>8.4f}{loss:>8.2f}{min(ratios):>9.3f}..{max(ratios):.3f}  {target}")
print()
print("2) CPU per request: the server's (sampling interrupts included) plus the recorder's, as")
print("   extra cost over the unprofiled run of the same round; on a CPU-bound server this is the")
print("   throughput it loses, measured without the other tenants' noise")
print(f"{'mode':<14}{'server us/req':>14}{'recorder us/req':>16}{'cost %':>8}{'cost min..max':>16}{'recorder CPU':>13}{'eBPF':>7}  target")
cost = {}
for mode in modes:
    costs = [100 * ((srv[mode][r] + rec[mode][r]) / srv["none"][r] - 1) for r in srv[mode] if srv["none"].get(r)]
    c = med(costs); cost[mode] = c
    cpu = f"{med(own[mode]):.2f}%" if mode != "none" else "-"
    k = f"{med(kern[mode]):.2f}%" if kern[mode] else "-"
    target = ""
    if mode in targets:
        target = f"cost <= {targets[mode]:.0f}%: " + ("met" if c <= targets[mode] else f"NOT MET ({c:.2f}%)")
    print(f"{mode:<14}{med(srv[mode].values()):>14.2f}{med(rec[mode].values()):>16.3f}{c:>8.2f}{min(costs):>8.2f}..{max(costs):<6.2f}{cpu:>13}{k:>7}  {target}")
print("(recorder CPU: the recorder process over the measured load, % of one core; eBPF: time in")
print(" the profiler's eBPF program, from the kernel's BPF run-time statistics, % of one core)")
print()
for rate in ("99", "999"):
    p, q = f"profiler-{rate}", f"perf-{rate}"
    print(f"{rate} Hz vs perf record -g: throughput loss {loss_tp[p]:.2f}% vs {loss_tp[q]:.2f}% ({'less' if loss_tp[p] < loss_tp[q] else 'NOT less'}); "
          f"CPU cost {cost[p]:.2f}% vs {cost[q]:.2f}% ({'less' if cost[p] < cost[q] else 'NOT less'})")
cpu99 = med(own["profiler-99"])
print(f"profiler own CPU at 99 Hz: {cpu99:.2f}% of one core (target < 1%): {'met' if cpu99 < 1 else 'NOT MET'}")
print("per-round throughput ratios:", {m: [round(rps[m][r] / base[r], 4) for r in sorted(rps[m])] for m in modes if m != "none"})
print("per-round CPU cost %:", {m: [round(100 * ((srv[m][r] + rec[m][r]) / srv["none"][r] - 1), 2) for r in sorted(srv[m])] for m in modes if m != "none"})
PY
