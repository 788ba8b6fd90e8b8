#!/usr/bin/env bash
# Speed of the commands that read captures, on captures with 100,000 distinct stacks: the
# criterion benchmark of the library (profiler/benches/render.rs), then the release CLI itself
# (`profiler top`, `flamegraph`, `diff`) timed end to end, best and median of RUNS runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'EOF'
Usage: scripts/bench-read.sh [--cli-only]

Runs the criterion benchmark of the reading commands (cargo bench -p profiler --bench render),
which writes two captures with 100,000 distinct stacks, then times the release CLI's `top`,
`flamegraph` and `diff` on them: best and median wall time of RUNS runs (default 5).

Options:
  --cli-only   run each criterion case once, only to write the captures
  -h, --help   this text

Examples:
  scripts/bench-read.sh
  scripts/bench-read.sh --cli-only
  RUNS=9 scripts/bench-read.sh
  flock /work/bench.lock scripts/bench-read.sh    # on a shared machine, one measurement at a time
EOF
}

RUNS="${RUNS:-5}"
criterion_args=()
case "${1:-}" in
  "") ;;
  --cli-only) criterion_args=(--test) ;;
  -h | --help) usage; exit 0 ;;
  *) bad_usage "unknown option $1 (try --help)" ;;
esac
is_positive_int "$RUNS" || bad_usage "RUNS=$RUNS is not a positive whole number"
cd "$REPO"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "==> criterion: cargo bench -p profiler --bench render ${criterion_args[*]}" >&2
# The bench writes its two captures to $TMPDIR for the CLI timings below.
TMPDIR="$work" cargo bench --locked -p profiler --bench render -- "${criterion_args[@]}"
base="$work/profiler-bench-100k.pb.gz"
current="$work/profiler-bench-100k-b.pb.gz"
[ -f "$base" ] && [ -f "$current" ] || fail "the bench wrote no captures to $work"

cargo build --release --locked -p profiler --bin profiler >&2
bin="$(release_dir)/profiler"

# Prints "best median" wall seconds of RUNS runs of the command.
time_runs() {
  local times=() start end
  for _ in $(seq 1 "$RUNS"); do
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }')")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "best %.3f s, median %.3f s\n", a[1], a[int((NR+1)/2)]}'
}

echo
echo "CLI on 100,000 distinct stacks ($RUNS runs each, wall time; $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)):"
printf '  %-11s %s\n' top "$(time_runs "$bin" top "$base")"
printf '  %-11s %s\n' flamegraph "$(time_runs "$bin" flamegraph "$base" -o "$work/fg.svg")"
printf '  %-11s %s\n' diff "$(time_runs "$bin" diff "$base" "$current" -o "$work/diff.svg")"
