//! Fidelity workload: threads that start late, after a profiler has attached to the process.
//!
//! The main thread sleeps for DELAY_MS, then starts THREADS busy threads named `late-0`,
//! `late-1`, ... (names the kernel keeps whole: under 16 bytes), which spin in `busy_worker`
//! until SECONDS have passed since they started. On start the main thread prints the wall-clock
//! time at which it spawns them (`spawned_at_unix_nanos N`), so a test can check they really
//! started after the recording began.
//!
//! Usage: `threads_late [THREADS] [DELAY_MS] [SECONDS]` (defaults 4, 1500, 3).

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[inline(never)]
fn busy_worker(until: Instant) -> u64 {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    while Instant::now() < until {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i);
            x ^= x >> 31;
        }
        x = black_box(x);
    }
    x
}

fn arg<T: std::str::FromStr>(n: usize, name: &str, default: T) -> T {
    match std::env::args().nth(n) {
        None => default,
        Some(raw) => raw.parse().unwrap_or_else(|_| {
            eprintln!("threads_late: {name} must be a number, got {raw:?}");
            std::process::exit(2);
        }),
    }
}

fn main() {
    let threads: usize = arg(1, "THREADS", 4);
    let delay_ms: u64 = arg(2, "DELAY_MS", 1500);
    let seconds: f64 = arg(3, "SECONDS", 3.0);
    println!("threads_late pid {}", std::process::id());
    std::thread::sleep(Duration::from_millis(delay_ms));

    let spawned = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    println!("spawned_at_unix_nanos {}", spawned.as_nanos());
    let _ = std::io::stdout().flush();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("late-{i}"))
                .spawn(move || busy_worker(until))
                .expect("spawn worker thread")
        })
        .collect();
    let mut acc = 0;
    for h in handles {
        acc ^= h.join().expect("worker thread panicked");
    }
    black_box(acc);
}
