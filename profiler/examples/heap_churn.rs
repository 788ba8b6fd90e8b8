//! A workload with known allocations, for heap-profile tests:
//! - `heap_churn::retain_blocks` allocates 64 blocks of 1 MiB and keeps them to the end
//!   (64 MiB in use);
//! - `heap_churn::churn_small` allocates and frees 64-byte blocks, 200,000 times (the
//!   allocations by count are almost all here);
//! - `heap_churn::zeroed` allocates 16 MiB zeroed (`calloc`), kept;
//! - `heap_churn::aligned` allocates 16 blocks of 1 MiB aligned to 4 KiB (`posix_memalign`),
//!   kept;
//! - `heap_churn::grow` grows a vector byte by byte to 8 MiB (`realloc`s requesting 16 MiB in
//!   all), kept;
//! - `heap_churn::fault_in` writes every page of a 32 MiB block, then frees it (8,192 page
//!   faults, nothing kept).
//!
//! Usage: heap_churn [SECONDS_TO_WAIT_AT_THE_END]   (prints "heap_churn pid N" first, then
//! "done" when everything is allocated, waits, and exits). `heap-sampler`'s
//! `heap_churn_sampled` example runs this same program (as a module) with the sampling
//! allocator installed, and prints the allocator's exact totals after "done".

use std::alloc::{Layout, alloc};
use std::hint::black_box;
use std::io::Write;

const MIB: usize = 1 << 20;
/// 64-byte allocations churned: many, yet few enough that allocator uprobes (a few µs per
/// call and free here) finish in about a second.
const CHURN: usize = 200_000;

// Results go through `black_box` on the way out: a function whose last act is a call could
// be compiled to a jump (a tail call), leaving no frame of its own on the allocation stacks.

#[inline(never)]
fn retain_blocks() -> Vec<Vec<u8>> {
    black_box(
        (0..64)
            .map(|i| {
                let mut b = Vec::<u8>::with_capacity(MIB);
                b.push(i as u8);
                b
            })
            .collect(),
    )
}

#[inline(never)]
fn churn_small(n: usize) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let b = black_box(Box::new([i as u8; 64]));
        sum = sum.wrapping_add(u64::from(b[0]));
    }
    sum
}

#[inline(never)]
fn zeroed() -> Vec<u8> {
    black_box(vec![0u8; 16 * MIB])
}

#[inline(never)]
fn aligned() -> Vec<*mut u8> {
    let layout = Layout::from_size_align(MIB, 4096).expect("a valid layout");
    // SAFETY: a non-zero size; the blocks are kept (leaked) on purpose.
    black_box((0..16).map(|_| unsafe { alloc(layout) }).collect())
}

#[inline(never)]
fn grow() -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..8 * MIB {
        v.push(i as u8);
    }
    black_box(v)
}

#[inline(never)]
fn fault_in() -> u64 {
    let mut block = Vec::<u8>::with_capacity(32 * MIB);
    let base = block.as_mut_ptr();
    for page in (0..32 * MIB).step_by(4096) {
        // SAFETY: within the capacity; a write is what makes the page resident.
        unsafe { base.add(page).write_volatile(1) };
    }
    // SAFETY: as above.
    u64::from(unsafe { base.read_volatile() })
}

fn main() {
    run(|| {});
}

/// The workload; `after_done` runs once everything is allocated, before the wait.
pub fn run(after_done: impl FnOnce()) {
    let wait: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    println!("heap_churn pid {}", std::process::id());
    let _ = std::io::stdout().flush();
    let kept = black_box(retain_blocks());
    black_box(churn_small(CHURN));
    let z = black_box(zeroed());
    let a = black_box(aligned());
    let g = black_box(grow());
    black_box(fault_in());
    println!("done");
    after_done();
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs_f64(wait));
    black_box((&kept, &z, &a, &g));
    // Exit without dropping: what was kept stays in use to the end.
    std::process::exit(0);
}
