//! Stack copies (see `profiler_ebpf::unwind`): the user registers and the top of the user
//! stack of a sample, sent through a collector's ring buffer to be unwound in user space.

use aya_ebpf::{
    EbpfContext, Global,
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{
            bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_get_stack, bpf_task_pt_regs,
        },
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use profiler_ebpf::{
    cpu::CpuCounter as C,
    stacks::MAX_STACK_DEPTH,
    unwind::{
        CALL_GRAPH_AUTO, CALL_GRAPH_DWARF, COPY_HEADER_SIZE, CodeRanges, CopyRecord,
        MAX_CODE_RANGES, MAX_STACK_COPY,
    },
};

use super::bump;

#[unsafe(no_mangle)]
pub(super) static CALL_GRAPH: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub(super) static STACK_COPY_BYTES: Global<u32> = Global::new(16_384);

#[map]
static COPY_SCRATCH: Array<CopyRecord> = Array::with_max_entries(1, 0);
#[map]
static FP_LESS_CODE: HashMap<u32, CodeRanges> = HashMap::with_max_entries(1, 0);

const EFAULT: i64 = 14;
/// The granularity at which a short stack is probed (the smallest page size).
const PAGE: u64 = 4096;

/// How copying a sample's stack ended.
pub enum Copy {
    /// The mode does not want this sample copied: walk it in the kernel.
    NotWanted,
    /// Sent to the ring (counted `copied`).
    Sent,
    /// Registers or stack unreadable, or the ring full (counted): walk it in the kernel
    /// instead.
    Fallback,
}

/// Clamps a byte count to 1..=MAX_STACK_COPY in a way the verifier can follow.
#[inline(always)]
pub(super) fn bounded(n: u32) -> u32 {
    (n.wrapping_sub(1) & (MAX_STACK_COPY as u32 - 1)) + 1
}

/// The registers an unwinder needs, from the task's saved user-mode registers: right also when
/// the sample interrupted the kernel (a system call), where the perf context holds kernel
/// registers. None when they are not a user context.
#[inline(always)]
fn user_regs() -> Option<[u64; 4]> {
    user_regs_in_syscall().map(|(regs, _)| regs)
}

/// `user_regs`, and whether the task is in a system call now (the kernel keeps the call's
/// number in the saved registers, -1 when the kernel was entered otherwise).
#[inline(always)]
pub(super) fn user_regs_in_syscall() -> Option<([u64; 4], bool)> {
    // SAFETY: helpers on the current task; a failed read returns an error, nothing else.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    if regs == 0 {
        return None;
    }
    #[cfg(bpf_target_arch = "x86_64")]
    {
        // struct pt_regs: rbp is word 4, orig_ax 15, rip 16, cs 17, rsp 19.
        let r = unsafe { bpf_probe_read_kernel(regs as *const [u64; 20]) }.ok()?;
        if r[17] & 3 != 3 {
            return None;
        }
        Some(([r[16], r[19], r[4], 0], r[15] as i64 >= 0))
    }
    #[cfg(bpf_target_arch = "aarch64")]
    {
        // struct pt_regs starts with user_pt_regs: regs[31] (x29 = fp, x30 = lr), sp, pc,
        // pstate (EL0 when its mode bits are 0); then orig_x0 and the s32 syscallno. Only
        // words 29..36 are read: the whole 288 bytes on the stack put sched_switch over the
        // 512-byte BPF stack limit.
        let r = unsafe { bpf_probe_read_kernel((regs + 29 * 8) as *const [u64; 7]) }.ok()?;
        let (fp, lr, sp, pc, pstate, syscallno) = (r[0], r[1], r[2], r[3], r[4], r[6]);
        if pstate & 0xf != 0 {
            return None;
        }
        Some(([pc, sp, fp, lr], syscallno as u32 as i32 >= 0))
    }
}

/// Whether the mode wants this sample's stack copied: always with `dwarf`; with `auto` when
/// `pc` lies in code without frame pointers, or user space has not looked at the process yet.
// Not inlined, like the other loops here: a BPF-to-BPF call returns one scalar, so the verifier
// does not carry every loop state into the rest of the program (inlined, it took 0.5 s to
// verify the cpu program instead of 20 ms).
#[inline(never)]
pub(super) fn wanted(mode: u32, tgid: u32, pc: u64) -> bool {
    if mode == CALL_GRAPH_DWARF {
        return true;
    }
    if mode != CALL_GRAPH_AUTO {
        return false;
    }
    // SAFETY: read-only look at a value the map owns.
    let Some(code) = (unsafe { FP_LESS_CODE.get(&tgid) }) else {
        return true;
    };
    // A linear scan of the sorted ranges, stopping at the first that starts above pc: a search
    // by halving branches both ways at every step, and the verifier walked all 2^9 paths (a
    // second to load); this loop has one state per step. Processes have a few dozen ranges.
    let len = (code.len as usize).min(MAX_CODE_RANGES);
    let mut i = 0;
    while i < MAX_CODE_RANGES {
        if i >= len {
            break;
        }
        let [start, end] = code.ranges[i];
        if pc < start {
            break;
        }
        if pc < end {
            return true;
        }
        i += 1;
    }
    false
}

