//! The session: what every recording shares, whatever it collects. It owns the target set
//! and the target's lifetime, the loaded eBPF object with the maps all collectors share
//! (stacks by content, thread names, the active set), draining, symbolization (caches kept
//! for the whole session) and assembly into a `Profile`. Collectors plug in through the
//! [`Collector`] trait; consumers (record, watch, serve) keep their own windows as
//! [`RawSamples`] accumulators and ask the session for a profile of any of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData};
use profiler_ebpf::targets::{ALL_PROCESSES, PROCESS_EVENTS, SELF_TGID, TARGETS, TASK_OFFSETS};
use profiler_ebpf::unwind::{
    CALL_GRAPH, COPY_SCRATCH, CodeRanges, FP_LESS_CODE, MAX_CODE_RANGES, STACK_COPY_BYTES,
};

use super::assemble::{Assembly, Stats, Symbols, trim_user_stack};
use super::btf;
use super::collector::{
    Batch, Collector, Counters, Drained, RawSamples, SampleKey, Sizing, Slot, StackId, StackSource,
    StackTable, WakerKey,
};
use super::kernel::{Kernel, ProgramCost, bpf_err, take_map};
use super::process::TargetProcess;
use super::targets::{TARGETS_ENTRIES, Targets, Wake};
use super::{RecordError, TargetSpec};
use crate::profile::{Profile, ValueType};
use crate::unwind::{CallGraph, CallGraphMode, StackCopy, UnwindReport, Unwinder};

/// Processes whose code ranges without frame pointers the kernel keeps for `auto`; a process
/// beyond this many is copied whole, as one not looked at yet.
const FP_LESS_ENTRIES: u32 = 4096;

/// Bytes of the lifecycle ring buffer: about 6,500 events between two reads, far more than
/// the forks and execs of a `make -j` in the 100 ms the loop may take to come back.
const PROCESS_EVENTS_BYTES: u32 = 256 * 1024;

/// Sizes of what a session keeps between drains (see `Session::forget_except`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    pub stacks: usize,
    pub user_addresses: usize,
    pub kernel_addresses: usize,
    pub processes: usize,
}

pub struct Session {
    kernel: Kernel,
    targets: Targets,
    slots: Vec<Slot>,
    sample_types: Vec<ValueType>,
    /// Columns computed from others: (column, the columns it sums).
    derived: Vec<(usize, Vec<usize>)>,
    event_columns: Vec<usize>,
    stacks: StackTable,
    symbols: Symbols,
    drain_interval: Duration,
    /// Stack hashes a count named but the stacks map did not hold (should stay 0).
    unreadable_stacks: u64,
    detached: bool,
    /// Collectors paused by `pause` (by name).
    paused: HashSet<&'static str>,
    call_graph: CallGraph,
    unwinder: Unwinder,
    /// The copy unwound last in this batch and its stack: a blocked interval's sample and its
    /// waker sample share one copy, unwound once.
    last_copy: Option<(Arc<StackCopy>, Option<u32>)>,
    /// `auto`: the kernel's map of code without frame pointers per process, and how many of
    /// each process's mappings it was computed from.
    fp_less: Option<BpfHashMap<MapData, u32, CodeRanges>>,
    fp_less_seen: HashMap<u32, usize>,
}

impl Session {
    /// Opens (or launches) the targets, loads the programs with maps sized for these
    /// collectors, attaches everything and lets a launched command run. User stacks are walked
    /// with frame pointers (see `start_with_call_graph`).
    pub fn start(
        spec: &TargetSpec,
        collectors: Vec<Box<dyn Collector>>,
    ) -> Result<Self, RecordError> {
        Self::start_with_call_graph(spec, collectors, CallGraph::fp())
    }

