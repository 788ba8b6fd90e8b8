//! The unwind stage, between drain and symbolize: turns a sample's copied user registers and
//! top of stack ([`StackCopy`], taken by the eBPF programs with `--call-graph dwarf|auto`) into
//! the stack's return addresses, with the CFI (`.eh_frame`, `.debug_frame`) of each object the
//! process maps, through framehop. Frame-pointer stacks need no such stage: the kernel walks
//! them. This module also says which objects keep frame pointers, which `auto` uses to copy
//! only the samples that need it, and keeps per-program statistics of how unwinds ended.
//!
//! Objects are parsed once per file (memory-mapped) and shared by every process; each process
//! gets a framehop unwinder with a module per executable mapping, kept after the process exits
//! so that samples drained after its exit still unwind.

mod object;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use framehop::{CacheNative, MayAllocateDuringUnwind, Module, Unwinder as _, UnwinderNative};
use serde::{Deserialize, Serialize};

use crate::symbolize::ProcessMaps;
pub use object::{Cfi, ObjectUnwind};

/// Deepest user stack kept: the kernel's own limit for walked stacks, so both kinds of stack
/// are cut alike (and a stack of exactly this depth is reported cut).
pub const MAX_DEPTH: usize = profiler_ebpf::stacks::MAX_STACK_DEPTH;

/// A read past the end of the copy by at most this much means the copy was too small; farther
/// away, the unwind went astray (bad registers or a wrong rule).
const NEAR_COPY_END: u64 = 1 << 20;

/// How user stacks are taken (`--call-graph`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallGraphMode {
    /// Frame-pointer walks in the kernel, counted there: the cheapest; exact for code built
    /// with frame pointers, cut short by code without them.
    Fp,
    /// Every sample's user stack is copied and unwound here with the objects' CFI.
    Dwarf,
    /// Copies only the samples whose pc lies in an object without frame pointers (and those
    /// of processes not looked at yet); the rest are walked in the kernel.
    Auto,
}

impl CallGraphMode {
    pub fn name(self) -> &'static str {
        match self {
            CallGraphMode::Fp => "fp",
            CallGraphMode::Dwarf => "dwarf",
            CallGraphMode::Auto => "auto",
        }
    }

    /// The value of the eBPF programs' `CALL_GRAPH` global.
    pub fn kernel_value(self) -> u32 {
        use profiler_ebpf::unwind::{CALL_GRAPH_AUTO, CALL_GRAPH_DWARF, CALL_GRAPH_FP};
        match self {
            CallGraphMode::Fp => CALL_GRAPH_FP,
            CallGraphMode::Dwarf => CALL_GRAPH_DWARF,
            CallGraphMode::Auto => CALL_GRAPH_AUTO,
        }
    }
}

impl std::str::FromStr for CallGraphMode {
    type Err = UnwindError;
    fn from_str(s: &str) -> Result<Self, UnwindError> {
        match s {
            "fp" => Ok(CallGraphMode::Fp),
            "dwarf" => Ok(CallGraphMode::Dwarf),
            "auto" => Ok(CallGraphMode::Auto),
            other => Err(UnwindError::Mode(other.to_string())),
        }
    }
}

/// Default bytes of user stack copied per sample: perf's default is 8 KiB, samply's 32000;
/// 16 KiB holds the stacks of typical services (deep async Rust stacks may need more).
pub const DEFAULT_STACK_SIZE: u32 = 16 * 1024;
/// The most a sample may copy (the eBPF record's buffer).
pub const MAX_STACK_SIZE: u32 = profiler_ebpf::unwind::MAX_STACK_COPY as u32;

/// The call-graph options of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallGraph {
    pub mode: CallGraphMode,
    /// Bytes of user stack copied per sample (dwarf and auto).
    pub stack_size: u32,
}

impl CallGraph {
    pub fn new(mode: CallGraphMode, stack_size: u32) -> Result<Self, UnwindError> {
        if stack_size == 0 || stack_size > MAX_STACK_SIZE || !stack_size.is_multiple_of(8) {
            return Err(UnwindError::StackSize(stack_size));
        }
        Ok(CallGraph { mode, stack_size })
    }

    /// Frame pointers only: what sessions without the option use (watch, serve, trace).
    pub fn fp() -> Self {
        CallGraph {
            mode: CallGraphMode::Fp,
            stack_size: DEFAULT_STACK_SIZE,
        }
    }

    pub fn copies(&self) -> bool {
        self.mode != CallGraphMode::Fp
    }
}

