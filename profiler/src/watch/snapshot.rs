//! What `watch` reads at the end of each interval, besides the scheduler collector's
//! [`SchedReading`]: the process's and its threads' accounting from `/proc` (CPU time, time
//! waiting on a run queue, states, faults, memory), the heap sampler's exact counters when
//! the target links it, and the allocator uprobes' counts when asked for. A figure that cannot be read (the process is gone) is `None`, not an
//! error.

use std::collections::BTreeMap;
use std::time::Instant;

use heap_sampler::Totals;

use crate::record::sched::SchedReading;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was read (after the drain).
    pub at: Option<Instant>,
    pub process: Option<ProcessStats>,
    /// Threads alive at the read, by tid.
    pub threads: BTreeMap<u32, ThreadStats>,
    pub sched: SchedReading,
    pub heap: Option<Totals>,
    /// Allocator calls counted by uprobes (`--alloc-probes`), since they were attached.
    pub probes: Option<ProbeCounts>,
}

/// What the allocator uprobes counted: every call, exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    /// malloc, calloc, realloc (to a size), the aligned allocators.
    pub allocs: u64,
    /// Bytes asked for by those calls.
    pub alloc_bytes: u64,
    /// free and realloc of a non-NULL pointer.
    pub frees: u64,
}

/// `/proc/PID/stat` and `/proc/PID/status`, and the process's CPU affinity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// CPUs it may run on (`sched_getaffinity`).
    pub cpus: Option<u32>,
    pub threads: u64,
    /// User and system CPU time of all its threads, exited ones included, in ns.
    pub user_ns: u64,
    pub system_ns: u64,
    pub minflt: u64,
    pub majflt: u64,
    pub rss_bytes: Option<u64>,
    pub anon_bytes: Option<u64>,
}

/// `/proc/PID/task/TID/stat` and `schedstat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadStats {
    pub name: String,
    /// As `ps` shows it: R, S, D, Z, ...
    pub state: char,
    /// The CPU it last ran on.
    pub last_cpu: Option<u32>,
    /// Time on a CPU (`sum_exec_runtime`), ns.
    pub oncpu_ns: u64,
    /// Time runnable but waiting for a CPU (`run_delay`), ns.
    pub runqueue_ns: u64,
}

impl ProcessStats {
    /// None when the process is gone (or never was).
    pub fn read(pid: u32) -> Option<Self> {
        let p = procfs::process::Process::new(pid as i32).ok()?;
        let stat = p.stat().ok()?;
        let status = p.status().ok();
        let tick_ns = 1_000_000_000 / procfs::ticks_per_second().max(1);
        Some(ProcessStats {
            cpus: allowed_cpus(pid),
            threads: stat.num_threads.max(0) as u64,
            user_ns: stat.utime * tick_ns,
            system_ns: stat.stime * tick_ns,
            minflt: stat.minflt,
            majflt: stat.majflt,
            rss_bytes: status.as_ref().and_then(|s| s.vmrss).map(|kb| kb * 1024),
            anon_bytes: status.as_ref().and_then(|s| s.rssanon).map(|kb| kb * 1024),
        })
    }
}

/// Every thread of `pid` that could be read.
pub fn read_threads(pid: u32) -> BTreeMap<u32, ThreadStats> {
    let mut out = BTreeMap::new();
    let Ok(p) = procfs::process::Process::new(pid as i32) else {
        return out;
    };
    let Ok(tasks) = p.tasks() else {
        return out;
    };
    for task in tasks.flatten() {
        // A thread that exits between the listing and the reads is simply not there.
        let (Ok(stat), Ok(sched)) = (task.stat(), task.schedstat()) else {
            continue;
        };
        out.insert(
            task.tid as u32,
            ThreadStats {
                name: stat.comm,
                state: stat.state,
                last_cpu: stat.processor.and_then(|c| u32::try_from(c).ok()),
                oncpu_ns: sched.sum_exec_runtime,
                runqueue_ns: sched.run_delay,
            },
        );
    }
    out
}

/// Number of CPUs `pid` may run on.
fn allowed_cpus(pid: u32) -> Option<u32> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(pid as i32, size_of::<libc::cpu_set_t>(), &mut set) };
    // SAFETY: `set` was filled by the kernel.
    (rc == 0).then(|| unsafe { libc::CPU_COUNT(&set) } as u32)
}

/// Where the heap sampler's registry is in the target, found once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapCounters {
    pid: u32,
    registry: u64,
}

impl HeapCounters {
    /// Ok(None) when the target's executable has no sampler (the common case); Err with a
    /// reason when it could not be examined.
    pub fn find(pid: u32) -> Result<Option<Self>, String> {
        match heap_sampler::remote::elf::find_registry(pid as i32) {
            Ok(Some(registry)) => Ok(Some(HeapCounters { pid, registry })),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn read(&self) -> Result<Totals, String> {
        heap_sampler::remote::read_totals(self.pid as i32, self.registry).map_err(|e| e.to_string())
    }
}
