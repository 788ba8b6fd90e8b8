//! The target set and the lifecycle of followed processes: `sched_process_fork` adds a
//! followed target's child processes to `TARGETS`, and fork/exec/exit of targets are sent to
//! user space, which snapshots memory maps while the process lives.

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated},
    macros::{btf_tracepoint, map},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use profiler_ebpf::{
    Comm,
    targets::{FOLLOW_CHILDREN, ProcessEvent, ProcessEventKind, TargetCounter as C, TaskOffsets},
};

use super::bump;

#[unsafe(no_mangle)]
static ALL_PROCESSES: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SELF_TGID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static TASK_OFFSETS: Global<TaskOffsets> = Global::new(TaskOffsets {
    pid: 0,
    tgid: 0,
    comm: 0,
    valid: 0,
});

#[map]
static TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(1, 0);
#[map]
static PROCESS_EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static TARGET_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(C::COUNT, 0);

#[inline(always)]
fn count(c: C) {
    bump(&TARGET_COUNTERS, c as u32);
}

/// Whether `tgid` is a target: never the idle task or the profiler itself.
#[inline(always)]
pub fn is_target(tgid: u32) -> bool {
    if tgid == 0 || tgid == SELF_TGID.load() {
        return false;
    }
    if ALL_PROCESSES.load() != 0 {
        return true;
    }
    // SAFETY: presence test only.
    unsafe { TARGETS.get(&tgid) }.is_some()
}

/// Reads (pid, tgid) of a task through the BTF offsets.
#[inline(always)]
pub fn task_ids(task: u64) -> Option<(u32, u32)> {
    let off = TASK_OFFSETS.load();
    if off.valid == 0 || task == 0 {
        return None;
    }
    // SAFETY: probe reads of kernel memory; a bad address fails the read, nothing else.
    let pid = unsafe { bpf_probe_read_kernel((task + off.pid as u64) as *const i32) }.ok()?;
    let tgid = unsafe { bpf_probe_read_kernel((task + off.tgid as u64) as *const i32) }.ok()?;
    Some((pid as u32, tgid as u32))
}

/// Reads the command name of a task through the BTF offsets.
#[inline(always)]
pub fn task_comm(task: u64) -> Option<[u8; 16]> {
    let off = TASK_OFFSETS.load();
    if off.valid == 0 || task == 0 {
        return None;
    }
    // SAFETY: a probe read of kernel memory; a bad address fails the read, nothing else.
    unsafe { bpf_probe_read_kernel((task + off.comm as u64) as *const [u8; 16]) }.ok()
}

#[inline(always)]
fn send(kind: ProcessEventKind, tgid: u32, parent_tgid: u32) {
    let comm = Comm(bpf_get_current_comm().unwrap_or([0; 16]));
    let event = ProcessEvent {
        kind: kind as u32,
        tgid,
        parent_tgid,
        _pad: 0,
        // SAFETY: no preconditions.
        time_ns: unsafe { generated::bpf_ktime_get_boot_ns() },
        comm,
    };
    match PROCESS_EVENTS.output::<ProcessEvent>(&event, 0) {
        Ok(()) => count(C::EventSent),
        Err(_) => count(C::EventsLost),
    }
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`, run by the
/// forking thread. Followed targets' child processes become targets; with `-a` every new
/// process is only announced (user space reads its maps).
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let all = ALL_PROCESSES.load() != 0;
    let flags = if all {
        0
    } else {
        // SAFETY: presence test and copy of a u32.
        match unsafe { TARGETS.get(&parent_tgid) } {
            Some(&f) if f & FOLLOW_CHILDREN != 0 => f,
            _ => return 0,
        }
    };
    let child: u64 = ctx.arg(1);
    let Some((pid, tgid)) = task_ids(child) else {
        count(C::TaskReadError);
        return 0;
    };
    // A new thread of the target shares its tgid: already a target.
    if pid != tgid {
        return 0;
    }
    if all {
        send(ProcessEventKind::Fork, tgid, parent_tgid);
        return 0;
    }
    match TARGETS.insert(&tgid, &flags, 0) {
        Ok(()) => {
            count(C::ChildFollowed);
            send(ProcessEventKind::Fork, tgid, parent_tgid);
        }
        Err(e) if e == -7 => count(C::TargetsFull),
        Err(_) => count(C::TargetsError),
    }
    0
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`, run
/// by the process after its new program is mapped.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(_ctx: BtfTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    count(C::TargetExec);
    send(ProcessEventKind::Exec, tgid, 0);
    0
}

/// `sched_process_exit(struct task_struct *p)`, run by each exiting thread. The main
/// thread's exit ends the process as a target: its tgid may be reused by an unrelated process.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(_ctx: BtfTracePointContext) -> i32 {
    let id = bpf_get_current_pid_tgid();
    let (tid, tgid) = (id as u32, (id >> 32) as u32);
    if tid != tgid || !is_target(tgid) {
        return 0;
    }
    count(C::TargetExit);
    if ALL_PROCESSES.load() == 0 {
        let _ = TARGETS.remove(&tgid);
    }
    send(ProcessEventKind::Exit, tgid, 0);
    0
}
