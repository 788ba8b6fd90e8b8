//! The eBPF programs (built for bpfel-unknown-none by profiler/build.rs). One program per
//! concern; today `cpu` (on-CPU stack sampling). Programs never panic and never log per
//! event: each returns through a `try_*` function whose every outcome bumps a counter that user
//! space reports. On the host this file compiles to an empty `main` so workspace builds work.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        EbpfContext as _, Global,
        bindings::{BPF_F_FAST_STACK_CMP, BPF_F_USER_STACK, BPF_NOEXIST},
        macros::{map, perf_event},
        maps::{Array, HashMap, PerCpuArray, StackTrace},
        programs::{PerfEventContext, tracing::StackIdContext as _},
    };
    use profiler_ebpf::{
        CPU_COUNTS_MAX_ENTRIES, Comm, Counter, EEXIST, EFAULT, ENOMEM, STACKS_MAX_ENTRIES,
        StackKey, THREAD_COMMS_MAX_ENTRIES,
    };

    #[unsafe(no_mangle)]
    static TARGET_TGID: Global<u32> = Global::new(0);

    #[map]
    static ACTIVE_SET: Array<u32> = Array::with_max_entries(1, 0);
    #[map]
    static CPU_COUNTS_0: HashMap<StackKey, u64> =
        HashMap::with_max_entries(CPU_COUNTS_MAX_ENTRIES, 0);
    #[map]
    static CPU_COUNTS_1: HashMap<StackKey, u64> =
        HashMap::with_max_entries(CPU_COUNTS_MAX_ENTRIES, 0);
    #[map]
    static STACKS_0: StackTrace = StackTrace::with_max_entries(STACKS_MAX_ENTRIES, 0);
    #[map]
    static STACKS_1: StackTrace = StackTrace::with_max_entries(STACKS_MAX_ENTRIES, 0);
    #[map]
    static THREAD_COMMS: HashMap<u32, Comm> =
        HashMap::with_max_entries(THREAD_COMMS_MAX_ENTRIES, 0);
    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

    #[inline(always)]
    fn count(counter: Counter) {
        if let Some(c) = COUNTERS.get_ptr_mut(counter as u32) {
            // SAFETY: a per-CPU slot; perf_event programs do not nest on one CPU.
            unsafe { *c += 1 };
        }
    }

    /// Stack outcomes for the user and the kernel stack, in counter order.
    struct StackOutcome {
        ok: Counter,
        missing: Counter,
        collision: Counter,
        full: Counter,
        error: Counter,
    }

    const USER: StackOutcome = StackOutcome {
        ok: Counter::UserStack,
        missing: Counter::UserStackMissing,
        collision: Counter::UserStackCollision,
        full: Counter::UserStackMapFull,
        error: Counter::UserStackError,
    };
    const KERNEL: StackOutcome = StackOutcome {
        ok: Counter::KernelStack,
        missing: Counter::KernelStackAbsent,
        collision: Counter::KernelStackCollision,
        full: Counter::KernelStackMapFull,
        error: Counter::KernelStackError,
    };

    /// Takes one stack into `stacks`, counts the outcome, returns the id or -errno.
    #[inline(always)]
    fn take_stack(
        ctx: &PerfEventContext,
        stacks: &StackTrace,
        flags: u64,
        o: &StackOutcome,
    ) -> i32 {
        // FAST_STACK_CMP: a bucket holding a different stack is reported as a collision rather
        // than silently reused (REUSE_STACKID would repoint earlier counts at the wrong stack).
        match ctx.get_stackid(stacks, flags | BPF_F_FAST_STACK_CMP as u64) {
            Ok(id) => {
                count(o.ok);
                id as i32
            }
            Err(err) => {
                let errno = -(err as i64);
                count(match errno {
                    EFAULT => o.missing,
                    EEXIST => o.collision,
                    ENOMEM => o.full,
                    _ => o.error,
                });
                err as i32
            }
        }
    }

    #[perf_event]
    pub fn cpu(ctx: PerfEventContext) -> u32 {
        try_cpu(&ctx);
        0
    }

    #[inline(always)]
    fn try_cpu(ctx: &PerfEventContext) {
        let target = TARGET_TGID.load();
        let tgid = ctx.tgid();
        if target == 0 || tgid != target {
            return;
        }
        count(Counter::TargetSamples);
        let set = ACTIVE_SET.get(0).copied().unwrap_or(0);
        let (stacks, counts) = if set == 0 {
            (&STACKS_0, &CPU_COUNTS_0)
        } else {
            (&STACKS_1, &CPU_COUNTS_1)
        };
        let tid = ctx.pid();
        let key = StackKey {
            tgid,
            tid,
            user_stack_id: take_stack(ctx, stacks, BPF_F_USER_STACK as u64, &USER),
            kernel_stack_id: take_stack(ctx, stacks, 0, &KERNEL),
        };
        // The key holds the tid and a thread runs on one CPU at a time, so no two CPUs update
        // the same entry concurrently: a plain increment is exact.
        if let Some(n) = counts.get_ptr_mut(&key) {
            // SAFETY: the value pointer stays valid for this program run.
            unsafe { *n += 1 };
            count(Counter::Counted);
        } else if counts.insert(&key, &1, BPF_NOEXIST as u64).is_ok() {
            count(Counter::Counted);
        } else {
            count(Counter::CountsFull);
        }
        remember_comm(ctx, tid);
    }

    /// Keeps the thread's current name; written only when new or changed (threads rename
    /// themselves after start, e.g. tokio workers).
    #[inline(always)]
    fn remember_comm(ctx: &PerfEventContext, tid: u32) {
        let Ok(name) = ctx.command() else { return };
        let comm = Comm(name);
        // SAFETY: read-only look at a value the map owns, copied out immediately.
        let known = unsafe { THREAD_COMMS.get(&tid) }.copied();
        if known != Some(comm) && THREAD_COMMS.insert(&tid, &comm, 0).is_err() {
            count(Counter::CommsFull);
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
}
