#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian 12 machine (run as root):
# the Debian rust/LLVM packages that build the eBPF programs, bpf-linker, oha (load),
# linux-perf (reference profiler), golang-go (pprof interop tests), chromium + driver
# (page tests). Idempotent: when everything is present it finishes in about a second.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev libzstd-dev zlib1g-dev
  linux-perf golang-go chromium chromium-driver pkg-config curl procps
)

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
export PATH="$HOME/.cargo/bin:$PATH"

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

log "ready"
