//! The heap collector: Go's four heap sample types — `alloc_objects`, `alloc_space`,
//! `inuse_objects`, `inuse_space` — for any process, from the outside.
//!
//! Two ways in, chosen per process:
//! - **heap-sampler USDT probes**, when the program links the `heap-sampler` allocator: it
//!   samples by bytes in-process and fires a probe only for sampled allocations and their
//!   frees, so the profiler costs the target almost nothing; the allocator's exact totals are
//!   read from its exported registry (`process_vm_readv`), without any probe.
//! - **uprobes on the allocator functions** otherwise: libc's `malloc` family (or the
//!   program's own `malloc` when it links an allocator statically, or jemalloc's `_rjem_` and
//!   mimalloc's `mi_` functions). Every call traps (about 0.7 µs here) and is counted exactly;
//!   sampling by bytes happens in the kernel, and only sampled allocations take a stack and
//!   enter the live set. Without uprobe sessions in aya 0.14, every allocation also takes the
//!   return probe (one map lookup when it was not sampled).
//!
//! In-use means allocated since the profiler attached and not freed by the time of the
//! snapshot. Values are scaled to unbiased estimates per stack as Go scales its samples
//! (`heap_sampler::sampling::scale_heap_sample`).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::UProbe;
use aya::{Ebpf, EbpfLoader};
use blazesym::inspect::Inspector;
use blazesym::inspect::source::{Elf, Source};
use heap_sampler::remote::elf::{SdtProbe, sdt_probes};
use profiler_ebpf::heap::{
    ALIGNED_PROGRAM, ARG_CONSTANT, ARG_REGISTER, CALLOC_PROGRAM, FREE_PROGRAM, HEAP_ALLOCS,
    HEAP_COUNTERS, HEAP_EXP, HEAP_EXP_SLOTS, HEAP_LIVE, HEAP_PENDING, HEAP_STACKS, HEAP_USDT_ARGS,
    HeapCounter, HeapKey, HeapValue, Live, MALLOC_PROGRAM, POSIX_MEMALIGN_PROGRAM,
    POSIX_MEMALIGN_RETURN_PROGRAM, REALLOC_PROGRAM, RETURN_PROGRAM, USDT_ALLOC, USDT_ALLOC_PROGRAM,
    USDT_FREE, USDT_FREE_PROGRAM, UsdtArg, UsdtArgs,
};
use profiler_ebpf::stacks::{MAX_STACK_DEPTH, NO_STACK, RawStack};

use super::RecordError;
use super::collector::{Collector, Counters, Drained, Sizing, StackSource};
use super::kernel::{ProgramCost, bpf_err, program_cost, read_counters, take_map};
use super::targets::{ProcessRecord, Targets};
use super::uprobe::{self, ProbePoint};
use crate::profile::{Profile, ValueType};

/// Go's `MemProfileRate`: one sample per 512 KiB allocated on average.
pub const DEFAULT_RATE: u64 = heap_sampler::DEFAULT_RATE;
/// Sampled allocations alive at once: at the default rate, 16 GiB of live heap.
const LIVE_ENTRIES: u32 = 32_768;
/// Threads inside a sampled call at once.
const PENDING_ENTRIES: u32 = 8_192;
/// Distinct allocation stacks kept (about 1 KiB each).
const STACK_ENTRIES: u32 = 16_384;
/// Distinct (thread, stack) pairs sampled per drain interval.
const ALLOC_ENTRIES: u32 = 16_384;

/// Which way into the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapMode {
    /// The heap-sampler's probes when the program has them, uprobes on the allocator otherwise.
    Auto,
    /// Uprobes on the allocator functions even when the program links heap-sampler.
    Uprobes,
    /// Only the heap-sampler's probes; a program without them is an error.
    Sampler,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapOptions {
    /// Mean bytes between samples of the uprobe way (the heap-sampler has its own rate).
    pub rate: u64,
    /// In-use only for allocations at least this old (the leak view).
    pub min_age: Option<Duration>,
    pub mode: HeapMode,
}

impl Default for HeapOptions {
    fn default() -> Self {
        HeapOptions {
            rate: DEFAULT_RATE,
            min_age: None,
            mode: HeapMode::Auto,
        }
    }
}

/// How an allocator function takes its arguments: which entry program reads them, and which
/// return program learns the pointer (none for frees).
#[derive(Debug, Clone, Copy)]
struct Entry {
    symbol: &'static str,
    program: &'static str,
    ret: Option<&'static str>,
}

const fn alloc(symbol: &'static str, program: &'static str) -> Entry {
    Entry {
        symbol,
        program,
        ret: Some(RETURN_PROGRAM),
    }
}

const fn free(symbol: &'static str) -> Entry {
    Entry {
        symbol,
        program: FREE_PROGRAM,
        ret: None,
    }
}

/// glibc's (and any libc's) allocation functions, also what a program exports when it links
/// an allocator that replaces malloc.
const LIBC: &[Entry] = &[
    alloc("malloc", MALLOC_PROGRAM),
    alloc("calloc", CALLOC_PROGRAM),
    alloc("realloc", REALLOC_PROGRAM),
    alloc("valloc", MALLOC_PROGRAM),
    alloc("pvalloc", MALLOC_PROGRAM),
    alloc("aligned_alloc", ALIGNED_PROGRAM),
    alloc("memalign", ALIGNED_PROGRAM),
    Entry {
        symbol: "posix_memalign",
        program: POSIX_MEMALIGN_PROGRAM,
        ret: Some(POSIX_MEMALIGN_RETURN_PROGRAM),
    },
    free("free"),
];

