//! The tables `go tool trace` shows, for native threads: per thread the time running, runnable
//! (waiting for a CPU) and blocked by state; the scheduler-latency histogram; the blocking
//! sites with the most blocked time; the longest single blocks, with their stacks and wakers.
//!
//! One small state machine per thread ([`Machine`]) walks the scheduler events:
//! `Running --switch-out R--> Runnable`, `Running --switch-out S/D/..--> Blocked`,
//! `Blocked --waking--> Runnable`, `Runnable --switch-in--> Running`. Time is charged to the
//! state being left. What the events cannot tell is decided once and counted in [`Health`]:
//! a thread whose first event is a switch-out was on the CPU since the window start; a thread
//! that runs again with no wake-up seen (a lost event) was blocked until then; a thread still
//! blocked or runnable at the end is charged up to the end.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use super::model::{
    Counter, CounterUnit, Frame, SchedEvent, StackId, StackTable, Switch, Task, TaskState,
    Timeline, Waking,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryOptions {
    /// Rows in the blocking-sites table.
    pub top_sites: usize,
    /// Rows in the longest-blocks table.
    pub longest_blocks: usize,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        SummaryOptions {
            top_sites: 10,
            longest_blocks: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub start_ns: u64,
    pub end_ns: u64,
    pub duration_ns: u64,
    pub processes: Vec<ProcessRef>,
    pub sched_events: u64,
    pub cpu_samples: u64,
    pub sample_period_ns: u64,
    /// Threads of the traced processes, most running time first.
    pub threads: Vec<ThreadSummary>,
    /// Runnable-to-running waits of all threads (after a wake-up or a preemption).
    pub latency: LatencySummary,
    pub blocking_sites: Vec<BlockingSite>,
    pub longest_blocks: Vec<Block>,
    /// Counter tracks (`--heap`): their range over the window.
    pub counters: Vec<CounterSummary>,
    pub health: Health,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterSummary {
    pub name: String,
    pub unit: CounterUnit,
    pub values: u64,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub last: f64,
}

impl CounterSummary {
    fn of(c: &Counter) -> Option<Self> {
        let values: Vec<f64> = c.points.iter().map(|p| p.1).collect();
        let last = *values.last()?;
        Some(CounterSummary {
            name: c.name.clone(),
            unit: c.unit,
            values: values.len() as u64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            mean: values.iter().sum::<f64>() / values.len() as f64,
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            last,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessRef {
    pub pid: u32,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadSummary {
    pub tid: u32,
    pub pid: u32,
    pub name: String,
    pub running_ns: u64,
    /// Waiting for a CPU: scheduler latency.
    pub runnable_ns: u64,
    /// Blocked in interruptible sleep (S).
    pub sleeping_ns: u64,
    /// Blocked in uninterruptible sleep (D).
    pub uninterruptible_ns: u64,
    /// Blocked otherwise (stopped, traced, parked).
    pub other_blocked_ns: u64,
    /// Times the thread got a CPU.
    pub switches_in: u64,
    /// Times it left the CPU still runnable.
    pub preemptions: u64,
    /// Wake-ups it received.
    pub wakeups: u64,
    pub latency_p99_ns: Option<u64>,
    pub latency_max_ns: Option<u64>,
    pub cpu_samples: u64,
    /// State at the end of the window: running, runnable, S, D, T, exited, or unknown.
    pub end_state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub total_ns: u64,
    /// Quantiles are the top of their bucket (at most 1/8 above the true value), capped at
    /// the maximum, which is exact.
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub max_ns: Option<u64>,
    /// Non-empty buckets, `[lower_ns, upper_ns)`.
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub lower_ns: u64,
    pub upper_ns: u64,
    pub count: u64,
}

/// Blocked time that started at one stack (the thread's stack at switch-out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockingSite {
    /// The stack at switch-out, leaf first; empty when none was captured.
    pub frames: Vec<Frame>,
    pub total_ns: u64,
    pub count: u64,
    pub max_ns: u64,
    pub sleeping_ns: u64,
    pub uninterruptible_ns: u64,
    pub other_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    pub tid: u32,
    pub pid: u32,
    pub thread: String,
    pub state: TaskState,
    /// When it blocked (ns, BOOTTIME) and how long after the window start.
    pub start_ns: u64,
    pub offset_ns: u64,
    pub duration_ns: u64,
    /// False when the thread was still blocked at the end of the window.
    pub ended: bool,
    /// Who woke it; None when it ran again without a wake-up seen, or never woke.
    pub waker: Option<TaskRef>,
    pub frames: Vec<Frame>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRef {
    pub tid: u32,
    pub pid: u32,
    pub name: String,
}

/// What the events could not tell directly, and what was lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    pub lost_sched_events: u64,
    pub lost_samples: u64,
    /// Threads whose first event was a switch-out: counted as running since the window start.
    pub running_from_start: u64,
    /// Blocked threads that ran again with no wake-up seen (lost events, or woken by a path
    /// the recorder does not trace): blocked until the switch-in, no scheduler latency.
    pub switch_in_without_wakeup: u64,
    /// Switch-outs of a thread not known to be running, or switch-ins of one already running:
    /// events were lost in between.
    pub inconsistent_switches: u64,
    /// Blocking switch-outs (S, D, ...) that carried no stack.
    pub blocks_without_stack: u64,
    /// A tid seen again under another process (pid reuse without the exit seen).
    pub tid_reused: u64,
    /// Blocking switch-outs that a wake-up just before had already cancelled (the waker ran
    /// while the thread was on its way off the CPU): counted runnable from the switch-out.
    pub woken_before_switch_out: u64,
}

/// Computes the summary of `t`.
pub fn summarize(t: &Timeline, opts: &SummaryOptions) -> Summary {
    let mut m = Machine::new(t.start_ns, &t.processes.iter().map(|p| p.pid).collect());
    for e in canonical_order(&t.events) {
        m.event(e);
    }
    m.finish(t.end_ns);
    m.into_summary(t, opts)
}

/// Events by (timestamp, CPU), keeping the order of one CPU's events at one timestamp. A
/// trace file stores events per CPU, so this is the one order both the recorder's timeline
/// and a timeline read back from a file have.
fn canonical_order(events: &[SchedEvent]) -> Vec<&SchedEvent> {
    let mut v: Vec<&SchedEvent> = events.iter().collect();
    v.sort_by_key(|e| (e.ts(), e.cpu()));
    v
}

/// A wake-up at most this long before a blocking switch-out is the one that ends that block:
/// the kernel traces the waker's `sched_waking` while the wakee, already past its last look
/// at its state, is still switching out. Measured on the loaded search-server: every such
/// wake-up came within 20 us, nearly all within 1 us.
const WOKEN_DURING_SWITCH_NS: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No event seen yet.
    Unknown,
    Running {
        since: u64,
        /// A wake-up that came while it was still on the CPU: (when, waker).
        woken: Option<(u64, (u32, u32))>,
    },
    Runnable {
        since: u64,
    },
    Blocked {
        since: u64,
        state: TaskState,
        stack: Option<StackId>,
        waker: Option<(u32, u32)>,
    },
    Exited,
}

#[derive(Debug, Clone)]
struct ThreadAcc {
    tid: u32,
    pid: u32,
    state: State,
    running_ns: u64,
    runnable_ns: u64,
    sleeping_ns: u64,
    uninterruptible_ns: u64,
    other_blocked_ns: u64,
    switches_in: u64,
    preemptions: u64,
    wakeups: u64,
    latency: LatencyHistogram,
}

#[derive(Debug, Clone, Default)]
struct SiteAcc {
    total_ns: u64,
    count: u64,
    max_ns: u64,
    by_state: [u64; 3],
    /// When its first block began: orders ties the same way for any stack numbering.
    first_ns: u64,
}

/// A finished (or still open) block, before names are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockRec {
    thread: usize,
    state: TaskState,
    start_ns: u64,
    duration_ns: u64,
    ended: bool,
    waker: Option<(u32, u32)>,
    stack: Option<StackId>,
}

/// The per-thread state machines and what they accumulate.
struct Machine {
    start_ns: u64,
    /// Pids whose threads are summarized; empty = every task but the idle task.
    targets: HashSet<u32>,
    threads: Vec<ThreadAcc>,
    /// The live record of each tid (a tid that exits and comes back gets a new record).
    current: HashMap<u32, usize>,
    latency: LatencyHistogram,
    sites: HashMap<Option<StackId>, SiteAcc>,
    blocks: Vec<BlockRec>,
    /// The newest comm each (tid, pid) had in an event, for naming.
    comms: HashMap<(u32, u32), String>,
    health: Health,
    sched_events: u64,
}

impl Machine {
    fn new(start_ns: u64, targets: &HashSet<u32>) -> Self {
        Machine {
            start_ns,
            targets: targets.clone(),
            threads: Vec::new(),
            current: HashMap::new(),
            latency: LatencyHistogram::default(),
            sites: HashMap::new(),
            blocks: Vec::new(),
            comms: HashMap::new(),
            health: Health::default(),
            sched_events: 0,
        }
    }

    fn event(&mut self, e: &SchedEvent) {
        self.sched_events += 1;
        match e {
            SchedEvent::Switch(s) => self.switch(s),
            SchedEvent::Waking(w) => self.waking(w),
        }
    }

    /// The record for `task`, if it is one we summarize.
    fn slot(&mut self, task: &Task, ts: u64) -> Option<usize> {
        if !task.comm.is_empty() {
            self.comms.insert((task.tid, task.pid), task.comm.clone());
        }
        if let Some(&i) = self.current.get(&task.tid) {
            if self.threads[i].pid == task.pid {
                return Some(i);
            }
            // Same tid, another process: the old thread ended unseen.
            self.health.tid_reused += 1;
            self.close(i, ts, None);
            self.threads[i].state = State::Exited;
            self.current.remove(&task.tid);
        }
        if task.tid == 0 || (!self.targets.is_empty() && !self.targets.contains(&task.pid)) {
            return None;
        }
        let i = self.threads.len();
        self.threads.push(ThreadAcc {
            tid: task.tid,
            pid: task.pid,
            state: State::Unknown,
            running_ns: 0,
            runnable_ns: 0,
            sleeping_ns: 0,
            uninterruptible_ns: 0,
            other_blocked_ns: 0,
            switches_in: 0,
            preemptions: 0,
            wakeups: 0,
            latency: LatencyHistogram::default(),
        });
        self.current.insert(task.tid, i);
        Some(i)
    }

    fn switch(&mut self, s: &Switch) {
        if let Some(i) = self.slot(&s.prev, s.ts) {
            self.switch_out(i, s);
        }
        if let Some(i) = self.slot(&s.next, s.ts) {
            self.switch_in(i, s.ts);
        }
    }

    fn switch_out(&mut self, i: usize, s: &Switch) {
        let th = &mut self.threads[i];
        match th.state {
            State::Running { since, .. } => th.running_ns += s.ts.saturating_sub(since),
            State::Unknown => {
                self.health.running_from_start += 1;
                th.running_ns += s.ts.saturating_sub(self.start_ns);
            }
            State::Runnable { .. } | State::Blocked { .. } | State::Exited => {
                // The switch-in was lost: the time since is charged to the old state.
                self.health.inconsistent_switches += 1;
                self.close(i, s.ts, None);
            }
        }
        let woken = match self.threads[i].state {
            State::Running { woken, .. } => woken,
            _ => None,
        };
        let th = &mut self.threads[i];
        th.state = match s.prev_state {
            // Woken while it was switching out (the waker ran between the thread's decision to
            // sleep and its switch-out): it never slept, and waits for a CPU from here.
            TaskState::Sleeping | TaskState::Uninterruptible | TaskState::Other(_)
                if woken
                    .is_some_and(|(at, _)| s.ts.saturating_sub(at) <= WOKEN_DURING_SWITCH_NS) =>
            {
                self.health.woken_before_switch_out += 1;
                th.wakeups += 1;
                State::Runnable { since: s.ts }
            }
            TaskState::Runnable => {
                th.preemptions += 1;
                State::Runnable { since: s.ts }
            }
            TaskState::Dead => {
                self.current.remove(&th.tid);
                State::Exited
            }
            state => {
                if s.prev_stack.is_none() {
                    self.health.blocks_without_stack += 1;
                }
                State::Blocked {
                    since: s.ts,
                    state,
                    stack: s.prev_stack,
                    waker: None,
                }
            }
        };
    }

    fn switch_in(&mut self, i: usize, ts: u64) {
        let th = &mut self.threads[i];
        match th.state {
            State::Runnable { since } => {
                let wait = ts.saturating_sub(since);
                th.runnable_ns += wait;
                th.latency.record(wait);
                self.latency.record(wait);
            }
            State::Blocked { .. } => {
                self.health.switch_in_without_wakeup += 1;
                self.close(i, ts, None);
            }
            State::Running { .. } => {
                self.health.inconsistent_switches += 1;
                self.close(i, ts, None);
            }
            State::Unknown | State::Exited => {}
        }
        let th = &mut self.threads[i];
        th.switches_in += 1;
        th.state = State::Running {
            since: ts,
            woken: None,
        };
    }

    fn waking(&mut self, w: &Waking) {
        let Some(i) = self.slot(&w.wakee, w.ts) else {
            return;
        };
        let th = &mut self.threads[i];
        match th.state {
            State::Blocked { .. } => {
                th.wakeups += 1;
                self.close(i, w.ts, Some((w.waker_tid, w.waker_pid)));
                self.threads[i].state = State::Runnable { since: w.ts };
            }
            State::Unknown | State::Exited => {
                th.wakeups += 1;
                th.state = State::Runnable { since: w.ts };
            }
            // Woken while still on the CPU: remembered, in case it is on its way out (see
            // `switch_out`); otherwise nothing changes.
            State::Running { ref mut woken, .. } => {
                *woken = Some((w.ts, (w.waker_tid, w.waker_pid)));
            }
            // Already queued: nothing changes.
            State::Runnable { .. } => {}
        }
    }

    /// Ends thread `i`'s current interval at `ts`, charging it to that state.
    fn close(&mut self, i: usize, ts: u64, waker: Option<(u32, u32)>) {
        let th = &mut self.threads[i];
        match th.state {
            State::Running { since, .. } => th.running_ns += ts.saturating_sub(since),
            State::Runnable { since } => th.runnable_ns += ts.saturating_sub(since),
            State::Blocked {
                since,
                state,
                stack,
                ..
            } => {
                let d = ts.saturating_sub(since);
                let slot = match state {
                    TaskState::Sleeping => {
                        th.sleeping_ns += d;
                        0
                    }
                    TaskState::Uninterruptible => {
                        th.uninterruptible_ns += d;
                        1
                    }
                    _ => {
                        th.other_blocked_ns += d;
                        2
                    }
                };
                let site = self.sites.entry(stack).or_insert_with(|| SiteAcc {
                    first_ns: since,
                    ..SiteAcc::default()
                });
                site.total_ns += d;
                site.count += 1;
                site.max_ns = site.max_ns.max(d);
                site.by_state[slot] += d;
                self.blocks.push(BlockRec {
                    thread: i,
                    state,
                    start_ns: since,
                    duration_ns: d,
                    ended: true,
                    waker,
                    stack,
                });
            }
            State::Unknown | State::Exited => {}
        }
    }

    /// Charges every open interval up to the window end.
    fn finish(&mut self, end_ns: u64) {
        for i in 0..self.threads.len() {
            let open = matches!(self.threads[i].state, State::Blocked { .. });
            self.close(i, end_ns, None);
            if open && let Some(b) = self.blocks.last_mut() {
                b.ended = false;
            }
        }
    }

    fn into_summary(self, t: &Timeline, opts: &SummaryOptions) -> Summary {
        let names = Names::new(t, &self.comms);
        let stacks = &t.stacks;
        let mut samples: HashMap<(u32, u32), u64> = HashMap::new();
        for s in &t.samples {
            *samples.entry((s.tid, s.pid)).or_default() += 1;
        }
        // Samples go to the newest record of their (tid, pid).
        let mut newest: HashMap<(u32, u32), usize> = HashMap::new();
        for (i, th) in self.threads.iter().enumerate() {
            newest.insert((th.tid, th.pid), i);
        }
        let mut threads: Vec<ThreadSummary> = self
            .threads
            .iter()
            .enumerate()
            .map(|(i, th)| {
                let cpu_samples = if newest.get(&(th.tid, th.pid)) == Some(&i) {
                    samples.get(&(th.tid, th.pid)).copied().unwrap_or(0)
                } else {
                    0
                };
                ThreadSummary {
                    tid: th.tid,
                    pid: th.pid,
                    name: names.thread(th.tid, th.pid),
                    running_ns: th.running_ns,
                    runnable_ns: th.runnable_ns,
                    sleeping_ns: th.sleeping_ns,
                    uninterruptible_ns: th.uninterruptible_ns,
                    other_blocked_ns: th.other_blocked_ns,
                    switches_in: th.switches_in,
                    preemptions: th.preemptions,
                    wakeups: th.wakeups,
                    latency_p99_ns: th.latency.quantile(0.99),
                    latency_max_ns: th.latency.max(),
                    cpu_samples,
                    end_state: end_state(th.state),
                }
            })
            .collect();
        threads.sort_by_key(|th| (Reverse(th.running_ns), th.tid, th.pid));

        let mut sites: Vec<(Option<StackId>, SiteAcc)> = self.sites.into_iter().collect();
        sites.sort_by_key(|(_, s)| (Reverse(s.total_ns), s.first_ns));
        let blocking_sites = sites
            .into_iter()
            .take(opts.top_sites)
            .map(|(stack, s)| BlockingSite {
                frames: frames_of(stacks, stack),
                total_ns: s.total_ns,
                count: s.count,
                max_ns: s.max_ns,
                sleeping_ns: s.by_state[0],
                uninterruptible_ns: s.by_state[1],
                other_ns: s.by_state[2],
            })
            .collect();

        let mut blocks = self.blocks;
        let acc = &self.threads;
        blocks.sort_by_key(|b| (Reverse(b.duration_ns), b.start_ns, acc[b.thread].tid));
        let longest_blocks = blocks
            .into_iter()
            .take(opts.longest_blocks)
            .map(|b| {
                let th = &acc[b.thread];
                Block {
                    tid: th.tid,
                    pid: th.pid,
                    thread: names.thread(th.tid, th.pid),
                    state: b.state,
                    start_ns: b.start_ns,
                    offset_ns: b.start_ns.saturating_sub(t.start_ns),
                    duration_ns: b.duration_ns,
                    ended: b.ended,
                    waker: b.waker.map(|(tid, pid)| TaskRef {
                        tid,
                        pid,
                        name: names.thread(tid, pid),
                    }),
                    frames: frames_of(stacks, b.stack),
                }
            })
            .collect();

        let mut health = self.health;
        health.lost_sched_events = t.losses.sched_events();
        health.lost_samples = t.losses.samples;
        Summary {
            start_ns: t.start_ns,
            end_ns: t.end_ns,
            duration_ns: t.end_ns.saturating_sub(t.start_ns),
            processes: t
                .processes
                .iter()
                .map(|p| ProcessRef {
                    pid: p.pid,
                    name: p.name.clone(),
                })
                .collect(),
            sched_events: self.sched_events,
            cpu_samples: t.samples.len() as u64,
            sample_period_ns: t.sample_period_ns,
            threads,
            latency: self.latency.summary(),
            blocking_sites,
            longest_blocks,
            counters: t.counters.iter().filter_map(CounterSummary::of).collect(),
            health,
        }
    }
}

fn frames_of(stacks: &StackTable, stack: Option<StackId>) -> Vec<Frame> {
    stack.map(|s| stacks.get(s).to_vec()).unwrap_or_default()
}

fn end_state(s: State) -> String {
    match s {
        State::Unknown => "unknown".into(),
        State::Running { .. } => "running".into(),
        State::Runnable { .. } => "runnable".into(),
        State::Blocked { state, .. } => state.letter().into(),
        State::Exited => "exited".into(),
    }
}

/// Thread names: the declared thread list, then the process name for a main thread, then the
/// newest comm seen in an event. The same answer for a timeline and its trace file.
struct Names<'a> {
    declared: HashMap<(u32, u32), &'a str>,
    processes: HashMap<u32, &'a str>,
    comms: &'a HashMap<(u32, u32), String>,
}

impl<'a> Names<'a> {
    fn new(t: &'a Timeline, comms: &'a HashMap<(u32, u32), String>) -> Self {
        let mut declared = HashMap::new();
        for th in &t.threads {
            declared.entry((th.tid, th.pid)).or_insert(th.name.as_str());
        }
        Names {
            declared,
            processes: t
                .processes
                .iter()
                .map(|p| (p.pid, p.name.as_str()))
                .collect(),
            comms,
        }
    }

    fn thread(&self, tid: u32, pid: u32) -> String {
        if tid == 0 {
            return "idle (irq/timer)".into();
        }
        self.declared
            .get(&(tid, pid))
            .copied()
            .or_else(|| {
                (tid == pid)
                    .then(|| self.processes.get(&pid).copied())
                    .flatten()
            })
            .map(str::to_string)
            .or_else(|| self.comms.get(&(tid, pid)).cloned())
            .unwrap_or_else(|| format!("tid {tid}"))
    }
}

/// Log-linear histogram of durations in ns: exact below 8 ns, then 8 buckets per power of two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 3;
const SUBS: u64 = 1 << SUB_BITS;

impl LatencyHistogram {
    /// A histogram from counts per bucket in this scheme (the kernel keeps run-queue latencies
    /// the same way, `profiler_ebpf::sched::latency_bucket`), with their sum and maximum.
    pub fn from_buckets(buckets: &[u64], total_ns: u64, max_ns: u64) -> Self {
        let mut buckets = buckets.to_vec();
        while buckets.last() == Some(&0) {
            buckets.pop();
        }
        LatencyHistogram {
            count: buckets.iter().sum(),
            buckets,
            total: total_ns,
            max: max_ns,
        }
    }

    pub fn record(&mut self, ns: u64) {
        let i = bucket_index(ns);
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, 0);
        }
        self.buckets[i] += 1;
        self.count += 1;
        self.total += ns;
        self.max = self.max.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The smallest bucket top that covers a `q` share of the values, capped at the maximum.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some((bucket_bounds(i).1 - 1).min(self.max));
            }
        }
        Some(self.max)
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            total_ns: self.total,
            p50_ns: self.quantile(0.5),
            p99_ns: self.quantile(0.99),
            max_ns: self.max(),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| {
                    let (lower_ns, upper_ns) = bucket_bounds(i);
                    Bucket {
                        lower_ns,
                        upper_ns,
                        count: *n,
                    }
                })
                .collect(),
        }
    }
}

