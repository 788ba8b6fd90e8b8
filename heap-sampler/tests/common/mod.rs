//! The child process of the reading-side tests: examples/alloc_then_wait.rs, built by the
//! cargo running the tests, started with pipes, and its `key=value` report lines.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Builds the example with the cargo running this test, into this test's target directory and
/// profile, and returns its path. (A nested cargo is fine: the outer one holds no lock while
/// tests run.)
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // …/target/<profile dir>/deps/TEST-HASH
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("a target directory");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(other) => {
            cargo.args(["--profile", other]);
        }
        None => panic!("no profile directory in {}", exe.display()),
    }
    let status = cargo.status().expect("run cargo build --example");
    assert!(
        status.success(),
        "building example {name} failed ({status})"
    );
    profile_dir.join("examples").join(name)
}

/// The value of `key=…` in a report line (decimal, or hex with 0x).
pub fn field(line: &str, key: &str) -> u64 {
    let v = line
        .split(' ')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"));
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => v.parse().unwrap(),
    }
}

/// The example after its first workload, waiting on stdin; closing stdin ends it.
pub struct Waiting {
    child: Child,
    out: BufReader<ChildStdout>,
    /// Its report before the known workload.
    pub before: String,
    /// Its report after it.
    pub after: String,
}

impl Waiting {
    pub fn start() -> Self {
        let mut child = Command::new(example("alloc_then_wait"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the example");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut w = Self {
            child,
            out,
            before: String::new(),
            after: String::new(),
        };
        w.before = w.line();
        w.after = w.line();
        assert!(
            w.before.starts_with("before ") && w.after.starts_with("after "),
            "{w:?}",
            w = (&w.before, &w.after)
        );
        w
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Has the child churn once more and returns its `churned …` report.
    pub fn churn(&mut self) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"c").unwrap();
        stdin.flush().unwrap();
        let line = self.line();
        assert!(line.starts_with("churned "), "{line:?}");
        line
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: the child returns from main
        let _ = self.child.wait();
    }
}
