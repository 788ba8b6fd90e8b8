//! What the sampler adds to an alloc/free pair: `System` against `Sampler<System>` called
//! directly (not as the global allocator, so criterion's own allocations do not mix in), on one
//! thread and on two threads at once, for small sizes. `every_alloc` (rate 1) shows the cost
//! of the sampled path itself: table insert and remove, probe sites with semaphores at 0.
//! Times are CPU time of the measuring threads, so that other work on the machine does not
//! show up as allocator cost.
//!
//! `cargo bench -p heap-sampler --bench alloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use heap_sampler::Sampler;

static SAMPLER: Sampler<System> = Sampler::new(System);
static EVERY_ALLOC: Sampler<System> = Sampler::with_rate(System, 1);

const SIZES: [usize; 3] = [16, 64, 256];

/// Generic rather than `dyn`, so the wrapper inlines into the loop as it does into the
/// global allocator shim of a real program.
#[inline(always)]
fn pair<A: GlobalAlloc>(a: &A, layout: Layout) {
    // SAFETY: non-zero layouts, freed with the layout they were allocated with.
    unsafe {
        let p = a.alloc(layout);
        black_box(p);
        a.dealloc(p, layout);
    }
}

/// The time per iteration is the thread's CPU time per pair (see `two_threads` for why).
fn one_thread<A: GlobalAlloc>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    a: &A,
    layout: Layout,
) {
    g.bench_function(BenchmarkId::new(name, layout.size()), |b| {
        b.iter_custom(|iters| {
            let t = thread_cpu_time();
            for _ in 0..iters {
                pair(a, layout);
            }
            thread_cpu_time() - t
        })
    });
}

/// Both threads run `iters` pairs at once; the time per iteration is the mean of the two
/// threads' CPU time per pair. CPU time rather than wall time: on a small machine shared with
/// other work, preemption would swamp nanoseconds, while contention between the two threads
/// (cache lines bouncing) still shows as stalled CPU time.
fn two_threads<A: GlobalAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    a: &A,
    layout: Layout,
) {
    g.bench_function(BenchmarkId::new(name, layout.size()), |b| {
        b.iter_custom(|iters| -> Duration {
            let start = Barrier::new(2);
            let run = || {
                start.wait();
                let t = thread_cpu_time();
                for _ in 0..iters {
                    pair(a, layout);
                }
                thread_cpu_time() - t
            };
            let (x, y) = std::thread::scope(|s| {
                let x = s.spawn(run);
                let y = s.spawn(run);
                (x.join().unwrap(), y.join().unwrap())
            });
            (x + y) / 2
        })
    });
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "CLOCK_THREAD_CPUTIME_ID");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free_1_thread");
    for size in SIZES {
        let layout = Layout::from_size_align(size, 8).unwrap();
        one_thread(&mut g, "system", &System, layout);
        one_thread(&mut g, "sampler", &SAMPLER, layout);
        one_thread(&mut g, "every_alloc", &EVERY_ALLOC, layout);
    }
    g.finish();
    let mut g = c.benchmark_group("alloc_free_2_threads");
    for size in SIZES {
        let layout = Layout::from_size_align(size, 8).unwrap();
        two_threads(&mut g, "system", &System, layout);
        two_threads(&mut g, "sampler", &SAMPLER, layout);
        two_threads(&mut g, "every_alloc", &EVERY_ALLOC, layout);
    }
    g.finish();
}

criterion_group!(alloc, benches);
criterion_main!(alloc);
