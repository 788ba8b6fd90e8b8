//! The live half of `profiler trace`: drives a recording [`Session`] with the timeline
//! collector for a bounded window, turns its records into a [`Timeline`] as they arrive
//! (symbolizing each new stack while the process lives), and writes the Perfetto file.
//!
//! Bounds: the window is at most [`MAX_DURATION`]; the kernel's ring buffer is sized from the
//! window and the event rate (`record::timeline::ring_bytes`) and read every 100 ms; every
//! record it could not take is counted per CPU and written into the trace as lost.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use profiler_ebpf::stacks::NO_STACK;
use profiler_ebpf::timeline::{
    FLAG_PREEMPT, KIND_SAMPLE, KIND_SWITCH, KIND_WAKEUP_NEW, KIND_WAKING, NO_CPU, TimelineEvent,
};

use super::model::{
    Counter, CounterUnit, CpuSample, Losses, ProcessInfo, SchedEvent, StackId, Switch, Task,
    TaskState, ThreadInfo, Timeline, Waking,
};
use super::{TraceError, WriteStats, write_timeline};
use crate::record::kernel::ProgramCost;
use crate::record::timeline::{TimelineCollector, TimelineHandle};
use crate::record::{
    self, Collector, HeapCollector, HeapMode, HeapOptions, RecordError, Session, StopReason,
    TargetSpec, Wake,
};

/// The longest window: a trace is for seconds of detail (about 4 MB and 400k events a second
/// on the loaded search-server); `record --offcpu` covers minutes.
pub const MAX_DURATION: Duration = Duration::from_secs(60);
/// CPU samples per second per CPU when none is given: a timeline wants detail.
pub const DEFAULT_FREQUENCY: u64 = 999;
/// How often the ring buffer is read.
const READ_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub target: TargetSpec,
    pub duration: Duration,
    /// CPU samples per second per CPU.
    pub frequency: u64,
    pub output: PathBuf,
    /// Heap counters (allocation rate, live bytes) every 100 ms, through the heap collector:
    /// the heap-sampler's exact totals when the program links it, allocator uprobes otherwise.
    pub heap: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceRecordError {
    #[error("the duration must be longer than 0 (e.g. --duration 2s)")]
    ZeroDuration,
    #[error(
        "a trace window of {0:?} is too long: at most {max}s (for minutes, use `profiler record --offcpu`)",
        max = MAX_DURATION.as_secs()
    )]
    TooLong(Duration),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: crate::capture::CaptureError,
    },
}

impl TraceOptions {
    /// Everything that can fail before anything is loaded or launched.
    pub fn validate(&self) -> Result<(), TraceRecordError> {
        self.validate_window()?;
        record::check_output_path(&self.output)?;
        Ok(())
    }

    /// The checks of [`validate`](Self::validate) but the output path's.
    fn validate_window(&self) -> Result<(), TraceRecordError> {
        if self.duration.is_zero() {
            return Err(TraceRecordError::ZeroDuration);
        }
        if self.duration > MAX_DURATION {
            return Err(TraceRecordError::TooLong(self.duration));
        }
        record::check_frequency(self.frequency)?;
        match &self.target {
            TargetSpec::Pids { pids, .. } if pids.is_empty() => {
                return Err(RecordError::NothingToRecord.into());
            }
            TargetSpec::Command(argv) if argv.is_empty() => {
                return Err(RecordError::EmptyCommand.into());
            }
            _ => {}
        }
        Ok(record::check_privileges()?)
    }
}

/// A finished trace: the timeline (for the summary), what was written, and how it went.
pub struct Traced {
    pub timeline: Timeline,
    pub written: WriteStats,
    pub stop: StopReason,
    /// Lines for people: losses and counter invariants that do not hold.
    pub notes: Vec<String>,
    pub exit_code: Option<i32>,
}

