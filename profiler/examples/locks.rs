//! A workload with lock contention of a known place, for the mutex profile of `profiler
//! serve`: four threads take one `std::sync::Mutex` in `locks::contend` and hold it for about
//! a millisecond of work each time, so three of them are mostly waiting for it (a futex wait
//! in the kernel). The holder's work is in `locks::hold`.
//!
//! Usage: locks SECONDS   (prints "locks pid N" first, and exits after SECONDS)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[inline(never)]
fn hold(v: u64) -> u64 {
    let until = Instant::now() + Duration::from_millis(1);
    let mut x = v | 1;
    while Instant::now() < until {
        for _ in 0..1_000 {
            x = std::hint::black_box(x.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(7));
        }
    }
    x
}

#[inline(never)]
fn contend(lock: &Mutex<u64>, until: Instant) -> u64 {
    let mut rounds = 0;
    while Instant::now() < until {
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        *guard = hold(*guard);
        drop(guard);
        rounds += 1;
    }
    std::hint::black_box(rounds)
}

fn main() {
    let seconds: f64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 5.0,
        Some(Ok(s)) if s > 0.0 => s,
        Some(_) => {
            eprintln!("locks: SECONDS must be a positive number");
            std::process::exit(2);
        }
    };
    println!("locks pid {}", std::process::id());
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let lock = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let lock = Arc::clone(&lock);
            std::thread::Builder::new()
                .name(format!("contender-{i}"))
                .spawn(move || contend(&lock, until))
                .expect("spawn a thread")
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
