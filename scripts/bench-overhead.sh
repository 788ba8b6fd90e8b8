#!/usr/bin/env bash
# Overhead of profiling a loaded service: search-server throughput under oha load with no
# profiler and with each recorder mode (on-CPU sampling at 99 and 999 Hz, off-CPU, wall,
# heap through the heap-sampler's probes or through allocator uprobes, page faults, and
# `perf record -g` for reference), with `profiler watch` and `profiler trace`, and with
# `perf sched record` for reference (the timeline modes also report their file size per second
# of capture). Runs are interleaved (every round runs each mode once, in a
# rotated order) so drift on the shared machine hits all modes alike; each run is reported as a
# ratio to the unprofiled run of its own round (of the same server build), and the median over
# rounds is the result. Because the throughput of a shared 2-core machine is noisy, the script
# also measures CPU per request: the server's (exact, from schedstat; sampling interrupts and
# probes are charged to it) plus the recorder's, relative to the unprofiled run. Also reports
# the recorders' own CPU (utime+stime over the load window) as % of one core, and the in-kernel
# time of the profiler's eBPF programs (from its summary).
# Each run is preceded by WARM_SECS of unmeasured load with the recorder attached, so a
# recorder's one-off start costs (see scripts/bench-record.sh) are not counted as overhead.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: sudo scripts/bench-overhead.sh [ROUNDS] [SECONDS_PER_RUN]        (defaults 3 and 10)

Throughput and CPU per request that search-server loses to each recorder mode, in ROUNDS
interleaved rounds of SECONDS_PER_RUN of oha load each; prints each mode against the
unprofiled run of its round (same server build), and the medians.

Modes (MODES, space-separated; default "none profiler-99 profiler-999 perf-99 perf-999"):
  none          the server as built (with the heap-sampler allocator), nothing attached
  plain         the server built without the heap-sampler, nothing attached (the sampler's
                idle cost is none against plain)
  profiler-99   profiler record -F 99            profiler-999   profiler record -F 999
                (the default --call-graph auto)
  fp-99         profiler record --call-graph fp -F 99      fp-999     ... -F 999
  dwarf-99      profiler record --call-graph dwarf -F 99   dwarf-999  ... -F 999
  offcpu        profiler record --offcpu         wall           profiler record --cpu --offcpu
                (--call-graph auto: a block in code without frame pointers gets its
                stack copied at sys_exit, a program on every system call of the machine)
  offcpu-fp     profiler record --offcpu --call-graph fp (no copies, no sys_exit program)
  offcpu-1ms    profiler record --offcpu --offcpu-copy-min 1ms (copies for long blocks only)
  heap          profiler record --heap (the heap-sampler's probes)
  heap-uprobes  the plain server, profiler record --heap (uprobes on libc malloc and free)
  faults        profiler record --page-faults
  perf-99       perf record -g -F 99             perf-999       perf record -g -F 999
  perf-dwarf-99 perf record --call-graph dwarf -F 99 (8 KiB copies, perf's default)
  perf-dwarf-999
  watch         profiler watch (1 s lines)       trace          profiler trace (999 Hz), its
                                                                window covering the run
  perf-sched    perf sched record -a (the sched tracepoints of the whole machine)

Environment: MODES, CONNECTIONS (oha connections, default 8), PORT (5077; the plain build
listens on PORT+1), WARM_SECS (3: unmeasured load with the recorder attached before each run).
Needs: root, perf, oha, curl and python3 (scripts/setup.sh installs them).

Examples:
  sudo scripts/bench-overhead.sh
  sudo MODES="none offcpu wall profiler-99" scripts/bench-overhead.sh 5 10
  sudo MODES="none offcpu offcpu-fp" scripts/bench-overhead.sh 5 10
  sudo MODES="none plain heap heap-uprobes faults" scripts/bench-overhead.sh 5 10
  sudo CONNECTIONS=16 PORT=5077 WARM_SECS=5 scripts/bench-overhead.sh 5 15
  sudo MODES="none watch trace perf-sched" scripts/bench-overhead.sh 5 10
  sudo MODES="none fp-99 dwarf-99 profiler-99 perf-dwarf-99 dwarf-999" scripts/bench-overhead.sh 5 8
EOF
}

case "${1:-}" in -h | --help) usage; exit 0 ;; esac
ROUNDS="${1:-3}"
RUN_SECS="${2:-10}"
CONNECTIONS="${CONNECTIONS:-8}"
WARM_SECS="${WARM_SECS:-3}"
PORT="${PORT:-5077}"
read -r -a MODE_LIST <<< "${MODES:-none profiler-99 profiler-999 perf-99 perf-999}"
for v in "$ROUNDS" "$RUN_SECS" "$CONNECTIONS" "$PORT" "$WARM_SECS"; do
  is_positive_int "$v" || bad_usage "'$v' is not a positive whole number (ROUNDS, SECONDS_PER_RUN, CONNECTIONS, PORT, WARM_SECS); see --help"
