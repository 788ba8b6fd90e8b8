//! The timeline collector behind `profiler trace`: per-event records (scheduler events of
//! target threads, CPU samples with timestamps) through one ring buffer, stacks by content
//! hash in an LRU map (see `profiler_ebpf::timeline`). It produces no aggregated samples; the
//! consumer reads records, stacks and losses through a [`TimelineHandle`] while it records.
//!
//! Bounds: the ring buffer holds `duration × expected rate` records (capped at 64 MiB), so a
//! consumer that falls behind for a while (symbolizing a large binary the first time) loses
//! nothing up to that rate; what still does not fit is counted per CPU and kind in the kernel.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::PerfEvent;
use aya::programs::perf_event::{
    PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::programs::tp_btf::BtfTracePointLinkId;
use aya::{Ebpf, EbpfLoader};
use profiler_ebpf::stacks::{MAX_STACK_DEPTH, NO_STACK, RawStack};
use profiler_ebpf::timeline::{
    TIMELINE_COUNTERS, TIMELINE_CPU_PROGRAM, TIMELINE_EVENTS, TIMELINE_STACKS,
    TIMELINE_TASK_FIELDS, TIMELINE_TRACEPOINTS, TaskFields, TimelineCounter, TimelineEvent,
};

use super::RecordError;
use super::btf;
use super::collector::{Collector, Counters, Drained, Sizing, counter};
use super::cpu::MAX_FREQUENCY;
use super::kernel::{
    ProgramCost, attach_tracepoints, bpf_err, detach_tracepoints, program_cost, read_counters,
    take_map,
};
use super::targets::Targets;
use crate::profile::ValueType;

/// Context switches per second per CPU the ring buffer is sized for: search-server under load
/// switches about 20,600 times a second on 2 CPUs (measured); each switch of a target thread
/// tends to come with a waking.
const SWITCHES_PER_CPU_HZ: u64 = 20_000;
/// A record and the ring buffer's 8-byte header.
const RECORD_BYTES: u64 = size_of::<TimelineEvent>() as u64 + 8;
const MIN_RING_BYTES: u64 = 1 << 20;
/// 64 MiB, about 640k records: 16 s of the loaded search-server's events even if the consumer
/// read nothing; it reads every 100 ms, so a larger buffer would only hold kernel memory.
pub const MAX_RING_BYTES: u64 = 1 << 26;
/// Distinct stacks kept (about 1 KiB each); the consumer reads new ones within a drain.
const STACKS: u32 = 16_384;

/// Ring-buffer bytes for a window of `duration` on `cpus` CPUs sampled at `frequency` Hz: a
/// power of two (the kernel requires it), between 1 MiB and [`MAX_RING_BYTES`].
pub fn ring_bytes(cpus: u32, frequency: u64, duration: Duration) -> u32 {
    let per_second = u64::from(cpus) * (2 * SWITCHES_PER_CPU_HZ + frequency);
    let bytes = (per_second as f64 * duration.as_secs_f64() * RECORD_BYTES as f64) as u64;
    bytes
        .clamp(MIN_RING_BYTES, MAX_RING_BYTES)
        .next_power_of_two() as u32
}

/// Losses the kernel counted so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelLosses {
    /// Scheduler records that did not fit in the ring buffer, by CPU.
    pub sched_by_cpu: Vec<(u32, u64)>,
    pub samples: u64,
}

struct Maps {
    events: RingBuf<MapData>,
    stacks: BpfHashMap<MapData, u64, RawStack>,
    counters: PerCpuArray<MapData, u64>,
}

/// The consumer's side of the collector: records, stacks and losses, read while recording.
#[derive(Clone, Default)]
pub struct TimelineHandle(Arc<Mutex<Option<Maps>>>);

