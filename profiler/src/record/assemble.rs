//! Turns accumulated samples into a `Profile`: resolves every stack address (incrementally,
//! while the targets live, so the end of a recording is quick), builds locations with inlined
//! lines, mappings with build ids, `thread`/`tid`/`pid`/`process` labels, and the statistics
//! the capture's metadata and the summary report (stack health, unsymbolized frames by reason).

use std::collections::{BTreeMap, HashMap, HashSet};

use profiler_ebpf::stacks::MAX_STACK_DEPTH;

use super::collector::{Batch, RawSamples, StackId, StackTable, WakerKey};
use super::health::{Ending, Health, is_kernel_root, is_user_root};
use super::targets::ProcessRecord;
use crate::profile::{
    Label, LabelValue, Line, Mapping, Profile, ProfileBuilder, Sample, ValueType,
};
use crate::symbolize::{FrameLine, MissReason, ProcessMaps, Resolved, Symbolizer};

/// The first frame is where the CPU was; every other frame is a return address, which points
/// after the call. Looking up `ip - 1` attributes it to the call's line and inlined frames.
fn lookup_address(index: usize, ip: u64) -> u64 {
    if index == 0 { ip } else { ip.saturating_sub(1) }
}

/// No code lives in the first page: Linux never maps it (`vm.mmap_min_addr` is larger still).
const FIRST_CODE_ADDRESS: u64 = 0x1000;

/// A user stack as kept: cut at the first return address inside the first page. A
/// frame-pointer walk reads such values (0, 1, ...) where a caller kept no frame pointer; they
/// are never code, and what the walk finds past them is no caller either. The leaf (the
/// sampled instruction pointer) is always kept, so the sample is counted.
pub fn trim_user_stack(mut ips: Vec<u64>) -> Vec<u64> {
    if let Some(bogus) = ips.iter().skip(1).position(|&ip| ip < FIRST_CODE_ADDRESS) {
        ips.truncate(bogus + 1);
    }
    ips
}

/// Symbolization results, filled as stacks arrive and kept for the session.
#[derive(Default)]
pub struct Symbols {
    symbolizer: Symbolizer,
    /// (pid, lookup address) → result.
    user: HashMap<(u32, u64), Resolved>,
    kernel: HashMap<u64, Resolved>,
    user_done: HashSet<(u32, StackId)>,
    kernel_done: HashSet<StackId>,
}

impl Symbols {
    /// Resolves the addresses of the stacks in `batch` not resolved before, with each
    /// process's maps as they are now (the caller refreshed them).
    pub fn resolve(
        &mut self,
        batch: &Batch,
        stacks: &StackTable,
        processes: &BTreeMap<u32, ProcessRecord>,
    ) {
        let mut user: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        let mut kernel = Vec::new();
        // A sample's own stacks, and its waker's (symbolized with the waker's process).
        let all_stacks = batch.samples.iter().flat_map(|(key, _)| {
            let waker = key.waker.as_deref().map(|w| (w.pid, w.user, w.kernel));
            [(key.pid, key.user, key.kernel)].into_iter().chain(waker)
        });
        for (pid, user_stack, kernel_stack) in all_stacks {
            if let Some(s) = user_stack
                && self.user_done.insert((pid, s))
            {
                let addrs = user.entry(pid).or_default();
                for (i, &ip) in stacks.get(s).iter().enumerate() {
                    let a = lookup_address(i, ip);
                    if !self.user.contains_key(&(pid, a)) {
                        addrs.push(a);
                    }
                }
            }
            if let Some(s) = kernel_stack
                && self.kernel_done.insert(s)
            {
                for (i, &ip) in stacks.get(s).iter().enumerate() {
                    let a = lookup_address(i, ip);
                    if !self.kernel.contains_key(&a) {
                        kernel.push(a);
                    }
                }
            }
        }
        let empty = ProcessMaps::default();
        for (pid, mut addrs) in user {
            addrs.sort_unstable();
            addrs.dedup();
            let maps = processes.get(&pid).map_or(&empty, |p| &p.maps);
            for (a, r) in self.symbolizer.user(maps, &addrs) {
                self.user.insert((pid, a), r);
            }
        }
        kernel.sort_unstable();
        kernel.dedup();
        if !kernel.is_empty() {
            self.kernel.extend(self.symbolizer.kernel(&kernel));
        }
    }
}

