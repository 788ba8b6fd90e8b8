//! The probes end to end, the way the kernel enables them: a counting uprobe perf event on
//! each probe site with the semaphore's file offset as `ref_ctr_offset` (no tracefs, no BPF).
//! The kernel must raise the semaphores on attach and lower them on close, and the probes must
//! fire exactly once per sampled allocation and per recognised sampled free. Needs root.

use std::fs;

use common::{Waiting, field};
use heap_sampler::remote::adjust_semaphore;
use heap_sampler::remote::elf::{SdtProbe, load_bias_of, sdt_probes};

mod common;

/// From linux/perf_event.h; libc does not export it.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// `struct perf_event_attr` up to PERF_ATTR_SIZE_VER5; libc does not define it.
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

/// An enabled counting uprobe on `probe`'s site in `binary`, in `pid` only, with the kernel
/// keeping the probe's semaphore raised while it is open.
struct CountingProbe(std::os::fd::OwnedFd);

impl CountingProbe {
    fn open(pid: i32, binary: &std::ffi::CStr, probe: &SdtProbe) -> Self {
        let semaphore = probe.semaphore_file_offset.expect("a semaphore");
        Self::open_with_ref_ctr(pid, binary, probe, semaphore)
    }

    /// `ref_ctr_offset` 0: the kernel leaves the semaphore alone.
    fn open_with_ref_ctr(
        pid: i32,
        binary: &std::ffi::CStr,
        probe: &SdtProbe,
        ref_ctr_offset: u64,
    ) -> Self {
        let pmu: u32 = fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")
            .expect("the uprobe PMU")
            .trim()
            .parse()
            .unwrap();
        let attr = PerfEventAttr {
            kind: pmu,
            size: size_of::<PerfEventAttr>() as u32,
            // /sys/bus/event_source/devices/uprobe/format/ref_ctr_offset: config:32-63
            config: ref_ctr_offset << 32,
            config1: binary.as_ptr() as u64,
            config2: probe.pc_file_offset.expect("a file offset"),
            ..Default::default()
        };
        // SAFETY: a valid attr of the size it states; the path outlives the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                pid,
                -1,
                -1,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        assert!(
            fd >= 0,
            "perf_event_open uprobe for {}: {} (needs root)",
            probe.name,
            std::io::Error::last_os_error()
        );
        // SAFETY: a new descriptor we own.
        Self(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
    }

    fn hits(&self) -> u64 {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into `count`.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.0),
                (&mut count as *mut u64).cast(),
                8,
            )
        };
        assert_eq!(
            n,
            8,
            "read the counter: {}",
            std::io::Error::last_os_error()
        );
        count
    }
}

/// The kernel refuses a uprobe on a site that already has one with another `ref_ctr_offset`
/// (EINVAL, "reference counter offset mismatch"), and both tests probe the same binary: one
/// at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The child's binary and its heap_sampler probes.
fn probes_of(pid: i32) -> (std::ffi::CString, Vec<SdtProbe>) {
    let binary = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let probes = sdt_probes(&binary)
        .unwrap()
        .into_iter()
        .filter(|p| p.provider == "heap_sampler")
        .collect();
    (
        std::ffi::CString::new(binary.into_os_string().into_encoded_bytes()).unwrap(),
        probes,
    )
}

#[test]
fn the_kernel_raises_the_semaphores_and_probes_fire_once_per_sample() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut w = Waiting::start();
    let pid = w.pid();
    let (path, probes) = probes_of(pid);
    let probe = |name: &str| probes.iter().find(|p| p.name == name).unwrap();
    let bias = load_bias_of(pid).unwrap();
    let semaphore = |p: &SdtProbe| adjust_semaphore(pid, p.semaphore + bias, 0).unwrap();
    assert_eq!(
        (semaphore(probe("alloc")), semaphore(probe("free"))),
        (0, 0)
    );

    let (alloc, free) = (
        CountingProbe::open(pid, &path, probe("alloc")),
        CountingProbe::open(pid, &path, probe("free")),
    );
    assert_eq!(
        (semaphore(probe("alloc")), semaphore(probe("free"))),
        (1, 1),
        "raised by the kernel"
    );

    let churned = w.churn();
    let d = |key: &str| field(&churned, key) - field(&w.after, key);
    assert!(
        d("sampled_allocs") >= 1,
        "the big blocks are sampled: {churned}"
    );
    assert_eq!(
        alloc.hits(),
        d("sampled_allocs"),
        "one alloc probe per sample"
    );
    assert_eq!(
        free.hits(),
        d("sampled_frees"),
        "one free probe per recognised sampled free"
    );
    eprintln!("probe hits: alloc {}, free {}", alloc.hits(), free.hits());

    drop((alloc, free));
    assert_eq!(
        (semaphore(probe("alloc")), semaphore(probe("free"))),
        (0, 0),
        "lowered on close"
    );
}

#[test]
fn without_the_semaphore_the_probe_site_is_skipped() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut w = Waiting::start();
    let pid = w.pid();
    let (path, probes) = probes_of(pid);
    let alloc = probes.iter().find(|p| p.name == "alloc").unwrap();
    let unguarded = CountingProbe::open_with_ref_ctr(pid, &path, alloc, 0);
    let churned = w.churn();
    assert!(
        field(&churned, "sampled_allocs") > field(&w.after, "sampled_allocs"),
        "{churned}"
    );
    assert_eq!(
        unguarded.hits(),
        0,
        "the nop is behind the semaphore, which nobody raised"
    );
}
