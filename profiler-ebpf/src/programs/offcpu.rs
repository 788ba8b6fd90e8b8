//! `sched_switch` and `sched_waking` (tp_btf): off-CPU time of target threads, charged to the
//! stacks they left the CPU with, and who woke them. See `profiler_ebpf::offcpu`.

use aya_ebpf::{
    Global,
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    },
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use profiler_ebpf::{
    offcpu::{
        OFF_COPY_HEADER_SIZE, OffCopyRecord, OffCpuCounter as C, OffKey, OffPending, OffStart,
        OffValue, STATE_DISK, STATE_OTHER, STATE_RUNNABLE, STATE_SLEEPING, WakeKey, Waker,
    },
    stacks::{NO_STACK, RawStack},
    unwind::CALL_GRAPH_FP,
};

use super::targets::task_ids;
use super::unwind::{
    CALL_GRAPH, STACK_COPY_BYTES, add, bounded, read_stack, user_regs_in_syscall, wanted,
};
use super::{
    CommOutcome, Stack, active_set, bump, capture_stack, is_target, remember_comm, stored,
};

#[unsafe(no_mangle)]
static OFFCPU_MIN_NS: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static OFFCPU_WAKERS: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFFCPU_WAKER_MIN_NS: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static OFFCPU_COPY_MIN_NS: Global<u64> = Global::new(0);

#[map]
static OFFCPU_START: HashMap<u32, OffStart> = HashMap::with_max_entries(1, 0);
#[map]
static OFFCPU_WAKER: HashMap<u32, Waker> = HashMap::with_max_entries(1, 0);
#[map]
static OFFCPU_COUNTS_0: HashMap<OffKey, OffValue> = HashMap::with_max_entries(1, 0);
#[map]
static OFFCPU_COUNTS_1: HashMap<OffKey, OffValue> = HashMap::with_max_entries(1, 0);
#[map]
static OFFCPU_WAKE_COUNTS_0: HashMap<WakeKey, OffValue> = HashMap::with_max_entries(1, 0);
#[map]
static OFFCPU_WAKE_COUNTS_1: HashMap<WakeKey, OffValue> = HashMap::with_max_entries(1, 0);
#[map]
static OFFCPU_STACKS: LruHashMap<u64, RawStack> = LruHashMap::with_max_entries(1, 0);
#[map]
static OFFCPU_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(C::COUNT, 0);
#[map]
static OFFCPU_PENDING: HashMap<u32, OffPending> = HashMap::with_max_entries(1, 0);
// Sized by user space with copies on, one page otherwise.
#[map]
static OFFCPU_COPIES: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static OFFCPU_COPY_SCRATCH: Array<OffCopyRecord> = Array::with_max_entries(1, 0);

// task_struct state bits (include/linux/sched.h).
const TASK_INTERRUPTIBLE: u32 = 0x1;
const TASK_UNINTERRUPTIBLE: u32 = 0x2;
const TASK_STOPPED_OR_TRACED: u32 = 0x4 | 0x8;
const TASK_DEAD: u32 = 0x80;
const TASK_NOLOAD: u32 = 0x400;

