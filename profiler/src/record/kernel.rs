//! The kernel side seen from user space: the embedded eBPF object, the maps the session owns
//! (the active set selector, the stacks by content hash, thread names), flipping the map
//! sets, reading counters, and what the programs cost in the kernel.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::time::Duration;

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use aya::programs::BtfTracePoint;
use aya::programs::tp_btf::BtfTracePointLinkId;
use aya::{Ebpf, EbpfLoader};
use profiler_ebpf::stacks::{ACTIVE_SET, MAX_STACK_DEPTH, RawStack, STACK_SCRATCH, STACKS};
use profiler_ebpf::{Comm, CounterSet, THREAD_COMMS};

use super::RecordError;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler-ebpf"));

/// A stack as read from the kernel: instruction pointers, leaf first.
pub type Ips = Vec<u64>;

/// Threads whose names the session keeps (tids alive at once over a recording, all targets).
const THREAD_COMMS_ENTRIES: u32 = 32_768;

/// What one program cost in the kernel: how often it ran and for how long in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCost {
    pub program: &'static str,
    pub runs: u64,
    pub run_time: Duration,
}

impl ProgramCost {
    /// One line for people: the time all of `costs` ran in the kernel over `elapsed`, or None
    /// when the kernel kept no statistics.
    pub fn total_line(costs: &[ProgramCost], elapsed: Duration) -> Option<String> {
        let runs: u64 = costs.iter().map(|c| c.runs).sum();
        if runs == 0 {
            return None;
        }
        let run = costs
            .iter()
            .map(|c| c.run_time)
            .sum::<Duration>()
            .as_secs_f64();
        Some(format!(
            "in kernel: {run:.3} s in {} programs over {runs} runs ({:.2} us per run, {:.2}% of one core)",
            costs.len(),
            run * 1e6 / runs as f64,
            100.0 * run / elapsed.as_secs_f64().max(1e-3)
        ))
    }
}

/// The loaded object and the maps the session owns.
pub struct Kernel {
    pub bpf: Ebpf,
    active: Array<MapData, u32>,
    stacks: [BpfHashMap<MapData, u64, RawStack>; 2],
    comms: BpfHashMap<MapData, u32, Comm>,
    set: u32,
    /// Keeps the kernel's run-time statistics for BPF programs on while recording, so the
    /// summary can say what the programs cost. None when the kernel refused.
    run_time_stats: Option<OwnedFd>,
}

/// Turns any aya error into `RecordError::Bpf`, keeping it as the source.
pub fn bpf_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> RecordError {
    move |e| RecordError::Bpf {
        what: what.into(),
        source: Box::new(e),
    }
}

/// Takes map `name` out of the object, so its owner can keep a typed handle.
pub fn take_map(bpf: &mut Ebpf, name: &str) -> Result<Map, RecordError> {
    bpf.take_map(name)
        .ok_or_else(|| RecordError::MissingInObject(format!("map {name}")))
}

/// Sums a per-CPU counter array over CPUs, every counter of set `C` by name.
pub fn read_counters<C: CounterSet>(
    map: &PerCpuArray<MapData, u64>,
) -> Result<Vec<(&'static str, u64)>, RecordError> {
    C::all()
        .iter()
        .map(|&c| {
            map.get(&c.index(), 0)
                .map(|per_cpu| (c.name(), per_cpu.iter().sum()))
                .map_err(bpf_err(format!("reading counter {}", c.name())))
        })
        .collect()
}