    /// Like `start`, with user stacks taken as `call_graph` says; the collectors that take
    /// perf-event samples must have been made with the same call graph.
    pub fn start_with_call_graph(
        spec: &TargetSpec,
        collectors: Vec<Box<dyn Collector>>,
        call_graph: CallGraph,
    ) -> Result<Self, RecordError> {
        if collectors.is_empty() {
            return Err(RecordError::NoCollector);
        }
        super::check_privileges()?;
        let (initial, all, follow) = Targets::open(spec)?;
        let cpus = aya::util::online_cpus()
            .map_err(|(path, e)| RecordError::Io(format!("reading {path}"), e))?
            .len() as u32;
        let drain_interval = collectors
            .iter()
            .map(|c| c.drain_interval())
            .min()
            .unwrap_or(Duration::from_secs(1));
        let sizing = Sizing {
            cpus,
            drain_interval,
        };
        let stacks_per_interval: u32 = collectors
            .iter()
            .map(|c| c.stacks_per_interval(&sizing))
            .sum();
        // Only following and `-a` read task_struct; without BTF they cannot work, the rest can.
        let offsets = match btf::task_offsets() {
            Ok(o) => o,
            Err(e) if follow || all => return Err(RecordError::Btf(e)),
            Err(_) => Default::default(),
        };
        let all_flag = u32::from(all);
        let self_tgid = std::process::id();
        let mode = call_graph.mode.kernel_value();
        // One scratch record per possible CPU (indexed by CPU number); none needed for fp.
        let scratch_slots = if call_graph.copies() {
            aya::util::nr_cpus()
                .map_err(|(path, e)| RecordError::Io(format!("reading {path}"), e))?
                as u32
        } else {
            1
        };
        let mut kernel = Kernel::load(stacks_per_interval, |loader| {
            loader
                .override_global(ALL_PROCESSES, &all_flag, true)
                .override_global(SELF_TGID, &self_tgid, true)
                .override_global(TASK_OFFSETS, &offsets, true)
                .override_global(CALL_GRAPH, &mode, true)
                .override_global(STACK_COPY_BYTES, &call_graph.stack_size, true)
                .map_max_entries(COPY_SCRATCH, scratch_slots)
                .map_max_entries(FP_LESS_CODE, FP_LESS_ENTRIES)
                .map_max_entries(TARGETS, TARGETS_ENTRIES)
                .map_max_entries(PROCESS_EVENTS, PROCESS_EVENTS_BYTES);
            for c in &collectors {
                c.configure(&sizing, loader);
            }
        })?;
        let fp_less = if call_graph.mode == CallGraphMode::Auto {
            Some(
                BpfHashMap::try_from(take_map(&mut kernel.bpf, FP_LESS_CODE)?)
                    .map_err(bpf_err("opening FP_LESS_CODE"))?,
            )
        } else {
            None
        };
        let btf = aya::Btf::from_sys_fs().map_err(|e| RecordError::Bpf {
            what: "reading the kernel's BTF".into(),
            source: Box::new(e),
        })?;
        let mut targets = Targets::attach(&mut kernel.bpf, &btf, initial, all, follow)?;
        let mut slots = Vec::with_capacity(collectors.len());
        let mut sample_types = Vec::new();
        let mut event_columns = Vec::new();
        for mut c in collectors {
            c.attach(&mut kernel.bpf, &targets)?;
            let types = c.sample_types();
            let start = sample_types.len();
            event_columns.push(start + c.event_column());
            sample_types.extend(types);
            slots.push(Slot {
                columns: start..sample_types.len(),
                collector: c,
            });
        }
        let derived = derive_columns(&mut sample_types);
        // For --pid, a target gone by now was never recorded: say so rather than write nothing.
        if let Some(pid) = targets.exited_before_attach() {
            return Err(RecordError::ExitedBeforeAttach(pid));
        }
        targets.release()?;
        for slot in &mut slots {
            slot.collector.targets_running(&targets)?;
        }
        Ok(Session {
            kernel,
            targets,
            slots,
            sample_types,
            derived,
            event_columns,
            stacks: StackTable::default(),
            symbols: Symbols::default(),
            drain_interval,
            unreadable_stacks: 0,
            detached: false,
            paused: HashSet::new(),
            call_graph,
            unwinder: Unwinder::new(call_graph.mode.name(), call_graph.stack_size),
            last_copy: None,
            fp_less,
            fp_less_seen: HashMap::new(),
        })
    }

    /// How user stacks are taken.
    pub fn call_graph(&self) -> CallGraph {
        self.call_graph
    }

    /// Which unwinder each program's stacks went through and how the DWARF unwinds ended.
    pub fn unwind_report(&self) -> &UnwindReport {
        self.unwinder.report()
    }

    /// How often `drain` should run.
    pub fn drain_interval(&self) -> Duration {
        self.drain_interval
    }

