//! `profiler record` end to end, as root, with the real eBPF programs and real processes.
//! This binary has its own `main`: started with `RECORD_TEST_WORKLOAD=SECONDS` it is the
//! workload (a busy loop in functions with known names); otherwise it runs the tests, which
//! launch it that way and record it with the built `profiler` binary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use profiler::profile::Profile;

const WORKLOAD_ENV: &str = "RECORD_TEST_WORKLOAD";
/// Hang guard only (a broken profiler must not stall CI); never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn main() {
    if let Ok(secs) = std::env::var(WORKLOAD_ENV) {
        let secs: f64 = secs.parse().expect("seconds");
        record_test_busy_outer(Duration::from_secs_f64(secs));
        return;
    }
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test("pid_that_does_not_exist", pid_that_does_not_exist),
        Trial::test(
            "pid_that_exited_before_attach",
            pid_that_exited_before_attach,
        ),
        Trial::test("no_privileges_as_nobody", no_privileges_as_nobody),
        Trial::test("no_privileges_caps_dropped", no_privileges_caps_dropped),
        Trial::test("frequency_zero_and_absurd", frequency_zero_and_absurd),
        Trial::test(
            "unwritable_output_fails_before_recording",
            unwritable_output_fails_before_recording,
        ),
        Trial::test("command_not_found", command_not_found),
        Trial::test(
            "launched_command_exit_code_is_passed_on",
            launched_command_exit_code_is_passed_on,
        ),
        Trial::test(
            "busy_child_function_appears_by_name",
            busy_child_function_appears_by_name,
        ),
        Trial::test(
            "target_exiting_mid_capture_keeps_everything",
            target_exiting_mid_capture_keeps_everything,
        ),
        Trial::test(
            "ctrl_c_still_writes_every_output",
            ctrl_c_still_writes_every_output,
        ),
        Trial::test("second_ctrl_c_aborts", second_ctrl_c_aborts),
    ];
    libtest_mimic::run(&args, tests).exit();
}

// ---- the workload ----

#[inline(never)]
fn record_test_busy_leaf(x: u64) -> u64 {
    let mut v = x;
    for _ in 0..100_000 {
        v = std::hint::black_box(
            v.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407),
        );
    }
    v
}

#[inline(never)]
fn record_test_busy_outer(for_how_long: Duration) {
    let start = Instant::now();
    let mut v = 1;
    while start.elapsed() < for_how_long {
        v = record_test_busy_leaf(v);
    }
    std::hint::black_box(v);
}

// ---- helpers ----

fn profiler() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_profiler"));
    cmd.env("RUST_LOG", "info");
    cmd
}

fn workload_command(secs: f64) -> Vec<String> {
    vec![
        std::env::current_exe()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    ]
    .into_iter()
    .chain(std::iter::once(format!("--workload-{secs}")))
    .collect()
}

