//! `profiler watch`: Go's `GODEBUG=schedtrace=1000,gctrace=1` for any process, from the
//! outside. Every interval it prints a `SCHED` line (CPUs, threads, CPU time, threads running
//! and runnable on average, run-queue latency quantiles, switches, migrations) and an `ALLOC`
//! line (allocation rates and the live heap when the target links the heap sampler; memory and
//! page faults always), and with `--detail` a line per thread (the scheddetail analog).
//!
//! Sources, by cost: counts of events come from the scheduler collector's tracepoint programs
//! (`record::sched`), time integrals and states from the kernel's own accounting in `/proc`
//! (`snapshot`), allocation counters from the sampler's registry in the target's memory. No
//! uprobe runs unless asked (`alloc_probes`): a uprobe per malloc costs the target far more
//! than it measures; asked, the heap collector's allocator uprobes count every call.
//!
//! The loop drives a [`Session`]; [`interval`] turns two snapshots into the figures, pure.

pub mod interval;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::record::kernel::ProgramCost;
use crate::record::sched::{SchedCollector, SchedHandle};
use crate::record::{
    self, Collector, HeapCollector, HeapMode, HeapOptions, RecordError, Session, TargetSpec, Wake,
};
pub use interval::{AllocSource, End, Interval};
use snapshot::{HeapCounters, ProbeCounts, ProcessStats, Snapshot, read_threads};

/// How often the loop looks at Ctrl-C and lifecycle events between two lines.
const TICK: Duration = Duration::from_millis(100);
/// The heap collector's sampling rate with `--alloc-probes`: 1 TiB between samples, so it only
/// counts (watch shows rates, not stacks).
const COUNT_ONLY_RATE: u64 = 1 << 40;
/// A last interval shorter than this (the target exited right after a line) is not printed.
const SHORTEST_LAST: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// One pid, or a command to launch.
    pub target: TargetSpec,
    pub interval: Duration,
    /// A line per thread, and the frames threads block in.
    pub detail: bool,
    /// Stop after this many intervals.
    pub count: Option<u64>,
    /// Count allocations with uprobes on the allocator's functions (every call traps).
    pub alloc_probes: bool,
}

