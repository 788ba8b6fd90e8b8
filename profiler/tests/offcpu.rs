//! Off-CPU fidelity: the real `profiler record --offcpu`, as root, against `examples/waits.rs`,
//! whose threads wait in known ways, and against the loaded search server. Shares are asserted
//! with tolerances, never exact times.

mod common;

use std::process::{Command, Stdio};

use common::*;
use profiler::capture::info::RecordingInfo;
use profiler::profile::{Profile, Sample};

fn column(p: &Profile, kind: &str) -> usize {
    p.sample_types
        .iter()
        .position(|t| t.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} type in {:?}", p.sample_type_names()))
}

/// Sum of column `kind` over the samples that `keep`.
fn total_where(p: &Profile, kind: &str, keep: impl Fn(&Sample) -> bool) -> i64 {
    let c = column(p, kind);
    p.samples
        .iter()
        .filter(|s| keep(s))
        .map(|s| s.values[c])
        .sum()
}

fn has_frame(p: &Profile, s: &Sample, function: &str) -> bool {
    p.sample_frames(s)
        .any(|f| plain_name(&f.function.name) == function)
}

fn thread_is(s: &Sample, name: &str) -> bool {
    s.str_label("thread") == Some(name)
}

fn state_is(s: &Sample, states: &[&str]) -> bool {
    s.str_label("state").is_some_and(|st| states.contains(&st))
}

