//! The scheduler watch's kernel types (`profiler watch`): counts per target thread from
//! `sched_switch` (voluntary and involuntary switches, the user frames it last blocked in) and
//! `sched_migrate_task` (migrations), and the run-queue latency of target threads — from the
//! wake-up (`sched_wakeup`, `sched_wakeup_new`) or the preemption that made a thread runnable to
//! the `sched_switch` that puts it on a CPU — as a log-linear histogram per CPU.
//!
//! Everything is cumulative, so user space reads deltas without clearing anything, except the
//! latency maximum, which cannot be subtracted: it is kept per map set, and user space reads and
//! zeroes the quiet set after each flip.

use crate::counters;

/// Program names (tp_btf); each attaches to the tracepoint named in its `_TRACEPOINT` const.
pub const WATCH_SWITCH_PROGRAM: &str = "watch_sched_switch";
pub const WATCH_WAKEUP_PROGRAM: &str = "watch_sched_wakeup";
pub const WATCH_WAKEUP_NEW_PROGRAM: &str = "watch_sched_wakeup_new";
pub const WATCH_MIGRATE_PROGRAM: &str = "watch_sched_migrate_task";

/// (program, tracepoint) pairs, in attach order.
pub const WATCH_PROGRAMS: [(&str, &str); 4] = [
    (WATCH_SWITCH_PROGRAM, "sched_switch"),
    (WATCH_WAKEUP_PROGRAM, "sched_wakeup"),
    (WATCH_WAKEUP_NEW_PROGRAM, "sched_wakeup_new"),
    (WATCH_MIGRATE_PROGRAM, "sched_migrate_task"),
];

/// Global (`.rodata`): nonzero to take the user frames a thread blocks in (`--detail`), a
/// short frame-pointer walk at every blocking switch-out of a target thread.
pub const WATCH_WAIT_FRAMES: &str = "WATCH_WAIT_FRAMES";

/// `HashMap<u32, ThreadCounts>`: per target thread (by tid), cumulative.
pub const WATCH_THREADS: &str = "WATCH_THREADS";
/// `HashMap<u32, u64>`: when a runnable target thread was queued (ns, by tid).
pub const WATCH_QUEUED: &str = "WATCH_QUEUED";
/// `PerCpuArray<LatencyHist>` with one slot: run-queue latencies, cumulative.
pub const WATCH_LATENCY: &str = "WATCH_LATENCY";
/// `PerCpuArray<u64>` with one slot per map set: the longest latency since user space last
/// zeroed that set.
pub const WATCH_LATENCY_MAX: &str = "WATCH_LATENCY_MAX";
/// `PerCpuArray<u64>` indexed by `WatchCounter`.
pub const WATCH_COUNTERS: &str = "WATCH_COUNTERS";

/// User frames kept per thread for its last blocking switch-out: enough to get past the libc
/// wrapper and a runtime's parking layer to the caller that waits.
pub const WAIT_FRAMES: usize = 8;

/// Counts of one thread. 104 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCounts {
    pub tgid: u32,
    /// Nonzero once the thread has left the CPU for the last time (it exited).
    pub exited: u32,
    /// Switch-outs while blocking (the kernel's `nvcsw`).
    pub voluntary: u64,
    /// Switch-outs while still runnable: preempted or yielding (`nivcsw`).
    pub involuntary: u64,
    pub migrations: u64,
    /// Frames of `wait_ips` in use (0 without `--detail`, or when the walk found none).
    pub wait_len: u32,
    pub _pad: u32,
    /// User frames, leaf first, at the last blocking switch-out.
    pub wait_ips: [u64; WAIT_FRAMES],
}

const _: () = assert!(core::mem::size_of::<ThreadCounts>() == 104);

