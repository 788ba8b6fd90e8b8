//! The scheduler watch's kernel types (`profiler watch`). One program, on `sched_switch`, does
//! all of it, and only when a target thread leaves a CPU: it counts the switch (voluntary or
//! not), and reads the kernel's own accounting of the thread (`task_struct.sched_info`:
//! `pcount` runs and `run_delay` ns waited on a run queue; `se.nr_migrations`). The difference
//! since the thread's previous switch-out is the wait before the run now ending — the
//! run-queue latency, from the wake-up or preemption that queued it to its switch-in — and
//! the migrations in between. Waits go into a log-linear histogram per CPU.
//!
//! Reading the kernel's accounting instead of stamping wake-ups saves the `sched_wakeup`
//! programs and a hash-map update per wake-up, and leaves other processes' switches with a
//! target test alone: watch must cost the target under 2%.
//!
//! Everything is cumulative, so user space reads deltas without clearing anything, except the
//! latency maximum, which cannot be subtracted: it is kept per map set, and user space reads and
//! zeroes the quiet set after each flip.

use crate::counters;

/// Program name (tp_btf), attached to `sched_switch`.
pub const WATCH_SWITCH_PROGRAM: &str = "watch_sched_switch";

/// (program, tracepoint) pairs, in attach order.
pub const WATCH_PROGRAMS: [(&str, &str); 1] = [(WATCH_SWITCH_PROGRAM, "sched_switch")];

/// Global (`.rodata`): nonzero to take the user frames a thread blocks in (`--detail`), a
/// short frame-pointer walk at every blocking switch-out of a target thread.
pub const WATCH_WAIT_FRAMES: &str = "WATCH_WAIT_FRAMES";
/// Global (`.rodata`): `SchedFields`, offsets in `task_struct` from the kernel's BTF.
pub const WATCH_SCHED_FIELDS: &str = "WATCH_SCHED_FIELDS";

/// `HashMap<u32, ThreadCounts>`: per target thread (by tid), cumulative.
pub const WATCH_THREADS: &str = "WATCH_THREADS";
/// `PerCpuArray<LatencyHist>` with one slot: run-queue latencies, cumulative.
pub const WATCH_LATENCY: &str = "WATCH_LATENCY";
/// `PerCpuArray<u64>` with one slot per map set: the longest latency since user space last
/// zeroed that set.
pub const WATCH_LATENCY_MAX: &str = "WATCH_LATENCY_MAX";
/// `PerCpuArray<u64>` indexed by `WatchCounter`.
pub const WATCH_COUNTERS: &str = "WATCH_COUNTERS";

/// Byte offsets in `task_struct` of the kernel's per-task scheduler accounting.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedFields {
    /// `sched_info.pcount`: runs on a CPU.
    pub pcount: u32,
    /// `sched_info.run_delay`: ns spent waiting on a run queue.
    pub run_delay: u32,
    /// `se.nr_migrations`.
    pub nr_migrations: u32,
    /// Nonzero when filled (the kernel has CONFIG_SCHED_INFO and BTF).
    pub valid: u32,
}

/// User frames kept per thread for its last blocking switch-out: enough to get past the libc
/// wrapper and a runtime's parking layer to the caller that waits.
pub const WAIT_FRAMES: usize = 8;

/// Counts of one thread. 136 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCounts {
    pub tgid: u32,
    /// Nonzero once the thread has left the CPU for the last time (it exited).
    pub exited: u32,
    /// The kernel's `pcount`, `run_delay` and `nr_migrations` at the last switch-out (valid
    /// once `seen` is nonzero).
    pub last_pcount: u64,
    pub last_run_delay: u64,
    pub last_migrations: u64,
    pub seen: u32,
    pub _pad0: u32,
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

const _: () = assert!(core::mem::size_of::<ThreadCounts>() == 136);

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
    /// counted one ends in exactly one of `first_seen`, `latency`, `latency_merged`,
    /// `no_run`, `task_read_error`; the histograms' counts add up to `latency`.
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
        /// The thread's first switch-out since attach: its accounting is the baseline.
        FirstSeen = "first_seen",
        /// One run since the last switch-out: its wait went into the histogram.
        Latency = "latency",
        /// Several runs since the last switch-out (switch-outs the program did not see): their
        /// waits are in `run_delay` together, not in the histogram.
        LatencyMerged = "latency_merged",
        /// No run counted since the last switch-out (the kernel without CONFIG_SCHED_INFO
        /// accounting for this task).
        NoRun = "no_run",
        /// A wait longer than the histogram's range (counted in its last bucket).
        LatencyOverflow = "latency_overflow",
        /// Migrations to another CPU (from `se.nr_migrations`).
        Migrations = "migrations",
        /// The accounting could not be read (offsets missing or the read failed).
        TaskReadError = "task_read_error",
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers, no padding (sizes asserted).
    unsafe impl aya::Pod for super::ThreadCounts {}
    unsafe impl aya::Pod for super::SchedFields {}
    unsafe impl aya::Pod for super::LatencyHist {}
}
