//! Interop with Go's pprof: `go tool pprof` reads our captures and agrees with us, and pprof
//! files written by a real Go program (CPU and heap) are read by our commands. Needs Debian's
//! golang-go (scripts/setup.sh installs it); a missing `go` fails the test, it is never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{fixture, ok, path_str};

fn go_binary() -> PathBuf {
    let candidates = [
        std::env::var_os("GO").map(PathBuf::from),
        which("go"),
        Some(PathBuf::from("/usr/lib/go/bin/go")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .expect("`go` not found (install Debian golang-go: scripts/setup.sh); the interop tests need it")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A `go` command isolated from the user's environment: temporary HOME and build cache, no
/// network, no toolchain download.
pub fn go(home: &Path) -> Command {
    let mut c = Command::new(go_binary());
    c.env("HOME", home)
        .env("GOCACHE", home.join("cache"))
        .env("GOPATH", home.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GO111MODULE", "auto");
    c
}

pub fn run(mut c: Command) -> String {
    let o = c.output().expect("running go");
    assert!(
        o.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// (flat, function) of the data rows of a pprof-style `-top` table (ours or Go's).
fn top_rows(table: &str) -> Vec<(String, String)> {
    table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let flat = cols.next()?.to_string();
            let function = cols.nth(4)?.to_string();
            Some((flat, function))
        })
        .collect()
}

fn go_top(home: &Path, args: &[&str]) -> Vec<(String, String)> {
    let mut c = go(home);
    c.args(["tool", "pprof", "-top"]).args(args);
    top_rows(&run(c))
}

#[test]
fn go_tool_pprof_reads_our_captures_and_agrees_on_top() {
    let home = tempfile::tempdir().unwrap();
    for (file, sample_type) in [
        ("cpu-slower.pb.gz", "cpu"),
        ("cpu-slower.pb.gz", "samples"),
        ("heap.pb.gz", "alloc_objects"),
        ("heap.pb.gz", "inuse_space"),
    ] {
        let path = path_str(&fixture(file)).to_string();
        let theirs = go_top(
            home.path(),
            &[&format!("-sample_index={sample_type}"), &path],
        );
        let ours = top_rows(&ok(&["top", &path, "--sample-type", sample_type]));
        assert!(!theirs.is_empty() && !ours.is_empty());
        assert_eq!(
            theirs[0].1, ours[0].1,
            "{file} {sample_type}: top function differs: go {theirs:?} ours {ours:?}"
        );
    }
}

#[test]
fn go_tool_pprof_diff_base_agrees_in_sign() {
    let home = tempfile::tempdir().unwrap();
    let base = path_str(&fixture("cpu.pb.gz")).to_string();
    let current = path_str(&fixture("cpu-slower.pb.gz")).to_string();
    let ours = ok(&["diff", &base, &current, "--format", "json"]);
    let ours: serde_json::Value = serde_json::from_str(&ours).unwrap();
    let biggest = &ours["rows"][0];
    let function = biggest["function"].as_str().unwrap();
    let our_sign = biggest["delta"].as_f64().unwrap().signum();
    let theirs = go_top(
        home.path(),
        &["-sample_index=cpu", "-diff_base", &base, &current],
    );
    let (flat, _) = theirs
        .iter()
        .find(|(_, f)| f == function)
        .unwrap_or_else(|| panic!("{function} not in {theirs:?}"));
    let their_sign = if flat.starts_with('-') { -1.0 } else { 1.0 };
    assert_eq!(our_sign, their_sign, "{function}: ours {biggest} go {flat}");
    // And the function that grew is positive in both.
    let grew = theirs
        .iter()
        .find(|(_, f)| f == "search_server::search::matches")
        .unwrap();
    assert!(!grew.0.starts_with('-'), "{theirs:?}");
}

const GO_PROGRAM: &str = r#"package main

import (
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

var sink []byte
var keep [][]byte

//go:noinline
func spinHot(until time.Time) uint64 {
	var x uint64
	for time.Now().Before(until) {
		for i := 0; i < 10000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	return x
}

//go:noinline
func spinCold(until time.Time) uint64 {
	var x uint64
	for time.Now().Before(until) {
		for i := 0; i < 10000; i++ {
			x ^= x<<13 + 7
		}
	}
	return x
}

//go:noinline
func allocBig() {
	for i := 0; i < 200; i++ {
		keep = append(keep, make([]byte, 64<<10))
	}
}

//go:noinline
func allocSmall() {
	for i := 0; i < 20000; i++ {
		sink = make([]byte, 16)
	}
}

func main() {
	runtime.MemProfileRate = 1
	cpu, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		panic(err)
	}
	hotMs := time.Duration(1200)
	if len(os.Args) > 3 && os.Args[3] == "cold" {
		hotMs = 300
	}
	spinHot(time.Now().Add(hotMs * time.Millisecond))
	spinCold(time.Now().Add(400 * time.Millisecond))
	pprof.StopCPUProfile()
	cpu.Close()
	allocBig()
	allocSmall()
	runtime.GC()
	heap, err := os.Create(os.Args[2])
	if err != nil {
		panic(err)
	}
	if err := pprof.WriteHeapProfile(heap); err != nil {
		panic(err)
	}
	heap.Close()
}
"#;

#[test]
fn profiles_written_by_a_go_program_are_read() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("prog");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.go"), GO_PROGRAM).unwrap();
    let exe = dir.join("prog");
    let mut build = go(home.path());
    build
        .current_dir(&dir)
        .args(["build", "-o"])
        .arg(&exe)
        .arg("main.go");
    run(build);
    let out = |n: &str| path_str(&dir.join(n)).to_string();
    for (cpu, heap, mode) in [
        ("cpu.prof", "heap.prof", "hot"),
        ("cpu2.prof", "heap2.prof", "cold"),
    ] {
        run({
            let mut c = Command::new(&exe);
            c.args([out(cpu), out(heap), mode.to_string()]);
            c
        });
    }

    let top = ok(&["top", &out("cpu.prof"), "--format", "json"]);
    let top: serde_json::Value = serde_json::from_str(&top).unwrap();
    assert_eq!(top["sample_type"], "cpu", "Go's default is the last type");
    assert_eq!(top["rows"][0]["function"], "main.spinHot", "{top}");

    let heap = ok(&[
        "top",
        &out("heap.prof"),
        "--sample-type",
        "alloc_space",
        "--format",
        "json",
    ]);
    let heap: serde_json::Value = serde_json::from_str(&heap).unwrap();
    assert_eq!(heap["rows"][0]["function"], "main.allocBig", "{heap}");
    let objects = ok(&[
        "top",
        &out("heap.prof"),
        "--sample-type",
        "alloc_objects",
        "--format",
        "json",
    ]);
    let objects: serde_json::Value = serde_json::from_str(&objects).unwrap();
    assert_eq!(
        objects["rows"][0]["function"], "main.allocSmall",
        "{objects}"
    );

    let svg = dir.join("cpu.svg");
    ok(&["flamegraph", &out("cpu.prof"), "-o", path_str(&svg)]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("main.spinHot") && text.contains("main.main"),
        "Go frames drawn"
    );
    ok(&[
        "flamegraph",
        &out("heap.prof"),
        "--sample-type",
        "inuse_space",
        "-o",
        path_str(&dir.join("heap.svg")),
    ]);

    // Run 1 spent 1.2 s hot and 0.4 s cold, run 2 0.3 s and 0.4 s: spinCold's share grew.
    let diff = ok(&[
        "diff",
        &out("cpu.prof"),
        &out("cpu2.prof"),
        "--format",
        "json",
        "-o",
        path_str(&dir.join("diff.svg")),
    ]);
    let diff: serde_json::Value = serde_json::from_str(&diff).unwrap();
    let rows = diff["rows"].as_array().unwrap();
    let cold = rows
        .iter()
        .find(|r| r["function"] == "main.spinCold")
        .expect("spinCold in diff");
    assert!(cold["share_delta"].as_f64().unwrap() > 10.0, "{diff}");
    let hot = rows
        .iter()
        .find(|r| r["function"] == "main.spinHot")
        .expect("spinHot in diff");
    assert!(hot["share_delta"].as_f64().unwrap() < -10.0, "{diff}");
    ok(&[
        "diff",
        &out("heap.prof"),
        &out("heap2.prof"),
        "--sample-type",
        "alloc_space",
    ]);
}
