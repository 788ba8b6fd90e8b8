#!/usr/bin/env bash
# What a malloc+free pair costs a program whose allocator `profiler record --heap` probes with
# uprobes (no heap-sampler): a C loop of N malloc(64)+free pairs, timed by the program itself
# (CLOCK_MONOTONIC around the loop only), run unprofiled, under `profiler record --heap`, and
# under `perf probe` uprobes on malloc (the reference: one counting uprobe per call), in
# interleaved rounds. Prints ns per pair, medians over rounds. The uprobe design in
# docs/ARCHITECTURE.md and the heap section of docs/PERFORMANCE.md rest on these figures.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<'USAGE'
Usage: sudo scripts/bench-heap-probes.sh [ROUNDS] [PAIRS]          (defaults 3 and 2000000)

Nanoseconds per malloc(64)+free pair of a C loop: unprofiled, under profiler record --heap
(uprobes on libc's malloc family and free), and under perf probe uprobes on malloc
(counting only), in ROUNDS interleaved rounds of PAIRS pairs each; prints the medians.
Needs: root, gcc, perf (scripts/setup.sh installs them), release binaries (built when missing).

Examples:
  sudo scripts/bench-heap-probes.sh
  sudo scripts/bench-heap-probes.sh 5 5000000
USAGE
}

case "${1:-}" in -h | --help) usage; exit 0 ;; esac
ROUNDS="${1:-3}"
PAIRS="${2:-2000000}"
is_positive_int "$ROUNDS" || bad_usage "ROUNDS must be a positive integer, got '$ROUNDS'"
is_positive_int "$PAIRS" || bad_usage "PAIRS must be a positive integer, got '$PAIRS'"
require_root
require_tools gcc perf

PROFILER="$(release_dir)/profiler"
[ -x "$PROFILER" ] || (cd "$REPO" && cargo build --release -p profiler)
WORK="$(mktemp -d)"
trap 'perf probe -q -d "probe_libc:malloc*" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

cat > "$WORK/mloop.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
void *volatile escape;
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) { escape = malloc(64); free(escape); }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
C
gcc -O2 -o "$WORK/mloop" "$WORK/mloop.c"

# perf probe needs tracefs (not mounted by default here).
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
LIBC="$(ldd "$WORK/mloop" | awk '/libc.so/ {print $3}')"
perf probe -q -d "probe_libc:malloc*" >/dev/null 2>&1 || true
perf probe -q -x "$LIBC" malloc >/dev/null

run() { # run MODE: prints ns per pair
  case "$1" in
    none) "$WORK/mloop" "$PAIRS" ;;
    heap) # the program's line, not the recorder's summary (which comes after it exits)
      "$PROFILER" record --heap -o "$WORK/heap.pb.gz" -- "$WORK/mloop" "$PAIRS" > "$WORK/heap.out" 2>&1
      grep -m1 -E '^[0-9]+\.[0-9]+$' "$WORK/heap.out" ;;
    perf-probe) perf stat -e probe_libc:malloc -x, -o /dev/null -- "$WORK/mloop" "$PAIRS" ;;
  esac
}

MODES=(none heap perf-probe)
declare -A got
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < ${#MODES[@]}; i++)); do
    m="${MODES[$(((i + r) % ${#MODES[@]}))]}"
    ns="$(run "$m")"
    printf 'round %d  %-11s %10s ns per malloc+free pair\n' "$r" "$m" "$ns"
    got[$m]+="$ns "
  done
done
echo
echo "medians over $ROUNDS rounds of $PAIRS pairs (malloc(64)+free, glibc):"
for m in "${MODES[@]}"; do
  # shellcheck disable=SC2086
  printf '%s\n' ${got[$m]} | sort -g | awk -v m="$m" '{v[NR]=$1} END {printf "  %-11s %10.1f ns per pair\n", m, v[int((NR+1)/2)]}'
done
