#!/usr/bin/env bash
# Throughput of search-server against its ceiling: the release server (embedded feeds) and a
# bare hyper server (examples/fixed_page) answering the very bytes of the real "house" result
# page, under the tutorial's oha load, in interleaved rounds on this machine. Then a -c 256
# run (errors must be zero) and the server's resident memory after it all. Prints the figures
# that docs/PERFORMANCE.md records, each against its target.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: scripts/bench-server.sh [ROUNDS] [REQUESTS_PER_RUN]          (defaults 3 and 100000)

Builds the release search-server and examples/fixed_page, starts both on loopback, fetches
the real result page once and serves those bytes from fixed_page, warms both up, then runs
ROUNDS interleaved rounds of
  oha -m POST -c 8 -n REQUESTS_PER_RUN "http://127.0.0.1:PORT/search?term=house&cnn=on&bbc=on&nyt=on"
against each (order alternating per round) and prints req/s, p99, errors and the ratio
search/fixed per round and as a median, and the server's VmRSS from /proc (after at least
100,000 requests when ROUNDS x REQUESTS_PER_RUN allows). Then one -c 256 run against
search-server, with its errors and VmRSS after it.

Environment: SEARCH_PORT (default 5081), FIXED_PORT (5082), HIGH_CONNECTIONS (256),
             SLOW_SEARCH=1 to measure the server with --slow-search.
Wrap it in `flock /work/bench.lock` on a shared machine so measurements never overlap.
Needs: oha, curl, python3 and cargo (scripts/setup.sh installs them).

Examples:
  scripts/bench-server.sh
  flock /work/bench.lock scripts/bench-server.sh 5 100000
  flock /work/bench.lock nice -n -10 scripts/bench-server.sh 5 100000   # ahead of busy neighbours
  SLOW_SEARCH=1 scripts/bench-server.sh 1 20000
EOF
}

case "${1:-}" in -h|--help) usage; exit 0 ;; esac
ROUNDS="${1:-3}"
REQUESTS="${2:-100000}"
SEARCH_PORT="${SEARCH_PORT:-5081}"
FIXED_PORT="${FIXED_PORT:-5082}"
HIGH="${HIGH_CONNECTIONS:-256}"
for v in "$ROUNDS" "$REQUESTS" "$SEARCH_PORT" "$FIXED_PORT" "$HIGH"; do
  is_positive_int "$v" || bad_usage "'$v' is not a positive whole number (ROUNDS, REQUESTS_PER_RUN, SEARCH_PORT, FIXED_PORT, HIGH_CONNECTIONS); see --help"
done
require_tools oha curl python3 cargo
cd "$REPO"
# -c 256 needs a descriptor per connection on each side.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "==> building release search-server and examples/fixed_page" >&2
# Two builds: an example pulls in the dev-dependencies, and their features (tokio's test-util)
# must not reach the server binary being measured.
cargo build --release --locked -q -p search-server --bin search-server
cargo build --release --locked -q -p search-server --example fixed_page
SERVER="$(release_dir)/search-server"
FIXED="$(release_dir)/examples/fixed_page"
QUERY="/search?term=house&cnn=on&bbc=on&nyt=on"
SEARCH_URL="http://127.0.0.1:$SEARCH_PORT$QUERY"
FIXED_URL="http://127.0.0.1:$FIXED_PORT$QUERY"

WORK="$(mktemp -d /tmp/bench-server.XXXXXX)"
SERVER_PID=""
fixed_pid=""
cleanup() {
  [ -z "$SERVER_PID" ] || stop_process "$SERVER_PID"
  [ -z "$fixed_pid" ] || stop_process "$fixed_pid"
  rm -rf "$WORK"
}
trap cleanup EXIT

server_args=()
[ "${SLOW_SEARCH:-0}" = 1 ] && server_args+=(--slow-search)
start_search_server "$SERVER" "$SEARCH_PORT" "$WORK/search-server.log" "${server_args[@]}"

curl -s -X POST "$SEARCH_URL" -o "$WORK/page.html"
page_bytes=$(wc -c <"$WORK/page.html")
hits=$(grep -o '<li class="hit">' "$WORK/page.html" | wc -l)
items=$(curl -s "http://127.0.0.1:$SEARCH_PORT/metrics" | awk '/^search_feed_items\{/ {n += $2} END {print n + 0}')
echo "feed set: $items items; 'house' hits $hits; result page $page_bytes bytes (real feeds: ~600 items, ~30 hits, ~23 KB)"

