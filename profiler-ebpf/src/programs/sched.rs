//! `profiler watch`: per-thread switch and migration counts of target threads, the user frames
//! they last blocked in, and their run-queue latency histogram. See `profiler_ebpf::sched`.
//!
//! Cost: one `sched_switch` run per context switch machine-wide; for other processes' tasks
//! it is a target test on prev and next and nothing else, for target threads a few hash-map
//! operations. The user frames (`--detail`) are a walk of at most `WAIT_FRAMES` frames.

use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_stack, generated::bpf_ktime_get_ns},
    macros::{btf_tracepoint, map},
    maps::{HashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use profiler_ebpf::sched::{
    LATENCY_BUCKETS, LatencyHist, ThreadCounts, WAIT_FRAMES, WatchCounter as C, latency_bucket,
};

use super::targets::task_ids;
use super::{active_set, bump, is_target};

#[unsafe(no_mangle)]
static WATCH_WAIT_FRAMES: Global<u32> = Global::new(0);

#[map]
static WATCH_THREADS: HashMap<u32, ThreadCounts> = HashMap::with_max_entries(1, 0);
#[map]
static WATCH_QUEUED: HashMap<u32, u64> = HashMap::with_max_entries(1, 0);
#[map]
static WATCH_LATENCY: PerCpuArray<LatencyHist> = PerCpuArray::with_max_entries(1, 0);
#[map]
static WATCH_LATENCY_MAX: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);
#[map]
static WATCH_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(C::COUNT, 0);

const TASK_DEAD: u32 = 0x80;

#[inline(always)]
fn count(c: C) {
    bump(&WATCH_COUNTERS, c as u32);
}

/// The counts of thread `tid`, created when missing; None when the map is full.
#[inline(always)]
fn thread(tid: u32, tgid: u32) -> Option<*mut ThreadCounts> {
    if let Some(t) = WATCH_THREADS.get_ptr_mut(tid) {
        return Some(t);
    }
    let fresh = ThreadCounts {
        tgid,
        ..ThreadCounts::default()
    };
    // NOEXIST: another CPU may have created it in between; then that one is used.
    let _ = WATCH_THREADS.insert(tid, fresh, BPF_NOEXIST as u64);
    WATCH_THREADS.get_ptr_mut(tid)
}

#[inline(always)]
fn queue(tid: u32, now: u64) {
    match WATCH_QUEUED.insert(tid, now, 0) {
        Ok(()) => count(C::Queued),
        Err(_) => count(C::QueuedFull),
    }
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`, run by `prev` on its CPU.
#[btf_tracepoint(function = "sched_switch")]
pub fn watch_sched_switch(ctx: BtfTracePointContext) -> i32 {
    let preempt: u64 = ctx.arg(0);
    let next: u64 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    switch_out(&ctx, preempt != 0, prev_state as u32, now);
    switch_in(next, now);
    0
}

#[inline(always)]
fn switch_out(ctx: &BtfTracePointContext, preempt: bool, prev_state: u32, now: u64) {
    let id = bpf_get_current_pid_tgid();
    let (tid, tgid) = (id as u32, (id >> 32) as u32);
    if tid == 0 || !is_target(tgid) {
        return;
    }
    count(C::SwitchOut);
    // As the kernel counts nvcsw/nivcsw (__schedule): a switch without preemption from a
    // state other than running is voluntary; an exiting thread's last switch is one too.
    let voluntary = !preempt && prev_state != 0;
    let exiting = prev_state & TASK_DEAD != 0;
    if voluntary {
        count(C::Voluntary);
        // A wake-up that came before the thread got off the CPU left a stale queue time.
        let _ = WATCH_QUEUED.remove(tid);
    } else {
        count(C::Involuntary);
        queue(tid, now);
    }
    let Some(t) = thread(tid, tgid) else {
        count(C::ThreadsFull);
        return;
    };
    count(C::Counted);
    // SAFETY: a map value pointer, valid for this run; only this thread's own switch-out
    // writes these fields, and it runs on one CPU at a time.
    let t = unsafe { &mut *t };
    if voluntary {
        t.voluntary += 1;
    } else {
        t.involuntary += 1;
    }
    if exiting {
        t.exited = 1;
        count(C::Exited);
    } else if voluntary && WATCH_WAIT_FRAMES.load() != 0 {
        // SAFETY: the buffer is the value's `wait_ips`, of exactly the size passed.
        let n = unsafe {
            bpf_get_stack(
                ctx.as_ptr(),
                t.wait_ips.as_mut_ptr().cast(),
                (WAIT_FRAMES * 8) as u32,
                BPF_F_USER_STACK as u64,
            )
        };
        if n > 0 {
            t.wait_len = (n as u32 / 8).min(WAIT_FRAMES as u32);
            count(C::WaitFrames);
        } else {
            t.wait_len = 0;
            count(C::WaitFramesMissing);
        }
    }
}

#[inline(always)]
fn switch_in(next: u64, now: u64) {
    let Some((tid, _)) = task_ids(next) else {
        count(C::TaskReadError);
        return;
    };
    if tid == 0 {
        return;
    }
    // Only target threads are ever queued: no target test needed.
    // SAFETY: copied out at once.
    let Some(since) = (unsafe { WATCH_QUEUED.get(tid) }).copied() else {
        return;
    };
    let _ = WATCH_QUEUED.remove(tid);
    let ns = now.saturating_sub(since);
    count(C::Latency);
    let bucket = latency_bucket(ns);
    if bucket == LATENCY_BUCKETS - 1 {
        count(C::LatencyOverflow);
    }
    if let Some(h) = WATCH_LATENCY.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; programs do not nest on one CPU.
        let h = unsafe { &mut *h };
        if let Some(b) = h.buckets.get_mut(bucket) {
            *b += 1;
        }
        h.count += 1;
        h.sum_ns += ns;
    }
    if let Some(m) = WATCH_LATENCY_MAX.get_ptr_mut(active_set()) {
        // SAFETY: this CPU's slot of the active set.
        unsafe {
            if ns > *m {
                *m = ns;
            }
        }
    }
}

/// `sched_wakeup(struct task_struct *p)`: `p` is queued on a run queue.
#[btf_tracepoint(function = "sched_wakeup")]
pub fn watch_sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    woken(ctx.arg(0));
    0
}

/// `sched_wakeup_new(struct task_struct *p)`: a new thread is queued for its first run.
#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn watch_sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    woken(ctx.arg(0));
    0
}

#[inline(always)]
fn woken(p: u64) {
    let Some((tid, tgid)) = task_ids(p) else {
        count(C::TaskReadError);
        return;
    };
    if tid == 0 || !is_target(tgid) {
        return;
    }
    // SAFETY: no preconditions.
    queue(tid, unsafe { bpf_ktime_get_ns() });
}

/// `sched_migrate_task(struct task_struct *p, int dest_cpu)`: `p` moves to another CPU (on a
/// wake-up or by load balancing), as the kernel's `se.nr_migrations` counts.
#[btf_tracepoint(function = "sched_migrate_task")]
pub fn watch_sched_migrate_task(ctx: BtfTracePointContext) -> i32 {
    let Some((tid, tgid)) = task_ids(ctx.arg(0)) else {
        count(C::TaskReadError);
        return 0;
    };
    if tid == 0 || !is_target(tgid) {
        return 0;
    }
    count(C::Migrations);
    match thread(tid, tgid) {
        // SAFETY: a map value pointer, valid for this run. Migrations of one thread are
        // serialized by the run-queue locks.
        Some(t) => unsafe { (*t).migrations += 1 },
        None => count(C::MigrationsUncounted),
    }
    0
}
