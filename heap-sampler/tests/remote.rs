//! The reader against a live child (examples/alloc_then_wait.rs): it must find the registry
//! by symbol, read exactly the totals the child printed, and toggle a probe semaphore. Needs
//! root or CAP_SYS_PTRACE over the child (process_vm_readv).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use heap_sampler::remote::elf::{find_registry, load_bias_of, sdt_probes};
use heap_sampler::remote::{adjust_semaphore, read_totals};

/// Builds the example with the cargo running this test, into this test's target directory and
/// profile, and returns its path. (A nested cargo is fine: the outer one holds no lock while
/// tests run.)
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // …/target/<profile dir>/deps/remote-HASH
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

/// `key=value` fields of one report line of the child.
fn field(line: &str, key: &str) -> u64 {
    let v = line
        .split(' ')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"));
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => v.parse().unwrap(),
    }
}

struct Waiting {
    child: Child,
    before: String,
    after: String,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: the child returns from main
        let _ = self.child.wait();
    }
}

fn start_child() -> Waiting {
    let mut child = Command::new(example("alloc_then_wait"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let line = |out: &mut BufReader<ChildStdout>| {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    };
    let before = line(&mut out);
    let after = line(&mut out);
    assert!(
        before.starts_with("before ") && after.starts_with("after "),
        "{before:?} {after:?}"
    );
    Waiting {
        child,
        before,
        after,
    }
}

#[test]
fn reads_exactly_what_the_child_counted() {
    let w = start_child();
    let pid = w.child.id() as i32;
    let printed = field(&w.after, "registry");
    let found = find_registry(pid)
        .unwrap()
        .expect("the example exports the registry");
    assert_eq!(
        found, printed,
        "symbol + load bias = the child's own address"
    );

    let t = read_totals(pid, found).unwrap();
    for (key, value) in [
        ("allocs", t.allocs),
        ("frees", t.frees),
        ("alloc_bytes", t.alloc_bytes),
        ("free_bytes", t.free_bytes),
        ("sampled_allocs", t.sampled_allocs),
        ("sampled_frees", t.sampled_frees),
    ] {
        assert_eq!(
            value,
            field(&w.after, key),
            "{key}: read {value}, child printed {}",
            w.after
        );
    }
    assert!(
        t.blocks >= 2,
        "the main thread and at least one joined thread: {t:?}"
    );
    assert_eq!(t.rate, heap_sampler::DEFAULT_RATE);

    // The known workload, exactly: KEEP vectors + the holding vector + CHURN pairs.
    let d = |key: &str| field(&w.after, key) - field(&w.before, key);
    assert_eq!(d("allocs"), 1000 + 1 + 20_000);
    assert_eq!(d("frees"), 20_000);
    assert_eq!(d("alloc_bytes"), 1000 * 4096 + 1000 * 24 + 20_000 * 100);
    assert_eq!(d("free_bytes"), 20_000 * 100);
}

#[test]
fn toggles_a_probe_semaphore_in_the_child() {
    let w = start_child();
    let pid = w.child.id() as i32;
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let alloc = sdt_probes(&exe)
        .unwrap()
        .into_iter()
        .find(|p| p.provider == "heap_sampler" && p.name == "alloc")
        .expect("the alloc probe");
    let addr = alloc.semaphore + load_bias_of(pid).unwrap();
    assert_eq!(
        adjust_semaphore(pid, addr, 0).unwrap(),
        0,
        "nothing attached yet"
    );
    assert_eq!(adjust_semaphore(pid, addr, 1).unwrap(), 1);
    assert_eq!(adjust_semaphore(pid, addr, -1).unwrap(), 0);
}

#[test]
fn a_wrong_address_is_refused_not_misread() {
    let w = start_child();
    let pid = w.child.id() as i32;
    let registry = find_registry(pid).unwrap().unwrap();
    let err = read_totals(pid, registry + 8).unwrap_err();
    assert!(
        err.to_string().contains("no heap-sampler registry"),
        "{err}"
    );
}
