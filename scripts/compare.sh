#!/usr/bin/env bash
# The tutorial's base-versus-current workflow in one go: record a base capture of the running
# search-server under load (or reuse one), let the server change, record a current capture,
# then write the differential flame graph and print the change table (`profiler diff`).
# `--demo` tells the whole story unattended, with a deliberately slower search path. `--heap`
# tells the lesson's heap story instead: one attachment, a base heap snapshot, load, a current
# snapshot, and what was allocated (alloc_space) and is held (inuse_space) in between.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: scripts/compare.sh [OPTIONS] [-- DIFF-OPTIONS...]

Record a base capture of a running search-server, record a current one, and compare them:
writes OUT/diff.svg (differential flame graph: grew red, shrank blue, shaped as current) and
prints the functions whose share changed most. Recording needs root (sudo is used if needed).

Options:
  --pid PID          process to profile (default: the pid of the running `search-server`)
  --base FILE        reuse this base capture instead of recording one
  --pause            after the base capture, wait for Enter so you can change the server
                     (e.g. restart it with a new build); the pid is then looked up again
  --demo             unattended story: start a release search-server, record base under load,
                     restart it with --slow-search, record current under load, diff
  --heap             the heap story: attach once with `profiler record --heap`, take a base
                     snapshot after DURATION seconds without load, put load on the server for
                     DURATION seconds, take the current snapshot, and compare alloc_space (what
                     was allocated in between) and inuse_space (what is held); with --demo, on
                     a release search-server it starts
  --duration SECS    length of each capture (default 10)
  --port PORT        port of the server, for the load URL (default 5000; --demo listens on it)
  --url URL          load URL (default: the tutorial's
                     http://localhost:PORT/search?term=house&cnn=on&bbc=on&nyt=on)
  --load / --no-load put load on the server with `oha -m POST -c 8` during each capture
                     (default), or just wait and record whatever traffic it gets
  --connections N    oha connections (default 8)
  --sample-type T    compare on this sample type (default: the captures' default)
  --flat             rank functions by their own (flat) share change; the default ranks by
                     cumulative share (a function with all it calls), which names the code
                     path that changed rather than the library leaves it spends time in
  --record-arg ARG   extra argument for `profiler record` (repeatable)
  --out DIR          output directory (default out/compare)
  --bin-dir DIR      where `profiler` and `search-server` are (default: build release binaries
                     into ${CARGO_TARGET_DIR:-target}/release)
  -h, --help         this text
Arguments after `--` go to `profiler diff` (e.g. --normalize, --fail-if-regressed 5, -n 30).

Outputs in OUT: base.pb.gz, current.pb.gz, base.svg, current.svg, diff.svg, changes.txt,
base-load.txt and current-load.txt (oha's reports); with --heap also heap.pb.gz (the whole
attachment), own-changes.txt (the server's functions), inuse-diff.svg and inuse-changes.txt. Progress goes to stderr, the table to stdout.

Examples:
  # CPU: base of the running server, then change it, then current (press Enter in between)
  scripts/compare.sh --pause
  # CPU, in two steps: keep a base, restart the server with your change, compare against it
  scripts/compare.sh --duration 15                       # keeps out/compare/base.pb.gz
  scripts/compare.sh --base out/compare/base.pb.gz --out out/compare2
  # The whole story unattended: the slow search path shows up by name as the biggest growth
  scripts/compare.sh --demo --duration 5 --port 5050
  # CI: fail when any function's share grew by more than 5 points
  scripts/compare.sh --base base.pb.gz -- --fail-if-regressed 5
  # Heap: base snapshot, load, current snapshot, over one attachment (heap types compare
  # as totals, not per second); alloc_space names what allocated under the load
  scripts/compare.sh --heap --duration 5
  scripts/compare.sh --demo --heap --duration 3
  # Heap between two builds: a base heap capture, then the current one (press Enter)
  scripts/compare.sh --pause --record-arg=--heap --sample-type inuse_space
EOF
}

say() { echo "$SCRIPT: $*" >&2; }

pid=""
base_in=""
pause=0
demo=0
heap=0
duration=10
port=5000
url=""
load=1
connections=8
sample_type=""
measure=(--cum)
record_args=()
out="out/compare"
bin_dir=""
diff_args=()

need() { [ $# -ge 2 ] && [ -n "$2" ] || bad_usage "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --pid) need "$@"; pid="$2"; shift 2 ;;
    --base) need "$@"; base_in="$2"; shift 2 ;;
    --pause) pause=1; shift ;;
    --demo) demo=1; shift ;;
    --heap) heap=1; shift ;;
    --duration) need "$@"; duration="$2"; shift 2 ;;
    --port) need "$@"; port="$2"; shift 2 ;;
    --url) need "$@"; url="$2"; shift 2 ;;
    --load) load=1; shift ;;
    --no-load) load=0; shift ;;
    --connections) need "$@"; connections="$2"; shift 2 ;;
    --sample-type) need "$@"; sample_type="$2"; shift 2 ;;
    --flat) measure=(); shift ;;
    --record-arg) need "$@"; record_args+=("$2"); shift 2 ;;
    --record-arg=*) record_args+=("${1#--record-arg=}"); shift ;;
    --out) need "$@"; out="$2"; shift 2 ;;
    --bin-dir) need "$@"; bin_dir="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; diff_args=("$@"); break ;;
    *) bad_usage "unknown option $1 (see --help)" ;;
  esac
