#!/usr/bin/env bash
# The aarch64 step of CI, on an x86_64 machine: cross-builds the profiler and the search server
# for aarch64-unknown-linux-gnu (eBPF programs included, built for arm64's pt_regs and calling
# convention by profiler/build.rs) and runs, under qemu-user, every test that needs neither
# root nor a kernel that loads eBPF programs: the profiler's unit tests (capture read/write,
# rendering, symbolization of this aarch64 test binary, the embedded eBPF object's registers),
# the reading commands on fixture captures through the aarch64 binary, Perfetto trace files,
# the serve endpoints over a fake agent, and the aarch64 search server answering a search.
#
# Recording itself cannot run here (qemu-user emulates a CPU, not the kernel's eBPF); on an
# aarch64 machine `sudo scripts/test.sh` runs the whole suite natively instead of this.
#
# Compiler: Debian's rustc-web 1.96 (/usr/bin/cargo, /usr/bin/rustc), the one with an arm64
# standard library in the archive (libstd-rust-web-dev:arm64); rustup's stable has none.
# Profile `cross` (Cargo.toml): release settings at opt-level 1, to keep CI time down.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

TRIPLE=aarch64-unknown-linux-gnu
PROFILE="${AARCH64_PROFILE:-cross}"
TARGET_DIR="${AARCH64_TARGET_DIR:-$REPO/target/cross}"
PORT="${AARCH64_PORT:-5091}"

usage() {
  cat <<USAGE
Usage: sudo scripts/test-aarch64.sh [--build-only]

Cross-builds profiler and search-server for $TRIPLE and runs
their tests that need no root and no eBPF under qemu-user (the x86_64 CI's aarch64 step;
scripts/test.sh calls it).
  --build-only   build the aarch64 binaries and test binaries, run nothing
  -h, --help     this text
Environment:
  AARCH64_PROFILE     cargo profile [cross]; 'release' builds exactly what a user ships
  AARCH64_TARGET_DIR  cargo target dir [target/cross]; binaries land in
                      \$AARCH64_TARGET_DIR/$TRIPLE/\$AARCH64_PROFILE/
  AARCH64_PORT        loopback port for the search-server smoke test [5091]
Needs: scripts/setup.sh done (Debian rustc-web with libstd-rust-web-dev:arm64 and libc6:arm64,
gcc-aarch64-linux-gnu, qemu-user), and root once per boot to register qemu with binfmt_misc
(the tests start the aarch64 profiler binary as a child process).
Examples:
  sudo scripts/test-aarch64.sh
  AARCH64_PROFILE=release sudo -E scripts/test-aarch64.sh --build-only
  qemu-aarch64 target/cross/$TRIPLE/cross/profiler top cpu.pb.gz
USAGE
}

BUILD_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --build-only) BUILD_ONLY=1 ;;
    *) bad_usage "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
is_positive_int "$PORT" || bad_usage "AARCH64_PORT must be a port number, not '$PORT'"

if [ "$(uname -m)" = aarch64 ]; then
  fail "this machine is aarch64: run the native suite, sudo scripts/test.sh, instead of the cross step"
fi

# qemu runs the aarch64 programs against Debian's multiarch arm64 libc (libc6:arm64, in /lib
# and /usr/lib/aarch64-linux-gnu), with no -L sysroot: with the cross sysroot's libc
# (libc6-arm64-cross 2.36-8cross1) qemu 7.2 hangs in the first pthread_create.
for f in /usr/bin/cargo /usr/bin/rustc "/usr/lib/rustlib/$TRIPLE" /lib/ld-linux-aarch64.so.1; do
  [ -e "$f" ] || fail "$f is missing (the aarch64 cross toolchain); run: sudo scripts/setup.sh"
done
require_tools aarch64-linux-gnu-gcc qemu-aarch64 curl file

step() { printf '\n==> aarch64: %s (%ds)\n' "$*" "$SECONDS"; }

# Debian's compiler for everything cross-built; rustup's proxies would pick 1.95 (no arm64 std).
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR="$TARGET_DIR"
# Test binaries run under qemu; the profiler binary they start as a child goes through binfmt.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
CARGO=(/usr/bin/cargo)
BUILD_ARGS=(--locked --profile "$PROFILE" --target "$TRIPLE")
BIN_DIR="$TARGET_DIR/$TRIPLE/$PROFILE"

# The tests that need neither root nor eBPF: the unit tests, and the integration tests that
# read captures or run on a fake agent. Root tests (fidelity, record, heap, offcpu, watch,
# trace, compare, serve::live, serve::lesson) load eBPF programs: native hardware only.
# This build also makes the profiler binary (the reading tests run it), with the eBPF object
# for aarch64 embedded; building it apart would compile tokio and everything above it twice
# (the tests enable tokio's test-util).
step "build profiler and its tests ($PROFILE profile)"
"${CARGO[@]}" test "${BUILD_ARGS[@]}" -p profiler --lib --test reading --test trace_file --test serve --no-run
step "build search-server ($PROFILE profile)"
"${CARGO[@]}" build "${BUILD_ARGS[@]}" -p search-server --bin search-server
for bin in profiler search-server; do
  file -b "$BIN_DIR/$bin" | grep -q "ARM aarch64" ||
    fail "$BIN_DIR/$bin is not an aarch64 executable: $(file -b "$BIN_DIR/$bin")"
done
if [ "$BUILD_ONLY" -eq 1 ]; then
  step "built (--build-only): $BIN_DIR/profiler, $BIN_DIR/search-server"
  exit 0
fi

ensure_aarch64_binfmt

# Skipped under qemu-user for a reason qemu gives, not the code: qemu 7.2 maps no vDSO for an
# aarch64 guest. Printed, so nobody mistakes them for passes; they run natively everywhere.
QEMU_SKIPS=(
  symbolize::tests::unknown_addresses_name_their_module
  symbolize::tests::vdso_functions_are_named
)
printf 'aarch64: skipped under qemu-user (qemu 7.2 gives an aarch64 guest no vDSO): %s\n' "${QEMU_SKIPS[*]}"
SKIP_ARGS=()
for t in "${QEMU_SKIPS[@]}"; do SKIP_ARGS+=(--skip "$t"); done

step "unit tests under qemu"
"${CARGO[@]}" test "${BUILD_ARGS[@]}" -p profiler --lib -- "${SKIP_ARGS[@]}"

step "reading commands through the aarch64 binary, Perfetto files"
"${CARGO[@]}" test "${BUILD_ARGS[@]}" -p profiler --test reading --test trace_file

step "serve: the endpoints and the push loop on a fake agent"
# live and lesson record real processes (root, eBPF): left out here.
"${CARGO[@]}" test "${BUILD_ARGS[@]}" -p profiler --test serve -- endpoints:: push::

step "search-server answers a search (aarch64 binary under qemu)"
WORK="$(mktemp -d)"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && stop_process "$SERVER_PID"; rm -rf "$WORK"' EXIT
start_search_server "$BIN_DIR/search-server" "$PORT" "$WORK/server.log"
page="$(curl -fsS --max-time 30 -X POST "http://127.0.0.1:$PORT/search?term=house&cnn=on&bbc=on&nyt=on")" ||
  fail "the aarch64 search-server did not answer a search; see $WORK/server.log"
# The embedded feed set has 30 items about "house" (as on x86_64).
grep -q "30 hits in" <<<"$page" ||
  fail "the aarch64 search-server's page does not say '30 hits':"$'\n'"${page:0:600}"

step "aarch64 done"
