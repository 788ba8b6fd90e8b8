//! The USDT (SystemTap SDT) probe sites: provider `heap_sampler`, probes `alloc` and `free`.
//!
//! Each probe has exactly one site, in a non-generic `#[inline(never)]` function, so the
//! binary carries one `.note.stapsdt` entry per probe and one semaphore per probe, however many
//! allocator types are instantiated. `probe_lazy!` (crate `probe`) reads the probe's u16
//! semaphore (in section `.probes`, its address in the note) and executes the `nop` site only
//! when it is non-zero. A profiler raises the semaphore while attached, in one of two ways:
//! - through the kernel: open the uprobe perf event (PMU `/sys/bus/event_source/devices/uprobe`)
//!   at the site's file offset with the semaphore's file offset in `config` bits 63..32
//!   (`ref_ctr_offset`, Linux 4.20+). The kernel raises it in every process it instruments and
//!   lowers it when the event closes, even if the profiler dies. It refuses (EINVAL) a second
//!   uprobe on the same site with a different `ref_ctr_offset`, so every tracer of these
//!   probes must pass it. aya 0.14's `UProbe::attach` does not set it (it puts only the
//!   retprobe bit in `config`), so this path needs a raw `perf_event_open`, as in
//!   tests/probes.rs;
//! - from user space: attach the uprobe plainly and increment the semaphore in the target's
//!   memory with [`crate::remote::adjust_semaphore`], decrementing it on detach. A profiler
//!   that dies leaves it raised, which costs only a `nop` per sample.
//!
//! `crate::remote::elf::sdt_probes` reads the sites, semaphores and their file offsets.
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
