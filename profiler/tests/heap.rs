//! Heap fidelity: the real `profiler record --heap` (and `--page-faults`), as root, against
//! workloads with known allocations, both ways into the allocator: uprobes on libc (a Rust
//! and a C workload) and the heap-sampler allocator's USDT probes. Shares and byte totals are
//! asserted with tolerances (sampling), exact counters exactly, never times.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use profiler::capture::info::RecordingInfo;
use profiler::profile::Profile;

const MIB: f64 = 1024.0 * 1024.0;

fn column(p: &Profile, kind: &str) -> usize {
    p.sample_types
        .iter()
        .position(|t| t.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} type in {:?}", p.sample_type_names()))
}

/// Value of `kind` over the samples with `function` on their stack.
fn under(p: &Profile, kind: &str, function: &str) -> f64 {
    let c = column(p, kind);
    p.samples
        .iter()
        .filter(|s| {
            p.sample_frames(s)
                .any(|f| plain_name(&f.function.name) == function)
        })
        .map(|s| s.values[c] as f64)
        .sum()
}

fn total(p: &Profile, kind: &str) -> f64 {
    p.total(column(p, kind)) as f64
}

fn assert_near(what: &str, got: f64, expected: f64, tolerance: f64) {
    assert!(
        (got - expected).abs() <= tolerance * expected,
        "{what}: {got:.0}, expected {expected:.0} ± {:.0}%",
        tolerance * 100.0
    );
}

/// Records `exe args` launched with `--heap` and `extra`, returns the capture and the info.
fn record_heap(exe: &Path, args: &[&str], extra: &[&str]) -> (Profile, RecordingInfo, String) {
    let dir = scratch();
    let cap = dir.path().join("heap.pb.gz");
    let mut all = vec!["--heap", "-o", cap.to_str().unwrap()];
    all.extend(extra);
    all.push("--");
    all.push(exe.to_str().unwrap());
    all.extend(args);
    let out = record(&all);
    let p = load(&cap);
    let info = RecordingInfo::from_comments(&p.comments).expect("recording metadata");
    assert_heap_counter_invariant(&info);
    (p, info, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every allocation call ends sampled or not; every sample in one stack and one pending
/// outcome; every return and probe sample in one live outcome; nothing lost.
fn assert_heap_counter_invariant(info: &RecordingInfo) {
    let c = |n: &str| info.counter("heap", n);
    let sum = |names: &[&str]| names.iter().map(|n| c(n)).sum::<u64>();
    assert_eq!(
        c("calls"),
        sum(&["unsampled", "sampled"]),
        "{:?}",
        info.counters
    );
    assert_eq!(
        c("sampled"),
        sum(&["pending_set", "pending_full"]),
        "{:?}",
        info.counters
    );
    assert_eq!(
        sum(&["sampled", "usdt_alloc"]),
        sum(&[
            "user_stack",
            "user_stack_missing",
            "user_stack_map_full",
            "user_stack_error"
        ]),
        "{:?}",
        info.counters
    );
    assert_eq!(
        sum(&["returned", "usdt_alloc"]),
        sum(&[
            "alloc_failed",
            "live_inserted",
            "live_full",
            "live_error",
            "out_unreadable"
        ]),
        "{:?}",
        info.counters
    );
    assert_eq!(
        c("frees"),
        sum(&["free_null", "freed_sampled", "freed_other"]),
        "{:?}",
        info.counters
    );
    for lost in [
        "pending_full",
        "live_full",
        "counts_full",
        "user_stack_map_full",
        "usdt_arg_error",
    ] {
        assert_eq!(c(lost), 0, "heap lost {lost}: {:?}", info.counters);
    }
}

/// The known Rust workload through libc uprobes, sampled every 64 KiB on average (so the
/// 1 MiB blocks are all but certainly sampled): 64 MiB in use under the retaining function,
/// the other kept blocks under theirs (calloc, posix_memalign, realloc) with the right bytes,
/// and nearly all allocations by count under the churning function.
#[test]
fn rust_workload_through_libc_uprobes() {
    require_root();
    let _serial = serial();
    let (p, info, summary) =
        record_heap(&workload("heap_churn"), &["1"], &["--heap-rate", "64KiB"]);
    assert!(!summary.contains("BUG"), "{summary}");
    assert!(summary.contains("uprobes on libc"), "{summary}");
    check_known_heap(&p, "heap_churn", 0.10);
    assert!(
        info.counter("heap", "calls") >= 200_000,
        "{:?}",
        info.counters
    );
}

fn check_known_heap(p: &Profile, krate: &str, tolerance: f64) {
    let f = |name: &str| format!("{krate}::{name}");
    assert_near(
        "in use under retain_blocks",
        under(p, "inuse_space", &f("retain_blocks")),
        64.0 * MIB,
        tolerance,
    );
    assert_near(
        "in use under zeroed (calloc)",
        under(p, "inuse_space", &f("zeroed")),
        16.0 * MIB,
        tolerance,
    );
    assert_near(
        "in use under aligned (posix_memalign)",
        under(p, "inuse_space", &f("aligned")),
        16.0 * MIB,
        tolerance,
    );
    assert_near(
        "in use under grow (realloc)",
        under(p, "inuse_space", &f("grow")),
        8.0 * MIB,
        tolerance,
    );
    // Growing to 8 MiB requests about 16 MiB in all (each realloc asks for the new size).
    assert_near(
        "allocated under grow",
        under(p, "alloc_space", &f("grow")),
        16.0 * MIB,
        tolerance,
    );
    let churn = under(p, "alloc_objects", &f("churn_small"));
    let all = total(p, "alloc_objects");
    assert!(
        churn >= 0.9 * all,
        "churn_small holds {:.1}% of the allocations by count",
        100.0 * churn / all
    );
    assert!(
        under(p, "inuse_space", &f("churn_small")) < 0.01 * 64.0 * MIB,
        "churned blocks were all freed, yet show as in use"
    );
}

/// The C program through libc uprobes: every malloc-family call and free counted exactly,
/// and each kept allocation under its function with its bytes.
#[test]
fn c_program_counts_exactly_and_attributes_bytes() {
    require_root();
    let _serial = serial();
    let exe = c_workload("c_heap", &["-O2", "-fno-omit-frame-pointer"]);
    let (p, info, _) = record_heap(&exe, &["1"], &["--heap-rate", "64KiB"]);
    // 64 + 100000 + 16 + 1 + 11 + 16 allocation calls; 100000 frees plus 11 reallocs of a
    // block (each releases the old one).
    assert_eq!(
        info.counter("heap", "calls"),
        100_108,
        "{:?}",
        info.counters
    );
    assert_eq!(
        info.counter("heap", "frees"),
        100_011,
        "{:?}",
        info.counters
    );
    for (function, mib) in [
        ("keep_malloc", 64.0),
        ("keep_calloc", 16.0),
        ("keep_memalign", 16.0),
        ("keep_realloc", 8.0),
    ] {
        assert_near(
            &format!("in use under {function}"),
            under(&p, "inuse_space", function),
            mib * MIB,
            0.10,
        );
    }
    assert_near(
        "allocated under keep_realloc",
        under(&p, "alloc_space", "keep_realloc"),
        16.0 * MIB,
        0.10,
    );
    let churn = under(&p, "alloc_objects", "churn");
    assert!(
        churn >= 0.9 * total(&p, "alloc_objects"),
        "churn's share of allocations by count"
    );
}

/// `heap-sampler`'s `heap_churn_sampled` (the same workload with the sampling allocator, at
/// 64 KiB): built by cargo if the test run did not build it.
fn sampled_workload() -> PathBuf {
    let release = target_dir().join("release/examples/heap_churn_sampled");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "heap-sampler",
            "--example",
            "heap_churn_sampled",
        ])
        .env("CARGO_TARGET_DIR", target_dir())
        .status()
        .expect("run cargo");
    assert!(status.success(), "building heap_churn_sampled failed");
    assert!(release.is_file(), "{} was not built", release.display());
    release
}

