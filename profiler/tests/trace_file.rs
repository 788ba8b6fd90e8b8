//! `profiler trace` files as Perfetto sees them: a synthetic timeline with known answers is
//! written, then parsed with Perfetto's own Python protos (tests/support/perfetto_check.py),
//! which derive per-thread sleeping time, wakers, names and callstacks independently of our
//! reader. Also: the summary of the file equals the summary of the timeline, and file sizes.

use std::path::Path;

use profiler::trace::{SummaryOptions, TaskState, read_trace_file, summarize, write_timeline};

mod common;
use common::perfetto_view;

/// The model under the path scenario.rs uses inside the library.
mod trace {
    pub use profiler::trace::model;
}
#[allow(dead_code)]
#[path = "../src/trace/scenario.rs"]
mod scenario;

use scenario::{KWORKER, MS, PID, READER, SLEEPER, SPINNER, Scenario, WRITER, workload};

const START: u64 = 7_000 * MS;

fn write(t: &profiler::trace::Timeline, dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write_timeline(t, file).expect("write trace");
    path
}

#[test]
fn perfetto_reads_the_scheduling_samples_and_names_we_wrote() {
    let rounds = 10;
    let (t, answers) = workload(START, rounds);
    let dir = tempfile::tempdir().unwrap();
    let path = write(&t, dir.path(), "workload.perfetto-trace");
    let v = perfetto_view(&path);

    assert_eq!(v["unresolved"], 0, "every interned reference resolves");
    assert_eq!(v["unsorted_bundles"], 0);
    assert_eq!(v["sched_events"], t.events.len());
    // Packet layout: scheduling on sequence 1, CPU samples on 2, switch-out stacks on 3.
    let seq1: Vec<&str> = v["sequences"]["1"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(seq1, ["ftrace_events", "process_tree", "service_event"]);
    assert_eq!(v["sequences"]["2"]["perf_sample"], rounds * 6);
    assert_eq!(v["sequences"]["3"]["perf_sample"], rounds * 5 + 1);
    assert_eq!(v["kinds"]["service_event"], 2);
    assert!(
        v["kinds"]["ftrace_events"].as_u64().unwrap() >= 4,
        "a bundle per CPU"
    );
    assert_eq!(v["timebases"]["2"]["name"], "cpu-clock");
    assert_eq!(v["timebases"]["2"]["counter"], 1, "SW_CPU_CLOCK");
    assert_eq!(v["timebases"]["2"]["period"], t.sample_period_ns);
    assert_eq!(v["timebases"]["3"]["tracepoint"], "sched:sched_switch");
    assert_eq!(v["service"]["tracing_started"], START);
    assert_eq!(v["service"]["tracing_disabled"], t.end_ns);

    // Names and processes: declared threads, the process, and a task seen only in events.
    let names = &v["thread_names"];
    for (tid, name) in [
        (SLEEPER, "sleeper"),
        (SPINNER, "spinner"),
        (READER, "reader"),
        (WRITER, "writer"),
        (PID, "app"),
        (KWORKER, "kworker/1:1"),
    ] {
        assert_eq!(names[tid.to_string()], name, "name of {tid}");
    }
    assert_eq!(v["tgids"][SLEEPER.to_string()], PID);
    assert_eq!(v["tgids"][KWORKER.to_string()], KWORKER);
    assert_eq!(v["processes"][PID.to_string()][0], "/usr/bin/app");

    // Sleeping time from the parsed sched_switch / sched_waking events.
    let sleeping = &v["sleeping_ns"];
    assert_eq!(sleeping[SLEEPER.to_string()], answers.sleeper_sleeping_ns);
    assert_eq!(sleeping[READER.to_string()], answers.reader_sleeping_ns);
    assert!(
        sleeping.get(SPINNER.to_string()).is_none(),
        "the spinner never sleeps"
    );
    // The pipe wake-ups name the writer; the sleeper's come from the idle task (timers).
    assert_eq!(v["wakers"][format!("{WRITER}->{READER}")], rounds);
    assert_eq!(v["wakers"][format!("0->{SLEEPER}")], rounds * 3);

    // Interned callstacks: the spinner's samples name its function.
    let cpu = &v["samples_by_leaf"]["2"];
    assert_eq!(cpu[format!("{SPINNER}:app::spin")], rounds * 5);
    assert_eq!(cpu[format!("{WRITER}:write")], rounds);
    let offcpu = &v["samples_by_leaf"]["3"];
    assert_eq!(offcpu[format!("{SLEEPER}:std::thread::sleep")], rounds * 3);
    assert_eq!(offcpu[format!("{READER}:read")], rounds + 1);
    assert!(v["frame_kinds"]["KIND_KERNEL"].as_u64().unwrap() > 0);
    assert!(v["frame_kinds"]["KIND_NATIVE"].as_u64().unwrap() > 0);
}

#[test]
fn losses_are_in_the_trace_where_perfetto_reports_them() {
    let (mut t, _) = workload(START, 2);
    t.losses.sched_events_by_cpu.insert(1, 17);
    t.losses.samples = 4;
    let dir = tempfile::tempdir().unwrap();
    let path = write(&t, dir.path(), "lossy.perfetto-trace");
    let v = perfetto_view(&path);
    // ftrace_stats START/END: Perfetto turns END - START into its data-loss stat.
    assert_eq!(v["dropped_events"]["START_OF_TRACE"]["1"], 0);
    assert_eq!(v["dropped_events"]["END_OF_TRACE"]["1"], 17);
    assert_eq!(v["kernel_records_lost"], 4);
}

#[test]
fn the_summary_of_the_file_is_the_summary_of_the_timeline() {
    let (t, _) = workload(START, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = write(&t, dir.path(), "summary.perfetto-trace");
    let (back, stats) = read_trace_file(&path).expect("read back");
    assert_eq!(stats.unresolved + stats.ignored + stats.truncated_bytes, 0);
    let opts = SummaryOptions::default();
    let from_file = summarize(&back, &opts);
    assert_eq!(from_file, summarize(&t, &opts));
    assert_eq!(from_file.to_string(), summarize(&t, &opts).to_string());

    let missing = read_trace_file(&dir.path().join("absent")).unwrap_err();
    assert!(missing.to_string().contains("absent"), "{missing}");
}

/// Bytes per 1000 scheduler events and per 1000 CPU samples, printed for the record
/// (`--nocapture`); the bounds only catch a layout gone badly wrong.
#[test]
fn file_size_per_thousand_events_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    // Scheduling only: 16 threads on 4 CPUs, each switch-in preceded by a waking, half of
    // the switch-outs blocking with a stack (one of 64 sites).
    let mut s = Scenario::new(START);
    for i in 0..16 {
        s.thread(200 + i, &format!("tokio-rt-w-{i}"));
    }
    let sites: Vec<_> = (0..64)
        .map(|i| {
            let names: Vec<String> = (0..20)
                .map(|d| format!("app::module{d}::fn{i}_{d}"))
                .collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            s.stack(&refs)
        })
        .collect();
    let n: u64 = 50_000;
    for k in 0..n {
        let tid = 200 + (k % 16) as u32;
        let cpu = (k % 4) as u32;
        let ts = START + k * 20_000;
        s.wake(ts, (cpu + 1) % 4, 0, tid, cpu);
        let (state, stack) = if k % 2 == 0 {
            (TaskState::Sleeping, Some(sites[(k % 64) as usize]))
        } else {
            (TaskState::Runnable, None)
        };
        s.switch(ts + 5_000, cpu, tid, state, stack, 0);
    }
    let mut sched = s.finish(START + n * 20_000);
    let events = sched.events.len() as u64;
    let size = |t: &profiler::trace::Timeline, name: &str| {
        std::fs::metadata(write(t, dir.path(), name)).unwrap().len()
    };
    let sched_bytes = size(&sched, "sched.pftrace");
    for e in &mut sched.events {
        if let profiler::trace::SchedEvent::Switch(s) = e {
            s.prev_stack = None;
        }
    }
    let bare_bytes = size(&sched, "bare.pftrace");

    // Samples only: 20k samples over 300 stacks 15-30 frames deep.
    let mut s = Scenario::new(START);
    s.thread(300, "worker");
    let stacks: Vec<_> = (0..300)
        .map(|i| {
            let depth = 15 + i % 16;
            let names: Vec<String> = (0..depth)
                .map(|d| format!("app::layer{d}::f{}", i % 40 + d))
                .collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            s.stack(&refs)
        })
        .collect();
    let samples: u64 = 20_000;
    for k in 0..samples {
        s.sample(
            START + k * 10 * MS,
            (k % 4) as u32,
            300,
            stacks[(k * 7 % 300) as usize],
        );
    }
    let sampled = s.finish(START + samples * 10 * MS);
    let sample_bytes = size(&sampled, "samples.pftrace");

    let per_k_events = sched_bytes * 1000 / events;
    let per_k_bare = bare_bytes * 1000 / events;
    let per_k_samples = sample_bytes * 1000 / samples;
    eprintln!(
        "trace size: {sched_bytes} B for {events} sched events ({} switch-outs with a stack) = \
         {per_k_events} B per 1k events; without stacks {per_k_bare} B per 1k events; \
         {sample_bytes} B for {samples} samples over 300 stacks = {per_k_samples} B per 1k \
         samples",
        n / 2
    );
    assert!(
        per_k_events < 100_000,
        "{per_k_events} B per 1k sched events"
    );
    assert!(per_k_samples < 100_000, "{per_k_samples} B per 1k samples");
}