fn bucket_index(v: u64) -> usize {
    if v < SUBS {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) & (SUBS - 1);
    ((exp - SUB_BITS + 1) as u64 * SUBS + sub) as usize
}

/// `[lower, upper)` of bucket `i`.
fn bucket_bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUBS {
        return (i, i + 1);
    }
    let shift = i / SUBS - 1;
    let sub = i % SUBS;
    ((SUBS + sub) << shift, (SUBS + sub + 1) << shift)
}

// ---- Display: aligned tables for people ----

/// How many user frames a site or block shows in the text tables (JSON has them all).
const SHOWN_FRAMES: usize = 3;
const BAR_WIDTH: u64 = 40;

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A launched command's children can be many (a shell loop, `make -j`): name a few.
        const NAMED: usize = 3;
        let mut procs: Vec<String> = self
            .processes
            .iter()
            .take(NAMED)
            .map(|p| format!("{} ({})", p.name, p.pid))
            .collect();
        if self.processes.len() > NAMED {
            procs.push(format!("{} more processes", self.processes.len() - NAMED));
        }
        writeln!(
            f,
            "Trace of {} over {}: {} threads, {} scheduler events, {} CPU samples{}",
            if procs.is_empty() {
                "all tasks".to_string()
            } else {
                procs.join(", ")
            },
            duration(self.duration_ns),
            self.threads.len(),
            self.sched_events,
            self.cpu_samples,
            if self.sample_period_ns > 0 {
                format!(" ({} each)", duration(self.sample_period_ns))
            } else {
                String::new()
            }
        )?;
        self.fmt_health(f)?;

        writeln!(f, "\nThreads (time in each state; % of the window)")?;
        let mut table = Table::new(&[
            ("tid", Align::Right),
            ("thread", Align::Left),
            ("running", Align::Right),
            ("runnable", Align::Right),
            ("sleeping S", Align::Right),
            ("blocked D", Align::Right),
            ("other", Align::Right),
            ("ran", Align::Right),
            ("woken", Align::Right),
            ("preempted", Align::Right),
            ("wait p99", Align::Right),
            ("wait max", Align::Right),
            ("samples", Align::Right),
            ("at end", Align::Left),
        ]);
        let window = self.duration_ns;
        for th in &self.threads {
            table.row(vec![
                th.tid.to_string(),
                th.name.clone(),
                share(th.running_ns, window),
                share(th.runnable_ns, window),
                share(th.sleeping_ns, window),
                share(th.uninterruptible_ns, window),
                share(th.other_blocked_ns, window),
                th.switches_in.to_string(),
                th.wakeups.to_string(),
                th.preemptions.to_string(),
                th.latency_p99_ns.map_or("-".into(), duration),
                th.latency_max_ns.map_or("-".into(), duration),
                th.cpu_samples.to_string(),
                th.end_state.clone(),
            ]);
        }
        table.fmt(f)?;

        let l = &self.latency;
        writeln!(
            f,
            "\nScheduler latency (runnable -> running): {} waits, total {}, p50 {}, p99 {}, max {}",
            l.count,
            duration(l.total_ns),
            l.p50_ns.map_or("-".into(), duration),
            l.p99_ns.map_or("-".into(), duration),
            l.max_ns.map_or("-".into(), duration),
        )?;
        fmt_histogram(f, &l.buckets)?;

        writeln!(
            f,
            "\nTop blocking sites (stack at switch-out, by total blocked time)"
        )?;
        let mut table = Table::new(&[
            ("blocked", Align::Right),
            ("count", Align::Right),
            ("max", Align::Right),
            ("state", Align::Left),
            ("site", Align::Left),
        ]);
        for s in &self.blocking_sites {
            table.row(vec![
                duration(s.total_ns),
                s.count.to_string(),
                duration(s.max_ns),
                state_mix(s),
                site_label(&s.frames),
            ]);
        }
        table.fmt(f)?;

        writeln!(f, "\nLongest blocks")?;
        let mut table = Table::new(&[
            ("blocked", Align::Right),
            ("at", Align::Right),
            ("thread", Align::Left),
            ("state", Align::Left),
            ("woken by", Align::Left),
            ("site", Align::Left),
        ]);
        for b in &self.longest_blocks {
            table.row(vec![
                format!(
                    "{}{}",
                    duration(b.duration_ns),
                    if b.ended { "" } else { "+" }
                ),
                format!("+{}", duration(b.offset_ns)),
                format!("{} {}", b.tid, b.thread),
                b.state.letter().to_string(),
                match (&b.waker, b.ended) {
                    (Some(w), _) => format!("{} {}", w.tid, w.name),
                    (None, true) => "(no wake-up seen)".into(),
                    (None, false) => "(still blocked at end)".into(),
                },
                site_label(&b.frames),
            ]);
        }
        table.fmt(f)?;

        if !self.counters.is_empty() {
            writeln!(f, "\nCounters (over the window)")?;
            let mut table = Table::new(&[
                ("counter", Align::Left),
                ("min", Align::Right),
                ("mean", Align::Right),
                ("max", Align::Right),
                ("last", Align::Right),
                ("values", Align::Right),
            ]);
            for c in &self.counters {
                let v = |x: f64| match c.unit {
                    CounterUnit::Bytes => bytes(x),
                    CounterUnit::Count => format!("{x:.0}"),
                };
                table.row(vec![
                    c.name.clone(),
                    v(c.min),
                    v(c.mean),
                    v(c.max),
                    v(c.last),
                    c.values.to_string(),
                ]);
            }
            table.fmt(f)?;
        }
        Ok(())
    }
}