    /// Waits up to `timeout`, handling process lifecycle events; says whether every initial
    /// target has exited.
    pub fn wait(&mut self, timeout: Duration) -> Result<Wake, RecordError> {
        let wake = self.targets.wait(timeout);
        for pid in self.targets.take_new() {
            let Some(process) = self.targets.processes.get(&pid) else {
                continue;
            };
            for slot in &mut self.slots {
                slot.collector
                    .process_started(&mut self.kernel.bpf, process)?;
            }
        }
        Ok(wake)
    }

    /// Flips the map sets, drains every collector, reads the new stacks, refreshes the maps
    /// of the processes that have samples and resolves the new stacks' symbols.
    pub fn drain(&mut self) -> Result<Batch, RecordError> {
        let set = self.kernel.flip()?;
        let mut drained: Vec<(usize, Drained)> = Vec::new();
        let mut buf = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.collector.drain(set, &mut buf)?;
            drained.extend(buf.drain(..).map(|d| (i, d)));
        }
        self.intern(set, drained)
    }

    fn intern_without_clearing(
        &mut self,
        drained: Vec<(usize, Drained)>,
    ) -> Result<Batch, RecordError> {
        self.intern_inner(None, drained)
    }

    /// Reads the stacks named by hash, interns every stack, widens values to every column and
    /// resolves what is new. Clears the set's stacks afterwards.
    fn intern(&mut self, set: usize, drained: Vec<(usize, Drained)>) -> Result<Batch, RecordError> {
        self.intern_inner(Some(set), drained)
    }

    fn intern_inner(
        &mut self,
        set: Option<usize>,
        drained: Vec<(usize, Drained)>,
    ) -> Result<Batch, RecordError> {
        let unknown: Vec<u64> = drained
            .iter()
            .flat_map(|(_, d)| {
                let waker = d.waker.as_deref().map(|w| [&w.user, &w.kernel]);
                [&d.user, &d.kernel]
                    .into_iter()
                    .chain(waker.into_iter().flatten())
            })
            .filter_map(|s| match s {
                StackSource::Hash(h) if self.stacks.by_hash(*h).is_none() => Some(*h),
                _ => None,
            })
            .collect::<HashSet<u64>>()
            .into_iter()
            .collect();
        if let Some(set) = set {
            for (hash, ips) in self.kernel.read_stacks(set, &unknown) {
                match ips {
                    Some(ips) => {
                        let id = self.stacks.intern(trim_user_stack(ips));
                        self.stacks.remember_hash(hash, id);
                    }
                    None => self.unreadable_stacks += 1,
                }
            }
            self.kernel.clear_stacks(set);
        } else {
            self.unreadable_stacks += unknown.len() as u64;
        }

        // Maps first: the addresses just drained belong to the mappings of now, and copies
        // unwind with the objects mapped now.
        let pids: HashSet<u32> = drained
            .iter()
            .flat_map(|(_, d)| [Some(d.pid), d.waker.as_ref().map(|w| w.pid)])
            .flatten()
            .collect();
        self.targets.refresh(pids.iter().copied());
        self.publish_fp_less_code(&pids);

        let width = self.sample_types.len();
        let mut batch = Batch::default();
        for (slot, d) in drained {
            let columns = self.slots[slot].columns.clone();
            let mut values = vec![0; width];
            for (dst, v) in values[columns].iter_mut().zip(&d.values) {
                *dst = *v;
            }
            for (column, sources) in &self.derived {
                values[*column] = sources.iter().map(|&c| values[c]).sum();
            }
            if let StackSource::Hash(_) = d.user {
                let events = d
                    .values
                    .get(self.slots[slot].collector.event_column())
                    .copied()
                    .unwrap_or(0);
                let program = self.program_of(d.pid);
                self.unwinder.count_fp(&program, events.max(0) as u64);
            }
            let waker = d.waker.map(|w| {
                Box::new(WakerKey {
                    pid: w.pid,
                    tid: w.tid,
                    user: self.stack_id(w.pid, w.user),
                    kernel: self.stack_id(w.pid, w.kernel),
                })
            });
            let key = SampleKey {
                pid: d.pid,
                tid: d.tid,
                user: self.stack_id(d.pid, d.user),
                kernel: self.stack_id(d.pid, d.kernel),
                labels: d.labels,
                waker,
            };
            batch.samples.push((key, values));
        }
        self.last_copy = None;
        self.symbols
            .resolve(&batch, &self.stacks, &self.targets.processes);
        Ok(batch)
    }

    fn stack_id(&mut self, pid: u32, source: StackSource) -> Option<u32> {
        match source {
            StackSource::None => None,
            StackSource::Hash(h) => self.stacks.by_hash(h),
            StackSource::Frames(ips) => Some(self.stacks.intern(trim_user_stack(ips))),
            StackSource::Copy(copy) => {
                if let Some((last, id)) = &self.last_copy
                    && Arc::ptr_eq(last, &copy)
                {
                    return *id;
                }
                let program = self.program_of(pid);
                let empty = crate::symbolize::ProcessMaps::default();
                let maps = self.targets.processes.get(&pid).map_or(&empty, |p| &p.maps);
                let (ips, _) = self.unwinder.unwind(pid, &program, maps, &copy);
                let id = (!ips.is_empty()).then(|| self.stacks.intern(trim_user_stack(ips)));
                self.last_copy = Some((copy, id));
                id
            }
        }
    }

    /// The name stack health and unwind statistics file a process under: its executable.
    fn program_of(&self, pid: u32) -> String {
        let process = self.targets.processes.get(&pid);
        process
            .and_then(|p| p.executable.clone())
            .or_else(|| process.map(|p| p.name.clone()))
            .unwrap_or_else(|| format!("pid {pid}"))
    }

    /// `auto`: tells the kernel, per process, the code of its objects without frame pointers
    /// (at most `MAX_CODE_RANGES` ranges), whenever its known mappings changed.
    fn publish_fp_less_code(&mut self, pids: &HashSet<u32>) {
        let Some(map) = self.fp_less.as_mut() else {
            return;
        };
        for &pid in pids {
            let Some(process) = self.targets.processes.get(&pid) else {
                continue;
            };
            let vmas = process.maps.vmas().len();
            if vmas == 0 || self.fp_less_seen.get(&pid) == Some(&vmas) {
                continue;
            }
            self.fp_less_seen.insert(pid, vmas);
            let ranges = self
                .unwinder
                .fp_less_code(pid, &process.maps, MAX_CODE_RANGES);
            let mut entry = CodeRanges {
                len: ranges.len() as u32,
                _pad: 0,
                ranges: [[0; 2]; MAX_CODE_RANGES],
            };
            for (slot, r) in entry.ranges.iter_mut().zip(&ranges) {
                *slot = [r.start, r.end];
            }
            // A full map leaves the process copied whole: correct, only dearer.
            let _ = map.insert(pid, entry, 0);
        }
    }

    /// Symbolizes stacks outside any profile (a timeline's events and samples) with the
    /// session's caches, reading the processes' maps first: per `(pid, user ips, kernel ips)`
    /// (leaf first), its frames: kernel frames, then user frames, leaf first, an address's
    /// inlined functions innermost first.
    pub fn symbolize_stacks(
        &mut self,
        stacks: &[(u32, &[u64], &[u64])],
    ) -> Vec<Vec<crate::trace::Frame>> {
        let mut batch = Batch::default();
        for &(pid, user, kernel) in stacks {
            let id = |table: &mut StackTable, ips: &[u64], user: bool| {
                (!ips.is_empty()).then(|| {
                    let ips = if user {
                        trim_user_stack(ips.to_vec())
                    } else {
                        ips.to_vec()
                    };
                    table.intern(ips)
                })
            };
            let key = SampleKey {
                pid,
                tid: 0,
                user: id(&mut self.stacks, user, true),
                kernel: id(&mut self.stacks, kernel, false),
                labels: Vec::new(),
                waker: None,
            };
            batch.samples.push((key, Vec::new()));
        }
        self.targets.refresh(
            batch
                .samples
                .iter()
                .map(|(k, _)| k.pid)
                .collect::<HashSet<_>>(),
        );
        self.symbols
            .resolve(&batch, &self.stacks, &self.targets.processes);
        batch
            .samples
            .iter()
            .map(|(k, _)| {
                self.symbols.trace_frames(
                    k.pid,
                    k.user,
                    k.kernel,
                    &self.stacks,
                    &self.targets.processes,
                )
            })
            .collect()
    }

    /// Detaches every program and drains what is left in both map sets.
    pub fn stop(&mut self) -> Result<Batch, RecordError> {
        if !self.detached {
            for slot in &mut self.slots {
                slot.collector.detach(&mut self.kernel.bpf);
            }
            self.detached = true;
        }
        let mut batch = self.drain()?;
        batch.samples.extend(self.drain()?.samples);
        // What is still in flight goes into the set the programs would write next.
        let mut drained = Vec::new();
        let mut buf = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.collector.finish(&mut buf)?;
            drained.extend(buf.drain(..).map(|d| (i, d)));
        }
        batch
            .samples
            .extend(self.intern_without_clearing(drained)?.samples);
        Ok(batch)
    }

    /// Each collector's lines for the summary, about `profile` (built by this session).
    pub fn summary_lines(&self, profile: &Profile) -> Vec<String> {
        self.slots
            .iter()
            .flat_map(|s| s.collector.summary_lines(profile, s.columns.clone()))
            .collect()
    }

    /// The collectors' state samples now (the live heap), interned: add them to a copy of a
    /// window before building a profile of "events in the window, state at its end".
    pub fn snapshot(&mut self) -> Result<Batch, RecordError> {
        let mut drained = Vec::new();
        let mut buf = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.collector.snapshot(&mut buf)?;
            drained.extend(buf.drain(..).map(|d| (i, d)));
        }
        // Their stacks come as frames, never from a map set: set 0 is only named.
        self.intern_without_clearing(drained)
    }

    /// The profile of the samples in `window`, with symbols resolved so far.
    pub fn build(&mut self, window: &RawSamples) -> (Profile, Stats) {
        let threads: HashMap<u32, String> = self.kernel.thread_names();
        // Collectors turn their raw sums into what the profile shows, per sample.
        let mut scaled;
        let window = if self.slots.iter().any(|s| s.collector.scales()) {
            scaled = window.clone();
            for (key, values) in scaled.counts.iter_mut() {
                for slot in &self.slots {
                    slot.collector
                        .scale(key.pid, &mut values[slot.columns.clone()]);
                }
            }
            &scaled
        } else {
            window
        };
        let primary = &self.slots[0].collector;
        let asm = Assembly {
            sample_types: &self.sample_types,
            default_sample_type: Some(primary.main_sample_type()),
            period: primary.period(),
            event_columns: &self.event_columns,
            stacks: &self.stacks,
            processes: &self.targets.processes,
            threads: &threads,
        };
        self.symbols.build_profile(window, &asm)
    }

    /// Every counter by group: each collector's, the target set's, the session's own.
    pub fn counters(&self) -> Result<BTreeMap<String, BTreeMap<String, u64>>, RecordError> {
        let mut out = BTreeMap::new();
        let own = |c: Counters| {
            c.into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>()
        };
        for slot in &self.slots {
            out.insert(
                slot.collector.name().to_string(),
                own(slot.collector.counters()?),
            );
        }
        let mut targets = own(self.targets.counters()?);
        targets.insert("unreadable_stacks".into(), self.unreadable_stacks);
        out.insert("targets".to_string(), targets);
        Ok(out)
    }

    /// Each collector's counter invariant, checked on the counters now (call after `stop`).
    pub fn invariant_violations(&self) -> Result<Vec<String>, RecordError> {
        let mut out = Vec::new();
        for slot in &self.slots {
            let counters = slot.collector.counters()?;
            out.extend(slot.collector.check_invariants(&counters));
        }
        Ok(out)
    }

    pub fn program_cost(&self) -> Vec<ProgramCost> {
        if !self.kernel.stats_enabled() {
            return Vec::new();
        }
        let mut out: Vec<ProgramCost> = self
            .slots
            .iter()
            .flat_map(|s| s.collector.program_cost(&self.kernel.bpf))
            .collect();
        out.extend(self.targets.program_cost(&self.kernel.bpf));
        out
    }

    /// Events the collectors have seen so far (for the status line).
    pub fn events_seen(&self) -> u64 {
        self.slots.iter().map(|s| s.collector.events_seen()).sum()
    }

    /// Each collector's notes for the capture's metadata.
    pub fn notes(&self) -> Vec<String> {
        self.slots
            .iter()
            .flat_map(|s| s.collector.notes())
            .collect()
    }

    pub fn collectors(&self) -> impl Iterator<Item = &dyn Collector> {
        self.slots.iter().map(|s| s.collector.as_ref())
    }

    pub fn sample_types(&self) -> &[ValueType] {
        &self.sample_types
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Ends the session (every program detached, the object unloaded) and hands back the
    /// initial target processes (a launched command's exit code is collected from them).
    pub fn into_targets(self) -> Vec<TargetProcess> {
        self.targets.into_initial()
    }

    /// Stops collector `name`'s events until [`Session::resume`]; its maps, the stack table
    /// and the symbol caches stay. Samples taken before the pause are still drained. Pausing
    /// a paused collector does nothing.
    pub fn pause(&mut self, name: &str) -> Result<(), RecordError> {
        let i = self.slot_index(name)?;
        let name = self.slots[i].collector.name();
        if self.paused.contains(name) || self.detached {
            return Ok(());
        }
        self.slots[i].collector.pause(&mut self.kernel.bpf)?;
        self.paused.insert(name);
        Ok(())
    }

    /// Starts a paused collector's events again. Resuming a running collector does nothing.
    pub fn resume(&mut self, name: &str) -> Result<(), RecordError> {
        let i = self.slot_index(name)?;
        let name = self.slots[i].collector.name();
        if !self.paused.contains(name) || self.detached {
            return Ok(());
        }
        self.slots[i].collector.resume(&mut self.kernel.bpf)?;
        self.paused.remove(name);
        Ok(())
    }

    pub fn is_paused(&self, name: &str) -> bool {
        self.paused.contains(name)
    }

    /// A drain that also charges what collector `name` still has in flight (threads still off
    /// the CPU, for offcpu): for a window that ends while the session goes on. Call it with
    /// the collector paused, or its in-flight time is charged again when it completes.
    pub fn drain_with_in_flight(&mut self, name: &str) -> Result<Batch, RecordError> {
        let i = self.slot_index(name)?;
        let set = self.kernel.flip()?;
        let mut drained: Vec<(usize, Drained)> = Vec::new();
        let mut buf = Vec::new();
        for (j, slot) in self.slots.iter_mut().enumerate() {
            slot.collector.drain(set, &mut buf)?;
            drained.extend(buf.drain(..).map(|d| (j, d)));
        }
        self.slots[i].collector.finish(&mut buf)?;
        drained.extend(buf.drain(..).map(|d| (i, d)));
        self.intern(set, drained)
    }

    /// Forgets what none of `windows` needs: stacks, their resolved symbols, exited
    /// processes and gone threads' names. A session that runs for weeks (`serve`) calls this
    /// now and then with every window it keeps, so its memory follows its open windows, not
    /// everything it has seen. Anything seen again is read and resolved again. A collector
    /// whose snapshots name stacks by hash (heap) needs its samples in one of `windows`.
    pub fn forget_except<'a>(&mut self, windows: impl IntoIterator<Item = &'a RawSamples>) {
        let mut stacks = HashSet::new();
        let mut pids = HashSet::new();
        let mut tids = HashSet::new();
        for w in windows {
            stacks.extend(w.stacks());
            for k in w.counts.keys() {
                pids.insert(k.pid);
                tids.insert(k.tid);
                if let Some(waker) = &k.waker {
                    pids.insert(waker.pid);
                    tids.insert(waker.tid);
                }
            }
        }
        self.symbols.retain(&stacks, &self.stacks);
        let ids: HashSet<StackId> = stacks.iter().map(|&(_, id, _)| id).collect();
        self.stacks.retain(&ids);
        self.targets.forget_exited(&pids);
        self.unwinder
            .retain(&self.targets.processes.keys().copied().collect());
        self.kernel.forget_threads(&tids);
    }

    /// What the session holds for its windows: a long-running agent reports it.
    pub fn retained(&self) -> Retained {
        let (user_addresses, kernel_addresses) = self.symbols.len();
        Retained {
            stacks: self.stacks.len(),
            user_addresses,
            kernel_addresses,
            processes: self.targets.processes.len(),
        }
    }

    fn slot_index(&self, name: &str) -> Result<usize, RecordError> {
        self.slots
            .iter()
            .position(|s| s.collector.name() == name)
            .ok_or_else(|| RecordError::NoSuchCollector(name.to_string()))
    }
}

/// Columns that combine collectors: with both on-CPU and off-CPU time, `wall/nanoseconds` is
/// their sum per stack, where each thread's wall-clock time went.
fn derive_columns(types: &mut Vec<ValueType>) -> Vec<(usize, Vec<usize>)> {
    let find = |types: &[ValueType], kind: &str| types.iter().position(|t| t.kind == kind);
    let mut derived = Vec::new();
    if let (Some(cpu), Some(off)) = (find(types, "cpu"), find(types, "offcpu")) {
        types.push(ValueType::new("wall", "nanoseconds"));
        derived.push((types.len() - 1, vec![cpu, off]));
    }
    derived
}
