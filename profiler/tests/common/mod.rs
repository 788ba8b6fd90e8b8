//! Helpers shared by the profiler's integration tests (each test binary includes this
//! module): root checks, one recording at a time, building and starting workloads of our own
//! with known answers, running `profiler record`, reading captures (checking the eBPF counter
//! invariant on the way), shares of functions, Perfetto traces as Perfetto's own protos read
//! them, and the release search-server.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use profiler::capture::info::RecordingInfo;
use profiler::profile::Profile;

// ---------------------------------------------------------------------------------------------
// Harness: root check, one test at a time, building workloads, running the profiler.

pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "fidelity tests load eBPF programs and need root: run `sudo -E cargo test -p profiler --test fidelity`"
    );
}

/// The cargo target directory the test binary lives in (…/target/debug/deps/fidelity-…).
pub fn target_dir() -> PathBuf {
    let profiler = Path::new(env!("CARGO_BIN_EXE_profiler"));
    profiler
        .parent()
        .and_then(Path::parent)
        .expect("profiler binary inside a target directory")
        .to_path_buf()
}

/// Compiles `profiler/examples/NAME.rs` optimized, with frame pointers and full debug info
/// (what the workspace's release profile and `.cargo/config.toml` give the real services), by
/// the rustc of the toolchain running this test. Building here rather than relying on
/// `cargo test` having built examples keeps the flags fixed (the test profile does not
/// optimize, and an `#[inline(always)]` test needs the optimizer) and takes about a second.
pub fn workload(name: &str) -> PathBuf {
    rust_workload(name, true)
}

/// Like [`workload`], with or without frame pointers (`-C force-frame-pointers=yes|no`; the
/// standard library from rustup keeps its own either way). Without, the binary is named
/// `NAME-nofp`.
pub fn rust_workload(name: &str, frame_pointers: bool) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let key = format!("{name} {frame_pointers}");
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let dir = target_dir().join("fidelity-workloads");
    std::fs::create_dir_all(&dir).expect("create the workload directory");
    let out = if frame_pointers {
        dir.join(name)
    } else {
        dir.join(format!("{name}-nofp"))
    };
    let rustc = std::env::var_os("CARGO")
        .map(|cargo| Path::new(&cargo).with_file_name("rustc"))
        .filter(|rustc| rustc.exists())
        .unwrap_or_else(|| PathBuf::from("rustc"));
    let status = Command::new(&rustc)
        .args([
            "--edition",
            "2024",
            "-C",
            "opt-level=3",
            "-C",
            if frame_pointers {
                "force-frame-pointers=yes"
            } else {
                "force-frame-pointers=no"
            },
            "-C",
            "debuginfo=2",
        ])
        .arg("--crate-name")
        .arg(name)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.display()));
    assert!(
        status.success(),
        "building workload {} failed ({status})",
        src.display()
    );
    built.insert(key, out.clone());
    out
}

/// Compiles `tests/workloads/NAME.c` with gcc and `flags` (e.g. `-O2`, which keeps no frame
/// pointers) into the target directory, once per (name, flags).
pub fn c_workload(name: &str, flags: &[&str]) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let key = format!("{name} {}", flags.join(" "));
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workloads")
        .join(format!("{name}.c"));
    let dir = target_dir().join("fidelity-workloads");
    std::fs::create_dir_all(&dir).expect("create the workload directory");
    let suffix: String = flags
        .iter()
        .map(|f| f.trim_start_matches('-').replace(['=', ' '], "_"))
        .collect::<Vec<_>>()
        .join("_");
    let out = dir.join(format!("{name}-{suffix}"));
    let status = Command::new("gcc")
        .args(flags)
        .arg("-g")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(
        status.success(),
        "building {} failed ({status})",
        src.display()
    );
    built.insert(key, out.clone());
    out
}

/// Builds example `name` of workspace package `package` (one that needs its crate, such as
/// heap-sampler's `alloc_rate`, which installs the sampler) with cargo, in the profile this
/// test was built in, and returns its path. A no-op when `cargo test` built it already.
pub fn cargo_example(package: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let key = format!("{package}/{name}");
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    // target/<profile>/profiler: the profile's directory names the profile to build.
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_profiler"))
        .parent()
        .expect("the profiler binary lives in a profile directory")
        .to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => "dev".to_string(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--profile",
            &profile,
            "-p",
            package,
            "--example",
            name,
        ])
        .arg("--target-dir")
        .arg(target_dir())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {key}: {e}"));
    assert!(status.success(), "building example {key} failed ({status})");
    let path = profile_dir.join("examples").join(name);
    assert!(path.is_file(), "cargo built no {}", path.display());
    built.insert(key, path.clone());
    path
}

