//! The scheduler collector behind `profiler watch`: per-thread switch and migration counts,
//! the user frames a thread last blocked in, and the run-queue latency histogram, all kept
//! cumulatively in the kernel by one `sched_switch` program that reads the kernel's own
//! per-task accounting (see `profiler_ebpf::sched`). It produces no samples: each drain
//! leaves a [`SchedReading`] in a [`SchedHandle`] the consumer holds, which turns consecutive
//! readings into per-interval figures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::tp_btf::BtfTracePointLinkId;
use aya::{Ebpf, EbpfLoader};
use profiler_ebpf::sched::{
    LATENCY_BUCKETS, LatencyHist, SchedFields, ThreadCounts, WATCH_COUNTERS, WATCH_LATENCY,
    WATCH_LATENCY_MAX, WATCH_PROGRAMS, WATCH_SCHED_FIELDS, WATCH_THREADS, WATCH_WAIT_FRAMES,
    WatchCounter,
};

use super::RecordError;
use super::collector::{Collector, Counters, Drained, Sizing, counter};
use super::kernel::{
    ProgramCost, attach_tracepoints, bpf_err, detach_tracepoints, program_cost, read_counters,
    take_map,
};
use super::targets::Targets;
use crate::profile::ValueType;

/// Target threads the maps hold at once (threads that exited are removed at each drain).
const THREADS: u32 = 16_384;

/// What the kernel counted for one thread, cumulatively since the watch started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadSched {
    pub pid: u32,
    pub voluntary: u64,
    pub involuntary: u64,
    pub migrations: u64,
    /// User frames (leaf first) at its last blocking switch-out; empty without `--detail`.
    pub wait_ips: Vec<u64>,
    pub exited: bool,
}

/// One read of the kernel's counts, right after a drain.
#[derive(Debug, Clone, Default)]
pub struct SchedReading {
    /// Per live thread (threads seen exiting are in `departed` from the next reading on).
    pub threads: BTreeMap<u32, ThreadSched>,
    /// Sums of the threads removed after they exited, per process.
    pub departed: BTreeMap<u32, ThreadSched>,
    /// Run-queue latencies so far, by bucket (`profiler_ebpf::sched::latency_bucket`).
    pub latency_buckets: Vec<u64>,
    pub latency_count: u64,
    pub latency_sum_ns: u64,
    /// The longest latency since the previous drain.
    pub latency_max_ns: u64,
}

/// The consumer's side: the newest reading, taken once.
#[derive(Debug, Clone, Default)]
pub struct SchedHandle(Arc<Mutex<Option<SchedReading>>>);

impl SchedHandle {
    /// The reading of the last drain, if there was one since the last take.
    pub fn take(&self) -> Option<SchedReading> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

pub struct SchedCollector {
    /// The programs' globals, kept here because the loader borrows them.
    wait_frames: u32,
    fields: SchedFields,
    maps: Option<Maps>,
    links: Vec<(&'static str, BtfTracePointLinkId)>,
    handle: SchedHandle,
    /// Exited threads already folded into `departed`, per process.
    departed: BTreeMap<u32, ThreadSched>,
}

struct Maps {
    threads: BpfHashMap<MapData, u32, ThreadCounts>,
    latency: PerCpuArray<MapData, LatencyHist>,
    latency_max: PerCpuArray<MapData, u64>,
    counters: PerCpuArray<MapData, u64>,
}

impl SchedCollector {
    /// `wait_frames`: also take the user frames threads block in (`--detail`).
    pub fn new(wait_frames: bool) -> (Self, SchedHandle) {
        let handle = SchedHandle::default();
        // Without the offsets the program still counts switches; latencies and migrations
        // are then missing (and counted as read errors).
        let fields = super::btf::watch_sched_fields().unwrap_or_else(|e| {
            tracing::warn!("{e}: no run-queue latency or migrations");
            SchedFields::default()
        });
        let c = SchedCollector {
            wait_frames: u32::from(wait_frames),
            fields,
            maps: None,
            links: Vec::new(),
            handle: handle.clone(),
            departed: BTreeMap::new(),
        };
        (c, handle)
    }

    fn maps(&self) -> Result<&Maps, RecordError> {
        self.maps.as_ref().ok_or(RecordError::NotAttached("sched"))
    }

