//! The scripts, run for real: every script in scripts/ answers `--help` and `-h` without
//! building, installing or starting anything; `scripts/lib.sh` starts search-server, waits
//! until it answers and stops it; `scripts/load.sh` puts load (oha) on a server started here
//! on 127.0.0.1:0 over the embedded feeds, and refuses bad input with a message naming it;
//! the benchmark scripts validate their arguments. (Running a benchmark is a measurement, not
//! a test.)

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use search_server::feeds::{CacheOptions, FeedCache, sources};
use search_server::server::{self, ServerOptions};
use search_server::web::App;
use tokio::process::Command;
use tokio::sync::oneshot;

fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .canonicalize()
        .expect("scripts/")
}

fn script(name: &str) -> PathBuf {
    scripts_dir().join(name)
}

/// Every script in scripts/, by file name, sorted.
fn all_scripts() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(scripts_dir())
        .expect("scripts/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sh"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "scripts/ holds only {names:?}");
    names
}

fn outcome(output: Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs scripts where they can build, install, fetch or start nothing: PATH holds only bash
/// and the text tools a usage message needs, and HOME has no ~/.cargo/bin. A script that
/// reached cargo, apt-get, curl, sudo or even `id` (a root check) fails here instead of
/// acting, so `--help` and argument errors are proven to come first.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    const TOOLS: [&str; 4] = ["bash", "cat", "dirname", "basename"];

    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        for tool in Self::TOOLS {
            let found = std::env::split_paths(&path)
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{tool} is not on PATH"));
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
        Sandbox { dir }
    }

    async fn run(&self, name: &str, args: &[&str]) -> (i32, String, String) {
        let bin = self.dir.path().join("bin");
        let output = Command::new(bin.join("bash"))
            .arg(script(name))
            .args(args)
            .env_clear()
            .env("PATH", &bin)
            .env("HOME", self.dir.path().join("home"))
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
        outcome(output)
    }
}

async fn run(name: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new("bash")
        .arg(script(name))
        .args(args)
        .env_remove("LOAD_REQUESTS")
        .env_remove("LOAD_CONNECTIONS")
        .env_remove("LOAD_URL")
        .env_remove("LOAD_DURATION")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    outcome(output)
}

