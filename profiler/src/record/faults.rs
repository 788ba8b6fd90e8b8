//! The page-fault collector: which code first touches memory, the growth of RSS, for any
//! process. The page-faults software perf event runs the `page_faults` program on every fault
//! of a target (or every Nth with `--page-fault-period`); it counts faults per (thread, user
//! stack, kernel stack) in the kernel, as the cpu collector counts samples. Values:
//! `page_faults/count` and an estimate of the memory made resident, `page_faults_space/bytes`
//! (faults × period × page size: a fault maps one page, more with fault-around on file pages).

use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::PerfEvent;
use aya::programs::perf_event::{
    PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::{Ebpf, EbpfLoader};
use profiler_ebpf::cpu::{CpuCounter, CpuKey};
use profiler_ebpf::faults::{FAULT_COPIES, FAULT_COUNTERS, FAULT_COUNTS, FAULTS_PROGRAM};

use super::RecordError;
use super::collector::{Collector, Counters, Drained, Sizing};
use super::cpu::{CopyRing, drain_sample_counts, sample_invariants};
use super::kernel::{ProgramCost, bpf_err, program_cost, read_counters, take_map};
use super::targets::Targets;
use crate::profile::ValueType;
use crate::unwind::CallGraph;

/// Faults per second per CPU the maps are sized for (a busy allocator faults thousands of
/// times a second; more than this overflows into the counted losses).
const FAULTS_PER_CPU_HZ: u64 = 5_000;

pub struct PageFaultCollector {
    /// Every `period`th fault is sampled.
    period: u64,
    counts: Option<[BpfHashMap<MapData, CpuKey, u64>; 2]>,
    copies: CopyRing,
    counters: Option<PerCpuArray<MapData, u64>>,
    links: Vec<PerfEventLinkId>,
    page_size: u64,
}

impl PageFaultCollector {
    pub fn new(period: u64) -> Result<Self, RecordError> {
        if period == 0 {
            return Err(RecordError::InvalidFaultPeriod);
        }
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        Ok(PageFaultCollector {
            period,
            counts: None,
            copies: CopyRing::new(FAULT_COPIES, CallGraph::fp()),
            counters: None,
            links: Vec::new(),
            page_size,
        })
    }
}

impl PageFaultCollector {
    /// Takes user stacks as `call_graph` says (frame pointers only by default).
    pub fn with_call_graph(mut self, call_graph: CallGraph) -> Self {
        self.copies = CopyRing::new(FAULT_COPIES, call_graph);
        self
    }
}

fn not_attached() -> RecordError {
    RecordError::NotAttached("page-faults")
}

impl Collector for PageFaultCollector {
    fn name(&self) -> &'static str {
        "faults"
    }

    fn describe(&self) -> String {
        format!(
            "page faults, every {} sampled",
            match self.period {
                1 => "one".to_string(),
                n => format!("{n}th"),
            }
        )
    }

    fn sample_types(&self) -> Vec<ValueType> {
        vec![
            ValueType::new("page_faults", "count"),
            ValueType::new("page_faults_space", "bytes"),
        ]
    }

    fn main_sample_type(&self) -> &'static str {
        "page_faults"
    }

    fn event_column(&self) -> usize {
        0
    }

    fn period(&self) -> Option<(ValueType, i64)> {
        Some((ValueType::new("page_faults", "count"), self.period as i64))
    }

    fn drain_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn stacks_per_interval(&self, sizing: &Sizing) -> u32 {
        sizing
            .entries_per_interval(FAULTS_PER_CPU_HZ / self.period)
            .saturating_mul(2)
    }

    fn configure<'a>(&'a self, sizing: &Sizing, loader: &mut EbpfLoader<'a>) {
        let entries = sizing.entries_per_interval(FAULTS_PER_CPU_HZ / self.period);
        for name in FAULT_COUNTS {
            loader.map_max_entries(name, entries);
        }
        self.copies
            .configure(sizing, FAULTS_PER_CPU_HZ / self.period, loader);
    }

    fn attach(&mut self, bpf: &mut Ebpf, _targets: &Targets) -> Result<(), RecordError> {
        self.counts = Some([
            BpfHashMap::try_from(take_map(bpf, FAULT_COUNTS[0])?)
                .map_err(bpf_err("opening FAULT_COUNTS_0"))?,
            BpfHashMap::try_from(take_map(bpf, FAULT_COUNTS[1])?)
                .map_err(bpf_err("opening FAULT_COUNTS_1"))?,
        ]);
        self.counters = Some(
            PerCpuArray::try_from(take_map(bpf, FAULT_COUNTERS)?)
                .map_err(bpf_err("opening FAULT_COUNTERS"))?,
        );
        self.copies.attach(bpf)?;
        let program: &mut PerfEvent = bpf
            .program_mut(FAULTS_PROGRAM)
            .ok_or_else(|| RecordError::MissingInObject(format!("program {FAULTS_PROGRAM}")))?
            .try_into()
            .map_err(bpf_err("the page_faults program"))?;
        program.load().map_err(RecordError::from_load)?;
        let cpus = aya::util::online_cpus()
            .map_err(|(path, e)| RecordError::Io(format!("reading {path}"), e))?;
        for cpu in cpus {
            let link = program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::PageFaults),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Period(self.period),
                    false,
                )
                .map_err(RecordError::from_load)?;
            self.links.push(link);
        }
        Ok(())
    }

    fn detach(&mut self, bpf: &mut Ebpf) {
        let links = std::mem::take(&mut self.links);
        if let Some(program) = bpf.program_mut(FAULTS_PROGRAM)
            && let Ok(program) = <&mut PerfEvent>::try_from(program)
        {
            for link in links {
                let _ = program.detach(link);
            }
        }
    }

    fn drain(&mut self, set: usize, out: &mut Vec<Drained>) -> Result<(), RecordError> {
        let (period, page) = (self.period as i64, self.page_size as i64);
        let counts = &mut self.counts.as_mut().ok_or_else(not_attached)?[set];
        drain_sample_counts(counts, out, |n| {
            vec![n as i64 * period, n as i64 * period * page]
        });
        self.copies
            .drain(out, |n| vec![n as i64 * period, n as i64 * period * page]);
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
        program_cost(bpf, FAULTS_PROGRAM).into_iter().collect()
    }

    fn check_invariants(&self, counters: &Counters) -> Vec<String> {
        sample_invariants("faults", counters)
    }
}
