#!/usr/bin/env bash
# What `profiler serve` costs a loaded service: search-server throughput under oha load with
# no agent, with `profiler serve` attached and idle (nothing samples until a request asks),
# and in continuous mode pushing to a local Pyroscope stand-in at 19 Hz and at 99 Hz. Runs are
# interleaved (each round runs every mode once, in a rotated order) and each run is compared
# with the agent-less run of its own round; the median over rounds is the result. As the
# throughput of a shared 2-core machine is noisy, CPU per request is reported too: the
# server's (exact, from schedstat; the sampling interrupts are charged to it) plus the
# agent's. Then the agent's memory: continuous mode with 1 s intervals at 99 Hz under load for
# INTERVALS intervals (an hour of 15 s intervals is 240), its RSS sampled as it goes; it must
# not grow.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: sudo scripts/bench-serve.sh [ROUNDS] [SECONDS_PER_RUN] [INTERVALS]   (defaults 3, 10, 240)

Throughput and CPU per request search-server loses to `profiler serve` idle and in
continuous mode (push every 5 s) at 19 and 99 Hz, in ROUNDS interleaved rounds of
SECONDS_PER_RUN of oha load; then the agent's RSS over INTERVALS push intervals of 1 s at
99 Hz under load (0 skips it).

Environment: CONNECTIONS (oha connections, default 8), PORT (search-server, 5078),
RECEIVER_PORT (the push receiver, 5079), WARM_SECS (3: unmeasured load before each run).
Needs: root, oha, curl and python3 (scripts/setup.sh installs them).

Examples:
  sudo scripts/bench-serve.sh
  sudo flock /work/bench.lock scripts/bench-serve.sh 5 15 240
  sudo scripts/bench-serve.sh 3 10 0          # throughput only
EOF
}

case "${1:-}" in -h | --help) usage; exit 0 ;; esac
ROUNDS="${1:-3}"
RUN_SECS="${2:-10}"
INTERVALS="${3:-240}"
CONNECTIONS="${CONNECTIONS:-8}"
WARM_SECS="${WARM_SECS:-3}"
PORT="${PORT:-5078}"
RECEIVER_PORT="${RECEIVER_PORT:-5079}"
for v in "$ROUNDS" "$RUN_SECS" "$CONNECTIONS" "$PORT" "$RECEIVER_PORT" "$WARM_SECS"; do
  is_positive_int "$v" || bad_usage "'$v' is not a positive whole number (ROUNDS, SECONDS_PER_RUN, CONNECTIONS, PORT, RECEIVER_PORT, WARM_SECS); see --help"
done
[[ "$INTERVALS" =~ ^[0-9]+$ ]] || bad_usage "INTERVALS '$INTERVALS' is not a whole number; see --help"
require_root "profiler serve needs root (eBPF)" "$@"
require_tools oha curl python3
cd "$REPO"

echo "==> building release binaries" >&2
cargo build --release --locked -q -p search-server -p profiler --bins
SERVER="$(release_dir)/search-server"
PROFILER="$(release_dir)/profiler"
URL="http://127.0.0.1:$PORT/search?term=house&cnn=on&bbc=on&nyt=on"
RECEIVER="http://127.0.0.1:$RECEIVER_PORT"