/// Bytes for people: B, KiB, MiB, GiB.
fn bytes(v: f64) -> String {
    let a = v.abs();
    if a < 1024.0 {
        format!("{v:.0} B")
    } else if a < 1024.0 * 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else if a < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", v / (1024.0 * 1024.0 * 1024.0))
    }
}

impl Summary {
    fn fmt_health(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.health;
        writeln!(
            f,
            "Lost: {} scheduler events, {} samples. Inferred: {} running since the start, {} \
             woken while switching out, {} ran with no wake-up seen, {} inconsistent switches, \
             {} tid reuses; {} blocks without a stack.",
            h.lost_sched_events,
            h.lost_samples,
            h.running_from_start,
            h.woken_before_switch_out,
            h.switch_in_without_wakeup,
            h.inconsistent_switches,
            h.tid_reused,
            h.blocks_without_stack,
        )
    }
}

/// One row per power of two that has values, so the shape reads at a glance.
fn fmt_histogram(f: &mut fmt::Formatter<'_>, buckets: &[Bucket]) -> fmt::Result {
    let mut rows: Vec<(u64, u64, u64)> = Vec::new();
    for b in buckets {
        let lower = if b.lower_ns == 0 {
            0
        } else {
            1 << (63 - b.lower_ns.leading_zeros())
        };
        match rows.last_mut() {
            Some(r) if r.0 == lower => r.2 += b.count,
            _ => rows.push((lower, if lower == 0 { 1 } else { lower * 2 }, b.count)),
        }
    }
    let most = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1);
    let mut table = Table::new(&[
        ("from", Align::Right),
        ("to", Align::Right),
        ("count", Align::Right),
        ("", Align::Left),
    ]);
    for (lower, upper, n) in rows {
        let bar = (n * BAR_WIDTH).div_ceil(most) as usize;
        table.row(vec![
            duration(lower),
            duration(upper),
            n.to_string(),
            "#".repeat(bar),
        ]);
    }
    table.fmt(f)
}

