#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian 12 machine (run as root):
# the Debian rust/LLVM packages that build the eBPF programs, bpf-linker, oha (load),
# linux-perf (reference profiler), golang-go (pprof interop tests), chromium + driver
# (page tests), graphviz (call graphs), Perfetto's Python protos (the trace tests parse our
# Perfetto files with them), and on x86_64 the aarch64 cross toolchain (Debian's arm64 Rust
# standard library for the same rustc-web, the aarch64 gcc as linker, qemu-user to run the
# aarch64 tests, registered with binfmt_misc; see scripts/test-aarch64.sh). Idempotent: when everything is present it finishes in about a
# second.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

case "${1:-}" in
  -h|--help)
    cat <<'USAGE'
Usage: sudo scripts/setup.sh

Installs what building and testing need: Debian packages (rustc-web for the eBPF build,
llvm-22, linux-perf, golang-go, chromium, graphviz, ...), bpf-linker, oha, Perfetto's
Python protos, and on x86_64 the aarch64 cross toolchain (dpkg architecture arm64,
libstd-rust-web-dev:arm64, gcc-aarch64-linux-gnu, qemu-user, binfmt_misc registration).
Safe to run again: it only installs what is missing.
Needs: root (or sudo), apt, and python3 with pip (both on the base image).
Example:
  sudo scripts/setup.sh && cargo build --release
USAGE
    exit 0 ;;
esac

log() { printf 'setup: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev libzstd-dev zlib1g-dev
  linux-perf golang-go chromium chromium-driver pkg-config curl procps graphviz file
)
# The aarch64 cross build and its tests under qemu (scripts/test-aarch64.sh), on x86_64 only:
# an aarch64 machine builds and tests natively. No arm64 C library beyond libc is needed: the
# only C the cross build compiles is ring's, with the cross gcc. qemu runs the aarch64 tests
# against libc6:arm64 (see scripts/test-aarch64.sh for why not the cross sysroot's).
CROSS=0
if [ "$(uname -m)" = x86_64 ]; then
  CROSS=1
  APT_PACKAGES+=(libstd-rust-web-dev:arm64 libc6:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "adding dpkg architecture arm64 (Debian's arm64 Rust standard library)"
    # The :arm64 packages are then missing, so the apt-get update below runs and fetches
    # the arm64 package lists.
    $SUDO dpkg --add-architecture arm64
  fi
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

# rustup's cargo installs into ~/.cargo/bin; make sure that is where we look.

if ! command -v bpf-linker >/dev/null || ! bpf-linker --version 2>/dev/null | grep -q "0.13.0"; then
  log "building bpf-linker 0.13.0 against LLVM 22 (about 90 s, once)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@0.13.0 --locked \
    --no-default-features --features llvm-22
else
  log "bpf-linker present"
fi

if ! command -v oha >/dev/null || ! oha --version 2>/dev/null | grep -q "1.16"; then
  log "installing oha 1.16 (load generator)"
  cargo install oha@1.16.0 --locked
else
  log "oha present"
fi

# Perfetto's own protobuf bindings, to check our trace files the way Perfetto reads them.
require_tools python3
if ! python3 -c 'import perfetto.protos.perfetto.trace.perfetto_trace_pb2' 2>/dev/null; then
  log "installing Python packages: perfetto protobuf"
  python3 -m pip install --quiet --disable-pip-version-check 'perfetto==0.59.1' 'protobuf>=5'
else
  log "python perfetto present"
fi

if [ "$CROSS" -eq 1 ]; then
  if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    log "qemu-aarch64 binfmt present"
  elif [ -n "$SUDO" ]; then
    log "registering qemu-aarch64 with binfmt_misc"
    $SUDO bash -c "source '$REPO/scripts/lib.sh'; ensure_aarch64_binfmt"
  else
    log "registering qemu-aarch64 with binfmt_misc (aarch64 tests start aarch64 children)"
    ensure_aarch64_binfmt
  fi
fi

log "ready"