    fn read(&mut self, set: usize) -> Result<SchedReading, RecordError> {
        let maps = self.maps()?;
        let hist = maps
            .latency
            .get(&0, 0)
            .map_err(bpf_err("reading WATCH_LATENCY"))?;
        let mut reading = SchedReading {
            latency_buckets: vec![0; LATENCY_BUCKETS],
            ..SchedReading::default()
        };
        for h in hist.iter() {
            for (sum, n) in reading.latency_buckets.iter_mut().zip(h.buckets.iter()) {
                *sum += n;
            }
            reading.latency_count += h.count;
            reading.latency_sum_ns += h.sum_ns;
        }
        let maxima = maps
            .latency_max
            .get(&(set as u32), 0)
            .map_err(bpf_err("reading WATCH_LATENCY_MAX"))?;
        reading.latency_max_ns = maxima.iter().copied().max().unwrap_or(0);
        let cpus = maxima.len();
        let entries: Vec<(u32, ThreadCounts)> =
            maps.threads.iter().filter_map(Result::ok).collect();
        let maps = self.maps.as_mut().expect("checked above");
        // Nothing writes the quiet set's maximum now: zero it for its next turn.
        maps.latency_max
            .set(
                set as u32,
                PerCpuValues::try_from(vec![0u64; cpus]).expect("one per CPU"),
                0,
            )
            .map_err(bpf_err("clearing WATCH_LATENCY_MAX"))?;
        for (tid, c) in entries {
            let t = ThreadSched {
                pid: c.tgid,
                voluntary: c.voluntary,
                involuntary: c.involuntary,
                migrations: c.migrations,
                wait_ips: c.wait_ips[..(c.wait_len as usize).min(c.wait_ips.len())].to_vec(),
                exited: c.exited != 0,
            };
            if t.exited {
                // Its counts are final (a thread's last switch-out is its last event): keep
                // them per process, and free the slot. This reading still shows the thread.
                let _ = maps.threads.remove(&tid);
                let d = self.departed.entry(t.pid).or_default();
                d.pid = t.pid;
                d.voluntary += t.voluntary;
                d.involuntary += t.involuntary;
                d.migrations += t.migrations;
            }
            reading.threads.insert(tid, t);
        }
        reading.departed = self.departed.clone();
        // A thread that exited is in `threads` once, with `exited`, and in `departed`: the
        // consumer counts one or the other (see `SchedReading::totals`).
        Ok(reading)
    }
}

impl SchedReading {
    /// Switches and migrations of process `pid` so far, exited threads included.
    pub fn totals(&self, pid: u32) -> (u64, u64, u64) {
        let mut t = self
            .departed
            .get(&pid)
            .map_or((0, 0, 0), |d| (d.voluntary, d.involuntary, d.migrations));
        for th in self.threads.values().filter(|t| t.pid == pid && !t.exited) {
            t.0 += th.voluntary;
            t.1 += th.involuntary;
            t.2 += th.migrations;
        }
        t
    }
}

impl Collector for SchedCollector {
    fn name(&self) -> &'static str {
        "sched"
    }

    fn describe(&self) -> String {
        format!(
            "switches, migrations and run-queue latency from sched_switch and the kernel's scheduler accounting{}",
            if self.wait_frames != 0 {
                ", with the frames threads block in"
            } else {
                ""
            }
        )
    }

    /// No samples: the readings go to the handle.
    fn sample_types(&self) -> Vec<ValueType> {
        Vec::new()
    }

    fn main_sample_type(&self) -> &'static str {
        "sched"
    }

    fn event_column(&self) -> usize {
        0
    }

    fn period(&self) -> Option<(ValueType, i64)> {
        None
    }

    fn drain_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn stacks_per_interval(&self, _sizing: &Sizing) -> u32 {
        0
    }

    fn configure<'a>(&'a self, _sizing: &Sizing, loader: &mut EbpfLoader<'a>) {
        loader
            .override_global(WATCH_WAIT_FRAMES, &self.wait_frames, true)
            .override_global(WATCH_SCHED_FIELDS, &self.fields, true)
            .map_max_entries(WATCH_THREADS, THREADS);
    }

    fn attach(&mut self, bpf: &mut Ebpf, _targets: &Targets) -> Result<(), RecordError> {
        self.maps = Some(Maps {
            threads: BpfHashMap::try_from(take_map(bpf, WATCH_THREADS)?)
                .map_err(bpf_err("opening WATCH_THREADS"))?,
            latency: PerCpuArray::try_from(take_map(bpf, WATCH_LATENCY)?)
                .map_err(bpf_err("opening WATCH_LATENCY"))?,
            latency_max: PerCpuArray::try_from(take_map(bpf, WATCH_LATENCY_MAX)?)
                .map_err(bpf_err("opening WATCH_LATENCY_MAX"))?,
            counters: PerCpuArray::try_from(take_map(bpf, WATCH_COUNTERS)?)
                .map_err(bpf_err("opening WATCH_COUNTERS"))?,
        });
        self.links = attach_tracepoints(bpf, &WATCH_PROGRAMS)?;
        Ok(())
    }

    fn detach(&mut self, bpf: &mut Ebpf) {
        detach_tracepoints(bpf, std::mem::take(&mut self.links));
    }

    fn drain(&mut self, set: usize, _out: &mut Vec<Drained>) -> Result<(), RecordError> {
        let reading = self.read(set)?;
        *self.handle.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(reading);
        Ok(())
    }

    fn counters(&self) -> Result<Counters, RecordError> {
        read_counters::<WatchCounter>(&self.maps()?.counters)
    }

    fn events_seen(&self) -> u64 {
        self.maps
            .as_ref()
            .and_then(|m| m.counters.get(&(WatchCounter::SwitchOut as u32), 0).ok())
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }

    fn program_cost(&self, bpf: &Ebpf) -> Vec<ProgramCost> {
        WATCH_PROGRAMS
            .iter()
            .filter_map(|(p, _)| program_cost(bpf, p))
            .collect()
    }

    fn check_invariants(&self, counters: &Counters) -> Vec<String> {
        let get = |name: &str| counter(counters, name);
        let out = get("switch_out");
        let mut bad = Vec::new();
        for (what, n) in [
            (
                "voluntary/involuntary",
                get("voluntary") + get("involuntary"),
            ),
            ("counts", get("counted") + get("threads_full")),
        ] {
            if n != out {
                bad.push(format!("sched: {out} switch-outs but {n} {what} outcomes"));
            }
        }
        let latencies = get("latency");
        let in_histogram: Option<u64> = self
            .maps
            .as_ref()
            .and_then(|m| m.latency.get(&0, 0).ok())
            .map(|per_cpu| per_cpu.iter().map(|h| h.count).sum());
        if let Some(n) = in_histogram
            && n != latencies
        {
            bad.push(format!(
                "sched: {latencies} latencies counted but {n} in the histogram"
            ));
        }
        bad
    }
}
