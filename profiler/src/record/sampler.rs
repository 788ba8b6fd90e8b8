//! The kernel side seen from user space: load the embedded eBPF object, attach the `cpu`
//! program to one cpu-clock perf event per online CPU, and drain the count and stack maps.
//! Draining flips the programs to the other map set first, so the set being read is quiet and
//! can be cleared: stack-map collisions are bounded by one drain interval's stacks.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::Duration;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, StackTraceMap};
use aya::programs::PerfEvent;
use aya::programs::perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent};
use aya::{Ebpf, EbpfLoader};
use profiler_ebpf::{Comm, Counter, StackKey};

use super::RecordError;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler-ebpf"));

/// A stack as read from the kernel: instruction pointers, leaf first.
pub type Ips = Vec<u64>;

/// Samples drained so far: counts per (tid, user stack, kernel stack), stacks interned.
#[derive(Debug, Default)]
pub struct RawSamples {
    pub stacks: Vec<Ips>,
    stack_index: HashMap<Ips, usize>,
    /// (tid, user stack, kernel stack) → samples. A `None` stack was missing (see counters).
    pub counts: HashMap<(u32, Option<usize>, Option<usize>), u64>,
}

impl RawSamples {
    fn intern(&mut self, ips: Ips) -> usize {
        if let Some(&i) = self.stack_index.get(&ips) {
            return i;
        }
        self.stacks.push(ips.clone());
        self.stack_index.insert(ips, self.stacks.len() - 1);
        self.stacks.len() - 1
    }
}

/// No code lives in the first page: Linux never maps it (`vm.mmap_min_addr` is larger still).
const FIRST_CODE_ADDRESS: u64 = 0x1000;

/// A stack as kept: cut at the first return address inside the first page. A frame-pointer
/// walk reads such values (0, 1, ...) where a caller kept no frame pointer (glibc's malloc,
/// for one); they are never code, and what the walk finds past them is no caller either, so
/// they would only show as bogus root frames. The leaf (the sampled instruction pointer) is
/// always kept, so the sample is counted.
fn trim_stack(ips: impl Iterator<Item = u64>) -> Ips {
    let mut ips: Ips = ips.collect();
    if let Some(bogus) = ips.iter().skip(1).position(|&ip| ip < FIRST_CODE_ADDRESS) {
        ips.truncate(bogus + 1);
    }
    ips
}

/// What the `cpu` program cost in the kernel: how often it ran and for how long in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramCost {
    pub runs: u64,
    pub run_time: Duration,
}

/// Loaded and attached programs; detached when dropped.
pub struct Sampler {
    bpf: Ebpf,
    links: Vec<aya::programs::perf_event::PerfEventLinkId>,
    active: u32,
    /// Stack ids that failed to read back from a stack map (should stay 0).
    pub unreadable_stacks: u64,
    /// Keeps the kernel's run-time statistics for BPF programs on while recording, so the
    /// summary can say what sampling cost inside the kernel. None when the kernel refused.
    run_time_stats: Option<OwnedFd>,
}

