#!/usr/bin/env bash
# The project's test command (what .ci/run calls): setup, format check, clippy with
# -D warnings, then every test of the workspace — unit, integration, the root eBPF tests that
# profile real processes, and the headless-Chromium page test. Run as root.
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

Runs what CI runs: scripts/setup.sh, cargo fmt --check, cargo clippy -D warnings, and every
test of the workspace in release mode (the profiler's tests load eBPF programs: root needed).
Example:
  sudo scripts/test.sh 2>&1 | tee test.log
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

step "done"