impl Default for CallGraph {
    fn default() -> Self {
        CallGraph {
            mode: CallGraphMode::Auto,
            stack_size: DEFAULT_STACK_SIZE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnwindError {
    #[error("--call-graph {0:?} is not a mode: use fp, dwarf or auto (the default)")]
    Mode(String),
    #[error(
        "--stack-size {0} is out of range: use a multiple of 8 from 8 to {MAX_STACK_SIZE} bytes (default {DEFAULT_STACK_SIZE})"
    )]
    StackSize(u32),
}

/// One sample's user registers and stack bytes. `regs` are `[ip, sp, bp, 0]` on x86_64 and
/// `[pc, sp, fp, lr]` on aarch64; `stack` starts at `sp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StackCopy {
    pub regs: [u64; 4],
    pub stack: Vec<u8>,
}

impl StackCopy {
    /// The calling thread's registers and up to `max` bytes of its stack from sp (less when
    /// its stack mapping ends sooner), as a sample's copy holds them: for tests and benchmarks
    /// of the unwinder on a real stack. The registers are those inside this function.
    #[inline(never)]
    pub fn of_current_thread(max: usize) -> std::io::Result<StackCopy> {
        let (pc, sp, fp, lr): (u64, u64, u64, u64);
        // SAFETY: copies registers into locals, touches no memory.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::asm!(
                "lea {pc}, [rip]",
                "mov {sp}, rsp",
                "mov {fp}, rbp",
                pc = out(reg) pc,
                sp = out(reg) sp,
                fp = out(reg) fp,
                options(nomem, nostack, preserves_flags),
            );
            lr = 0;
        }
        // SAFETY: as above.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            std::arch::asm!(
                "adr {pc}, .",
                "mov {sp}, sp",
                "mov {fp}, x29",
                "mov {lr}, x30",
                pc = out(reg) pc,
                sp = out(reg) sp,
                fp = out(reg) fp,
                lr = out(reg) lr,
                options(nomem, nostack, preserves_flags),
            );
        }
        // /proc/self/maps, not by pid: under qemu-user only `self` names the guest's maps.
        let maps = std::fs::read_to_string("/proc/self/maps")?;
        let top = maps
            .lines()
            .filter_map(|l| {
                let (a, b) = l.split_once(' ')?.0.split_once('-')?;
                Some((
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b, 16).ok()?,
                ))
            })
            .find(|(start, end)| (*start..*end).contains(&sp))
            .map(|(_, end)| end)
            .ok_or_else(|| std::io::Error::other(format!("sp {sp:#x} is in no mapping")))?;
        let len = (top - sp).min(max as u64) as usize;
        // SAFETY: [sp, sp + len) is this thread's mapped stack, at and above this frame. Its
        // locals may have changed since the registers were read, but not what unwinding reads
        // (saved registers and return addresses).
        let stack = unsafe { std::slice::from_raw_parts(sp as *const u8, len) }.to_vec();
        Ok(StackCopy {
            regs: [pc, sp, fp, lr],
            stack,
        })
    }

    fn sp(&self) -> u64 {
        self.regs[1]
    }

    fn end(&self) -> u64 {
        self.sp() + self.stack.len() as u64
    }

    /// The 8 bytes at `addr`, if the copy holds them.
    fn read(&self, addr: u64) -> Result<u64, ()> {
        let offset = addr.checked_sub(self.sp()).ok_or(())? as usize;
        let bytes = self.stack.get(offset..offset + 8).ok_or(())?;
        Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
    }
}

/// How an unwind ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The unwinder found the stack's end (a frame whose return address is undefined or 0).
    End,
    /// It needed stack beyond the copy.
    CopyTooSmall,
    /// It reached code with no unwind tables, and frame pointers did not carry it further.
    NoUnwindInfo,
    /// A rule led to an address outside the copy, or the walk did not advance.
    BadRegisters,
    /// `MAX_DEPTH` frames.
    DepthLimit,
}

/// How the unwinds of one program's samples ended, and what they cost to copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramUnwind {
    /// Samples whose stacks were copied and unwound in user space.
    pub dwarf: u64,
    /// Samples walked with frame pointers in the kernel.
    pub fp: u64,
    pub reached_end: u64,
    pub copy_too_small: u64,
    pub no_unwind_info: u64,
    pub bad_registers: u64,
    pub depth_limit: u64,
    /// Bytes of stack copied.
    pub bytes: u64,
}

impl ProgramUnwind {
    pub fn cut(&self) -> u64 {
        self.copy_too_small + self.no_unwind_info + self.bad_registers + self.depth_limit
    }

