//! The off-CPU collector: where threads wait. `sched_switch` takes a target thread's stacks
//! when it leaves the CPU and charges the time until it runs again to them, by wait state
//! (`S` sleeping, `D` uninterruptible — disk and other I/O —, `R` preempted while runnable,
//! which is scheduler latency, not blocking). Intervals shorter than the minimum are counted
//! under the thread without stacks. With wakers on, `sched_waking` remembers who woke a thread
//! that had been blocked for at least the minimum, so blocked time is also charged to
//! (blocked stack; waker stack), as BCC's offwaketime shows it.
//!
//! Cost: the stack is only known at switch-out and the duration only at switch-in, so stacks
//! are walked at every blocking (S, D) switch-out of a target thread. Reusing the last stacks
//! of a thread that blocks with the same registers was tried and dropped: two callers of one
//! blocking helper share registers and the first return address, so it misattributed time.
//! Preemptions (R) are charged without stacks: where a thread is preempted is an on-CPU
//! sample, not a wait site. Add a lookup per switch machine-wide, and waker stacks only for
//! blocks that already passed the minimum. Values: `offcpu/nanoseconds`,
//! `offcpu_events/count`, and with wakers `offcpu_wakers/nanoseconds`.
//!
//! With `--call-graph dwarf|auto`, blocks of at least `copy_min` inside a system call, in code
//! the mode wants unwound in user space (auto: code without frame pointers, such as glibc's
//! system-call wrappers), are charged with a copy of the user stack taken when the thread
//! leaves the call (see `profiler_ebpf::offcpu`), unwound by the session like a cpu sample's.
//! Shorter blocks keep the frame-pointer walk: a copy costs microseconds, and a busy server
//! blocks for a few microseconds tens of thousands of times a second.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::BtfTracePoint;
use aya::{Ebpf, EbpfLoader};
use profiler_ebpf::offcpu::{
    OFF_COPY_HEADER_SIZE, OFFCPU_COPIES, OFFCPU_COPY_MIN_NS, OFFCPU_COPY_SCRATCH, OFFCPU_COUNTERS,
    OFFCPU_COUNTS, OFFCPU_MIN_NS, OFFCPU_PENDING, OFFCPU_STACKS, OFFCPU_START, OFFCPU_WAKE_COUNTS,
    OFFCPU_WAKER, OFFCPU_WAKER_MIN_NS, OFFCPU_WAKERS, OffCopyHeader, OffCpuCounter, OffKey,
    OffPending, OffStart, OffValue, SWITCH_PROGRAM, SYS_EXIT_PROGRAM, SYS_EXIT_TRACEPOINT,
    WAKING_PROGRAM, WakeKey, Waker, state_letter,
};
use profiler_ebpf::stacks::{MAX_STACK_DEPTH, NO_STACK, RawStack};

use super::RecordError;
use super::collector::{Collector, Counters, Drained, DrainedWaker, Sizing, StackSource};
use super::cpu::CopyRing;
use super::kernel::{ProgramCost, bpf_err, program_cost, read_counters, take_map};
use super::targets::Targets;
use crate::profile::{LabelValue, Profile, ValueType};
use crate::unwind::{CallGraph, StackCopy};

/// Context switches per second per CPU the maps are sized for: search-server under load
/// switches about 20,600 times a second on 2 CPUs (measured), so 20,000 per CPU leaves room.
const SWITCHES_PER_CPU_HZ: u64 = 20_000;
/// Target threads that can be off the CPU at once.
const THREADS: u32 = 32_768;
/// Distinct stacks kept for blocked threads and wakers (about 1 KiB each).
const STACKS: u32 = 16_384;
/// Blocks copied per second per CPU the copy ring is sized for (those of at least `copy_min`:
/// a thread blocks that long at most 10,000 times a second).
const COPIES_PER_CPU_HZ: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffCpuOptions {
    /// Shorter intervals are counted, but not charged to a stack.
    pub min: Duration,
    /// Record who woke blocked threads.
    pub wakers: bool,
    /// Record wakers only for blocks at least this long when woken.
    pub waker_min: Duration,
    /// With stack copies (`--call-graph dwarf|auto`): blocks at least this long get a copied
    /// and unwound user stack; shorter ones keep the frame-pointer walk.
    pub copy_min: Duration,
}