impl TimelineHandle {
    fn maps(&self) -> Result<MutexGuard<'_, Option<Maps>>, RecordError> {
        let guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            return Err(RecordError::NotAttached("timeline"));
        }
        Ok(guard)
    }

    /// Moves every record in the ring buffer to `out`; returns how many.
    pub fn read_events(&self, out: &mut Vec<TimelineEvent>) -> Result<usize, RecordError> {
        let mut guard = self.maps()?;
        let maps = guard.as_mut().expect("checked");
        let before = out.len();
        while let Some(item) = maps.events.next() {
            if item.len() < size_of::<TimelineEvent>() {
                continue;
            }
            // SAFETY: the programs write whole `TimelineEvent`s; read unaligned from the ring.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
        }
        Ok(out.len() - before)
    }

    /// The frames of stack `hash`, leaf first; None when it was evicted before it was read
    /// (the caller counts that).
    pub fn stack(&self, hash: u64) -> Result<Option<Vec<u64>>, RecordError> {
        if hash == NO_STACK {
            return Ok(None);
        }
        let guard = self.maps()?;
        let maps = guard.as_ref().expect("checked");
        Ok(maps.stacks.get(&hash, 0).ok().map(|s| {
            let len = (s.len as usize).min(MAX_STACK_DEPTH);
            s.ips[..len].to_vec()
        }))
    }

    pub fn losses(&self) -> Result<KernelLosses, RecordError> {
        let guard = self.maps()?;
        let maps = guard.as_ref().expect("checked");
        let per_cpu = |c: TimelineCounter| {
            maps.counters
                .get(&(c as u32), 0)
                .map_err(bpf_err(format!("reading counter {}", c.name())))
        };
        let switches = per_cpu(TimelineCounter::SwitchLost)?;
        let wakings = per_cpu(TimelineCounter::WakingLost)?;
        let samples = per_cpu(TimelineCounter::SampleLost)?;
        let cpus = aya::util::online_cpus().unwrap_or_default();
        Ok(KernelLosses {
            sched_by_cpu: switches
                .iter()
                .zip(wakings.iter())
                .enumerate()
                .map(|(i, (s, w))| (cpus.get(i).copied().unwrap_or(i as u32), s + w))
                .filter(|(_, n)| *n > 0)
                .collect(),
            samples: samples.iter().sum(),
        })
    }

    fn counters(&self) -> Result<Counters, RecordError> {
        let guard = self.maps()?;
        read_counters::<TimelineCounter>(&guard.as_ref().expect("checked").counters)
    }
}

pub struct TimelineCollector {
    frequency: u64,
    duration: Duration,
    /// The programs' global, kept here because the loader borrows it.
    fields: TaskFields,
    handle: TimelineHandle,
    tracepoints: Vec<(&'static str, BtfTracePointLinkId)>,
    perf_links: Vec<PerfEventLinkId>,
}

impl TimelineCollector {
    /// Samples stacks at `frequency` Hz per CPU; sizes the ring buffer for `duration`.
    pub fn new(frequency: u64, duration: Duration) -> Result<(Self, TimelineHandle), RecordError> {
        super::check_frequency(frequency)?;
        // Without the offsets, records carry prio 120 and no target CPU: a lesser trace, not
        // a broken one.
        let fields = btf::timeline_task_fields().unwrap_or_else(|e| {
            tracing::warn!("{e}: the trace shows every task at priority 120");
            TaskFields::default()
        });
        if fields.valid != 0 && fields.has_cpu == 0 {
            tracing::warn!("the kernel's BTF names no task CPU: wake-ups show the waker's CPU");
        }
        let handle = TimelineHandle::default();
        let c = TimelineCollector {
            frequency,
            duration,
            fields,
            handle: handle.clone(),
            tracepoints: Vec::new(),
            perf_links: Vec::new(),
        };
        Ok((c, handle))
    }

    /// Nanoseconds one CPU sample stands for.
    pub fn period_ns(&self) -> u64 {
        1_000_000_000 / self.frequency
    }
}

impl Collector for TimelineCollector {
    fn name(&self) -> &'static str {
        "timeline"
    }

    fn describe(&self) -> String {
        format!(
            "scheduler events from sched_switch, sched_waking and sched_wakeup_new, cpu-clock samples at {} Hz per CPU",
            self.frequency
        )
    }

    /// No aggregated samples: records go to the handle.
    fn sample_types(&self) -> Vec<ValueType> {
        Vec::new()
    }

