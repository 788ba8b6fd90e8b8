#!/usr/bin/env bash
# The project's test command (what .ci/run calls): setup, format check, clippy with
# -D warnings, then every test of the workspace — unit, integration, the root eBPF tests that
# profile real processes, and the headless-Chromium page test. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the profiler's tests load eBPF programs and need root; run: sudo scripts/test.sh" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build release binaries (tests run the real, optimized programs)"
cargo build --release --locked --workspace --bins

step "search-server tests"
cargo test --locked -p search-server

step "profiler tests (real eBPF, real processes; one at a time so they do not share the CPUs)"
cargo test --locked -p profiler -- --test-threads=1
