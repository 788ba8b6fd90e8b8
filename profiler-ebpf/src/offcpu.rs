//! The off-CPU collector's kernel types. `sched_switch` (tp_btf) records, for each target
//! thread switched out, the time, the wait state and its user and kernel stacks (by content
//! hash in `OFFCPU_STACKS`); when the thread is switched back in, the interval is charged to
//! those stacks in the active `OFFCPU_COUNTS` map, or, when shorter than `OFFCPU_MIN_NS`,
//! counted under the thread alone. `sched_waking` remembers who woke a blocked target thread
//! (its thread and stacks) once the thread has been blocked for at least `OFFCPU_WAKER_MIN_NS`,
//! and the charge then also goes to `OFFCPU_WAKE_COUNTS` keyed by blocked and waker stacks.

use crate::counters;

/// Program names (tp_btf), attached to the tracepoints of the same name.
pub const SWITCH_PROGRAM: &str = "sched_switch";
pub const WAKING_PROGRAM: &str = "sched_waking";

/// Global (`.rodata`): intervals shorter than this are counted but not charged to a stack.
pub const OFFCPU_MIN_NS: &str = "OFFCPU_MIN_NS";
/// Global (`.rodata`): nonzero to record wakers.
pub const OFFCPU_WAKERS: &str = "OFFCPU_WAKERS";
/// Global (`.rodata`): wakers are recorded for blocks at least this long when woken (a waker
/// costs two stack walks, so only blocks that matter get one).
pub const OFFCPU_WAKER_MIN_NS: &str = "OFFCPU_WAKER_MIN_NS";

/// `HashMap<u32, OffStart>`: target threads off the CPU now, by tid.
pub const OFFCPU_START: &str = "OFFCPU_START";
/// `HashMap<u32, Waker>`: who woke a blocked target thread, by the wakee's tid.
pub const OFFCPU_WAKER: &str = "OFFCPU_WAKER";
/// `HashMap<OffKey, OffValue>`, one per map set.
pub const OFFCPU_COUNTS: [&str; 2] = ["OFFCPU_COUNTS_0", "OFFCPU_COUNTS_1"];
/// `HashMap<WakeKey, OffValue>`, one per map set.
pub const OFFCPU_WAKE_COUNTS: [&str; 2] = ["OFFCPU_WAKE_COUNTS_0", "OFFCPU_WAKE_COUNTS_1"];
/// `LruHashMap<u64, RawStack>`: stacks by content hash. Not double-buffered: a stack taken at
/// switch-out is charged at switch-in, possibly after a flip, so it must outlive the set.
/// Recently used stacks stay; user space reads them by hash without removing them.
pub const OFFCPU_STACKS: &str = "OFFCPU_STACKS";
/// `PerCpuArray<u64>` indexed by `OffCpuCounter`.
pub const OFFCPU_COUNTERS: &str = "OFFCPU_COUNTERS";

/// Wait states, as labels: preempted or yielding while runnable (scheduler latency),
/// interruptible sleep, uninterruptible sleep (disk and other I/O), anything else.
pub const STATE_RUNNABLE: u32 = 0;
pub const STATE_SLEEPING: u32 = 1;
pub const STATE_DISK: u32 = 2;
pub const STATE_OTHER: u32 = 3;

/// One letter per state, as `ps` shows them.
pub const fn state_letter(state: u32) -> &'static str {
    match state {
        STATE_RUNNABLE => "R",
        STATE_SLEEPING => "S",
        STATE_DISK => "D",
        _ => "other",
    }
}

/// A thread off the CPU: since when, why, and where (stack hashes; 0 = none). 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffStart {
    pub since_ns: u64,
    pub user_stack: u64,
    pub kernel_stack: u64,
    pub tgid: u32,
    pub state: u32,
}

/// Who woke a thread. 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Waker {
    pub tgid: u32,
    pub tid: u32,
    pub user_stack: u64,
    pub kernel_stack: u64,
}

/// Key of the count maps. 32 bytes, no padding bytes left undefined.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffKey {
    pub tgid: u32,
    pub tid: u32,
    pub user_stack: u64,
    pub kernel_stack: u64,
    pub state: u32,
    pub _pad: u32,
}

/// Key of the waker count maps. 56 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WakeKey {
    pub blocked: OffKey,
    pub waker: Waker,
}

/// Time off the CPU and the number of intervals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffValue {
    pub ns: u64,
    pub count: u64,
}

const _: () = assert!(core::mem::size_of::<OffStart>() == 32);
const _: () = assert!(core::mem::size_of::<Waker>() == 24);
const _: () = assert!(core::mem::size_of::<OffKey>() == 32);
const _: () = assert!(core::mem::size_of::<WakeKey>() == 56);
const _: () = assert!(core::mem::size_of::<OffValue>() == 16);

counters! {
    /// Every switch-out of a target is `preempted`, or ends in one user-stack outcome and one
    /// kernel-stack outcome; each also ends in one start outcome (`started` or
    /// `start_full`/`start_error`). Every switch-in of a
    /// thread with a start ends in `charged`, `short` or a count loss. Wakeups of blocked
    /// targets end in `waker_taken`, `waker_short` or `waker_full`.
    pub enum OffCpuCounter {
        SwitchOut = "switch_out",
        /// Preempted while runnable: charged to the thread, no stacks walked (the place a
        /// thread is preempted at is an on-CPU sample, not a wait site).
        Preempted = "preempted",
        UserStack = "user_stack",
        UserStackMissing = "user_stack_missing",
        UserStackMapFull = "user_stack_map_full",
        UserStackError = "user_stack_error",
        KernelStack = "kernel_stack",
        KernelStackMissing = "kernel_stack_missing",
        KernelStackMapFull = "kernel_stack_map_full",
        KernelStackError = "kernel_stack_error",
        Started = "started",
        StartFull = "start_full",
        StartError = "start_error",
        SwitchIn = "switch_in",
        /// Charged to its stacks (at least the minimum).
        Charged = "charged",
        /// Shorter than the minimum: charged to the thread without stacks.
        Short = "short",
        /// The interval was added to a count map.
        Counted = "counted",
        CountsFull = "counts_full",
        CountsError = "counts_error",
        /// `next`'s pid could not be read (offsets missing or the read failed).
        TaskReadError = "task_read_error",
        WakeupOfBlocked = "wakeup_of_blocked",
        WakerTaken = "waker_taken",
        /// Woken before the waker minimum: no waker stacks taken.
        WakerShort = "waker_short",
        WakerFull = "waker_full",
        WakeCounted = "wake_counted",
        WakeCountsFull = "wake_counts_full",
        CommsFull = "comms_full",
        CommError = "comm_error",
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers, no padding (sizes asserted).
    unsafe impl aya::Pod for super::OffStart {}
    unsafe impl aya::Pod for super::Waker {}
    unsafe impl aya::Pod for super::OffKey {}
    unsafe impl aya::Pod for super::WakeKey {}
    unsafe impl aya::Pod for super::OffValue {}
}
