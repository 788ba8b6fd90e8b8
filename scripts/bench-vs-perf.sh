#!/usr/bin/env bash
# Fidelity against Linux perf: one run of a workload (default: cpu_split, a known 60/30/10 CPU
# split) is recorded at the same time by `perf record -F 99 -g` and by `profiler record -F 99`,
# and the top functions of both are printed side by side. Both recordings are reduced to folded
# stacks and counted by the same awk program, so the columns mean the same thing:
#   self  = share of samples whose sampled instruction belongs to the function (its symbol;
#           code inlined into it counts for it, as perf counts it);
#   total = share of samples with the function anywhere on the stack.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: sudo scripts/bench-vs-perf.sh [SECONDS] [WORKLOAD] [ROWS]     (defaults 10 cpu_split 12)

Runs the profiler example WORKLOAD, records it for SECONDS with `perf record -F FREQ -g` and
`profiler record -F FREQ` at the same time, and prints the top ROWS functions of both side by
side: self and total shares, counted from folded stacks by the same awk program.

Environment: FREQ (sampling frequency of both, default 99).
Needs: root and perf (scripts/setup.sh installs linux-perf).

Examples:
  sudo scripts/bench-vs-perf.sh
  sudo scripts/bench-vs-perf.sh 20 cpu_split 20
  sudo FREQ=999 scripts/bench-vs-perf.sh 10
EOF
}

case "${1:-}" in -h | --help) usage; exit 0 ;; esac
SECONDS_TO_RECORD="${1:-10}"
WORKLOAD="${2:-cpu_split}"
ROWS="${3:-12}"
FREQ="${FREQ:-99}"
is_positive_int "$SECONDS_TO_RECORD" ||
  bad_usage "SECONDS must be a positive whole number of seconds, got '$SECONDS_TO_RECORD'; see --help"
is_positive_int "$ROWS" || bad_usage "ROWS must be a positive whole number, got '$ROWS'"
is_positive_int "$FREQ" || bad_usage "FREQ must be a positive whole number of Hz, got '$FREQ'"
cd "$REPO"
if [ ! -f "profiler/examples/$WORKLOAD.rs" ]; then
  bad_usage "no workload '$WORKLOAD'; choose one of: $(cd profiler/examples && ls ./*.rs | sed 's|./||; s|\.rs$||' | tr '\n' ' ')"
fi
require_root "recording needs root (eBPF and perf)" "$@"
require_tools perf

echo "==> building profiler and workload $WORKLOAD (release, frame pointers)" >&2
cargo build --release --locked -q -p profiler --bins --example "$WORKLOAD"
PROFILER="$(release_dir)/profiler"
EXE="$(release_dir)/examples/$WORKLOAD"