impl Symbols {
    /// Resolved (user, kernel) addresses held.
    pub fn len(&self) -> (usize, usize) {
        (self.user.len(), self.kernel.len())
    }

    /// Keeps what the stacks in `live` need ((pid, stack id, is kernel)) and forgets the rest:
    /// a stack seen again is resolved again.
    pub fn retain(&mut self, live: &HashSet<(u32, StackId, bool)>, stacks: &StackTable) {
        let mut user = HashSet::new();
        let mut kernel = HashSet::new();
        let mut kernel_stacks = HashSet::new();
        for &(pid, id, is_kernel) in live {
            if is_kernel {
                kernel_stacks.insert(id);
            }
            for (i, &ip) in stacks.get(id).iter().enumerate() {
                let a = lookup_address(i, ip);
                if is_kernel {
                    kernel.insert(a);
                } else {
                    user.insert((pid, a));
                }
            }
        }
        self.user_done
            .retain(|&(pid, id)| live.contains(&(pid, id, false)));
        self.kernel_done.retain(|id| kernel_stacks.contains(id));
        self.user.retain(|key, _| user.contains(key));
        self.kernel.retain(|a, _| kernel.contains(a));
    }
}

/// What the assembler needs besides the samples.
pub struct Assembly<'a> {
    pub sample_types: &'a [ValueType],
    pub default_sample_type: Option<&'a str>,
    pub period: Option<(ValueType, i64)>,
    /// Columns that count events (samples, switches, allocations): stack health and frame
    /// statistics are weighted by their sum.
    pub event_columns: &'a [usize],
    pub stacks: &'a StackTable,
    pub processes: &'a BTreeMap<u32, ProcessRecord>,
    pub threads: &'a HashMap<u32, String>,
}

/// What the profile holds, for the metadata and the summary.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Per column, the total of its values.
    pub totals: Vec<i64>,
    pub processes: usize,
    pub threads: usize,
    pub health: Health,
    /// Frames over all samples (weighted by events), and the unsymbolized ones by reason.
    pub frames: u64,
    pub unsymbolized: BTreeMap<MissReason, u64>,
}

/// A frame already turned into a location: (location, lines in it, why it has no name).
type CachedLocation = (usize, u64, Option<MissReason>);

pub const MISSING_USER_STACK: &str = "[missing user stack]";
pub const TRUNCATED: &str = "[truncated]";
/// Samples recorded without stacks on purpose (e.g. off-CPU intervals under the minimum).
pub const NO_STACK_TAKEN: &str = "[no stack: below the threshold]";
/// Between a blocked stack and the stack of the thread that woke it.
pub const WAKER_SEPARATOR: &str = "--";

/// The profile being built, with what turning frames into locations shares across samples.
struct Builder<'a> {
    b: ProfileBuilder,
    /// Mappings are shared by processes that map the same file at the same place (forked
    /// children): keyed by what pprof's Mapping holds.
    mappings: HashMap<(u64, u64, u64, String), usize>,
    kernel_mapping: Option<usize>,
    /// (pid or 0 for kernel, address, is the leaf, lines dropped) → the location made for it.
    /// Stacks share most of their frames (the same server loop under every request): each
    /// frame becomes a location once, not once per sample.
    cache: HashMap<(u32, u64, bool, usize), CachedLocation>,
    asm: &'a Assembly<'a>,
}

/// Frames of one sample as they are added: locations leaf first, with their statistics.
#[derive(Default)]
struct SampleFrames {
    locations: Vec<usize>,
    frames: u64,
    misses: Vec<MissReason>,
}