/// Latency buckets: exact below 8 ns, then 8 per power of two up to 2^41 ns (about 36 min);
/// longer waits land in the last bucket (and are counted).
pub const LATENCY_SUB_BITS: u32 = 3;
pub const LATENCY_TOP_EXPONENT: u32 = 40;
pub const LATENCY_BUCKETS: usize =
    ((LATENCY_TOP_EXPONENT - LATENCY_SUB_BITS + 2) << LATENCY_SUB_BITS) as usize;

/// A run-queue latency histogram: counts per bucket, their number and sum. 2,512 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LatencyHist {
    pub buckets: [u64; LATENCY_BUCKETS],
    pub count: u64,
    pub sum_ns: u64,
}

const _: () = assert!(LATENCY_BUCKETS == 312);

/// The bucket of a latency of `ns` nanoseconds: `ns` below 8, then `(e - 2) * 8 + s` for
/// `ns` in `[2^e, 2^(e+1))`, `s` the 3 bits below the top one. Written without a loop or a
/// count-leading-zeros instruction, which the BPF target lacks. The same scheme as the trace
/// summary's `LatencyHistogram` (checked by a test there).
#[inline(always)]
pub const fn latency_bucket(ns: u64) -> usize {
    if ns < (1 << LATENCY_SUB_BITS) {
        return ns as usize;
    }
    let mut x = ns;
    let mut e = 0u32;
    if x >= 1 << 32 {
        x >>= 32;
        e += 32;
    }
    if x >= 1 << 16 {
        x >>= 16;
        e += 16;
    }
    if x >= 1 << 8 {
        x >>= 8;
        e += 8;
    }
    if x >= 1 << 4 {
        x >>= 4;
        e += 4;
    }
    if x >= 1 << 2 {
        x >>= 2;
        e += 2;
    }
    if x >= 1 << 1 {
        e += 1;
    }
    if e > LATENCY_TOP_EXPONENT {
        return LATENCY_BUCKETS - 1;
    }
    let sub = (ns >> (e - LATENCY_SUB_BITS)) & ((1 << LATENCY_SUB_BITS) - 1);
    (((e - LATENCY_SUB_BITS + 1) << LATENCY_SUB_BITS) as u64 + sub) as usize
}

counters! {
    /// Every switch-out of a target thread is `voluntary` or `involuntary` (exits count as
    /// voluntary, as the kernel counts them) and ends in `counted` or `threads_full`. Every
    /// switch-in of a queued target thread is one `latency`, and the histograms' counts add
    /// up to it.
    pub enum WatchCounter {
        SwitchOut = "switch_out",
        Voluntary = "voluntary",
        Involuntary = "involuntary",
        /// The thread's counts were updated (or created).
        Counted = "counted",
        /// `WATCH_THREADS` was full: the switch is not in the per-thread counts.
        ThreadsFull = "threads_full",
        /// A target thread left the CPU for the last time.
        Exited = "exited",
        /// Blocking switch-outs whose user frames were taken (`--detail`).
        WaitFrames = "wait_frames",
        /// Blocking switch-outs with no user frames (a kernel thread, or the walk failed).
        WaitFramesMissing = "wait_frames_missing",
        /// A target thread became runnable (wake-up, new thread, preemption).
        Queued = "queued",
        /// `WATCH_QUEUED` was full: that wait is not in the histogram.
        QueuedFull = "queued_full",
        /// A switch-in of a queued thread: its wait went into the histogram.
        Latency = "latency",
        /// A wait longer than the histogram's range (counted in its last bucket).
        LatencyOverflow = "latency_overflow",
        Migrations = "migrations",
        /// `WATCH_THREADS` was full: a migration is not in the per-thread counts.
        MigrationsUncounted = "migrations_uncounted",
        /// A `task_struct` field could not be read (offsets missing or the read failed).
        TaskReadError = "task_read_error",
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers, no padding (sizes asserted).
    unsafe impl aya::Pod for super::ThreadCounts {}
    unsafe impl aya::Pod for super::LatencyHist {}
}