done
needs_plain=""
for mode in "${MODE_LIST[@]}"; do
  case "$mode" in
    none | profiler-99 | profiler-999 | offcpu | offcpu-fp | offcpu-1ms | wall | heap | faults | perf-99 | perf-999) ;;
    fp-99 | fp-999 | dwarf-99 | dwarf-999 | perf-dwarf-99 | perf-dwarf-999) ;;
    watch | trace | perf-sched) ;;
    plain | heap-uprobes) needs_plain=1 ;;
    *) bad_usage "unknown mode '$mode'; see --help for the list" ;;
  esac
done
# Every mode is compared with the unprofiled run of its server build in the same round.
[[ " ${MODE_LIST[*]} " == *" none "* ]] || MODE_LIST=(none "${MODE_LIST[@]}")
if [ -n "$needs_plain" ] && [[ " ${MODE_LIST[*]} " != *" plain "* ]]; then MODE_LIST+=(plain); fi
require_root "recording needs root (eBPF and perf)" "$@"
require_tools perf oha curl python3
cd "$REPO"

echo "==> building release binaries" >&2
cargo build --release --locked -q -p search-server -p profiler --bins
SERVER="$(release_dir)/search-server"
PROFILER="$(release_dir)/profiler"
PLAIN_TARGET="${CARGO_TARGET_DIR:-$REPO/target}/bench-plain"
if [ -n "$needs_plain" ]; then
  echo "==> building search-server without the heap-sampler (into $PLAIN_TARGET)" >&2
  CARGO_TARGET_DIR="$PLAIN_TARGET" cargo build --release --locked -q -p search-server --bins --no-default-features
fi

