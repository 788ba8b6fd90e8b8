//! The target set: which processes the programs work for. A `TARGETS` map of tgids (so
//! several pids can be followed, and their descendants added as they fork), or every process
//! with `ALL_PROCESSES`. Process lifecycle events (fork, exec, exit of followed processes) go to
//! user space through a ring buffer, so it can snapshot a new program's memory maps while it
//! lives (symbolization needs them after the process is gone).

use crate::{Comm, counters};

/// `HashMap<u32, u32>`: tgid → `TargetFlags` bits.
pub const TARGETS: &str = "TARGETS";
/// Global (`.rodata`): nonzero means every process is a target (`record -a`).
pub const ALL_PROCESSES: &str = "ALL_PROCESSES";
/// Global (`.rodata`): the profiler's own tgid, never a target (not even with `-a`).
pub const SELF_TGID: &str = "SELF_TGID";
/// Global (`.rodata`): `TaskOffsets` from the running kernel's BTF (Rust eBPF has no CO-RE).
pub const TASK_OFFSETS: &str = "TASK_OFFSETS";
/// Ring buffer of `ProcessEvent`s.
pub const PROCESS_EVENTS: &str = "PROCESS_EVENTS";
/// `PerCpuArray<u64>` indexed by `TargetCounter`.
pub const TARGET_COUNTERS: &str = "TARGET_COUNTERS";

/// Program names (tp_btf), each attached to the tracepoint of the same name.
pub const FORK_PROGRAM: &str = "sched_process_fork";
pub const EXEC_PROGRAM: &str = "sched_process_exec";
pub const EXIT_PROGRAM: &str = "sched_process_exit";

/// A target's children (new processes, not threads) become targets as they fork.
pub const FOLLOW_CHILDREN: u32 = 1;

/// Byte offsets of `task_struct` fields the programs read, found by user space in
/// `/sys/kernel/btf/vmlinux`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    pub pid: u32,
    pub tgid: u32,
    pub comm: u32,
    /// Nonzero once user space filled the struct: programs that need offsets do nothing
    /// (and count it) when it is 0.
    pub valid: u32,
}

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessEventKind {
    /// A followed process forked a child process, now a target too.
    Fork = 1,
    /// A target replaced its program (`execve`): its maps changed.
    Exec = 2,
    /// A target's main thread exited.
    Exit = 3,
}

/// One lifecycle event. 40 bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessEvent {
    /// `ProcessEventKind` as u32.
    pub kind: u32,
    pub tgid: u32,
    /// For `Fork`: the parent's tgid; otherwise 0.
    pub parent_tgid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_boot_ns`.
    pub time_ns: u64,
    pub comm: Comm,
}

const _: () = assert!(core::mem::size_of::<ProcessEvent>() == 40);

counters! {
    /// Outcomes of the lifecycle programs. Each fork of a followed process ends in exactly
    /// one of `child_followed`, `targets_full`, `targets_error`; each event sent to user space
    /// in `event_sent` or `events_lost`.
    pub enum TargetCounter {
        ChildFollowed = "child_followed",
        TargetsFull = "targets_full",
        TargetsError = "targets_error",
        TargetExec = "target_exec",
        TargetExit = "target_exit",
        EventSent = "event_sent",
        /// The ring buffer was full: user space missed an event (it still refreshes every
        /// target's maps on each drain).
        EventsLost = "events_lost",
        /// `task_struct` fields could not be read (offsets missing or the read failed).
        TaskReadError = "task_read_error",
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers, no padding (sizes asserted or all-u32).
    unsafe impl aya::Pod for super::TaskOffsets {}
    unsafe impl aya::Pod for super::ProcessEvent {}
}