#[inline(always)]
fn count(c: C) {
    bump(&OFFCPU_COUNTERS, c as u32);
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`, run by `prev` on its CPU.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let preempt: u64 = ctx.arg(0);
    let next: u64 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    switch_in(next, now);
    switch_out(&ctx, preempt != 0, prev_state as u32, now);
    0
}

/// The wait state a thread leaves the CPU in; None for a thread that is exiting.
#[inline(always)]
fn wait_state(preempt: bool, prev_state: u32) -> Option<u32> {
    if preempt {
        return Some(STATE_RUNNABLE);
    }
    if prev_state & TASK_DEAD != 0 {
        return None;
    }
    Some(if prev_state & TASK_NOLOAD != 0 {
        // TASK_IDLE: uninterruptible but not counted as load; an idle wait, not I/O.
        STATE_SLEEPING
    } else if prev_state & TASK_UNINTERRUPTIBLE != 0 {
        STATE_DISK
    } else if prev_state & TASK_INTERRUPTIBLE != 0 {
        STATE_SLEEPING
    } else if prev_state & TASK_STOPPED_OR_TRACED != 0 {
        STATE_OTHER
    } else {
        // Runnable and switched out without preemption: sched_yield.
        STATE_RUNNABLE
    })
}

#[inline(always)]
fn stack_of(ctx: &BtfTracePointContext, flags: u64) -> Stack {
    match capture_stack(ctx, flags) {
        Ok((hash, stack)) => stored(
            OFFCPU_STACKS
                .insert(&hash, stack, BPF_NOEXIST as u64)
                .map_err(|e| e as i64),
            hash,
        ),
        Err(outcome) => outcome,
    }
}

#[inline(always)]
fn switch_out(ctx: &BtfTracePointContext, preempt: bool, prev_state: u32, now: u64) {
    let id = bpf_get_current_pid_tgid();
    let (tid, tgid) = (id as u32, (id >> 32) as u32);
    if tid == 0 || !is_target(tgid) {
        return;
    }
    let Some(state) = wait_state(preempt, prev_state) else {
        return;
    };
    count(C::SwitchOut);
    let (user_stack, kernel_stack) = if state == STATE_RUNNABLE {
        count(C::Preempted);
        (NO_STACK, NO_STACK)
    } else {
        blocked_stacks(ctx)
    };
    let mut start = OffStart {
        since_ns: now,
        user_stack,
        kernel_stack,
        tgid,
        state,
        ..OffStart::default()
    };
    // Whether the user stack is to be copied if the block proves long: only blocks inside a
    // system call, whose registers `sys_exit` sees unchanged.
    let mode = CALL_GRAPH.load();
    if state != STATE_RUNNABLE
        && mode != CALL_GRAPH_FP
        && let Some((regs, true)) = user_regs_in_syscall()
    {
        start.ip = regs[0];
        start.sp = regs[1];
        start.copy = u32::from(wanted(mode, tgid, regs[0]));
    }
    match OFFCPU_START.insert(&tid, &start, 0) {
        Ok(()) => count(C::Started),
        Err(e) if e == -7 => count(C::StartFull),
        Err(_) => count(C::StartError),
    }
    match remember_comm(tid) {
        CommOutcome::Known => {}
        CommOutcome::Full => count(C::CommsFull),
        CommOutcome::Error => count(C::CommError),
    }
}

/// The user and kernel stacks of the current thread, which is blocking.
#[inline(always)]
fn blocked_stacks(ctx: &BtfTracePointContext) -> (u64, u64) {
    let user_stack = match stack_of(ctx, BPF_F_USER_STACK as u64) {
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
    let kernel_stack = match stack_of(ctx, 0) {
        Stack::Stored(h) => {
            count(C::KernelStack);
            h
        }
        Stack::Missing => {
            count(C::KernelStackMissing);
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
    (user_stack, kernel_stack)
}

/// Adds one interval to a count map entry. The key holds the thread, which is switched in on
/// one CPU at a time, so no two CPUs update one entry at once: plain adds are exact.
macro_rules! charge {
    ($map:expr, $key:expr, $ns:expr, $ok:expr, $full:expr, $error:expr) => {
        if let Some(v) = $map.get_ptr_mut($key) {
            // SAFETY: the value pointer stays valid for this program run.
            unsafe {
                (*v).ns += $ns;
                (*v).count += 1;
            }
            count($ok);
        } else {
            match $map.insert($key, &OffValue { ns: $ns, count: 1 }, BPF_NOEXIST as u64) {
                Ok(()) => count($ok),
                Err(e) if e == -7 => count($full),
                Err(_) => count($error),
            }
        }
    };
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
    // SAFETY: copied out at once.
    let Some(start) = (unsafe { OFFCPU_START.get(&tid) }).copied() else {
        return;
    };
    let _ = OFFCPU_START.remove(&tid);
    count(C::SwitchIn);
    let ns = now.saturating_sub(start.since_ns);
    let long = ns >= OFFCPU_MIN_NS.load();
    let mut key = OffKey {
        tgid: start.tgid,
        tid,
        user_stack: NO_STACK,
        kernel_stack: NO_STACK,
        state: start.state,
        _pad: 0,
    };
    if long {
        count(C::Charged);
        key.user_stack = start.user_stack;
        key.kernel_stack = start.kernel_stack;
    } else {
        count(C::Short);
    }
    // SAFETY: copied out at once.
    let waker = (unsafe { OFFCPU_WAKER.get(&tid) }).copied();
    if waker.is_some() {
        let _ = OFFCPU_WAKER.remove(&tid);
    }
    if long
        && start.copy != 0
        && ns >= OFFCPU_COPY_MIN_NS.load()
        && defer(tid, &key, ns, &start, waker.as_ref())
    {
        count(C::Deferred);
        return;
    }
    let set = active_set();
    let counts = if set == 0 {
        &OFFCPU_COUNTS_0
    } else {
        &OFFCPU_COUNTS_1
    };
    charge!(counts, &key, ns, C::Counted, C::CountsFull, C::CountsError);
    if let Some(waker) = waker
        && long
    {
        charge_waker(set, &key, &waker, ns);
    }
}

#[inline(always)]
fn charge_waker(set: u32, key: &OffKey, waker: &Waker, ns: u64) {
    let wake_counts = if set == 0 {
        &OFFCPU_WAKE_COUNTS_0
    } else {
        &OFFCPU_WAKE_COUNTS_1
    };
    let wake_key = WakeKey {
        blocked: *key,
        waker: *waker,
    };
    charge!(
        wake_counts,
        &wake_key,
        ns,
        C::WakeCounted,
        C::WakeCountsFull,
        C::WakeCountsFull
    );
}

/// Holds a long interval until its thread's `sys_exit` copies its user stack. False when the
/// pending map is full (the caller charges it now, with the frame-pointer stack).
#[inline(always)]
fn defer(tid: u32, key: &OffKey, ns: u64, start: &OffStart, waker: Option<&Waker>) -> bool {
    // SAFETY: copied out at once.
    if let Some(old) = (unsafe { OFFCPU_PENDING.get(&tid) }).copied() {
        count(C::PendingReplaced);
        charge_fallback(&old);
    }
    let pending = OffPending {
        key: *key,
        ns,
        ip: start.ip,
        sp: start.sp,
        has_waker: u32::from(waker.is_some()),
        _pad: 0,
        waker: waker.copied().unwrap_or_default(),
    };
    match OFFCPU_PENDING.insert(&tid, &pending, 0) {
        Ok(()) => true,
        Err(_) => {
            count(C::DeferFull);
            false
        }
    }
}

/// Charges a pending interval with the frame-pointer stack it was switched out with.
#[inline(always)]
fn charge_fallback(p: &OffPending) {
    let set = active_set();
    let counts = if set == 0 {
        &OFFCPU_COUNTS_0
    } else {
        &OFFCPU_COUNTS_1
    };
    charge!(
        counts,
        &p.key,
        p.ns,
        C::FallbackCounted,
        C::FallbackCountsFull,
        C::FallbackCountsFull
    );
    if p.has_waker != 0 {
        charge_waker(set, &p.key, &p.waker, p.ns);
    }
}

/// `sys_exit(struct pt_regs *regs, long ret)`, run by every task leaving a system call (only
/// attached with copies on): a target thread with a pending interval sends it with a copy of
/// its user stack, taken before any of its user code ran again.
#[btf_tracepoint(function = "sys_exit")]
pub fn offcpu_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: copied out at once.
    let Some(p) = (unsafe { OFFCPU_PENDING.get(&tid) }).copied() else {
        return 0;
    };
    let _ = OFFCPU_PENDING.remove(&tid);
    match send_copy(tid, &p) {
        Sent::Yes => count(C::CopySent),
        Sent::Moved => {
            count(C::CopyMoved);
            charge_fallback(&p);
        }
        Sent::Failed => {
            count(C::CopyFailed);
            charge_fallback(&p);
        }
    }
    0
}

enum Sent {
    Yes,
    Moved,
    Failed,
}

#[inline(never)]
fn send_copy(tid: u32, p: &OffPending) -> Sent {
    let Some((regs, _)) = user_regs_in_syscall() else {
        return Sent::Failed;
    };
    if regs[0] != p.ip || regs[1] != p.sp {
        return Sent::Moved;
    }
    // SAFETY: no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(record) = OFFCPU_COPY_SCRATCH.get_ptr_mut(cpu) else {
        return Sent::Failed;
    };
    // SAFETY: this CPU's slot, used by this program only; a task is not migrated while it runs.
    let record = unsafe { &mut *record };
    let Some(n) = read_stack(
        record.stack.as_mut_ptr(),
        regs[1],
        STACK_COPY_BYTES.load(),
        &OFFCPU_COUNTERS,
        C::CopyShrunk as u32,
    ) else {
        return Sent::Failed;
    };
    let h = &mut record.header;
    h.tgid = p.key.tgid;
    h.tid = tid;
    h.regs = regs;
    h.ns = p.ns;
    h.kernel_stack = p.key.kernel_stack;
    h.state = p.key.state;
    h.has_waker = p.has_waker;
    h.waker = p.waker;
    h.stack_len = n;
    let total = OFF_COPY_HEADER_SIZE + bounded(n) as usize;
    // SAFETY: the record's first `total` bytes (at most its size).
    let bytes = unsafe {
        core::slice::from_raw_parts((record as *const OffCopyRecord).cast::<u8>(), total)
    };
    match OFFCPU_COPIES.output::<[u8]>(bytes, 0) {
        Ok(()) => {
            add(&OFFCPU_COUNTERS, C::CopyBytes as u32, n as u64);
            Sent::Yes
        }
        Err(_) => Sent::Failed,
    }
}

/// `sched_waking(struct task_struct *p)`, run by the waker.
#[btf_tracepoint(function = "sched_waking")]
pub fn sched_waking(ctx: BtfTracePointContext) -> i32 {
    if OFFCPU_WAKERS.load() == 0 {
        return 0;
    }
    let p: u64 = ctx.arg(0);
    let Some((tid, _)) = task_ids(p) else {
        count(C::TaskReadError);
        return 0;
    };
    // SAFETY: copied out at once.
    let Some(start) = (unsafe { OFFCPU_START.get(&tid) }).copied() else {
        return 0;
    };
    if start.state == STATE_RUNNABLE {
        return 0;
    }
    count(C::WakeupOfBlocked);
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // Waker stacks cost two walks: only blocks that have already lasted are worth them.
    if now.saturating_sub(start.since_ns) < OFFCPU_WAKER_MIN_NS.load() {
        count(C::WakerShort);
        return 0;
    }
    let id = bpf_get_current_pid_tgid();
    let hash = |s: Stack| match s {
        Stack::Stored(h) => h,
        _ => NO_STACK,
    };
    let waker = Waker {
        tgid: (id >> 32) as u32,
        tid: id as u32,
        user_stack: hash(stack_of(&ctx, BPF_F_USER_STACK as u64)),
        kernel_stack: hash(stack_of(&ctx, 0)),
    };
    match OFFCPU_WAKER.insert(&tid, &waker, 0) {
        Ok(()) => count(C::WakerTaken),
        Err(_) => count(C::WakerFull),
    }
    0
}