/// Records a trace of the targets for `opts.duration` (or until they exit, or Ctrl-C) and
/// writes it to `opts.output`.
pub fn record_trace(opts: &TraceOptions) -> Result<Traced, TraceRecordError> {
    opts.validate()?;
    let interrupted = record::install_interrupt()?;
    let (traced, bytes) = trace_bytes(opts, &interrupted)?;
    crate::capture::write_atomic(&opts.output, &bytes).map_err(|source| {
        TraceRecordError::Write {
            path: opts.output.clone(),
            source,
        }
    })?;
    Ok(traced)
}

/// Records a trace like [`record_trace`] and returns the Perfetto file's bytes instead of
/// writing them (`opts.output` is not used): for `profiler serve`'s `/debug/pprof/trace`.
/// The window ends early when `interrupted` is set (Ctrl-C, or a client that went away).
pub fn trace_bytes(
    opts: &TraceOptions,
    interrupted: &AtomicBool,
) -> Result<(Traced, Vec<u8>), TraceRecordError> {
    opts.validate_window()?;
    let (collector, handle) = TimelineCollector::new(opts.frequency, opts.duration)?;
    let period = collector.period_ns();
    let launched = matches!(opts.target, TargetSpec::Command(_));
    let mut collectors: Vec<Box<dyn Collector>> = vec![Box::new(collector)];
    if opts.heap {
        // Counting is what the counters need: a sampling rate no program reaches keeps the
        // uprobe way from taking stacks (the heap-sampler samples at its own rate).
        collectors.push(Box::new(HeapCollector::new(HeapOptions {
            rate: 1 << 40,
            min_age: None,
            mode: HeapMode::Auto,
        })?));
    }
    let mut session = Session::start(&opts.target, collectors)?;
    warm_symbols(&mut session);
    let started = Instant::now();
    let mut builder = Builder::new(boot_ns(), period);
    for t in session.targets().initial() {
        builder.declare_process(t.pid());
    }
    let mut raw = Vec::new();
    let mut heap = HeapCounters::default();
    if opts.heap {
        heap.read(&mut session)?;
    }
    let mut last_read = Instant::now();
    let stop = loop {
        let remaining = opts.duration.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            break StopReason::Duration;
        }
        if session.wait(remaining.min(READ_EVERY))? == Wake::TargetsExited {
            break StopReason::TargetExited;
        }
        if interrupted.load(Ordering::Relaxed) {
            break StopReason::Interrupted;
        }
        if last_read.elapsed() >= READ_EVERY {
            last_read = Instant::now();
            if opts.heap {
                // First, so that the counters keep their pace while symbolizing runs long
                // (the first time it parses the program's debug info). The drain keeps the
                // heap collector's map sets turning; its samples are not used.
                session.drain()?;
                heap.read(&mut session)?;
            }
            handle.read_events(&mut raw)?;
            builder.add(&mut session, &handle, &mut raw)?;
        }
    };
    session.stop()?;
    let end_ns = boot_ns();
    // What the programs wrote before they were detached.
    handle.read_events(&mut raw)?;
    builder.add(&mut session, &handle, &mut raw)?;
    // Followed children (a launched command's), named from what the session kept of them.
    for (pid, p) in &session.targets().processes {
        if builder.declared.insert(*pid) {
            builder.t.processes.push(ProcessInfo {
                pid: *pid,
                ppid: p.parent.unwrap_or(0),
                name: p.name.clone(),
                cmdline: p
                    .command_line
                    .split(' ')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
            });
        }
    }
    let mut notes = Vec::new();
    let counters = session.counters()?;
    if let Some(c) = counters.get("timeline") {
        for (key, what) in [
            (
                "user_stack_map_full",
                "user stacks lost to a full stack map",
            ),
            (
                "kernel_stack_map_full",
                "kernel stacks lost to a full stack map",
            ),
            ("task_read_error", "task_struct reads that failed"),
        ] {
            if let Some(&n) = c.get(key).filter(|n| **n > 0) {
                notes.push(format!("timeline: {n} {what} ({key})"));
            }
        }
    }
    if builder.evicted > 0 {
        notes.push(format!(
            "timeline: {} stacks evicted from the kernel's map before they were read",
            builder.evicted
        ));
    }
    notes.extend(ProgramCost::total_line(
        &session.program_cost(),
        started.elapsed(),
    ));
    notes.extend(
        session
            .invariant_violations()?
            .into_iter()
            .map(|v| format!("BUG: {v}")),
    );
    let losses = handle.losses()?;
    let mut timeline = builder.finish(end_ns, launched, losses);
    timeline.counters = heap.into_counters();
    if opts.heap {
        notes.extend(
            session
                .collectors()
                .flat_map(|c| c.notes())
                .filter(|n| n.contains("pid") || n.contains("not hooked")),
        );
    }
    let mut bytes = Vec::new();
    let written = write_timeline(&timeline, &mut bytes)?;
    let mut targets = session.into_targets();
    let exit_code = targets.iter_mut().find(|t| t.is_launched()).and_then(|t| {
        if stop == StopReason::Interrupted {
            t.interrupt();
        }
        t.wait_exit_code()
    });
    let traced = Traced {
        timeline,
        written,
        stop,
        notes,
        exit_code,
    };
    Ok((traced, bytes))
}