done

# Validate everything before anything starts.
[[ "$duration" =~ ^[0-9]+$ ]] && [ "$duration" -ge 1 ] ||
  bad_usage "--duration $duration is not a whole number of seconds >= 1 (e.g. --duration 10)"
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] ||
  bad_usage "--port $port is not a port number (1-65535)"
[[ "$connections" =~ ^[0-9]+$ ]] && [ "$connections" -ge 1 ] ||
  bad_usage "--connections $connections is not a positive number"
if [ -n "$pid" ]; then
  [[ "$pid" =~ ^[0-9]+$ ]] || bad_usage "--pid $pid is not a process id"
  [ "$demo" -eq 0 ] || bad_usage "--demo starts its own server; drop --pid $pid"
fi
[ "$demo" -eq 0 ] || [ "$pause" -eq 0 ] || bad_usage "--demo runs unattended; drop --pause"
[ "$demo" -eq 0 ] || [ -z "$base_in" ] || bad_usage "--demo records its own base; drop --base"
[ "$heap" -eq 0 ] || [ "$pause" -eq 0 ] || bad_usage "--heap takes both snapshots over one attachment; drop --pause (or use --record-arg=--heap)"
[ "$heap" -eq 0 ] || [ -z "$base_in" ] || bad_usage "--heap takes its own base snapshot; drop --base"
if [ -n "$base_in" ]; then
  [ -f "$base_in" ] || bad_usage "base capture $base_in does not exist; record one first (scripts/compare.sh writes $out/base.pb.gz)"
  base_in="$(cd "$(dirname "$base_in")" && pwd)/$(basename "$base_in")"
fi
[ -n "$url" ] || url="http://localhost:$port/search?term=house&cnn=on&bbc=on&nyt=on"
if [ "$load" -eq 1 ] && ! command -v oha >/dev/null; then
  bad_usage "oha not found (scripts/setup.sh installs it), or use --no-load"
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || bad_usage "recording needs root; run as root"
  sudo_cmd=(sudo)
fi

if [ -z "$bin_dir" ]; then
  bin_dir="$(release_dir)"
  say "building release binaries into $bin_dir"
  (cd "$REPO" && cargo build --release --locked -p search-server -p profiler --bins) >&2
fi
profiler="$bin_dir/profiler"
server_bin="$bin_dir/search-server"
[ -x "$profiler" ] || bad_usage "$profiler not found; build it (cargo build --release -p profiler) or fix --bin-dir"
if [ "$demo" -eq 1 ]; then
  [ -x "$server_bin" ] || bad_usage "$server_bin not found; build it (cargo build --release -p search-server) or fix --bin-dir"
  "$server_bin" --help | grep -q -- '--slow-search' ||
    bad_usage "$server_bin has no --slow-search flag; rebuild it from a tree that has it"
