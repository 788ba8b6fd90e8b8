//! The on-CPU collector: one software cpu-clock perf event per online CPU runs the `cpu`
//! program, which counts samples per (thread, user stack, kernel stack) in the kernel. Values:
//! `samples/count` and `cpu/nanoseconds` (samples × the sampling period).

use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::PerfEvent;
use aya::programs::perf_event::{
    PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::{Ebpf, EbpfLoader};
use profiler_ebpf::cpu::{CPU_COPIES, CPU_COUNTERS, CPU_COUNTS, CPU_PROGRAM, CpuCounter, CpuKey};
use profiler_ebpf::stacks::NO_STACK;
use profiler_ebpf::unwind::{COPY_HEADER_SIZE, CopyHeader};

use super::RecordError;
use super::collector::{Collector, Counters, Drained, Sizing, StackSource};
use super::kernel::{ProgramCost, bpf_err, program_cost, read_counters, take_map};
use super::targets::Targets;
use crate::profile::ValueType;
use crate::unwind::{CallGraph, StackCopy};

/// Highest accepted sampling frequency: above this the profiler disturbs the target more
/// than it measures it (and the kernel throttles perf events anyway).
pub const MAX_FREQUENCY: u64 = 10_000;

pub struct CpuCollector {
    frequency: u64,
    counts: Option<[BpfHashMap<MapData, CpuKey, u64>; 2]>,
    copies: CopyRing,
    counters: Option<PerCpuArray<MapData, u64>>,
    links: Vec<PerfEventLinkId>,
}

impl CpuCollector {
    pub fn new(frequency: u64) -> Result<Self, RecordError> {
        if frequency == 0 || frequency > MAX_FREQUENCY {
            return Err(RecordError::InvalidFrequency(frequency));
        }
        Ok(CpuCollector {
            frequency,
            counts: None,
            copies: CopyRing::new(CPU_COPIES, CallGraph::fp()),
            counters: None,
            links: Vec::new(),
        })
    }

    /// Takes user stacks as `call_graph` says (frame pointers only by default).
    pub fn with_call_graph(mut self, call_graph: CallGraph) -> Self {
        self.copies = CopyRing::new(CPU_COPIES, call_graph);
        self
    }

    /// Nanoseconds one sample stands for.
    pub fn period_ns(&self) -> i64 {
        (1_000_000_000 / self.frequency) as i64
    }

    /// Opens one cpu-clock perf event per online CPU running the loaded program.
    fn attach_events(&mut self, bpf: &mut Ebpf) -> Result<(), RecordError> {
        let program: &mut PerfEvent = bpf
            .program_mut(CPU_PROGRAM)
            .ok_or_else(|| RecordError::MissingInObject(format!("program {CPU_PROGRAM}")))?
            .try_into()
            .map_err(bpf_err("the cpu program"))?;
        let cpus = aya::util::online_cpus()
            .map_err(|(path, e)| RecordError::Io(format!("reading {path}"), e))?;
        for cpu in cpus {
            let link = program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(self.frequency),
                    false,
                )
                .map_err(RecordError::from_load)?;
            self.links.push(link);
        }
        Ok(())
    }
}

fn not_attached() -> RecordError {
    RecordError::NotAttached("cpu")
}

impl Collector for CpuCollector {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn describe(&self) -> String {
        format!("cpu-clock at {} Hz per CPU", self.frequency)
    }

