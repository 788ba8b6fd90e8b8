//! Types shared between the eBPF programs and user space. Everything here is `#[repr(C)]`
//! with explicit padding: map keys are hashed as raw bytes, so no byte may be left undefined.
//! Map and global names live here too, so both sides spell them the same way.
#![no_std]

/// Global (`.rodata`) holding the tgid to sample; set by user space with `override_global`.
/// 0 means "no target": tgid 0 is the idle task, which is never what a user asked for.
pub const TARGET_TGID: &str = "TARGET_TGID";

/// Array map with one `u32`: which of the two count/stack map sets the programs write to.
/// User space flips it, then drains and clears the other set, so collisions in the stack map
/// are bounded by the stacks of one drain interval instead of the whole recording.
pub const ACTIVE_SET: &str = "ACTIVE_SET";

/// `HashMap<StackKey, u64>`: samples per (thread, user stack, kernel stack), one per set.
pub const CPU_COUNTS: [&str; 2] = ["CPU_COUNTS_0", "CPU_COUNTS_1"];
/// `StackTrace` maps referenced by the stack ids in `CPU_COUNTS`, one per set.
pub const STACKS: [&str; 2] = ["STACKS_0", "STACKS_1"];
/// `HashMap<u32, Comm>`: the latest command name seen per thread id, so thread labels survive
/// the thread's exit.
pub const THREAD_COMMS: &str = "THREAD_COMMS";
/// `PerCpuArray<u64>` indexed by [`Counter`]: every outcome a program can have, counted.
pub const COUNTERS: &str = "COUNTERS";

/// Name of the on-CPU sampling program (a `perf_event` program).
pub const CPU_PROGRAM: &str = "cpu";

pub const CPU_COUNTS_MAX_ENTRIES: u32 = 16384;
pub const STACKS_MAX_ENTRIES: u32 = 16384;
pub const THREAD_COMMS_MAX_ENTRIES: u32 = 8192;

/// Deepest stack the kernel records (`PERF_MAX_STACK_DEPTH`). A user stack of exactly this
/// many frames was cut off.
pub const MAX_STACK_DEPTH: usize = 127;

/// `get_stackid` returns this errno when there is no stack to take: for the kernel stack of a
/// sample taken in user mode that is normal, for a user stack it means the walk failed.
pub const EFAULT: i64 = 14;
/// The stack hashed to a bucket that holds a different stack (collision): the stack is lost.
pub const EEXIST: i64 = 17;
/// The stack map has no free element left.
pub const ENOMEM: i64 = 12;

/// Key of the count maps. Four 4-byte fields: no padding exists, and the size is checked below.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackKey {
    pub tgid: u32,
    pub tid: u32,
    /// Stack id in the set's `STACKS` map, or negative (-errno) when there is none.
    pub user_stack_id: i32,
    /// Stack id in the set's `STACKS` map, or negative (-errno) when there is none.
    pub kernel_stack_id: i32,
}

const _: () = assert!(core::mem::size_of::<StackKey>() == 16);

/// A thread's command name as the kernel keeps it (NUL-padded, at most 15 bytes + NUL).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comm(pub [u8; 16]);

const _: () = assert!(core::mem::size_of::<Comm>() == 16);

impl Comm {
    /// The name up to the first NUL.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        &self.0[..end]
    }
}

/// Indexes into `COUNTERS`. Every sample of the target ends in exactly one user-stack outcome
/// and one kernel-stack outcome, and in one count outcome.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Samples whose tgid was the target's.
    TargetSamples = 0,
    /// The user stack was recorded.
    UserStack,
    /// No user stack (-EFAULT): e.g. the thread was exiting or has no user context.
    UserStackMissing,
    /// The user stack collided with a different stack in the stack map (-EEXIST).
    UserStackCollision,
    /// The stack map had no room (-ENOMEM).
    UserStackMapFull,
    /// Any other error from `get_stackid` for the user stack.
    UserStackError,
    /// The kernel stack was recorded (the sample interrupted kernel code).
    KernelStack,
    /// No kernel stack (-EFAULT): normal for a sample taken in user mode.
    KernelStackAbsent,
    /// The kernel stack collided in the stack map (-EEXIST).
    KernelStackCollision,
    /// The stack map had no room for the kernel stack (-ENOMEM).
    KernelStackMapFull,
    /// Any other error from `get_stackid` for the kernel stack.
    KernelStackError,
    /// The sample was added to the count map.
    Counted,
    /// The count map was full: the sample is lost.
    CountsFull,
    /// The thread-name map was full: the thread keeps a numeric label only.
    CommsFull,
}

impl Counter {
    pub const COUNT: u32 = Counter::CommsFull as u32 + 1;

    pub const ALL: [Counter; Counter::COUNT as usize] = [
        Counter::TargetSamples,
        Counter::UserStack,
        Counter::UserStackMissing,
        Counter::UserStackCollision,
        Counter::UserStackMapFull,
        Counter::UserStackError,
        Counter::KernelStack,
        Counter::KernelStackAbsent,
        Counter::KernelStackCollision,
        Counter::KernelStackMapFull,
        Counter::KernelStackError,
        Counter::Counted,
        Counter::CountsFull,
        Counter::CommsFull,
    ];

    /// Stable snake_case name, used in capture comments and summaries.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::TargetSamples => "target_samples",
            Counter::UserStack => "user_stack",
            Counter::UserStackMissing => "user_stack_missing",
            Counter::UserStackCollision => "user_stack_collision",
            Counter::UserStackMapFull => "user_stack_map_full",
            Counter::UserStackError => "user_stack_error",
            Counter::KernelStack => "kernel_stack",
            Counter::KernelStackAbsent => "kernel_stack_absent",
            Counter::KernelStackCollision => "kernel_stack_collision",
            Counter::KernelStackMapFull => "kernel_stack_map_full",
            Counter::KernelStackError => "kernel_stack_error",
            Counter::Counted => "counted",
            Counter::CountsFull => "counts_full",
            Counter::CommsFull => "comms_full",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are `#[repr(C)]`, made only of integers, with no padding (sizes asserted).
    unsafe impl aya::Pod for super::StackKey {}
    unsafe impl aya::Pod for super::Comm {}
}