/// Reads up to `size` bytes of user stack from `sp` into `dst`. A stack whose top (its mapping's
/// end) is nearer than `size` fails a read of the whole size, so the last readable page
/// boundary is found by probing page by page and the shorter copy is read (counted in slot
/// `shrunk` of `counters`). Returns the bytes read.
#[inline(always)]
pub(super) fn read_stack(
    dst: *mut u8,
    sp: u64,
    size: u32,
    counters: &PerCpuArray<u64>,
    shrunk: u32,
) -> Option<u32> {
    let size = bounded(size);
    // SAFETY: `dst` holds MAX_STACK_COPY bytes; a bad user address fails the read.
    let whole = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(dst.cast(), size, sp as *const _)
    };
    if whole == 0 {
        return Some(size);
    }
    let first = (sp | (PAGE - 1)) + 1;
    let end = sp + size as u64;
    if first >= end {
        return None;
    }
    // Pages are probed upwards, one 8-byte read each, until one fails: a halving search
    // would be misled by a readable mapping above a gap (the vdso often sits just above the
    // main thread's stack). At most 16 probes for 64 KiB.
    let pages = (end - first).div_ceil(PAGE);
    let mut lo = 0u64;
    while lo < (MAX_STACK_COPY as u64 / PAGE) {
        if lo + 1 >= pages {
            break;
        }
        // SAFETY: an 8-byte probe read of a user address.
        if unsafe { bpf_probe_read_user((first + (lo + 1) * PAGE - 8) as *const u64) }.is_err() {
            break;
        }
        lo += 1;
    }
    let n = bounded((first + lo * PAGE - sp) as u32);
    bump(counters, shrunk);
    // SAFETY: as above, with a size of at most MAX_STACK_COPY.
    let ret =
        unsafe { aya_ebpf::helpers::generated::bpf_probe_read_user(dst.cast(), n, sp as *const _) };
    (ret == 0).then_some(n)
}

/// Adds `n` to slot `index` of a per-CPU counter array.
#[inline(always)]
pub(super) fn add(counters: &PerCpuArray<u64>, index: u32, n: u64) {
    if let Some(c) = counters.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; a program does not nest with itself on one CPU.
        unsafe { *c += n };
    }
}

/// Copies the sample's user registers and stack, and its kernel stack, into a record sent
/// through `ring`, when the call-graph mode wants it. Counts the outcome in `counters`
/// (`CpuCounter`), the kernel-stack outcome included when the record was sent.
#[inline(never)]
pub fn copy_stack<Ctx: EbpfContext>(
    ctx: &Ctx,
    tgid: u32,
    tid: u32,
    ring: &RingBuf,
    counters: &PerCpuArray<u64>,
) -> Copy {
    let mode = CALL_GRAPH.load();
    if mode != CALL_GRAPH_DWARF && mode != CALL_GRAPH_AUTO {
        return Copy::NotWanted;
    }
    let Some(regs) = user_regs() else {
        bump(counters, C::CopyRegsError as u32);
        return Copy::Fallback;
    };
    if !wanted(mode, tgid, regs[0]) {
        return Copy::NotWanted;
    }
    // SAFETY: no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(record) = COPY_SCRATCH.get_ptr_mut(cpu) else {
        bump(counters, C::CopyReadFault as u32);
        return Copy::Fallback;
    };
    // SAFETY: this CPU's slot; perf-event programs do not nest on one CPU.
    let record = unsafe { &mut *record };
    let Some(n) = read_stack(
        record.stack.as_mut_ptr(),
        regs[1],
        STACK_COPY_BYTES.load(),
        counters,
        C::CopyShrunk as u32,
    ) else {
        bump(counters, C::CopyReadFault as u32);
        return Copy::Fallback;
    };
    // SAFETY: the buffer is the record's `kernel`, of exactly the size passed.
    let k = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            record.header.kernel.as_mut_ptr().cast(),
            (MAX_STACK_DEPTH * 8) as u32,
            0,
        )
    };
    // Its outcome is counted once the record is sent: a sample the ring cannot take is walked
    // in the kernel instead, and counts the kernel stack there.
    let (kernel_len, kernel_outcome) = if k > 0 {
        ((k as usize / 8).min(MAX_STACK_DEPTH) as u32, C::KernelStack)
    } else if k == 0 || k == -EFAULT {
        (0, C::KernelStackAbsent)
    } else {
        (0, C::KernelStackError)
    };
    record.header.tgid = tgid;
    record.header.tid = tid;
    record.header.regs = regs;
    record.header.kernel_len = kernel_len;
    record.header.stack_len = n;
    let total = COPY_HEADER_SIZE + bounded(n) as usize;
    // SAFETY: the record's first `total` bytes (at most its size).
    let bytes =
        unsafe { core::slice::from_raw_parts((record as *const CopyRecord).cast::<u8>(), total) };
    match ring.output::<[u8]>(bytes, 0) {
        Ok(()) => {
            bump(counters, kernel_outcome as u32);
            bump(counters, C::Copied as u32);
            add(counters, C::CopyBytes as u32, n as u64);
            Copy::Sent
        }
        Err(_) => {
            bump(counters, C::CopyRingFull as u32);
            Copy::Fallback
        }
    }
}
