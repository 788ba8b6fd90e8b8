//! Fidelity workload for stack completeness and inlined frames: a frame-pointer Rust program
//! whose hot loop sits eight non-inlined calls below `main` (and below a named thread's start),
//! and whose real work is done by `checksum_block`, an `#[inline(always)]` function. A
//! profiler must show whole stacks down from `main`/the thread start, and `checksum_block` as
//! an inlined frame inside `level_8`.
//!
//! Usage: `deep_inline [SECONDS]` (default 5). The main thread and one thread named
//! `deep-worker` run the same chain.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Real work worth profiling: an FNV-1a style checksum over a buffer, forced inline.
#[inline(always)]
fn checksum_block(block: &[u8], mut h: u64) -> u64 {
    for &b in block {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

#[inline(never)]
fn level_8(block: &[u8], until: Instant) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    while Instant::now() < until {
        h = checksum_block(black_box(block), h);
    }
    h
}

// Each level adds one real frame; black_box on the result keeps the calls from becoming tail
// calls (a tail call would drop the caller's frame from the stack).
#[inline(never)]
fn level_7(block: &[u8], until: Instant) -> u64 {
    black_box(level_8(block, until)) ^ 7
}
#[inline(never)]
fn level_6(block: &[u8], until: Instant) -> u64 {
    black_box(level_7(block, until)) ^ 6
}
#[inline(never)]
fn level_5(block: &[u8], until: Instant) -> u64 {
    black_box(level_6(block, until)) ^ 5
}
#[inline(never)]
fn level_4(block: &[u8], until: Instant) -> u64 {
    black_box(level_5(block, until)) ^ 4
}
#[inline(never)]
fn level_3(block: &[u8], until: Instant) -> u64 {
    black_box(level_4(block, until)) ^ 3
}
#[inline(never)]
fn level_2(block: &[u8], until: Instant) -> u64 {
    black_box(level_3(block, until)) ^ 2
}
#[inline(never)]
fn level_1(block: &[u8], until: Instant) -> u64 {
    black_box(level_2(block, until)) ^ 1
}

fn main() {
    let seconds: f64 = match std::env::args().nth(1) {
        None => 5.0,
        Some(arg) => match arg.parse() {
            Ok(s) if s > 0.0 => s,
            _ => {
                eprintln!("deep_inline: SECONDS must be a positive number, got {arg:?}");
                std::process::exit(2);
            }
        },
    };
    println!("deep_inline pid {}", std::process::id());
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let block: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    let worker_block = block.clone();
    let worker = std::thread::Builder::new()
        .name("deep-worker".to_string())
        .spawn(move || level_1(&worker_block, until))
        .expect("spawn deep-worker");
    let h = level_1(&block, until);
    black_box(h ^ worker.join().expect("deep-worker panicked"));
}