/// jemalloc as tikv-jemallocator links it (prefixed `_rjem_`): `mallocx(size, flags)` and
/// `rallocx(ptr, size, flags)` take their arguments where malloc and realloc do.
const JEMALLOC: &[Entry] = &[
    alloc("_rjem_malloc", MALLOC_PROGRAM),
    alloc("_rjem_mallocx", MALLOC_PROGRAM),
    alloc("_rjem_calloc", CALLOC_PROGRAM),
    alloc("_rjem_realloc", REALLOC_PROGRAM),
    alloc("_rjem_rallocx", REALLOC_PROGRAM),
    alloc("_rjem_aligned_alloc", ALIGNED_PROGRAM),
    free("_rjem_free"),
    free("_rjem_sdallocx"),
    free("_rjem_dallocx"),
];

/// mimalloc's own API, as the mimalloc crate calls it.
const MIMALLOC: &[Entry] = &[
    alloc("mi_malloc", MALLOC_PROGRAM),
    alloc("mi_zalloc", MALLOC_PROGRAM),
    alloc("mi_malloc_aligned", MALLOC_PROGRAM),
    alloc("mi_zalloc_aligned", MALLOC_PROGRAM),
    alloc("mi_calloc", CALLOC_PROGRAM),
    alloc("mi_realloc", REALLOC_PROGRAM),
    alloc("mi_realloc_aligned", REALLOC_PROGRAM),
    free("mi_free"),
];

const ENTRY_PROGRAMS: &[&str] = &[
    MALLOC_PROGRAM,
    ALIGNED_PROGRAM,
    CALLOC_PROGRAM,
    REALLOC_PROGRAM,
    POSIX_MEMALIGN_PROGRAM,
    FREE_PROGRAM,
    RETURN_PROGRAM,
    POSIX_MEMALIGN_RETURN_PROGRAM,
    USDT_ALLOC_PROGRAM,
    USDT_FREE_PROGRAM,
];

/// What was hooked in one process.
struct Hooked {
    pid: u32,
    /// In words, for the summary and the capture.
    what: String,
    /// Sampling rate of the samples from this process.
    rate: u64,
    /// The heap-sampler's registry, when hooked through its probes (its exact totals).
    registry: Option<RegistryRef>,
    /// Link-time addresses of the probes' semaphores (heap-sampler only).
    semaphores: Vec<u64>,
    /// Semaphores raised by hand (runtime addresses), lowered again at detach.
    raised: Vec<u64>,
    _events: Vec<OwnedFd>,
}

/// Where a heap-sampler keeps its totals: found once the process runs its program.
#[derive(Clone, Copy)]
enum RegistryRef {
    NotFound,
    At(u64),
}

pub struct HeapCollector {
    opts: HeapOptions,
    maps: Option<Maps>,
    hooked: Vec<Hooked>,
    /// Why a process could not be hooked, for the summary.
    problems: Vec<String>,
    /// Whether the USDT argument locations are set (one layout per recording).
    usdt_args_set: bool,
    /// Stacks read from the kernel by hash (the LRU map may drop them later).
    stacks: HashMap<u64, Option<Vec<u64>>>,
    /// The last totals read from each heap-sampler registry (kept when the process exits).
    sampler_totals: BTreeMap<u32, heap_sampler::Totals>,
}

struct Maps {
    allocs: [BpfHashMap<MapData, HeapKey, HeapValue>; 2],
    live: BpfHashMap<MapData, u64, Live>,
    /// An LRU hash map in the kernel; aya's HashMap reads both kinds.
    stacks: BpfHashMap<MapData, u64, RawStack>,
    usdt_args: Array<MapData, UsdtArgs>,
    counters: PerCpuArray<MapData, u64>,
}

impl HeapCollector {
    pub fn new(opts: HeapOptions) -> Result<Self, RecordError> {
        if opts.rate == 0 {
            return Err(RecordError::InvalidHeapRate);
        }
        Ok(HeapCollector {
            opts,
            maps: None,
            hooked: Vec::new(),
            problems: Vec::new(),
            usdt_args_set: false,
            stacks: HashMap::new(),
            sampler_totals: BTreeMap::new(),
        })
    }

    fn maps(&self) -> Result<&Maps, RecordError> {
        self.maps.as_ref().ok_or(RecordError::NotAttached("heap"))
    }

    /// The frames of an allocation stack. A stack from an allocator uprobe starts at the
    /// allocator's first instruction: that frame is dropped, so the allocation site (its
    /// caller) is the leaf, as in Go's heap profiles. (The heap-sampler's own frames are
    /// dropped at assembly, by name.)
    fn allocation_frames(&mut self, pid: u32, hash: u64) -> StackSource {
        match self.frames(hash) {
            StackSource::Frames(ips) if self.via_uprobes(pid) && ips.len() > 1 => {
                StackSource::Frames(ips[1..].to_vec())
            }
            other => other,
        }
    }

    fn via_uprobes(&self, pid: u32) -> bool {
        self.hooked
            .iter()
            .any(|h| h.pid == pid && h.registry.is_none())
    }