WORK="$(mktemp -d /tmp/bench-serve.XXXXXX)"
SERVER_PID=""
receiver_pid=""
agent_pid=""
load_pid=""
cleanup() {
  for p in "$load_pid" "$agent_pid" "$receiver_pid" "$SERVER_PID"; do
    [ -z "$p" ] || stop_process "$p"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

start_search_server "$SERVER" "$PORT" "$WORK/server.log"

# A Pyroscope stand-in that accepts every push (the protocol itself is tested in
# profiler/tests/serve): it reads the body, answers 200 and logs the path and size.
python3 - "$RECEIVER_PORT" "$WORK/received.log" >"$WORK/receiver.out" 2>&1 <<'PY' &
import http.server, sys
port, log = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def do_POST(self):
        n = int(self.headers.get("content-length", 0)); self.rfile.read(n)
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
        with open(log, "a") as f: f.write(f"{self.path} {n}\n")
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
receiver_pid=$!
wait_until_answers "the push receiver" "$receiver_pid" "$RECEIVER/" "$WORK/receiver.out"

rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

load() { # load SECONDS OUT.json
  oha --no-tui --output-format json -c "$CONNECTIONS" -z "${1}s" -m POST "$URL" > "$2"
}

# start_agent ARGS...: profiler serve on a free loopback port, attached to the server.
start_agent() {
  "$PROFILER" serve --pid "$SERVER_PID" --listen 127.0.0.1:0 "$@" >"$WORK/agent.out" 2>"$WORK/agent.err" &
  agent_pid=$!
  local deadline=$((SECONDS + 30))
  until grep -q "^serving http://" "$WORK/agent.err" 2>/dev/null; do
    kill -0 "$agent_pid" 2>/dev/null || fail "profiler serve exited at start:"$'\n'"$(tail -n 5 "$WORK/agent.err")"
    [ "$SECONDS" -lt "$deadline" ] || fail "profiler serve did not start in 30 s; see $WORK/agent.err"
    sleep 0.1
  done
}

echo "==> warm-up: ${RUN_SECS}s of load" >&2
load "$RUN_SECS" "$WORK/warmup.json"

MODES=(none serve-idle push-19 push-99)
results="$WORK/results.tsv"
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  order=()
  for i in "${!MODES[@]}"; do order+=("${MODES[$(( (i + round - 1) % ${#MODES[@]} ))]}"); done
  for mode in "${order[@]}"; do
    agent_pid=""
    case "$mode" in
      serve-idle) start_agent ;;
      # The interval captures also go to a directory: each says what the eBPF program cost.
      push-*)
        rm -rf "$WORK/captures" && mkdir "$WORK/captures"
        start_agent -F "${mode#push-}" --push "$RECEIVER" --push-interval 5s --push-dir "$WORK/captures" ;;
    esac
    # Unmeasured load first in every mode: the agent's one-off start (loading the programs,
    # the first symbolization of the server) is not the steady state measured here.
    load "$WARM_SECS" "$WORK/warm.json"
    agent_ns0=0; [ -n "$agent_pid" ] && agent_ns0="$(run_ns "$agent_pid")"
    srv_ns0="$(run_ns "$SERVER_PID")"
    load "$RUN_SECS" "$WORK/run.json"
    srv_ns1="$(run_ns "$SERVER_PID")"
    agent_ns1=0; [ -n "$agent_pid" ] && agent_ns1="$(run_ns "$agent_pid")"
    if [ -n "$agent_pid" ]; then
      stop_process "$agent_pid"
      agent_pid=""
    fi
    # In-kernel time of the cpu program over the captures' time, % of one core (the BPF
    # run-time statistics each capture records).
    ebpf="-"
    case "$mode" in push-*)
      ebpf="$(python3 - "$PROFILER" "$WORK"/captures/*.pb.gz <<'PY'
import json, subprocess, sys
ns = dur = 0
for f in sys.argv[2:]:
    r = json.loads(subprocess.run([sys.argv[1], "info", "--format", "json", f], check=True, capture_output=True).stdout)["recording"]
    ns += sum(c["run_time_ns"] for c in r["program_cost"] if c["program"] == "cpu")
    dur += r["duration_nanos"]
print(f"{100 * ns / dur:.3f}" if dur else "-")
PY
)" ;;
    esac
    rps="$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["requestsPerSec"]*s["successRate"])' "$WORK/run.json")"
    requests="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["statusCodeDistribution"].get("200", 0))' "$WORK/run.json")"
    srv_us="$(awk -v a="$srv_ns0" -v b="$srv_ns1" -v n="$requests" 'BEGIN { printf "%.3f", (b - a) / 1000 / (n > 0 ? n : 1) }')"
    agent_us="$(awk -v a="$agent_ns0" -v b="$agent_ns1" -v n="$requests" 'BEGIN { printf "%.3f", (b - a) / 1000 / (n > 0 ? n : 1) }')"
    agent_pct="$(awk -v a="$agent_ns0" -v b="$agent_ns1" -v s="$RUN_SECS" 'BEGIN { printf "%.3f", 100 * (b - a) / 1e9 / s }')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$rps" "$srv_us" "$agent_us" "$agent_pct" "$ebpf" >> "$results"
    printf 'round %s  %-11s %10.1f req/s  server %7.2f us/req  agent %6.3f us/req (%5.2f%% of a core)  eBPF %s%% of a core\n' \
      "$round" "$mode" "$rps" "$srv_us" "$agent_us" "$agent_pct" "$ebpf" >&2
  done
done
pushes="$(wc -l < "$WORK/received.log" 2>/dev/null || echo 0)"

python3 - "$results" "$ROUNDS" "$RUN_SECS" "$CONNECTIONS" "$pushes" <<'PY'
import statistics, sys
from collections import defaultdict
path, rounds, secs, conns, pushes = sys.argv[1:]
rps = defaultdict(dict); srv = defaultdict(dict); agent = defaultdict(dict); pct = defaultdict(list); ebpf = defaultdict(list)
for line in open(path):
    r, mode, v, s_us, a_us, a_pct, e = line.rstrip("\n").split("\t")
    rps[mode][r] = float(v); srv[mode][r] = float(s_us); agent[mode][r] = float(a_us); pct[mode].append(float(a_pct))
    if e != "-": ebpf[mode].append(float(e))
