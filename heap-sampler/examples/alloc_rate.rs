//! A process with a known allocation rate and a known number of threads, for `profiler watch`
//! (profiler/tests/watch.rs): with the sampler installed, the allocator thread makes RATE
//! allocations of SIZE bytes per second, each freed once 1,000 newer ones exist (so frees
//! follow at the same rate and the live heap stays at about 1,000 × SIZE bytes); a spinner
//! thread never blocks (one CPU's worth of CPU time); the other threads park. The pace is
//! kept against the clock, so the rate holds whatever the scheduler does.
//!
//! Usage: alloc_rate RATE SIZE THREADS SECONDS
//! (prints "alloc_rate pid N threads THREADS" first; THREADS counts every thread, main
//! included, at least 3; exits after SECONDS)

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use heap_sampler::Sampler;

#[global_allocator]
static ALLOC: Sampler<std::alloc::System> = Sampler::new(std::alloc::System);

/// Allocations kept alive before the oldest is freed.
const KEEP: usize = 1000;
const TICK: Duration = Duration::from_millis(5);

#[inline(never)]
fn spin(stop: &AtomicBool) -> u64 {
    let mut v = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            v = black_box(v.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    v
}

#[inline(never)]
fn allocate(rate: u64, size: usize, until: Instant) {
    // Allocated up front, so the queue itself never allocates while counting.
    let mut kept: VecDeque<Box<[u8]>> = VecDeque::with_capacity(KEEP + 1);
    let start = Instant::now();
    let mut made = 0u64;
    while Instant::now() < until {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while made < due {
            kept.push_back(black_box(vec![1u8; size].into_boxed_slice()));
            made += 1;
            if kept.len() > KEEP {
                drop(kept.pop_front());
            }
        }
        std::thread::sleep(TICK);
    }
}

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (rate, size, threads, secs) = (arg(1, 20_000), arg(2, 256), arg(3, 5).max(3), arg(4, 5));
    println!("alloc_rate pid {} threads {threads}", std::process::id());
    let _ = std::io::stdout().flush();
    let until = Instant::now() + Duration::from_secs(secs);
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let mut handles = vec![
        std::thread::Builder::new()
            .name("spinner".into())
            .spawn(move || {
                black_box(spin(stop));
            })
            .expect("spawn the spinner"),
        std::thread::Builder::new()
            .name("allocator".into())
            .spawn(move || allocate(rate, size as usize, until))
            .expect("spawn the allocator"),
    ];
    for i in 3..threads {
        handles.push(
            std::thread::Builder::new()
                .name(format!("idle-{i}"))
                .spawn(move || {
                    while Instant::now() < until {
                        std::thread::park_timeout(until - Instant::now());
                    }
                })
                .expect("spawn an idle thread"),
        );
    }
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
}