    /// The frames of a stack hash, read once from the kernel's LRU map.
    fn frames(&mut self, hash: u64) -> StackSource {
        if hash == NO_STACK {
            return StackSource::None;
        }
        let Some(maps) = self.maps.as_ref() else {
            return StackSource::None;
        };
        let entry = self.stacks.entry(hash).or_insert_with(|| {
            maps.stacks.get(&hash, 0).ok().map(|s| {
                let len = (s.len as usize).min(MAX_STACK_DEPTH);
                s.ips[..len].to_vec()
            })
        });
        match entry {
            Some(ips) => StackSource::Frames(ips.clone()),
            None => StackSource::None,
        }
    }

    /// Hooks one process: the heap-sampler's probes when it has them (and the mode allows),
    /// the allocator's functions otherwise. A process that cannot be hooked is reported, not
    /// an error, unless it is the only way the user asked for.
    fn hook(&mut self, bpf: &mut Ebpf, process: &ProcessRecord) -> Result<(), RecordError> {
        let pid = process.pid;
        let exe = process.exe_path.clone();
        let probes = exe
            .as_deref()
            .and_then(|e| sdt_probes(e).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.provider == "heap_sampler")
            .collect::<Vec<_>>();
        let has_sampler = probes.iter().any(|p| p.name == "alloc");
        match (self.opts.mode, has_sampler, exe) {
            (HeapMode::Sampler | HeapMode::Auto, true, Some(exe)) => {
                self.hook_sampler(bpf, pid, &exe, &probes)
            }
            (HeapMode::Sampler, _, _) => Err(RecordError::NoHeapSampler(pid)),
            (_, _, exe) => self.hook_allocator(bpf, process, exe.as_deref()),
        }
    }

    fn program_fd<'b>(
        bpf: &'b mut Ebpf,
        name: &str,
    ) -> Result<&'b aya::programs::ProgramFd, RecordError> {
        let program: &mut UProbe = bpf
            .program_mut(name)
            .ok_or_else(|| RecordError::MissingInObject(format!("program {name}")))?
            .try_into()
            .map_err(bpf_err(format!("program {name}")))?;
        program.fd().map_err(bpf_err(format!("program {name}")))
    }

    fn hook_sampler(
        &mut self,
        bpf: &mut Ebpf,
        pid: u32,
        exe: &Path,
        probes: &[SdtProbe],
    ) -> Result<(), RecordError> {
        let mut events = Vec::new();
        for (name, program, slot) in [
            ("alloc", USDT_ALLOC_PROGRAM, USDT_ALLOC),
            ("free", USDT_FREE_PROGRAM, USDT_FREE),
        ] {
            let Some(probe) = probes.iter().find(|p| p.name == name) else {
                continue;
            };
            if !self.usdt_args_set || slot == USDT_FREE {
                let args = usdt_args(&probe.args).ok_or_else(|| RecordError::UsdtArgs {
                    probe: format!("heap_sampler:{name}"),
                    args: probe.args.clone(),
                })?;
                let maps = self.maps.as_mut().ok_or(RecordError::NotAttached("heap"))?;
                maps.usdt_args
                    .set(slot, args, 0)
                    .map_err(bpf_err("setting the USDT argument locations"))?;
            }
            let offset = probe.pc_file_offset.ok_or_else(|| RecordError::UsdtArgs {
                probe: format!("heap_sampler:{name}"),
                args: "no file offset for the probe".into(),
            })?;
            let fd = Self::program_fd(bpf, program)?;
            let event = uprobe::attach(
                &ProbePoint {
                    binary: exe,
                    offset,
                    ref_ctr_offset: probe.semaphore_file_offset.unwrap_or(0),
                    retprobe: false,
                    pid,
                },
                fd,
            )
            .map_err(|e| {
                RecordError::Io(format!("attaching heap_sampler:{name} in pid {pid}"), e)
            })?;
            events.push(event);
        }
        self.usdt_args_set = true;
        self.hooked.push(Hooked {
            pid,
            what: format!(
                "heap-sampler probes in {}",
                exe.file_name().unwrap_or_default().to_string_lossy()
            ),
            rate: 0,
            registry: Some(RegistryRef::NotFound),
            semaphores: probes
                .iter()
                .filter(|p| p.semaphore != 0)
                .map(|p| p.semaphore)
                .collect(),
            raised: Vec::new(),
            _events: events,
        });
        Ok(())
    }

    fn hook_allocator(
        &mut self,
        bpf: &mut Ebpf,
        process: &ProcessRecord,
        exe: Option<&Path>,
    ) -> Result<(), RecordError> {
        let pid = process.pid;
        // The program's own allocator first (a static malloc replaces libc's for it), then
        // prefixed jemalloc and mimalloc, then libc.
        let mut binaries: Vec<(PathBuf, &'static [Entry], &'static str)> = Vec::new();
        if let Some(exe) = exe {
            for (family, name) in [
                (LIBC, "its own malloc"),
                (JEMALLOC, "jemalloc"),
                (MIMALLOC, "mimalloc"),
            ] {
                if has_symbol(exe, family[0].symbol) {
                    binaries.push((exe.to_path_buf(), family, name));
                }
            }
        }
        if !binaries.iter().any(|(_, f, _)| std::ptr::eq(*f, LIBC)) {
            match libc_of(process) {
                Some(libc) => binaries.push((libc, LIBC, "libc")),
                None => {
                    self.problems.push(format!(
                        "pid {pid}: no allocator found to probe (no libc mapped, no malloc exported)"
                    ));
                    return Ok(());
                }
            }
        }
        let mut events = Vec::new();
        let mut names = Vec::new();
        for (binary, family, name) in &binaries {
            let symbols: Vec<&str> = family.iter().map(|e| e.symbol).collect();
            let offsets = symbol_offsets(binary, &symbols);
            let mut hooked_fns = Vec::new();
            for (entry, offset) in family.iter().zip(offsets) {
                let Some(offset) = offset else { continue };
                let point = |retprobe| ProbePoint {
                    binary,
                    // A return probe goes on the entry; an entry probe where it is cheap.
                    offset: if retprobe {
                        offset
                    } else {
                        cheap_entry(binary, offset)
                    },
                    ref_ctr_offset: 0,
                    retprobe,
                    pid,
                };
                let attach_err = |e| {
                    RecordError::Io(
                        format!(
                            "attaching to {} in {} (pid {pid})",
                            entry.symbol,
                            binary.display()
                        ),
                        e,
                    )
                };
                let fd = Self::program_fd(bpf, entry.program)?;
                events.push(uprobe::attach(&point(false), fd).map_err(attach_err)?);
                if let Some(ret) = entry.ret {
                    let fd = Self::program_fd(bpf, ret)?;
                    events.push(uprobe::attach(&point(true), fd).map_err(attach_err)?);
                }
                hooked_fns.push(entry.symbol);
            }
            if !hooked_fns.is_empty() {
                names.push(format!(
                    "{name} ({}: {})",
                    binary.file_name().unwrap_or_default().to_string_lossy(),
                    hooked_fns.join(", ")
                ));
            }
        }
        self.hooked.push(Hooked {
            pid,
            what: format!("uprobes on {}", names.join("; ")),
            rate: self.opts.rate,
            registry: None,
            semaphores: Vec::new(),
            raised: Vec::new(),
            _events: events,
        });
        Ok(())
    }

    /// Reads the exact totals of heap-sampler processes (kept when a process is gone).
    fn refresh_sampler_totals(&mut self) {
        for h in &mut self.hooked {
            let registry = match h.registry {
                None => continue,
                Some(RegistryRef::At(addr)) => addr,
                Some(RegistryRef::NotFound) => {
                    match heap_sampler::remote::elf::find_registry(h.pid as i32) {
                        Ok(Some(addr)) => {
                            h.registry = Some(RegistryRef::At(addr));
                            addr
                        }
                        _ => continue,
                    }
                }
            };
            if let Ok(t) = heap_sampler::remote::read_totals(h.pid as i32, registry) {
                if t.rate > 0 {
                    h.rate = t.rate;
                }
                self.sampler_totals.insert(h.pid, t);
            }
        }
    }

    /// The sampling rate of a process's samples.
    fn rate_of(&self, pid: u32) -> u64 {
        self.hooked
            .iter()
            .find(|h| h.pid == pid)
            .map_or(self.opts.rate, |h| {
                if h.rate > 0 { h.rate } else { DEFAULT_RATE }
            })
    }
}

