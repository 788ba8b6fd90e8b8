//! The profiler's heap workload (`profiler/examples/heap_churn.rs`, known allocations) with
//! the sampling allocator installed at a 64 KiB rate, for the profiler's heap tests of the
//! heap-sampler probes. After "done" it prints the allocator's exact totals as
//! `totals allocs=N frees=N alloc_bytes=N free_bytes=N`, which the profiler must read too.

use std::alloc::System;

use heap_sampler::Sampler;

#[global_allocator]
static ALLOC: Sampler = Sampler::with_rate(System, 64 * 1024);

#[path = "../../profiler/examples/heap_churn.rs"]
#[allow(dead_code)]
mod workload;

fn main() {
    workload::run(|| {
        let t = heap_sampler::totals();
        println!(
            "totals allocs={} frees={} alloc_bytes={} free_bytes={}",
            t.allocs, t.frees, t.alloc_bytes, t.free_bytes
        );
    });
}