    /// `dwarf`, `fp` or `dwarf+fp`: which unwinder its stacks went through.
    pub fn unwinder(&self) -> &'static str {
        match (self.dwarf > 0, self.fp > 0) {
            (true, true) => "dwarf+fp",
            (true, false) => "dwarf",
            _ => "fp",
        }
    }
}

/// What the unwinder knows of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectReport {
    pub frame_pointers: bool,
    /// `eh_frame`, `debug_frame` or `none`.
    pub cfi: String,
}

/// The unwind part of a recording's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnwindReport {
    /// `fp`, `dwarf` or `auto` (empty: a capture from before call-graph modes).
    pub mode: String,
    /// Bytes of stack copied per sample at most.
    pub stack_size: u32,
    /// By program (the process's executable).
    pub by_program: BTreeMap<String, ProgramUnwind>,
    /// By object file path, for the objects of unwound processes.
    pub objects: BTreeMap<String, ObjectReport>,
}

impl UnwindReport {
    pub fn bytes(&self) -> u64 {
        self.by_program.values().map(|p| p.bytes).sum()
    }

    pub fn dwarf(&self) -> u64 {
        self.by_program.values().map(|p| p.dwarf).sum()
    }
}

struct ProcessUnwinder {
    unwinder: UnwinderNative<object::Section, MayAllocateDuringUnwind>,
    /// Mappings of the process's `ProcessMaps` already turned into modules (they only grow).
    seen: usize,
    /// Code ranges whose objects have unwind tables.
    with_cfi: Vec<Range<u64>>,
}

/// The unwinder of a session: objects by path, a framehop unwinder per process, a rule cache,
/// and statistics.
pub struct Unwinder {
    objects: HashMap<PathBuf, Option<Arc<ObjectUnwind>>>,
    processes: HashMap<u32, ProcessUnwinder>,
    cache: CacheNative<MayAllocateDuringUnwind>,
    report: UnwindReport,
}

impl Default for Unwinder {
    fn default() -> Self {
        Unwinder {
            objects: HashMap::new(),
            processes: HashMap::new(),
            cache: CacheNative::new(),
            report: UnwindReport::default(),
        }
    }
}

impl Unwinder {
    pub fn new(mode: &str, stack_size: u32) -> Self {
        let mut u = Unwinder::default();
        u.report.mode = mode.to_string();
        u.report.stack_size = stack_size;
        u
    }

    fn object(&mut self, path: &Path) -> Option<Arc<ObjectUnwind>> {
        self.objects
            .entry(path.to_path_buf())
            .or_insert_with(|| ObjectUnwind::open(path).map(Arc::new))
            .clone()
    }

    /// Adds modules for the mappings of `pid` not seen before.
    fn sync(&mut self, pid: u32, maps: &ProcessMaps) {
        let seen = self.processes.get(&pid).map_or(0, |p| p.seen);
        let vmas = maps.vmas();
        if seen == vmas.len() && self.processes.contains_key(&pid) {
            return;
        }
        let mut added = Vec::new();
        for vma in &vmas[seen.min(vmas.len())..] {
            let Some(path) = &vma.file else { continue };
            let Some(object) = self.object(path) else {
                continue;
            };
            self.report
                .objects
                .entry(vma.name.clone())
                .or_insert_with(|| ObjectReport {
                    frame_pointers: object.frame_pointers,
                    cfi: object.cfi.name().to_string(),
                });
            added.push((vma.clone(), object));
        }
        let process = self
            .processes
            .entry(pid)
            .or_insert_with(|| ProcessUnwinder {
                unwinder: UnwinderNative::new(),
                seen: 0,
                with_cfi: Vec::new(),
            });
        for (vma, object) in added {
            let module = Module::new(
                vma.name.clone(),
                vma.start..vma.end,
                object.bias(vma.start, vma.file_offset, vma.end - vma.start),
                object.section_info(),
            );
            process.unwinder.add_module(module);
            if object.cfi != Cfi::None {
                process.with_cfi.push(vma.start..vma.end);
            }
        }
        process.seen = vmas.len();
    }