/// The heap counter tracks, one point per read: rates between reads, live bytes at each read.
#[derive(Default)]
struct HeapCounters {
    last: Option<(u64, HeapTotals)>,
    allocs: Vec<(u64, f64)>,
    frees: Vec<(u64, f64)>,
    bytes: Vec<(u64, f64)>,
    live: Vec<(u64, f64)>,
}

/// What the heap collector counted so far.
#[derive(Clone, Copy)]
struct HeapTotals {
    allocs: u64,
    frees: u64,
    alloc_bytes: u64,
    /// Exact live bytes (heap-sampler only: uprobes do not know the size a free releases).
    live: Option<u64>,
}

impl HeapCounters {
    fn read(&mut self, session: &mut Session) -> Result<(), TraceRecordError> {
        let counters = session.counters()?;
        let Some(c) = counters.get("heap") else {
            return Ok(());
        };
        let get = |k: &str| c.get(k).copied();
        let now = boot_ns();
        let totals = match get("sampler_allocs") {
            // The program links heap-sampler: its exact totals since it started.
            Some(allocs) => HeapTotals {
                allocs,
                frees: get("sampler_frees").unwrap_or(0),
                alloc_bytes: get("sampler_alloc_bytes").unwrap_or(0),
                live: Some(
                    get("sampler_alloc_bytes")
                        .unwrap_or(0)
                        .saturating_sub(get("sampler_free_bytes").unwrap_or(0)),
                ),
            },
            None => HeapTotals {
                allocs: get("calls").unwrap_or(0),
                frees: get("frees")
                    .unwrap_or(0)
                    .saturating_sub(get("free_null").unwrap_or(0)),
                alloc_bytes: get("bytes").unwrap_or(0),
                live: None,
            },
        };
        if let Some(live) = totals.live {
            self.live.push((now, live as f64));
        }
        // A rate needs two readings of one source: the heap-sampler's totals replace the
        // collector's own counts once it has found the sampler's registry.
        if let Some((then, before)) = self.last
            && now > then
            && before.live.is_some() == totals.live.is_some()
        {
            let secs = (now - then) as f64 / 1e9;
            let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
            self.allocs.push((now, rate(before.allocs, totals.allocs)));
            self.frees.push((now, rate(before.frees, totals.frees)));
            self.bytes
                .push((now, rate(before.alloc_bytes, totals.alloc_bytes)));
        }
        self.last = Some((now, totals));
        Ok(())
    }

    fn into_counters(self) -> Vec<Counter> {
        [
            ("heap: allocations/s", CounterUnit::Count, self.allocs),
            ("heap: frees/s", CounterUnit::Count, self.frees),
            ("heap: allocated bytes/s", CounterUnit::Bytes, self.bytes),
            ("heap: live bytes", CounterUnit::Bytes, self.live),
        ]
        .into_iter()
        .filter(|(_, _, points)| !points.is_empty())
        .map(|(name, unit, points)| Counter {
            name: name.to_string(),
            unit,
            points,
        })
        .collect()
    }
}

