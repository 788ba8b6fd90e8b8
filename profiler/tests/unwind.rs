//! Stacks without frame pointers (`--call-graph dwarf|auto`): the real `profiler record`,
//! run as root against workloads with known call structures that keep no frame pointers — a C
//! program built with `gcc -O2 -fomit-frame-pointer`, a Rust program built with
//! `-C force-frame-pointers=no`, a Rust program whose time is in glibc's memcpy — and against
//! `perf record --call-graph dwarf`. Shares are asserted with tolerances, never exact counts.
//!
//! The tests run one at a time (a lock in `common`): two recordings at once would share the two
//! CPUs and skew each other.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};

use profiler::capture::info::RecordingInfo;
use profiler::profile::Profile;

use common::*;

/// Records `exe args` launched under `profiler record -F 999` with `extra` flags; returns the
/// capture, its metadata and the summary printed on stderr.
fn record_dwarf(exe: &Path, args: &[&str], extra: &[&str]) -> (Profile, RecordingInfo, String) {
    let dir = scratch();
    let cap = dir.path().join("cap.pb.gz");
    let mut argv = vec!["-F", "999", "-o", cap.to_str().unwrap()];
    argv.extend_from_slice(extra);
    argv.push("--");
    argv.push(exe.to_str().unwrap());
    argv.extend_from_slice(args);
    let out = record(&argv);
    let p = load(&cap);
    let info = RecordingInfo::from_comments(&p.comments).expect("recording metadata");
    (p, info, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Percent of `program`'s stacks that reach a root frame (main, _start, a thread start), with
/// at least `min` stacks recorded.
fn whole_percent(info: &RecordingInfo, program: &str, min: u64) -> f64 {
    let h = info
        .health
        .by_program
        .get(program)
        .unwrap_or_else(|| panic!("no stack health for {program}: {:?}", info.health));
    assert!(
        h.total() >= min,
        "only {} stacks of {program}: {h:?}",
        h.total()
    );
    100.0 * h.whole as f64 / h.total() as f64
}

fn program_name(exe: &Path) -> String {
    exe.file_name().unwrap().to_string_lossy().into_owned()
}

/// gcc -O2 code keeps no frame pointers; with the default (`auto`) its stacks are unwound
/// with DWARF: ≥ 95% reach main, and leaf's time splits 1/3 under mid_a, 2/3 under mid_b.
#[test]
fn c_program_without_frame_pointers_unwinds_to_main() {
    require_root();
    let _serial = serial();
    let exe = c_workload("c_split", &["-O2", "-fomit-frame-pointer"]);
    let (p, info, summary) = record_dwarf(&exe, &["4"], &[]);
    let program = program_name(&exe);
    assert_cpu_counter_invariant(&info);
    let whole = whole_percent(&info, &program, 500);
    let main = inclusive_share(&p, "main");
    assert!(
        whole >= 95.0 && main >= 95.0,
        "{whole:.1}% of stacks whole, {main:.1}% under main; unwind: {:?}\n{summary}",
        info.unwind
    );
    assert_share(&p, "mid_a", 100.0 / 3.0, 3.0);
    assert_share(&p, "mid_b", 200.0 / 3.0, 3.0);
    let u = &info.unwind;
    assert_eq!(u.mode, "auto");
    let stats = &u.by_program[&program];
    assert!(
        stats.dwarf > 0 && stats.reached_end * 100 >= stats.dwarf * 95,
        "{stats:?}"
    );
    assert!(
        u.objects
            .iter()
            .any(|(o, r)| o.ends_with(&program) && !r.frame_pointers),
        "the -O2 program is not reported without frame pointers: {:?}",
        u.objects
    );
    assert!(
        summary.contains("call graph:   auto") && summary.contains(&format!("{program}: dwarf")),
        "the summary does not say how stacks were unwound:\n{summary}"
    );
}

/// Blocked time of a gcc -O2 program that sleeps through glibc's clock_nanosleep wrapper (no
/// frame pointers anywhere on the way): with `auto`, the blocks' user stacks are copied when
/// the thread leaves the system call and unwound with DWARF, so ≥ 95% of the blocked time
/// reaches main and splits 1/3 under mid_a, 2/3 under mid_b (±3 points); the frame-pointer
/// walk of the same program finds main under less than half of it.
#[test]
fn blocked_c_program_without_frame_pointers_unwinds_to_main() {
    require_root();
    let _serial = serial();
    let exe = c_workload("c_block", &["-O2", "-fomit-frame-pointer"]);
    let run = |call_graph: &str| {
        let dir = scratch();
        let cap = dir.path().join("block.pb.gz");
        let out = record(&[
            "--offcpu",
            "--call-graph",
            call_graph,
            "-o",
            cap.to_str().unwrap(),
            "--",
            exe.to_str().unwrap(),
            "3",
        ]);
        let p = load(&cap);
        let info = RecordingInfo::from_comments(&p.comments).expect("recording metadata");
        (p, info, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Blocked (S) time of the program (one thread), and the part of it under `function`.
    let blocked_under = |p: &Profile, function: Option<&str>| -> i64 {
        let c = p
            .sample_types
            .iter()
            .position(|t| t.kind == "offcpu")
            .expect("an offcpu column");
        p.samples
            .iter()
            .filter(|s| s.str_label("state") == Some("S"))
            .filter(|s| {
                function.is_none_or(|f| {
                    p.sample_frames(s)
                        .any(|fr| plain_name(&fr.function.name) == f)
                })
            })
            .map(|s| s.values[c])
            .sum()
    };
    let (p, info, summary) = run("auto");
    let total = blocked_under(&p, None);
    assert!(
        total >= 2_000_000_000,
        "only {total} ns blocked recorded in 3 s:\n{summary}"
    );
    let share = |f: &str| 100.0 * blocked_under(&p, Some(f)) as f64 / total as f64;
    let sent = info.counter("offcpu", "copy_sent");
    assert!(
        share("main") >= 95.0,
        "{:.1}% of blocked time under main ({sent} copies sent; offcpu counters {:?}); unwind: {:?}\n{summary}",
        share("main"),
        info.counters.get("offcpu"),
        info.unwind
    );
    for (f, expected) in [("mid_a", 100.0 / 3.0), ("mid_b", 200.0 / 3.0)] {
        assert!(
            (share(f) - expected).abs() <= 3.0,
            "{f}: {:.2}% of blocked time, expected {expected:.1}% ± 3",
            share(f)
        );
    }
    assert!(sent >= 300, "{sent} copies sent for ~600 blocks of 4 ms");
    assert!(!summary.contains("counter invariant broken"), "{summary}");
    let (p, _, _) = run("fp");
    let fp_main = 100.0 * blocked_under(&p, Some("main")) as f64 / blocked_under(&p, None) as f64;
    assert!(
        fp_main < 50.0,
        "the frame-pointer walk found main under {fp_main:.1}% of the blocked time: the workload no longer tests unwinding"
    );
}

/// A Rust program built without frame pointers: ≥ 95% of stacks reach main or a thread start.
#[test]
fn rust_program_without_frame_pointers_unwinds_to_main() {
    require_root();
    let _serial = serial();
    let exe = rust_workload("cpu_split", false);
    let (p, info, summary) = record_dwarf(&exe, &["4"], &[]);
    let whole = whole_percent(&info, &program_name(&exe), 500);
    assert!(
        whole >= 95.0,
        "{whole:.1}% of stacks whole; unwind: {:?}\n{summary}",
        info.unwind
    );
    assert_share(&p, "cpu_split::work_sixty", 60.0, 3.0);
    assert_cpu_counter_invariant(&info);
}

/// Time inside glibc's memcpy (no frame pointer) is charged under the function that called
/// it: a frame-pointer walk skips that caller, the DWARF unwind of `auto` does not.
#[test]
fn caller_of_glibc_memcpy_is_kept() {
    require_root();
    let _serial = serial();
    let exe = workload("memcpy_hot");
    let (p, info, summary) = record_dwarf(&exe, &["4"], &[]);
    let in_libc = |l: usize| {
        p.locations[l]
            .mapping
            .is_some_and(|m| p.mappings[m].filename.contains("libc.so"))
    };
    let (mut libc_samples, mut with_caller) = (0i64, 0i64);
    let vi = samples_index(&p);
    for s in &p.samples {
        // The user leaf (kernel frames, if any, come first).
        let Some(i) = s.locations.iter().position(|&l| !is_kernel(&p, l)) else {
            continue;
        };
        if !in_libc(s.locations[i]) {
            continue;
        }
        libc_samples += s.values[vi];
        let caller = s.locations.get(i + 1).map(|&l| &p.locations[l]);
        if caller.is_some_and(|c| {
            c.lines
                .iter()
                .any(|line| plain_name(&p.functions[line.function].name).ends_with("copy_buffers"))
        }) {
            with_caller += s.values[vi];
        }
    }
    let total = total_samples(&p);
    assert!(
        libc_samples * 2 >= total,
        "only {libc_samples} of {total} samples in libc:\n{}",
        describe_top(&flat_symbol_shares(&p), 8)
    );
    let pct = 100.0 * with_caller as f64 / libc_samples as f64;
    assert!(
        pct >= 95.0,
        "copy_buffers is the caller of the libc frame in only {pct:.1}% of {libc_samples} samples; unwind: {:?}\n{summary}",
        info.unwind
    );
}

fn is_kernel(p: &Profile, l: usize) -> bool {
    p.locations[l]
        .mapping
        .is_some_and(|m| p.mappings[m].filename.starts_with("[kernel"))
}

/// Cumulative (inclusive) shares by function from `perf script`: per sample, each function on
/// its stack once.
fn perf_cumulative_shares(perf_data: &Path) -> HashMap<String, f64> {
    let out = Command::new("perf")
        .args(["script", "-F", "ip,sym", "-i"])
        .arg(perf_data)
        .output()
        .expect("run perf script (Debian linux-perf, installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "perf script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts: HashMap<String, f64> = HashMap::new();
    let mut samples = 0.0;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        samples += 1.0;
        let names: BTreeSet<&str> = block
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        for n in names {
            *counts.entry(n.to_string()).or_default() += 1.0;
        }
    }
    assert!(samples > 0.0, "perf recorded no samples");
    counts.values_mut().for_each(|c| *c = 100.0 * *c / samples);
    counts
}

/// The C program recorded at once by us (default `auto`) and by `perf record --call-graph
/// dwarf`, both at 999 Hz: the same top functions by cumulative share, within ±3 points.
#[test]
fn c_program_agrees_with_perf_dwarf() {
    require_root();
    let _serial = serial();
    let dir = scratch();
    let cap = dir.path().join("c.pb.gz");
    let perf_data = dir.path().join("perf.data");
    let exe = c_workload("c_split", &["-O2", "-fomit-frame-pointer"]);
    let mut child = Command::new(&exe)
        .arg("7")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the C workload");
    let pid = child.id().to_string();
    let perf = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "--call-graph",
            "dwarf",
            "-p",
            &pid,
            "-o",
        ])
        .arg(&perf_data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start perf record");
    // 999 Hz for both: at 99 Hz, two independent samplings of ~500 and ~700 samples differ
    // by more than 3 points about one time in five from binomial noise alone. (c_split varies
    // its round length so that the 999 Hz period cannot alias with it.)
    record(&[
        "--pid",
        &pid,
        "-F",
        "999",
        "--duration",
        "5s",
        "-o",
        cap.to_str().unwrap(),
    ]);
    let status = child.wait().expect("wait for the workload");
    assert!(status.success(), "workload failed: {status}");
    let perf_out = perf.wait_with_output().expect("wait for perf record");
    assert!(
        perf_out.status.success(),
        "perf record failed:\n{}",
        String::from_utf8_lossy(&perf_out.stderr)
    );
    let p = load(&cap);
    let theirs = perf_cumulative_shares(&perf_data);
    let expected = ["main", "top", "leaf", "mid_a", "mid_b"];
    let describe = |shares: &HashMap<String, f64>| describe_top(shares, 10);
    for name in expected {
        let perf_share = theirs.get(name).copied().unwrap_or(0.0);
        let ours = inclusive_share(&p, name);
        assert!(
            perf_share >= 20.0,
            "{name} is not among perf's top functions ({perf_share:.1}%):\n{}",
            describe(&theirs)
        );
        assert!(
            (ours - perf_share).abs() <= 3.0,
            "{name}: profiler {ours:.2}% vs perf {perf_share:.2}% (cumulative)\nperf:\n{}",
            describe(&theirs)
        );
    }
}