/// Records `waits` for 4 s with `args` and returns the capture and the summary.
fn record_waits(args: &[&str]) -> (Profile, String) {
    let dir = scratch();
    let cap = dir.path().join("waits.pb.gz");
    let exe = workload("waits");
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "-o",
        cap.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
        "4",
    ]);
    let out = record(&all);
    (
        load(&cap),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One thread sleeps 30 ms then 10 ms in a loop while another spins: the sleeper's blocked
/// time splits 75/25 (±3 points) between the two functions; the spinner, which never blocks,
/// is absent from the blocked (S/D) view; who woke the pipe reader is the writer's function;
/// waiting for a child is S, fsync is D; the summary reports time by state.
#[test]
fn known_waits_are_charged_to_their_stacks_states_and_wakers() {
    require_root();
    let _serial = serial();
    let (p, summary) = record_waits(&["--offcpu"]);
    assert!(!summary.contains("BUG"), "{summary}");
    for needle in [
        "off-CPU:",
        "sleeping (S)",
        "runnable, waiting for a CPU (R)",
    ] {
        assert!(
            summary.contains(needle),
            "summary lacks {needle:?}:\n{summary}"
        );
    }

    let blocked = |s: &Sample| thread_is(s, "sleeper") && state_is(s, &["S"]);
    let sleeper = total_where(&p, "offcpu", blocked) as f64;
    assert!(
        sleeper >= 3.0e9,
        "the sleeper was blocked only {:.2} s of a 4 s run",
        sleeper / 1e9
    );
    for (function, expected) in [("waits::sleep_thirty", 75.0), ("waits::sleep_ten", 25.0)] {
        let ns = total_where(&p, "offcpu", |s| blocked(s) && has_frame(&p, s, function)) as f64;
        let share = 100.0 * ns / sleeper;
        assert!(
            (share - expected).abs() <= 3.0,
            "{function}: {share:.1}% of the sleeper's blocked time, expected {expected}% ± 3"
        );
    }

    let spinner_blocked = total_where(&p, "offcpu", |s| {
        thread_is(s, "spinner") && state_is(s, &["S", "D"])
    });
    assert!(
        (spinner_blocked as f64) < 0.01 * sleeper,
        "the spinner shows {:.3} s blocked (S/D); it never blocks",
        spinner_blocked as f64 / 1e9
    );
    let spinner_runnable = total_where(&p, "offcpu_events", |s| {
        thread_is(s, "spinner") && state_is(s, &["R"])
    });
    assert!(spinner_runnable > 0, "the spinner was never preempted (R)");

    let reader_woken = total_where(&p, "offcpu_wakers", |s| thread_is(s, "reader"));
    let by_writer = total_where(&p, "offcpu_wakers", |s| {
        thread_is(s, "reader") && has_frame(&p, s, "waits::write_pipe")
    });
    assert!(
        reader_woken > 0 && by_writer as f64 >= 0.9 * reader_woken as f64,
        "the pipe reader's waker is write_pipe for {:.1}% of {:.2} s",
        100.0 * by_writer as f64 / reader_woken.max(1) as f64,
        reader_woken as f64 / 1e9
    );
    // The blocked side of those samples is the reader's own stack, unwound from the copy its
    // block in glibc's `read` took; that copy is shared with the block's plain sample and
    // unwound once, so there are no more unwinds than copies.
    let reader_in_read = total_where(&p, "offcpu_wakers", |s| {
        thread_is(s, "reader") && has_frame(&p, s, "waits::read_pipe")
    });
    assert!(
        reader_in_read as f64 >= 0.9 * reader_woken as f64,
        "the reader's woken time is under read_pipe for {:.1}%",
        100.0 * reader_in_read as f64 / reader_woken.max(1) as f64
    );
    let info = RecordingInfo::from_comments(&p.comments).expect("metadata");
    let (copies, unwinds) = (info.counter("offcpu", "copy_sent"), info.unwind.dwarf());
    assert!(
        copies > 0 && unwinds <= copies,
        "{unwinds} unwinds of {copies} copies: {:?}",
        info.unwind
    );
    // The waker thread is named. Not every wakeup of the reader is the writer's (a wakeup
    // can run in whatever thread is on the CPU, e.g. the spinner during a timer interrupt),
    // so the name is asserted on the bulk of the reader's woken time, like the stack above.
    let by_writer_label = total_where(&p, "offcpu_wakers", |s| {
        thread_is(s, "reader") && s.str_label("waker") == Some("writer")
    });
    assert!(
        by_writer_label as f64 >= 0.9 * reader_woken as f64,
        "the reader's waker is labelled \"writer\" for {:.1}% of its woken time; labels: {:?}",
        100.0 * by_writer_label as f64 / reader_woken.max(1) as f64,
        p.samples
            .iter()
            .filter(|s| thread_is(s, "reader"))
            .filter_map(|s| s.str_label("waker"))
            .collect::<std::collections::BTreeSet<_>>()
    );

    let waiting_child = total_where(&p, "offcpu", |s| {
        thread_is(s, "waiter") && has_frame(&p, s, "waits::wait_child")
    });
    let waiting_child_s = total_where(&p, "offcpu", |s| {
        thread_is(s, "waiter") && state_is(s, &["S"]) && has_frame(&p, s, "waits::wait_child")
    });
    assert!(
        waiting_child > 0 && waiting_child_s as f64 >= 0.95 * waiting_child as f64,
        "waiting for a child is S: {waiting_child_s} of {waiting_child} ns"
    );
    let syncing_d = total_where(&p, "offcpu", |s| {
        thread_is(s, "syncer") && state_is(s, &["D"]) && has_frame(&p, s, "waits::sync_to_disk")
    });
    assert!(
        syncing_d > 0,
        "fsync never waited in state D under sync_to_disk"
    );
}

/// With both signals, a `wall` type sums on- and off-CPU time per stack: each thread's wall
/// time is about the recording's length (a thread that is neither on nor off the CPU does not
/// exist), and the spinner's wall time is mostly on the CPU.
#[test]
fn cpu_and_offcpu_together_give_wall_time() {
    require_root();
    let _serial = serial();
    let (p, summary) = record_waits(&["--cpu", "--offcpu", "-F", "99"]);
    assert!(!summary.contains("BUG"), "{summary}");
    let info = RecordingInfo::from_comments(&p.comments).expect("metadata");
    let secs = info.duration_nanos as f64 / 1e9;
    for thread in ["sleeper", "spinner", "reader"] {
        let wall = total_where(&p, "wall", |s| thread_is(s, thread)) as f64 / 1e9;
        assert!(
            wall > 0.8 * secs && wall < 1.2 * secs,
            "{thread}: {wall:.2} s of wall time in a {secs:.2} s recording"
        );
    }
    // The spinner never blocks: its wall time is on the CPU or waiting for one (R), whatever
    // else the machine runs.
    let spin_cpu = total_where(&p, "cpu", |s| thread_is(s, "spinner")) as f64;
    let spin_runnable = total_where(&p, "offcpu", |s| {
        thread_is(s, "spinner") && state_is(s, &["R"])
    }) as f64;
    let spin_wall = total_where(&p, "wall", |s| thread_is(s, "spinner")) as f64;
    assert!(
        spin_cpu + spin_runnable >= 0.97 * spin_wall,
        "the spinner is on or waiting for the CPU only {:.1}% of its wall time",
        100.0 * (spin_cpu + spin_runnable) / spin_wall
    );
}

/// On the loaded search server, `--offcpu` shows the worker threads blocked in `epoll_wait`
/// under tokio's park, by name.
#[test]
fn loaded_search_server_workers_park_in_epoll_wait() {
    require_root();
    let _serial = serial();
    let dir = scratch();
    let cap = dir.path().join("server-off.pb.gz");
    let (server, base) = start_search_server();
    let pid = server.0.id().to_string();
    let url = format!("{base}/search?term=house&cnn=on&bbc=on&nyt=on");
    let mut oha = Reaped(
        Command::new("oha")
            .args(["-m", "POST", "-c", "4", "-z", "8s", "--no-tui", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start oha (installed by scripts/setup.sh)"),
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    record(&[
        "--offcpu",
        "--pid",
        &pid,
        "-d",
        "4s",
        "-o",
        cap.to_str().unwrap(),
    ]);
    let _ = oha.0.wait();
    let p = load(&cap);
    let parked = |s: &Sample| {
        p.sample_frames(s)
            .any(|f| f.function.name.contains("epoll_wait"))
            && p.sample_frames(s).any(|f| {
                let n = &f.function.name;
                n.contains("tokio") && (n.contains("park") || n.contains("Parker"))
            })
    };
    // Their sleeping time (S): waiting for a CPU (R) is the load generator's doing.
    let worker_sleeps = |s: &Sample| {
        s.str_label("thread")
            .is_some_and(|t| t.starts_with("tokio-r"))
            && state_is(s, &["S"])
    };
    let workers = total_where(&p, "offcpu", worker_sleeps);
    let workers_parked = total_where(&p, "offcpu", |s| worker_sleeps(s) && parked(s));
    assert!(
        workers > 0 && workers_parked as f64 >= 0.25 * workers as f64,
        "tokio workers parked in epoll_wait for {:.1}% of their {:.2} s asleep",
        100.0 * workers_parked as f64 / workers.max(1) as f64,
        workers as f64 / 1e9
    );
    drop(server);
}
