//! What a collector is, and the samples it produces. A collector owns its eBPF programs and
//! maps, attaches to the target set, drains into weighted samples keyed by (process, thread,
//! user stack, kernel stack, labels), declares its sample types and units, and reports its
//! counters. The session owns everything else (see `session.rs`): adding a signal means one
//! program, one module implementing [`Collector`], and its tests.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use aya::{Ebpf, EbpfLoader};

use super::RecordError;
use super::kernel::ProgramCost;
use super::targets::{ProcessRecord, Targets};
use crate::profile::ValueType;

/// Facts every collector sizes its maps and periods from.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    pub cpus: u32,
    /// How often the session drains the maps.
    pub drain_interval: Duration,
}

impl Sizing {
    /// Entries for a map that holds up to one entry per event, for an event source firing
    /// `per_cpu_hz` times per second on each CPU, over one drain interval. The factor 4 covers
    /// perf's frequency mode overshooting and a drain that runs late (symbolizing a large
    /// binary the first time can hold the loop for a second or two); what still overflows is
    /// counted as lost, never dropped silently. At 99 Hz, a 1 s interval and 64 CPUs this is
    /// 25,344 entries; on this 2-CPU machine 1,024 (the floor).
    pub fn entries_per_interval(&self, per_cpu_hz: u64) -> u32 {
        let events = self.cpus as f64 * per_cpu_hz as f64 * self.drain_interval.as_secs_f64();
        ((events * 4.0).ceil() as u32).max(1024)
    }
}

/// Where a drained stack comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StackSource {
    /// None recorded; the collector's counters say why.
    None,
    /// Content hash of a stack in the drained set's `STACKS` map.
    Hash(u64),
    /// Frames already known (e.g. unwound in user space), leaf first.
    Frames(Vec<u64>),
    /// Registers and a copy of the top of the stack, for the session to unwind. Shared: a
    /// blocked interval's sample and its waker sample carry the same copy, which the session
    /// unwinds once.
    Copy(std::sync::Arc<crate::unwind::StackCopy>),
}

/// One aggregated sample as a collector drains it: values in the collector's own columns.
#[derive(Debug, Clone)]
pub struct Drained {
    pub pid: u32,
    pub tid: u32,
    pub user: StackSource,
    pub kernel: StackSource,
    /// Extra labels (e.g. `state` = `S`), beside the session's thread and process labels.
    pub labels: Vec<(&'static str, String)>,
    /// For blocked time attributed to who ended it: the waker's thread and stacks.
    pub waker: Option<Box<DrainedWaker>>,
    pub values: Vec<i64>,
}

/// The thread that woke a blocked one, and its stacks at that moment.
#[derive(Debug, Clone)]
pub struct DrainedWaker {
    pub pid: u32,
    pub tid: u32,
    pub user: StackSource,
    pub kernel: StackSource,
}

/// A waker in a [`SampleKey`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WakerKey {
    pub pid: u32,
    pub tid: u32,
    pub user: Option<StackId>,
    pub kernel: Option<StackId>,
}

/// A stack interned by the session: index into its stack table.
pub type StackId = u32;

/// Key of a sample in a [`RawSamples`] accumulator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleKey {
    pub pid: u32,
    pub tid: u32,
    pub user: Option<StackId>,
    pub kernel: Option<StackId>,
    pub labels: Vec<(&'static str, String)>,
    /// Drawn on top of the blocked stack, after a `--` frame, as BCC's offwaketime does.
    pub waker: Option<Box<WakerKey>>,
}

/// Samples accumulated over a window: values per key, one column per session sample type.
/// A window is any accumulator a consumer keeps: the whole recording, one interval of
/// continuous mode, one HTTP request's seconds.
#[derive(Debug, Clone, Default)]
pub struct RawSamples {
    pub counts: HashMap<SampleKey, Vec<i64>>,
}