/// heap-sampler's `alloc_rate` example: allocations per second, their size, its threads.
pub const ALLOC_RATE: f64 = 20_000.0;
pub const ALLOC_SIZE: f64 = 256.0;
pub const ALLOC_THREADS: u64 = 6;

/// alloc_rate at high priority, so that other work on the machine (builds, other tests) does
/// not take its spinner's CPU: the test checks what watch measures, not the machine's load.
/// With autogroups (the kernel's default), sessions share the CPUs by their group's nice, so
/// the workload gets a session (`setsid`) whose group is then given nice -19.
pub fn start_alloc_rate(secs: &str) -> (Reaped, u32) {
    let exe = cargo_example("heap-sampler", "alloc_rate");
    let mut child = Command::new("setsid")
        .args(["nice", "-n", "-19"])
        .arg(&exe)
        .args([
            &ALLOC_RATE.to_string(),
            &ALLOC_SIZE.to_string(),
            &ALLOC_THREADS.to_string(),
            secs,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start alloc_rate");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .expect("alloc_rate prints its pid");
    let pid = first
        .split_whitespace()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    // Without autogroups the file is absent and nice alone does it.
    let _ = std::fs::write(format!("/proc/{pid}/autogroup"), "-19");
    (Reaped(child), pid)
}

pub fn profiler_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_profiler"))
}

/// Runs `profiler SUBCOMMAND ARGS` to completion; panics with its stderr when it fails or
/// reports a broken counter invariant (a line with `BUG`).
pub fn profiler_ok(subcommand: &str, args: &[&str]) -> Output {
    let out = profiler_cmd()
        .arg(subcommand)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run profiler {subcommand}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "profiler {subcommand} {args:?} failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("BUG"),
        "a counter invariant broke:\n{stderr}"
    );
    out
}

/// Runs `profiler SUBCOMMAND ARGS`, which must fail with `expect` in its message.
pub fn profiler_fails(subcommand: &str, args: &[&str], expect: &str) {
    let out = profiler_cmd()
        .arg(subcommand)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run profiler {subcommand}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "profiler {subcommand} {args:?} succeeded"
    );
    assert!(stderr.contains(expect), "{subcommand} {args:?}: {stderr}");
}