impl Symbols {
    pub fn build_profile(&mut self, samples: &RawSamples, asm: &Assembly<'_>) -> (Profile, Stats) {
        let width = asm.sample_types.len();
        let mut out = Builder {
            b: ProfileBuilder::new(asm.sample_types.to_vec()),
            mappings: HashMap::new(),
            kernel_mapping: None,
            cache: HashMap::new(),
            asm,
        };
        let mut stats = Stats {
            totals: vec![0; width],
            ..Stats::default()
        };
        let mut keys: Vec<_> = samples.counts.iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut tids = HashSet::new();
        let mut pids = HashSet::new();
        for (key, values) in keys {
            if values.iter().all(|&v| v == 0) {
                continue;
            }
            tids.insert(key.tid);
            pids.insert(key.pid);
            for (t, v) in stats.totals.iter_mut().zip(values) {
                *t += v;
            }
            let events: i64 = asm
                .event_columns
                .iter()
                .filter_map(|&c| values.get(c))
                .sum();
            let events = events.max(0) as u64;
            let process = asm.processes.get(&key.pid);
            let user_len = key
                .user
                .map_or(0, |s| self.user_frames(key.pid, asm.stacks.get(s)));
            // Kernel frames first: pprof stacks are leaf first, and the kernel part is the leaf.
            let mut sf = SampleFrames::default();
            if let Some(k) = key.kernel {
                let ips = self.without_tracing_frames(asm.stacks.get(k));
                self.push_frames(&mut out, 0, ips, &mut sf);
            }
            if let Some(u) = key.user {
                self.push_frames(&mut out, key.pid, &asm.stacks.get(u)[..user_len], &mut sf);
            }
            match key.user {
                None if key.kernel.is_none() => {
                    sf.locations
                        .push(pseudo_location(&mut out.b, NO_STACK_TAKEN));
                }
                None if !is_kernel_thread(key.pid, process) => {
                    sf.locations
                        .push(pseudo_location(&mut out.b, MISSING_USER_STACK));
                }
                Some(_) if user_len >= MAX_STACK_DEPTH => {
                    sf.locations.push(pseudo_location(&mut out.b, TRUNCATED));
                }
                _ => {}
            }
            let locations = match key.waker.as_deref() {
                Some(w) => self.with_waker(&mut out, w, sf.locations),
                None => sf.locations,
            };
            let ending = self.ending(key.kernel, key.user, user_len, key.pid, asm.stacks);
            let program = process
                .map(|p| p.name.clone())
                .unwrap_or_else(|| format!("pid {}", key.pid));
            // Health names the executable in full (the kernel's name keeps 15 bytes).
            let executable = process
                .and_then(|p| p.executable.clone())
                .unwrap_or_else(|| program.clone());
            let ended_in = match key.user.map(|s| &asm.stacks.get(s)[..user_len]) {
                Some(ips) if !ips.is_empty() => {
                    let last = ips.len() - 1;
                    let addr = lookup_address(last, ips[last]);
                    self.user
                        .get(&(key.pid, addr))
                        .and_then(|r| r.vma)
                        .and_then(|v| process.map(|p| p.maps.vmas()[v].name.clone()))
                        .map(|n| n.rsplit('/').next().unwrap_or(&n).to_string())
                        .unwrap_or_else(|| "[unmapped]".to_string())
                }
                _ => String::new(),
            };
            // A sample recorded without stacks on purpose says nothing about stack health.
            let stackless = key.user.is_none() && key.kernel.is_none();
            if events > 0 && !stackless {
                stats.health.add(&executable, ending, &ended_in, events);
            }
            stats.frames += sf.frames * events;
            for m in sf.misses {
                *stats.unsymbolized.entry(m).or_default() += events;
            }
            let thread = asm
                .threads
                .get(&key.tid)
                .cloned()
                .unwrap_or_else(|| format!("tid-{}", key.tid));
            let mut labels = vec![
                Label {
                    key: "thread".into(),
                    value: LabelValue::Str(thread),
                },
                Label {
                    key: "tid".into(),
                    value: LabelValue::Num {
                        value: i64::from(key.tid),
                        unit: String::new(),
                    },
                },
                Label {
                    key: "pid".into(),
                    value: LabelValue::Num {
                        value: i64::from(key.pid),
                        unit: String::new(),
                    },
                },
                Label {
                    key: "process".into(),
                    value: LabelValue::Str(program),
                },
            ];
            labels.extend(key.labels.iter().map(|(k, v)| Label {
                key: (*k).to_string(),
                value: LabelValue::Str(v.clone()),
            }));
            if let Some(w) = key.waker.as_deref() {
                let name = asm
                    .threads
                    .get(&w.tid)
                    .cloned()
                    .unwrap_or_else(|| format!("tid-{}", w.tid));
                labels.push(Label {
                    key: "waker".into(),
                    value: LabelValue::Str(name),
                });
            }
            out.b.add_sample(Sample {
                locations,
                values: values.clone(),
                labels,
            });
        }
        stats.threads = tids.len();
        stats.processes = pids.len();
        let p = out.b.profile_mut();
        p.default_sample_type = asm.default_sample_type.map(str::to_string);
        if let Some((t, period)) = &asm.period {
            p.period_type = Some(t.clone());
            p.period = *period;
        }
        (out.b.finish(), stats)
    }