#[tokio::test]
async fn every_script_answers_help_first() {
    let sandbox = Sandbox::new();
    let mut failures = Vec::new();
    for name in all_scripts() {
        for flag in ["--help", "-h"] {
            let (code, out, err) = sandbox.run(&name, &[flag]).await;
            if code != 0 || !out.contains("Usage") || !out.contains("Example") {
                let err_tail: Vec<&str> = err.lines().rev().take(4).collect();
                failures.push(format!(
                    "scripts/{name} {flag}: exit {code}, want 0 and a usage with examples on \
                     stdout\n  stdout: {}\n  stderr (end): {}",
                    out.trim(),
                    err_tail
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n    ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn bad_arguments_are_refused_before_anything_starts() {
    let sandbox = Sandbox::new();
    for (name, args, want) in [
        (
            "bench-overhead.sh",
            &["3", "0"][..],
            "'0' is not a positive whole number",
        ),
        ("bench-read.sh", &["--fast"], "unknown option --fast"),
        (
            "bench-record.sh",
            &["soon"],
            "SECONDS must be a positive whole number, got 'soon'",
        ),
        (
            "bench-server.sh",
            &["3", "many"],
            "'many' is not a positive whole number",
        ),
        (
            "bench-vs-perf.sh",
            &["0"],
            "SECONDS must be a positive whole number of seconds, got '0'",
        ),
        ("demo.sh", &["--fast"], "unknown argument '--fast'"),
        ("load.sh", &["-c", "0"], "connection count '0'"),
    ] {
        let (code, _, err) = sandbox.run(name, args).await;
        assert_eq!(code, 2, "{name} {args:?}: {err}");
        let prefix = format!("{}: ", name.trim_end_matches(".sh"));
        assert!(
            err.starts_with(&prefix) && err.contains(want),
            "{name} {args:?}: {err}"
        );
    }
}

/// Runs `body` in bash after sourcing scripts/lib.sh, with the real PATH.
async fn with_lib(body: &str) -> (i32, String, String) {
    let program = format!("source {:?}\n{body}", script("lib.sh"));
    let output = Command::new("bash")
        .args(["-c", &program, "lib-test"])
        .output()
        .await
        .expect("running bash");
    outcome(output)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn lib_starts_the_server_waits_until_it_answers_and_stops_it() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let (code, out, err) = with_lib(&format!(
        r#"set -euo pipefail
start_search_server {bin:?} {port} {log:?} --cache-ttl 1m
# Answering already: start_search_server returns only once /healthz does.
curl -fsS http://127.0.0.1:{port}/healthz
echo " pid $SERVER_PID"
stop_process "$SERVER_PID"
kill -0 "$SERVER_PID" 2>/dev/null && echo "still running" || echo "stopped"
"#,
        bin = env!("CARGO_BIN_EXE_search-server"),
        log = log.path(),
    ))
    .await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains(" pid "), "{out}");
    assert!(out.trim_end().ends_with("stopped"), "{out}");
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        logged.contains(&format!("listening on http://127.0.0.1:{port}/search")),
        "the server's output goes to the log: {logged}"
    );
}

#[tokio::test]
async fn lib_names_a_server_that_exits_at_start_and_shows_its_log() {
    // The port is taken: search-server exits at once, saying so.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let (code, out, err) = with_lib(&format!(
        "start_search_server {bin:?} {port} {log:?}\necho unreachable",
        bin = env!("CARGO_BIN_EXE_search-server"),
        log = log.path(),
    ))
    .await;
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(!out.contains("unreachable"), "{out}");
    assert!(
        err.contains("lib-test: search-server exited at start (is the port taken?)"),
        "{err}"
    );
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "the end of the server's log is shown: {err}"
    );
}

#[test]
fn scripts_leave_the_shared_lines_to_lib_sh() {
    let mut repeats = Vec::new();
    for name in all_scripts().into_iter().filter(|n| n != "lib.sh") {
        let text = std::fs::read_to_string(script(&name)).unwrap();
        for line in ["export PATH=", "/healthz"] {
            if text.contains(line) {
                repeats.push(format!("scripts/{name} repeats `{line}`"));
            }
        }
    }
    assert!(
        repeats.is_empty(),
        "{}\nsource scripts/lib.sh and use its PATH and start_search_server instead",
        repeats.join("\n")
    );
}

/// setup.sh installs python3 for the scripts that need it; each says so and checks first.
#[test]
fn scripts_that_use_python3_say_so_and_check_for_it() {
    for name in all_scripts() {
        let text = std::fs::read_to_string(script(&name)).unwrap();
        let lines = || text.lines().map(str::trim_start);
        if !lines().any(|l| !l.starts_with('#') && l.contains("python3 ")) {
            continue;
        }
        assert!(
            lines().any(|l| l.starts_with("Needs:") && l.contains("python3")),
            "scripts/{name} runs python3 but its usage has no `Needs: ... python3` line"
        );
        assert!(
            lines().any(|l| l.starts_with("require_tools") && l.contains("python3")),
            "scripts/{name} runs python3 without `require_tools ... python3` first"
        );
    }
}

#[tokio::test]
async fn load_help_shows_the_tutorial_command() {
    let (code, out, _) = run("load.sh", &["--help"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(
            r#"oha -m POST -c 8 -n 100000 "http://localhost:5000/search?term=house&cnn=on&bbc=on&nyt=on""#
        ),
        "{out}"
    );
    assert!(out.contains("Examples:"), "{out}");
}

#[tokio::test]
async fn load_refuses_bad_input_by_name() {
    for (args, want) in [
        (
            &["-n", "lots"][..],
            "request count 'lots' is not a positive whole number",
        ),
        (
            &["-c", "0"],
            "connection count '0' is not a positive whole number",
        ),
        (
            &["-u", "localhost:5000/search"],
            "URL 'localhost:5000/search' must start with http://",
        ),
        (&["-z", "soon"], "duration 'soon' is not like 30s"),
        (&["--fast"], "unknown argument '--fast'"),
        (&["-n"], "-n needs a value"),
    ] {
        let (code, _, err) = run("load.sh", args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn load_says_when_no_server_answers() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/search?term=house&cnn=on");
    let (code, _, err) = run("load.sh", &["-n", "10", "-u", &url]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("nothing answers at {url}")), "{err}");
    assert!(err.contains("start the server first"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_puts_the_requests_on_a_running_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cache = FeedCache::new(sources::embedded(), CacheOptions::default());
    cache.refresh_all().await;
    let app = App::new(cache);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        listener,
        Arc::clone(&app),
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let url = format!("http://{addr}/search?term=house&cnn=on&bbc=on&nyt=on");
    let (code, out, err) = run("load.sh", &["-n", "300", "-c", "3", "-u", &url]).await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("Success rate:\t100.00%"), "{out}");
    assert!(
        err.contains(&format!("load: POST {url}, 300 requests, 3 connections")),
        "{err}"
    );
    // The probe request plus the 300 of the load, all searched.
    let metrics = app.metrics().render(&app.cache().stats());
    assert!(
        metrics.contains("search_http_requests_total{route=\"POST /search\",status=\"200\"} 301\n"),
        "{metrics}"
    );

    let _ = stop.send(());
    task.await.unwrap();
}