/// Runs `profiler record ARGS` to completion; panics with its stderr when it fails.
pub fn record(args: &[&str]) -> Output {
    let out = profiler_cmd()
        .arg("record")
        .args(args)
        .output()
        .expect("run profiler record");
    assert!(
        out.status.success(),
        "profiler record {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A started workload whose first stdout line is `NAME pid N`; killed when dropped.
pub struct Workload {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Workload {
    pub fn start(name: &str, args: &[&str]) -> Self {
        let mut child = Command::new(workload(name))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start workload {name}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines
            .next()
            .expect("workload prints its pid")
            .expect("read workload stdout");
        assert!(
            first.starts_with(&format!("{name} pid ")),
            "unexpected first line {first:?}"
        );
        Self { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn next_line(&mut self) -> String {
        self.lines
            .next()
            .expect("workload line")
            .expect("read workload stdout")
    }

    pub fn wait(mut self) {
        let status = self.child.wait().expect("wait for workload");
        assert!(status.success(), "workload failed: {status}");
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Launches workload `name` with argument `secs` under `profiler record -F 99` and reads the
/// capture it wrote.
pub fn record_launched(name: &str, secs: &str) -> Profile {
    let dir = scratch();
    let cap = dir.path().join(format!("{name}.pb.gz"));
    let exe = workload(name);
    record(&[
        "-F",
        "99",
        "-o",
        cap.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
        secs,
    ]);
    load(&cap)
}

pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Reads a capture; for our own captures, also checks the counter invariant the eBPF
/// programs keep (every sample ends in exactly one outcome per question).
pub fn load(path: &Path) -> Profile {
    let p = profiler::capture::read_capture(path)
        .unwrap_or_else(|e| panic!("read capture {}: {e}", path.display()));
    if let Some(info) = RecordingInfo::from_comments(&p.comments) {
        if info.counters.contains_key("cpu") {
            assert_cpu_counter_invariant(&info);
        }
        if info.counters.contains_key("offcpu") {
            assert_offcpu_counter_invariant(&info);
        }
    }
    p
}

/// Every switch-out of a target ends in one outcome per stack and one start outcome; every
/// switch-in with a start in one charge outcome and one count outcome; nothing was lost.
pub fn assert_offcpu_counter_invariant(info: &RecordingInfo) {
    let c = |n: &str| info.counter("offcpu", n);
    let out = c("switch_out");
    let sum = |names: &[&str]| names.iter().map(|n| c(n)).sum::<u64>();
    let not_walked = c("preempted");
    let groups = [
        (
            "user",
            out,
            not_walked
                + sum(&[
                    "user_stack",
                    "user_stack_missing",
                    "user_stack_map_full",
                    "user_stack_error",
                ]),
        ),
        (
            "kernel",
            out,
            not_walked
                + sum(&[
                    "kernel_stack",
                    "kernel_stack_missing",
                    "kernel_stack_map_full",
                    "kernel_stack_error",
                ]),
        ),
        ("start", out, sum(&["started", "start_full", "start_error"])),
        ("charge", c("switch_in"), sum(&["charged", "short"])),
        (
            "count",
            c("switch_in"),
            // A block waiting for its stack copy (--call-graph dwarf|auto) is `deferred`.
            sum(&["counted", "counts_full", "counts_error", "deferred"]),
        ),
        (
            "fallback",
            sum(&["copy_moved", "copy_failed", "pending_replaced"]),
            sum(&["fallback_counted", "fallback_counts_full"]),
        ),
        (
            "waker",
            c("wakeup_of_blocked"),
            sum(&["waker_taken", "waker_short", "waker_full"]),
        ),
    ];
    for (what, expected, got) in groups {
        assert_eq!(
            expected, got,
            "offcpu {what} outcomes do not add up: {:?}",
            info.counters
        );
    }
    assert!(out > 0, "no switch-out recorded: {:?}", info.counters);
    for lost in [
        "start_full",
        "counts_full",
        "counts_error",
        "user_stack_map_full",
        "kernel_stack_map_full",
    ] {
        assert_eq!(c(lost), 0, "offcpu lost {lost}: {:?}", info.counters);
    }
}

/// `target_samples` = Σ user-stack outcomes = Σ kernel-stack outcomes = Σ count outcomes.
pub fn assert_cpu_counter_invariant(info: &RecordingInfo) {
    let c = |n: &str| info.counter("cpu", n);
    let taken = c("target_samples");
    // A sample whose stack was copied (--call-graph dwarf|auto) has `copied` as both its
    // user-stack and its count outcome.
    let copied = c("copied");
    let user = c("user_stack")
        + c("user_stack_missing")
        + c("user_stack_map_full")
        + c("user_stack_error")
        + copied;
    let kernel = c("kernel_stack")
        + c("kernel_stack_absent")
        + c("kernel_stack_map_full")
        + c("kernel_stack_error");
    let counted = c("counted") + c("counts_full") + c("counts_error") + copied;
    assert!(
        taken > 0 && user == taken && kernel == taken && counted == taken,
        "counter invariant broken: taken {taken}, user outcomes {user}, kernel outcomes {kernel}, count outcomes {counted}: {:?}",
        info.counters
    );
    assert_eq!(
        c("counts_full") + c("counts_error"),
        0,
        "samples lost: {:?}",
        info.counters
    );
    assert_eq!(
        info.counter("targets", "unreadable_stacks"),
        0,
        "{:?}",
        info.counters
    );
}

// ---------------------------------------------------------------------------------------------
// Reading a profile: sample counts by function, thread, and stack shape.

/// Index of the `samples` value (one per sample hit), whatever else the capture carries.
pub fn samples_index(p: &Profile) -> usize {
    p.sample_types
        .iter()
        .position(|t| t.kind == "samples")
        .unwrap_or_else(|| {
            panic!(
                "capture has no `samples` value type: {:?}",
                p.sample_type_names()
            )
        })
}

pub fn total_samples(p: &Profile) -> i64 {
    p.total(samples_index(p))
}

/// `crate::f::h0123456789abcdef` → `crate::f`: demanglers differ on keeping the hash.
pub fn plain_name(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// Share (percent of all samples) of samples with a frame named exactly `function`.
pub fn inclusive_share(p: &Profile, function: &str) -> f64 {
    share_where(p, |p, s| {
        p.sample_frames(s)
            .any(|f| plain_name(&f.function.name) == function)
    })
}

pub fn share_where(
    p: &Profile,
    keep: impl Fn(&Profile, &profiler::profile::Sample) -> bool,
) -> f64 {
    let vi = samples_index(p);
    let total = p.total(vi);
    assert!(total > 0, "the capture holds no samples");
    let kept: i64 = p
        .samples
        .iter()
        .filter(|s| keep(p, s))
        .map(|s| s.values[vi])
        .sum();
    100.0 * kept as f64 / total as f64
}

/// Flat shares by symbol, as `perf report --no-children --sort symbol` counts them: the
/// function that owns the sampled instruction (the outermost function of the leaf location, so
/// code inlined into it counts for it).
pub fn flat_symbol_shares(p: &Profile) -> HashMap<String, f64> {
    let vi = samples_index(p);
    let total = p.total(vi) as f64;
    let mut shares = HashMap::new();
    for s in &p.samples {
        let Some(&leaf) = s.locations.first() else {
            continue;
        };
        let Some(outer) = p.locations[leaf].lines.last() else {
            continue;
        };
        let name = plain_name(&p.functions[outer.function].name).to_string();
        *shares.entry(name).or_insert(0.0) += 100.0 * s.values[vi] as f64 / total;
    }
    shares
}

pub fn describe_top(shares: &HashMap<String, f64>, n: usize) -> String {
    let mut v: Vec<_> = shares.iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(a.1));
    v.iter()
        .take(n)
        .map(|(k, s)| format!("{s:6.2}%  {k}\n"))
        .collect()
}

pub fn assert_share(p: &Profile, function: &str, expected: f64, tolerance: f64) {
    let got = inclusive_share(p, function);
    assert!(
        (got - expected).abs() <= tolerance,
        "{function}: {got:.2}% of {} samples, expected {expected}% ± {tolerance} points; top by symbol:\n{}",
        total_samples(p),
        describe_top(&flat_symbol_shares(p), 10)
    );
}

// ---------------------------------------------------------------------------------------------
// Perfetto traces, as Perfetto's own Python protos read them.

/// Runs tests/support/perfetto_check.py on `path` and returns what it derived, as JSON.
pub fn perfetto_view(path: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/perfetto_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running python3 {}: {e}", script.display()));
    if out.status.code() == Some(3) {
        panic!(
            "Perfetto's Python protos are missing ({}). Install them with \
             `pip install perfetto protobuf` (as root; scripts/setup.sh should do it).",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    assert!(
        out.status.success(),
        "perfetto_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("perfetto_check.py prints JSON")
}

// ---------------------------------------------------------------------------------------------
// The loaded search server.

/// A child process killed and reaped when dropped, so every exit path of a test (a failed
/// assertion included) stops what it started.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The release search-server, as `cargo build --release` leaves it: `SEARCH_SERVER_BIN` if set,
/// else next to this test's target directory (honours CARGO_TARGET_DIR), else the workspace's
/// default `target/`. scripts/test.sh builds it before the tests run.
pub fn search_server_bin() -> PathBuf {
    const BUILD: &str = "cargo build --release -p search-server";
    if let Some(path) = std::env::var_os("SEARCH_SERVER_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SEARCH_SERVER_BIN={} is not a file: unset it or build the server with `{BUILD}`",
            path.display()
        );
        return path;
    }
    let candidates = [
        target_dir().join("release/search-server"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/search-server"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no release search-server at {} or {}: build it first with `{BUILD}` \
                 (or point SEARCH_SERVER_BIN at one)",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// Starts the server on a free loopback port; returns it and the base URL it logged.
pub fn start_search_server() -> (Reaped, String) {
    let bin = search_server_bin();
    let mut child = Reaped(
        Command::new(&bin)
            .args(["--listen", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display())),
    );
    let mut lines = BufReader::new(child.0.stderr.take().expect("piped stderr")).lines();
    let mut seen = Vec::new();
    let base = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!(
                "search-server exited before it listened:\n{}",
                seen.join("\n")
            );
        };
        // `... listening on http://127.0.0.1:PORT/search`, possibly with colour codes.
        if let Some(at) = line.find("listening on http://") {
            let host_port: String = line[at + "listening on http://".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':'))
                .collect();
            break format!("http://{host_port}");
        }
        seen.push(line);
    };
    // Keep draining its log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

/// Parses `perf report --stdio --no-children -F overhead,sym` lines: `  59.72%  [.] name`.
pub fn perf_symbol_shares(perf_data: &Path) -> HashMap<String, f64> {
    let out = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-F",
            "overhead,sym",
            "--percent-limit",
            "0",
            "-i",
        ])
        .arg(perf_data)
        .output()
        .expect("run perf report (Debian linux-perf, installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "perf report failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut shares = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((pct, rest)) = line.split_once('%') else {
            continue;
        };
        let Ok(pct) = pct.trim().parse::<f64>() else {
            continue;
        };
        let Some((_, sym)) = rest.trim().split_once("] ") else {
            continue;
        };
        *shares
            .entry(plain_name(sym.trim()).to_string())
            .or_insert(0.0) += pct;
    }
    shares
}
