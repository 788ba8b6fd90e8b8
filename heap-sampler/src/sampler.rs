//! The allocator wrapper and its per-thread state: the byte countdown to the next sample, the
//! random stream that draws it, and the thread's counter block.
//!
//! The thread-local is `const`-initialised and has no destructor, so accessing it never
//! allocates, never registers anything, and still works while the thread is being torn down
//! (other thread-locals' destructors free memory then). An unsampled call costs the inner
//! allocator plus: a thread-local load and store (the countdown), two load/store pairs on the
//! thread's own counter block, and for a free one load of the table's occupancy byte.
//! Everything else (first use on a thread, samples, sampled frees) is on cold paths.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::counters::{self, HEAP_SAMPLER_REGISTRY, Totals, bump};
use crate::layout::CounterBlock;
use crate::sampling::{DEFAULT_RATE, Xorshift, next_countdown, sample_weight};
use crate::{probes, table};

/// A `GlobalAlloc` that forwards to `A` and samples allocations by bytes.
///
/// ```
/// use heap_sampler::Sampler;
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: Sampler<System> = Sampler::new(System);
/// # fn main() {}
/// ```
///
/// One sampler per process is the intended use: the thread countdowns, the sampled-pointer
/// table and the exported counters are process-wide, whatever the number of instances.
#[derive(Debug)]
pub struct Sampler<A = System> {
    inner: A,
    rate: AtomicU64,
}

impl<A> Sampler<A> {
    /// Wraps `inner`, sampling one allocation per [`DEFAULT_RATE`] bytes on average (512 KiB,
    /// Go's default).
    pub const fn new(inner: A) -> Self {
        Self::with_rate(inner, DEFAULT_RATE)
    }

    /// Wraps `inner` with a mean of `rate` bytes between samples. 1 samples every allocation,
    /// 0 samples none (the exact counters still count).
    pub const fn with_rate(inner: A, rate: u64) -> Self {
        Self {
            inner,
            rate: AtomicU64::new(rate),
        }
    }

    /// Changes the rate at run time, e.g. from `main` after reading configuration: the
    /// allocator itself never reads the environment, because `std::env` allocates and
    /// `getenv` races with `setenv`. Each thread switches at its next sample.
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Relaxed);
        publish_rate(rate);
    }

    /// The mean distance between samples, in bytes.
    pub fn rate(&self) -> u64 {
        self.rate.load(Relaxed)
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

/// Per-thread state. `countdown` is negative until the thread has a counter block, which
/// makes the first allocation take the slow path that claims one; it only becomes
/// non-negative after `block` is set.
struct ThreadState {
    /// Bytes left before the next sample.
    countdown: Cell<i64>,
    block: Cell<*const CounterBlock>,
    rng: Cell<u64>,
}

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState {
            countdown: Cell::new(-1),
            block: Cell::new(std::ptr::null()),
            rng: Cell::new(0),
        }
    };
}

/// The counters of the calling thread's block alone (zero if it has not allocated yet). A block
/// taken over from an exited thread carries that thread's counts too, so compare differences.
pub fn thread_totals() -> Totals {
    let mut t = Totals::default();
    let b = THREAD.with(|t| t.block.get());
    if !b.is_null() {
        // SAFETY: a set block is 'static.
        t.add_block(unsafe { &*b });
        t.blocks = 1;
    }
    t.rate = HEAP_SAMPLER_REGISTRY.rate.load(Relaxed);
    t
}

/// Distinguishes the seeds of threads whose thread-locals share an address over time.
static SEEDS: AtomicU64 = AtomicU64::new(0);

impl<A: GlobalAlloc> Sampler<A> {
    #[inline(always)]
    fn on_alloc(&self, ptr: *mut u8, size: usize) {
        THREAD.with(|t| {
            // Layout sizes fit in isize, and the countdown is never below -1.
            let left = t.countdown.get() - size as i64;
            if left >= 0 {
                t.countdown.set(left);
                // SAFETY: the countdown is non-negative only once the block is set.
                let b = unsafe { &*t.block.get() };
                bump(&b.allocs, 1);
                bump(&b.alloc_bytes, size as u64);
            } else {
                self.on_alloc_slow(t, ptr as usize, size);
            }
        })
    }

