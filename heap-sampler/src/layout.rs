//! The memory layout a profiler reads from outside: the exported registry and the per-thread
//! counter blocks linked from it. Defined once, `#[repr(C)]`, used by the allocator when it
//! writes and by [`crate::remote`] when it reads another process's copy.
//!
//! ```text
//! HEAP_SAMPLER_REGISTRY (exported symbol, .data)
//!   magic "HEAPSMP1" | version | block_size | head ──▶ CounterBlock ──next──▶ CounterBlock ──▶ null
//!   blocks | rate | table_full | table_slots | shared (CounterBlock, not in the list)
//! ```
//!
//! Blocks are pushed at the head and never unlinked or freed, so a reader that follows `next`
//! from any head it saw walks a stable, finite list. Bump `LAYOUT_VERSION` whenever a field
//! moves or changes meaning; readers refuse versions they do not know.

use std::sync::atomic::{AtomicPtr, AtomicU64};

/// `b"HEAPSMP1"` read as a little-endian u64: the first word of the registry.
pub const MAGIC: u64 = u64::from_le_bytes(*b"HEAPSMP1");

/// The version of this layout; readers check it before trusting anything else.
pub const LAYOUT_VERSION: u32 = 1;

/// The name of the exported registry static, as it appears in the ELF symbol table.
pub const REGISTRY_SYMBOL: &str = "HEAP_SAMPLER_REGISTRY";

/// Counters of one thread (or of one thread at a time: a block whose thread has exited is
/// taken over by a later thread, and keeps counting from where it was).
///
/// Exactly one thread writes a block, with a relaxed load and store per field: no read-modify-
/// write, no shared cache line. 128-byte alignment keeps neighbours in the static pool off each
/// other's line pairs (adjacent-line prefetch on x86). `shared` in the registry is the one
/// exception: it counts threads that could not get a block, with atomic adds.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct CounterBlock {
    /// Next block in the registry's list; null at the tail. Written once, before the block is
    /// published.
    pub next: AtomicPtr<CounterBlock>,
    /// `pid << 32 | tid` of the thread that owns the block (0 for `shared`).
    pub owner: AtomicU64,
    /// Calls to `alloc`, `alloc_zeroed` and `realloc` (a realloc counts as one free plus one
    /// alloc) that returned memory.
    pub allocs: AtomicU64,
    /// Calls to `dealloc`, plus the free half of each realloc.
    pub frees: AtomicU64,
    /// Bytes requested by the counted allocations (`Layout::size`, not the allocator's rounding).
    pub alloc_bytes: AtomicU64,
    /// Bytes released by the counted frees.
    pub free_bytes: AtomicU64,
    /// Allocations that were sampled (and fired the `alloc` probe if its semaphore was set).
    pub sampled_allocs: AtomicU64,
    /// Frees recognised as frees of sampled allocations (and fired the `free` probe).
    pub sampled_frees: AtomicU64,
    /// Sum of the sampled allocations' weights: an unbiased estimate of `alloc_bytes`, kept so
    /// the estimate can be checked against the exact count.
    pub sampled_alloc_weight: AtomicU64,
}

impl CounterBlock {
    pub(crate) const fn new() -> Self {
        Self {
            next: AtomicPtr::new(std::ptr::null_mut()),
            owner: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
            sampled_allocs: AtomicU64::new(0),
            sampled_frees: AtomicU64::new(0),
            sampled_alloc_weight: AtomicU64::new(0),
        }
    }
}

/// The root a profiler finds by symbol name ([`REGISTRY_SYMBOL`]).
#[repr(C)]
#[derive(Debug)]
pub struct Registry {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// `size_of::<CounterBlock>()`, so a reader can refuse a block it would misread.
    pub block_size: u32,
    /// The most recently linked block; the list runs from here through `next`.
    pub head: AtomicPtr<CounterBlock>,
    /// Blocks linked so far, counted before each is linked: a walk longer than this (plus the
    /// few linked while a reader copied the registry) means a corrupt list.
    pub blocks: AtomicU64,
    /// The sampling rate in bytes (mean distance between samples) last used by the sampler;
    /// 0 until the first thread allocated through it, or when sampling is disabled.
    pub rate: AtomicU64,
    /// Sampled allocations whose pointer could not be remembered (its table group was full):
    /// their frees go unrecognised, so in-use estimates keep them.
    pub table_full: AtomicU64,
    /// Capacity of the sampled-pointer table.
    pub table_slots: u64,
    /// Counts of threads that could not get a block of their own (the inner allocator failed
    /// when asked for one), updated with atomic adds. Not in the list; readers add it.
    pub shared: CounterBlock,
}