"$FIXED" --listen "127.0.0.1:$FIXED_PORT" --body "$WORK/page.html" >"$WORK/fixed_page.log" 2>&1 &
fixed_pid=$!
wait_until_answers fixed_page "$fixed_pid" "$FIXED_URL" "$WORK/fixed_page.log" -X POST

served=0
# run NAME URL CONNECTIONS COUNT -> one line "name rps p99_ms errors" appended to results
run() {
  local out="$WORK/$1-$RANDOM.json"
  oha --no-tui --output-format json -m POST -c "$3" -n "$4" "$2" >"$out"
  python3 - "$1" "$out" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
d = json.load(open(path))
ok = sum(v for k, v in d["statusCodeDistribution"].items() if k.startswith("2"))
bad = sum(v for k, v in d["statusCodeDistribution"].items() if not k.startswith("2"))
errors = bad + sum(d["errorDistribution"].values())
print(f'{name} {d["summary"]["requestsPerSec"]:.0f} {d["latencyPercentiles"]["p99"] * 1000:.3f} {errors} {ok}')
PY
}

echo "==> warming up (20000 requests each)" >&2
run search "$SEARCH_URL" 8 20000 >/dev/null
run fixed "$FIXED_URL" 8 20000 >/dev/null
served=$((served + 20000 + 1))

echo
printf '%-6s %-14s %12s %10s %8s\n' round server "req/s" "p99 ms" errors
: >"$WORK/rounds"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="search fixed"; else order="fixed search"; fi
  for who in $order; do
    if [ "$who" = search ]; then url="$SEARCH_URL"; else url="$FIXED_URL"; fi
    line=$(run "$who" "$url" 8 "$REQUESTS")
    read -r name rps p99 errors _ <<<"$line"
    printf '%-6s %-14s %12s %10s %8s\n' "$r" "$name" "$rps" "$p99" "$errors"
    echo "$r $line" >>"$WORK/rounds"
    [ "$who" = search ] && served=$((served + REQUESTS))
  done
done

python3 - "$WORK/rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, name, rps, p99, errors, _ok in rows:
    by.setdefault(r, {})[name] = (float(rps), float(p99), int(errors))
ratios = [v["search"][0] / v["fixed"][0] for v in by.values()]
search_rps = [v["search"][0] for v in by.values()]
fixed_rps = [v["fixed"][0] for v in by.values()]
search_p99 = [v["search"][1] for v in by.values()]
search_err = sum(v["search"][2] for v in by.values())
print()
print("ratio search/fixed per round: " + ", ".join(f"{x:.2f}" for x in ratios))
med = statistics.median
def verdict(ok): return "met" if ok else "NOT MET"
print(f"search-server -c 8: median {med(search_rps):.0f} req/s (target >= 25000: {verdict(med(search_rps) >= 25000)}), "
      f"median p99 {med(search_p99):.3f} ms (target < 2 ms: {verdict(med(search_p99) < 2)}), "
      f"errors {search_err} (target 0: {verdict(search_err == 0)})")
print(f"fixed_page    -c 8: median {med(fixed_rps):.0f} req/s")
print(f"ratio search/fixed: median {med(ratios):.2f} (target >= 0.50: {verdict(med(ratios) >= 0.5)})")
PY

rss_line() { # LABEL
  local rss_kb hwm_kb
  # Read once oha's connections have closed and the server has gone idle.
  sleep 1
  rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")
  hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")
  python3 -c "
rss, hwm = $rss_kb / 1024, $hwm_kb / 1024
print(f'search-server RSS $1: VmRSS {rss:.1f} MiB, peak VmHWM {hwm:.1f} MiB (target < 18 MB: {\"met\" if rss * 1.048576 < 18 else \"NOT MET\"})')"
}
rss_line "after $served requests at -c 8"

echo
echo "==> -c $HIGH against search-server ($REQUESTS requests)" >&2
line=$(run search "$SEARCH_URL" "$HIGH" "$REQUESTS")
read -r _ rps p99 errors ok <<<"$line"
served=$((served + REQUESTS))
verdict=$([ "$errors" -eq 0 ] && echo met || echo "NOT MET")
echo "search-server -c $HIGH: $rps req/s, p99 $p99 ms, errors $errors (target 0: $verdict)"

rss_line "after $served requests, the last $REQUESTS at -c $HIGH"
