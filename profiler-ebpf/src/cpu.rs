//! The on-CPU collector's kernel types: a software cpu-clock perf event per online CPU runs
//! the `cpu` program, which counts samples per (thread, user stack, kernel stack) in the
//! active `CPU_COUNTS` map; with `--call-graph dwarf|auto` a sample may instead be sent, with a
//! copy of its user stack, through `CPU_COPIES` (see `unwind`).

use crate::counters;

/// Name of the on-CPU sampling program (a `perf_event` program).
pub const CPU_PROGRAM: &str = "cpu";
/// `HashMap<CpuKey, u64>`: samples per key, one map per set.
pub const CPU_COUNTS: [&str; 2] = ["CPU_COUNTS_0", "CPU_COUNTS_1"];
/// `RingBuf` of `unwind::CopyHeader` + stack bytes: samples to unwind in user space.
pub const CPU_COPIES: &str = "CPU_COPIES";
/// `PerCpuArray<u64>` indexed by `CpuCounter`.
pub const CPU_COUNTERS: &str = "CPU_COUNTERS";

/// Key of the count maps. 24 bytes, no padding (size checked below).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuKey {
    pub tgid: u32,
    pub tid: u32,
    /// Hash of the user stack in the set's `STACKS` map, or `NO_STACK`.
    pub user_stack: u64,
    /// Hash of the kernel stack, or `NO_STACK`.
    pub kernel_stack: u64,
}

const _: () = assert!(core::mem::size_of::<CpuKey>() == 24);

counters! {
    /// Every sample of a target ends in exactly one user-stack outcome, one kernel-stack
    /// outcome and one count outcome: `target_samples` = Σ user_* = Σ kernel_* = Σ count
    /// outcomes. The thread-name outcomes are extra (once per sample).
    pub enum CpuCounter {
        /// Samples whose tgid was a target's.
        TargetSamples = "target_samples",
        /// The user stack was stored (or was already there).
        UserStack = "user_stack",
        /// No user stack (0 frames, or -EFAULT): a thread with no user context.
        UserStackMissing = "user_stack_missing",
        /// The stacks map was full: the stack is lost.
        UserStackMapFull = "user_stack_map_full",
        /// Any other error from `bpf_get_stack` or the map insert.
        UserStackError = "user_stack_error",
        /// The kernel stack was stored (the sample interrupted kernel code).
        KernelStack = "kernel_stack",
        /// No kernel stack: normal for a sample taken in user mode.
        KernelStackAbsent = "kernel_stack_absent",
        KernelStackMapFull = "kernel_stack_map_full",
        KernelStackError = "kernel_stack_error",
        /// The sample was added to the count map.
        Counted = "counted",
        /// The count map was full: the sample is lost.
        CountsFull = "counts_full",
        /// Another insert error: the sample is lost.
        CountsError = "counts_error",
        /// The user stack was copied and the sample sent to the collector's copy ring (see
        /// `unwind`): both its user-stack and its count outcome.
        Copied = "copied",
        /// The copy ring was full: walked in the kernel instead (extra).
        CopyRingFull = "copy_ring_full",
        /// The user registers could not be read: walked in the kernel instead (extra).
        CopyRegsError = "copy_regs_error",
        /// The user stack could not be read: walked in the kernel instead (extra).
        CopyReadFault = "copy_read_fault",
        /// The stack ends before the asked size: a shorter copy was sent (extra).
        CopyShrunk = "copy_shrunk",
        /// Bytes of user stack copied, in all (extra; not a count of samples).
        CopyBytes = "copy_bytes",
        /// The thread-name map was full: the thread keeps a numeric label only.
        CommsFull = "comms_full",
        /// `bpf_get_current_comm` failed: the thread keeps a numeric label only.
        CommError = "comm_error",
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers, no padding (size asserted).
    unsafe impl aya::Pod for super::CpuKey {}
}
