//! A process with the sampler installed that allocates a known amount and then waits, so a
//! reader in another process can check what it reads (tests/remote.rs).
//!
//! It first runs two short threads (their blocks stay linked after they exit), then prints
//! `before …` with its own totals, keeps KEEP blocks of KEEP_SIZE bytes and churns CHURN
//! alloc/free pairs of CHURN_SIZE bytes on the main thread, prints `after …`, and reads
//! stdin: each `c` churns again (the same pairs plus BIG blocks of BIG_SIZE bytes, nearly all
//! sampled) and prints `churned …`; end of input ends the process. Reporting goes through a
//! stack buffer and `write(2)`, so nothing allocates between a snapshot and the reader.

use std::alloc::System;
use std::hint::black_box;
use std::io::Write;

use heap_sampler::{Sampler, Totals, registry_address, totals};

#[global_allocator]
static ALLOC: Sampler<System> = Sampler::new(System);

const KEEP: usize = 1000;
const KEEP_SIZE: usize = 4096;
const CHURN: usize = 20_000;
const CHURN_SIZE: usize = 100;
const BIG: usize = 8;
const BIG_SIZE: usize = 1 << 20;

fn report(tag: &str, t: &Totals) {
    let mut buf = [0u8; 512];
    let mut out = &mut buf[..];
    writeln!(
        out,
        "{tag} registry={:#x} allocs={} frees={} alloc_bytes={} free_bytes={} sampled_allocs={} sampled_frees={}",
        registry_address(),
        t.allocs,
        t.frees,
        t.alloc_bytes,
        t.free_bytes,
        t.sampled_allocs,
        t.sampled_frees,
    )
    .expect("a report fits in 512 bytes");
    let len = 512 - out.len();
    // SAFETY: writes `len` initialised bytes of `buf` to stdout.
    let n = unsafe { libc::write(1, buf.as_ptr().cast(), len) };
    assert_eq!(n, len as isize, "stdout write");
}

fn main() {
    for _ in 0..2 {
        std::thread::spawn(|| black_box(vec![0u8; 10_000]).len())
            .join()
            .unwrap();
    }
    report("before", &totals());
    let mut kept = Vec::with_capacity(KEEP);
    for _ in 0..KEEP {
        kept.push(black_box(vec![7u8; KEEP_SIZE]));
    }
    churn();
    report("after", &totals());
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into `byte`; returns 0 at end of input.
    while unsafe { libc::read(0, (&mut byte as *mut u8).cast(), 1) } > 0 {
        if byte == b'c' {
            churn();
            for _ in 0..BIG {
                drop(black_box(vec![2u8; BIG_SIZE]));
            }
            report("churned", &totals());
        }
    }
    black_box(kept);
}

fn churn() {
    for _ in 0..CHURN {
        drop(black_box(vec![1u8; CHURN_SIZE]));
    }
}