    /// Puts the waker's stack on top of the blocked one, its leaf next to the blocked leaf,
    /// after a `--` frame: read from the root, "blocked here; woken by this", as BCC's
    /// offwaketime draws it.
    fn with_waker(
        &mut self,
        out: &mut Builder<'_>,
        w: &WakerKey,
        blocked: Vec<usize>,
    ) -> Vec<usize> {
        let stacks = out.asm.stacks;
        let mut woken = SampleFrames::default();
        if let Some(k) = w.kernel {
            let ips = self.without_tracing_frames(stacks.get(k));
            self.push_frames(out, 0, ips, &mut woken);
        }
        if let Some(u) = w.user {
            let n = self.user_frames(w.pid, stacks.get(u));
            self.push_frames(out, w.pid, &stacks.get(u)[..n], &mut woken);
        }
        let mut locations = woken.locations;
        locations.reverse();
        locations.push(pseudo_location(&mut out.b, WAKER_SEPARATOR));
        locations.extend(blocked);
        locations
    }

    /// Adds the locations of `ips` (leaf first) of process `pid`, or of the kernel when `pid`
    /// is 0.
    ///
    /// A user stack taken at a heap-sampler probe starts inside the allocator, which the
    /// compiler may have inlined into the program's own functions: at the leaf end, the lines
    /// of each location up to its outermost sampler function are dropped (a location left
    /// with none is dropped whole), until a location without sampler lines.
    fn push_frames(&mut self, out: &mut Builder<'_>, pid: u32, ips: &[u64], sf: &mut SampleFrames) {
        let is_kernel = pid == 0;
        let process = out.asm.processes.get(&pid);
        let mut trimming = !is_kernel;
        for (i, &ip) in ips.iter().enumerate() {
            let addr = lookup_address(i, ip);
            let resolved = if is_kernel {
                self.kernel.get(&addr)
            } else {
                self.user.get(&(pid, addr))
            };
            let Some(r) = resolved else { continue };
            // Lines kept from this location: all, or those outer to the sampler's.
            let mut keep_from = 0;
            if trimming {
                match r
                    .lines
                    .iter()
                    .rposition(|l| is_instrumentation(&l.function))
                {
                    Some(outermost) if outermost + 1 == r.lines.len() => continue,
                    Some(outermost) => {
                        keep_from = outermost + 1;
                        trimming = false;
                    }
                    None => trimming = false,
                }
            }
            let cache_key = (pid, ip, i == 0, keep_from);
            let (location, lines, miss) = match out.cache.get(&cache_key) {
                Some(&cached) => cached,
                None => {
                    let mapping = if is_kernel {
                        let b = &mut out.b;
                        Some(*out.kernel_mapping.get_or_insert_with(|| {
                            b.add_mapping(Mapping {
                                filename: Mapping::KERNEL.to_string(),
                                has_functions: true,
                                ..Mapping::default()
                            })
                        }))
                    } else {
                        r.vma
                            .and_then(|v| process.map(|p| &p.maps.vmas()[v]))
                            .map(|vma| {
                                let k = (vma.start, vma.end, vma.file_offset, vma.name.clone());
                                let b = &mut out.b;
                                let symbolizer = &mut self.symbolizer;
                                *out.mappings.entry(k).or_insert_with(|| {
                                    let build_id = vma
                                        .file
                                        .as_deref()
                                        .map(|f| symbolizer.build_id(f))
                                        .unwrap_or_default();
                                    b.add_mapping(Mapping {
                                        memory_start: vma.start,
                                        memory_limit: vma.end,
                                        file_offset: vma.file_offset,
                                        filename: vma.name.clone(),
                                        build_id,
                                        ..Mapping::default()
                                    })
                                })
                            })
                    };
                    if let Some(m) = mapping {
                        let mapping = &mut out.b.profile_mut().mappings[m];
                        mapping.has_functions |= r.symbolized();
                        mapping.has_filenames |= r.has_line_info;
                        mapping.has_line_numbers |= r.has_line_info;
                        mapping.has_inline_frames |= r.has_inlined;
                    }
                    let lines: Vec<Line> = r.lines[keep_from..]
                        .iter()
                        .map(|l| Line {
                            function: out.b.function(&l.function, &l.file),
                            line: l.line,
                        })
                        .collect();
                    let n = lines.len() as u64;
                    let location = out.b.location(mapping, ip, lines);
                    let cached = (location, n, r.miss);
                    out.cache.insert(cache_key, cached);
                    cached
                }
            };
            sf.frames += lines;
            sf.misses.extend(miss);
            sf.locations.push(location);
        }
    }