impl WatchOptions {
    pub fn validate(&self) -> Result<(), WatchError> {
        if self.interval < Duration::from_millis(10) {
            return Err(WatchError::Interval(self.interval));
        }
        if self.count == Some(0) {
            return Err(WatchError::Count);
        }
        match &self.target {
            TargetSpec::Pids { pids, .. } if pids.len() != 1 => Err(WatchError::OnePid),
            TargetSpec::Command(argv) if argv.is_empty() => Err(RecordError::EmptyCommand.into()),
            TargetSpec::All => Err(WatchError::OnePid),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("the interval must be at least 10ms, got {0:?}")]
    Interval(Duration),
    #[error("--count must be at least 1")]
    Count,
    #[error("watch follows one process: give one --pid, or a command after `--`")]
    OnePid,
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("writing a line: {0}")]
    Output(#[source] std::io::Error),
}

/// What the watch hands its caller as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// An interval ended (data, for stdout).
    Interval(&'a Interval),
    /// A line for people about the watch itself (where figures come from, what is missing).
    Note(&'a str),
}

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Count,
    Exited,
    Interrupted,
}

/// The end of a watch: why, and the launched command's exit code.
pub struct Watched {
    pub stop: Stop,
    pub pid: u32,
    pub exit_code: Option<i32>,
}

/// Watches until `--count` intervals, the target's exit or Ctrl-C, handing each interval to
/// `emit` as it ends (and a last, shorter one when the target exits or on Ctrl-C), and notes:
/// where allocation figures come from at the start, losses and broken counter invariants at
/// the end.
pub fn watch(
    opts: &WatchOptions,
    mut emit: impl FnMut(Output<'_>) -> std::io::Result<()>,
) -> Result<Watched, WatchError> {
    opts.validate()?;
    record::check_privileges()?;
    let (collector, handle) = SchedCollector::new(opts.detail);
    let mut collectors: Vec<Box<dyn Collector>> = vec![Box::new(collector)];
    if opts.alloc_probes {
        // Counting only: a sampling rate no program reaches, so no stack is ever taken.
        collectors.push(Box::new(HeapCollector::new(HeapOptions {
            rate: COUNT_ONLY_RATE,
            min_age: None,
            mode: HeapMode::Uprobes,
        })?));
    }
    let mut session = Session::start(&opts.target, collectors)?;
    let interrupted = record::install_interrupt()?;
    let pid = session.targets().initial()[0].pid();
    let mut notes = Vec::new();
    let heap = match HeapCounters::find(pid) {
        _ if opts.alloc_probes => None,
        Ok(h) => h,
        Err(e) => {
            notes.push(format!("ALLOC: cannot look for the heap sampler: {e}"));
            None
        }
    };
    if opts.alloc_probes {
        let hooked = session.collectors().flat_map(|c| c.notes());
        notes.extend(
            hooked
                .filter(|n| n.contains("pid") || n.contains("not hooked"))
                .map(|n| format!("ALLOC: --alloc-probes: {n}")),
        );
    } else if heap.is_none() {
        notes.push(format!(
            "ALLOC: pid {pid} does not link heap-sampler: memory and page faults only (install \
             heap_sampler::Sampler as its global allocator for allocation counts, or count \
             with --alloc-probes at a uprobe's cost per call)"
        ));
    }
    for n in notes.drain(..) {
        emit(Output::Note(&n)).map_err(WatchError::Output)?;
    }
    let mut heap_failed = false;
    let mut read_heap = |notes: &mut Vec<String>| match heap.map(|h| h.read()) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) if !heap_failed => {
            heap_failed = true;
            notes.push(format!("ALLOC: reading the heap sampler's counters: {e}"));
            None
        }
        _ => None,
    };

    let probes = opts.alloc_probes;
    let mut read = |session: &mut Session, notes: &mut Vec<String>| {
        read(session, &handle, pid, probes, &mut read_heap, notes)
    };
    let mut prev = read(&mut session, &mut notes)?;
    // Intervals run from the first reading (which can take a while: it reads the maps of
    // the target and, with --alloc-probes, hooks its allocator), on a fixed schedule; a tick
    // missed while a reading ran long is skipped, never squeezed into a short interval.
    let started = prev.at.unwrap_or_else(Instant::now);
    let mut due = started + opts.interval;
    let mut waits = Waits::default();
    let mut lines = 0u64;
    let stop = loop {
        let end = loop {
            let now = Instant::now();
            if now >= due {
                break None;
            }
            if session.wait((due - now).min(TICK))? == Wake::TargetsExited {
                break Some(End::Exited);
            }
            if interrupted.load(Ordering::Relaxed) {
                break Some(End::Interrupted);
            }
        };
        let cur = read(&mut session, &mut notes)?;
        let span = match (prev.at, cur.at) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        if end.is_none() || span >= SHORTEST_LAST {
            if opts.detail {
                waits.resolve(&mut session, pid, &cur);
            }
            let ctx = interval::Context {
                pid,
                elapsed: cur.at.unwrap_or(started).saturating_duration_since(started),
                end,
                detail: opts.detail,
                waits: &waits.by_tid,
            };
            emit(Output::Interval(&Interval::between(&prev, &cur, &ctx)))
                .map_err(WatchError::Output)?;
        }
        for n in notes.drain(..) {
            emit(Output::Note(&n)).map_err(WatchError::Output)?;
        }
        lines += 1;
        prev = cur;
        due += opts.interval;
        while due <= Instant::now() {
            due += opts.interval;
        }
        match end {
            Some(End::Exited) => break Stop::Exited,
            Some(End::Interrupted) => break Stop::Interrupted,
            None if Some(lines) == opts.count => break Stop::Count,
            None => {}
        }
    };
    session.stop()?;
    let cost = ProgramCost::total_line(&session.program_cost(), started.elapsed());
    for n in losses(&session)?.into_iter().chain(cost) {
        emit(Output::Note(&n)).map_err(WatchError::Output)?;
    }
    let mut targets = session.into_targets();
    // As `record` does: a launched command runs on after --count, and gets the Ctrl-C.
    let exit_code = targets.iter_mut().find(|t| t.is_launched()).and_then(|t| {
        if stop == Stop::Interrupted {
            t.interrupt();
        }
        t.wait_exit_code()
    });
    Ok(Watched {
        stop,
        pid,
        exit_code,
    })
}

