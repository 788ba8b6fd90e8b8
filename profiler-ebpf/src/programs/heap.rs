//! Allocator probes: exact call counts, in-kernel sampling by bytes, live sampled allocations.
//! See `profiler_ebpf::heap`.

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    },
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use profiler_ebpf::{
    heap::{
        ARG_CONSTANT, ARG_REGISTER, HEAP_EXP_SLOTS, HeapCounter as C, HeapKey, HeapValue, Live,
        Pending, USDT_ALLOC, USDT_FREE, UsdtArg, UsdtArgs,
    },
    stacks::{NO_STACK, RawStack},
};

use super::{Stack, active_set, bump, capture_entry_stack, capture_stack, is_target, stored};

#[map]
static HEAP_EXP: Array<u64> = Array::with_max_entries(HEAP_EXP_SLOTS, 0);
#[map]
static HEAP_NEXT: PerCpuArray<i64> = PerCpuArray::with_max_entries(1, 0);
#[map]
static HEAP_PENDING: HashMap<u32, Pending> = HashMap::with_max_entries(1, 0);
#[map]
static HEAP_LIVE: HashMap<u64, Live> = HashMap::with_max_entries(1, 0);
#[map]
static HEAP_ALLOCS_0: HashMap<HeapKey, HeapValue> = HashMap::with_max_entries(1, 0);
#[map]
static HEAP_ALLOCS_1: HashMap<HeapKey, HeapValue> = HashMap::with_max_entries(1, 0);
#[map]
static HEAP_STACKS: LruHashMap<u64, RawStack> = LruHashMap::with_max_entries(1, 0);
#[map]
static HEAP_USDT_ARGS: Array<UsdtArgs> = Array::with_max_entries(2, 0);
#[map]
static HEAP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(C::COUNT, 0);

#[inline(always)]
fn count(c: C) {
    bump(&HEAP_COUNTERS, c as u32);
}

#[inline(always)]
fn add(c: C, n: u64) {
    if let Some(v) = HEAP_COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: a per-CPU slot; uprobe programs do not nest on one CPU.
        unsafe { *v += n };
    }
}

/// The current target thread, or None when the process is not a target.
#[inline(always)]
fn target() -> Option<(u32, u32)> {
    let id = bpf_get_current_pid_tgid();
    let (tid, tgid) = (id as u32, (id >> 32) as u32);
    is_target(tgid).then_some((tgid, tid))
}