    /// A kernel stack taken inside a tracepoint program starts with the program and the
    /// tracing glue that ran it (`bpf_prog_*`, `bpf_trace_run*`, `__traceiter_*`): the
    /// profiler's own frames, not the target's. They are dropped from the leaf end.
    fn without_tracing_frames<'s>(&self, ips: &'s [u64]) -> &'s [u64] {
        let tracing = |i: usize, ip: u64| {
            self.kernel
                .get(&lookup_address(i, ip))
                .and_then(|r| r.lines.last())
                .is_some_and(|l| {
                    let f = l.function.as_str();
                    f.starts_with("bpf_prog_")
                        || f.starts_with("bpf_trace_run")
                        || f.starts_with("__bpf_trace_")
                        || f.starts_with("__traceiter_")
                })
        };
        let skip = ips
            .iter()
            .enumerate()
            .take_while(|&(i, &ip)| tracing(i, ip))
            .count();
        &ips[skip..]
    }

    /// How many frames of a user stack are real: a frame-pointer walk that went through a
    /// function without frame pointers reads a data word as the next return address, which
    /// lands outside every mapping of the process. The stack is cut there (the leaf always
    /// stays), so such words never show as frames, and the stack counts as cut.
    fn user_frames(&self, pid: u32, ips: &[u64]) -> usize {
        ips.iter()
            .enumerate()
            .skip(1)
            .find(|&(i, &ip)| {
                self.user
                    .get(&(pid, lookup_address(i, ip)))
                    .is_some_and(|r| r.miss == Some(MissReason::Unmapped))
            })
            .map_or(ips.len(), |(i, _)| i)
    }

    /// How a sample's stacks end (see `health`); `user_len` frames of the user stack count.
    fn ending(
        &self,
        kernel: Option<StackId>,
        user: Option<StackId>,
        user_len: usize,
        pid: u32,
        stacks: &StackTable,
    ) -> Ending {
        let outermost = |resolved: Option<&Resolved>| {
            resolved
                .and_then(|r| r.lines.last())
                .map(|l| l.function.clone())
                .unwrap_or_default()
        };
        match (user, kernel) {
            (Some(s), _) => {
                let all = stacks.get(s);
                if all.len() >= MAX_STACK_DEPTH && user_len == all.len() {
                    return Ending::DepthLimit;
                }
                let ips = &all[..user_len];
                let last = ips.len() - 1;
                let root = outermost(self.user.get(&(pid, lookup_address(last, ips[last]))));
                if is_user_root(&root) {
                    Ending::Whole
                } else {
                    Ending::NoRoot
                }
            }
            (None, Some(k)) => {
                let ips = stacks.get(k);
                match ips.len().checked_sub(1) {
                    Some(last)
                        if is_kernel_root(&outermost(
                            self.kernel.get(&lookup_address(last, ips[last])),
                        )) =>
                    {
                        Ending::Whole
                    }
                    _ => Ending::Missing,
                }
            }
            (None, None) => Ending::Missing,
        }
    }
}