/// The same workload with the heap-sampler allocator: the profiler uses its USDT probes (no
/// uprobe on malloc), finds the same in-use and allocation sites, and reads the allocator's
/// exact totals equal to what the program prints.
#[test]
fn heap_sampler_probes_give_the_same_answers_and_exact_totals() {
    require_root();
    let _serial = serial();
    let exe = sampled_workload();
    let dir = scratch();
    let cap = dir.path().join("sampled.pb.gz");
    let out = profiler_cmd()
        .args(["record", "--heap", "-o", cap.to_str().unwrap(), "--"])
        .arg(&exe)
        .arg("2")
        .output()
        .expect("run profiler record");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("heap-sampler probes"), "{stderr}");
    let p = load(&cap);
    let info = RecordingInfo::from_comments(&p.comments).expect("metadata");
    assert_heap_counter_invariant(&info);
    assert_eq!(
        info.counter("heap", "calls"),
        0,
        "no uprobe on malloc was needed"
    );
    check_known_heap(&p, "heap_churn_sampled::workload", 0.10);
    let printed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("totals "))
        .unwrap_or_else(|| panic!("the workload printed no totals: {stdout}"));
    for field in ["allocs", "frees", "alloc_bytes", "free_bytes"] {
        let value: u64 = printed
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {printed:?}"));
        assert_eq!(
            info.counter("heap", &format!("sampler_{field}")),
            value,
            "the allocator's exact {field}"
        );
    }
}

