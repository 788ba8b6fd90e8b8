//! The exact counters: the exported registry, handing out per-thread counter blocks, and
//! summing them into [`Totals`].
//!
//! Blocks come from a static pool first and then from the inner allocator (through a callback,
//! so nothing here recurses into the sampler). They are never freed. A thread that needs a
//! block first looks, a few blocks at a time, for one whose owner thread has exited (the
//! kernel no longer knows its tid) and takes it over; that bounds the blocks to about the most
//! threads alive at once instead of every thread ever started.
//!
//! A forked child inherits the parent's blocks, so its totals start from the parent's counts
//! at the fork; its forking thread keeps its block, the others' blocks stay unused.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::layout::{CounterBlock, LAYOUT_VERSION, MAGIC, Registry};
use crate::table;

/// The root a profiler reads from outside. `no_mangle` puts it in the symbol table under
/// [`crate::layout::REGISTRY_SYMBOL`]; the magic word keeps it in `.data`, with a file offset.
#[unsafe(no_mangle)]
pub static HEAP_SAMPLER_REGISTRY: Registry = Registry {
    magic: MAGIC,
    version: LAYOUT_VERSION,
    block_size: size_of::<CounterBlock>() as u32,
    head: AtomicPtr::new(std::ptr::null_mut()),
    blocks: AtomicU64::new(0),
    rate: AtomicU64::new(0),
    table_full: AtomicU64::new(0),
    table_slots: table::CAPACITY as u64,
    shared: CounterBlock::new(),
};

/// Blocks for the first threads, so that most processes never ask the inner allocator.
const POOL_BLOCKS: usize = 64;
static POOL: [CounterBlock; POOL_BLOCKS] = [const { CounterBlock::new() }; POOL_BLOCKS];
static POOL_USED: AtomicUsize = AtomicUsize::new(0);

/// Where the search for an abandoned block resumes, so repeated searches cover the list.
static REUSE_CURSOR: AtomicPtr<CounterBlock> = AtomicPtr::new(std::ptr::null_mut());
/// Blocks a new thread inspects (one `tgkill(…, 0)` each) before it takes a fresh one.
const REUSE_PROBES: usize = 8;

/// Exact totals of the process (or of one thread), plus what the sampler reports about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub allocs: u64,
    pub frees: u64,
    pub alloc_bytes: u64,
    pub free_bytes: u64,
    pub sampled_allocs: u64,
    pub sampled_frees: u64,
    /// Sum of the sampled allocations' weights: the sampled estimate of `alloc_bytes`.
    pub sampled_alloc_weight: u64,
    /// Sampled allocations that could not be remembered (see [`Registry::table_full`]).
    pub table_full: u64,
    /// Sampling rate in bytes (0: not yet used, or disabled).
    pub rate: u64,
    /// Counter blocks walked: threads that ever allocated, less those whose block was reused.
    pub blocks: u64,
}

impl Totals {
    /// Bytes allocated and not freed: exact, for the whole life of the process.
    pub fn live_bytes(&self) -> u64 {
        self.alloc_bytes.wrapping_sub(self.free_bytes)
    }

    /// Allocations not freed: exact.
    pub fn live_objects(&self) -> u64 {
        self.allocs.wrapping_sub(self.frees)
    }

    pub(crate) fn add_block(&mut self, b: &CounterBlock) {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.allocs += r(&b.allocs);
        self.frees += r(&b.frees);
        self.alloc_bytes += r(&b.alloc_bytes);
        self.free_bytes += r(&b.free_bytes);
        self.sampled_allocs += r(&b.sampled_allocs);
        self.sampled_frees += r(&b.sampled_frees);
        self.sampled_alloc_weight += r(&b.sampled_alloc_weight);
    }

    pub(crate) fn set_registry_fields(&mut self, reg: &Registry) {
        self.table_full = reg.table_full.load(Ordering::Relaxed);
        self.rate = reg.rate.load(Ordering::Relaxed);
        self.add_block(&reg.shared);
    }
}

