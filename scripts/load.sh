#!/usr/bin/env bash
# Puts the Go profiling tutorial's load on a running search-server with oha: POST searches
# for "house" over all three sources from 8 connections, 100,000 requests by default.
# Installs oha (the way scripts/setup.sh does) when it is missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: scripts/load.sh [-n COUNT | -z DURATION] [-c CONNECTIONS] [-u URL] [-- OHA_ARGS...]

Puts the tutorial's load on a running search-server:
  oha -m POST -c 8 -n 100000 "http://localhost:5000/search?term=house&cnn=on&bbc=on&nyt=on"

Options (each also settable through the environment variable in brackets):
  -n COUNT        number of requests [LOAD_REQUESTS]              default 100000
  -z DURATION     run for a time instead of a count, e.g. 30s [LOAD_DURATION]
  -c CONNECTIONS  concurrent connections [LOAD_CONNECTIONS]        default 8
  -u URL          the URL to POST to [LOAD_URL]
                  default http://localhost:5000/search?term=house&cnn=on&bbc=on&nyt=on
  -h, --help      this text
Arguments after -- go to oha unchanged.

Examples:
  cargo run --release -p search-server &         # start the server (embedded feeds)
  scripts/load.sh                                # the tutorial's 100k requests at -c 8
  scripts/load.sh -n 20000 -c 64                 # fewer requests, more connections
  scripts/load.sh -z 30s                         # load for 30 s (e.g. while recording a profile)
  scripts/load.sh -u "http://127.0.0.1:5077/search?term=storm&bbc=on"
  LOAD_CONNECTIONS=256 scripts/load.sh -- --latency-correction
EOF
}

REQUESTS="${LOAD_REQUESTS:-100000}"
DURATION="${LOAD_DURATION:-}"
CONNECTIONS="${LOAD_CONNECTIONS:-8}"
URL="${LOAD_URL:-http://localhost:5000/search?term=house&cnn=on&bbc=on&nyt=on}"
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n|-c|-u|-z)
      [ $# -ge 2 ] || bad_usage "$1 needs a value; see scripts/load.sh --help"
      case "$1" in
        -n) REQUESTS="$2"; DURATION="" ;;
        -z) DURATION="$2" ;;
        -c) CONNECTIONS="$2" ;;
        -u) URL="$2" ;;
      esac
      shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) bad_usage "unknown argument '$1'; see scripts/load.sh --help" ;;
  esac
done

is_positive_int "$REQUESTS" || bad_usage "request count '$REQUESTS' is not a positive whole number (-n or LOAD_REQUESTS)"
is_positive_int "$CONNECTIONS" || bad_usage "connection count '$CONNECTIONS' is not a positive whole number (-c or LOAD_CONNECTIONS)"
if [ -n "$DURATION" ]; then
  case "$DURATION" in
    *[0-9]s|*[0-9]m|*[0-9]h|*[0-9]ms) ;;
    *) bad_usage "duration '$DURATION' is not like 30s, 2m or 500ms (-z or LOAD_DURATION)" ;;
  esac
fi
case "$URL" in
  http://*|https://*) ;;
  *) bad_usage "URL '$URL' must start with http:// or https:// (-u or LOAD_URL)" ;;
esac

if ! command -v oha >/dev/null; then
  # The same pinned version as scripts/setup.sh, read from there so the two never drift.
  oha_crate="$(grep -o 'oha@[0-9.]*' "$REPO/scripts/setup.sh" | head -n1)"
  [ -n "$oha_crate" ] || fail "oha is missing and scripts/setup.sh names no oha version; run: cargo install oha --locked"
  command -v cargo >/dev/null || fail "oha is missing and so is cargo; install Rust (rustup) or run scripts/setup.sh"
  echo "load: oha not found; installing $oha_crate as scripts/setup.sh does (takes a minute, once)" >&2
  cargo install "$oha_crate" --locked
fi

# One probe request first: a dead server is a clear message, not 100k connection errors.
status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST "$URL" || true)"
case "$status" in
  2??) ;;
  000) bad_usage "nothing answers at $URL; start the server first (cargo run --release -p search-server), or point -u at it" ;;
  *) bad_usage "$URL answered HTTP $status to a POST; is that a search-server /search URL?" ;;
esac

if [ -n "$DURATION" ]; then
  amount=(-z "$DURATION")
  what="for $DURATION"
else
  amount=(-n "$REQUESTS")
  what="$REQUESTS requests"
fi
echo "load: POST $URL, $what, $CONNECTIONS connections" >&2
exec oha --no-tui -m POST -c "$CONNECTIONS" "${amount[@]}" "${EXTRA[@]}" "$URL"