fi

mkdir -p "$out" || bad_usage "cannot create $out"
out="$(cd "$out" && pwd)"

# Everything started here is stopped on exit, however the script ends.
SERVER_PID=""
load_pid=""
record_pid=""
cleanup() {
  local rc=$?
  [ -z "$record_pid" ] || stop_process "$record_pid"
  [ -z "$load_pid" ] || stop_process "$load_pid"
  [ -z "$SERVER_PID" ] || stop_process "$SERVER_PID"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_server() { # extra args...
  say "starting $server_bin --listen 127.0.0.1:$port $*"
  start_search_server "$server_bin" "$port" "$out/server.log" "$@"
  pid="$SERVER_PID"
}

stop_server() {
  say "stopping search-server (pid $SERVER_PID)"
  stop_process "$SERVER_PID"
  SERVER_PID=""
}

find_server() {
  local pids
  pids="$(pgrep -x search-server || true)"
  case "$(echo "$pids" | grep -c . || true)" in
    0) bad_usage "no running search-server found; start one (target/release/search-server), give --pid PID, or try --demo" ;;
    1) echo "$pids" ;;
    *) bad_usage "several search-server processes are running ($(echo $pids)); choose one with --pid PID" ;;
  esac
}

# Records NAME.pb.gz (and NAME.svg) from $pid for $duration seconds, under load unless
# --no-load, and reports the load's throughput.
capture() {
  local name="$1"
  kill -0 "$pid" 2>/dev/null || bad_usage "pid $pid is not running; start the server or give --pid PID"
  local load_log="$out/$name-load.txt"
  if [ "$load" -eq 1 ]; then
    say "$name: load oha -m POST -c $connections -z $((duration + 2))s $url"
    oha --no-tui -m POST -c "$connections" -z "$((duration + 2))s" "$url" >"$load_log" 2>&1 &
    load_pid=$!
    sleep 1 # let the load reach a steady state before sampling
  else
    say "$name: no load; recording whatever traffic the server gets"
  fi
  say "$name: recording pid $pid for ${duration}s"
  "${sudo_cmd[@]}" "$profiler" record --pid "$pid" --duration "${duration}s" \
    -o "$out/$name.pb.gz" --flamegraph "$out/$name.svg" "${record_args[@]}" >&2 &
  record_pid=$!
  local rc=0
  wait "$record_pid" || rc=$?
  record_pid=""
  [ "$rc" -eq 0 ] || bad_usage "$name: profiler record failed (exit $rc)"
  if [ -n "$load_pid" ]; then
    wait "$load_pid" 2>/dev/null || true
    load_pid=""
    local rps
    rps="$(grep -m1 'Requests/sec' "$load_log" | awk '{print $2}' || true)"
    say "$name: load ran at ${rps:-?} requests/s (report: $load_log)"
  fi
}

