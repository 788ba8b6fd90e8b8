//! `scripts/pprof-lesson.sh`: the Go lesson's pprof commands, verbatim but for the port and
//! the binary, against search-server through `profiler serve` (root: the script serves).

use std::path::Path;
use std::process::Command;

use super::common;

fn script() -> Command {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pprof-lesson.sh");
    let mut c = Command::new("bash");
    c.arg(path)
        .env("PROFILER", env!("CARGO_BIN_EXE_profiler"))
        .env("SEARCH_SERVER", common::search_server_bin());
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_lesson_runs_against_a_native_server() {
    common::require_root();
    let _serial = common::serial();
    let out_dir = common::scratch();
    let out = script()
        .args(["--seconds", "2", "--out"])
        .arg(out_dir.path())
        .args(["--port", &free_port().to_string()])
        .args(["--pprof-port", &free_port().to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the lesson failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let passed = stdout.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(passed >= 13, "{passed} steps passed:\n{stdout}");
    // The CPU and the heap steps, interactive and not, passed.
    for needle in [
        "./search-server http://localhost:",
        "/debug/pprof/profile  (pprof) top, list, web",
        "go tool pprof -web ./search-server http://localhost:",
        "/debug/pprof/heap > mem.out",
        "go tool pprof -alloc_space -base base.heap ./search-server current.heap",
        "go tool pprof -base base.cpu ./search-server current.cpu",
        "/debug/pprof/trace?seconds=2 > trace.out",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("PASS") && l.contains(needle)),
            "no passed step with {needle:?}:\n{stdout}"
        );
    }
    // Only go-torch is skipped (archived; its analog is the next step).
    for skipped in stdout.lines().filter(|l| l.starts_with("SKIP")) {
        assert!(skipped.contains("go-torch"), "{skipped}");
    }
    let webs = std::fs::read_dir(out_dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("web-"))
        .count();
    assert!(webs >= 3, "pprof's web drew {webs} graphs");
    let pdf = std::fs::read(out_dir.path().join("cpu.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF"));
}

#[test]
fn help_and_bad_arguments() {
    let out = script().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("--seconds"),
        "{help}"
    );
    let out = script().args(["--seconds", "zero"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive whole number"));
    let out = script().arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