impl RawSamples {
    pub fn add(&mut self, batch: &Batch) {
        for (key, values) in &batch.samples {
            let slot = self
                .counts
                .entry(key.clone())
                .or_insert_with(|| vec![0; values.len()]);
            for (s, v) in slot.iter_mut().zip(values) {
                *s += v;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Every (pid, stack, is kernel) its samples name, wakers' included.
    pub fn stacks(&self) -> impl Iterator<Item = (u32, StackId, bool)> + '_ {
        self.counts.keys().flat_map(|k| {
            let waker = k.waker.as_deref().map(|w| (w.pid, w.user, w.kernel));
            [(k.pid, k.user, k.kernel)]
                .into_iter()
                .chain(waker)
                .flat_map(|(pid, user, kernel)| {
                    let user = user.map(|s| (pid, s, false));
                    let kernel = kernel.map(|s| (pid, s, true));
                    user.into_iter().chain(kernel)
                })
        })
    }
}

/// What one drain produced, with full-width values (every session column).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub samples: Vec<(SampleKey, Vec<i64>)>,
}

/// A collector's counters, by name, in a stable order.
pub type Counters = Vec<(&'static str, u64)>;

/// Counter `name` of `counters`, 0 when absent.
pub fn counter(counters: &Counters, name: &str) -> u64 {
    counters
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| *v)
}

/// One signal: its programs, maps, sample types and counters.
pub trait Collector {
    /// Short name used in metadata, counter names and flags (`cpu`, `offcpu`, ...).
    fn name(&self) -> &'static str;

    /// A one-line description of its parameters for the capture (`cpu-clock at 99 Hz`).
    fn describe(&self) -> String;

    /// The sample types it fills, in order.
    fn sample_types(&self) -> Vec<ValueType>;

    /// The sample type shown by default when this collector is the primary one.
    fn main_sample_type(&self) -> &'static str;

    /// Which of its sample types counts events (samples, switches, allocations): stack
    /// health and frame statistics are weighted by it.
    fn event_column(&self) -> usize;

    /// The profile's period type and period when this collector is the primary one.
    fn period(&self) -> Option<(ValueType, i64)>;

    /// How often it wants to be drained at most (the session takes the shortest wish).
    fn drain_interval(&self) -> Duration;

    /// Stacks it may store per drain interval, so the session can size the shared maps.
    fn stacks_per_interval(&self, sizing: &Sizing) -> u32;

    /// Sets the sizes of its maps before the object is loaded.
    fn configure<'a>(&'a self, sizing: &Sizing, loader: &mut EbpfLoader<'a>);

    /// Takes its maps from the loaded object, loads and attaches its programs, for the
    /// targets known now.
    fn attach(&mut self, bpf: &mut Ebpf, targets: &Targets) -> Result<(), RecordError>;

    /// A process joined the targets (a followed child, or `-a`'s new process): collectors
    /// that attach per process (uprobes) attach to it here.
    fn process_started(
        &mut self,
        _bpf: &mut Ebpf,
        _process: &ProcessRecord,
    ) -> Result<(), RecordError> {
        Ok(())
    }

    /// The targets run now (a launched command has `exec`ed): for what can only be set in the
    /// running program.
    fn targets_running(&mut self, _targets: &Targets) -> Result<(), RecordError> {
        Ok(())
    }

    /// Detaches its programs; its maps stay readable for a last drain.
    fn detach(&mut self, bpf: &mut Ebpf);

    /// Drains (and clears) map set `set` into `out`.
    fn drain(&mut self, set: usize, out: &mut Vec<Drained>) -> Result<(), RecordError>;

    /// Every counter it keeps.
    fn counters(&self) -> Result<Counters, RecordError>;

    /// Events seen so far, for the status line (cheap).
    fn events_seen(&self) -> u64;

    /// Its programs' cost in the kernel, when the kernel keeps statistics.
    fn program_cost(&self, bpf: &Ebpf) -> Vec<ProgramCost>;

    /// Checks its counter invariant; returns a description of each violation.
    fn check_invariants(&self, counters: &Counters) -> Vec<String>;

    /// After the last drain: what is still in flight (e.g. threads still blocked), as samples.
    fn finish(&mut self, _out: &mut Vec<Drained>) -> Result<(), RecordError> {
        Ok(())
    }

    /// Samples that describe a state now rather than events over time (the live heap): not
    /// accumulated into windows, asked for each time a profile is built.
    fn snapshot(&mut self, _out: &mut Vec<Drained>) -> Result<(), RecordError> {
        Ok(())
    }

    /// Turns one sample's raw values in its columns into what the profile shows (e.g. sampled
    /// allocation counts into unbiased estimates), after samples were summed per stack.
    fn scale(&self, _pid: u32, _values: &mut [i64]) {}

    /// Whether `scale` does anything (so the session copies a window only when it must).
    fn scales(&self) -> bool {
        false
    }

