//! `page_faults`: stacks of the target's page faults, from the page-faults software perf event
//! (where memory is first touched: what makes RSS grow).

use aya_ebpf::{
    macros::{map, perf_event},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::PerfEventContext,
};
use profiler_ebpf::cpu::{CpuCounter, CpuKey};

use super::cpu::sample;

#[map]
static FAULT_COUNTS_0: HashMap<CpuKey, u64> = HashMap::with_max_entries(1, 0);
#[map]
static FAULT_COUNTS_1: HashMap<CpuKey, u64> = HashMap::with_max_entries(1, 0);
#[map]
static FAULT_COPIES: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static FAULT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CpuCounter::COUNT, 0);

#[perf_event]
pub fn page_faults(ctx: PerfEventContext) -> u32 {
    sample(
        &ctx,
        [&FAULT_COUNTS_0, &FAULT_COUNTS_1],
        &FAULT_COPIES,
        &FAULT_COUNTERS,
    );
    0
}