/// USDT argument locations from a probe's note (`-8@%rax -8@%rcx ...`): the first is the
/// pointer, the second the size. Registers and constants are supported; memory operands are
/// not (the heap-sampler's probes pass registers).
fn usdt_args(spec: &str) -> Option<UsdtArgs> {
    let mut args = spec.split_whitespace().map(usdt_arg);
    Some(UsdtArgs {
        ptr: args.next()??,
        size: args.next()??,
    })
}

fn usdt_arg(spec: &str) -> Option<UsdtArg> {
    let operand = spec.rsplit_once('@').map_or(spec, |(_, op)| op);
    if let Some(constant) = usdt_constant(operand) {
        return Some(UsdtArg {
            kind: ARG_CONSTANT,
            pt_regs_offset: 0,
            constant: constant.parse().ok()?,
        });
    }
    Some(UsdtArg {
        kind: ARG_REGISTER,
        pt_regs_offset: pt_regs_offset(operand.strip_prefix('%').unwrap_or(operand))?,
        constant: 0,
    })
}

/// A constant operand: `$4096` in x86_64 notes (a bare number there is a memory address);
/// `4096` in aarch64 notes, whose registers always start with a letter.
fn usdt_constant(operand: &str) -> Option<&str> {
    if cfg!(target_arch = "aarch64") && operand.starts_with(|c: char| c.is_ascii_digit()) {
        return Some(operand);
    }
    operand.strip_prefix('$')
}

/// Offset of a register in `struct pt_regs` (a fixed layout, part of the user ABI).
#[cfg(target_arch = "x86_64")]
fn pt_regs_offset(reg: &str) -> Option<u32> {
    // r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss
    let slot = match reg {
        "r15" | "r15d" => 0,
        "r14" | "r14d" => 1,
        "r13" | "r13d" => 2,
        "r12" | "r12d" => 3,
        "rbp" | "ebp" => 4,
        "rbx" | "ebx" => 5,
        "r11" | "r11d" => 6,
        "r10" | "r10d" => 7,
        "r9" | "r9d" => 8,
        "r8" | "r8d" => 9,
        "rax" | "eax" => 10,
        "rcx" | "ecx" => 11,
        "rdx" | "edx" => 12,
        "rsi" | "esi" => 13,
        "rdi" | "edi" => 14,
        "rsp" | "esp" => 19,
        _ => return None,
    };
    Some(slot * 8)
}