/// The totals of this process, summed over all counter blocks.
pub fn totals() -> Totals {
    let reg = &HEAP_SAMPLER_REGISTRY;
    let mut t = Totals::default();
    t.set_registry_fields(reg);
    let mut b = reg.head.load(Ordering::Acquire);
    while !b.is_null() {
        // SAFETY: blocks are 'static once linked and never unlinked.
        let block = unsafe { &*b };
        t.add_block(block);
        t.blocks += 1;
        b = block.next.load(Ordering::Acquire);
    }
    t
}

/// Adds `v` to a counter only this thread writes: a load and a store, no locked instruction.
#[inline(always)]
pub(crate) fn bump(c: &AtomicU64, v: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

/// Gets the calling thread a counter block: an abandoned one, one from the pool, or one from
/// `fresh` (the inner allocator). None only if `fresh` fails.
pub(crate) fn claim_block(
    fresh: impl FnOnce() -> *mut CounterBlock,
) -> Option<&'static CounterBlock> {
    let me = owner_id();
    if let Some(b) = reuse_abandoned(me) {
        return Some(b);
    }
    let i = POOL_USED.fetch_add(1, Ordering::Relaxed);
    let block: &'static CounterBlock = if i < POOL_BLOCKS {
        &POOL[i]
    } else {
        let p = fresh();
        if p.is_null() {
            return None;
        }
        // SAFETY: `fresh` returned memory sized and aligned for a block that is never freed.
        unsafe {
            p.write(CounterBlock::new());
            &*p
        }
    };
    block.owner.store(me, Ordering::Relaxed);
    link(block);
    Some(block)
}

/// Pushes a block at the head. `blocks` goes up first so that a reader's bound is never short.
fn link(block: &'static CounterBlock) {
    let reg = &HEAP_SAMPLER_REGISTRY;
    reg.blocks.fetch_add(1, Ordering::Relaxed);
    let ptr = block as *const CounterBlock as *mut CounterBlock;
    let mut head = reg.head.load(Ordering::Relaxed);
    loop {
        block.next.store(head, Ordering::Relaxed);
        match reg
            .head
            .compare_exchange_weak(head, ptr, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

/// Takes over a block whose owner thread has exited, checking at most [`REUSE_PROBES`] blocks.
///
/// A block is abandoned when its owner belongs to this process and the kernel reports its tid
/// gone (`tgkill(pid, tid, 0)` fails with ESRCH): an exited thread runs no more code, so it
/// cannot write the block again. Blocks owned under another pid are left alone: after a fork
/// the forking thread keeps writing the block it had, under a new tid. A tid equal to ours
/// was owned by a thread that has exited, since tids of live threads are unique.
fn reuse_abandoned(me: u64) -> Option<&'static CounterBlock> {
    let reg = &HEAP_SAMPLER_REGISTRY;
    let pid = me >> 32;
    let mut b = REUSE_CURSOR.load(Ordering::Relaxed);
    for _ in 0..REUSE_PROBES {
        if b.is_null() {
            b = reg.head.load(Ordering::Acquire);
            if b.is_null() {
                return None;
            }
        }
        // SAFETY: blocks are 'static once linked.
        let block: &'static CounterBlock = unsafe { &*b };
        b = block.next.load(Ordering::Acquire);
        let owner = block.owner.load(Ordering::Acquire);
        if owner >> 32 == pid
            && (owner == me || !thread_alive(pid, owner & 0xffff_ffff))
            && block
                .owner
                .compare_exchange(owner, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            REUSE_CURSOR.store(b, Ordering::Relaxed);
            return Some(block);
        }
    }
    REUSE_CURSOR.store(b, Ordering::Relaxed);
    None
}

/// `pid << 32 | tid` of the calling thread.
fn owner_id() -> u64 {
    // SAFETY: plain syscalls without memory arguments.
    let (pid, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid)) };
    (pid as u64) << 32 | (tid as u64 & 0xffff_ffff)
}

fn thread_alive(pid: u64, tid: u64) -> bool {
    // SAFETY: signal 0 only checks that the thread exists.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid as libc::pid_t, tid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