fn state_mix(s: &BlockingSite) -> String {
    let mut parts = Vec::new();
    for (letter, ns) in [
        ("S", s.sleeping_ns),
        ("D", s.uninterruptible_ns),
        ("other", s.other_ns),
    ] {
        if ns > 0 {
            parts.push(format!(
                "{letter} {:.0}%",
                100.0 * ns as f64 / s.total_ns.max(1) as f64
            ));
        }
    }
    parts.join(" ")
}

/// The top user frames of a stack, innermost first (`leaf <- caller <- ...`); the kernel
/// frames when there are no user frames.
fn site_label(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "(no stack)".into();
    }
    let user: Vec<&Frame> = frames.iter().filter(|f| !f.kernel).collect();
    let shown: Vec<&Frame> = if user.is_empty() {
        frames.iter().collect()
    } else {
        user
    };
    let mut label = String::new();
    for (i, frame) in shown.iter().take(SHOWN_FRAMES).enumerate() {
        if i > 0 {
            label.push_str(" <- ");
        }
        label.push_str(&frame.function);
        if i == 0 && !frame.file.is_empty() {
            let file = frame.file.rsplit('/').next().unwrap_or(&frame.file);
            label.push_str(&format!(" ({file}:{})", frame.line));
        }
    }
    if shown.len() > SHOWN_FRAMES {
        label.push_str(" <- ...");
    }
    label
}