#[cfg(target_arch = "aarch64")]
fn pt_regs_offset(reg: &str) -> Option<u32> {
    // regs[0..31], sp
    if reg == "sp" {
        return Some(31 * 8);
    }
    let n: u32 = reg
        .strip_prefix('x')
        .or(reg.strip_prefix('w'))?
        .parse()
        .ok()?;
    (n <= 30).then_some(n * 8)
}

/// Where to put an entry probe on a function at file offset `offset` so that the kernel
/// emulates the probed instruction. A uprobe on an instruction the kernel cannot emulate is
/// executed out of line with a single step: a second trap, which on this VM made glibc's
/// `free` (it opens with `test %rdi,%rdi`) cost about 20 µs per call instead of 1 µs.
/// Branches, `push` and `nop`s are emulated; a leading `test`/`cmp` of registers writes only
/// flags, so probing the instruction after it sees the same arguments and the same stack.
#[cfg(target_arch = "x86_64")]
fn cheap_entry(binary: &Path, offset: u64) -> u64 {
    use iced_x86::{Code, Decoder, DecoderOptions, Mnemonic, OpKind};
    let Ok(file) = std::fs::File::open(binary) else {
        return offset;
    };
    let mut bytes = [0u8; 32];
    if std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, offset).is_err() {
        return offset;
    }
    let mut decoder = Decoder::with_ip(64, &bytes, offset, DecoderOptions::NONE);
    for _ in 0..3 {
        if !decoder.can_decode() {
            break;
        }
        let insn = decoder.decode();
        let emulated = matches!(
            insn.mnemonic(),
            Mnemonic::Push | Mnemonic::Nop | Mnemonic::Endbr64
        ) || insn.is_jcc_short_or_near()
            || insn.is_jmp_short_or_near()
            || insn.is_call_near();
        if emulated {
            return insn.ip();
        }
        let flags_only = matches!(insn.mnemonic(), Mnemonic::Test | Mnemonic::Cmp)
            && (0..insn.op_count()).all(|i| {
                matches!(
                    insn.op_kind(i),
                    OpKind::Register
                        | OpKind::Immediate8
                        | OpKind::Immediate32
                        | OpKind::Immediate8to32
                )
            })
            && insn.code() != Code::INVALID;
        if !flags_only {
            break;
        }
    }
    offset
}

#[cfg(not(target_arch = "x86_64"))]
fn cheap_entry(_binary: &Path, offset: u64) -> u64 {
    offset
}

fn has_symbol(binary: &Path, name: &str) -> bool {
    symbol_offsets(binary, &[name])[0].is_some()
}

/// File offsets of functions in `binary` (dynamic or static symbols), None where absent.
fn symbol_offsets(binary: &Path, names: &[&str]) -> Vec<Option<u64>> {
    let inspector = Inspector::new();
    // The ELF symbol tables (.symtab, .dynsym), not DWARF: a distribution's libc has no debug
    // information, and exported functions are all in .dynsym.
    let mut elf = Elf::new(binary);
    elf.debug_syms = false;
    let source = Source::Elf(elf);
    match inspector.lookup(&source, names) {
        Ok(found) => found
            .into_iter()
            .map(|syms| syms.into_iter().find_map(|s| s.file_offset))
            .collect(),
        Err(_) => vec![None; names.len()],
    }
}

/// The C library a process maps; for a command held before `exec` (which still maps the
/// profiler's own), the same file, which the command will map too.
fn libc_of(process: &ProcessRecord) -> Option<PathBuf> {
    let is_libc = |name: &str| {
        Path::new(name)
            .file_name()
            .map(|f| f.to_string_lossy())
            .is_some_and(|f| f.starts_with("libc.so") || f.starts_with("libc-"))
    };
    process
        .maps
        .vmas()
        .iter()
        .find(|v| is_libc(&v.name))
        .and_then(|v| v.file.clone())
}