impl Default for OffCpuOptions {
    /// Every interval charged to its stack (it is walked at switch-out anyway, so dropping it
    /// for short intervals would save nothing), wakers for blocks from 100 us.
    fn default() -> Self {
        OffCpuOptions {
            min: Duration::ZERO,
            wakers: true,
            waker_min: Duration::from_micros(100),
            copy_min: Duration::from_micros(100),
        }
    }
}

pub struct OffCpuCollector {
    opts: OffCpuOptions,
    /// The programs' globals, kept here because the loader borrows them.
    min_ns: u64,
    waker_min_ns: u64,
    wakers_flag: u32,
    copy_min_ns: u64,
    copies: CopyRing,
    call_graph: CallGraph,
    maps: Option<Maps>,
    links: Vec<aya::programs::tp_btf::BtfTracePointLinkId>,
    /// Stacks read from the kernel by hash, kept for the session (the LRU map may drop them).
    stacks: HashMap<u64, Option<Vec<u64>>>,
}

struct Maps {
    counts: [BpfHashMap<MapData, OffKey, OffValue>; 2],
    wake_counts: [BpfHashMap<MapData, WakeKey, OffValue>; 2],
    start: BpfHashMap<MapData, u32, OffStart>,
    /// An LRU hash map in the kernel; aya's HashMap reads both kinds.
    stacks: BpfHashMap<MapData, u64, RawStack>,
    counters: PerCpuArray<MapData, u64>,
    pending: BpfHashMap<MapData, u32, OffPending>,
}

impl OffCpuCollector {
    pub fn new(opts: OffCpuOptions) -> Self {
        OffCpuCollector {
            opts,
            min_ns: opts.min.as_nanos().min(u64::MAX as u128) as u64,
            waker_min_ns: opts.waker_min.as_nanos().min(u64::MAX as u128) as u64,
            wakers_flag: u32::from(opts.wakers),
            copy_min_ns: opts.copy_min.as_nanos().min(u64::MAX as u128) as u64,
            copies: CopyRing::new(OFFCPU_COPIES, CallGraph::fp()),
            call_graph: CallGraph::fp(),
            maps: None,
            links: Vec::new(),
            stacks: HashMap::new(),
        }
    }

    /// Takes the user stacks of long blocks as `call_graph` says (frame pointers only by
    /// default). The session must run with the same call graph: it sets the mode in the kernel.
    pub fn with_call_graph(mut self, call_graph: CallGraph) -> Self {
        self.copies = CopyRing::new(OFFCPU_COPIES, call_graph);
        self.call_graph = call_graph;
        self
    }

    /// The programs, each with its tracepoint, in the order they are attached.
    fn programs(&self) -> Vec<(&'static str, &'static str)> {
        let mut p = vec![(SWITCH_PROGRAM, SWITCH_PROGRAM)];
        if self.opts.wakers {
            p.push((WAKING_PROGRAM, WAKING_PROGRAM));
        }
        if self.call_graph.copies() {
            p.push((SYS_EXIT_PROGRAM, SYS_EXIT_TRACEPOINT));
        }
        p
    }

    /// Attaches the loaded programs to their tracepoints.
    fn attach_programs(&mut self, bpf: &mut Ebpf) -> Result<(), RecordError> {
        for (name, _) in self.programs() {
            let program: &mut BtfTracePoint = bpf
                .program_mut(name)
                .ok_or_else(|| RecordError::MissingInObject(format!("program {name}")))?
                .try_into()
                .map_err(bpf_err(format!("program {name}")))?;
            self.links
                .push(program.attach().map_err(RecordError::from_load)?);
        }
        Ok(())
    }

    fn maps(&mut self) -> Result<&mut Maps, RecordError> {
        self.maps.as_mut().ok_or(RecordError::NotAttached("offcpu"))
    }