/// Counts an allocation of `size` bytes; when the countdown runs out, takes the stack and
/// leaves a pending entry for the return probe.
#[inline(always)]
fn allocation(ctx: &ProbeContext, size: u64, out: u64) {
    let Some((tgid, tid)) = target() else { return };
    count(C::Calls);
    add(C::Bytes, size);
    let Some(next) = HEAP_NEXT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let left = unsafe { *next } - size as i64;
    if left > 0 {
        // SAFETY: as above.
        unsafe { *next = left };
        count(C::Unsampled);
        return;
    }
    // SAFETY: bpf_get_prandom_u32 has no preconditions.
    let slot = unsafe { bpf_get_prandom_u32() } % HEAP_EXP_SLOTS;
    let draw = HEAP_EXP.get(slot).copied().unwrap_or(0);
    if draw == 0 {
        count(C::NoRate);
    }
    // SAFETY: as above.
    unsafe { *next = draw.min(i64::MAX as u64) as i64 };
    count(C::Sampled);
    let user_stack = match capture_entry_stack(ctx) {
        Ok((hash, stack)) => stored(
            HEAP_STACKS
                .insert(&hash, stack, BPF_NOEXIST as u64)
                .map_err(|e| e as i64),
            hash,
        ),
        Err(outcome) => outcome,
    };
    let user_stack = match user_stack {
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
    let pending = Pending {
        size,
        user_stack,
        out,
        tgid,
        _pad: 0,
    };
    match HEAP_PENDING.insert(&tid, &pending, 0) {
        Ok(()) => count(C::PendingSet),
        Err(_) => count(C::PendingFull),
    }
}

/// A sampled allocation returned `ptr`: it is live, and counted under its stack.
#[inline(always)]
fn allocated(tid: u32, pending: &Pending, ptr: u64) {
    if ptr == 0 {
        count(C::AllocFailed);
        return;
    }
    let live = Live {
        size: pending.size,
        user_stack: pending.user_stack,
        // SAFETY: no preconditions.
        since_ns: unsafe { bpf_ktime_get_ns() },
        tgid: pending.tgid,
        tid,
    };
    match HEAP_LIVE.insert(&ptr, &live, 0) {
        Ok(()) => count(C::LiveInserted),
        Err(e) if e == -7 => count(C::LiveFull),
        Err(_) => count(C::LiveError),
    }
    let key = HeapKey {
        tgid: pending.tgid,
        tid,
        user_stack: pending.user_stack,
    };
    let counts = if active_set() == 0 {
        &HEAP_ALLOCS_0
    } else {
        &HEAP_ALLOCS_1
    };
    // One thread's entry is only updated by that thread, on one CPU at a time.
    if let Some(v) = counts.get_ptr_mut(&key) {
        // SAFETY: the value pointer stays valid for this program run.
        unsafe {
            (*v).count += 1;
            (*v).bytes += pending.size;
        }
        count(C::Counted);
    } else {
        let v = HeapValue {
            count: 1,
            bytes: pending.size,
        };
        match counts.insert(&key, &v, BPF_NOEXIST as u64) {
            Ok(()) => count(C::Counted),
            Err(e) if e == -7 => count(C::CountsFull),
            Err(_) => count(C::CountsError),
        }
    }
}

/// A free of `ptr`: one lookup, and the live entry goes when it was sampled.
#[inline(always)]
fn freed(ptr: u64) {
    count(C::Frees);
    if ptr == 0 {
        count(C::FreeNull);
        return;
    }
    if HEAP_LIVE.remove(&ptr).is_ok() {
        count(C::FreedSampled);
    } else {
        count(C::FreedOther);
    }
}

#[uprobe]
pub fn heap_malloc(ctx: ProbeContext) -> u32 {
    let size: u64 = ctx.arg(0).unwrap_or(0);
    allocation(&ctx, size, 0);
    0
}

#[uprobe]
pub fn heap_aligned(ctx: ProbeContext) -> u32 {
    let size: u64 = ctx.arg(1).unwrap_or(0);
    allocation(&ctx, size, 0);
    0
}

#[uprobe]
pub fn heap_calloc(ctx: ProbeContext) -> u32 {
    let n: u64 = ctx.arg(0).unwrap_or(0);
    let size: u64 = ctx.arg(1).unwrap_or(0);
    // No `checked_mul`: LLVM turns any overflow check into a 128-bit multiply, which BPF does
    // not have. Both factors under 2^32 multiply exactly; beyond that only `1 × huge` is
    // exact, and anything else is an absurd request that calloc itself refuses.
    let bytes = if (n | size) >> 32 == 0 {
        n * size
    } else if n.min(size) <= 1 {
        n.max(size) * n.min(size)
    } else {
        u64::MAX
    };
    allocation(&ctx, bytes, 0);
    0
}

#[uprobe]
pub fn heap_realloc(ctx: ProbeContext) -> u32 {
    if target().is_none() {
        return 0;
    }
    let ptr: u64 = ctx.arg(0).unwrap_or(0);
    let size: u64 = ctx.arg(1).unwrap_or(0);
    count(C::Reallocs);
    // The old block goes away (if realloc fails it stays, a rare miscount of one sample).
    if ptr != 0 {
        freed(ptr);
    }
    if size != 0 {
        allocation(&ctx, size, 0);
    }
    0
}

#[uprobe]
pub fn heap_posix_memalign(ctx: ProbeContext) -> u32 {
    let out: u64 = ctx.arg(0).unwrap_or(0);
    let size: u64 = ctx.arg(2).unwrap_or(0);
    allocation(&ctx, size, out);
    0
}

#[uprobe]
pub fn heap_free(ctx: ProbeContext) -> u32 {
    if target().is_none() {
        return 0;
    }
    freed(ctx.arg(0).unwrap_or(0));
    0
}

/// Takes the current thread's pending sampled call, if any.
#[inline(always)]
fn take_pending() -> Option<(u32, Pending)> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: copied out at once.
    let pending = unsafe { HEAP_PENDING.get(&tid) }.copied()?;
    let _ = HEAP_PENDING.remove(&tid);
    count(C::Returned);
    Some((tid, pending))
}

