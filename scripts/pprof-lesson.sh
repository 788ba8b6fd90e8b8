#!/usr/bin/env bash
# The Go profiling lesson's HTTP pprof workflow, run against a native service: search-server
# on PORT, `profiler serve` beside it on PPROF_PORT (the service is not changed or restarted),
# the lesson's load (scripts/load.sh, oha in place of boom), and the lesson's curl and
# `go tool pprof` commands verbatim except for the port and the binary (./search-server for
# ./project). Interactive pprof sessions get their commands (top, list, web) on stdin, and
# `web` "opens" the SVG by saving it. Each step prints PASS, SKIP (that endpoint's collector
# does not exist yet: the server answers 501) or FAIL; the exit status is 1 if any failed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: sudo scripts/pprof-lesson.sh [--port PORT] [--pprof-port PORT] [--seconds N] [--out DIR]

Runs the Go profiling lesson's pprof workflow against search-server through `profiler serve`:
starts both (release builds; built first when missing), loads the server, and runs the
lesson's commands with only the port and the binary changed, e.g.
  curl -s http://localhost:6060/debug/pprof/profile > cpu.out
  go tool pprof ./search-server cpu.out                (pprof) top / list / web
  go tool pprof -web ./search-server http://localhost:6060/debug/pprof/profile
Steps print PASS, SKIP (go-torch is archived; pprof draws flame graphs) or FAIL. The trace
step fetches a Perfetto timeline (go tool trace reads Go's own format only) and checks it
with `profiler trace --summary`.

Options:
  --port PORT        search-server's port (the lesson's 5000)            default 5000
  --pprof-port PORT  profiler serve's port                               default 6060
  --seconds N        length of a CPU profile when the URL names none     default 30 (Go's)
                     (the lesson's URLs name none: --seconds 3 makes the run quick)
  --out DIR          where the captures and graphs go                    default a temp dir
  -h, --help         this text
Environment: PROFILER and SEARCH_SERVER point at the binaries to use (default: the release
builds).
Needs: root (profiler serve loads eBPF), go (golang-go), dot (graphviz), oha and curl;
scripts/setup.sh installs them.

Examples:
  sudo scripts/pprof-lesson.sh
  sudo scripts/pprof-lesson.sh --seconds 5 --out /tmp/lesson   # keep the graphs
  sudo scripts/pprof-lesson.sh --port 5077 --pprof-port 6077
EOF
}

PORT=5000
PPROF_PORT=6060
SECONDS_DEFAULT=30
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --port|--pprof-port|--seconds|--out)
      [ $# -ge 2 ] || bad_usage "$1 needs a value; see --help"
      case "$1" in
        --port) PORT="$2" ;;
        --pprof-port) PPROF_PORT="$2" ;;
        --seconds) SECONDS_DEFAULT="$2" ;;
        --out) OUT="$2" ;;
      esac
      shift 2 ;;
    *) bad_usage "unknown argument '$1'; see --help" ;;
  esac
done
for v in "$PORT" "$PPROF_PORT" "$SECONDS_DEFAULT"; do
  is_positive_int "$v" || bad_usage "'$v' is not a positive whole number (--port, --pprof-port, --seconds)"
done
[ "$PORT" != "$PPROF_PORT" ] || bad_usage "--port and --pprof-port must differ"
require_root "profiler serve loads eBPF programs and needs root" "$@"
require_tools go dot curl oha

PROFILER="${PROFILER:-$(release_dir)/profiler}"
SEARCH_SERVER="${SEARCH_SERVER:-$(release_dir)/search-server}"
if [ ! -x "$PROFILER" ] || [ ! -x "$SEARCH_SERVER" ]; then
  echo "==> building release binaries" >&2
  (cd "$REPO" && cargo build --release --locked -q -p search-server -p profiler --bins)
fi
# Absolute: the steps run in the output directory.
PROFILER="$(realpath "$PROFILER")"
SEARCH_SERVER="$(realpath "$SEARCH_SERVER")"

if [ -z "$OUT" ]; then
  OUT="$(mktemp -d /tmp/pprof-lesson.XXXXXX)"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$OUT"
# The lesson runs `go tool pprof ./project ...` next to its binary: ours is ./search-server.
ln -sf "$SEARCH_SERVER" ./search-server
# pprof's `web` starts $BROWSER on an SVG it then deletes: keep a copy instead of a window.
printf '#!/bin/sh\ncp "$1" "%s/web-$(date +%%s%%N).svg"\n' "$OUT" > "$OUT/save-browser"
chmod +x "$OUT/save-browser"
export BROWSER="$OUT/save-browser"
# pprof keeps every profile it fetches under PPROF_TMPDIR (default ~/pprof).
export PPROF_TMPDIR="$OUT/pprof"

