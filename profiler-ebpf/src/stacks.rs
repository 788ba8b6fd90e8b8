//! Stacks, stored by content. A program copies a stack with `bpf_get_stack` into a per-CPU
//! scratch slot, hashes its frames, and inserts it into the active `STACKS` map under that
//! hash. Unlike a `BPF_MAP_TYPE_STACK_TRACE` map (one stack per bucket, so two stacks that
//! share a bucket collide and one is dropped), a hash map keyed by a 64-bit content hash only
//! loses a stack when the map is full, and user space sizes it so that it cannot fill within
//! one drain interval. Two different stacks with the same 64-bit hash are possible in theory
//! (about n²/2⁶⁵ for n stacks: never, in practice).
//!
//! Maps come in two sets: programs write to the set named by `ACTIVE_SET`; user space flips
//! it, then drains and clears the other one, so the maps hold one interval's stacks at most.

/// Deepest stack the kernel records (`PERF_MAX_STACK_DEPTH`). A user stack of exactly this
/// many frames was cut off.
pub const MAX_STACK_DEPTH: usize = 127;

/// A stack as stored: `len` frames in `ips`, leaf first. The rest of `ips` is stale.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawStack {
    pub len: u32,
    pub _pad: u32,
    pub ips: [u64; MAX_STACK_DEPTH],
}

const _: () = assert!(core::mem::size_of::<RawStack>() == 8 + 8 * MAX_STACK_DEPTH);

/// Stack id meaning "no stack" (the outcome counters say why). Real hashes are never 0.
pub const NO_STACK: u64 = 0;

/// Array map with one `u32`: which of the two map sets programs write to.
pub const ACTIVE_SET: &str = "ACTIVE_SET";
/// `HashMap<u64, RawStack>`: stacks by content hash, one map per set, shared by collectors.
pub const STACKS: [&str; 2] = ["STACKS_0", "STACKS_1"];
/// `PerCpuArray<RawStack>` with one slot: where `bpf_get_stack` writes before hashing.
pub const STACK_SCRATCH: &str = "STACK_SCRATCH";

/// One mixing step of the stack hash (a multiply-xorshift over 64-bit words). The same
/// function runs in the kernel and in user-space tests.
#[inline(always)]
pub const fn mix(h: u64, word: u64) -> u64 {
    let h = (h ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// Hash of the first `len` frames, never `NO_STACK`.
#[inline(always)]
pub fn stack_hash(ips: &[u64; MAX_STACK_DEPTH], len: usize) -> u64 {
    let mut h = mix(0x5354_4143_4b53_0001, len as u64);
    let mut i = 0;
    while i < MAX_STACK_DEPTH {
        if i >= len {
            break;
        }
        h = mix(h, ips[i]);
        i += 1;
    }
    if h == NO_STACK { 1 } else { h }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers, no padding (size asserted).
    unsafe impl aya::Pod for super::RawStack {}
}