    /// Unwinds one copy of a process of `program`; returns the return addresses, leaf (the
    /// sampled pc) first, and counts how the unwind ended under `program`.
    pub fn unwind(
        &mut self,
        pid: u32,
        program: &str,
        maps: &ProcessMaps,
        copy: &StackCopy,
    ) -> (Vec<u64>, Ending) {
        self.sync(pid, maps);
        let process = &self.processes[&pid];
        let mut read = |addr| copy.read(addr);
        let [pc, sp, fp, _lr] = copy.regs;
        #[cfg(target_arch = "x86_64")]
        let regs = framehop::x86_64::UnwindRegsX86_64::new(pc, sp, fp);
        #[cfg(target_arch = "aarch64")]
        let regs = framehop::aarch64::UnwindRegsAarch64::new(_lr, sp, fp);
        let mut frames = process
            .unwinder
            .iter_frames(pc, regs, &mut self.cache, &mut read);
        let mut ips = Vec::new();
        let ending = loop {
            if ips.len() >= MAX_DEPTH {
                break Ending::DepthLimit;
            }
            match frames.next() {
                Ok(Some(frame)) => ips.push(frame.address()),
                Ok(None) => break Ending::End,
                Err(framehop::Error::CouldNotReadStack(addr))
                    if addr >= copy.end() && addr < copy.end() + NEAR_COPY_END =>
                {
                    break Ending::CopyTooSmall;
                }
                Err(_) => {
                    let last = ips.last().copied().unwrap_or(pc);
                    let covered = process.with_cfi.iter().any(|r| r.contains(&last));
                    break if covered {
                        Ending::BadRegisters
                    } else {
                        Ending::NoUnwindInfo
                    };
                }
            }
        };
        let stats = self
            .report
            .by_program
            .entry(program.to_string())
            .or_default();
        stats.dwarf += 1;
        stats.bytes += copy.stack.len() as u64;
        match ending {
            Ending::End => stats.reached_end += 1,
            Ending::CopyTooSmall => stats.copy_too_small += 1,
            Ending::NoUnwindInfo => stats.no_unwind_info += 1,
            Ending::BadRegisters => stats.bad_registers += 1,
            Ending::DepthLimit => stats.depth_limit += 1,
        }
        (ips, ending)
    }

    /// Counts `samples` of `program` walked with frame pointers in the kernel.
    pub fn count_fp(&mut self, program: &str, samples: u64) {
        self.report
            .by_program
            .entry(program.to_string())
            .or_default()
            .fp += samples;
    }

    /// The code of `pid`'s objects without frame pointers, as at most `max` sorted, disjoint
    /// address ranges: where `auto` copies stacks. Runs closer together than the rest are
    /// merged until `max` remain (the frame-pointer code between them is then copied too:
    /// dearer, never wrong). Objects that cannot be read are left out (nothing better than
    /// frame pointers is possible for them).
    pub fn fp_less_code(&mut self, pid: u32, maps: &ProcessMaps, max: usize) -> Vec<Range<u64>> {
        self.sync(pid, maps);
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for vma in maps.vmas() {
            let Some(path) = &vma.file else { continue };
            let Some(object) = self.object(path) else {
                continue;
            };
            let bias = object.bias(vma.start, vma.file_offset, vma.end - vma.start);
            for run in &object.fp_less {
                let start = run.start.wrapping_add(bias).max(vma.start);
                let end = run.end.wrapping_add(bias).min(vma.end);
                if start < end {
                    ranges.push(start..end);
                }
            }
        }
        merge_ranges(ranges, max)
    }

    /// Forgets the unwinders of processes not in `keep` (exited ones the session forgot).
    pub fn retain(&mut self, keep: &std::collections::HashSet<u32>) {
        self.processes.retain(|pid, _| keep.contains(pid));
    }

    pub fn report(&self) -> &UnwindReport {
        &self.report
    }
}