impl Sampler {
    /// Loads the programs for `tgid` and starts sampling at `frequency` Hz on every CPU.
    pub fn attach(tgid: u32, frequency: u64) -> Result<Self, RecordError> {
        // Statistics cost two clock reads per program run; without them the profiler's own
        // kernel-side cost would be invisible. A kernel without them only loses the figure.
        let run_time_stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map_err(|e| tracing::debug!("BPF run-time statistics unavailable: {e}"))
            .ok();
        let mut bpf = EbpfLoader::new()
            .override_global(profiler_ebpf::TARGET_TGID, &tgid, true)
            .load(OBJECT)
            .map_err(|e| RecordError::from_load(&e))?;
        let program: &mut PerfEvent = bpf
            .program_mut(profiler_ebpf::CPU_PROGRAM)
            .ok_or_else(|| RecordError::Bpf("the eBPF object has no `cpu` program".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| RecordError::Bpf(e.to_string()))?;
        program.load().map_err(|e| RecordError::from_load(&e))?;
        let cpus = aya::util::online_cpus()
            .map_err(|(path, e)| RecordError::Io(format!("reading {path}"), e))?;
        let mut links = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let link = program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(frequency),
                    false,
                )
                .map_err(|e| RecordError::from_load(&e))?;
            links.push(link);
        }
        Ok(Sampler {
            bpf,
            links,
            active: 0,
            unreadable_stacks: 0,
            run_time_stats,
        })
    }

    /// Stops sampling (detaches every perf event); the maps stay readable.
    pub fn stop(&mut self) {
        let links = std::mem::take(&mut self.links);
        if let Some(program) = self.bpf.program_mut(profiler_ebpf::CPU_PROGRAM)
            && let Ok(program) = <&mut PerfEvent>::try_from(program)
        {
            for link in links {
                let _ = program.detach(link);
            }
        }
    }

    /// Moves the programs to the other map set, then drains the set they left into `out`.
    pub fn drain(&mut self, out: &mut RawSamples) -> Result<(), RecordError> {
        let drained = self.active;
        self.active ^= 1;
        let next = self.active;
        {
            let mut active: Array<&mut MapData, u32> =
                Array::try_from(self.map_mut(profiler_ebpf::ACTIVE_SET)?)
                    .map_err(|e| RecordError::Bpf(e.to_string()))?;
            active
                .set(0, next, 0)
                .map_err(|e| RecordError::Bpf(e.to_string()))?;
        }
        // A program that read the old selector just before the flip finishes within
        // microseconds (it runs with interrupts off); this wait covers it by a wide margin.
        std::thread::sleep(Duration::from_millis(2));
        self.drain_set(drained as usize, out)
    }

    /// Drains both sets: used once sampling has stopped.
    pub fn drain_all(&mut self, out: &mut RawSamples) -> Result<(), RecordError> {
        self.drain(out)?;
        self.drain(out)
    }

    fn drain_set(&mut self, set: usize, out: &mut RawSamples) -> Result<(), RecordError> {
        let counts_name = profiler_ebpf::CPU_COUNTS[set];
        let stacks_name = profiler_ebpf::STACKS[set];
        let entries: Vec<(StackKey, u64)> = {
            let counts: BpfHashMap<&MapData, StackKey, u64> =
                BpfHashMap::try_from(self.map(counts_name)?)
                    .map_err(|e| RecordError::Bpf(e.to_string()))?;
            counts.iter().filter_map(Result::ok).collect()
        };
        let mut resolved: HashMap<i32, Option<usize>> = HashMap::new();
        {
            let stacks = StackTraceMap::try_from(self.map(stacks_name)?)
                .map_err(|e| RecordError::Bpf(e.to_string()))?;
            for (key, _) in &entries {
                for id in [key.user_stack_id, key.kernel_stack_id] {
                    if id < 0 || resolved.contains_key(&id) {
                        continue;
                    }
                    let ips = match stacks.get(&(id as u32), 0) {
                        Ok(trace) => Some(trim_stack(trace.frames().iter().map(|f| f.ip))),
                        Err(_) => None,
                    };
                    resolved.insert(id, ips.map(|ips| out.intern(ips)));
                }
            }
        }
        for (key, n) in &entries {
            let lookup = |id: i32, unreadable: &mut u64| {
                if id < 0 {
                    return None;
                }
                let r = resolved.get(&id).copied().flatten();
                if r.is_none() {
                    *unreadable += 1;
                }
                r
            };
            let user = lookup(key.user_stack_id, &mut self.unreadable_stacks);
            let kernel = lookup(key.kernel_stack_id, &mut self.unreadable_stacks);
            *out.counts.entry((key.tid, user, kernel)).or_default() += n;
        }
        {
            let mut counts: BpfHashMap<&mut MapData, StackKey, u64> =
                BpfHashMap::try_from(self.map_mut(counts_name)?)
                    .map_err(|e| RecordError::Bpf(e.to_string()))?;
            for (key, _) in &entries {
                let _ = counts.remove(key);
            }
        }
        let mut stacks = StackTraceMap::try_from(self.map_mut(stacks_name)?)
            .map_err(|e| RecordError::Bpf(e.to_string()))?;
        for id in resolved.keys() {
            let _ = stacks.remove(&(*id as u32));
        }
        Ok(())
    }

    /// Every counter, summed over CPUs, indexed by `Counter as usize`.
    pub fn counters(&self) -> Result<Vec<u64>, RecordError> {
        let counters: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map(profiler_ebpf::COUNTERS)?)
                .map_err(|e| RecordError::Bpf(e.to_string()))?;
        Counter::ALL
            .iter()
            .map(|&c| {
                counters
                    .get(&(c as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(|e| RecordError::Bpf(e.to_string()))
            })
            .collect()
    }

    /// Runs and total run time of the `cpu` program so far (on every CPU, for every process
    /// its events fired for); None without the kernel's run-time statistics.
    pub fn program_cost(&self) -> Option<ProgramCost> {
        self.run_time_stats.as_ref()?;
        let info = self.bpf.program(profiler_ebpf::CPU_PROGRAM)?.info().ok()?;
        Some(ProgramCost {
            runs: info.run_count(),
            run_time: info.run_time(),
        })
    }

    /// Samples seen for the target so far (cheap: one per-CPU array slot).
    pub fn samples_seen(&self) -> u64 {
        self.counters()
            .map(|c| c[Counter::TargetSamples as usize])
            .unwrap_or(0)
    }

    /// Thread names seen, by tid.
    pub fn thread_names(&self) -> Result<HashMap<u32, String>, RecordError> {
        let comms: BpfHashMap<&MapData, u32, Comm> =
            BpfHashMap::try_from(self.map(profiler_ebpf::THREAD_COMMS)?)
                .map_err(|e| RecordError::Bpf(e.to_string()))?;
        Ok(comms
            .iter()
            .filter_map(Result::ok)
            .map(|(tid, comm)| (tid, String::from_utf8_lossy(comm.as_bytes()).into_owned()))
            .collect())
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map, RecordError> {
        self.bpf
            .map(name)
            .ok_or_else(|| RecordError::Bpf(format!("the eBPF object has no map {name}")))
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map, RecordError> {
        self.bpf
            .map_mut(name)
            .ok_or_else(|| RecordError::Bpf(format!("the eBPF object has no map {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_end_at_the_first_return_address_in_the_first_page() {
        let (a, b) = (0x5555_0000_1000, 0x7f00_0000_2000);
        assert_eq!(trim_stack([a, b, 0, 0].into_iter()), vec![a, b]);
        assert_eq!(trim_stack([a, 1, b].into_iter()), vec![a]);
        assert_eq!(trim_stack([a, 0xfff, b].into_iter()), vec![a]);
        assert_eq!(trim_stack([a, b].into_iter()), vec![a, b]);
        // A lone zero leaf is the sampled instruction pointer itself: kept, so it is counted.
        assert_eq!(trim_stack([0].into_iter()), vec![0]);
    }
}