fn spawn_workload(secs: f64) -> Reaped {
    Reaped(
        Command::new(std::env::current_exe().unwrap())
            .env(WORKLOAD_ENV, secs.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A child that is killed and reaped however the test leaves (an early `?` included).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// The profiler's stderr, read line by line while it runs; every line read is kept.
struct StderrLog {
    lines: std::io::Lines<BufReader<std::process::ChildStderr>>,
    seen: Vec<String>,
}

impl StderrLog {
    fn of(child: &mut Child) -> Self {
        let stderr = child.stderr.take().expect("stderr is piped");
        Self {
            lines: BufReader::new(stderr).lines(),
            seen: Vec::new(),
        }
    }

    /// Reads until a line contains `needle`; fails with everything read when stderr closes first.
    fn wait_for(&mut self, needle: &str) -> Result<(), Failed> {
        for line in self.lines.by_ref() {
            let line = line.map_err(|e| e.to_string())?;
            let found = line.contains(needle);
            self.seen.push(line);
            if found {
                return Ok(());
            }
        }
        Err(format!("profiler never said {needle:?}: {}", self.seen.join("\n")).into())
    }

    /// Keeps reading on a thread (so the child never blocks on a full pipe); `join` gives the
    /// whole log.
    fn drain_in_background(self) -> DrainedLog {
        let Self { lines, seen } = self;
        DrainedLog {
            seen,
            rest: std::thread::spawn(move || lines.map_while(Result::ok).collect()),
        }
    }
}

struct DrainedLog {
    seen: Vec<String>,
    rest: std::thread::JoinHandle<Vec<String>>,
}

impl DrainedLog {
    fn join(mut self) -> String {
        self.seen.extend(self.rest.join().unwrap_or_default());
        self.seen.join("\n")
    }
}

fn sigint(child: &Child) {
    // SAFETY: signalling our own child, which is not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// Waits for the child to exit, up to the hang guard (then `hang` is the error).
fn wait_exit(child: &mut Child, hang: &str) -> Result<ExitStatus, Failed> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(s);
        }
        if start.elapsed() > HANG_GUARD {
            let _ = child.kill();
            return Err(hang.into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_guarded(mut child: Child) -> Result<Output, Failed> {
    wait_exit(
        &mut child,
        &format!("profiler still running after {HANG_GUARD:?}"),
    )?;
    child.wait_with_output().map_err(|e| e.to_string().into())
}

fn run(cmd: &mut Command) -> Result<Output, Failed> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    wait_guarded(child)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn expect_failure(o: &Output, needles: &[&str]) -> Result<(), Failed> {
    let err = stderr(o);
    if o.status.success() {
        return Err(format!("expected failure, got success; stderr:\n{err}").into());
    }
    for n in needles {
        if !err.contains(n) {
            return Err(format!("stderr lacks {n:?}:\n{err}").into());
        }
    }
    Ok(())
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

fn read_capture(path: &Path) -> Result<Profile, Failed> {
    profiler::capture::read_capture(path)
        .map_err(|e| format!("reading {}: {e}", path.display()).into())
}

/// Samples per function name (a sample counts once per function on its stack).
fn samples_by_function(p: &Profile) -> HashMap<String, i64> {
    let mut out: HashMap<String, i64> = HashMap::new();
    for s in &p.samples {
        let mut names: Vec<&str> = p
            .sample_frames(s)
            .map(|f| f.function.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            *out.entry(n.to_string()).or_default() += s.values[0];
        }
    }
    out
}

fn share_of(p: &Profile, needle: &str) -> f64 {
    let total = p.total(0).max(1) as f64;
    let by_fn = samples_by_function(p);
    let hit: i64 = by_fn
        .iter()
        .filter(|(k, _)| k.contains(needle))
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(0);
    hit as f64 / total
}

fn describe(p: &Profile) -> String {
    let mut v: Vec<(String, i64)> = samples_by_function(p).into_iter().collect();
    v.sort_by_key(|(_, n)| -n);
    v.truncate(15);
    format!(
        "{} samples; top functions: {v:?}; comments: {:?}",
        p.total(0),
        p.comments
    )
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Checks the busy workload is in the capture by name, with most samples and with its source
/// file (the test binary has debug info).
fn assert_busy_capture(p: &Profile) -> Result<(), Failed> {
    check(p.total(0) > 0, || format!("no samples: {}", describe(p)))?;
    let leaf = share_of(p, "record_test_busy_leaf");
    check(leaf > 0.8, || {
        format!("busy leaf share {leaf:.2}: {}", describe(p))
    })?;
    let outer = share_of(p, "record_test_busy_outer");
    check(outer > 0.8, || {
        format!(
            "stacks do not reach the caller ({outer:.2}): {}",
            describe(p)
        )
    })?;
    let f = p
        .functions
        .iter()
        .find(|f| f.name.ends_with("record_test_busy_leaf"))
        .unwrap();
    check(f.filename.ends_with("tests/record.rs"), || {
        format!("source file of the leaf: {f:?}")
    })?;
    check(
        p.samples
            .iter()
            .all(|s| s.str_label("thread").is_some() && s.num_label("tid").is_some()),
        || "samples lack thread/tid labels".into(),
    )?;
    check(
        p.sample_types
            .iter()
            .any(|t| t.kind == "cpu" && t.unit == "nanoseconds"),
        || "no cpu/nanoseconds".into(),
    )
}

// ---- tests ----

fn pid_that_does_not_exist() -> Result<(), Failed> {
    let dir = tempdir();
    let out = dir.path().join("cpu.pb.gz");
    let o = run(profiler()
        .args(["record", "--pid", "2147483647", "-o"])
        .arg(&out))?;
    expect_failure(&o, &["pid 2147483647 does not exist"])?;
    check(!out.exists(), || {
        "an output was written for a failed recording".into()
    })
}

fn pid_that_exited_before_attach() -> Result<(), Failed> {
    // An exited, unreaped child: its pid still exists, the process is gone.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .contains(") Z")
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let dir = tempdir();
    let o = run(profiler()
        .args(["record", "--pid", &pid.to_string(), "-o"])
        .arg(dir.path().join("c.pb.gz")));
    let _ = child.wait();
    expect_failure(
        &o?,
        &[&format!("pid {pid} exited before recording could start")],
    )
}

fn privilege_needles() -> [&'static str; 3] {
    ["CAP_BPF", "CAP_PERFMON", "sudo"]
}

fn no_privileges_as_nobody() -> Result<(), Failed> {
    let mut workload = spawn_workload(30.0);
    let o = run(Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_profiler"))
        .args([
            "record",
            "--pid",
            &workload.id().to_string(),
            "-d",
            "1s",
            "-o",
            "/tmp/never-written.pb.gz",
        ]));
    let _ = workload.kill();
    let _ = workload.wait();
    let o = o?;
    expect_failure(&o, &privilege_needles())?;
    check(stderr(&o).contains("uid 65534"), || stderr(&o))
}

fn no_privileges_caps_dropped() -> Result<(), Failed> {
    let mut workload = spawn_workload(30.0);
    let dir = tempdir();
    // Still uid 0, but without the capabilities that matter.
    let o = run(Command::new("setpriv")
        .args([
            "--bounding-set=-bpf,-perfmon,-sys_admin",
            "--inh-caps=-bpf,-perfmon,-sys_admin",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_profiler"))
        .args([
            "record",
            "--pid",
            &workload.id().to_string(),
            "-d",
            "1s",
            "-o",
        ])
        .arg(dir.path().join("c.pb.gz")));
    let _ = workload.kill();
    let _ = workload.wait();
    expect_failure(&o?, &privilege_needles())
}

fn frequency_zero_and_absurd() -> Result<(), Failed> {
    for f in ["0", "20000"] {
        let o = run(profiler().args([
            "record",
            "--pid",
            "1",
            "-d",
            "1s",
            "-F",
            f,
            "-o",
            "/tmp/never.pb.gz",
        ]))?;
        expect_failure(
            &o,
            &[&format!("frequency {f} Hz is out of range"), "1..=10000"],
        )?;
    }
    Ok(())
}

fn unwritable_output_fails_before_recording() -> Result<(), Failed> {
    // No --duration and a target that keeps running: only an up-front check can end this.
    let mut workload = spawn_workload(60.0);
    let pid = workload.id().to_string();
    let dir = tempdir();
    let good = dir.path().join("cpu.pb.gz");
    let cases: Vec<Vec<PathBuf>> = vec![
        vec!["-o".into(), "/nonexistent-dir/cpu.pb.gz".into()],
        vec![
            "-o".into(),
            good.clone(),
            "--flamegraph".into(),
            "/nonexistent-dir/cpu.svg".into(),
        ],
        vec![
            "-o".into(),
            good.clone(),
            "--folded".into(),
            dir.path().to_path_buf(),
        ],
    ];
    let mut result = Ok(());
    for case in cases {
        let o = run(profiler().args(["record", "--pid", &pid]).args(&case));
        let r = o.and_then(|o| expect_failure(&o, &["cannot write", "choose a writable path"]));
        if r.is_err() {
            result = r;
            break;
        }
    }
    let _ = workload.kill();
    let _ = workload.wait();
    result?;
    check(!good.exists(), || {
        "an output was written although another path was bad".into()
    })
}

fn command_not_found() -> Result<(), Failed> {
    let dir = tempdir();
    let o = run(profiler()
        .args(["record", "-o"])
        .arg(dir.path().join("c.pb.gz"))
        .args(["--", "no-such-command-for-record-test", "arg"]))?;
    expect_failure(
        &o,
        &["command not found", "no-such-command-for-record-test"],
    )
}

fn launched_command_exit_code_is_passed_on() -> Result<(), Failed> {
    let dir = tempdir();
    let out = dir.path().join("c.pb.gz");
    let o = run(profiler()
        .args(["record", "-o"])
        .arg(&out)
        .args(["--", "sh", "-c", "exit 7"]))?;
    check(o.status.code() == Some(7), || {
        format!("exit status {:?}; stderr:\n{}", o.status, stderr(&o))
    })?;
    let p = read_capture(&out)?;
    check(
        p.comments.iter().any(|c| c.contains("sh -c exit 7")),
        || describe(&p),
    )
}

fn busy_child_function_appears_by_name() -> Result<(), Failed> {
    let dir = tempdir();
    let out = dir.path().join("c.pb.gz");
    let argv = workload_command(2.0);
    let o = run(profiler()
        .env(WORKLOAD_ENV, "2")
        .args(["record", "-F", "499", "-o"])
        .arg(&out)
        .arg("--")
        .args(&argv))?;
    check(o.status.success(), || {
        format!("status {:?}: {}", o.status, stderr(&o))
    })?;
    let p = read_capture(&out)?;
    assert_busy_capture(&p)?;
    let err = stderr(&o);
    for needle in [
        "samples:",
        "1 thread(s)",
        "% whole (reach a root frame)",
        "profiler:",
        "peak RSS",
        "capture:",
    ] {
        check(err.contains(needle), || {
            format!("summary lacks {needle:?}:\n{err}")
        })?;
    }
    Ok(())
}

fn target_exiting_mid_capture_keeps_everything() -> Result<(), Failed> {
    let mut workload = spawn_workload(2.0);
    let dir = tempdir();
    let out = dir.path().join("c.pb.gz");
    let folded = dir.path().join("c.folded");
    // A duration far beyond the target's life: the exit must end the recording.
    let o = run(profiler()
        .args([
            "record",
            "--pid",
            &workload.id().to_string(),
            "-d",
            "10m",
            "-F",
            "499",
            "-o",
        ])
        .arg(&out)
        .arg("--folded")
        .arg(&folded));
    let _ = workload.wait();
    let o = o?;
    check(o.status.success(), || {
        format!("status {:?}: {}", o.status, stderr(&o))
    })?;
    check(stderr(&o).contains("target exited"), || stderr(&o))?;
    let p = read_capture(&out)?;
    assert_busy_capture(&p)?;
    let folded = std::fs::read_to_string(&folded).map_err(|e| e.to_string())?;
    check(folded.contains("record_test_busy_leaf"), || folded.clone())
}

fn ctrl_c_still_writes_every_output() -> Result<(), Failed> {
    let mut workload = spawn_workload(60.0);
    let dir = tempdir();
    let out = dir.path().join("c.pb.gz");
    let svg = dir.path().join("c.svg");
    let folded = dir.path().join("c.folded");
    let mut child = Reaped(
        profiler()
            .args([
                "record",
                "--pid",
                &workload.id().to_string(),
                "-F",
                "499",
                "-o",
            ])
            .arg(&out)
            .arg("--flamegraph")
            .arg(&svg)
            .arg("--folded")
            .arg(&folded)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    // Wait until sampling runs (the profiler logs it), let it sample, then Ctrl-C.
    let mut log = StderrLog::of(&mut child);
    log.wait_for("recording started")?;
    std::thread::sleep(Duration::from_millis(1500));
    sigint(&child);
    let rest = log.drain_in_background();
    let status = wait_exit(&mut child, "profiler did not stop after Ctrl-C");
    let _ = workload.kill();
    let _ = workload.wait();
    let err = rest.join();
    let status = status?;
    check(status.success(), || format!("status {status:?}: {err}"))?;
    check(err.contains("interrupted"), || err.clone())?;
    let p = read_capture(&out)?;
    assert_busy_capture(&p)?;
    let svg = std::fs::read_to_string(&svg).map_err(|e| e.to_string())?;
    check(
        svg.contains("<svg") && svg.contains("record_test_busy_leaf"),
        || "flame graph lacks the leaf".into(),
    )?;
    let folded = std::fs::read_to_string(&folded).map_err(|e| e.to_string())?;
    check(folded.contains("record_test_busy_leaf"), || folded.clone())
}

/// A second Ctrl-C, sent while the first one's finishing work (draining, symbolizing, writing)
/// runs, aborts at once with 130 and leaves no capture behind. The second signal goes out when
/// the profiler says it is finishing; should the finishing win that race (nothing was tested
/// then), the attempt is repeated.
fn second_ctrl_c_aborts() -> Result<(), Failed> {
    let mut last = String::new();
    for _ in 0..3 {
        match second_ctrl_c_attempt()? {
            Some(status_and_log) => last = status_and_log,
            None => return Ok(()),
        }
    }
    Err(
        format!("the second Ctrl-C never aborted the finishing work in 3 attempts; last: {last}")
            .into(),
    )
}

/// One attempt: Ok(None) when the profiler aborted as it should, Ok(Some(log)) when it
/// finished before the second signal arrived.
fn second_ctrl_c_attempt() -> Result<Option<String>, Failed> {
    let mut workload = spawn_workload(60.0);
    let dir = tempdir();
    let out = dir.path().join("abort.pb.gz");
    let svg = dir.path().join("abort.svg");
    let mut child = Reaped(
        profiler()
            .args([
                "record",
                "--pid",
                &workload.id().to_string(),
                "-F",
                "999",
                "-o",
            ])
            .arg(&out)
            .arg("--flamegraph")
            .arg(&svg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let mut log = StderrLog::of(&mut child);
    log.wait_for("recording started")?;
    std::thread::sleep(Duration::from_millis(1500));
    sigint(&child);
    // Only once the first signal was handled: two pending SIGINTs would merge into one.
    log.wait_for("Ctrl-C again to abort")?;
    sigint(&child);
    let rest = log.drain_in_background();
    let status = wait_exit(&mut child, "profiler did not stop after two Ctrl-C")?;
    let _ = workload.kill();
    let _ = workload.wait();
    let err = rest.join();
    if status.success() && err.contains("samples:") {
        return Ok(Some(format!("{status:?}: {err}")));
    }
    check(status.code() == Some(130), || {
        format!("expected exit code 130 after a second Ctrl-C, got {status:?}: {err}")
    })?;
    check(!out.exists(), || {
        format!("the aborted recording still wrote {}: {err}", out.display())
    })?;
    check(!err.contains("samples:"), || {
        format!("an aborted recording printed the summary: {err}")
    })?;
    Ok(None)
}
