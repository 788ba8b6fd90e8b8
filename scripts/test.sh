#!/usr/bin/env bash
# The project's test command (what .ci/run calls): setup, format check, clippy with
# -D warnings, then every test of the workspace — unit, integration, the root eBPF tests that
# profile real processes, and the headless-Chromium page test — and, on x86_64, the aarch64
# cross step (scripts/test-aarch64.sh: aarch64 release-like binaries, their non-root tests
# under qemu-user). On an aarch64 machine everything above runs natively and the cross step
# is skipped. Run as root.
#
# Each thing is built once: clippy checks the workspace (metadata only), then one
# `cargo test --release` builds the release binaries the tests run (the profiler, the search
# server, the workloads) and the tests themselves; the eBPF object is built once for all
# profiles (profiler/build.rs). Tests that record take one recording at a time by themselves.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help)
    cat <<'USAGE'
Usage: sudo scripts/test.sh

Runs what CI runs: scripts/setup.sh, cargo fmt --check, cargo clippy -D warnings, every
test of the workspace in release mode (the profiler's tests load eBPF programs: root needed),
then on x86_64 scripts/test-aarch64.sh (cross build for aarch64, non-root tests under qemu).
On an aarch64 machine the same command runs the whole suite natively, recording included.
Examples:
  sudo scripts/test.sh 2>&1 | tee test.log
  sudo scripts/test-aarch64.sh            # the aarch64 cross step alone
USAGE
    exit 0 ;;
esac

bash scripts/setup.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the profiler's tests load eBPF programs and need root; run: sudo scripts/test.sh" >&2
  exit 1
fi

step() { printf '\n==> %s (%ds)\n' "$*" "$SECONDS"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests, release build (real eBPF, real processes, real Chromium)"
cargo test --release --locked --workspace

case "$(uname -m)" in
  x86_64)
    step "aarch64: cross build, non-root tests under qemu-user (scripts/test-aarch64.sh)"
    bash scripts/test-aarch64.sh ;;
  aarch64)
    step "aarch64 host: the suite above ran natively; no cross step" ;;
  *)
    fail "unsupported machine $(uname -m): the profiler supports x86_64 and aarch64" ;;
esac

step "done"