SERVER_PID=""
serve_pid=""
load_pid=""
cleanup() {
  for p in "$load_pid" "$serve_pid" "$SERVER_PID"; do
    [ -n "$p" ] && stop_process "$p"
  done
  return 0
}
trap cleanup EXIT

start_search_server "$SEARCH_SERVER" "$PORT" "$OUT/search-server.log"
# --heap: the lesson reads the heap profile too (search-server links the heap-sampler
# allocator, whose probes cost it almost nothing).
"$PROFILER" serve --pid "$SERVER_PID" --listen "127.0.0.1:$PPROF_PORT" --heap \
  --default-seconds "$SECONDS_DEFAULT" >"$OUT/serve.log" 2>&1 &
serve_pid=$!
wait_until_answers "profiler serve" "$serve_pid" "http://127.0.0.1:$PPROF_PORT/debug/pprof/" "$OUT/serve.log"

passed=0; skipped=0; failed=0
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$1"; }
skip() { skipped=$((skipped + 1)); printf 'SKIP  %s: %s\n' "$1" "$2"; }
fail() {
  failed=$((failed + 1))
  printf 'FAIL  %s\n' "$1"
  if [ -f "$2" ]; then tail -n 20 "$2" | sed 's/^/      /'; fi
}
# SVG files pprof's `web` has "opened" so far.
webs() { find "$OUT" -maxdepth 1 -name 'web-*.svg' | wc -l; }
# The server's reason when an endpoint is not available (its 501 text), else empty.
unavailable() { # unavailable URL
  local code
  code="$(curl -s -o "$OUT/probe.txt" -w '%{http_code}' "$1?seconds=1" || true)"
  [ "$code" = 501 ] && cat "$OUT/probe.txt"
  true
}
is_pprof() { [ "$(head -c 2 "$1" | od -An -tx1 | tr -d ' ')" = "1f8b" ]; }

echo "==> search-server on :$PORT, profiler serve on :$PPROF_PORT (default profile ${SECONDS_DEFAULT} s), files in $OUT"

# --- Raw http/pprof -------------------------------------------------------------------------
step="http://localhost:$PPROF_PORT/debug/pprof (the index)"
if curl -sL "http://localhost:$PPROF_PORT/debug/pprof" > index.html && grep -q 'href="profile' index.html; then
  pass "$step"; else fail "$step" index.html; fi

step="http://localhost:$PORT/search?term=house&cnn=on (a single search)"
if curl -sf "http://localhost:$PORT/search?term=house&cnn=on" > search.html; then
  pass "$step"; else fail "$step" search.html; fi

step="load: boom -m POST -c 8 -n 10000 (scripts/load.sh -n 10000 -c 8)"
if "$REPO/scripts/load.sh" -n 10000 -c 8 -u "http://localhost:$PORT/search?term=house&cnn=on&bbc=on&nyt=on" > load.txt 2>&1; then
  pass "$step"; else fail "$step" load.txt; fi

# The rest runs under the lesson's single-connection load.
"$REPO/scripts/load.sh" -z 1h -c 1 -u "http://localhost:$PORT/search?term=house&cnn=on&bbc=on&nyt=on" > load-bg.txt 2>&1 &
load_pid=$!

# --- Interactive Profiling ------------------------------------------------------------------
HEAP="$(unavailable "http://localhost:$PPROF_PORT/debug/pprof/heap")"

step="go tool pprof ./search-server http://localhost:$PPROF_PORT/debug/pprof/heap"
if [ -n "$HEAP" ]; then skip "$step" "$HEAP"
elif printf 'top\nquit\n' | go tool pprof ./search-server "http://localhost:$PPROF_PORT/debug/pprof/heap" > heap-interactive.txt 2>&1; then
  pass "$step"; else fail "$step" heap-interactive.txt; fi

step="go tool pprof ./search-server http://localhost:$PPROF_PORT/debug/pprof/profile  (pprof) top, list, web"
before="$(webs)"
if printf 'top\nlist search_server::search::\nweb\nquit\n' \
    | go tool pprof ./search-server "http://localhost:$PPROF_PORT/debug/pprof/profile" > cpu-interactive.txt 2>&1 \
  && grep -q 'flat%' cpu-interactive.txt && grep -q 'ROUTINE' cpu-interactive.txt \
  && [ "$(webs)" -gt "$before" ]; then
  pass "$step"; else fail "$step" cpu-interactive.txt; fi

# --- Generate PDF Call Graph ----------------------------------------------------------------
step="curl -s http://localhost:$PPROF_PORT/debug/pprof/profile > cpu.out; go tool pprof ./search-server cpu.out  (pprof) web"
before="$(webs)"
curl -s "http://localhost:$PPROF_PORT/debug/pprof/profile" > cpu.out
if is_pprof cpu.out && printf 'web\nquit\n' | go tool pprof ./search-server cpu.out > cpu-web.txt 2>&1 \
  && [ "$(webs)" -gt "$before" ]; then
  pass "$step"; else fail "$step" cpu-web.txt; fi