/// `go tool pprof -top -sample_index=inuse_space` names the same top function as `profiler
/// top`, and reads all four types.
#[test]
fn go_pprof_agrees_on_the_top_in_use_function() {
    require_root();
    let _serial = serial();
    let exe = c_workload("c_heap", &["-O2", "-fno-omit-frame-pointer"]);
    let dir = scratch();
    let cap = dir.path().join("c.pb.gz");
    record(&[
        "--heap",
        "--heap-rate",
        "64KiB",
        "-o",
        cap.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
    ]);
    let ours = profiler_cmd()
        .args(["top", cap.to_str().unwrap(), "--cum", "-n", "40"])
        .output()
        .expect("profiler top");
    let ours = String::from_utf8_lossy(&ours.stdout);
    let first_keep = |text: &str| {
        text.lines()
            .filter_map(|l| l.split_whitespace().last())
            .find(|f| f.starts_with("keep_") || *f == "churn")
            .map(str::to_string)
    };
    for index in [
        "inuse_space",
        "alloc_space",
        "alloc_objects",
        "inuse_objects",
    ] {
        let go = Command::new("go")
            .args([
                "tool",
                "pprof",
                "-top",
                "-cum",
                &format!("-sample_index={index}"),
            ])
            .arg(&cap)
            .output()
            .expect("go tool pprof (Debian golang-go, installed by scripts/setup.sh)");
        assert!(
            go.status.success(),
            "{}",
            String::from_utf8_lossy(&go.stderr)
        );
        if index == "inuse_space" {
            let go = String::from_utf8_lossy(&go.stdout);
            assert_eq!(
                first_keep(&go),
                Some("keep_malloc".to_string()),
                "go:\n{go}"
            );
            assert_eq!(
                first_keep(&ours),
                first_keep(&go),
                "ours:\n{ours}\ngo:\n{go}"
            );
        }
    }
}

/// Numbered snapshots over one attachment, each a whole heap profile; the leak view keeps only
/// allocations older than the age asked for.
#[test]
fn snapshots_and_the_leak_view() {
    require_root();
    let _serial = serial();
    let exe = c_workload("c_heap", &["-O2", "-fno-omit-frame-pointer"]);
    let dir = scratch();
    let cap = dir.path().join("heap.pb.gz");
    let out = record(&[
        "--heap",
        "--heap-rate",
        "64KiB",
        "--heap-snapshot-every",
        "1s",
        "-o",
        cap.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
        "3",
    ]);
    let summary = String::from_utf8_lossy(&out.stderr);
    let first = dir.path().join("heap.0001.pb.gz");
    let second = dir.path().join("heap.0002.pb.gz");
    assert!(first.is_file() && second.is_file(), "{summary}");
    for snap in [&first, &second] {
        let p = load(snap);
        assert_near(
            "in use in a snapshot",
            total(&p, "inuse_space"),
            104.0 * MIB,
            0.10,
        );
    }
    // Made at the start, kept 3 s: older than 1 s at the end, younger than 10 s.
    let (old, _, _) = record_heap(&exe, &["2"], &["--heap-rate", "64KiB", "--min-age", "1s"]);
    assert_near(
        "in use older than 1 s",
        total(&old, "inuse_space"),
        104.0 * MIB,
        0.10,
    );
    let (young, _, _) = record_heap(&exe, &["2"], &["--heap-rate", "64KiB", "--min-age", "10s"]);
    assert_eq!(total(&young, "inuse_space"), 0.0, "nothing is 10 s old");
}

/// Page faults land on the code that first touches memory: `fault_in` writes 8,192 pages.
#[test]
fn page_faults_name_the_code_that_touches_memory() {
    require_root();
    let _serial = serial();
    let dir = scratch();
    let cap = dir.path().join("faults.pb.gz");
    let exe = workload("heap_churn");
    record(&[
        "--page-faults",
        "-o",
        cap.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
    ]);
    let p = load(&cap);
    let faults = total(&p, "page_faults");
    let in_fault_in = under(&p, "page_faults", "heap_churn::fault_in");
    assert!(
        in_fault_in >= 8192.0 * 0.9,
        "fault_in has {in_fault_in} of {faults} faults"
    );
    assert_near(
        "bytes made resident by fault_in",
        under(&p, "page_faults_space", "heap_churn::fault_in"),
        32.0 * MIB,
        0.15,
    );
}

/// What cannot work says so before anything runs.
#[test]
fn bad_heap_options_fail_clearly() {
    let fails = |args: &[&str], needle: &str| {
        let out = profiler_cmd()
            .arg("record")
            .args(args)
            .output()
            .expect("run profiler");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    fails(&["--heap", "-a", "-d", "1s"], "not -a");
    fails(
        &["--heap", "--heap-rate", "0", "--", "true"],
        "size must be positive",
    );
    fails(&["--min-age", "5s", "--", "true"], "need --heap");
    require_root();
    let _serial = serial();
    let exe = c_workload("c_heap", &["-O2", "-fno-omit-frame-pointer"]);
    fails(
        &[
            "--heap",
            "--heap-mode",
            "sampler",
            "--",
            exe.to_str().unwrap(),
        ],
        "does not link the heap-sampler",
    );
}
