//! Integration tests of the commands that read captures (flamegraph, fold, top, list, diff,
//! convert), run through the real binary on fixture captures built with `ProfileBuilder`.
//! Golden files live in tests/golden and are rewritten only with BLESS=1.

mod bad_input;
mod fixtures;
mod golden;
mod graph;
mod info;
mod interop;
mod options;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How to rewrite the golden files and fixtures after an intended change.
pub const BLESS: &str = "BLESS=1 cargo test -p profiler --test reading";

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures").join(name)
}

/// Runs the profiler binary with `args` in the crate directory.
pub fn profiler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_profiler"))
        .args(args)
        .current_dir(manifest_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("running the profiler binary")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and requires success, returning stdout.
pub fn ok(args: &[&str]) -> String {
    let o = profiler(args);
    assert!(
        o.status.success(),
        "profiler {args:?} failed: {}\n{}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