# The heap story: one attachment, snapshots DURATION apart, load between them.
if [ "$heap" -eq 1 ]; then
  if [ "$demo" -eq 1 ]; then
    start_server
  elif [ -z "$pid" ]; then
    pid="$(find_server)"
    say "profiling search-server pid $pid"
  fi
  rm -f "$out"/heap.*.pb.gz
  say "heap: attaching to pid $pid; base snapshot in ${duration}s (no load), current ${duration}s later (under load)"
  "${sudo_cmd[@]}" "$profiler" record --heap --pid "$pid" --heap-snapshot-every "${duration}s" \
    --duration "$((2 * duration))s" -o "$out/heap.pb.gz" "${record_args[@]}" >&2 &
  record_pid=$!
  # The base snapshot is written DURATION seconds after the profiler attached: wait for it.
  for _ in $(seq 1 $((20 * duration + 300))); do
    [ -s "$out/heap.0001.pb.gz" ] && break
    kill -0 "$record_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -s "$out/heap.0001.pb.gz" ] || bad_usage "heap: the base snapshot was not written (see the profiler's messages above)"
  say "heap: base snapshot written"
  if [ "$load" -eq 1 ]; then
    say "heap: load oha -m POST -c $connections -z ${duration}s $url"
    oha --no-tui -m POST -c "$connections" -z "${duration}s" "$url" >"$out/current-load.txt" 2>&1 || true
  fi
  rc=0
  wait "$record_pid" || rc=$?
  record_pid=""
  [ "$rc" -eq 0 ] || bad_usage "heap: profiler record failed (exit $rc)"
  [ "$demo" -eq 0 ] || stop_server
  cp -f "$out/heap.0001.pb.gz" "$out/base.pb.gz"
  cp -f "$out/heap.0002.pb.gz" "$out/current.pb.gz"
  say "comparing the snapshots: what was allocated in between (alloc_space)"
  rc=0
  "$profiler" diff "$out/base.pb.gz" "$out/current.pb.gz" --sample-type alloc_space \
    -o "$out/diff.svg" "${measure[@]}" "${diff_args[@]}" >"$out/changes.txt" || rc=$?
  cat "$out/changes.txt"
  say "the server's own functions among them:"
  "$profiler" diff "$out/base.pb.gz" "$out/current.pb.gz" --sample-type alloc_space \
    --rows '^search_server::' "${measure[@]}" "${diff_args[@]}" >"$out/own-changes.txt" || rc=$?
  cat "$out/own-changes.txt"
  say "and what is held (inuse_space)"
  if "$profiler" diff "$out/base.pb.gz" "$out/current.pb.gz" --sample-type inuse_space \
    -o "$out/inuse-diff.svg" "${measure[@]}" "${diff_args[@]}" >"$out/inuse-changes.txt" 2>"$out/inuse-error.txt"; then
    cat "$out/inuse-changes.txt"
  elif grep -q "no samples" "$out/inuse-error.txt"; then
    say "inuse_space: nothing allocated since the attach is held in either snapshot (all of it was freed)"
  else
    cat "$out/inuse-error.txt" >&2
    rc=1
  fi
  say "differential flame graphs: $out/diff.svg (alloc_space), $out/inuse-diff.svg (inuse_space)"
  say "snapshots: $out/base.pb.gz, $out/current.pb.gz; go tool pprof -alloc_space -base $out/base.pb.gz $out/current.pb.gz"
  exit "$rc"
fi

# Base.
if [ "$demo" -eq 1 ]; then
  say "demo: base = release search-server, current = the same with --slow-search"
  start_server
elif [ -z "$pid" ] && [ -z "$base_in" ]; then
  pid="$(find_server)"
  say "profiling search-server pid $pid"
fi
pid_given="$pid"
base="$out/base.pb.gz"
if [ -n "$base_in" ]; then
  say "base: reusing $base_in"
  [ "$base_in" = "$base" ] || cp -f "$base_in" "$base"
else
  capture base
fi

# Let the server change.
if [ "$demo" -eq 1 ]; then
  stop_server
  start_server --slow-search
elif [ "$pause" -eq 1 ]; then
  say "base written to $base. Change the server now (e.g. restart it with your change), then press Enter"
  read -r _ </dev/tty || bad_usage "--pause needs a terminal to wait on; use --base FILE in a second run instead"
  if [ -n "$pid_given" ] && kill -0 "$pid_given" 2>/dev/null; then
    pid="$pid_given"
  else
    pid="$(find_server)"
    say "profiling search-server pid $pid"
  fi
fi
[ -n "$pid" ] || { pid="$(find_server)"; say "profiling search-server pid $pid"; }

capture current
[ "$demo" -eq 0 ] || stop_server

say "comparing base and current"
diff_cmd=("$profiler" diff "$base" "$out/current.pb.gz" -o "$out/diff.svg" "${measure[@]}")
[ -z "$sample_type" ] || diff_cmd+=(--sample-type "$sample_type")
rc=0
"${diff_cmd[@]}" "${diff_args[@]}" >"$out/changes.txt" || rc=$?
cat "$out/changes.txt"
say "differential flame graph: $out/diff.svg (red grew, blue shrank); table: $out/changes.txt"
say "captures: $base, $out/current.pb.gz (profiler top/list/flamegraph read them)"
exit "$rc"
