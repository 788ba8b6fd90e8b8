//! What every program shares: the target test, stack capture by content hash, thread names,
//! and counting.

mod cpu;
mod faults;
mod heap;
mod offcpu;
mod sched;
mod targets;
mod timeline;
mod unwind;

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_current_comm, generated::bpf_get_stack},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::ProbeContext,
};
use profiler_ebpf::{
    Comm,
    stacks::{MAX_STACK_DEPTH, NO_STACK, RawStack, stack_hash},
};

pub use targets::is_target;

const EFAULT: i64 = 14;
const EEXIST: i64 = 17;
const E2BIG: i64 = 7;
const ENOMEM: i64 = 12;

// Sizes here are placeholders: user space sets every map's size at load time from the number
// of CPUs, the frequency and the drain interval (see profiler/src/record/sizing.rs).
#[map]
static ACTIVE_SET: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static STACKS_0: HashMap<u64, RawStack> = HashMap::with_max_entries(1, 0);
#[map]
static STACKS_1: HashMap<u64, RawStack> = HashMap::with_max_entries(1, 0);
#[map]
static STACK_SCRATCH: PerCpuArray<RawStack> = PerCpuArray::with_max_entries(1, 0);
#[map]
static THREAD_COMMS: HashMap<u32, Comm> = HashMap::with_max_entries(1, 0);

/// Adds one to slot `index` of a per-CPU counter array.
#[inline(always)]
pub fn bump(counters: &PerCpuArray<u64>, index: u32) {
    if let Some(c) = counters.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; a program does not nest with itself on one CPU.
        unsafe { *c += 1 };
    }
}

/// The set programs write to now (0 or 1).
#[inline(always)]
pub fn active_set() -> u32 {
    ACTIVE_SET.get(0).copied().unwrap_or(0) & 1
}

#[inline(always)]
pub fn stacks_of(set: u32) -> &'static HashMap<u64, RawStack> {
    if set == 0 { &STACKS_0 } else { &STACKS_1 }
}

/// How taking one stack ended.
pub enum Stack {
    /// Stored (or already present) under this hash.
    Stored(u64),
    /// No frames: a kernel stack of a user-mode sample, or a thread without user context.
    Missing,
    /// The stacks map is full.
    MapFull,
    Error,
}

/// Copies a stack of the current task into this CPU's scratch slot and hashes it; `flags` is
/// `BPF_F_USER_STACK` for the user stack, 0 for the kernel stack. The caller stores it.
#[inline(always)]
pub fn capture_stack<C: EbpfContext>(
    ctx: &C,
    flags: u64,
) -> Result<(u64, &'static RawStack), Stack> {
    let Some(scratch) = STACK_SCRATCH.get_ptr_mut(0) else {
        return Err(Stack::Error);
    };
    // SAFETY: our CPU's scratch slot; nothing else runs on this CPU until we return.
    let scratch = unsafe { &mut *scratch };
    // SAFETY: the buffer is the slot's `ips`, of exactly the size passed.
    let n = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            scratch.ips.as_mut_ptr().cast(),
            (MAX_STACK_DEPTH * 8) as u32,
            flags,
        )
    };
    if n == -EFAULT || n == 0 {
        return Err(Stack::Missing);
    }
    if n < 0 {
        return Err(Stack::Error);
    }
    let len = (n as usize / 8).min(MAX_STACK_DEPTH);
    scratch.len = len as u32;
    Ok((stack_hash(&scratch.ips, len), scratch))
}

