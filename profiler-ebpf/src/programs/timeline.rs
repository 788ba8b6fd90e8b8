//! `profiler trace`: scheduler events of target threads and CPU samples with timestamps, one
//! ring-buffer record each. See `profiler_ebpf::timeline`.
//!
//! Cost: one `sched_switch` run per context switch machine-wide (a target test on prev and
//! next for other processes' tasks), a record per event of a target thread, and two stack
//! walks per blocking switch-out and per sample of one.

use aya_ebpf::{
    Global,
    bindings::BPF_F_USER_STACK,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    },
    macros::{btf_tracepoint, map, perf_event},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, PerfEventContext},
};
use profiler_ebpf::{
    stacks::{NO_STACK, RawStack},
    timeline::{
        FLAG_PREEMPT, KIND_SAMPLE, KIND_SWITCH, KIND_WAKEUP_NEW, KIND_WAKING, NO_CPU, TaskFields,
        TimelineCounter as C, TimelineEvent,
    },
};

use super::targets::{task_comm, task_ids};
use super::{bump, counted_stack, is_target, take_stack_into};

#[unsafe(no_mangle)]
static TIMELINE_TASK_FIELDS: Global<TaskFields> = Global::new(TaskFields {
    prio: 0,
    cpu: 0,
    valid: 0,
    has_cpu: 0,
});

#[map]
static TIMELINE_EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static TIMELINE_STACKS: LruHashMap<u64, RawStack> = LruHashMap::with_max_entries(1, 0);
#[map]
static TIMELINE_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(C::COUNT, 0);

/// Priority of a task whose `prio` cannot be read: nice 0.
const DEFAULT_PRIO: i32 = 120;
/// `prev_state` bits of a thread that blocks rather than being preempted or exiting.
const TASK_DEAD: u32 = 0x80;

#[inline(always)]
fn count(c: C) {
    bump(&TIMELINE_COUNTERS, c as u32);
}

#[inline(always)]
fn prio_of(task: u64) -> i32 {
    let f = TIMELINE_TASK_FIELDS.load();
    if f.valid == 0 || task == 0 {
        return DEFAULT_PRIO;
    }
    // SAFETY: a probe read of kernel memory; a bad address fails the read, nothing else.
    unsafe { bpf_probe_read_kernel((task + f.prio as u64) as *const i32) }.unwrap_or(DEFAULT_PRIO)
}

#[inline(always)]
fn cpu_of(task: u64) -> u32 {
    let f = TIMELINE_TASK_FIELDS.load();
    if f.has_cpu == 0 || task == 0 {
        return NO_CPU;
    }
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel((task + f.cpu as u64) as *const u32) }.unwrap_or(NO_CPU)
}

/// The current task's user and kernel stacks, each outcome counted.
#[inline(always)]
fn stacks<Ctx: aya_ebpf::EbpfContext>(ctx: &Ctx) -> (u64, u64) {
    let user = counted_stack(
        take_stack_into(ctx, &TIMELINE_STACKS, BPF_F_USER_STACK as u64),
        &TIMELINE_COUNTERS,
        [
            C::UserStack as u32,
            C::UserStackMissing as u32,
            C::UserStackMapFull as u32,
            C::UserStackError as u32,
        ],
    );
    let kernel = counted_stack(
        take_stack_into(ctx, &TIMELINE_STACKS, 0),
        &TIMELINE_COUNTERS,
        [
            C::KernelStack as u32,
            C::KernelStackMissing as u32,
            C::KernelStackMapFull as u32,
            C::KernelStackError as u32,
        ],
    );
    (user, kernel)
}

/// Sends `event`, counting it as sent or lost.
#[inline(always)]
fn send(event: &TimelineEvent, sent: C, lost: C) {
    match TIMELINE_EVENTS.output::<TimelineEvent>(event, 0) {
        Ok(()) => count(sent),
        Err(_) => count(lost),
    }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_boot_ns() }
}