    /// The frames of a stack hash, read once from the kernel's LRU map.
    fn frames(&mut self, hash: u64) -> StackSource {
        if hash == NO_STACK {
            return StackSource::None;
        }
        let maps = self.maps.as_ref().expect("attached before draining");
        let entry = self.stacks.entry(hash).or_insert_with(|| {
            maps.stacks.get(&hash, 0).ok().map(|s| {
                let len = (s.len as usize).min(MAX_STACK_DEPTH);
                s.ips[..len].to_vec()
            })
        });
        match entry {
            Some(ips) => StackSource::Frames(ips.clone()),
            // Evicted before it was read (the LRU map was too small): counted as no stack.
            None => StackSource::None,
        }
    }

    /// Values in this collector's columns: blocked time and intervals, then (with wakers)
    /// blocked time by waker, which only waker samples carry.
    fn sample(&mut self, key: &OffKey, v: &OffValue, waker: Option<&Waker>) -> Drained {
        let ns = v.ns.min(i64::MAX as u64) as i64;
        let values = match (waker, self.opts.wakers) {
            (Some(_), _) => vec![0, 0, ns],
            (None, true) => vec![ns, v.count as i64, 0],
            (None, false) => vec![ns, v.count as i64],
        };
        let waker = waker.map(|w| {
            Box::new(DrainedWaker {
                pid: w.tgid,
                tid: w.tid,
                user: self.frames(w.user_stack),
                kernel: self.frames(w.kernel_stack),
            })
        });
        Drained {
            pid: key.tgid,
            tid: key.tid,
            user: self.frames(key.user_stack),
            kernel: self.frames(key.kernel_stack),
            labels: vec![("state", state_letter(key.state).to_string())],
            waker,
            values,
        }
    }

    /// One copy record: the block's sample with the user stack to unwind and, with a waker,
    /// its waker sample with the same copy.
    fn copied_samples(&mut self, header: OffCopyHeader, copy: StackCopy, out: &mut Vec<Drained>) {
        let key = OffKey {
            tgid: header.tgid,
            tid: header.tid,
            user_stack: NO_STACK,
            kernel_stack: header.kernel_stack,
            state: header.state,
            _pad: 0,
        };
        let value = OffValue {
            ns: header.ns,
            count: 1,
        };
        let copy = Arc::new(copy);
        if header.has_waker != 0 {
            let mut d = self.sample(&key, &value, Some(&header.waker));
            d.user = StackSource::Copy(copy.clone());
            out.push(d);
        }
        let mut d = self.sample(&key, &value, None);
        d.user = StackSource::Copy(copy);
        out.push(d);
    }
}

/// Splits an off-CPU copy record into its header and its copy (registers and stack bytes).
/// None when malformed.
fn parse_off_copy(bytes: &[u8]) -> Option<(OffCopyHeader, StackCopy)> {
    if bytes.len() < OFF_COPY_HEADER_SIZE {
        return None;
    }
    // SAFETY: `OffCopyHeader` is plain integers and the slice holds at least its size; the
    // read is unaligned-safe.
    let header: OffCopyHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let stack =
        bytes.get(OFF_COPY_HEADER_SIZE..OFF_COPY_HEADER_SIZE + header.stack_len as usize)?;
    let copy = StackCopy {
        regs: header.regs,
        stack: stack.to_vec(),
    };
    Some((header, copy))
}