/// Loads and attaches tp_btf programs, each `(program, tracepoint)`; returns their links for
/// [`detach_tracepoints`].
pub fn attach_tracepoints(
    bpf: &mut Ebpf,
    programs: &[(&'static str, &str)],
) -> Result<Vec<(&'static str, BtfTracePointLinkId)>, RecordError> {
    let btf = aya::Btf::from_sys_fs().map_err(bpf_err("reading the kernel's BTF"))?;
    let mut links = Vec::with_capacity(programs.len());
    for &(name, tracepoint) in programs {
        let program: &mut BtfTracePoint = bpf
            .program_mut(name)
            .ok_or_else(|| RecordError::MissingInObject(format!("program {name}")))?
            .try_into()
            .map_err(bpf_err(format!("program {name}")))?;
        program
            .load(tracepoint, &btf)
            .map_err(RecordError::from_load)?;
        links.push((name, program.attach().map_err(RecordError::from_load)?));
    }
    Ok(links)
}

/// Detaches what [`attach_tracepoints`] attached (the programs stay loaded).
pub fn detach_tracepoints(bpf: &mut Ebpf, links: Vec<(&'static str, BtfTracePointLinkId)>) {
    for (name, link) in links {
        if let Some(program) = bpf.program_mut(name)
            && let Ok(program) = <&mut BtfTracePoint>::try_from(program)
        {
            let _ = program.detach(link);
        }
    }
}

/// Runs and run time of program `name` so far.
pub fn program_cost(bpf: &Ebpf, name: &'static str) -> Option<ProgramCost> {
    let info = bpf.program(name)?.info().ok()?;
    Some(ProgramCost {
        program: name,
        runs: info.run_count(),
        run_time: info.run_time(),
    })
}

impl Kernel {
    /// Loads the object with the globals and map sizes `configure` sets; no program runs yet.
    pub fn load<'a>(
        stacks_per_interval: u32,
        configure: impl FnOnce(&mut EbpfLoader<'a>),
    ) -> Result<Self, RecordError> {
        // Statistics cost two clock reads per program run; without them the profiler's own
        // kernel-side cost would be invisible. A kernel without them only loses the figure.
        let run_time_stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map_err(|e| tracing::debug!("BPF run-time statistics unavailable: {e}"))
            .ok();
        let mut loader = EbpfLoader::new();
        for name in STACKS {
            loader.map_max_entries(name, stacks_per_interval.max(1024));
        }
        loader.map_max_entries(THREAD_COMMS, THREAD_COMMS_ENTRIES);
        configure(&mut loader);
        let mut bpf = loader.load(OBJECT).map_err(RecordError::from_load)?;
        let active = Array::try_from(take_map(&mut bpf, ACTIVE_SET)?)
            .map_err(bpf_err("opening ACTIVE_SET"))?;
        let stacks = [
            BpfHashMap::try_from(take_map(&mut bpf, STACKS[0])?)
                .map_err(bpf_err("opening STACKS_0"))?,
            BpfHashMap::try_from(take_map(&mut bpf, STACKS[1])?)
                .map_err(bpf_err("opening STACKS_1"))?,
        ];
        let comms = BpfHashMap::try_from(take_map(&mut bpf, THREAD_COMMS)?)
            .map_err(bpf_err("opening THREAD_COMMS"))?;
        // The scratch slot is the programs' alone.
        let _ = STACK_SCRATCH;
        Ok(Kernel {
            bpf,
            active,
            stacks,
            comms,
            set: 0,
            run_time_stats,
        })
    }

    /// Points the programs at the other map set and returns the set they left, now quiet.
    pub fn flip(&mut self) -> Result<usize, RecordError> {
        let drained = self.set;
        self.set ^= 1;
        self.active
            .set(0, self.set, 0)
            .map_err(bpf_err("flipping the active map set"))?;
        // A program that read the old selector just before the flip finishes within
        // microseconds (programs run with preemption off); this wait covers it widely.
        std::thread::sleep(Duration::from_millis(2));
        Ok(drained as usize)
    }

    /// Reads the stacks with these hashes from set `set`; a hash whose stack is not there
    /// (it should always be) maps to None.
    pub fn read_stacks(&self, set: usize, hashes: &[u64]) -> Vec<(u64, Option<Ips>)> {
        hashes
            .iter()
            .map(|&h| {
                let ips = self.stacks[set].get(&h, 0).ok().map(|s| {
                    let len = (s.len as usize).min(MAX_STACK_DEPTH);
                    s.ips[..len].to_vec()
                });
                (h, ips)
            })
            .collect()
    }

    /// Empties the stacks of set `set` (after every collector drained it).
    pub fn clear_stacks(&mut self, set: usize) {
        let keys: Vec<u64> = self.stacks[set].keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = self.stacks[set].remove(&k);
        }
    }

    /// Forgets the names of threads that are gone and not in `keep`. A live thread's name
    /// stays (the programs only write names they do not hold), so its samples keep it.
    pub fn forget_threads(&mut self, keep: &HashSet<u32>) {
        let gone: Vec<u32> = self
            .comms
            .keys()
            .filter_map(Result::ok)
            .filter(|tid| !keep.contains(tid))
            .filter(|tid| !std::path::Path::new(&format!("/proc/{tid}")).exists())
            .collect();
        for tid in gone {
            let _ = self.comms.remove(&tid);
        }
    }

    /// Thread names seen, by tid.
    pub fn thread_names(&self) -> HashMap<u32, String> {
        self.comms
            .iter()
            .filter_map(Result::ok)
            .map(|(tid, comm)| (tid, String::from_utf8_lossy(comm.as_bytes()).into_owned()))
            .collect()
    }

    pub fn stats_enabled(&self) -> bool {
        self.run_time_stats.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::OBJECT;

    /// `pt_regs` offsets of (first argument, second argument, return value, where a function's
    /// return address is at its entry) for the architecture this is built for.
    #[cfg(target_arch = "x86_64")]
    const REGS: [i16; 4] = [14 * 8, 13 * 8, 10 * 8, 19 * 8]; // rdi, rsi, rax, rsp
    #[cfg(target_arch = "aarch64")]
    const REGS: [i16; 4] = [0, 8, 0, 30 * 8]; // x0, x1, x0, x30

    /// The instructions of function `name` in the eBPF object (ELF64, little endian).
    fn function_code(object: &[u8], name: &str) -> Vec<[u8; 8]> {
        let u16_at = |at: usize| u16::from_le_bytes(object[at..at + 2].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(object[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(object[at..at + 8].try_into().unwrap());
        let (shoff, shentsize, shnum) = (u64_at(0x28) as usize, u16_at(0x3a), u16_at(0x3c));
        let section = |i: usize| shoff + i * shentsize as usize;
        let symtab = (0..shnum as usize)
            .map(section)
            .find(|&s| u32_at(s + 4) == 2) // SHT_SYMTAB
            .expect("a symbol table");
        let strtab = u64_at(section(u32_at(symtab + 40) as usize) + 24) as usize;
        let (syms, size) = (u64_at(symtab + 24) as usize, u64_at(symtab + 32) as usize);
        for sym in (syms..syms + size).step_by(24) {
            let at = strtab + u32_at(sym) as usize;
            let end = at + object[at..].iter().position(|&b| b == 0).unwrap();
            if &object[at..end] != name.as_bytes() {
                continue;
            }
            let code = u64_at(section(u16_at(sym + 6) as usize) + 24) as usize;
            let start = code + u64_at(sym + 8) as usize;
            let len = u64_at(sym + 16) as usize;
            return object[start..start + len]
                .chunks_exact(8)
                .map(|i| i.try_into().unwrap())
                .collect();
        }
        panic!("no function {name} in the eBPF object");
    }

    /// Offsets of the 8-byte loads a function makes from its context (the probe's `pt_regs`),
    /// following the registers the context pointer is copied to.
    fn context_loads(code: &[[u8; 8]]) -> Vec<i16> {
        let mut ctx = [false; 11];
        ctx[1] = true;
        let mut loads = Vec::new();
        for insn in code {
            let (op, dst, src) = (insn[0], (insn[1] & 0xf) as usize, (insn[1] >> 4) as usize);
            let off = i16::from_le_bytes([insn[2], insn[3]]);
            if dst > 10 || src > 10 {
                continue; // the second half of a 16-byte load
            }
            match op {
                0xbf => ctx[dst] = ctx[src], // r_dst = r_src
                0x79 => {
                    // r_dst = *(u64 *)(r_src + off)
                    if ctx[src] {
                        loads.push(off);
                    }
                    ctx[dst] = false;
                }
                0x85 => ctx[0..6].fill(false), // a call clobbers r0..r5
                _ if matches!(op & 7, 0 | 1 | 4 | 7) => ctx[dst] = false, // ld, ldx, alu
                _ => {}
            }
        }
        loads
    }

    /// build.rs builds the programs for the target's architecture: the embedded object reads
    /// this architecture's argument, return and link registers from `pt_regs` (an object built
    /// for the other architecture reads other offsets and gets garbage sizes and stacks).
    #[test]
    fn embedded_programs_read_this_architectures_registers() {
        let [arg0, arg1, ret, return_address] = REGS;
        let malloc = context_loads(&function_code(OBJECT, "heap_malloc"));
        assert!(malloc.contains(&arg0), "malloc's size: {malloc:?}");
        assert!(malloc.contains(&return_address), "caller: {malloc:?}");
        let calloc = context_loads(&function_code(OBJECT, "heap_calloc"));
        assert!(
            calloc.contains(&arg0) && calloc.contains(&arg1),
            "{calloc:?}"
        );
        let returned = context_loads(&function_code(OBJECT, "heap_return"));
        assert_eq!(returned, [ret], "malloc's return value");
        // x86_64's rdi (0x70) is aarch64's x14 and the other way round x0 is r15: neither
        // is read when the object matches the architecture.
        #[cfg(target_arch = "x86_64")]
        assert!(!malloc.contains(&0), "{malloc:?}");
        #[cfg(target_arch = "aarch64")]
        assert!(!malloc.contains(&(14 * 8)), "{malloc:?}");
    }
}