    fn sample_types(&self) -> Vec<ValueType> {
        vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ]
    }

    fn main_sample_type(&self) -> &'static str {
        "cpu"
    }

    fn event_column(&self) -> usize {
        0
    }

    fn period(&self) -> Option<(ValueType, i64)> {
        Some((ValueType::new("cpu", "nanoseconds"), self.period_ns()))
    }

    /// About 100 samples per CPU per interval, between 200 ms and 1 s: the maps stay small
    /// and symbolization is spread over the recording, so the end is quick.
    fn drain_interval(&self) -> Duration {
        let ms = 100_000 / self.frequency.max(1);
        Duration::from_millis(ms.clamp(200, 1000))
    }

    /// Each sample stores up to two stacks (user and kernel).
    fn stacks_per_interval(&self, sizing: &Sizing) -> u32 {
        sizing
            .entries_per_interval(self.frequency)
            .saturating_mul(2)
    }

    fn configure<'a>(&'a self, sizing: &Sizing, loader: &mut EbpfLoader<'a>) {
        // One entry per distinct (thread, stacks) per interval: at most one per sample.
        let entries = sizing.entries_per_interval(self.frequency);
        for name in CPU_COUNTS {
            loader.map_max_entries(name, entries);
        }
        self.copies.configure(sizing, self.frequency, loader);
    }

    fn attach(&mut self, bpf: &mut Ebpf, _targets: &Targets) -> Result<(), RecordError> {
        self.counts = Some([
            BpfHashMap::try_from(take_map(bpf, CPU_COUNTS[0])?)
                .map_err(bpf_err("opening CPU_COUNTS_0"))?,
            BpfHashMap::try_from(take_map(bpf, CPU_COUNTS[1])?)
                .map_err(bpf_err("opening CPU_COUNTS_1"))?,
        ]);
        self.counters = Some(
            PerCpuArray::try_from(take_map(bpf, CPU_COUNTERS)?)
                .map_err(bpf_err("opening CPU_COUNTERS"))?,
        );
        self.copies.attach(bpf)?;
        let program: &mut PerfEvent = bpf
            .program_mut(CPU_PROGRAM)
            .ok_or_else(|| RecordError::MissingInObject(format!("program {CPU_PROGRAM}")))?
            .try_into()
            .map_err(bpf_err("the cpu program"))?;
        program.load().map_err(RecordError::from_load)?;
        self.attach_events(bpf)
    }

    fn detach(&mut self, bpf: &mut Ebpf) {
        let links = std::mem::take(&mut self.links);
        if let Some(program) = bpf.program_mut(CPU_PROGRAM)
            && let Ok(program) = <&mut PerfEvent>::try_from(program)
        {
            for link in links {
                let _ = program.detach(link);
            }
        }
    }

    fn drain(&mut self, set: usize, out: &mut Vec<Drained>) -> Result<(), RecordError> {
        let period = self.period_ns();
        let counts = &mut self.counts.as_mut().ok_or_else(not_attached)?[set];
        drain_sample_counts(counts, out, |n| vec![n as i64, n as i64 * period]);
        self.copies
            .drain(out, |n| vec![n as i64, n as i64 * period]);
        Ok(())
    }

    fn counters(&self) -> Result<Counters, RecordError> {
        read_counters::<CpuCounter>(self.counters.as_ref().ok_or_else(not_attached)?)
    }

    fn events_seen(&self) -> u64 {
        self.counters
            .as_ref()
            .and_then(|c| c.get(&(CpuCounter::TargetSamples as u32), 0).ok())
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }

    fn program_cost(&self, bpf: &Ebpf) -> Vec<ProgramCost> {
        program_cost(bpf, CPU_PROGRAM).into_iter().collect()
    }

    /// Pausing is `detach` (the default); resuming opens the perf events again, one per
    /// online CPU, with the program already loaded.
    fn resume(&mut self, bpf: &mut Ebpf) -> Result<(), RecordError> {
        if self.links.is_empty() {
            self.attach_events(bpf)?;
        }
        Ok(())
    }

    fn check_invariants(&self, counters: &Counters) -> Vec<String> {
        sample_invariants("cpu", counters)
    }
}

/// Drains one set of a perf-event sampler's count map (cpu, page faults) into samples whose
/// values `values` makes from the count.
pub(super) fn drain_sample_counts(
    counts: &mut BpfHashMap<MapData, CpuKey, u64>,
    out: &mut Vec<Drained>,
    values: impl Fn(u64) -> Vec<i64>,
) {
    let entries: Vec<(CpuKey, u64)> = counts.iter().filter_map(Result::ok).collect();
    for (key, _) in &entries {
        let _ = counts.remove(key);
    }
    let stack = |h: u64| {
        if h == NO_STACK {
            StackSource::None
        } else {
            StackSource::Hash(h)
        }
    };
    out.extend(entries.into_iter().map(|(key, n)| Drained {
        pid: key.tgid,
        tid: key.tid,
        user: stack(key.user_stack),
        kernel: stack(key.kernel_stack),
        labels: Vec::new(),
        waker: None,
        values: values(n),
    }));
}

/// A perf-event sampler's ring of stack copies (`--call-graph dwarf|auto`): sized for the
/// copies of a few drain intervals, one page when nothing is copied.
pub(super) struct CopyRing {
    name: &'static str,
    call_graph: CallGraph,
    ring: Option<RingBuf<MapData>>,
}

impl CopyRing {
    pub(super) fn new(name: &'static str, call_graph: CallGraph) -> Self {
        CopyRing {
            name,
            call_graph,
            ring: None,
        }
    }

