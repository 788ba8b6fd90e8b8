//! The eBPF programs (built for bpfel-unknown-none by profiler/build.rs), one module per
//! concern under `programs/`. Programs never panic and never log per event: each returns
//! through a `try_*` function whose every outcome bumps a counter that user space reports.
//! On the host this file compiles to an empty `main` so workspace builds work.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod programs;
