//! Uprobes opened directly with `perf_event_open`, one per (binary, offset, process), with a
//! BPF program attached by ioctl. aya 0.14 attaches uprobes too, but cannot pass
//! `ref_ctr_offset`: the kernel's way to raise a USDT probe's semaphore in every process that
//! maps the binary, race-free, from the moment the probe is installed. So the heap collector
//! opens its probes here; the event is closed (and the semaphore lowered) when the returned
//! descriptor is dropped. (A command launched held and probed before its `exec` was found with
//! the semaphore still at 0 on Linux 6.18; the heap collector raises it by hand then.)

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER5` (include/uapi/linux/perf_event.h);
/// neither libc nor aya export it.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `_IOW('$', 8, __u32)` and `_IO('$', 0)`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
/// /sys/bus/event_source/devices/uprobe/format: `retprobe` is config:0, `ref_ctr_offset`
/// config:32-63.
const RETPROBE_BIT: u64 = 1;
const REF_CTR_SHIFT: u32 = 32;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePoint<'a> {
    pub binary: &'a Path,
    /// File offset of the instruction.
    pub offset: u64,
    /// File offset of the USDT semaphore the kernel raises while the probe is open (0: none).
    pub ref_ctr_offset: u64,
    pub retprobe: bool,
    pub pid: u32,
}

fn uprobe_pmu() -> io::Result<u32> {
    std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")?
        .trim()
        .parse()
        .map_err(io::Error::other)
}

/// Opens the probe and runs `program` on each hit; dropping the descriptor detaches it.
pub fn attach(point: &ProbePoint<'_>, program: impl AsFd) -> io::Result<OwnedFd> {
    let path = CString::new(point.binary.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let attr = PerfEventAttr {
        kind: uprobe_pmu()?,
        size: size_of::<PerfEventAttr>() as u32,
        config: (point.ref_ctr_offset << REF_CTR_SHIFT)
            | if point.retprobe { RETPROBE_BIT } else { 0 },
        config1: path.as_ptr() as u64,
        config2: point.offset,
        ..PerfEventAttr::default()
    };
    // SAFETY: a valid attr of the size it states; the path outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            point.pid as libc::pid_t,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    let event = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let prog = program.as_fd().as_raw_fd();
    // SAFETY: ioctls on our perf event with a valid program descriptor.
    unsafe {
        if libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog) != 0
            || libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(event)
}