WORK="$(mktemp -d /tmp/bench-overhead.XXXXXX)"
SERVER_PID=""
DEFAULT_PID=""
PLAIN_PID=""
recorder_pid=""
cleanup() {
  [ -n "$recorder_pid" ] && kill -INT "$recorder_pid" 2>/dev/null || true
  [ -z "$DEFAULT_PID" ] || stop_process "$DEFAULT_PID"
  [ -z "$PLAIN_PID" ] || stop_process "$PLAIN_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT

start_search_server "$SERVER" "$PORT" "$WORK/server.log"
DEFAULT_PID="$SERVER_PID"
if [ -n "$needs_plain" ]; then
  start_search_server "$PLAIN_TARGET/release/search-server" "$((PORT + 1))" "$WORK/plain.log"
  PLAIN_PID="$SERVER_PID"
fi

# CPU seconds (utime+stime) of a pid: fields 14 and 15 of /proc/PID/stat, after the `(comm)`.
cpu_secs() {
  awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.3f\n", ($12 + $13) / tck }' "/proc/$1/stat" 2>/dev/null || echo 0
}

load() { # load PORT SECONDS OUT.json
  oha --no-tui --output-format json -c "$CONNECTIONS" -z "${2}s" -m POST \
    "http://127.0.0.1:$1/search?term=house&cnn=on&bbc=on&nyt=on" > "$3"
}

echo "==> warm-up: ${RUN_SECS}s of load" >&2
load "$PORT" "$RUN_SECS" "$WORK/warmup.json"
[ -z "$PLAIN_PID" ] || load "$((PORT + 1))" "$RUN_SECS" "$WORK/warmup.json"

# perf sched record reads the sched tracepoints through tracefs, which is not mounted here by
# default (shared/toolchain.md); mounting it changes nothing else.
if [[ " ${MODE_LIST[*]} " == *" perf-sched "* ]]; then
  mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
fi
# A trace's window covers the attach wait, the warm-up and the run, with room to stop it early.
TRACE_SECS=$((2 + WARM_SECS + RUN_SECS + 5))
[ "$TRACE_SECS" -le 60 ] || bad_usage "the trace mode needs WARM_SECS + SECONDS_PER_RUN <= 53 (a trace is at most 60 s)"
results="$WORK/results.tsv"
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round so no mode always runs first or last.
  order=()
  for i in "${!MODE_LIST[@]}"; do order+=("${MODE_LIST[$(( (i + round - 1) % ${#MODE_LIST[@]} ))]}"); done
  for mode in "${order[@]}"; do
    pid="$DEFAULT_PID"; port="$PORT"
    case "$mode" in plain | heap-uprobes) pid="$PLAIN_PID"; port="$((PORT + 1))" ;; esac
    rec=()
    case "$mode" in
      profiler-*) rec=("$PROFILER" record -F "${mode##*-}") ;;
      fp-* | dwarf-*) rec=("$PROFILER" record --call-graph "${mode%-*}" -F "${mode##*-}") ;;
      offcpu) rec=("$PROFILER" record --offcpu) ;;
      offcpu-fp) rec=("$PROFILER" record --offcpu --call-graph fp) ;;
      offcpu-1ms) rec=("$PROFILER" record --offcpu --offcpu-copy-min 1ms) ;;
      wall) rec=("$PROFILER" record --cpu --offcpu) ;;
      heap | heap-uprobes) rec=("$PROFILER" record --heap) ;;
      faults) rec=("$PROFILER" record --page-faults) ;;
    esac
    recorder_pid=""
    # The timeline modes write a file whose size per second is reported.
    file=""
    rm -f "$WORK/trace.perfetto-trace" "$WORK/perf.data"
    if [ ${#rec[@]} -gt 0 ]; then
      "${rec[@]}" --pid "$pid" --duration "$((RUN_SECS + WARM_SECS + 30))s" \
        -o "$WORK/cap.pb.gz" >"$WORK/rec.out" 2>"$WORK/rec.err" &
      recorder_pid=$!
    elif [ "$mode" = watch ]; then
      "$PROFILER" watch --pid "$pid" >"$WORK/rec.out" 2>"$WORK/rec.err" &
      recorder_pid=$!
    elif [ "$mode" = trace ]; then
      file="$WORK/trace.perfetto-trace"
      "$PROFILER" trace --pid "$pid" --duration "${TRACE_SECS}s" -o "$file" >"$WORK/rec.out" 2>"$WORK/rec.err" &
      recorder_pid=$!
    elif [ "$mode" = perf-sched ]; then
      file="$WORK/perf.data"
      perf sched record -a -o "$file" >"$WORK/rec.out" 2>"$WORK/rec.err" &
      recorder_pid=$!
    elif [[ "$mode" == perf-dwarf-* ]]; then
      perf record -q -e cpu-clock -F "${mode##*-}" --call-graph dwarf -p "$pid" -o "$WORK/perf.data" >"$WORK/rec.out" 2>"$WORK/rec.err" &
      recorder_pid=$!
    elif [[ "$mode" == perf-* ]]; then
      perf record -q -F "${mode##*-}" -g -p "$pid" -o "$WORK/perf.data" >"$WORK/rec.out" 2>"$WORK/rec.err" &
      recorder_pid=$!
    fi
    # Let the recorder attach, then run WARM_SECS of unmeasured load in every mode: a
    # recorder's one-off start (loading, first symbolization of the server's debug info) is
    # reported by scripts/bench-record.sh; this measures the steady state of a long recording.
    [ -n "$recorder_pid" ] && sleep 2
    rec_start="$(date +%s.%N)"
    load "$port" "$WARM_SECS" "$WORK/warm.json"
    cpu0=0; [ -n "$recorder_pid" ] && cpu0="$(cpu_secs "$recorder_pid")"
    rec_ns0=0; [ -n "$recorder_pid" ] && rec_ns0="$(run_ns "$recorder_pid")"
    srv_ns0="$(run_ns "$pid")"
    t0="$(date +%s.%N)"
    load "$port" "$RUN_SECS" "$WORK/run.json"
    t1="$(date +%s.%N)"
    srv_ns1="$(run_ns "$pid")"
    rec_ns1=0; [ -n "$recorder_pid" ] && rec_ns1="$(run_ns "$recorder_pid")"
    cpu1=0; [ -n "$recorder_pid" ] && cpu1="$(cpu_secs "$recorder_pid")"
    if [ -n "$recorder_pid" ]; then
      kill -INT "$recorder_pid" 2>/dev/null || true
      # perf record ends on SIGINT by re-raising it once its file is written: 130 is its success.
      status=0; wait "$recorder_pid" || status=$?
      if [ "$status" -ne 0 ] && ! { [ "$status" -eq 130 ] && [[ "$mode" == perf-* ]]; }; then
        echo "bench-overhead: $mode recorder failed (exit $status):" >&2; cat "$WORK/rec.err" >&2; exit 1
      fi
      recorder_pid=""
    fi
    # The profiler's summary says what its eBPF programs cost inside the kernel (BPF run-time
    # statistics): a figure the throughput noise of a shared machine does not blur.
    kernel="-"
    if [ ${#rec[@]} -gt 0 ] || [ "$mode" = watch ] || [ "$mode" = trace ]; then
      kernel="$(awk '/in kernel:/ { if (match($0, /[0-9.]+% of one core/)) s += substr($0, RSTART, RLENGTH - 13) } END { printf "%.2f", s }' "$WORK/rec.err")"
    fi
    # Stack copies: how many, their bandwidth, samples the full ring sent back to the kernel
    # walk, and samples lost.
    if [ ${#rec[@]} -gt 0 ]; then
      grep -h -e 'call graph:' -e 'lost:' -e 'copies:' -e 'samples:' "$WORK/rec.err" | sed "s/^ */    $mode /" >&2 || true
    fi
    # File size per second of capture (from the recorder's start to its end).
    file_rate="-"
    if [ -n "$file" ]; then
      [ -s "$file" ] || fail "$mode wrote no $file; its stderr:"$'\n'"$(cat "$WORK/rec.err")"
      file_rate="$(awk -v b="$(stat -c %s "$file")" -v s="$rec_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", b / (e - s) }')"
    fi
    rps="$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["requestsPerSec"]*s["successRate"])' "$WORK/run.json")"
    requests="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["statusCodeDistribution"].get("200", 0))' "$WORK/run.json")"
    # Server and recorder CPU per successful request, in microseconds.
    srv_us="$(awk -v a="$srv_ns0" -v b="$srv_ns1" -v n="$requests" 'BEGIN { printf "%.3f", (b - a) / 1000 / (n > 0 ? n : 1) }')"
    rec_us="$(awk -v a="$rec_ns0" -v b="$rec_ns1" -v n="$requests" 'BEGIN { printf "%.3f", (b - a) / 1000 / (n > 0 ? n : 1) }')"
    own="$(awk -v a="$cpu0" -v b="$cpu1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.3f", 100 * (b - a) / (e - s) }')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$rps" "$own" "$kernel" "$srv_us" "$rec_us" "$file_rate" >> "$results"
    printf 'round %s  %-13s %10.1f req/s  server %7.2f us/req  recorder %6.3f us/req (%5.2f%% of a core)  eBPF %s%% of a core  file %s B/s\n' \
      "$round" "$mode" "$rps" "$srv_us" "$rec_us" "$own" "$kernel" "$file_rate" >&2
  done
done

python3 - "$results" "$ROUNDS" "$RUN_SECS" "$CONNECTIONS" "${MODE_LIST[*]}" <<'PY'
import statistics, sys
from collections import defaultdict
path, rounds, secs, conns, modes = sys.argv[1:]
modes = modes.split()
rps = defaultdict(dict); own = defaultdict(list); kern = defaultdict(list)
srv = defaultdict(dict); rec = defaultdict(dict); file_rate = defaultdict(list)
for line in open(path):
    r, mode, v, cpu, k, s_us, r_us, fr = line.rstrip("\n").split("\t")
    rps[mode][r] = float(v); own[mode].append(float(cpu))
    srv[mode][r] = float(s_us); rec[mode][r] = float(r_us)
    if k != "-": kern[mode].append(float(k))
    if fr != "-": file_rate[mode].append(float(fr))
# Loss targets from the issues, in percent.
targets = {"profiler-99": 1.0, "profiler-999": 3.0, "offcpu": 5.0, "offcpu-fp": 5.0, "offcpu-1ms": 5.0, "heap": 5.0, "watch": 2.0}
# Each mode against the unprofiled run of its build; `plain` is the baseline of `none`: the
# heap-sampler's cost with nothing attached (target 1%).
def baseline(mode):
    if mode == "heap-uprobes": return "plain"
    if mode == "none" and "plain" in rps: return "plain"
    return "none"
med = statistics.median
b = rps["none"]; bmed = med(b.values())
print(f"\nsearch-server under oha -c {conns}, {secs} s per run, {rounds} interleaved rounds")
print(f"noise: the unprofiled runs' throughput spans {100 * (min(b.values()) / bmed - 1):+.1f}% .. {100 * (max(b.values()) / bmed - 1):+.1f}% around its median")
print()
print("1) throughput, each run as a ratio to the unprofiled run of its round (same build)")
print(f"{'mode':<14}{'against':<8}{'req/s (median)':>15}{'ratio':>8}{'loss %':>8}{'ratio min..max':>17}  target")
loss_tp = {}
show = [m for m in modes if m != "plain"]
for mode in show:
    against = baseline(mode)
    if mode == against: continue
    ratios = [rps[mode][r] / rps[against][r] for r in rps[mode] if rps[against].get(r)]
    loss = 100 * (1 - med(ratios)); loss_tp[mode] = loss
    t = 1.0 if mode == "none" else targets.get(mode)
    target = "" if t is None else f"loss <= {t:.0f}%: " + ("met" if loss <= t else f"NOT MET ({loss:.2f}%)")
    name = "sampler idle" if mode == "none" else mode
    print(f"{name:<14}{against:<8}{med(rps[mode].values()):>15.1f}{med(ratios):>8.4f}{loss:>8.2f}{min(ratios):>9.3f}..{max(ratios):.3f}  {target}")
print()
print("2) CPU per request: the server's (interrupts and probes included) plus the recorder's, as")
print("   extra cost over the unprofiled run of the same round; on a CPU-bound server this is the")
print("   throughput it loses, measured without the other tenants' noise")
print(f"{'mode':<14}{'against':<8}{'server us/req':>14}{'recorder us/req':>16}{'cost %':>8}{'cost min..max':>16}{'recorder CPU':>13}{'eBPF':>7}  target")
cost = {}
for mode in show:
    against = baseline(mode)
    if mode == against: continue
    costs = [100 * ((srv[mode][r] + rec[mode][r]) / srv[against][r] - 1) for r in srv[mode] if srv[against].get(r)]
    c = med(costs); cost[mode] = c
    cpu = f"{med(own[mode]):.2f}%" if own[mode] and max(own[mode]) > 0 else "-"
    k = f"{med(kern[mode]):.2f}%" if kern[mode] else "-"
    t = 1.0 if mode == "none" else targets.get(mode)
    target = "" if t is None else f"cost <= {t:.0f}%: " + ("met" if c <= t else f"NOT MET ({c:.2f}%)")
    name = "sampler idle" if mode == "none" else mode
    print(f"{name:<14}{against:<8}{med(srv[mode].values()):>14.2f}{med(rec[mode].values()):>16.3f}{c:>8.2f}{min(costs):>8.2f}..{max(costs):<6.2f}{cpu:>13}{k:>7}  {target}")
print("(recorder CPU: the recorder process over the measured load, % of one core; eBPF: time in")
print(" the profiler's eBPF programs, from the kernel's BPF run-time statistics, % of one core)")
print()
if file_rate:
    print("3) timeline files: bytes per second of capture (file size / recorder lifetime)")
    for mode in modes:
        if file_rate[mode]:
            v = med(file_rate[mode])
            print(f"{mode:<14}{v / 1024:>10.0f} KiB/s  ({min(file_rate[mode]) / 1024:.0f}..{max(file_rate[mode]) / 1024:.0f})")
    print()
for rate in ("99", "999"):
    for p, q, what in ((f"profiler-{rate}", f"perf-{rate}", "perf record -g"),
                       (f"dwarf-{rate}", f"perf-dwarf-{rate}", "perf record --call-graph dwarf"),
                       (f"profiler-{rate}", f"perf-dwarf-{rate}", "perf record --call-graph dwarf")):
        if p in loss_tp and q in loss_tp:
            print(f"{p} vs {what} at {rate} Hz: throughput loss {loss_tp[p]:.2f}% vs {loss_tp[q]:.2f}% ({'less' if loss_tp[p] < loss_tp[q] else 'NOT less'}); "
                  f"CPU cost {cost[p]:.2f}% vs {cost[q]:.2f}% ({'less' if cost[p] < cost[q] else 'NOT less'})")
if "profiler-99" in own:
    cpu99 = med(own["profiler-99"])
    print(f"profiler own CPU at 99 Hz: {cpu99:.2f}% of one core (target < 1%): {'met' if cpu99 < 1 else 'NOT MET'}")
PY
