//! The sampler installed as this test binary's global allocator: exact counters, unbiased
//! estimates from the samples, and sampled frees recognised, with known allocation patterns.
//!
//! Counts are taken from the calling thread's own block (`thread_totals`), so the test
//! harness and the other tests, running on other threads, do not disturb them.

use std::alloc::{GlobalAlloc, Layout, System};

use heap_sampler::sampling::scale_heap_sample;
use heap_sampler::{Sampler, Totals, is_sampled, thread_totals};

/// A small rate keeps the sample counts in the thousands with a few MiB of work. With k
/// expected samples the estimate's relative standard deviation is about 1/sqrt(k); the
/// workloads below give k ≈ 3600, so ±10% is about 6 standard deviations.
const RATE: u64 = 4096;

#[global_allocator]
static ALLOC: Sampler<System> = Sampler::with_rate(System, RATE);

const SIZE: usize = 256;
const COUNT: usize = 60_000;

fn delta(after: Totals, before: Totals) -> Totals {
    Totals {
        allocs: after.allocs - before.allocs,
        frees: after.frees - before.frees,
        alloc_bytes: after.alloc_bytes - before.alloc_bytes,
        free_bytes: after.free_bytes - before.free_bytes,
        sampled_allocs: after.sampled_allocs - before.sampled_allocs,
        sampled_frees: after.sampled_frees - before.sampled_frees,
        sampled_alloc_weight: after.sampled_alloc_weight - before.sampled_alloc_weight,
        ..after
    }
}

fn assert_within_10_percent(what: &str, estimate: f64, truth: f64) {
    let err = (estimate - truth).abs() / truth;
    eprintln!(
        "{what}: estimate {estimate:.0}, truth {truth:.0}, {:+.2}%",
        (estimate / truth - 1.0) * 100.0
    );
    assert!(
        err <= 0.10,
        "{what}: estimate {estimate:.0} vs truth {truth:.0} ({:.1}% off)",
        err * 100.0
    );
}

#[test]
fn churn_is_counted_exactly_and_estimated_within_ten_percent() {
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    let before = thread_totals();
    for _ in 0..COUNT {
        // SAFETY: a non-zero layout, freed with the same layout.
        unsafe {
            // black_box: the optimizer may remove an allocation nobody looks at.
            let p = std::hint::black_box(std::alloc::alloc(layout));
            assert!(!p.is_null());
            std::alloc::dealloc(p, layout);
        }
    }
    let d = delta(thread_totals(), before);
    let bytes = (COUNT * SIZE) as u64;
    assert_eq!((d.allocs, d.frees), (COUNT as u64, COUNT as u64));
    assert_eq!((d.alloc_bytes, d.free_bytes), (bytes, bytes));
    assert!(d.sampled_allocs > 0);
    assert_eq!(
        d.sampled_frees, d.sampled_allocs,
        "every sampled block was freed and recognised"
    );
    let (objects, space) =
        scale_heap_sample(d.sampled_allocs, d.sampled_allocs * SIZE as u64, RATE);
    assert_within_10_percent("alloc_space (Go's scaling)", space, bytes as f64);
    assert_within_10_percent("alloc_objects (Go's scaling)", objects, COUNT as f64);
    assert_within_10_percent(
        "sum of probe weights",
        d.sampled_alloc_weight as f64,
        bytes as f64,
    );
}

#[test]
fn live_blocks_are_estimated_and_their_frees_recognised() {
    let before = thread_totals();
    let blocks: Vec<Box<[u8; SIZE]>> = (0..COUNT).map(|_| Box::new([1u8; SIZE])).collect();
    let sampled = blocks.iter().filter(|b| is_sampled(b.as_ptr())).count() as u64;
    let mid = delta(thread_totals(), before);
    assert_eq!(mid.allocs, COUNT as u64 + 1, "the blocks and the vector");
    assert_eq!(mid.table_full, 0, "the table had room for every sample");
    let (objects, space) = scale_heap_sample(sampled, sampled * SIZE as u64, RATE);
    let live = (COUNT * SIZE) as f64;
    assert_within_10_percent("inuse_space", space, live);
    assert_within_10_percent("inuse_objects", objects, COUNT as f64);

    let vector_sampled = is_sampled(blocks.as_ptr().cast()) as u64;
    let before_free = thread_totals();
    drop(blocks);
    let d = delta(thread_totals(), before_free);
    assert_eq!(d.frees, COUNT as u64 + 1, "the blocks and the vector");
    assert_eq!(
        d.free_bytes,
        (COUNT * SIZE + COUNT * size_of::<usize>()) as u64
    );
    assert_eq!(
        d.sampled_frees,
        sampled + vector_sampled,
        "every sampled free was recognised"
    );
}

#[test]
fn realloc_counts_as_free_plus_alloc() {
    let mut layout = Layout::from_size_align(64, 8).unwrap();
    let before = thread_totals();
    // SAFETY: a non-zero layout; each realloc passes the current layout and a non-zero size.
    unsafe {
        let mut p = std::alloc::alloc(layout);
        for _ in 0..10 {
            let new_size = layout.size() * 2;
            let old = p;
            p = std::alloc::realloc(p, layout, new_size);
            assert!(!p.is_null());
            if p != old {
                assert!(!is_sampled(old), "the old block is forgotten");
            }
            layout = Layout::from_size_align(new_size, 8).unwrap();
        }
        std::alloc::dealloc(p, layout);
    }
    let d = delta(thread_totals(), before);
    let bytes: u64 = (0..=10).map(|i| 64u64 << i).sum();
    assert_eq!((d.allocs, d.frees), (11, 11));
    assert_eq!((d.alloc_bytes, d.free_bytes), (bytes, bytes));
    assert_eq!(d.sampled_frees, d.sampled_allocs);
}

#[test]
fn a_block_much_larger_than_the_rate_is_always_sampled_and_its_free_seen_anywhere() {
    let size = 1 << 20; // p = 1 - exp(-256)
    let block = vec![0u8; size];
    assert!(is_sampled(block.as_ptr()));
    let ptr = block.as_ptr() as usize;
    let d = std::thread::spawn(move || {
        let before = thread_totals();
        drop(block);
        delta(thread_totals(), before)
    })
    .join()
    .unwrap();
    assert_eq!(
        (d.frees, d.free_bytes, d.sampled_frees),
        (1, size as u64, 1)
    );
    assert!(!is_sampled(ptr as *const u8));
}

#[test]
fn alloc_zeroed_is_zeroed_and_counted() {
    let layout = Layout::from_size_align(4096, 64).unwrap();
    let before = thread_totals();
    // SAFETY: a non-zero layout, freed with the same layout.
    unsafe {
        let p = ALLOC.alloc_zeroed(layout);
        assert!(
            std::slice::from_raw_parts(p, layout.size())
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(p as usize % 64, 0);
        ALLOC.dealloc(p, layout);
    }
    let d = delta(thread_totals(), before);
    assert_eq!(
        (d.allocs, d.alloc_bytes, d.frees, d.free_bytes),
        (1, 4096, 1, 4096)
    );
}

#[test]
fn the_registry_reports_the_rate_and_every_thread() {
    let t = heap_sampler::totals();
    assert_eq!(t.rate, RATE);
    assert!(t.blocks >= 1);
    assert!(t.allocs >= t.frees);
    assert!(t.live_bytes() > 0);
}
