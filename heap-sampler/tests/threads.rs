//! Counter blocks across threads: every thread's counts reach the totals, exited threads'
//! counts stay, and their blocks are taken over instead of piling up.
//!
//! One test in this binary, so the harness's other threads stay idle while it runs.

use std::alloc::System;
use std::hint::black_box;

use heap_sampler::{Sampler, thread_totals, totals};

#[global_allocator]
static ALLOC: Sampler<System> = Sampler::new(System);

#[test]
fn exited_threads_keep_their_counts_and_give_up_their_blocks() {
    const THREADS: usize = 200;
    const PER_THREAD: u64 = 50;
    let before = totals();
    let mut counted = 0;
    for _ in 0..THREADS {
        counted += std::thread::spawn(|| {
            let start = thread_totals();
            for _ in 0..PER_THREAD {
                drop(black_box(Box::new([0u8; 32])));
            }
            thread_totals().allocs - start.allocs
        })
        .join()
        .unwrap();
    }
    let after = totals();
    assert_eq!(
        counted,
        THREADS as u64 * PER_THREAD,
        "each thread counted its own exactly"
    );
    assert!(
        after.allocs - before.allocs >= counted,
        "the totals include every thread's allocations, exited or not"
    );
    assert_eq!(after.allocs - after.frees, after.live_objects());
    // One thread runs at a time; a new one takes over a block whose thread the kernel has
    // reaped. A just-joined thread may not be reaped yet, so allow some slack, far below one
    // block per thread.
    let new_blocks = after.blocks - before.blocks;
    eprintln!("{new_blocks} new blocks for {THREADS} threads");
    assert!(
        new_blocks <= THREADS as u64 / 4,
        "{new_blocks} new blocks for {THREADS} threads"
    );
}
