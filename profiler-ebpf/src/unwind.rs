//! Stack copies for unwinding in user space (`--call-graph dwarf|auto`). Code built without
//! frame pointers (gcc -O2, Debian's glibc) cannot be walked in the kernel, so a sampling
//! program copies the user registers an unwinder needs and the top of the user stack into a
//! per-CPU scratch record and sends it through its collector's ring buffer; user space unwinds
//! it with the objects' `.eh_frame` tables. Kernel stacks are still walked in the kernel and
//! travel inline in the record (they need no unwinding).

use crate::stacks::MAX_STACK_DEPTH;

/// Largest stack copy (perf's limit is 65528; a power of two keeps the verifier's bound simple).
pub const MAX_STACK_COPY: usize = 65_536;

/// `u32` global: the call-graph mode, one of `CALL_GRAPH_*`.
pub const CALL_GRAPH: &str = "CALL_GRAPH";
/// `u32` global: bytes of user stack to copy per sample (a multiple of 8, at most `MAX_STACK_COPY`).
pub const STACK_COPY_BYTES: &str = "STACK_COPY_BYTES";
/// `Array<CopyRecord>` with one slot per possible CPU: where a record is built before it is
/// sent (too large for a per-CPU array, whose values are limited to 32 KiB).
pub const COPY_SCRATCH: &str = "COPY_SCRATCH";
/// `HashMap<u32, CodeRanges>`: per target tgid, the code ranges of its objects that keep no
/// frame pointers (auto mode copies the stacks of samples whose user pc lies in one).
pub const FP_LESS_CODE: &str = "FP_LESS_CODE";

/// Frame-pointer walks in the kernel only (no copies).
pub const CALL_GRAPH_FP: u32 = 0;
/// Every sample's user stack is copied and unwound in user space.
pub const CALL_GRAPH_DWARF: u32 = 1;
/// Copied when the sampled pc lies in code without frame pointers, or when user space has not
/// yet looked at the process's objects; walked in the kernel otherwise.
pub const CALL_GRAPH_AUTO: u32 = 2;

/// Code ranges a process's `FP_LESS_CODE` entry holds at most (the program scans them in
/// order, stopping at the first above the pc); user space merges the closest ranges to fit.
pub const MAX_CODE_RANGES: usize = 256;

/// `[start, end)` address ranges, sorted and disjoint, `len` of them used.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeRanges {
    pub len: u32,
    pub _pad: u32,
    pub ranges: [[u64; 2]; MAX_CODE_RANGES],
}

const _: () = assert!(core::mem::size_of::<CodeRanges>() == 8 + 16 * MAX_CODE_RANGES);

/// What precedes the stack bytes of a record. `regs` are, on x86_64, `[ip, sp, bp, 0]`; on
/// aarch64 `[pc, sp, fp (x29), lr (x30)]`. The stack bytes start at `regs[1]` (sp).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CopyHeader {
    pub tgid: u32,
    pub tid: u32,
    pub regs: [u64; 4],
    /// Frames in `kernel` (0: the sample interrupted user code).
    pub kernel_len: u32,
    /// Bytes of stack that follow the header.
    pub stack_len: u32,
    /// The kernel stack, leaf first, walked in the kernel.
    pub kernel: [u64; MAX_STACK_DEPTH],
}

pub const COPY_HEADER_SIZE: usize = core::mem::size_of::<CopyHeader>();
const _: () = assert!(COPY_HEADER_SIZE == 8 + 32 + 8 + 8 * MAX_STACK_DEPTH);

/// A record as built in the scratch slot; only `COPY_HEADER_SIZE + stack_len` bytes are sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CopyRecord {
    pub header: CopyHeader,
    pub stack: [u8; MAX_STACK_COPY],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, only integers, no padding (sizes asserted).
    unsafe impl aya::Pod for super::CodeRanges {}
}
