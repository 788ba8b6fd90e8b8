//! Fidelity workload with a known answer: CPU time split 60/30/10 over three distinct,
//! non-inlined functions (`work_sixty`, `work_thirty`, `work_ten`).
//!
//! The split is true in CPU time, not in wall time: each function runs the same arithmetic
//! loop body (a data-dependent chain the optimizer cannot shorten), and one round of work calls
//! them with iteration counts in the ratio 6:3:1, round after round, so waiting on a busy CPU
//! does not skew it (a sampler of CPU time only sees the process while it runs).
//!
//! A round is long compared with a 99 Hz sampling period (tens of milliseconds against 10 ms):
//! the samples then fall at evenly drifting points of the rounds, and a 5 s recording lands
//! within about a point of 60/30/10. With sub-millisecond rounds each sample lands at a random
//! point instead, and ~500 samples scatter by ±2 points (binomial noise), too loose to test a
//! ±3 point tolerance reliably.
//!
//! Usage: `cpu_split [SECONDS]` (default 5). Prints its pid, then runs single-threaded.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Iterations in one tenth of a round; a round takes some tens of milliseconds.
const UNIT: u64 = 4_000_000;

/// The loop every work function runs: a multiply-xorshift chain where each step depends on
/// the previous one, so the cost per iteration is the same in all three functions. Each
/// function gets its own shift constant: identical bodies would be merged into one symbol by
/// rustc's function merging, and the profile could not tell them apart.
macro_rules! spin {
    ($iters:expr, $seed:expr, $shift:literal) => {{
        let mut x: u64 = $seed | 1;
        let mut i = 0;
        while i < $iters {
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i);
            x ^= x >> $shift;
            i += 1;
        }
        x
    }};
}

#[inline(never)]
fn work_sixty(iters: u64, seed: u64) -> u64 {
    spin!(iters, seed, 29)
}

#[inline(never)]
fn work_thirty(iters: u64, seed: u64) -> u64 {
    spin!(iters, seed, 31)
}

#[inline(never)]
fn work_ten(iters: u64, seed: u64) -> u64 {
    spin!(iters, seed, 33)
}

fn main() {
    let seconds: f64 = match std::env::args().nth(1) {
        None => 5.0,
        Some(arg) => match arg.parse() {
            Ok(s) if s > 0.0 => s,
            _ => {
                eprintln!("cpu_split: SECONDS must be a positive number, got {arg:?}");
                std::process::exit(2);
            }
        },
    };
    println!("cpu_split pid {}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    // black_box keeps the counts opaque, so the three calls cannot be merged or hoisted.
    let unit = black_box(UNIT);
    let mut acc = 0u64;
    while Instant::now() < deadline {
        acc ^= work_sixty(6 * unit, acc);
        acc ^= work_thirty(3 * unit, acc);
        acc ^= work_ten(unit, acc);
    }
    black_box(acc);
}