med = statistics.median
base = rps["none"]
bmed = med(base.values())
print(f"\nsearch-server under oha -c {conns}, {secs} s per run, {rounds} interleaved rounds; {pushes} pushes received")
print(f"noise: the agent-less runs span {100 * (min(base.values()) / bmed - 1):+.1f}% .. {100 * (max(base.values()) / bmed - 1):+.1f}% around their median")
print(f"{'mode':<12}{'req/s':>10}{'loss %':>8}{'loss min..max':>16}{'cost %':>8}{'cost min..max':>16}{'agent CPU':>11}{'eBPF':>8}  target")
targets = {"push-19": 1.0}
for mode in ["none", "serve-idle", "push-19", "push-99"]:
    ratios = [rps[mode][r] / base[r] for r in rps[mode] if base.get(r)]
    losses = [100 * (1 - x) for x in ratios]
    costs = [100 * ((srv[mode][r] + agent[mode][r]) / srv["none"][r] - 1) for r in srv[mode] if srv["none"].get(r)]
    target = ""
    if mode in targets:
        target = f"loss <= {targets[mode]:.0f}%: " + ("met" if med(losses) <= targets[mode] else "NOT MET")
    if mode == "serve-idle":
        target = "nothing measurable: within the noise" if abs(med(losses)) <= 100 * (max(base.values()) - min(base.values())) / bmed else "above the noise"
    e = f"{med(ebpf[mode]):.3f}%" if ebpf[mode] else "-"
    print(f"{mode:<12}{med(rps[mode].values()):>10.1f}{med(losses):>8.2f}{min(losses):>8.2f}..{max(losses):<6.2f}{med(costs):>8.2f}{min(costs):>8.2f}..{max(costs):<6.2f}{med(pct[mode]):>10.2f}%{e:>8}  {target}")
print("(loss: throughput lost against the agent-less run of the same round; cost: server + agent CPU per")
print(" request over the agent-less run's; agent CPU: % of one core during the measured load; eBPF: the")
print(" cpu program's time in the kernel, % of one core, from the BPF run-time statistics in the captures)")
print("What the agent adds, exactly, however noisy the machine: its CPU plus the eBPF time (an upper")
print("bound: part of that time is already in the server's), per request, against the server's own:")
for mode in ["serve-idle", "push-19", "push-99"]:
    server_share = med(srv[mode].values())
    added = med(agent[mode].values()) + (med(ebpf[mode]) / 100 * 1e6 / med(rps[mode].values()) if ebpf[mode] else 0)
    print(f"  {mode:<11} {added:.3f} us per request of {server_share:.2f} us: {100 * added / server_share:.2f}%")
PY

if [ "$INTERVALS" -gt 0 ]; then
  echo
  echo "==> agent memory: $INTERVALS intervals of 1 s at 99 Hz under load" >&2
  : > "$WORK/received.log"
  start_agent -F 99 --push "$RECEIVER" --push-interval 1s
  oha --no-tui -c "$CONNECTIONS" -z "$((INTERVALS + 10))s" -m POST "$URL" >/dev/null 2>&1 &
  load_pid=$!
  samples=()
  for t in $(seq 1 "$INTERVALS"); do
    sleep 1
    if [ "$t" -eq 10 ] || [ $((t % 30)) -eq 0 ] || [ "$t" -eq "$INTERVALS" ]; then
      samples+=("$t:$(rss_kib "$agent_pid")")
      printf 'interval %4d  agent RSS %6d KiB  pushes %d\n' "$t" "$(rss_kib "$agent_pid")" "$(wc -l < "$WORK/received.log")" >&2
    fi
  done
  kill "$load_pid" 2>/dev/null || true
  wait "$load_pid" 2>/dev/null || true
  stop_process "$agent_pid"
  agent_pid=""
  python3 - "$(wc -l < "$WORK/received.log")" "${samples[@]}" <<'PY'
import sys
pushes = int(sys.argv[1])
samples = [tuple(int(x) for x in s.split(":")) for s in sys.argv[2:]]
first = next(((t, r) for t, r in samples if t >= 30), samples[0])
last = samples[-1]
peak = max(r for _, r in samples)
growth = last[1] - first[1]
print(f"\nagent RSS over {last[0]} intervals of 1 s at 99 Hz ({pushes} pushes received):")
print("  " + "  ".join(f"{t}:{r / 1024:.1f}MiB" for t, r in samples))
steps = [(b[0], b[1] - a[1]) for a, b in zip(samples, samples[1:]) if a[0] >= first[0]]
print(f"  from interval {first[0]} to {last[0]}: {growth:+d} KiB ({100 * growth / first[1]:+.1f}%), peak {peak / 1024:.1f} MiB: "
      + ("flat" if growth <= 1024 else "GROWS"))
print("  growth up to each sample: " + "  ".join(f"{t}:{d:+d}KiB" for t, d in steps))
print("  (the session keeps every stack and resolved address it has seen, for warm symbols: on a server")
print("   new stacks keep arriving, fewer and fewer; a steady growth that does not slow is a leak)")
PY
fi
