# shellcheck shell=bash
# What the scripts share, so each line lives once: the PATH to rustup's tools, where release
# binaries are, argument and environment checks, and starting search-server (or any server)
# and waiting until it answers. Sourced by the scripts, never run:
#   source "$(dirname "$0")/lib.sh"
# Sourcing it only sets PATH and defines names; nothing starts or installs, so a script can
# answer --help after sourcing it.

# Run rather than sourced (`scripts/lib.sh --help`): say what it is, as every script does.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  cat <<'EOF'
Usage: source "$(dirname "$0")/lib.sh"      (from a script in scripts/; it is not a command)

The helpers the scripts share: PATH with ~/.cargo/bin, REPO, SCRIPT, bad_usage, fail,
release_dir, is_positive_int, require_root, require_tools, start_search_server,
wait_until_answers, stop_process, run_ns, ensure_aarch64_binfmt. Each is described where it is defined.

Examples:
  source "$(dirname "$0")/lib.sh"
  require_tools oha curl
  start_search_server "$(release_dir)/search-server" 5077 "$WORK/server.log" --slow-search
  trap 'stop_process "$SERVER_PID"' EXIT
EOF
  exit 0
fi

# rustup's cargo, and the tools cargo installs (oha, bpf-linker), live in ~/.cargo/bin.
export PATH="$HOME/.cargo/bin:$PATH"

# The repository's root, wherever the script was started from.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Messages start with the script's name ("bench-overhead: ...").
SCRIPT="$(basename "$0" .sh)"

# Wrong input: exit 2, naming the script.
bad_usage() {
  echo "$SCRIPT: $*" >&2
  exit 2
}

# Cannot go on (no root, a missing tool, a process that failed): exit 1.
fail() {
  echo "$SCRIPT: $*" >&2
  exit 1
}

# Where `cargo build --release` puts binaries; a relative CARGO_TARGET_DIR is taken from the
# repository's root, as cargo does when run there.
release_dir() {
  local target="${CARGO_TARGET_DIR:-target}"
  case "$target" in /*) ;; *) target="$REPO/$target" ;; esac
  echo "$target/release"
}

# is_positive_int VALUE: a whole number above zero, in decimal.
is_positive_int() {
  [[ "$1" =~ ^[0-9]+$ ]] && ((10#$1 > 0))
}

# require_root WHY ARGS...: exits unless root, with the command to re-run (ARGS: the script's).
require_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  local why="$1"
  shift
  fail "$why; run: sudo $0 $*"
}

# require_tools TOOL...: exits naming the first tool that is not on PATH; setup.sh installs them.
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || fail "$tool not found; run scripts/setup.sh"
  done
}

# start_search_server BIN PORT LOG [ARGS...]: starts BIN --listen 127.0.0.1:PORT ARGS with its
# output in LOG, sets SERVER_PID, and returns once /healthz answers.
start_search_server() {
  local bin="$1" port="$2" log="$3"
  shift 3
  "$bin" --listen "127.0.0.1:$port" "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  wait_until_answers search-server "$SERVER_PID" "http://127.0.0.1:$port/healthz" "$log"
}

# wait_until_answers NAME PID URL LOG [CURL_ARGS...]: polls URL for up to 10 s; exits, with the
# end of LOG, if process PID ends first or nothing answers in time.
wait_until_answers() {
  local name="$1" pid="$2" url="$3" log="$4"
  shift 4
  local deadline=$((SECONDS + 10))
  while [ "$SECONDS" -lt "$deadline" ]; do
    # --max-time: a port held by a process that accepts but never answers must not hang us.
    curl -fsS -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null ||
      fail "$name exited at start (is the port taken?); the end of $log:"$'\n'"$(tail -n 5 "$log")"
    sleep 0.1
  done
  fail "$name does not answer at $url after 10 s (is the port taken?); see $log"
}

# stop_process PID: SIGTERM, SIGKILL after 5 s, then reaps it; quiet when it is already gone.
stop_process() {
  local pid="$1" _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# run_ns PID: CPU nanoseconds process PID has run, all threads (schedstat's sum_exec_runtime,
# exact). This kernel has no IRQ time accounting, so sampling interrupts (perf's callchain
# walk, our eBPF programs) are charged to the task they interrupt: a server's CPU per request
# shows them.
run_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# ensure_aarch64_binfmt: makes the kernel run aarch64 ELF executables through qemu-aarch64
# (binfmt_misc), so an aarch64 test under qemu can start aarch64 children (the profiler binary);
# qemu-user alone emulates one process, not its execs. Not persistent: registers once per boot
# (needs root), then is a no-op. qemu finds the arm64 loader and libc in / (libc6:arm64).
ensure_aarch64_binfmt() {
  local dir=/proc/sys/fs/binfmt_misc
  [ -e "$dir/qemu-aarch64" ] && return 0
  [ "$(id -u)" -eq 0 ] || fail "aarch64 executables are not registered with binfmt_misc; run: sudo scripts/setup.sh"
  command -v qemu-aarch64 >/dev/null || fail "qemu-aarch64 not found; run scripts/setup.sh"
  if [ ! -e "$dir/register" ]; then
    mount -t binfmt_misc binfmt_misc "$dir" || fail "cannot mount binfmt_misc on $dir"
  fi
  # ELF64, little endian, e_machine 0xb7 (EM_AARCH64): the magic and mask qemu's own
  # scripts/qemu-binfmt-conf.sh use.
  local magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
  local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
  printf ':qemu-aarch64:M::%s:%s:%s:' "$magic" "$mask" "$(command -v qemu-aarch64)" >"$dir/register" ||
    fail "registering qemu-aarch64 with binfmt_misc failed"
}