#[uretprobe]
pub fn heap_return(ctx: RetProbeContext) -> u32 {
    // Fires for every call: unsampled calls end here, at one lookup.
    if let Some((tid, pending)) = take_pending() {
        allocated(tid, &pending, ctx.ret());
    }
    0
}

#[uretprobe]
pub fn heap_posix_memalign_return(ctx: RetProbeContext) -> u32 {
    if let Some((tid, pending)) = take_pending() {
        let status: u64 = ctx.ret();
        if status as u32 != 0 {
            count(C::AllocFailed);
            return 0;
        }
        // SAFETY: a probe read of the caller's `void **out`.
        match unsafe { bpf_probe_read_user(pending.out as *const u64) } {
            Ok(ptr) => allocated(tid, &pending, ptr),
            Err(_) => count(C::OutUnreadable),
        }
    }
    0
}

/// Reads a USDT argument from the probe's registers.
#[inline(always)]
fn usdt_arg(ctx: &ProbeContext, arg: &UsdtArg) -> Option<u64> {
    match arg.kind {
        ARG_REGISTER => {
            let at = ctx.regs as u64 + arg.pt_regs_offset as u64;
            // SAFETY: a probe read inside the probe's saved registers.
            unsafe { bpf_probe_read_kernel(at as *const u64) }.ok()
        }
        ARG_CONSTANT => Some(arg.constant),
        _ => None,
    }
}

/// `heap_sampler:alloc(ptr, size, weight)`: fired by the allocator for its own samples only
/// (it samples in-process by bytes), so no countdown here: every hit is a sample.
#[uprobe]
pub fn heap_usdt_alloc(ctx: ProbeContext) -> u32 {
    let Some((tgid, tid)) = target() else {
        return 0;
    };
    let Some(args) = HEAP_USDT_ARGS.get(USDT_ALLOC) else {
        return 0;
    };
    let (Some(ptr), Some(size)) = (usdt_arg(&ctx, &args.ptr), usdt_arg(&ctx, &args.size)) else {
        count(C::UsdtArgError);
        return 0;
    };
    count(C::UsdtAlloc);
    let user_stack = match capture_stack(&ctx, BPF_F_USER_STACK as u64) {
        Ok((hash, stack)) => match stored(
            HEAP_STACKS
                .insert(&hash, stack, BPF_NOEXIST as u64)
                .map_err(|e| e as i64),
            hash,
        ) {
            Stack::Stored(h) => {
                count(C::UserStack);
                h
            }
            _ => {
                count(C::UserStackMapFull);
                NO_STACK
            }
        },
        Err(Stack::Missing) => {
            count(C::UserStackMissing);
            NO_STACK
        }
        Err(_) => {
            count(C::UserStackError);
            NO_STACK
        }
    };
    let pending = Pending {
        size,
        user_stack,
        out: 0,
        tgid,
        _pad: 0,
    };
    allocated(tid, &pending, ptr);
    0
}

/// `heap_sampler:free(ptr, size)`: fired only for frees of the allocator's sampled blocks.
#[uprobe]
pub fn heap_usdt_free(ctx: ProbeContext) -> u32 {
    if target().is_none() {
        return 0;
    }
    let Some(args) = HEAP_USDT_ARGS.get(USDT_FREE) else {
        return 0;
    };
    match usdt_arg(&ctx, &args.ptr) {
        Some(ptr) => freed(ptr),
        None => count(C::UsdtArgError),
    }
    0
}