fn share(ns: u64, window: u64) -> String {
    if ns == 0 {
        return "-".into();
    }
    format!(
        "{} {:>3.0}%",
        duration(ns),
        100.0 * ns as f64 / window.max(1) as f64
    )
}

/// A duration for people: ns, µs, ms or s.
fn duration(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell.
struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[(&'static str, Align)]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rows.is_empty() {
            return writeln!(f, "  (none)");
        }
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from(" ");
            for ((cell, w), (_, align)) in row.iter().zip(&widths).zip(&self.headers) {
                let pad = w - cell.chars().count();
                line.push(' ');
                match align {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::scenario::{
        KWORKER, MS, PID, READER, SLEEPER, SPINNER, Scenario, US, WRITER, workload,
    };

    const START: u64 = 1_000 * MS;

    fn thread(s: &Summary, tid: u32) -> &ThreadSummary {
        s.threads
            .iter()
            .find(|t| t.tid == tid)
            .expect("thread in summary")
    }

    fn top_function(frames: &[Frame]) -> &str {
        frames
            .iter()
            .find(|f| !f.kernel)
            .map_or("", |f| f.function.as_str())
    }

    #[test]
    fn workload_blocked_times_are_exact() {
        let rounds = 10;
        let (t, answers) = workload(START, rounds);
        let s = summarize(&t, &SummaryOptions::default());
        assert_eq!(s.duration_ns, rounds * 50 * MS);
        // Only the target's threads: the kworker and the idle task are not summarized.
        let tids: HashSet<u32> = s.threads.iter().map(|t| t.tid).collect();
        assert_eq!(tids, HashSet::from([SLEEPER, SPINNER, READER, WRITER]));

        let sleeper = thread(&s, SLEEPER);
        assert_eq!(sleeper.sleeping_ns, answers.sleeper_sleeping_ns);
        assert_eq!(sleeper.running_ns, rounds * 2 * MS);
        assert_eq!(sleeper.runnable_ns, rounds * 100 * US);
        assert_eq!(sleeper.uninterruptible_ns, 0);
        assert_eq!(sleeper.wakeups, rounds * 3);
        assert_eq!(sleeper.end_state, "running");

        let spinner = thread(&s, SPINNER);
        assert_eq!(spinner.runnable_ns, answers.spinner_runnable_ns);
        assert_eq!(
            spinner.running_ns,
            s.duration_ns - answers.spinner_runnable_ns
        );
        assert_eq!(spinner.preemptions, rounds);
        assert_eq!(spinner.sleeping_ns, 0);
        assert_eq!(spinner.cpu_samples, rounds * 5);
        assert_eq!(spinner.latency_max_ns, Some(20 * US));
        assert_eq!(s.threads[0].tid, SPINNER, "most running first");

        let reader = thread(&s, READER);
        assert_eq!(reader.sleeping_ns, answers.reader_sleeping_ns);
        assert_eq!(reader.runnable_ns, rounds * 5 * US);
        // Plus the 10 µs it ran from the window start before blocking the first time.
        assert_eq!(reader.running_ns, rounds * 100 * US + 10 * US);
        assert_eq!(reader.end_state, "S");

        assert_eq!(s.latency.count, answers.latencies);
        assert_eq!(s.health.running_from_start, 2, "the spinner and the reader");
        assert_eq!(s.health.switch_in_without_wakeup, 0);
        assert_eq!(s.health.inconsistent_switches, 0);
        assert_eq!(s.health.blocks_without_stack, 0);
    }

    #[test]
    fn blocking_sites_and_longest_blocks_name_stacks_and_wakers() {
        let rounds = 4;
        let (t, answers) = workload(START, rounds);
        let s = summarize(&t, &SummaryOptions::default());
        let sites: Vec<(&str, u64, u64)> = s
            .blocking_sites
            .iter()
            .map(|b| (top_function(&b.frames), b.total_ns, b.count))
            .collect();
        // The reader's pipe site holds ~everything but its 105 µs per round of waking.
        assert_eq!(sites[0], ("read", answers.reader_sleeping_ns, rounds + 1));
        assert!(sites.contains(&("std::thread::sleep", rounds * 30 * MS, rounds)));
        let long = s
            .blocking_sites
            .iter()
            .find(|b| b.total_ns == rounds * 30 * MS)
            .unwrap();
        assert_eq!(long.frames[2].function, "app::sleeper");
        assert_eq!(long.max_ns, 30 * MS);
        assert_eq!(long.sleeping_ns, long.total_ns);

        // Longest: the reader's pipe waits (~20 ms... 50 ms), woken by the writer.
        let b = &s.longest_blocks[0];
        assert_eq!((b.tid, b.thread.as_str()), (READER, "reader"));
        assert_eq!(b.duration_ns, 50 * MS - 105 * US);
        assert_eq!(b.state, TaskState::Sleeping);
        let waker = b.waker.as_ref().expect("pipe wake-up has a waker");
        assert_eq!(
            (waker.tid, waker.pid, waker.name.as_str()),
            (WRITER, PID, "writer")
        );
        assert_eq!(top_function(&b.frames), "read");
        // The sleeper's 30 ms sleeps are next, woken by the idle task (a timer).
        let sleep = s
            .longest_blocks
            .iter()
            .find(|b| b.tid == SLEEPER)
            .expect("sleeper block");
        assert_eq!(sleep.duration_ns, 30 * MS);
        assert_eq!(sleep.waker.as_ref().unwrap().tid, 0);
        assert!(s.longest_blocks.len() <= SummaryOptions::default().longest_blocks);
    }

    #[test]
    fn latency_histogram_quantiles() {
        let (t, _) = workload(START, 10);
        let s = summarize(&t, &SummaryOptions::default());
        // Per round: sleeper 50 µs, 50 µs, 0; spinner 20 µs; writer 0; reader 5 µs.
        let l = &s.latency;
        assert_eq!(l.count, 60);
        assert_eq!(l.max_ns, Some(50 * US));
        assert_eq!(l.total_ns, 10 * (100 + 20 + 5) * US);
        // 20 zeros, 10 x 5 µs, 10 x 20 µs, 20 x 50 µs: the median is 5 µs (rank 30).
        let p50 = l.p50_ns.unwrap();
        assert!((5 * US..=5 * US + 5 * US / 8).contains(&p50), "{p50}");
        assert_eq!(l.p99_ns, Some(50 * US));
        let counted: u64 = l.buckets.iter().map(|b| b.count).sum();
        assert_eq!(counted, 60);
        assert_eq!(
            l.buckets[0],
            Bucket {
                lower_ns: 0,
                upper_ns: 1,
                count: 20
            }
        );
    }

    #[test]
    fn histogram_buckets_cover_values_within_an_eighth() {
        for v in (0..5000).chain([65_535, 65_536, 1 << 40, u64::MAX / 3]) {
            let (lo, hi) = bucket_bounds(bucket_index(v));
            assert!(lo <= v && v < hi, "{v} in [{lo}, {hi})");
            assert!(hi - lo <= (lo / 8).max(1), "{v}: [{lo}, {hi}) too wide");
        }
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        h.record(1000);
        assert_eq!((h.quantile(0.5), h.max()), (Some(1000), Some(1000)));
    }

    #[test]
    fn events_before_the_first_switch_in_and_a_thread_blocked_at_the_end() {
        let mut s = Scenario::new(START);
        s.thread(201, "late");
        s.thread(202, "blocked");
        let io = s.stack(&["pread64", "app::load"]);
        // 201 is woken before it ever ran: it was blocked since before the window, which is
        // not charged; the wait to run is.
        s.wake(START + MS, 0, 0, 201, 1);
        s.switch(START + MS + 7 * US, 1, 0, TaskState::Runnable, None, 201);
        // 202 was on CPU 2 at the start, blocks in D at 10 ms and never wakes.
        s.switch(
            START + 10 * MS,
            2,
            202,
            TaskState::Uninterruptible,
            Some(io),
            0,
        );
        let t = s.finish(START + 100 * MS);
        let sum = summarize(&t, &SummaryOptions::default());
        let late = thread(&sum, 201);
        assert_eq!(late.runnable_ns, 7 * US);
        assert_eq!(late.running_ns, 100 * MS - MS - 7 * US);
        assert_eq!(late.sleeping_ns, 0);
        let blocked = thread(&sum, 202);
        assert_eq!(blocked.running_ns, 10 * MS);
        assert_eq!(blocked.uninterruptible_ns, 90 * MS);
        assert_eq!(blocked.end_state, "D");
        let b = &sum.longest_blocks[0];
        assert_eq!((b.tid, b.duration_ns, b.ended), (202, 90 * MS, false));
        assert_eq!(b.waker, None);
        assert_eq!(sum.blocking_sites[0].uninterruptible_ns, 90 * MS);
        assert_eq!(sum.health.running_from_start, 1);
        assert!(sum.to_string().contains("(still blocked at end)"));
    }

    #[test]
    fn lost_wakeups_and_inconsistent_switches_are_counted_not_fatal() {
        let mut s = Scenario::new(START);
        s.thread(301, "t");
        let st = s.stack(&["futex_wait"]);
        s.switch(START, 0, 0, TaskState::Runnable, None, 301);
        s.switch(START + MS, 0, 301, TaskState::Sleeping, Some(st), 0);
        // The waking was lost: it runs again at 5 ms.
        s.switch(START + 5 * MS, 0, 0, TaskState::Runnable, None, 301);
        // Its switch-out was lost: it appears on another CPU at 6 ms.
        s.switch(START + 6 * MS, 1, 0, TaskState::Runnable, None, 301);
        s.switch(START + 7 * MS, 1, 301, TaskState::Sleeping, None, 0);
        let mut t = s.finish(START + 10 * MS);
        t.losses.sched_events_by_cpu.insert(0, 2);
        t.losses.samples = 3;
        let sum = summarize(&t, &SummaryOptions::default());
        let th = thread(&sum, 301);
        assert_eq!(th.running_ns, MS + 2 * MS);
        assert_eq!(th.sleeping_ns, 4 * MS + 3 * MS);
        assert_eq!(th.runnable_ns, 0);
        assert_eq!(sum.latency.count, 0, "no wake-up, no latency");
        let h = &sum.health;
        assert_eq!(h.switch_in_without_wakeup, 1);
        assert_eq!(h.inconsistent_switches, 1);
        assert_eq!(h.blocks_without_stack, 1);
        assert_eq!((h.lost_sched_events, h.lost_samples), (2, 3));
        assert!(
            sum.to_string()
                .contains("Lost: 2 scheduler events, 3 samples")
        );
    }

    #[test]
    fn a_wake_up_during_the_switch_out_cancels_the_block() {
        let mut s = Scenario::new(START);
        s.thread(301, "t");
        s.thread(302, "waker");
        let st = s.stack(&["futex_wait"]);
        s.switch(START, 0, 0, TaskState::Runnable, None, 301);
        // The waker runs on CPU 1 while 301 is on its way off CPU 0: the waking is traced
        // first, then the switch-out in S, then 301 runs again with no other wake-up.
        s.wake(START + MS, 1, 302, 301, 0);
        s.switch(START + MS + 300, 0, 301, TaskState::Sleeping, Some(st), 0);
        s.switch(START + MS + 25 * US, 0, 0, TaskState::Runnable, None, 301);
        // A wake-up long before a block is an earlier, cancelled sleep's: the block stands.
        s.wake(START + 2 * MS, 1, 302, 301, 0);
        s.switch(START + 3 * MS, 0, 301, TaskState::Sleeping, Some(st), 0);
        s.wake(START + 4 * MS, 1, 302, 301, 0);
        s.switch(
            START + 4 * MS + 10 * US,
            0,
            0,
            TaskState::Runnable,
            None,
            301,
        );
        let t = s.finish(START + 5 * MS);
        let sum = summarize(&t, &SummaryOptions::default());
        let th = thread(&sum, 301);
        assert_eq!(th.sleeping_ns, MS, "only the second block slept");
        assert_eq!(th.runnable_ns, 25 * US - 300 + 10 * US);
        assert_eq!(th.wakeups, 2);
        assert_eq!(sum.health.woken_before_switch_out, 1);
        assert_eq!(sum.health.switch_in_without_wakeup, 0);
        assert_eq!(sum.latency.count, 2);
    }

    #[test]
    fn exited_and_reused_tids_are_separate_threads_and_strangers_are_ignored() {
        let mut s = Scenario::new(START);
        s.undeclared(401, PID, "first");
        s.switch(START, 0, 0, TaskState::Runnable, None, 401);
        s.switch(START + MS, 0, 401, TaskState::Dead, None, 0);
        // The tid comes back as a new thread of the same process.
        s.undeclared(401, PID, "second");
        s.wake(START + 2 * MS, 0, 0, 401, 0);
        s.switch(START + 2 * MS, 0, 0, TaskState::Runnable, None, 401);
        // And again, under another process, without the exit seen: a reuse, which ends the
        // second life; the other process is not a target, so it is not summarized.
        s.other_task(401, 999, "stranger");
        s.switch(START + 3 * MS, 1, 0, TaskState::Runnable, None, 401);
        s.switch(START + 4 * MS, 1, 401, TaskState::Sleeping, None, 0);
        // A waker nobody declared is named by tid.
        s.undeclared(402, PID, "");
        s.switch(START + 5 * MS, 2, 402, TaskState::Sleeping, None, 0);
        s.wake(START + 6 * MS, 3, 555, 402, 2);
        let t = s.finish(START + 10 * MS);
        let sum = summarize(&t, &SummaryOptions::default());
        let lives: Vec<(&str, u64, &str)> = sum
            .threads
            .iter()
            .filter(|t| t.tid == 401)
            .map(|t| (t.name.as_str(), t.running_ns, t.end_state.as_str()))
            .collect();
        // Both lives ran 1 ms; names are per (tid, pid), so both carry the newest comm.
        assert_eq!(lives, [("second", MS, "exited"), ("second", MS, "exited")]);
        // The stranger ended the second life but did not become a summarized thread.
        assert!(sum.threads.iter().all(|t| t.pid == PID));
        assert_eq!(sum.health.tid_reused, 1);
        let b = sum.longest_blocks.iter().find(|b| b.tid == 402).unwrap();
        assert_eq!(b.waker.as_ref().unwrap().name, "tid 555");
    }

    #[test]
    fn display_and_json_carry_the_tables() {
        let (t, _) = workload(START, 3);
        let s = summarize(&t, &SummaryOptions::default());
        let text = s.to_string();
        for want in [
            "Trace of app (100) over 150.0ms",
            "Threads (time in each state",
            "Scheduler latency (runnable -> running): 18 waits",
            "Top blocking sites",
            "Longest blocks",
            "read (read.rs:10) <- app::pipe_reader",
            "104 writer",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Columns line up: every row of the thread table is as wide as its header or less.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["threads"].as_array().unwrap().len(), 4);
        assert_eq!(json["longest_blocks"][0]["waker"]["name"], "writer");
        assert_eq!(json["latency"]["count"], 18);
        let _ = KWORKER;
    }

    #[test]
    fn the_kernel_buckets_latencies_as_the_summary_does() {
        use profiler_ebpf::sched::{LATENCY_BUCKETS, latency_bucket};
        let mut values: Vec<u64> = (0..5000).collect();
        values.extend((3..41).flat_map(|e| {
            let p = 1u64 << e;
            [p - 1, p, p + 1, p + p / 3, 2 * p - 1]
        }));
        for v in values {
            assert_eq!(latency_bucket(v), bucket_index(v), "{v}");
        }
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        let mut h = LatencyHistogram::default();
        let mut kernel = vec![0; LATENCY_BUCKETS];
        for v in [900, 14_000, 15_000, 910_000, 3_100_000] {
            h.record(v);
            kernel[latency_bucket(v)] += 1;
        }
        let back = LatencyHistogram::from_buckets(&kernel, 4_039_900, 3_100_000);
        assert_eq!(back.summary(), h.summary());
    }
}
