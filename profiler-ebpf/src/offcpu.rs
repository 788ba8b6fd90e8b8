//! The off-CPU collector's kernel types. `sched_switch` (tp_btf) records, for each target
//! thread switched out, the time, the wait state and its user and kernel stacks (by content
//! hash in `OFFCPU_STACKS`); when the thread is switched back in, the interval is charged to
//! those stacks in the active `OFFCPU_COUNTS` map, or, when shorter than `OFFCPU_MIN_NS`,
//! counted under the thread alone. `sched_waking` remembers who woke a blocked target thread
//! (its thread and stacks) once the thread has been blocked for at least `OFFCPU_WAKER_MIN_NS`,
//! and the charge then also goes to `OFFCPU_WAKE_COUNTS` keyed by blocked and waker stacks.
//!
//! With `--call-graph dwarf|auto`, a user stack that needs unwinding in user space (see
//! `unwind`) is not copied at switch-out, when the interval's length is unknown, but only once
//! it proved long: at switch-in the interval waits in `OFFCPU_PENDING`, and when the thread
//! leaves its system call (`sys_exit`, in its own context, before any user code ran) its user
//! registers and stack are exactly as they were at switch-out, so they are copied then and sent
//! with the interval through `OFFCPU_COPIES`. Registers that moved (a restarted call), a block
//! outside a system call, or a failed copy fall back to the frame-pointer stack taken at
//! switch-out.

use crate::counters;

/// Program names (tp_btf), attached to the tracepoints of the same name.
pub const SWITCH_PROGRAM: &str = "sched_switch";
pub const WAKING_PROGRAM: &str = "sched_waking";
/// Program name (tp_btf) attached to `sys_exit` with `--call-graph dwarf|auto`.
pub const SYS_EXIT_PROGRAM: &str = "offcpu_sys_exit";
/// The tracepoint it attaches to.
pub const SYS_EXIT_TRACEPOINT: &str = "sys_exit";

/// Global (`.rodata`): intervals shorter than this are counted but not charged to a stack.
pub const OFFCPU_MIN_NS: &str = "OFFCPU_MIN_NS";
/// Global (`.rodata`): nonzero to record wakers.
pub const OFFCPU_WAKERS: &str = "OFFCPU_WAKERS";
/// Global (`.rodata`): wakers are recorded for blocks at least this long when woken (a waker
/// costs two stack walks, so only blocks that matter get one).
pub const OFFCPU_WAKER_MIN_NS: &str = "OFFCPU_WAKER_MIN_NS";

/// Global (`.rodata`): with stack copies on, blocks at least this long are copied; shorter
/// ones keep the frame-pointer walk.
pub const OFFCPU_COPY_MIN_NS: &str = "OFFCPU_COPY_MIN_NS";

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
/// `HashMap<u32, OffPending>`: long intervals waiting for their thread's `sys_exit` to copy its
/// user stack, by tid.
pub const OFFCPU_PENDING: &str = "OFFCPU_PENDING";
/// `RingBuf` of `OffCopyHeader` + stack bytes.
pub const OFFCPU_COPIES: &str = "OFFCPU_COPIES";
/// `Array<OffCopyRecord>`, one slot per possible CPU: where a record is built (its own, so
/// that a cpu sample interrupting `sys_exit` on the same CPU does not overwrite it).
pub const OFFCPU_COPY_SCRATCH: &str = "OFFCPU_COPY_SCRATCH";
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

/// A thread off the CPU: since when, why, and where (stack hashes; 0 = none). With copies on,
/// also its user pc and sp and whether its user stack is to be copied at `sys_exit`. 56 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffStart {
    pub since_ns: u64,
    pub user_stack: u64,
    pub kernel_stack: u64,
    pub tgid: u32,
    pub state: u32,
    pub ip: u64,
    pub sp: u64,
    /// Nonzero: blocked in a system call, in code the call-graph mode wants copied.
    pub copy: u32,
    pub _pad: u32,
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

/// A long interval whose user stack is copied when its thread leaves the system call. 88 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffPending {
    /// The key it is charged under if the copy fails (its user stack: the frame-pointer walk).
    pub key: OffKey,
    pub ns: u64,
    /// User pc and sp at switch-out; the copy is taken only if they are unchanged.
    pub ip: u64,
    pub sp: u64,
    pub has_waker: u32,
    pub _pad: u32,
    pub waker: Waker,
}

/// What precedes the stack bytes of an off-CPU copy record. `regs` as in
/// `unwind::CopyHeader`; the stack bytes start at `regs[1]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OffCopyHeader {
    pub tgid: u32,
    pub tid: u32,
    pub regs: [u64; 4],
    pub ns: u64,
    /// Kernel stack hash in `OFFCPU_STACKS` (taken at switch-out), or `NO_STACK`.
    pub kernel_stack: u64,
    pub state: u32,
    pub has_waker: u32,
    pub waker: Waker,
    /// Bytes of stack that follow the header.
    pub stack_len: u32,
    pub _pad: u32,
}

pub const OFF_COPY_HEADER_SIZE: usize = core::mem::size_of::<OffCopyHeader>();

/// A record as built in the scratch slot; only `OFF_COPY_HEADER_SIZE + stack_len` are sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OffCopyRecord {
    pub header: OffCopyHeader,
    pub stack: [u8; crate::unwind::MAX_STACK_COPY],
}

const _: () = assert!(core::mem::size_of::<OffStart>() == 56);
const _: () = assert!(core::mem::size_of::<OffPending>() == 88);
const _: () = assert!(OFF_COPY_HEADER_SIZE == 8 + 32 + 8 + 8 + 8 + 24 + 8);
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
        /// A long interval of a blocked thread whose user stack is to be copied: it waits for
        /// the thread's `sys_exit` (its count outcome).
        Deferred = "deferred",
        /// The pending map was full: charged with the frame-pointer stack at once (extra).
        DeferFull = "defer_full",
        /// Every deferred interval ends in one of the next four outcomes (or is still pending
        /// when recording stops). Copied and sent with its user stack.
        CopySent = "copy_sent",
        /// Registers changed before `sys_exit` (a restarted call): frame-pointer stack.
        CopyMoved = "copy_moved",
        /// Registers or stack unreadable, or the ring full: frame-pointer stack.
        CopyFailed = "copy_failed",
        /// A second long interval came before `sys_exit`: the first keeps its frame-pointer stack.
        PendingReplaced = "pending_replaced",
        /// The charges of the fallbacks above (count outcomes of their own).
        FallbackCounted = "fallback_counted",
        FallbackCountsFull = "fallback_counts_full",
        /// Stacks that ended before the asked copy size: a shorter copy was sent (extra).
        CopyShrunk = "copy_shrunk",
        /// Bytes of user stack copied, in all (not a count of intervals).
        CopyBytes = "copy_bytes",
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
    unsafe impl aya::Pod for super::OffPending {}
}