/// Drains the collector and reads `/proc` and the heap counters, as close together as can be.
fn read(
    session: &mut Session,
    handle: &SchedHandle,
    pid: u32,
    probes: bool,
    read_heap: &mut impl FnMut(&mut Vec<String>) -> Option<heap_sampler::Totals>,
    notes: &mut Vec<String>,
) -> Result<Snapshot, WatchError> {
    session.drain()?;
    let sched = handle.take().unwrap_or_default();
    let at = Instant::now();
    let probes = if probes {
        session.counters()?.get("heap").map(|c| {
            let get = |k: &str| c.get(k).copied().unwrap_or(0);
            ProbeCounts {
                allocs: get("calls"),
                alloc_bytes: get("bytes"),
                frees: get("frees").saturating_sub(get("free_null")),
            }
        })
    } else {
        None
    };
    Ok(Snapshot {
        at: Some(at),
        process: ProcessStats::read(pid),
        threads: read_threads(pid),
        sched,
        heap: read_heap(notes),
        probes,
    })
}

/// What the kernel could not keep, and counter invariants that do not hold.
fn losses(session: &Session) -> Result<Vec<String>, WatchError> {
    let mut out = Vec::new();
    let counters = session.counters()?;
    if let Some(c) = counters.get("sched") {
        for (key, what) in [
            (
                "threads_full",
                "switches missing from the per-thread counts",
            ),
            (
                "latency_merged",
                "runs whose waits the histogram missed (their switch-outs were not seen)",
            ),
            ("task_read_error", "task_struct reads that failed"),
        ] {
            if let Some(&n) = c.get(key).filter(|n| **n > 0) {
                out.push(format!("sched: {n} {what} ({key})"));
            }
        }
    }
    out.extend(
        session
            .invariant_violations()?
            .into_iter()
            .map(|v| format!("BUG: {v}")),
    );
    Ok(out)
}

/// The frames threads last blocked in, symbolized once per distinct stack.
#[derive(Default)]
struct Waits {
    names: HashMap<Vec<u64>, Vec<String>>,
    by_tid: HashMap<u32, Vec<String>>,
}

impl Waits {
    fn resolve(&mut self, session: &mut Session, pid: u32, snap: &Snapshot) {
        let new: Vec<Vec<u64>> = snap
            .sched
            .threads
            .values()
            .filter(|t| t.pid == pid && !t.wait_ips.is_empty())
            .map(|t| t.wait_ips.clone())
            .filter(|ips| !self.names.contains_key(ips))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !new.is_empty() {
            let stacks: Vec<(u32, &[u64], &[u64])> = new
                .iter()
                .map(|ips| (pid, ips.as_slice(), &[][..]))
                .collect();
            let frames = session.symbolize_stacks(&stacks);
            for (ips, frames) in new.iter().zip(frames) {
                let names = frames.into_iter().map(|f| f.function).collect();
                self.names.insert(ips.clone(), names);
            }
        }
        self.by_tid = snap
            .sched
            .threads
            .iter()
            .filter_map(|(tid, t)| Some((*tid, self.names.get(&t.wait_ips)?.clone())))
            .collect();
    }
}
