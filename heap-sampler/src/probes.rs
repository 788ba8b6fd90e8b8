//! The USDT (SystemTap SDT) probe sites: provider `heap_sampler`, probes `alloc` and `free`.
//!
//! Each probe has exactly one site, in a non-generic `#[inline(never)]` function, so the
//! binary carries one `.note.stapsdt` entry per probe and one semaphore per probe, however many
//! allocator types are instantiated. `probe_lazy!` (crate `probe`) reads the probe's u16
//! semaphore (in section `.probes`, its address in the note) and executes the `nop` site only
//! when it is non-zero. A profiler raises the semaphore while attached, either through the
//! kernel (`ref_ctr_offset` of a uprobe perf event) or by incrementing it in the target's
//! memory ([`crate::remote::adjust_semaphore`]).
//!
//! Arguments are passed as 8-byte registers (the note says `-8@%reg`: `probe` types every
//! argument as isize); read them as u64.
//!
//! These functions are only called for sampled allocations and for frees of sampled pointers,
//! so even a semaphore left raised costs little.

/// `heap_sampler:alloc(ptr, size, weight_bytes)`: a sampled allocation of `size` bytes at
/// `ptr`, standing for `weight_bytes` allocated bytes (see [`crate::sampling`] for the
/// formula; objects = `weight_bytes / size`). A realloc fires `free` for the old block, then
/// `alloc` for the new one if it is sampled.
#[cold]
#[inline(never)]
pub(crate) fn alloc(ptr: usize, size: usize, weight_bytes: u64) {
    probe::probe_lazy!(heap_sampler, alloc, ptr, size, weight_bytes);
}

/// `heap_sampler:free(ptr, size)`: the sampled allocation at `ptr` of `size` bytes is being
/// freed (the probe fires before the memory goes back to the inner allocator).
#[cold]
#[inline(never)]
pub(crate) fn free(ptr: usize, size: usize) {
    probe::probe_lazy!(heap_sampler, free, ptr, size);
}