impl Collector for HeapCollector {
    fn name(&self) -> &'static str {
        "heap"
    }

    fn describe(&self) -> String {
        format!(
            "heap: sampled by bytes, one sample per {} KiB on average ({})",
            self.opts.rate / 1024,
            match self.opts.mode {
                HeapMode::Auto => "heap-sampler probes where linked, allocator uprobes otherwise",
                HeapMode::Uprobes => "allocator uprobes",
                HeapMode::Sampler => "heap-sampler probes",
            }
        )
    }

    /// Go's order, `inuse_space` last: pprof shows the last type by default.
    fn sample_types(&self) -> Vec<ValueType> {
        vec![
            ValueType::new("alloc_objects", "count"),
            ValueType::new("alloc_space", "bytes"),
            ValueType::new("inuse_objects", "count"),
            ValueType::new("inuse_space", "bytes"),
        ]
    }

    fn main_sample_type(&self) -> &'static str {
        "inuse_space"
    }

    fn event_column(&self) -> usize {
        0
    }

    fn period(&self) -> Option<(ValueType, i64)> {
        Some((
            ValueType::new("space", "bytes"),
            self.opts.rate.min(i64::MAX as u64) as i64,
        ))
    }

    fn drain_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn stacks_per_interval(&self, _sizing: &Sizing) -> u32 {
        0
    }

    fn configure<'a>(&'a self, _sizing: &Sizing, loader: &mut EbpfLoader<'a>) {
        for name in HEAP_ALLOCS {
            loader.map_max_entries(name, ALLOC_ENTRIES);
        }
        loader
            .map_max_entries(HEAP_LIVE, LIVE_ENTRIES)
            .map_max_entries(HEAP_PENDING, PENDING_ENTRIES)
            .map_max_entries(HEAP_STACKS, STACK_ENTRIES);
    }

    fn attach(&mut self, bpf: &mut Ebpf, targets: &Targets) -> Result<(), RecordError> {
        let allocs = |bpf: &mut Ebpf, name| {
            BpfHashMap::try_from(take_map(bpf, name)?).map_err(bpf_err(format!("opening {name}")))
        };
        let mut exp: Array<MapData, u64> =
            Array::try_from(take_map(bpf, HEAP_EXP)?).map_err(bpf_err("opening HEAP_EXP"))?;
        // Quantiles of an exponential with mean `rate`: a uniformly random slot is a draw.
        for i in 0..HEAP_EXP_SLOTS {
            let u = (f64::from(i) + 0.5) / f64::from(HEAP_EXP_SLOTS);
            let draw = (-(u.ln()) * self.opts.rate as f64).round().max(1.0) as u64;
            exp.set(i, draw, 0).map_err(bpf_err("filling HEAP_EXP"))?;
        }
        self.maps = Some(Maps {
            allocs: [allocs(bpf, HEAP_ALLOCS[0])?, allocs(bpf, HEAP_ALLOCS[1])?],
            live: BpfHashMap::try_from(take_map(bpf, HEAP_LIVE)?)
                .map_err(bpf_err("opening HEAP_LIVE"))?,
            stacks: BpfHashMap::try_from(take_map(bpf, HEAP_STACKS)?)
                .map_err(bpf_err("opening HEAP_STACKS"))?,
            usdt_args: Array::try_from(take_map(bpf, HEAP_USDT_ARGS)?)
                .map_err(bpf_err("opening HEAP_USDT_ARGS"))?,
            counters: PerCpuArray::try_from(take_map(bpf, HEAP_COUNTERS)?)
                .map_err(bpf_err("opening HEAP_COUNTERS"))?,
        });
        for &name in ENTRY_PROGRAMS {
            let program: &mut UProbe = bpf
                .program_mut(name)
                .ok_or_else(|| RecordError::MissingInObject(format!("program {name}")))?
                .try_into()
                .map_err(bpf_err(format!("program {name}")))?;
            program.load().map_err(RecordError::from_load)?;
        }
        if targets.is_all() {
            return Err(RecordError::HeapNeedsTargets);
        }
        for process in targets.processes.values() {
            self.hook(bpf, process)?;
        }
        if self.hooked.is_empty() {
            return Err(RecordError::NothingToHook(self.problems.join("; ")));
        }
        Ok(())
    }

    fn process_started(
        &mut self,
        bpf: &mut Ebpf,
        process: &ProcessRecord,
    ) -> Result<(), RecordError> {
        if self.hooked.iter().any(|h| h.pid == process.pid) {
            return Ok(());
        }
        // A child that cannot be hooked is reported; the recording goes on.
        if let Err(e) = self.hook(bpf, process) {
            self.problems.push(format!("pid {}: {e}", process.pid));
        }
        Ok(())
    }

    /// The kernel raises a USDT semaphore itself (the probe's `ref_ctr_offset`) in a process
    /// that runs when the probe is opened; for a command probed before its `exec`, the
    /// semaphore was found still at 0 (Linux 6.18), so it is raised here, by hand, once the
    /// program runs, and lowered at the end.
    fn targets_running(&mut self, _targets: &Targets) -> Result<(), RecordError> {
        for h in &mut self.hooked {
            if h.semaphores.is_empty() {
                continue;
            }
            let Ok(bias) = heap_sampler::remote::elf::load_bias_of(h.pid as i32) else {
                continue;
            };
            for &s in &h.semaphores {
                let addr = bias + s;
                if let Ok(0) = heap_sampler::remote::adjust_semaphore(h.pid as i32, addr, 0)
                    && heap_sampler::remote::adjust_semaphore(h.pid as i32, addr, 1).is_ok()
                {
                    h.raised.push(addr);
                }
            }
        }
        Ok(())
    }

    fn detach(&mut self, _bpf: &mut Ebpf) {
        self.refresh_sampler_totals();
        for h in &mut self.hooked {
            for addr in h.raised.drain(..) {
                let _ = heap_sampler::remote::adjust_semaphore(h.pid as i32, addr, -1);
            }
        }
        // Closing the events detaches the probes and lowers the semaphores.
        for h in &mut self.hooked {
            h._events.clear();
        }
    }

    fn drain(&mut self, set: usize, out: &mut Vec<Drained>) -> Result<(), RecordError> {
        let entries: Vec<(HeapKey, HeapValue)> = {
            let maps = self.maps.as_mut().ok_or(RecordError::NotAttached("heap"))?;
            let entries: Vec<_> = maps.allocs[set].iter().filter_map(Result::ok).collect();
            for (k, _) in &entries {
                let _ = maps.allocs[set].remove(k);
            }
            entries
        };
        for (k, v) in entries {
            let user = self.allocation_frames(k.tgid, k.user_stack);
            out.push(Drained {
                pid: k.tgid,
                tid: k.tid,
                user,
                kernel: StackSource::None,
                labels: Vec::new(),
                waker: None,
                values: vec![v.count as i64, v.bytes as i64, 0, 0],
            });
        }
        self.refresh_sampler_totals();
        Ok(())
    }

    /// The live sampled allocations now (older than `--min-age` when given), per stack.
    fn snapshot(&mut self, out: &mut Vec<Drained>) -> Result<(), RecordError> {
        let now = monotonic_ns();
        let min_age = self.opts.min_age.map_or(0, |d| d.as_nanos() as u64);
        let mut live: BTreeMap<(u32, u32, u64), (u64, u64)> = BTreeMap::new();
        for (_, l) in self.maps()?.live.iter().filter_map(Result::ok) {
            if now.saturating_sub(l.since_ns) < min_age {
                continue;
            }
            let e = live.entry((l.tgid, l.tid, l.user_stack)).or_default();
            e.0 += 1;
            e.1 += l.size;
        }
        for ((tgid, tid, stack), (count, bytes)) in live {
            let user = self.allocation_frames(tgid, stack);
            out.push(Drained {
                pid: tgid,
                tid,
                user,
                kernel: StackSource::None,
                labels: Vec::new(),
                waker: None,
                values: vec![0, 0, count as i64, bytes as i64],
            });
        }
        Ok(())
    }

    fn scale(&self, pid: u32, values: &mut [i64]) {
        let rate = self.rate_of(pid);
        for pair in values.chunks_exact_mut(2) {
            let (objects, bytes) = heap_sampler::sampling::scale_heap_sample(
                pair[0].max(0) as u64,
                pair[1].max(0) as u64,
                rate,
            );
            pair[0] = objects.round() as i64;
            pair[1] = bytes.round() as i64;
        }
    }

    fn scales(&self) -> bool {
        true
    }

    fn counters(&self) -> Result<Counters, RecordError> {
        let mut c = read_counters::<HeapCounter>(&self.maps()?.counters)?;
        if !self.sampler_totals.is_empty() {
            let sum = |f: fn(&heap_sampler::Totals) -> u64| {
                self.sampler_totals.values().map(f).sum::<u64>()
            };
            c.push(("sampler_allocs", sum(|t| t.allocs)));
            c.push(("sampler_frees", sum(|t| t.frees)));
            c.push(("sampler_alloc_bytes", sum(|t| t.alloc_bytes)));
            c.push(("sampler_free_bytes", sum(|t| t.free_bytes)));
            c.push(("sampler_sampled_allocs", sum(|t| t.sampled_allocs)));
            c.push(("sampler_table_full", sum(|t| t.table_full)));
        }
        Ok(c)
    }

    fn events_seen(&self) -> u64 {
        self.maps
            .as_ref()
            .and_then(|m| m.counters.get(&(HeapCounter::Calls as u32), 0).ok())
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }

    fn program_cost(&self, bpf: &Ebpf) -> Vec<ProgramCost> {
        ENTRY_PROGRAMS
            .iter()
            .filter_map(|&p| program_cost(bpf, p))
            .filter(|c| c.runs > 0)
            .collect()
    }

    fn check_invariants(&self, counters: &Counters) -> Vec<String> {
        let get = |name: &str| {
            counters
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v)
        };
        let sum = |names: &[&str]| names.iter().map(|n| get(n)).sum::<u64>();
        let checks = [
            ("calls", get("calls"), sum(&["unsampled", "sampled"])),
            (
                "sampled (pending)",
                get("sampled"),
                sum(&["pending_set", "pending_full"]),
            ),
            (
                "stacks",
                sum(&["sampled", "usdt_alloc"]),
                sum(&[
                    "user_stack",
                    "user_stack_missing",
                    "user_stack_map_full",
                    "user_stack_error",
                ]),
            ),
            (
                "returns",
                sum(&["returned", "usdt_alloc"]),
                sum(&[
                    "alloc_failed",
                    "live_inserted",
                    "live_full",
                    "live_error",
                    "out_unreadable",
                ]),
            ),
            (
                "counts",
                sum(&["live_inserted", "live_full", "live_error"]),
                sum(&["counted", "counts_full", "counts_error"]),
            ),
            (
                "frees",
                get("frees"),
                sum(&["free_null", "freed_sampled", "freed_other"]),
            ),
        ];
        checks
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(what, a, b)| format!("heap: {what}: {a} events but {b} outcomes"))
            .collect()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "heap: in-use = sampled allocations made since the profiler attached and not freed{}",
            self.opts
                .min_age
                .map(|a| format!(", at least {:.1} s old", a.as_secs_f64()))
                .unwrap_or_default()
        )];
        for h in &self.hooked {
            notes.push(format!("heap: pid {}: {}", h.pid, h.what));
        }
        for p in &self.problems {
            notes.push(format!("heap: not hooked: {p}"));
        }
        notes
    }

    fn summary_lines(&self, profile: &Profile, columns: std::ops::Range<usize>) -> Vec<String> {
        let c = columns.start;
        let total = |i: usize| profile.total(c + i);
        let counters = self.counters().unwrap_or_default();
        let get = |name: &str| {
            counters
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v)
        };
        let mb = |b: f64| b / (1024.0 * 1024.0);
        let mut lines = Vec::new();
        for h in &self.hooked {
            lines.push(format!("heap:         pid {}: {}", h.pid, h.what));
        }
        for p in &self.problems {
            lines.push(format!("heap:         not hooked: {p}"));
        }
        if get("calls") > 0 {
            lines.push(format!(
                "              {} allocation calls ({:.1} MiB requested), {} frees, counted exactly; {} sampled",
                get("calls"),
                mb(get("bytes") as f64),
                get("frees"),
                get("sampled")
            ));
        }
        if !self.sampler_totals.is_empty() {
            lines.push(format!(
                "              heap-sampler totals: {} allocations ({:.1} MiB), {} frees ({:.1} MiB), {} sampled",
                get("sampler_allocs"),
                mb(get("sampler_alloc_bytes") as f64),
                get("sampler_frees"),
                mb(get("sampler_free_bytes") as f64),
                get("sampler_sampled_allocs")
            ));
        }
        lines.push(format!(
            "              estimated: {:.1} MiB allocated in {} objects; {:.1} MiB in use in {} objects (since attach{})",
            mb(total(1) as f64),
            total(0),
            mb(total(3) as f64),
            total(2),
            self.opts
                .min_age
                .map(|a| format!(", older than {:.1} s", a.as_secs_f64()))
                .unwrap_or_default()
        ));
        let lost = get("live_full")
            + get("counts_full")
            + get("pending_full")
            + get("user_stack_map_full");
        if lost > 0 {
            lines.push(format!(
                "              lost: {lost} samples (maps full); raise --heap-rate to sample less"
            ));
        }
        lines
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x86_64 notes name registers `%rax`; offsets are slots of `struct pt_regs`.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn usdt_arguments_in_registers_and_constants() {
        let a = usdt_args("-8@%rax -8@%rcx -8@%rdx").expect("registers");
        assert_eq!(a.ptr.kind, ARG_REGISTER);
        assert_eq!(a.ptr.pt_regs_offset, 80);
        assert_eq!(a.size.pt_regs_offset, 88);
        let sp = usdt_args("8@%rsp 8@%esi").expect("registers");
        assert_eq!((sp.ptr.pt_regs_offset, sp.size.pt_regs_offset), (152, 104));
        let c = usdt_args("8@%rdi 8@$4096").expect("a constant");
        assert_eq!(c.size.kind, ARG_CONSTANT);
        assert_eq!(c.size.constant, 4096);
        // Memory operands are not supported: said, not guessed.
        assert!(usdt_args("8@-16(%rbp) 8@%rax").is_none());
        assert!(usdt_args("8@%rax").is_none(), "two arguments are needed");
        // Another architecture's registers are no registers here.
        assert!(usdt_args("-8@x0 -8@x1").is_none());
    }

    /// aarch64 notes name registers `x0` (`w0` for 32 bits), no `%`; `struct user_pt_regs`
    /// is regs[0..31], then sp.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn usdt_arguments_in_registers_and_constants() {
        let a = usdt_args("-8@x0 -8@x1 -8@x2").expect("registers");
        assert_eq!(a.ptr.kind, ARG_REGISTER);
        assert_eq!((a.ptr.pt_regs_offset, a.size.pt_regs_offset), (0, 8));
        let b = usdt_args("8@x30 4@w19").expect("registers");
        assert_eq!((b.ptr.pt_regs_offset, b.size.pt_regs_offset), (240, 152));
        let sp = usdt_args("8@sp 8@x3").expect("sp");
        assert_eq!(sp.ptr.pt_regs_offset, 248);
        let c = usdt_args("8@x0 8@4096").expect("a constant");
        assert_eq!(c.ptr.kind, ARG_REGISTER);
        assert_eq!(c.size.kind, ARG_CONSTANT);
        assert_eq!(c.size.constant, 4096);
        // Memory operands are not supported: said, not guessed.
        assert!(usdt_args("8@[sp, 16] 8@x0").is_none());
        assert!(
            usdt_args("8@x31 8@x0").is_none(),
            "x31 is no general register"
        );
        assert!(usdt_args("8@x0").is_none(), "two arguments are needed");
        // Another architecture's registers are no registers here.
        assert!(usdt_args("-8@%rax -8@%rcx").is_none());
    }

    /// glibc's free opens with `test %rdi,%rdi; je`: the probe goes on the `je`. malloc opens
    /// with `push`: it stays on the first instruction.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn entry_probes_go_on_an_instruction_the_kernel_emulates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code");
        // 0x100: test %rdi,%rdi; je +0x10; push %rbp    0x200: push %r12    0x300: mov (%rdi),%rax
        let mut code = vec![0xccu8; 0x400];
        code[0x100..0x109].copy_from_slice(&[0x48, 0x85, 0xff, 0x0f, 0x84, 0x10, 0, 0, 0]);
        code[0x200..0x202].copy_from_slice(&[0x41, 0x54]);
        code[0x300..0x303].copy_from_slice(&[0x48, 0x8b, 0x07]);
        std::fs::write(&path, &code).unwrap();
        assert_eq!(cheap_entry(&path, 0x100), 0x103);
        assert_eq!(cheap_entry(&path, 0x200), 0x200);
        // Not emulated and not skippable: the entry it is.
        assert_eq!(cheap_entry(&path, 0x300), 0x300);
    }

    #[test]
    fn libc_symbols_are_found_with_file_offsets() {
        let mut maps = crate::symbolize::ProcessMaps::default();
        maps.refresh(std::process::id()).unwrap();
        let me = ProcessRecord::for_tests(std::process::id(), maps);
        let libc = libc_of(&me).expect("this test links libc");
        let offsets = symbol_offsets(&libc, &["malloc", "free", "no_such_function_42"]);
        assert!(offsets[0].is_some() && offsets[1].is_some(), "{offsets:?}");
        assert!(offsets[2].is_none());
    }
}