    /// Bytes for the copies of `per_cpu_hz` events per CPU over a drain interval, with the
    /// maps' margin (see `Sizing::entries_per_interval`): a power of two (the kernel's rule),
    /// at most 64 MiB of locked memory. What still does not fit is counted (`copy_ring_full`)
    /// and walked with frame pointers instead.
    pub(super) fn bytes(&self, sizing: &Sizing, per_cpu_hz: u64) -> u32 {
        if !self.call_graph.copies() {
            return 4096;
        }
        // Each record carries the ring's own 8-byte header (the off-CPU header is smaller).
        let record = (COPY_HEADER_SIZE + 8) as u64 + u64::from(self.call_graph.stack_size);
        let events =
            sizing.cpus as u64 * per_cpu_hz * sizing.drain_interval.as_millis() as u64 / 1000 * 4;
        (events.max(64) * record)
            .next_power_of_two()
            .clamp(4096, 64 << 20) as u32
    }

    pub(super) fn configure<'a>(
        &self,
        sizing: &Sizing,
        per_cpu_hz: u64,
        loader: &mut EbpfLoader<'a>,
    ) {
        loader.map_max_entries(self.name, self.bytes(sizing, per_cpu_hz));
    }

    pub(super) fn attach(&mut self, bpf: &mut Ebpf) -> Result<(), RecordError> {
        self.ring = Some(
            RingBuf::try_from(take_map(bpf, self.name)?)
                .map_err(bpf_err(format!("opening {}", self.name)))?,
        );
        Ok(())
    }

    /// Every record now in the ring, parsed in place by `parse` (for a collector with records
    /// of its own kind): the stack bytes are copied once, out of the ring, not once per stage.
    pub(super) fn take_parsed<T>(&mut self, mut parse: impl FnMut(&[u8]) -> Option<T>) -> Vec<T> {
        let mut records = Vec::new();
        if let Some(ring) = self.ring.as_mut() {
            while let Some(item) = ring.next() {
                records.extend(parse(&item));
            }
        }
        records
    }

    /// Every record now in the ring, as one sample each with values `values(1)`: the user
    /// stack as a copy for the session to unwind, the kernel stack as frames.
    pub(super) fn drain(&mut self, out: &mut Vec<Drained>, values: impl Fn(u64) -> Vec<i64>) {
        for d in self.take_parsed(parse_copy) {
            out.push(Drained {
                values: values(1),
                ..d
            });
        }
    }
}

/// One ring record: a `CopyHeader` and `stack_len` bytes of stack. None when malformed.
fn parse_copy(bytes: &[u8]) -> Option<Drained> {
    if bytes.len() < COPY_HEADER_SIZE {
        return None;
    }
    // SAFETY: `CopyHeader` is plain integers and the slice holds at least its size; the read
    // is unaligned-safe.
    let header: CopyHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let stack = bytes.get(COPY_HEADER_SIZE..COPY_HEADER_SIZE + header.stack_len as usize)?;
    let kernel_len = (header.kernel_len as usize).min(header.kernel.len());
    let kernel = if kernel_len == 0 {
        StackSource::None
    } else {
        StackSource::Frames(header.kernel[..kernel_len].to_vec())
    };
    Some(Drained {
        pid: header.tgid,
        tid: header.tid,
        user: StackSource::Copy(std::sync::Arc::new(StackCopy {
            regs: header.regs,
            stack: stack.to_vec(),
        })),
        kernel,
        labels: Vec::new(),
        waker: None,
        values: Vec::new(),
    })
}

/// The invariant of a perf-event sampler (`CpuCounter` outcomes): every sample taken ends in
/// one user-stack, one kernel-stack and one count outcome (a copied sample's user-stack and
/// count outcome are both `copied`).
pub(super) fn sample_invariants(name: &str, counters: &Counters) -> Vec<String> {
    let get = |n: &str| {
        counters
            .iter()
            .find(|(k, _)| *k == n)
            .map_or(0, |(_, v)| *v)
    };
    let taken = get("target_samples");
    let sum = |names: &[&str]| names.iter().map(|n| get(n)).sum::<u64>();
    let groups = [
        (
            "user-stack",
            sum(&[
                "user_stack",
                "user_stack_missing",
                "user_stack_map_full",
                "user_stack_error",
                "copied",
            ]),
        ),
        (
            "kernel-stack",
            sum(&[
                "kernel_stack",
                "kernel_stack_absent",
                "kernel_stack_map_full",
                "kernel_stack_error",
            ]),
        ),
        (
            "count",
            sum(&["counted", "counts_full", "counts_error", "copied"]),
        ),
    ];
    groups
        .into_iter()
        .filter(|(_, n)| *n != taken)
        .map(|(what, n)| format!("{name}: {taken} samples taken but {n} {what} outcomes"))
        .collect()
}