step="curl -s http://localhost:$PPROF_PORT/debug/pprof/heap > mem.out; go tool pprof ./search-server mem.out  (pprof) web"
curl -s "http://localhost:$PPROF_PORT/debug/pprof/heap" > mem.out
if [ -n "$HEAP" ]; then skip "$step" "$HEAP"
elif is_pprof mem.out && printf 'web\nquit\n' | go tool pprof ./search-server mem.out > mem-web.txt 2>&1; then
  pass "$step"; else fail "$step" mem-web.txt; fi

step="go tool pprof -web ./search-server http://localhost:$PPROF_PORT/debug/pprof/heap"
if [ -n "$HEAP" ]; then skip "$step" "$HEAP"
elif go tool pprof -web ./search-server "http://localhost:$PPROF_PORT/debug/pprof/heap" > heap-web.txt 2>&1; then
  pass "$step"; else fail "$step" heap-web.txt; fi

step="go tool pprof -web ./search-server http://localhost:$PPROF_PORT/debug/pprof/profile"
before="$(webs)"
if go tool pprof -web ./search-server "http://localhost:$PPROF_PORT/debug/pprof/profile" > profile-web.txt 2>&1 \
  && [ "$(webs)" -gt "$before" ]; then
  pass "$step"; else fail "$step" profile-web.txt; fi

# The same graphs as PDF files (the section's title), for people who keep them.
step="go tool pprof -pdf ./search-server cpu.out > cpu.pdf"
if go tool pprof -pdf ./search-server cpu.out > cpu.pdf 2> cpu-pdf.txt && [ "$(head -c 4 cpu.pdf)" = "%PDF" ]; then
  pass "$step"; else fail "$step" cpu-pdf.txt; fi

# --- Go Torch -------------------------------------------------------------------------------
skip "go-torch -u http://localhost:$PORT/" \
  "go-torch is archived (pprof draws flame graphs: go tool pprof -http); its analog follows"
step="curl -s http://localhost:$PPROF_PORT/debug/pprof/profile > torch.pb.gz; profiler flamegraph torch.pb.gz -o torch.svg"
if curl -s "http://localhost:$PPROF_PORT/debug/pprof/profile" > torch.pb.gz && is_pprof torch.pb.gz \
  && "$PROFILER" flamegraph torch.pb.gz -o torch.svg > torch.txt 2>&1; then
  pass "$step"; else fail "$step" torch.txt; fi

# --- Comparing Profiles ---------------------------------------------------------------------
step="curl -s http://localhost:$PPROF_PORT/debug/pprof/heap > base.heap ... go tool pprof -alloc_space -base base.heap ./search-server current.heap"
if [ -n "$HEAP" ]; then skip "$step" "$HEAP"
else
  curl -s "http://localhost:$PPROF_PORT/debug/pprof/heap" > base.heap
  sleep 2
  curl -s "http://localhost:$PPROF_PORT/debug/pprof/heap" > current.heap
  if printf 'top\nquit\n' | go tool pprof -alloc_space -base base.heap ./search-server current.heap > heap-diff.txt 2>&1; then
    pass "$step"; else fail "$step" heap-diff.txt; fi
fi
step="\"Then do the same for the cpu profile\": base.cpu, current.cpu, go tool pprof -base base.cpu ./search-server current.cpu"
curl -s "http://localhost:$PPROF_PORT/debug/pprof/profile" > base.cpu
curl -s "http://localhost:$PPROF_PORT/debug/pprof/profile" > current.cpu
if is_pprof base.cpu && is_pprof current.cpu \
  && printf 'top\nquit\n' | go tool pprof -base base.cpu ./search-server current.cpu > cpu-diff.txt 2>&1 \
  && grep -q 'flat%' cpu-diff.txt; then
  pass "$step"; else fail "$step" cpu-diff.txt; fi

# --- Tracing --------------------------------------------------------------------------------
TRACE="$(unavailable "http://localhost:$PPROF_PORT/debug/pprof/trace")"
step="curl -s http://localhost:$PPROF_PORT/debug/pprof/trace?seconds=2 > trace.out"
if [ -n "$TRACE" ]; then skip "$step" "$TRACE"
elif curl -sf "http://localhost:$PPROF_PORT/debug/pprof/trace?seconds=2" > trace.out \
  && "$PROFILER" trace --summary trace.out > trace.txt 2>&1; then
  pass "$step (a Perfetto trace: open it at ui.perfetto.dev; go tool trace reads Go's format only)"
else fail "$step" trace.txt; fi

echo
echo "pprof-lesson: $passed passed, $skipped skipped, $failed failed; files in $OUT"
echo "  (web graphs: $(webs) SVG files; cpu.pdf; torch.svg)"
[ "$failed" -eq 0 ]