#[inline(always)]
fn this_cpu() -> u32 {
    // SAFETY: no preconditions.
    unsafe { bpf_get_smp_processor_id() }
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`, run by `prev` on its CPU.
#[btf_tracepoint(function = "sched_switch")]
pub fn timeline_sched_switch(ctx: BtfTracePointContext) -> i32 {
    let preempt: u64 = ctx.arg(0);
    let prev: u64 = ctx.arg(1);
    let next: u64 = ctx.arg(2);
    let prev_state = ctx.arg::<u64>(3) as u32;
    let id = bpf_get_current_pid_tgid();
    let (prev_tid, prev_pid) = (id as u32, (id >> 32) as u32);
    let Some((next_tid, next_pid)) = task_ids(next) else {
        count(C::TaskReadError);
        return 0;
    };
    let prev_target = prev_tid != 0 && is_target(prev_pid);
    if !prev_target && !(next_tid != 0 && is_target(next_pid)) {
        return 0;
    }
    let ts = now();
    // Stacks where a target thread blocks: preemptions are on-CPU samples, and an exiting
    // thread waits for nothing.
    let blocking = prev_target && preempt == 0 && prev_state != 0 && prev_state & TASK_DEAD == 0;
    let (user_stack, kernel_stack) = if blocking {
        count(C::Blocking);
        stacks(&ctx)
    } else {
        (NO_STACK, NO_STACK)
    };
    let event = TimelineEvent {
        kind: KIND_SWITCH,
        cpu: this_cpu(),
        ts,
        a_tid: prev_tid,
        a_pid: prev_pid,
        b_tid: next_tid,
        b_pid: next_pid,
        a_prio: prio_of(prev),
        b_prio: prio_of(next),
        state: prev_state,
        flags: if preempt != 0 { FLAG_PREEMPT } else { 0 },
        user_stack,
        kernel_stack,
        a_comm: bpf_get_current_comm().unwrap_or([0; 16]),
        b_comm: task_comm(next).unwrap_or([0; 16]),
    };
    send(&event, C::SwitchSent, C::SwitchLost);
    0
}

/// `sched_waking(struct task_struct *p)`, run by the waker.
#[btf_tracepoint(function = "sched_waking")]
pub fn timeline_sched_waking(ctx: BtfTracePointContext) -> i32 {
    woken(ctx.arg(0), KIND_WAKING);
    0
}

/// `sched_wakeup_new(struct task_struct *p)`: a new thread's first wake-up, run by the thread
/// that created it.
#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn timeline_sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    woken(ctx.arg(0), KIND_WAKEUP_NEW);
    0
}

#[inline(always)]
fn woken(p: u64, kind: u32) {
    let Some((tid, pid)) = task_ids(p) else {
        count(C::TaskReadError);
        return;
    };
    if tid == 0 || !is_target(pid) {
        return;
    }
    let id = bpf_get_current_pid_tgid();
    let event = TimelineEvent {
        kind,
        cpu: this_cpu(),
        ts: now(),
        a_tid: id as u32,
        a_pid: (id >> 32) as u32,
        b_tid: tid,
        b_pid: pid,
        a_prio: DEFAULT_PRIO,
        b_prio: prio_of(p),
        state: cpu_of(p),
        flags: 0,
        user_stack: NO_STACK,
        kernel_stack: NO_STACK,
        a_comm: [0; 16],
        b_comm: task_comm(p).unwrap_or([0; 16]),
    };
    send(&event, C::WakingSent, C::WakingLost);
}

/// A cpu-clock sample on one CPU: a record with the time and stacks of a target thread.
#[perf_event]
pub fn timeline_cpu(ctx: PerfEventContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let (tid, pid) = (id as u32, (id >> 32) as u32);
    if tid == 0 || !is_target(pid) {
        return 0;
    }
    count(C::Samples);
    let (user_stack, kernel_stack) = stacks(&ctx);
    let event = TimelineEvent {
        kind: KIND_SAMPLE,
        cpu: this_cpu(),
        ts: now(),
        a_tid: tid,
        a_pid: pid,
        b_tid: 0,
        b_pid: 0,
        a_prio: DEFAULT_PRIO,
        b_prio: DEFAULT_PRIO,
        state: 0,
        flags: 0,
        user_stack,
        kernel_stack,
        a_comm: bpf_get_current_comm().unwrap_or([0; 16]),
        b_comm: [0; 16],
    };
    send(&event, C::SampleSent, C::SampleLost);
    0
}
