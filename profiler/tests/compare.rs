//! `scripts/compare.sh` end to end: `--demo` starts the release search-server, records a base
//! capture under the tutorial's load, restarts the server with `--slow-search`, records a
//! current capture, and diffs; the change table and the differential flame graph must name
//! `naive_match` as the biggest growth. Needs root (recording) and the release binaries that
//! scripts/test.sh builds first. Also the script's bad-input paths, which need neither.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Hang guard only (a stuck script must not stall CI); never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Where `cargo build --release` put the binaries: `$CARGO_TARGET_DIR/release` when that is
/// set for the test run, else `target/release` of the workspace.
fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { repo().join(t) } else { t })
        .unwrap_or_else(|| repo().join("target"));
    let dir = target.join("release");
    for bin in ["profiler", "search-server"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the release binaries first \
             (cargo build --release -p profiler -p search-server; scripts/test.sh does)",
            dir.join(bin).display()
        );
    }
    dir
}

fn compare_sh() -> Command {
    let mut c = Command::new("bash");
    c.arg(repo().join("scripts/compare.sh"))
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    c
}

/// Runs to completion, killing the script (whose trap stops what it started) on a hang.
fn run_guarded(mut c: Command) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running bash");
    let start = Instant::now();
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).map(|_| v)
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).map(|_| v)
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > HANG_GUARD {
            // SIGTERM lets the script's trap stop the server and the load it started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            panic!("compare.sh still running after {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out_t.join().unwrap().unwrap(),
        stderr: err_t.join().unwrap().unwrap(),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (share change in points, function) of each row of `profiler diff`'s text table.
fn change_rows(table: &str) -> Vec<(f64, String)> {
    table
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("change  function"))
        .skip(1)
        .filter_map(|l| {
            let (cells, function) = l.split_once("pt  ")?;
            let change: f64 = cells.split_whitespace().last()?.parse().ok()?;
            Some((change, function.trim().to_string()))
        })
        .collect()
}

#[test]
fn demo_names_the_slow_search_path_as_the_biggest_growth() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "compare.sh --demo records with eBPF and needs root; run the tests as root (scripts/test.sh)"
    );
    let bin_dir = release_dir();
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = compare_sh();
    c.args(["--demo", "--duration", "3", "--port", &port.to_string()])
        .arg("--out")
        .arg(out.path())
        .arg("--bin-dir")
        .arg(&bin_dir);
    let o = run_guarded(c);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "compare.sh --demo failed ({}):\n{stderr}\n{stdout}",
        o.status
    );
    let rows = change_rows(&stdout);
    assert!(rows.len() >= 3, "no change table on stdout:\n{stdout}");
    let (growth, function) = rows
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .cloned()
        .unwrap();
    assert!(
        function.ends_with("naive_match") && growth > 0.0,
        "the biggest growth is {function} ({growth:+.2} points), not naive_match:\n{stdout}"
    );
    let svg = std::fs::read_to_string(out.path().join("diff.svg")).unwrap();
    assert!(svg.contains("naive_match"), "diff.svg lacks naive_match");
    assert!(
        std::fs::read_to_string(out.path().join("changes.txt")).unwrap() == stdout,
        "changes.txt holds the printed table"
    );
    for file in ["base.pb.gz", "current.pb.gz", "base.svg", "current.svg"] {
        assert!(out.path().join(file).is_file(), "{file} was not written");
    }
    // Progress went to stderr, with the load's throughput for each capture.
    for needle in ["base: recording", "current: recording", "requests/s"] {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    // Everything it started is gone: nothing listens on the port any more.
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the demo's search-server still listens on port {port}"
    );
}

fn fails(args: &[&str], needles: &[&str]) {
    let mut c = compare_sh();
    c.args(args);
    let o = run_guarded(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "compare.sh {args:?} should fail:\n{err}"
    );
    for n in needles {
        assert!(
            err.contains(n),
            "compare.sh {args:?}: stderr lacks {n:?}:\n{err}"
        );
    }
}

#[test]
fn bad_arguments_are_named_before_anything_starts() {
    fails(
        &["--duration", "soon"],
        &["--duration soon", "--duration 10"],
    );
    fails(&["--port", "70000"], &["--port 70000"]);
    fails(&["--pid", "abc"], &["--pid abc"]);
    fails(
        &["--frobnicate"],
        &["unknown option --frobnicate", "--help"],
    );
    fails(&["--out"], &["--out needs a value"]);
    fails(
        &["--base", "/nonexistent/base.pb.gz"],
        &["/nonexistent/base.pb.gz", "does not exist"],
    );
    fails(&["--demo", "--pid", "1"], &["--demo", "--pid 1"]);
    // A pid that is not running is named before any load starts.
    let bin_dir = release_dir();
    let out = tempfile::tempdir().unwrap();
    fails(
        &[
            "--pid",
            "2147483646",
            "--no-load",
            "--bin-dir",
            bin_dir.to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
        ],
        &["pid 2147483646 is not running"],
    );
    let missing = Path::new("/nonexistent-bin-dir");
    fails(
        &["--bin-dir", missing.to_str().unwrap(), "--pid", "1"],
        &["/nonexistent-bin-dir/profiler", "--bin-dir"],
    );
}

/// The heap story on one attachment: a base snapshot before any load, one after, and what
/// was allocated in between names the page rendering of the server's request path.
#[test]
fn heap_demo_names_where_the_load_allocated() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "compare.sh --heap records with eBPF and needs root; run the tests as root (scripts/test.sh)"
    );
    let bin_dir = release_dir();
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = compare_sh();
    c.args([
        "--demo",
        "--heap",
        "--duration",
        "3",
        "--port",
        &port.to_string(),
    ])
    .arg("--out")
    .arg(out.path())
    .arg("--bin-dir")
    .arg(&bin_dir);
    let o = run_guarded(c);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "compare.sh --demo --heap failed ({}):\n{stderr}\n{stdout}",
        o.status
    );
    assert!(
        stdout.contains("alloc_space (bytes, totals); total base 0B"),
        "the base snapshot is taken before the load:\n{stdout}"
    );
    let own = std::fs::read_to_string(out.path().join("own-changes.txt")).unwrap();
    let rows = change_rows(&own);
    assert!(
        rows.iter()
            .take(8)
            .any(|(growth, f)| *growth > 20.0 && f.contains("search_server::web::page::render")),
        "the page rendering is not among the biggest allocation growths:\n{own}"
    );
    for file in ["base.pb.gz", "current.pb.gz", "diff.svg", "heap.pb.gz"] {
        assert!(out.path().join(file).is_file(), "{file} was not written");
    }
}

#[test]
fn help_shows_cpu_and_heap_examples() {
    let mut c = compare_sh();
    c.arg("--help");
    let o = run_guarded(c);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "--demo",
        "--base",
        "--pause",
        "Heap",
        "inuse_space",
        "Examples",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}