impl Collector for OffCpuCollector {
    fn name(&self) -> &'static str {
        "offcpu"
    }

    fn describe(&self) -> String {
        format!(
            "off-CPU time from sched_switch, charged to stacks from {} us{}",
            self.opts.min.as_micros(),
            if self.opts.wakers {
                ", with wakers"
            } else {
                ""
            }
        )
    }

    fn sample_types(&self) -> Vec<ValueType> {
        let mut t = vec![
            ValueType::new("offcpu", "nanoseconds"),
            ValueType::new("offcpu_events", "count"),
        ];
        if self.opts.wakers {
            t.push(ValueType::new("offcpu_wakers", "nanoseconds"));
        }
        t
    }

    fn main_sample_type(&self) -> &'static str {
        "offcpu"
    }

    fn event_column(&self) -> usize {
        1
    }

    fn period(&self) -> Option<(ValueType, i64)> {
        None
    }

    fn drain_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// Stacks go to their own LRU map, not the session's sets.
    fn stacks_per_interval(&self, _sizing: &Sizing) -> u32 {
        0
    }

    fn configure<'a>(&'a self, sizing: &Sizing, loader: &mut EbpfLoader<'a>) {
        loader
            .override_global(OFFCPU_MIN_NS, &self.min_ns, true)
            .override_global(OFFCPU_WAKERS, &self.wakers_flag, true)
            .override_global(OFFCPU_WAKER_MIN_NS, &self.waker_min_ns, true)
            .override_global(OFFCPU_COPY_MIN_NS, &self.copy_min_ns, true);
        // One count entry per distinct (thread, stacks, state) per interval: at most one per
        // switch, and far fewer in practice (threads block in few places).
        let entries = sizing
            .entries_per_interval(SWITCHES_PER_CPU_HZ)
            .min(262_144);
        for name in OFFCPU_COUNTS {
            loader.map_max_entries(name, entries);
        }
        let wake_entries = if self.opts.wakers { entries / 4 } else { 1 };
        for name in OFFCPU_WAKE_COUNTS {
            loader.map_max_entries(name, wake_entries.max(1));
        }
        loader.map_max_entries(OFFCPU_START, THREADS);
        loader.map_max_entries(OFFCPU_WAKER, if self.opts.wakers { THREADS } else { 1 });
        loader.map_max_entries(OFFCPU_STACKS, STACKS);
        let copies = self.call_graph.copies();
        loader.map_max_entries(OFFCPU_PENDING, if copies { THREADS } else { 1 });
        loader.map_max_entries(
            OFFCPU_COPY_SCRATCH,
            if copies {
                aya::util::nr_cpus().map_or(1, |n| n as u32)
            } else {
                1
            },
        );
        self.copies.configure(sizing, COPIES_PER_CPU_HZ, loader);
    }

    fn attach(&mut self, bpf: &mut Ebpf, _targets: &Targets) -> Result<(), RecordError> {
        let counts = |bpf: &mut Ebpf, name| {
            BpfHashMap::try_from(take_map(bpf, name)?).map_err(bpf_err(format!("opening {name}")))
        };
        let wake = |bpf: &mut Ebpf, name| {
            BpfHashMap::try_from(take_map(bpf, name)?).map_err(bpf_err(format!("opening {name}")))
        };
        self.maps = Some(Maps {
            counts: [
                counts(bpf, OFFCPU_COUNTS[0])?,
                counts(bpf, OFFCPU_COUNTS[1])?,
            ],
            wake_counts: [
                wake(bpf, OFFCPU_WAKE_COUNTS[0])?,
                wake(bpf, OFFCPU_WAKE_COUNTS[1])?,
            ],
            start: BpfHashMap::try_from(take_map(bpf, OFFCPU_START)?)
                .map_err(bpf_err("opening OFFCPU_START"))?,
            stacks: BpfHashMap::try_from(take_map(bpf, OFFCPU_STACKS)?)
                .map_err(bpf_err("opening OFFCPU_STACKS"))?,
            counters: PerCpuArray::try_from(take_map(bpf, OFFCPU_COUNTERS)?)
                .map_err(bpf_err("opening OFFCPU_COUNTERS"))?,
            pending: BpfHashMap::try_from(take_map(bpf, OFFCPU_PENDING)?)
                .map_err(bpf_err("opening OFFCPU_PENDING"))?,
        });
        self.copies.attach(bpf)?;
        let btf = aya::Btf::from_sys_fs().map_err(bpf_err("reading the kernel's BTF"))?;
        for (name, tracepoint) in self.programs() {
            let program: &mut BtfTracePoint = bpf
                .program_mut(name)
                .ok_or_else(|| RecordError::MissingInObject(format!("program {name}")))?
                .try_into()
                .map_err(bpf_err(format!("program {name}")))?;
            program
                .load(tracepoint, &btf)
                .map_err(RecordError::from_load)?;
        }
        self.attach_programs(bpf)
    }

    fn detach(&mut self, bpf: &mut Ebpf) {
        for ((name, _), link) in self
            .programs()
            .into_iter()
            .zip(std::mem::take(&mut self.links))
        {
            if let Some(program) = bpf.program_mut(name)
                && let Ok(program) = <&mut BtfTracePoint>::try_from(program)
            {
                let _ = program.detach(link);
            }
        }
    }

    fn drain(&mut self, set: usize, out: &mut Vec<Drained>) -> Result<(), RecordError> {
        let maps = self.maps()?;
        let entries: Vec<(OffKey, OffValue)> =
            maps.counts[set].iter().filter_map(Result::ok).collect();
        for (k, _) in &entries {
            let _ = maps.counts[set].remove(k);
        }
        let wakes: Vec<(WakeKey, OffValue)> = maps.wake_counts[set]
            .iter()
            .filter_map(Result::ok)
            .collect();
        for (k, _) in &wakes {
            let _ = maps.wake_counts[set].remove(k);
        }
        for (k, v) in &entries {
            let d = self.sample(k, v, None);
            out.push(d);
        }
        for (k, v) in &wakes {
            let d = self.sample(&k.blocked, v, Some(&k.waker));
            out.push(d);
        }
        for (header, copy) in self.copies.take_parsed(parse_off_copy) {
            self.copied_samples(header, copy, out);
        }
        Ok(())
    }

    /// Threads still off the CPU when recording stops were off until now: charge that time
    /// (the kernel's `bpf_ktime_get_ns` is CLOCK_MONOTONIC).
    fn finish(&mut self, out: &mut Vec<Drained>) -> Result<(), RecordError> {
        let now = monotonic_ns();
        let min = self.opts.min.as_nanos() as u64;
        let maps = self.maps()?;
        // Long blocks whose thread has not left its system call yet keep their frame-pointer
        // stacks (the thread is still in the kernel: its copy never came).
        let pending: Vec<OffPending> = maps
            .pending
            .iter()
            .filter_map(Result::ok)
            .map(|(_, p)| p)
            .collect();
        let open: Vec<(u32, OffStart)> = maps.start.iter().filter_map(Result::ok).collect();
        for p in pending {
            let v = OffValue { ns: p.ns, count: 1 };
            if p.has_waker != 0 {
                let d = self.sample(&p.key, &v, Some(&p.waker));
                out.push(d);
            }
            let d = self.sample(&p.key, &v, None);
            out.push(d);
        }
        for (tid, start) in open {
            let ns = now.saturating_sub(start.since_ns);
            let long = ns >= min;
            let key = OffKey {
                tgid: start.tgid,
                tid,
                user_stack: if long { start.user_stack } else { NO_STACK },
                kernel_stack: if long { start.kernel_stack } else { NO_STACK },
                state: start.state,
                _pad: 0,
            };
            let d = self.sample(&key, &OffValue { ns, count: 1 }, None);
            out.push(d);
        }
        Ok(())
    }

    fn counters(&self) -> Result<Counters, RecordError> {
        let maps = self
            .maps
            .as_ref()
            .ok_or(RecordError::NotAttached("offcpu"))?;
        read_counters::<OffCpuCounter>(&maps.counters)
    }

    fn events_seen(&self) -> u64 {
        self.maps
            .as_ref()
            .and_then(|m| m.counters.get(&(OffCpuCounter::SwitchOut as u32), 0).ok())
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }

    fn program_cost(&self, bpf: &Ebpf) -> Vec<ProgramCost> {
        self.programs()
            .into_iter()
            .filter_map(|(p, _)| program_cost(bpf, p))
            .collect()
    }

    fn check_invariants(&self, counters: &Counters) -> Vec<String> {
        let get = |name: &str| {
            counters
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v)
        };
        let sum = |names: &[&str]| names.iter().map(|n| get(n)).sum::<u64>();
        let out_ = get("switch_out");
        let in_ = get("switch_in");
        let mut bad = Vec::new();
        let not_walked = get("preempted");
        for (what, n) in [
            (
                "user-stack",
                not_walked
                    + sum(&[
                        "user_stack",
                        "user_stack_missing",
                        "user_stack_map_full",
                        "user_stack_error",
                    ]),
            ),
            (
                "kernel-stack",
                not_walked
                    + sum(&[
                        "kernel_stack",
                        "kernel_stack_missing",
                        "kernel_stack_map_full",
                        "kernel_stack_error",
                    ]),
            ),
            ("start", sum(&["started", "start_full", "start_error"])),
        ] {
            if n != out_ {
                bad.push(format!(
                    "offcpu: {out_} switch-outs but {n} {what} outcomes"
                ));
            }
        }
        for (what, n) in [
            ("charge", sum(&["charged", "short"])),
            (
                "count",
                sum(&["counted", "counts_full", "counts_error", "deferred"]),
            ),
        ] {
            if n != in_ {
                bad.push(format!("offcpu: {in_} switch-ins but {n} {what} outcomes"));
            }
        }
        // A deferred block ends when its thread leaves the system call, or is still pending.
        let ended = sum(&["copy_sent", "copy_moved", "copy_failed", "pending_replaced"]);
        if ended > get("deferred") {
            bad.push(format!(
                "offcpu: {} blocks deferred but {ended} ended",
                get("deferred")
            ));
        }
        let fallbacks = sum(&["copy_moved", "copy_failed", "pending_replaced"]);
        let charged = sum(&["fallback_counted", "fallback_counts_full"]);
        if charged != fallbacks {
            bad.push(format!(
                "offcpu: {fallbacks} copy fallbacks but {charged} fallback charges"
            ));
        }
        let wakeups = get("wakeup_of_blocked");
        let w = sum(&["waker_taken", "waker_short", "waker_full"]);
        if w != wakeups {
            bad.push(format!(
                "offcpu: {wakeups} wakeups of blocked threads but {w} waker outcomes"
            ));
        }
        bad
    }

    /// Pausing is `detach` (the default). Threads that left the CPU before the pause would be
    /// charged from then at their next switch-in, time outside any window: their starts are
    /// forgotten first, so the time charged after a resume starts at the resume.
    fn resume(&mut self, bpf: &mut Ebpf) -> Result<(), RecordError> {
        if !self.links.is_empty() {
            return Ok(());
        }
        let maps = self.maps()?;
        let open: Vec<u32> = maps.start.keys().filter_map(Result::ok).collect();
        for tid in open {
            let _ = maps.start.remove(&tid);
        }
        self.attach_programs(bpf)
    }

    fn summary_lines(&self, profile: &Profile, columns: Range<usize>) -> Vec<String> {
        let (ns_col, ev_col) = (columns.start, columns.start + 1);
        let mut by_state: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        let mut wakers = 0i64;
        for s in &profile.samples {
            let state = s
                .labels
                .iter()
                .find(|l| l.key == "state")
                .and_then(|l| match &l.value {
                    LabelValue::Str(v) => Some(v.clone()),
                    LabelValue::Num { .. } => None,
                })
                .unwrap_or_else(|| "?".into());
            let e = by_state.entry(state).or_default();
            e.0 += s.values.get(ns_col).copied().unwrap_or(0);
            e.1 += s.values.get(ev_col).copied().unwrap_or(0);
            if self.opts.wakers {
                wakers += s.values.get(columns.start + 2).copied().unwrap_or(0);
            }
        }
        let total: i64 = by_state.values().map(|v| v.0).sum();
        let words = |state: &str| match state {
            "S" => "sleeping (S)",
            "D" => "uninterruptible, disk and other I/O (D)",
            "R" => "runnable, waiting for a CPU (R)",
            _ => "other",
        };
        let mut lines = vec![format!(
            "off-CPU:      {:.3} s in {} intervals{}",
            total as f64 / 1e9,
            by_state.values().map(|v| v.1).sum::<i64>(),
            if self.opts.min.is_zero() {
                String::new()
            } else {
                format!(
                    " (intervals under {} us are counted without stacks)",
                    self.opts.min.as_micros()
                )
            }
        )];
        for (state, (ns, n)) in &by_state {
            lines.push(format!(
                "              {:.3} s {} in {n} intervals",
                *ns as f64 / 1e9,
                words(state)
            ));
        }
        if self.opts.wakers {
            lines.push(format!(
                "              {:.3} s of blocked time with its waker's stack (--sample-type offcpu_wakers)",
                wakers as f64 / 1e9
            ));
        }
        lines
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