/// Sorts and merges overlapping ranges, then closes the smallest gaps until at most `max`
/// ranges remain.
fn merge_ranges(mut ranges: Vec<Range<u64>>, max: usize) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    if merged.len() <= max || max == 0 {
        return merged;
    }
    // Close the (len - max) smallest gaps: every gap below the cut, and enough of those equal
    // to it.
    let mut gaps: Vec<u64> = merged.windows(2).map(|w| w[1].start - w[0].end).collect();
    gaps.sort_unstable();
    let cut = gaps[merged.len() - max - 1];
    let mut closable = merged.len() - max - gaps.iter().filter(|&&g| g < cut).count();
    let mut out: Vec<Range<u64>> = Vec::with_capacity(max);
    for r in merged {
        match out.last_mut() {
            Some(last) if r.start - last.end < cut => last.end = r.end,
            Some(last) if r.start - last.end == cut && closable > 0 => {
                closable -= 1;
                last.end = r.end;
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_down_to_the_limit_closing_the_smallest_gaps() {
        let r = |a: u64, b: u64| a..b;
        assert_eq!(
            merge_ranges(vec![r(30, 40), r(0, 10), r(5, 12)], 8),
            vec![r(0, 12), r(30, 40)]
        );
        // Gaps 8, 2, 2, 20: two merges close the two gaps of 2.
        let four = vec![r(0, 10), r(18, 20), r(22, 30), r(32, 40), r(60, 70)];
        assert_eq!(
            merge_ranges(four.clone(), 3),
            vec![r(0, 10), r(18, 40), r(60, 70)]
        );
        assert_eq!(merge_ranges(four, 1), vec![r(0, 70)]);
    }

    #[inline(never)]
    fn unwind_me_inner(size: usize) -> StackCopy {
        let copy = StackCopy::of_current_thread(size).expect("copy the stack");
        std::hint::black_box(copy)
    }

    #[inline(never)]
    fn unwind_me_outer(size: usize) -> StackCopy {
        let copy = unwind_me_inner(std::hint::black_box(size));
        std::hint::black_box(copy)
    }

    /// A copy of this very thread's stack unwinds, through the test functions, to the test
    /// harness's thread start — with the CFI of the test binary and libc from /proc/self/maps
    /// (works the same under qemu-user, where only `self` names the guest's maps).
    #[test]
    fn unwinds_a_copy_of_its_own_stack() {
        let copy = unwind_me_outer(16 * 1024);
        let mut maps = ProcessMaps::default();
        maps.refresh_self().expect("read /proc/self/maps");
        let mut unwinder = Unwinder::new("dwarf", 16 * 1024);
        let (ips, ending) = unwinder.unwind(std::process::id(), "self", &maps, &copy);
        let mut symbolizer = crate::symbolize::Symbolizer::new();
        let lookups: Vec<u64> = ips
            .iter()
            .enumerate()
            .map(|(i, &ip)| if i == 0 { ip } else { ip - 1 })
            .collect();
        let resolved = symbolizer.user(&maps, &lookups);
        let names: Vec<String> = lookups
            .iter()
            .map(|a| {
                resolved.get(a).map_or_else(
                    || format!("{a:#x}"),
                    |r| {
                        let lines: Vec<&str> =
                            r.lines.iter().map(|l| l.function.as_str()).collect();
                        lines.join(" / ")
                    },
                )
            })
            .collect();
        let position = |needle: &str| names.iter().position(|n| n.contains(needle));
        let (copy_at, inner, outer, test) = (
            position("of_current_thread"),
            position("unwind_me_inner"),
            position("unwind_me_outer"),
            position("unwinds_a_copy_of_its_own_stack"),
        );
        assert!(
            copy_at.is_some() && copy_at < inner && inner < outer && outer < test,
            "frames out of order or missing ({ending:?}): {names:#?}"
        );
        // The test runs on a harness thread (or the main thread with --test-threads=1): either
        // way its stack ends at a thread or program start, unless 16 KiB was too little.
        let root = names
            .iter()
            .rev()
            .any(|n| crate::record::health::is_user_root(n));
        assert!(
            root || ending == Ending::CopyTooSmall,
            "no root frame and not cut by the copy size ({ending:?}): {names:#?}"
        );
        let stats = &unwinder.report().by_program["self"];
        assert_eq!(stats.dwarf, 1);
    }

    #[test]
    fn call_graph_options_are_checked() {
        assert!(CallGraph::new(CallGraphMode::Dwarf, 16384).is_ok());
        assert!(CallGraph::new(CallGraphMode::Dwarf, 65536).is_ok());
        for bad in [0, 12, 65544, 1 << 20] {
            let err = CallGraph::new(CallGraphMode::Dwarf, bad)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&bad.to_string()) && err.contains("65536"),
                "{err}"
            );
        }
        let err = "frame".parse::<CallGraphMode>().unwrap_err().to_string();
        assert!(
            err.contains("\"frame\"") && err.contains("fp, dwarf or auto"),
            "{err}"
        );
        assert_eq!(
            "auto".parse::<CallGraphMode>().unwrap(),
            CallGraphMode::Auto
        );
    }

    #[test]
    fn a_read_outside_the_copy_fails() {
        let copy = StackCopy {
            regs: [0, 0x1000, 0, 0],
            stack: (0u8..16).collect(),
        };
        assert_eq!(
            copy.read(0x1000),
            Ok(u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]))
        );
        assert_eq!(copy.read(0x1008).map(|v| v as u8), Ok(8));
        assert!(copy.read(0x1009).is_err() && copy.read(0xff8).is_err());
    }
}
