//! The heap collector's kernel types. Allocator entry points are probed (uprobes on libc's or
//! the binary's own `malloc` family, or the USDT probes of the `heap-sampler` allocator): every
//! call is counted exactly in per-CPU counters; allocations are sampled by bytes in the kernel
//! (a per-CPU countdown drawn from an exponential with mean the rate, as Go samples), and
//! only sampled ones take a stack, pair with their return (to learn the pointer), and enter
//! `HEAP_LIVE` until freed. A free costs one map lookup.

use crate::counters;

/// `Array<u64>`, `HEAP_EXP_SLOTS` entries: quantiles of an exponential whose mean is the
/// sampling rate (mean bytes between samples, Go's MemProfileRate)
/// (BPF has no floating point; user space fills it); a random slot is the next countdown.
pub const HEAP_EXP: &str = "HEAP_EXP";
pub const HEAP_EXP_SLOTS: u32 = 1024;
/// `PerCpuArray<i64>` with one slot: bytes left before the next sample on this CPU. The
/// exponential is memoryless, so one countdown per CPU samples like one per thread.
pub const HEAP_NEXT: &str = "HEAP_NEXT";
/// `HashMap<u32, Pending>`: sampled calls waiting for their return, by tid.
pub const HEAP_PENDING: &str = "HEAP_PENDING";
/// `HashMap<u64, Live>`: sampled allocations not freed yet, by address.
pub const HEAP_LIVE: &str = "HEAP_LIVE";
/// `HashMap<HeapKey, HeapValue>`, one per map set: sampled allocations per stack.
pub const HEAP_ALLOCS: [&str; 2] = ["HEAP_ALLOCS_0", "HEAP_ALLOCS_1"];
/// `LruHashMap<u64, RawStack>`: allocation stacks by content hash. A live allocation refers to
/// its stack for as long as it lives, so stacks are not double-buffered; user space reads each
/// new one at the next drain and keeps it.
pub const HEAP_STACKS: &str = "HEAP_STACKS";
/// `Array<UsdtArgs>` with 2 entries (`USDT_ALLOC`, `USDT_FREE`): where the probes' arguments are.
pub const HEAP_USDT_ARGS: &str = "HEAP_USDT_ARGS";
pub const USDT_ALLOC: u32 = 0;
pub const USDT_FREE: u32 = 1;
/// `PerCpuArray<u64>` indexed by `HeapCounter`.
pub const HEAP_COUNTERS: &str = "HEAP_COUNTERS";

/// Entry programs, by how the allocator function takes its arguments.
pub const MALLOC_PROGRAM: &str = "heap_malloc"; // (size)
pub const ALIGNED_PROGRAM: &str = "heap_aligned"; // (align, size)
pub const CALLOC_PROGRAM: &str = "heap_calloc"; // (n, size)
pub const REALLOC_PROGRAM: &str = "heap_realloc"; // (ptr, size)
pub const POSIX_MEMALIGN_PROGRAM: &str = "heap_posix_memalign"; // (out, align, size)
pub const FREE_PROGRAM: &str = "heap_free"; // (ptr)
/// Return programs: the pointer returned, or written through `out` by posix_memalign.
pub const RETURN_PROGRAM: &str = "heap_return";
pub const POSIX_MEMALIGN_RETURN_PROGRAM: &str = "heap_posix_memalign_return";
/// USDT probes of the heap-sampler allocator: `alloc(ptr, size, weight)`, `free(ptr, size)`.
pub const USDT_ALLOC_PROGRAM: &str = "heap_usdt_alloc";
pub const USDT_FREE_PROGRAM: &str = "heap_usdt_free";

/// A sampled call between entry and return. 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub size: u64,
    pub user_stack: u64,
    /// posix_memalign's `void **out`; 0 for the others.
    pub out: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// A sampled allocation not freed yet. 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Live {
    pub size: u64,
    pub user_stack: u64,
    /// `bpf_ktime_get_ns` at allocation, for the leak view (`--min-age`).
    pub since_ns: u64,
    pub tgid: u32,
    pub tid: u32,
}

/// Key of the allocation count maps. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeapKey {
    pub tgid: u32,
    pub tid: u32,
    pub user_stack: u64,
}

/// Sampled allocations and their requested bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapValue {
    pub count: u64,
    pub bytes: u64,
}

/// Where a USDT argument is: in a register (an offset into `pt_regs`), or a constant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsdtArg {
    /// `ARG_NONE`, `ARG_REGISTER` or `ARG_CONSTANT`.
    pub kind: u32,
    pub pt_regs_offset: u32,
    pub constant: u64,
}

pub const ARG_NONE: u32 = 0;
pub const ARG_REGISTER: u32 = 1;
pub const ARG_CONSTANT: u32 = 2;

/// A probe's arguments: pointer, size (the weight is computed by the reader). 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsdtArgs {
    pub ptr: UsdtArg,
    pub size: UsdtArg,
}

const _: () = assert!(core::mem::size_of::<Pending>() == 32);
const _: () = assert!(core::mem::size_of::<Live>() == 32);
const _: () = assert!(core::mem::size_of::<HeapKey>() == 16);
const _: () = assert!(core::mem::size_of::<HeapValue>() == 16);
const _: () = assert!(core::mem::size_of::<UsdtArg>() == 16);
const _: () = assert!(core::mem::size_of::<UsdtArgs>() == 32);

counters! {
    /// Every allocation call (entry) is counted with its bytes; it ends `unsampled` or
    /// `sampled`. Each sampled one ends in one pending outcome; each sampled one and each
    /// `usdt_alloc` in one user-stack outcome. Each `returned` (a return with a pending entry)
    /// and each `usdt_alloc` ends in `alloc_failed` (NULL) or one live outcome, and each live
    /// outcome in one count outcome. Each free ends `free_null`, `freed_sampled` or
    /// `freed_other`.
    pub enum HeapCounter {
        Calls = "calls",
        Bytes = "bytes",
        Unsampled = "unsampled",
        Sampled = "sampled",
        UserStack = "user_stack",
        UserStackMissing = "user_stack_missing",
        UserStackMapFull = "user_stack_map_full",
        UserStackError = "user_stack_error",
        PendingSet = "pending_set",
        PendingFull = "pending_full",
        Returned = "returned",
        AllocFailed = "alloc_failed",
        LiveInserted = "live_inserted",
        LiveFull = "live_full",
        LiveError = "live_error",
        Counted = "counted",
        CountsFull = "counts_full",
        CountsError = "counts_error",
        Frees = "frees",
        FreeNull = "free_null",
        FreedSampled = "freed_sampled",
        FreedOther = "freed_other",
        /// realloc counted as a free of its old block (when non-NULL) and an allocation.
        Reallocs = "reallocs",
        /// posix_memalign's result pointer could not be read.
        OutUnreadable = "out_unreadable",
        /// Samples reported by the heap-sampler allocator's `alloc` probe.
        UsdtAlloc = "usdt_alloc",
        /// A USDT argument could not be read (its location is not supported).
        UsdtArgError = "usdt_arg_error",
        /// The countdown table was empty (user space did not fill it).
        NoRate = "no_rate",
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers, no padding (sizes asserted).
    unsafe impl aya::Pod for super::Pending {}
    unsafe impl aya::Pod for super::Live {}
    unsafe impl aya::Pod for super::HeapKey {}
    unsafe impl aya::Pod for super::HeapValue {}
    unsafe impl aya::Pod for super::UsdtArg {}
    unsafe impl aya::Pod for super::UsdtArgs {}
}