    /// Notes for the capture's metadata (what a value means, what was hooked).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Lines for the end-of-recording summary about what it recorded, from the profile and
    /// the columns that are its own.
    fn summary_lines(
        &self,
        _profile: &crate::profile::Profile,
        _columns: Range<usize>,
    ) -> Vec<String> {
        Vec::new()
    }

    /// Stops its events for a while, keeping its maps, counters and the session's caches, so
    /// a consumer that needs no data now (serve between requests) costs the target nothing.
    /// Default: detach its programs.
    fn pause(&mut self, bpf: &mut Ebpf) -> Result<(), RecordError> {
        self.detach(bpf);
        Ok(())
    }

    /// Starts its events again after [`Collector::pause`]. Re-attaching needs the collector's
    /// own attach details, so there is no generic default: a collector that can pause says so
    /// by implementing this.
    fn resume(&mut self, bpf: &mut Ebpf) -> Result<(), RecordError> {
        let _ = bpf;
        Err(RecordError::CannotResume(self.name()))
    }
}

/// A collector with its place in the session's columns.
pub struct Slot {
    pub collector: Box<dyn Collector>,
    pub columns: Range<usize>,
}

/// Every stack drained so far, interned: samples refer to stacks by [`StackId`]. Lives as
/// long as the session, so windows share it (and the symbols resolved for it); a session that
/// runs for weeks (`serve`) forgets the stacks its open windows no longer name (`retain`).
/// Ids are never reused, so a forgotten id cannot come to mean another stack.
#[derive(Debug, Default)]
pub struct StackTable {
    stacks: HashMap<StackId, Arc<[u64]>>,
    /// The same stacks by content (shared, not copied).
    by_content: HashMap<Arc<[u64]>, StackId>,
    /// Kernel-side content hash → id, so a stack seen before is not read again.
    by_hash: HashMap<u64, StackId>,
    next: StackId,
}

impl StackTable {
    pub fn intern(&mut self, ips: Vec<u64>) -> StackId {
        if let Some(&id) = self.by_content.get(ips.as_slice()) {
            return id;
        }
        // After 2^32 stacks the ids wrap around; skip those still in use.
        while self.stacks.contains_key(&self.next) {
            self.next = self.next.wrapping_add(1);
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        let ips: Arc<[u64]> = ips.into();
        self.stacks.insert(id, ips.clone());
        self.by_content.insert(ips, id);
        id
    }

    /// The frames of `id`: empty for an id this table never gave out or has forgotten.
    pub fn get(&self, id: StackId) -> &[u64] {
        self.stacks.get(&id).map_or(&[], |s| s)
    }

    pub fn by_hash(&self, hash: u64) -> Option<StackId> {
        self.by_hash.get(&hash).copied()
    }

    pub fn remember_hash(&mut self, hash: u64, id: StackId) {
        self.by_hash.insert(hash, id);
    }

    /// Forgets every stack not in `keep`. One seen again is read and interned again.
    pub fn retain(&mut self, keep: &HashSet<StackId>) {
        self.stacks.retain(|id, _| keep.contains(id));
        self.by_content.retain(|_, id| keep.contains(id));
        self.by_hash.retain(|_, id| keep.contains(id));
    }

    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_table_forgets_and_never_reuses_an_id() {
        let mut t = StackTable::default();
        let a = t.intern(vec![1, 2, 3]);
        let b = t.intern(vec![4, 5]);
        assert_eq!(t.intern(vec![1, 2, 3]), a, "same content, same id");
        t.remember_hash(0xa, a);
        t.remember_hash(0xb, b);
        t.retain(&HashSet::from([b]));
        assert_eq!((t.len(), t.get(a), t.by_hash(0xa)), (1, &[][..], None));
        assert_eq!((t.get(b), t.by_hash(0xb)), (&[4, 5][..], Some(b)));
        let again = t.intern(vec![1, 2, 3]);
        assert!(
            again != a && again != b,
            "a forgotten id is not given out again"
        );
        assert_eq!(t.get(again), &[1, 2, 3]);
    }

    #[test]
    fn stack_ids_wrap_around_past_those_in_use() {
        let mut t = StackTable {
            next: StackId::MAX,
            ..Default::default()
        };
        let last = t.intern(vec![1]);
        let kept = t.intern(vec![2]);
        assert_eq!((last, kept), (StackId::MAX, 0));
        t.retain(&HashSet::from([kept]));
        t.next = StackId::MAX;
        // MAX is free again, 0 is not.
        assert_eq!(t.intern(vec![3]), StackId::MAX);
        assert_eq!(t.intern(vec![4]), 1);
    }
}
