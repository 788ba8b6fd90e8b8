//! `profiler watch`: per-thread switch and migration counts of target threads, the user frames
//! they last blocked in, and their run-queue latency histogram, all from `sched_switch` and
//! the kernel's own accounting. See `profiler_ebpf::sched`.
//!
//! Cost: one run per context switch machine-wide. A switch whose outgoing task is not a
//! target is one hash lookup; a target thread's switch-out is three probe reads of its
//! `task_struct` and a few map updates; with `--detail` a walk of at most `WAIT_FRAMES` user
//! frames per blocking switch-out.

use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated::bpf_get_stack},
    macros::{btf_tracepoint, map},
    maps::{HashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use profiler_ebpf::sched::{
    LATENCY_BUCKETS, LatencyHist, SchedFields, ThreadCounts, WAIT_FRAMES, WatchCounter as C,
    latency_bucket,
};

use super::{active_set, bump, is_target};

#[unsafe(no_mangle)]
static WATCH_WAIT_FRAMES: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static WATCH_SCHED_FIELDS: Global<SchedFields> = Global::new(SchedFields {
    pcount: 0,
    run_delay: 0,
    nr_migrations: 0,
    valid: 0,
});

#[map]
static WATCH_THREADS: HashMap<u32, ThreadCounts> = HashMap::with_max_entries(1, 0);
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

/// A `u64` field of `task` at `offset`.
#[inline(always)]
fn field(task: u64, offset: u32) -> Option<u64> {
    // SAFETY: a probe read of kernel memory; a bad address fails the read, nothing else.
    unsafe { bpf_probe_read_kernel((task + offset as u64) as *const u64) }.ok()
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`, run by `prev` on its CPU.
#[btf_tracepoint(function = "sched_switch")]
pub fn watch_sched_switch(ctx: BtfTracePointContext) -> i32 {
    let id = bpf_get_current_pid_tgid();
    let (tid, tgid) = (id as u32, (id >> 32) as u32);
    if tid == 0 || !is_target(tgid) {
        return 0;
    }
    let preempt: u64 = ctx.arg(0);
    let prev: u64 = ctx.arg(1);
    let prev_state = ctx.arg::<u64>(3) as u32;
    count(C::SwitchOut);
    // As the kernel counts nvcsw/nivcsw (__schedule): a switch without preemption from a
    // state other than running is voluntary; an exiting thread's last switch is one too.
    let voluntary = preempt == 0 && prev_state != 0;
    count(if voluntary {
        C::Voluntary
    } else {
        C::Involuntary
    });
    let Some(t) = thread(tid, tgid) else {
        count(C::ThreadsFull);
        return 0;
    };
    count(C::Counted);
    // SAFETY: a map value pointer, valid for this run; only this thread's own switch-out
    // writes its entry, and it runs on one CPU at a time.
    let t = unsafe { &mut *t };
    if voluntary {
        t.voluntary += 1;
    } else {
        t.involuntary += 1;
    }
    account(t, prev);
    if prev_state & TASK_DEAD != 0 {
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
    0
}

/// Reads the thread's accounting: the wait before the run now ending (one more `pcount`
/// since the last switch-out) and the migrations since.
#[inline(always)]
fn account(t: &mut ThreadCounts, task: u64) {
    let f = WATCH_SCHED_FIELDS.load();
    if f.valid == 0 {
        count(C::TaskReadError);
        return;
    }
    let (Some(pcount), Some(run_delay), Some(migrations)) = (
        field(task, f.pcount),
        field(task, f.run_delay),
        field(task, f.nr_migrations),
    ) else {
        count(C::TaskReadError);
        return;
    };
    if t.seen == 0 {
        t.seen = 1;
        count(C::FirstSeen);
    } else {
        let runs = pcount.wrapping_sub(t.last_pcount);
        let moved = migrations.wrapping_sub(t.last_migrations);
        t.migrations += moved;
        if let Some(c) = WATCH_COUNTERS.get_ptr_mut(C::Migrations as u32) {
            // SAFETY: this CPU's slot; programs do not nest on one CPU.
            unsafe { *c += moved };
        }
        match runs {
            0 => count(C::NoRun),
            1 => latency(run_delay.wrapping_sub(t.last_run_delay)),
            _ => count(C::LatencyMerged),
        }
    }
    t.last_pcount = pcount;
    t.last_run_delay = run_delay;
    t.last_migrations = migrations;
}

#[inline(always)]
fn latency(ns: u64) {
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