/// The heap-sampler allocator's own frames (its probe sites and bookkeeping, inlined into
/// the program's allocation path): the profiler's instrumentation, not the program's code.
fn is_instrumentation(function: &str) -> bool {
    function.starts_with("heap_sampler::") || function.starts_with("<heap_sampler::")
}

/// Stacks as a timeline shows them (`profiler trace`), outside any profile.
impl Symbols {
    /// The frames of a resolved stack, leaf first: kernel frames (without the tracing glue),
    /// then the user frames of `pid` up to where the walk left the process's mappings; an
    /// address with inlined functions gives one frame per function, innermost first.
    pub fn trace_frames(
        &self,
        pid: u32,
        user: Option<StackId>,
        kernel: Option<StackId>,
        stacks: &StackTable,
        processes: &BTreeMap<u32, ProcessRecord>,
    ) -> Vec<crate::trace::Frame> {
        let mut out = Vec::new();
        let mut push = |r: Option<&Resolved>, ip: u64, module: String, rel_pc: u64, kernel| {
            let unknown = [FrameLine {
                function: format!("{ip:#x}"),
                file: String::new(),
                line: 0,
            }];
            let lines = r.map_or(&unknown[..], |r| &r.lines[..]);
            for l in lines {
                out.push(crate::trace::Frame {
                    function: l.function.clone(),
                    file: l.file.clone(),
                    line: u32::try_from(l.line).unwrap_or(0),
                    module: module.clone(),
                    rel_pc,
                    kernel,
                });
            }
        };
        if let Some(k) = kernel {
            for (i, &ip) in self
                .without_tracing_frames(stacks.get(k))
                .iter()
                .enumerate()
            {
                let r = self.kernel.get(&lookup_address(i, ip));
                push(r, ip, Mapping::KERNEL.to_string(), ip, true);
            }
        }
        if let Some(u) = user {
            let ips = stacks.get(u);
            let maps = processes.get(&pid).map(|p| &p.maps);
            for (i, &ip) in ips[..self.user_frames(pid, ips)].iter().enumerate() {
                let r = self.user.get(&(pid, lookup_address(i, ip)));
                let vma = r.and_then(|r| r.vma).and_then(|v| maps?.vmas().get(v));
                let (module, rel_pc) = vma.map_or((String::new(), 0), |v| {
                    (v.name.clone(), ip - v.start + v.file_offset)
                });
                push(r, ip, module, rel_pc, false);
            }
        }
        out
    }
}

/// Kernel threads have no user memory: a missing user stack is their nature, not a loss.
fn is_kernel_thread(pid: u32, process: Option<&ProcessRecord>) -> bool {
    pid == 2 || process.is_some_and(|p| p.parent == Some(2) || p.command_line.starts_with('['))
}

fn pseudo_location(b: &mut ProfileBuilder, name: &str) -> usize {
    let f = b.function(name, "");
    b.location(
        None,
        0,
        vec![Line {
            function: f,
            line: 0,
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_addresses_are_looked_up_one_byte_back() {
        assert_eq!(lookup_address(0, 0x1000), 0x1000);
        assert_eq!(lookup_address(1, 0x1000), 0xfff);
        assert_eq!(lookup_address(5, 0), 0);
    }

    #[test]
    fn user_stacks_end_at_the_first_return_address_in_the_first_page() {
        let (a, b) = (0x5555_0000_1000, 0x7f00_0000_2000);
        assert_eq!(trim_user_stack(vec![a, b, 0, 0]), vec![a, b]);
        assert_eq!(trim_user_stack(vec![a, 1, b]), vec![a]);
        assert_eq!(trim_user_stack(vec![a, 0xfff, b]), vec![a]);
        assert_eq!(trim_user_stack(vec![a, b]), vec![a, b]);
        // A lone zero leaf is the sampled instruction pointer itself: kept, so it is counted.
        assert_eq!(trim_user_stack(vec![0]), vec![0]);
    }
}
