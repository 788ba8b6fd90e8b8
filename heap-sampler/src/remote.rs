//! The reading side: a profiler reads a sampler's counters out of another process, and raises
//! or lowers a probe semaphore there, with `process_vm_readv`/`process_vm_writev` (root, or
//! CAP_SYS_PTRACE over the target). The target is not stopped and pays nothing.
//!
//! The reader trusts nothing it reads: it checks the magic, the layout version and the block
//! size, and bounds the walk of the block list by the registry's own count. Counters are read
//! while the target runs, so totals are a snapshot that is not atomic across fields or blocks
//! (a free may be counted before the allocation it frees, in another block); each field is
//! an aligned 8-byte word. Reader and target must have the same word size and byte order.
//!
//! `elf` (feature `elf`) finds the registry's address and the probes' notes in a target.

use std::fmt;
use std::io;
use std::mem::{MaybeUninit, size_of};

use crate::counters::Totals;
use crate::layout::{CounterBlock, LAYOUT_VERSION, MAGIC, Registry};

#[cfg(feature = "elf")]
pub mod elf;

/// Blocks linked while the reader copied the registry: tolerated beyond its count.
const LINK_SLACK: u64 = 64;
/// Never walk more than this, whatever the registry says.
const MAX_BLOCKS: u64 = 1 << 20;

/// Why a read from another process failed.
#[derive(Debug)]
pub enum RemoteError {
    /// `process_vm_readv` failed or came back short.
    Read {
        pid: i32,
        addr: u64,
        source: io::Error,
    },
    /// `process_vm_writev` failed or came back short.
    Write {
        pid: i32,
        addr: u64,
        source: io::Error,
    },
    /// The word at the given address is not the registry's magic.
    BadMagic { pid: i32, addr: u64, found: u64 },
    /// A layout this reader does not know.
    UnknownVersion { pid: i32, found: u32 },
    /// The target's counter block has another size than ours.
    BlockSize { pid: i32, found: u32 },
    /// The block list is longer than the registry's count allows: corrupt, or a cycle.
    ListTooLong { pid: i32, limit: u64 },
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { pid, addr, source } | Self::Write { pid, addr, source } => {
                let verb = if matches!(self, Self::Read { .. }) {
                    "read"
                } else {
                    "write"
                };
                write!(f, "cannot {verb} pid {pid} memory at {addr:#x}: {source}")?;
                match source.raw_os_error() {
                    Some(libc::ESRCH) => write!(f, " (pid {pid} does not exist)"),
                    Some(libc::EPERM) => {
                        write!(f, " (needs root or CAP_SYS_PTRACE; run with sudo)")
                    }
                    Some(libc::EFAULT) => write!(
                        f,
                        " (not mapped: is this the registry's address in pid {pid}?)"
                    ),
                    _ => Ok(()),
                }
            }
            Self::BadMagic { pid, addr, found } => write!(
                f,
                "no heap-sampler registry at {addr:#x} in pid {pid} (found {found:#018x}, \
                 expected {MAGIC:#018x}); check the symbol address and the load bias"
            ),
            Self::UnknownVersion { pid, found } => write!(
                f,
                "pid {pid} has heap-sampler layout version {found}, this reader knows \
                 {LAYOUT_VERSION}; rebuild the reader against the target's heap-sampler"
            ),
            Self::BlockSize { pid, found } => write!(
                f,
                "pid {pid} has {found}-byte counter blocks, this reader expects {}; is the \
                 target built for another architecture?",
                size_of::<CounterBlock>()
            ),
            Self::ListTooLong { pid, limit } => write!(
                f,
                "pid {pid}'s counter block list runs past {limit} blocks: corrupt or cyclic"
            ),
        }
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } | Self::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The totals of the sampler in `pid`, whose `HEAP_SAMPLER_REGISTRY` is at absolute address
/// `registry` in that process.
pub fn read_totals(pid: i32, registry: u64) -> Result<Totals, RemoteError> {
    // SAFETY: every bit pattern is a valid `Registry` (integers and atomics only).
    let reg: Registry = unsafe { read_value(pid, registry) }?;
    if reg.magic != MAGIC {
        return Err(RemoteError::BadMagic {
            pid,
            addr: registry,
            found: reg.magic,
        });
    }
    if reg.version != LAYOUT_VERSION {
        return Err(RemoteError::UnknownVersion {
            pid,
            found: reg.version,
        });
    }
    if reg.block_size as usize != size_of::<CounterBlock>() {
        return Err(RemoteError::BlockSize {
            pid,
            found: reg.block_size,
        });
    }
    let mut totals = Totals::default();
    totals.set_registry_fields(&reg);
    let limit = reg
        .blocks
        .into_inner()
        .saturating_add(LINK_SLACK)
        .min(MAX_BLOCKS);
    let mut next = reg.head.into_inner() as u64;
    while next != 0 {
        if totals.blocks >= limit {
            return Err(RemoteError::ListTooLong { pid, limit });
        }
        // SAFETY: every bit pattern is a valid `CounterBlock`.
        let block: CounterBlock = unsafe { read_value(pid, next) }?;
        totals.add_block(&block);
        totals.blocks += 1;
        next = block.next.into_inner() as u64;
    }
    Ok(totals)
}

