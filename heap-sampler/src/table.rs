//! The set of live sampled pointers, so that a free can tell cheaply whether it frees a sample.
//!
//! A fixed, lock-free table in `.bss` (no allocation, ever): 8192 groups of 8 pointer slots,
//! each group one cache line, plus one occupancy byte per group. A pointer hashes to one group
//! and lives only there (no probing across groups), so:
//! - a free first loads its group's occupancy byte, 8 KiB of them in all: almost always 0, and
//!   the free is done after one load from a small, read-mostly array;
//! - otherwise it scans one cache line;
//! - an insert into a full group fails and the caller counts it (`table_full`).
//!
//! Untouched pages of the 512 KiB slot array are never made resident. With n live samples the
//! chance that some group overflows stays negligible while n is well below the 65536 slots
//! (n = 6000: about 1e-8 per group); at the default rate that is several GiB of live heap.
//!
//! Ordering: a pointer is inserted by the thread that allocated it before the allocation
//! returns, and removed by the thread that frees it, which the program has ordered after the
//! allocation. Relaxed atomics are enough: coherence plus that happens-before make the insert
//! and its occupancy increment visible to the free. The occupancy byte of a group never
//! under-counts a live entry, because each decrement follows its own entry's increment.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};

const SLOTS_PER_GROUP: usize = 8;
const GROUP_BITS: u32 = 13;
const GROUPS: usize = 1 << GROUP_BITS;

/// Total slots: the most sampled allocations that can be live and recognised at once.
pub const CAPACITY: usize = GROUPS * SLOTS_PER_GROUP;

#[repr(C, align(64))]
struct Group([AtomicUsize; SLOTS_PER_GROUP]);

static SLOTS: [Group; GROUPS] =
    [const { Group([const { AtomicUsize::new(0) }; SLOTS_PER_GROUP]) }; GROUPS];
static OCCUPANCY: [AtomicU8; GROUPS] = [const { AtomicU8::new(0) }; GROUPS];

/// Fibonacci hashing: the top bits of the product depend on every bit of the address.
#[inline(always)]
fn group_of(ptr: usize) -> usize {
    ((ptr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - GROUP_BITS)) as usize
}

/// Remembers a sampled pointer (non-null). False when its group is full.
pub(crate) fn insert(ptr: usize) -> bool {
    let g = group_of(ptr);
    for slot in &SLOTS[g].0 {
        if slot.load(Relaxed) == 0 && slot.compare_exchange(0, ptr, Relaxed, Relaxed).is_ok() {
            OCCUPANCY[g].fetch_add(1, Relaxed);
            return true;
        }
    }
    false
}

/// Whether `ptr` may be in the table: the free path's one load.
#[inline(always)]
pub(crate) fn may_contain(ptr: usize) -> bool {
    OCCUPANCY[group_of(ptr)].load(Relaxed) != 0
}

/// Forgets `ptr` if it was remembered; true if it was.
pub(crate) fn remove(ptr: usize) -> bool {
    let g = group_of(ptr);
    for slot in &SLOTS[g].0 {
        // Only the thread freeing `ptr` clears its slot; inserts only claim empty slots.
        if slot.load(Relaxed) == ptr {
            slot.store(0, Relaxed);
            OCCUPANCY[g].fetch_sub(1, Relaxed);
            return true;
        }
    }
    false
}

/// Whether `ptr` is a live sampled allocation.
pub fn contains(ptr: usize) -> bool {
    ptr != 0
        && may_contain(ptr)
        && SLOTS[group_of(ptr)]
            .0
            .iter()
            .any(|s| s.load(Relaxed) == ptr)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Addresses no allocator in this test binary hands out (never dereferenced).
    const BASE: usize = 0x7700_0000_0000;

    #[test]
    fn inserted_pointers_are_found_once() {
        let p = BASE + 0x1000;
        assert!(!contains(p));
        assert!(insert(p));
        assert!(contains(p) && may_contain(p));
        assert!(remove(p));
        assert!(!contains(p));
        assert!(
            !remove(p),
            "a second free of the same pointer is not a sampled free"
        );
    }

    #[test]
    fn a_full_group_refuses_and_recovers() {
        // Find nine addresses that share one group.
        let target = group_of(BASE + 0x10_0000);
        let same: Vec<usize> = (0..)
            .map(|i| BASE + 0x10_0000 + i * 16)
            .filter(|&p| group_of(p) == target)
            .take(SLOTS_PER_GROUP + 1)
            .collect();
        for &p in &same[..SLOTS_PER_GROUP] {
            assert!(insert(p));
        }
        assert!(!insert(same[SLOTS_PER_GROUP]), "the ninth does not fit");
        assert!(remove(same[0]));
        assert!(insert(same[SLOTS_PER_GROUP]));
        for &p in &same[1..] {
            assert!(remove(p));
        }
        assert_eq!(OCCUPANCY[target].load(Relaxed), 0);
    }

    #[test]
    fn null_is_never_sampled() {
        assert!(!contains(0));
    }
}
