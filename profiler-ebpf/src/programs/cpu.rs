//! `cpu`: on-CPU stack sampling from a cpu-clock perf event on every CPU, and the sampling
//! code the other perf-event programs share.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    macros::{map, perf_event},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::PerfEventContext,
};
use profiler_ebpf::{
    cpu::{CpuCounter as C, CpuKey},
    stacks::NO_STACK,
};

use super::unwind::{Copy, copy_stack};
use super::{CommOutcome, Stack, active_set, bump, is_target, remember_comm, take_stack};

#[map]
static CPU_COUNTS_0: HashMap<CpuKey, u64> = HashMap::with_max_entries(1, 0);
#[map]
static CPU_COUNTS_1: HashMap<CpuKey, u64> = HashMap::with_max_entries(1, 0);
// Sized by user space (the copies of one drain interval), or one page without copies.
#[map]
static CPU_COPIES: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static CPU_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(C::COUNT, 0);

#[perf_event]
pub fn cpu(ctx: PerfEventContext) -> u32 {
    sample(
        &ctx,
        [&CPU_COUNTS_0, &CPU_COUNTS_1],
        &CPU_COPIES,
        &CPU_COUNTERS,
    );
    0
}

/// Counts one perf-event sample of a target under (thread, user stack, kernel stack) in the
/// active set of `counts` — or, when the call-graph mode wants its user stack copied, sends it
/// through `copies` — with every outcome in `counters` (indexed by `CpuCounter`). Shared by the
/// on-CPU and the page-fault samplers.
#[inline(always)]
pub fn sample(
    ctx: &PerfEventContext,
    counts: [&HashMap<CpuKey, u64>; 2],
    copies: &RingBuf,
    counters: &PerCpuArray<u64>,
) {
    let count = |c: C| bump(counters, c as u32);
    let tgid = ctx.tgid();
    if !is_target(tgid) {
        return;
    }
    count(C::TargetSamples);
    let tid = ctx.pid();
    if let Copy::Sent = copy_stack(ctx, tgid, tid, copies, counters) {
        comm_outcome(tid, counters);
        return;
    }
    let set = active_set();
    let user_stack = match take_stack(ctx, set, BPF_F_USER_STACK as u64) {
        Stack::Stored(h) => {
            count(C::UserStack);
            h
        }
        Stack::Missing => {
            count(C::UserStackMissing);
            NO_STACK
        }
        Stack::MapFull => {
            count(C::UserStackMapFull);
            NO_STACK
        }
        Stack::Error => {
            count(C::UserStackError);
            NO_STACK
        }
    };
    let kernel_stack = match take_stack(ctx, set, 0) {
        Stack::Stored(h) => {
            count(C::KernelStack);
            h
        }
        Stack::Missing => {
            count(C::KernelStackAbsent);
            NO_STACK
        }
        Stack::MapFull => {
            count(C::KernelStackMapFull);
            NO_STACK
        }
        Stack::Error => {
            count(C::KernelStackError);
            NO_STACK
        }
    };
    let key = CpuKey {
        tgid,
        tid,
        user_stack,
        kernel_stack,
    };
    // A branch, not an index: the verifier must see which map each path uses.
    let counts = if set == 0 { counts[0] } else { counts[1] };
    // The key holds the tid and a thread runs on one CPU at a time, so no two CPUs update
    // the same entry concurrently: a plain increment is exact.
    if let Some(n) = counts.get_ptr_mut(&key) {
        // SAFETY: the value pointer stays valid for this program run.
        unsafe { *n += 1 };
        count(C::Counted);
    } else {
        match counts.insert(&key, &1, BPF_NOEXIST as u64) {
            Ok(()) => count(C::Counted),
            // -E2BIG: preallocated hash map without a free element.
            Err(e) if e == -7 => count(C::CountsFull),
            Err(_) => count(C::CountsError),
        }
    }
    comm_outcome(tid, counters);
}

#[inline(always)]
fn comm_outcome(tid: u32, counters: &PerCpuArray<u64>) {
    match remember_comm(tid) {
        CommOutcome::Known => {}
        CommOutcome::Full => bump(counters, C::CommsFull as u32),
        CommOutcome::Error => bump(counters, C::CommError as u32),
    }
}