    fn main_sample_type(&self) -> &'static str {
        "timeline"
    }

    fn event_column(&self) -> usize {
        0
    }

    fn period(&self) -> Option<(ValueType, i64)> {
        None
    }

    fn drain_interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn stacks_per_interval(&self, _sizing: &Sizing) -> u32 {
        0
    }

    fn configure<'a>(&'a self, sizing: &Sizing, loader: &mut EbpfLoader<'a>) {
        debug_assert!(self.frequency <= MAX_FREQUENCY);
        loader
            .override_global(TIMELINE_TASK_FIELDS, &self.fields, true)
            .map_max_entries(
                TIMELINE_EVENTS,
                ring_bytes(sizing.cpus, self.frequency, self.duration),
            )
            .map_max_entries(TIMELINE_STACKS, STACKS);
    }

    fn attach(&mut self, bpf: &mut Ebpf, _targets: &Targets) -> Result<(), RecordError> {
        *self.handle.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Maps {
            events: RingBuf::try_from(take_map(bpf, TIMELINE_EVENTS)?)
                .map_err(bpf_err("opening TIMELINE_EVENTS"))?,
            stacks: BpfHashMap::try_from(take_map(bpf, TIMELINE_STACKS)?)
                .map_err(bpf_err("opening TIMELINE_STACKS"))?,
            counters: PerCpuArray::try_from(take_map(bpf, TIMELINE_COUNTERS)?)
                .map_err(bpf_err("opening TIMELINE_COUNTERS"))?,
        });
        self.tracepoints = attach_tracepoints(bpf, &TIMELINE_TRACEPOINTS)?;
        let program: &mut PerfEvent = bpf
            .program_mut(TIMELINE_CPU_PROGRAM)
            .ok_or_else(|| RecordError::MissingInObject(format!("program {TIMELINE_CPU_PROGRAM}")))?
            .try_into()
            .map_err(bpf_err("the timeline_cpu program"))?;
        program.load().map_err(RecordError::from_load)?;
        let cpus = aya::util::online_cpus()
            .map_err(|(path, e)| RecordError::Io(format!("reading {path}"), e))?;
        for cpu in cpus {
            self.perf_links.push(
                program
                    .attach(
                        PerfEventConfig::Software(SoftwareEvent::CpuClock),
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        SamplePolicy::Frequency(self.frequency),
                        false,
                    )
                    .map_err(RecordError::from_load)?,
            );
        }
        Ok(())
    }

    fn detach(&mut self, bpf: &mut Ebpf) {
        detach_tracepoints(bpf, std::mem::take(&mut self.tracepoints));
        let links = std::mem::take(&mut self.perf_links);
        if let Some(program) = bpf.program_mut(TIMELINE_CPU_PROGRAM)
            && let Ok(program) = <&mut PerfEvent>::try_from(program)
        {
            for link in links {
                let _ = program.detach(link);
            }
        }
    }

    /// Records are read through the handle, not per map set.
    fn drain(&mut self, _set: usize, _out: &mut Vec<Drained>) -> Result<(), RecordError> {
        Ok(())
    }

    fn counters(&self) -> Result<Counters, RecordError> {
        self.handle.counters()
    }

    fn events_seen(&self) -> u64 {
        self.handle.counters().map_or(0, |c| {
            c.iter()
                .filter(|(n, _)| n.ends_with("_sent"))
                .map(|(_, v)| v)
                .sum()
        })
    }

    fn program_cost(&self, bpf: &Ebpf) -> Vec<ProgramCost> {
        TIMELINE_TRACEPOINTS
            .iter()
            .map(|(p, _)| *p)
            .chain([TIMELINE_CPU_PROGRAM])
            .filter_map(|p| program_cost(bpf, p))
            .collect()
    }

    fn check_invariants(&self, counters: &Counters) -> Vec<String> {
        let get = |name: &str| counter(counters, name);
        let sum = |names: &[&str]| names.iter().map(|n| get(n)).sum::<u64>();
        let walks = get("blocking") + get("samples");
        let mut bad = Vec::new();
        for (what, n) in [
            (
                "user-stack",
                sum(&[
                    "user_stack",
                    "user_stack_missing",
                    "user_stack_map_full",
                    "user_stack_error",
                ]),
            ),
            (
                "kernel-stack",
                sum(&[
                    "kernel_stack",
                    "kernel_stack_missing",
                    "kernel_stack_map_full",
                    "kernel_stack_error",
                ]),
            ),
        ] {
            if n != walks {
                bad.push(format!(
                    "timeline: {walks} stack walks but {n} {what} outcomes"
                ));
            }
        }
        let samples = get("samples");
        let sent = get("sample_sent") + get("sample_lost");
        if sent != samples {
            bad.push(format!(
                "timeline: {samples} samples but {sent} sent or lost"
            ));
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_buffer_grows_with_cpus_rate_and_duration_within_bounds() {
        let two_s = ring_bytes(2, 999, Duration::from_secs(2));
        assert!(two_s.is_power_of_two());
        // 2 CPUs × (40,000 + 999) events/s × 2 s × 104 B = 17 MB → 32 MiB.
        assert_eq!(two_s, 32 << 20);
        assert!(ring_bytes(8, 999, Duration::from_secs(2)) > two_s);
        assert_eq!(
            ring_bytes(1, 1, Duration::from_millis(1)) as u64,
            MIN_RING_BYTES
        );
        assert_eq!(
            ring_bytes(64, 999, Duration::from_secs(60)) as u64,
            MAX_RING_BYTES
        );
    }
}
