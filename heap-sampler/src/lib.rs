//! A sampling global allocator that makes heap profiling from outside almost free.
//!
//! Install it in a service:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: heap_sampler::Sampler = heap_sampler::Sampler::new(std::alloc::System);
//! # fn main() {}
//! ```
//!
//! What it gives a profiler, with nothing attached costing only a countdown per call:
//! - **Exact counters** (allocations, frees, bytes each way, samples) in per-thread blocks
//!   linked from the exported static `HEAP_SAMPLER_REGISTRY` ([`layout`]), read from outside
//!   with `process_vm_readv` ([`remote::read_totals`]) or in-process with [`totals`].
//! - **Samples by bytes**, like Go's `MemProfileRate`: a thread-local countdown drawn from an
//!   exponential with mean [`Sampler::rate`] (default 512 KiB); the math and the weight the
//!   probes carry are in [`sampling`].
//! - **USDT probes** `heap_sampler:alloc(ptr, size, weight_bytes)` and
//!   `heap_sampler:free(ptr, size)`, fired for sampled allocations and for frees of sampled
//!   pointers only, each behind a semaphore (see the `probes` module docs and
//!   [`remote::adjust_semaphore`]). A realloc is a free plus an alloc.
//!
//! Module map: `sampler` (the `GlobalAlloc` and its thread state), [`sampling`] (math),
//! `table` (live sampled pointers), `counters` (registry and blocks), `probes` (USDT sites),
//! [`layout`] (the shared `#[repr(C)]` types), [`remote`] (the reading side).

mod counters;
pub mod layout;
mod probes;
pub mod remote;
mod sampler;
pub mod sampling;
mod table;

pub use counters::{HEAP_SAMPLER_REGISTRY, Totals, totals};
pub use sampler::{Sampler, thread_totals};
pub use sampling::DEFAULT_RATE;

/// Capacity of the sampled-pointer table: live samples beyond what fits in a pointer's group
/// are counted in [`Totals::table_full`] instead of remembered.
pub const TABLE_SLOTS: usize = table::CAPACITY;

/// Whether `ptr` is a live allocation the sampler sampled (and will recognise when freed).
pub fn is_sampled(ptr: *const u8) -> bool {
    table::contains(ptr as usize)
}

/// The address of `HEAP_SAMPLER_REGISTRY` in this process, e.g. to hand to a reader directly.
pub fn registry_address() -> usize {
    &HEAP_SAMPLER_REGISTRY as *const layout::Registry as usize
}