/// Parses the targets' programs and libraries for symbols before the window opens: the first
/// symbolization of a large binary takes a good part of a second (its DWARF), which would
/// otherwise stall the first read of the ring buffer and run the window long.
fn warm_symbols(session: &mut Session) {
    let modules: Vec<(u32, Vec<u64>)> = session
        .targets()
        .processes
        .values()
        .map(|p| {
            let starts = p.maps.vmas().iter().filter(|v| v.file.is_some());
            (p.pid, starts.map(|v| v.start).collect())
        })
        .collect();
    let query: Vec<(u32, &[u64], &[u64])> = modules
        .iter()
        .map(|(pid, addrs)| (*pid, addrs.as_slice(), &[][..]))
        .collect();
    let _ = session.symbolize_stacks(&query);
}

/// CLOCK_BOOTTIME now, in ns: the clock of `bpf_ktime_get_boot_ns()`.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The timeline being filled from kernel records.
struct Builder {
    t: Timeline,
    /// (pid, user hash, kernel hash) → the interned stack (None: no frames were readable).
    stacks: HashMap<(u32, u64, u64), Option<StackId>>,
    empty: StackId,
    declared: std::collections::HashSet<u32>,
    /// Stacks the kernel's LRU map no longer held when read.
    evicted: u64,
}

impl Builder {
    fn new(start_ns: u64, sample_period_ns: u64) -> Self {
        let mut t = Timeline {
            start_ns,
            end_ns: start_ns,
            sample_period_ns,
            ..Timeline::default()
        };
        // Samples without any stack still count: they point at the empty stack.
        let empty = t.stacks.intern(Vec::new());
        Builder {
            t,
            stacks: HashMap::new(),
            empty,
            declared: Default::default(),
            evicted: 0,
        }
    }

