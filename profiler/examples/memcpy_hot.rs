//! Fidelity workload for unwinding through glibc: nearly all its CPU time is in glibc's
//! `memcpy` (`__memmove_avx_unaligned_erms` and kin, which keep no frame pointer), called from
//! one named function, `copy_buffers`. A frame-pointer walk from inside memcpy skips
//! `copy_buffers` (memcpy never saves rbp, so the walk's first return address is the caller's
//! caller's); a DWARF unwind finds it.
//!
//! Usage: `memcpy_hot [SECONDS]` (default 5). Prints its pid, then runs single-threaded.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// 8 MiB: larger than the caches, so the copy is memory-bound and dominates the loop.
const BUFFER: usize = 8 << 20;

#[inline(never)]
fn copy_buffers(dst: &mut [u8], src: &[u8]) {
    // A call to the C library's memcpy (the symbol `memcpy` resolves to glibc's).
    dst.copy_from_slice(black_box(src));
}

fn main() {
    let seconds: f64 = match std::env::args().nth(1) {
        None => 5.0,
        Some(arg) => match arg.parse() {
            Ok(s) if s > 0.0 => s,
            _ => {
                eprintln!("memcpy_hot: SECONDS must be a positive number, got {arg:?}");
                std::process::exit(2);
            }
        },
    };
    println!("memcpy_hot pid {}", std::process::id());
    let src: Vec<u8> = (0..BUFFER).map(|i| i as u8).collect();
    let mut dst = vec![0u8; BUFFER];
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        copy_buffers(&mut dst, &src);
        black_box(&dst);
    }
}