WORK="$(mktemp -d /tmp/bench-vs-perf.XXXXXX)"
workload_pid=""
perf_pid=""
cleanup() {
  [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null || true
  [ -n "$workload_pid" ] && kill "$workload_pid" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The workload outlives both recordings by two seconds; perf stops when it exits.
"$EXE" $((SECONDS_TO_RECORD + 2)) > "$WORK/workload.out" &
workload_pid=$!
sleep 0.3
perf record -q -F "$FREQ" -g -p "$workload_pid" -o "$WORK/perf.data" >/dev/null 2>"$WORK/perf.err" &
perf_pid=$!
echo "==> recording pid $workload_pid for ${SECONDS_TO_RECORD}s with perf and profiler at $FREQ Hz" >&2
"$PROFILER" record --pid "$workload_pid" -F "$FREQ" --duration "${SECONDS_TO_RECORD}s" \
  -o "$WORK/profiler.pb.gz" >&2
wait "$workload_pid" || true
workload_pid=""
wait "$perf_pid" || { cat "$WORK/perf.err" >&2; exit 1; }
perf_pid=""
# Counted in samples, as perf's lines are (the capture's default weight is CPU time).
"$PROFILER" fold --sample-type samples "$WORK/profiler.pb.gz" > "$WORK/profiler.folded"

# perf script prints each sample as a header line, then one line per frame (leaf first), then
# a blank line; fold it to `root;...;leaf 1`.
perf script -i "$WORK/perf.data" -F comm,ip,sym 2>/dev/null | awk '
  /^[^ \t]/ { n = 0; next }
  /^[ \t]/ { sub(/^[ \t]+[0-9a-f]+ /, ""); frames[n++] = $0; next }
  /^$/ { if (n > 0) { s = frames[n-1]; for (i = n - 2; i >= 0; i--) s = s ";" frames[i]; print s " 1" } n = 0 }
  END { if (n > 0) { s = frames[n-1]; for (i = n - 2; i >= 0; i--) s = s ";" frames[i]; print s " 1" } }
' > "$WORK/perf.folded"

# Per function: self (leaf symbol, skipping inlined frames marked `_[i]`) and total shares.
shares() {
  awk '
    BEGIN { hash = "::h"; for (i = 0; i < 16; i++) hash = hash "[0-9a-f]"; hash = hash "$" }
    {
      count = $NF; stack = $0; sub(/ [0-9]+$/, "", stack)
      n = split(stack, f, ";"); total += count
      leaf = ""
      for (i = n; i >= 1; i--) { if (f[i] !~ /_\[i\]$/) { leaf = f[i]; break } }
      delete seen
      for (i = 1; i <= n; i++) {
        name = f[i]; sub(/_\[[ki]\]$/, "", name); sub(hash, "", name)
        if (!(name in seen)) { seen[name] = 1; tot[name] += count }
      }
      sub(/_\[[ki]\]$/, "", leaf); sub(hash, "", leaf)
      self[leaf] += count
    }
    END { for (name in tot) printf "%s\t%.2f\t%.2f\t%d\n", name, 100 * self[name] / total, 100 * tot[name] / total, total }
  ' "$1"
}
shares "$WORK/perf.folded" > "$WORK/perf.shares"
shares "$WORK/profiler.folded" > "$WORK/profiler.shares"
perf_n=$(head -n1 "$WORK/perf.shares" | cut -f4)
ours_n=$(head -n1 "$WORK/profiler.shares" | cut -f4)

echo
echo "workload: $WORKLOAD, ${SECONDS_TO_RECORD}s at $FREQ Hz; samples: perf ${perf_n:-0}, profiler ${ours_n:-0}"
echo "rows: the top $ROWS functions by perf's self share, then any other function in the profiler's top $ROWS"
printf '%-8s %-8s %-8s | %-8s %-8s %-8s | %s\n' "perf" "profiler" "diff" "perf" "profiler" "diff" "function"
printf '%-8s %-8s %-8s | %-8s %-8s %-8s | %s\n' "self%" "self%" "points" "total%" "total%" "points" ""
awk -F'\t' -v rows="$ROWS" '
  FNR == NR { ps[$1] = $2; pt[$1] = $3; next }
  { os[$1] = $2; ot[$1] = $3 }
  END {
    # Order: perf self desc, then profiler self desc for names perf lacks in its top.
    nk = 0
    for (k in ps) keys[nk++] = k
    for (i = 0; i < nk; i++) for (j = i + 1; j < nk; j++) if (ps[keys[j]] + 0 > ps[keys[i]] + 0) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
    shown = 0
    for (i = 0; i < nk && shown < rows; i++) { k = keys[i]; printed[k] = 1; line(k); shown++ }
    no = 0
    for (k in os) okeys[no++] = k
    for (i = 0; i < no; i++) for (j = i + 1; j < no; j++) if (os[okeys[j]] + 0 > os[okeys[i]] + 0) { t = okeys[i]; okeys[i] = okeys[j]; okeys[j] = t }
    for (i = 0; i < no && i < rows; i++) if (!(okeys[i] in printed)) line(okeys[i])
  }
  function line(k) {
    printf "%-8.2f %-8.2f %+-8.2f | %-8.2f %-8.2f %+-8.2f | %s\n", ps[k], os[k], os[k] - ps[k], pt[k], ot[k], ot[k] - pt[k], k
  }
' "$WORK/perf.shares" "$WORK/profiler.shares"