/// Adds `delta` to the u16 probe semaphore at `addr` in `pid` and returns the new value
/// (saturating at 0 and at u16::MAX).
///
/// This is the user-space way to enable a probe: raise by 1 on attach, lower by 1 on detach.
/// The read and the write are two syscalls, not one atomic step, so a concurrent change by
/// another tracer between them would be lost; the kernel's alternative, `ref_ctr_offset`
/// in bits 63..32 of a uprobe perf event's `config` (Linux 4.20+), counts atomically and
/// undoes itself when the event closes.
pub fn adjust_semaphore(pid: i32, addr: u64, delta: i16) -> Result<u16, RemoteError> {
    // SAFETY: any u16 is valid.
    let now: u16 = unsafe { read_value(pid, addr) }?;
    let new = now.saturating_add_signed(delta);
    write_bytes(pid, addr, &new.to_ne_bytes())?;
    Ok(new)
}

/// Reads a `T` at `addr` in `pid`.
///
/// # Safety
/// Every bit pattern of `size_of::<T>()` bytes must be a valid `T`.
unsafe fn read_value<T>(pid: i32, addr: u64) -> Result<T, RemoteError> {
    let mut value = MaybeUninit::<T>::uninit();
    let len = size_of::<T>();
    let local = libc::iovec {
        iov_base: value.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` covers `value`'s bytes; the kernel checks the remote range.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    check_len(n, len).map_err(|source| RemoteError::Read { pid, addr, source })?;
    // SAFETY: all bytes were written, and the caller vouches that any bytes make a `T`.
    Ok(unsafe { value.assume_init() })
}

fn write_bytes(pid: i32, addr: u64, bytes: &[u8]) -> Result<(), RemoteError> {
    let local = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: `local` covers `bytes`, which the kernel only reads.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    check_len(n, bytes.len()).map_err(|source| RemoteError::Write { pid, addr, source })
}

fn check_len(n: isize, want: usize) -> io::Result<()> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else if n as usize != want {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{n} of {want} bytes"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_registry() {
        let pid = std::process::id() as i32;
        let t = read_totals(pid, crate::registry_address() as u64).unwrap();
        assert_eq!(
            t,
            crate::totals(),
            "nothing allocates through a sampler in this binary"
        );
    }

    #[test]
    fn refuses_what_is_not_a_registry() {
        let pid = std::process::id() as i32;
        let not_it = 0x1234_5678_u64;
        let addr = &not_it as *const u64 as u64;
        match read_totals(pid, addr) {
            Err(RemoteError::BadMagic { found, .. }) => assert_eq!(found, not_it),
            other => panic!("{other:?}"),
        }
        let err = read_totals(pid, 8).unwrap_err();
        assert!(err.to_string().contains("not mapped"), "{err}");
    }

    #[test]
    fn adjusts_a_semaphore_and_saturates() {
        let pid = std::process::id() as i32;
        let sem = Box::new(std::sync::atomic::AtomicU16::new(0));
        let addr = sem.as_ptr() as u64;
        assert_eq!(adjust_semaphore(pid, addr, 1).unwrap(), 1);
        assert_eq!(sem.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(adjust_semaphore(pid, addr, -1).unwrap(), 0);
        assert_eq!(adjust_semaphore(pid, addr, -1).unwrap(), 0);
    }
}
