//! A workload whose heap grows at a known place, for heap profiles taken over time (`profiler
//! serve --heap`, base and current snapshots): every 10 ms, `heap_grow::keep` allocates 48 KiB
//! and keeps it (the growth in use), and `heap_grow::churn` allocates 16 KiB and frees it: of
//! what is allocated between two snapshots, 75% is under `keep` and 25% under `churn`; of
//! what stays in use, all is under `keep`.
//!
//! Usage: heap_grow SECONDS   (prints "heap_grow pid N" first, and exits after SECONDS)

use std::hint::black_box;
use std::time::{Duration, Instant};

const KIB: usize = 1024;

// Results go through `black_box`: a function whose last act is a call could become a jump,
// leaving no frame of its own on the allocation stacks.

#[inline(never)]
fn keep(kept: &mut Vec<Vec<u8>>) {
    let mut block = Vec::<u8>::with_capacity(48 * KIB);
    block.push(1);
    kept.push(black_box(block));
}

#[inline(never)]
fn churn() -> usize {
    let mut block = Vec::<u8>::with_capacity(16 * KIB);
    block.push(1);
    black_box(block).len()
}

fn main() {
    let seconds: f64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 10.0,
        Some(Ok(s)) if s > 0.0 => s,
        Some(_) => {
            eprintln!("heap_grow: SECONDS must be a positive number");
            std::process::exit(2);
        }
    };
    println!("heap_grow pid {}", std::process::id());
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut kept = Vec::with_capacity(100 * seconds as usize + 100);
    while Instant::now() < until {
        keep(&mut kept);
        black_box(churn());
        std::thread::sleep(Duration::from_millis(10));
    }
    black_box(kept.len());
}