    /// Names a process and its threads as they are now (while it lives).
    fn declare_process(&mut self, pid: u32) {
        if self.declared.contains(&pid) {
            return;
        }
        let read = |what: &str| std::fs::read(format!("/proc/{pid}/{what}")).ok();
        let comm = |raw: Vec<u8>| String::from_utf8_lossy(&raw).trim_end().to_string();
        let Some(name) = read("comm").map(comm) else {
            return;
        };
        self.declared.insert(pid);
        let cmdline = read("cmdline")
            .map(|raw| {
                raw.split(|&b| b == 0)
                    .filter(|p| !p.is_empty())
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let ppid = procfs::process::Process::new(pid as i32)
            .and_then(|p| p.stat())
            .map_or(0, |s| s.ppid.max(0) as u32);
        self.t.processes.push(ProcessInfo {
            pid,
            ppid,
            name,
            cmdline,
        });
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for tid in dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
            {
                if let Some(name) = read(&format!("task/{tid}/comm")).map(comm) {
                    self.t.threads.push(ThreadInfo { tid, pid, name });
                }
            }
        }
    }

    /// Turns `raw` records into events and samples (emptying it), symbolizing new stacks.
    fn add(
        &mut self,
        session: &mut Session,
        handle: &TimelineHandle,
        raw: &mut Vec<TimelineEvent>,
    ) -> Result<(), TraceRecordError> {
        self.resolve(session, handle, raw)?;
        for e in raw.drain(..) {
            match e.kind {
                KIND_SWITCH => {
                    let prev_stack = self.stack_of(&e);
                    self.t.events.push(SchedEvent::Switch(Switch {
                        ts: e.ts,
                        cpu: e.cpu,
                        prev: task(e.a_tid, e.a_pid, &e.a_comm, e.a_prio),
                        prev_state: TaskState::from_kernel(e.flags & FLAG_PREEMPT != 0, e.state),
                        next: task(e.b_tid, e.b_pid, &e.b_comm, e.b_prio),
                        prev_stack,
                    }));
                }
                KIND_WAKING | KIND_WAKEUP_NEW => {
                    self.t.events.push(SchedEvent::Waking(Waking {
                        ts: e.ts,
                        cpu: e.cpu,
                        waker_tid: e.a_tid,
                        waker_pid: e.a_pid,
                        wakee: task(e.b_tid, e.b_pid, &e.b_comm, e.b_prio),
                        target_cpu: if e.state == NO_CPU { e.cpu } else { e.state },
                    }));
                }
                KIND_SAMPLE => {
                    let stack = self.stack_of(&e).unwrap_or(self.empty);
                    self.t.samples.push(CpuSample {
                        ts: e.ts,
                        cpu: e.cpu,
                        pid: e.a_pid,
                        tid: e.a_tid,
                        stack,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn stack_of(&self, e: &TimelineEvent) -> Option<StackId> {
        if e.user_stack == NO_STACK && e.kernel_stack == NO_STACK {
            return None;
        }
        self.stacks
            .get(&(e.a_pid, e.user_stack, e.kernel_stack))
            .copied()
            .flatten()
    }

    /// Reads and symbolizes the stacks of `raw` not seen before, all in one go.
    fn resolve(
        &mut self,
        session: &mut Session,
        handle: &TimelineHandle,
        raw: &[TimelineEvent],
    ) -> Result<(), TraceRecordError> {
        let mut ips: HashMap<u64, Option<Vec<u64>>> = HashMap::new();
        let mut new = Vec::new();
        for e in raw {
            let key = (e.a_pid, e.user_stack, e.kernel_stack);
            if (e.user_stack == NO_STACK && e.kernel_stack == NO_STACK)
                || self.stacks.contains_key(&key)
                || new.contains(&key)
            {
                continue;
            }
            for h in [e.user_stack, e.kernel_stack] {
                if h != NO_STACK && !ips.contains_key(&h) {
                    let frames = handle.stack(h)?;
                    if frames.is_none() {
                        self.evicted += 1;
                    }
                    ips.insert(h, frames);
                }
            }
            new.push(key);
        }
        if new.is_empty() {
            return Ok(());
        }
        let frames_of = |h: u64| ips.get(&h).and_then(|f| f.as_deref()).unwrap_or(&[]);
        let query: Vec<(u32, &[u64], &[u64])> = new
            .iter()
            .map(|&(pid, u, k)| (pid, frames_of(u), frames_of(k)))
            .collect();
        let frames = session.symbolize_stacks(&query);
        for (key, frames) in new.into_iter().zip(frames) {
            let id = (!frames.is_empty()).then(|| self.t.stacks.intern(frames));
            self.stacks.insert(key, id);
        }
        Ok(())
    }

    fn finish(
        mut self,
        end_ns: u64,
        launched: bool,
        losses: crate::record::timeline::KernelLosses,
    ) -> Timeline {
        // Records come from all CPUs through one buffer: nearly, not exactly, in time order.
        self.t.events.sort_by_key(SchedEvent::ts);
        self.t.samples.sort_by_key(|s| s.ts);
        let first = self.t.events.first().map(SchedEvent::ts);
        if launched && let Some(first) = first {
            // A launched command ran from its exec, just before the window was opened.
            self.t.start_ns = self.t.start_ns.min(first);
        } else {
            // A running process's events from before the window (the programs attach a few
            // ms before it opens) would read as threads running since the window start.
            let start = self.t.start_ns;
            self.t.events.retain(|e| e.ts() >= start);
            self.t.samples.retain(|s| s.ts >= start);
        }
        let last = self.t.events.last().map_or(0, SchedEvent::ts);
        self.t.end_ns = end_ns.max(last).max(self.t.start_ns);
        self.t.losses = Losses {
            sched_events_by_cpu: losses.sched_by_cpu.into_iter().collect(),
            samples: losses.samples,
        };
        self.t
    }
}

fn task(tid: u32, pid: u32, comm: &[u8; 16], prio: i32) -> Task {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    Task {
        tid,
        pid,
        comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
        prio,
    }
}