    /// The countdown ran out (a sample), or the thread has no counter block yet.
    #[cold]
    #[inline(never)]
    fn on_alloc_slow(&self, t: &ThreadState, ptr: usize, size: usize) {
        let Some(b) = self.thread_block(t) else {
            let s = &HEAP_SAMPLER_REGISTRY.shared;
            s.allocs.fetch_add(1, Relaxed);
            s.alloc_bytes.fetch_add(size as u64, Relaxed);
            return;
        };
        bump(&b.allocs, 1);
        bump(&b.alloc_bytes, size as u64);
        // A thread's first countdown was drawn just now and may cover this allocation.
        let left = t.countdown.get() - size as i64;
        if left >= 0 {
            t.countdown.set(left);
            return;
        }
        let rate = self.rate();
        let mut rng = Xorshift::from_state(t.rng.get());
        t.countdown.set(next_countdown(&mut rng, rate));
        t.rng.set(rng.state());
        if rate == 0 {
            return;
        }
        publish_rate(rate);
        let weight = sample_weight(size as u64, rate);
        bump(&b.sampled_allocs, 1);
        bump(&b.sampled_alloc_weight, weight);
        if !table::insert(ptr) {
            HEAP_SAMPLER_REGISTRY.table_full.fetch_add(1, Relaxed);
        }
        probes::alloc(ptr, size, weight);
    }

    #[inline(always)]
    fn on_free(&self, ptr: *mut u8, size: usize) {
        THREAD.with(|t| {
            let b = t.block.get();
            if b.is_null() {
                return self.on_free_slow(t, ptr as usize, size);
            }
            // SAFETY: a set block is 'static.
            let b = unsafe { &*b };
            bump(&b.frees, 1);
            bump(&b.free_bytes, size as u64);
            if table::may_contain(ptr as usize) {
                sampled_free(b, ptr as usize, size);
            }
        })
    }

    /// A free on a thread that has not allocated yet.
    #[cold]
    #[inline(never)]
    fn on_free_slow(&self, t: &ThreadState, ptr: usize, size: usize) {
        if let Some(b) = self.thread_block(t) {
            bump(&b.frees, 1);
            bump(&b.free_bytes, size as u64);
            if table::may_contain(ptr) {
                sampled_free(b, ptr, size);
            }
            return;
        }
        let s = &HEAP_SAMPLER_REGISTRY.shared;
        s.frees.fetch_add(1, Relaxed);
        s.free_bytes.fetch_add(size as u64, Relaxed);
        if table::remove(ptr) {
            s.sampled_frees.fetch_add(1, Relaxed);
            probes::free(ptr, size);
        }
    }

    /// The thread's counter block, claiming one (and drawing the first countdown) on first use.
    #[inline(always)]
    fn thread_block(&self, t: &ThreadState) -> Option<&'static CounterBlock> {
        let b = t.block.get();
        if b.is_null() {
            return self.start_thread(t);
        }
        // SAFETY: a set block is 'static.
        Some(unsafe { &*b })
    }

    #[cold]
    #[inline(never)]
    fn start_thread(&self, t: &ThreadState) -> Option<&'static CounterBlock> {
        // Straight from the inner allocator: asking the global one would recurse into us.
        // SAFETY: the layout has a non-zero size.
        let fresh = || unsafe { self.inner.alloc(Layout::new::<CounterBlock>()) }.cast();
        let block = counters::claim_block(fresh)?;
        t.block.set(block);
        let seed = (t as *const ThreadState as u64) ^ SEEDS.fetch_add(1, Relaxed).rotate_left(32);
        let mut rng = Xorshift::seeded(seed);
        let rate = self.rate();
        t.countdown.set(next_countdown(&mut rng, rate));
        t.rng.set(rng.state());
        publish_rate(rate);
        Some(block)
    }
}

/// A free whose pointer may be sampled: forget it and fire the probe if it was.
#[cold]
#[inline(never)]
fn sampled_free(b: &CounterBlock, ptr: usize, size: usize) {
    if table::remove(ptr) {
        bump(&b.sampled_frees, 1);
        probes::free(ptr, size);
    }
}

/// Keeps the registry's rate current without writing its cache line when nothing changed.
fn publish_rate(rate: u64) {
    let r = &HEAP_SAMPLER_REGISTRY.rate;
    if r.load(Relaxed) != rate {
        r.store(rate, Relaxed);
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments and returns its result;
// the bookkeeping around the calls allocates nothing through the global allocator.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Sampler<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            self.on_alloc(p, layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            self.on_alloc(p, layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Forget the pointer before the memory can be handed to another thread, which might
        // sample the same address and remember it.
        self.on_free(ptr, layout.size());
        // SAFETY: as for `alloc`.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    /// A free of the old block and an allocation of the new one, for counters, sampling
    /// (the whole new size counts toward the countdown) and probes alike.
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.on_free(ptr, layout.size());
        // SAFETY: as for `alloc`.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if new.is_null() {
            // The old block is still allocated: count it allocated again. If it was sampled,
            // its `free` has fired and it is sampled afresh (or not): a rare, small miscount.
            self.on_alloc(ptr, layout.size());
        } else {
            self.on_alloc(new, new_size);
        }
        new
    }
}
