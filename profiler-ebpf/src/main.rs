//! The eBPF programs (built for bpfel-unknown-none by profiler/build.rs).
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}