/// Like `capture_stack` for the user stack, from a uprobe at a function's first instruction:
/// there the caller's return address is not yet in the frame-pointer chain (it sits on top of
/// the stack on x86_64, in the link register on aarch64), so a plain walk skips the caller —
/// the very function that called `malloc`. It is put back as the second frame, unless the
/// kernel's walk already has it (it does for functions that begin with a frame setup).
#[inline(always)]
pub fn capture_entry_stack(ctx: &ProbeContext) -> Result<(u64, &'static RawStack), Stack> {
    let Some(scratch) = STACK_SCRATCH.get_ptr_mut(0) else {
        return Err(Stack::Error);
    };
    // SAFETY: our CPU's scratch slot; nothing else runs on this CPU until we return.
    let scratch = unsafe { &mut *scratch };
    // SAFETY: `regs` is the probe's context; fields at fixed offsets.
    #[cfg(bpf_target_arch = "x86_64")]
    let caller = unsafe { aya_ebpf::helpers::bpf_probe_read_user((*ctx.regs).rsp as *const u64) }
        .unwrap_or(0);
    // SAFETY: as above; x30 is the link register.
    #[cfg(bpf_target_arch = "aarch64")]
    let caller = unsafe { (*ctx.regs).regs[30] };
    #[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
    compile_error!("capture_entry_stack: where is a function's return address at its entry?");
    // Leave room for the caller at index 1: the walk goes to ips[1..].
    // SAFETY: the buffer is the slot's `ips` from index 1, of exactly the size passed.
    let n = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            scratch.ips.as_mut_ptr().add(1).cast(),
            ((MAX_STACK_DEPTH - 1) * 8) as u32,
            BPF_F_USER_STACK as u64,
        )
    };
    if n == -EFAULT || n == 0 {
        return Err(Stack::Missing);
    }
    if n < 0 {
        return Err(Stack::Error);
    }
    let walked = (n as usize / 8).min(MAX_STACK_DEPTH - 1);
    // ips[1] is the probed instruction; ips[2], if any, the walk's first return address.
    scratch.ips[0] = scratch.ips[1];
    let len = if caller != 0 && (walked < 2 || scratch.ips[2] != caller) {
        scratch.ips[1] = caller;
        walked + 1
    } else {
        // Nothing to add: close the gap the walk left at index 1.
        let mut i = 1;
        while i < MAX_STACK_DEPTH - 1 {
            if i >= walked {
                break;
            }
            scratch.ips[i] = scratch.ips[i + 1];
            i += 1;
        }
        walked
    };
    scratch.len = len as u32;
    Ok((stack_hash(&scratch.ips, len), scratch))
}

/// What an insert of a stack (with NOEXIST) into a stacks map means.
#[inline(always)]
pub fn stored(result: Result<(), i64>, hash: u64) -> Stack {
    match result {
        Ok(()) => Stack::Stored(hash),
        // Already there: the common case, and it costs a lookup, no copy.
        Err(e) if -e == EEXIST => Stack::Stored(hash),
        Err(e) if -e == E2BIG || -e == ENOMEM => Stack::MapFull,
        Err(_) => Stack::Error,
    }
}

/// Takes a stack into the active set's `STACKS` map (see `capture_stack` for `flags`).
#[inline(always)]
pub fn take_stack<C: EbpfContext>(ctx: &C, set: u32, flags: u64) -> Stack {
    match capture_stack(ctx, flags) {
        Ok((hash, stack)) => stored(
            stacks_of(set)
                .insert(&hash, stack, BPF_NOEXIST as u64)
                .map_err(|e| e as i64),
            hash,
        ),
        Err(outcome) => outcome,
    }
}

/// Takes a stack into an LRU map of a collector's own (stacks that must outlive a map set).
#[inline(always)]
pub fn take_stack_into<C: EbpfContext>(
    ctx: &C,
    map: &LruHashMap<u64, RawStack>,
    flags: u64,
) -> Stack {
    match capture_stack(ctx, flags) {
        Ok((hash, stack)) => stored(
            map.insert(&hash, stack, BPF_NOEXIST as u64)
                .map_err(|e| e as i64),
            hash,
        ),
        Err(outcome) => outcome,
    }
}

/// Counts how taking a stack ended, in `counters` at `outcomes` (stored, missing, map full,
/// error), and returns its hash, or `NO_STACK`.
#[inline(always)]
pub fn counted_stack(stack: Stack, counters: &PerCpuArray<u64>, outcomes: [u32; 4]) -> u64 {
    let (index, hash) = match stack {
        Stack::Stored(h) => (outcomes[0], h),
        Stack::Missing => (outcomes[1], NO_STACK),
        Stack::MapFull => (outcomes[2], NO_STACK),
        Stack::Error => (outcomes[3], NO_STACK),
    };
    bump(counters, index);
    hash
}

/// How remembering the current thread's name ended.
pub enum CommOutcome {
    Known,
    Full,
    Error,
}

/// Keeps the current thread's name; written only when new or changed (threads rename
/// themselves after start, e.g. tokio workers).
#[inline(always)]
pub fn remember_comm(tid: u32) -> CommOutcome {
    let Ok(name) = bpf_get_current_comm() else {
        return CommOutcome::Error;
    };
    let comm = Comm(name);
    // SAFETY: read-only look at a value the map owns, copied out immediately.
    let known = unsafe { THREAD_COMMS.get(&tid) }.copied();
    if known == Some(comm) || THREAD_COMMS.insert(&tid, &comm, 0).is_ok() {
        CommOutcome::Known
    } else {
        CommOutcome::Full
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
