//! The timeline's kernel types (`profiler trace`): one record per scheduler event that involves
//! a target thread — `sched_switch` when it leaves or takes a CPU (with its stacks when it
//! blocks), `sched_waking`/`sched_wakeup_new` when it is woken (with the waker) — and per CPU
//! sample of a target thread (with its stacks), each stamped with `bpf_ktime_get_boot_ns()`
//! (CLOCK_BOOTTIME, Perfetto's default clock). Records go through one ring buffer; stacks are
//! stored by content hash in an LRU map that user space reads while recording. A record that
//! does not fit in the ring buffer is counted per CPU and kind, never dropped silently.

use crate::counters;

/// Program names; the tp_btf ones attach to the tracepoint in `TIMELINE_TRACEPOINTS`.
pub const TIMELINE_SWITCH_PROGRAM: &str = "timeline_sched_switch";
pub const TIMELINE_WAKING_PROGRAM: &str = "timeline_sched_waking";
pub const TIMELINE_WAKEUP_NEW_PROGRAM: &str = "timeline_sched_wakeup_new";
/// A `perf_event` program on a cpu-clock event per CPU.
pub const TIMELINE_CPU_PROGRAM: &str = "timeline_cpu";

/// (program, tracepoint) pairs of the tp_btf programs.
pub const TIMELINE_TRACEPOINTS: [(&str, &str); 3] = [
    (TIMELINE_SWITCH_PROGRAM, "sched_switch"),
    (TIMELINE_WAKING_PROGRAM, "sched_waking"),
    (TIMELINE_WAKEUP_NEW_PROGRAM, "sched_wakeup_new"),
];

/// Global (`.rodata`): `task_struct` offsets the records need beyond `TaskOffsets`.
pub const TIMELINE_TASK_FIELDS: &str = "TIMELINE_TASK_FIELDS";
/// Ring buffer of `TimelineEvent`s; its size is set from the duration and the event rate.
pub const TIMELINE_EVENTS: &str = "TIMELINE_EVENTS";
/// `LruHashMap<u64, RawStack>`: stacks by content hash.
pub const TIMELINE_STACKS: &str = "TIMELINE_STACKS";
/// `PerCpuArray<u64>` indexed by `TimelineCounter`: per CPU, so losses are known by CPU.
pub const TIMELINE_COUNTERS: &str = "TIMELINE_COUNTERS";

/// Offsets of `task_struct.prio` and of the task's CPU (`task_struct.cpu` or
/// `thread_info.cpu`), from the kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskFields {
    pub prio: u32,
    pub cpu: u32,
    /// Nonzero when filled; without it records carry prio 120 and no target CPU.
    pub valid: u32,
    /// Nonzero when `cpu` is known.
    pub has_cpu: u32,
}

pub const KIND_SWITCH: u32 = 1;
pub const KIND_WAKING: u32 = 2;
/// A new task's first wake-up (`sched_wakeup_new`).
pub const KIND_WAKEUP_NEW: u32 = 3;
pub const KIND_SAMPLE: u32 = 4;

/// `flags` bit of a switch: `prev` was preempted.
pub const FLAG_PREEMPT: u32 = 1;
/// Target CPU unknown (no `task_struct.cpu` offset).
pub const NO_CPU: u32 = u32::MAX;

/// One record. For a switch, `a` is prev and `b` is next; for a waking, `a` is the waker (its
/// prio and comm are not filled) and `b` the wakee; for a sample, `a` is the sampled task.
/// 96 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimelineEvent {
    pub kind: u32,
    /// The CPU the program ran on.
    pub cpu: u32,
    /// CLOCK_BOOTTIME, ns.
    pub ts: u64,
    pub a_tid: u32,
    pub a_pid: u32,
    pub b_tid: u32,
    pub b_pid: u32,
    pub a_prio: i32,
    pub b_prio: i32,
    /// Switch: `prev_state` as the tracepoint passes it (`prev->__state`); waking: the CPU
    /// the wakee is queued on (`NO_CPU` when unknown).
    pub state: u32,
    pub flags: u32,
    /// Switch: prev's stacks when it blocks; sample: the sampled stacks (`NO_STACK` = none).
    pub user_stack: u64,
    pub kernel_stack: u64,
    pub a_comm: [u8; 16],
    pub b_comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<TimelineEvent>() == 96);

counters! {
    /// Per kind, every event of a target ends in `*_sent` or `*_lost` (the ring buffer was
    /// full). Every blocking switch-out of a target ends in one user-stack and one
    /// kernel-stack outcome, and every sample too.
    pub enum TimelineCounter {
        SwitchSent = "switch_sent",
        SwitchLost = "switch_lost",
        WakingSent = "waking_sent",
        WakingLost = "waking_lost",
        SampleSent = "sample_sent",
        SampleLost = "sample_lost",
        /// Switch-outs of a target thread that blocks (S, D, ...): stacks are taken.
        Blocking = "blocking",
        /// CPU samples of a target thread.
        Samples = "samples",
        UserStack = "user_stack",
        UserStackMissing = "user_stack_missing",
        UserStackMapFull = "user_stack_map_full",
        UserStackError = "user_stack_error",
        KernelStack = "kernel_stack",
        KernelStackMissing = "kernel_stack_missing",
        KernelStackMapFull = "kernel_stack_map_full",
        KernelStackError = "kernel_stack_error",
        /// A `task_struct` field could not be read (offsets missing or the read failed).
        TaskReadError = "task_read_error",
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers and byte arrays, no padding (sizes asserted).
    unsafe impl aya::Pod for super::TaskFields {}
    unsafe impl aya::Pod for super::TimelineEvent {}
}
