//! Writes a [`Timeline`] as a binary Perfetto trace that ui.perfetto.dev opens from a file.
//!
//! Layout (every timestamp on CLOCK_BOOTTIME, Perfetto's default clock, so no clock snapshot):
//! - sequence 1, no incremental state: `service_event.tracing_started` at the window start,
//!   `process_tree` packets (declared processes and threads at the start; at the end, every
//!   (tid, pid) that appeared only in events, in a packet stamped with its first appearance,
//!   so that a tid reused by another process maps to the right one from then on), per-CPU
//!   `ftrace_events` bundles with `sched_switch` and `sched_waking` (the UI derives Running /
//!   Runnable / S / D per thread and the waker from them), `ftrace_stats`
//!   START/END pairs whose `dropped_events` per CPU carry the lost scheduler events, and
//!   `service_event.tracing_disabled` at the window end.
//! - sequence 2, CPU samples: `perf_sample` packets with a `cpu-clock` timebase (period = ns
//!   per sample) in the sequence defaults, callstacks interned on the sequence (function
//!   names, source paths, mapping paths, mappings, frames, callstacks, emitted with the first
//!   sample that needs them). Lost samples are one `perf_sample` with `kernel_records_lost`.
//! - sequence 3, stacks at switch-out: the same, with a `sched:sched_switch` tracepoint
//!   timebase, one sample per switch that carried a stack. Perfetto shows them as their own
//!   profile, so off-CPU stacks never mix into the CPU flame graph.
//! - sequence 4, counters (`--heap`): a `track_descriptor` per counter (a top-level counter
//!   track, with its unit) and a `track_event` of type counter per value.
//!
//! Packets are encoded and written one at a time; nothing but the per-CPU bundle being filled
//! and the interning tables is held.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

use super::TraceError;
use super::model::{
    Counter, CounterUnit, CpuSample, Frame, Losses, ProcessInfo, SchedEvent, StackId, StackTable,
    ThreadInfo, Timeline,
};
use super::proto::{self, ftrace_event, perf_events, trace_packet};

/// Sequence ids (Perfetto's `trusted_packet_sequence_id`).
const SEQ_SCHED: u32 = 1;
const SEQ_CPU_SAMPLES: u32 = 2;
const SEQ_SWITCH_STACKS: u32 = 3;
const SEQ_COUNTERS: u32 = 4;
/// Counter track uuids are this plus the counter's index: far from 0, the implicit global
/// track, and from anything another writer would pick for process or thread tracks.
pub(super) const COUNTER_UUID_BASE: u64 = 0x7072_6f66_0000_0000;

/// Names of the two sample timebases; the reader tells the sequences apart by them.
pub(super) const CPU_TIMEBASE_NAME: &str = "cpu-clock";
pub(super) const SWITCH_TRACEPOINT: &str = "sched:sched_switch";

/// Events per ftrace bundle: large enough that the bundle header is noise, small enough that
/// a bundle stays a few tens of kB (Perfetto's own bundles are one kernel page or a few).
const BUNDLE_EVENTS: usize = 1024;

/// What was written, for the status line and size measurements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub packets: u64,
    pub bytes: u64,
    pub sched_events: u64,
    pub cpu_samples: u64,
    pub switch_stacks: u64,
    pub counter_values: u64,
}

/// Writes `timeline` to `out` as a Perfetto trace.
pub fn write_timeline<W: Write>(timeline: &Timeline, out: W) -> Result<WriteStats, TraceError> {
    let mut w = TraceWriter::new(out, timeline.start_ns, timeline.sample_period_ns)?;
    for p in &timeline.processes {
        w.process(p);
    }
    for t in &timeline.threads {
        w.thread(t);
    }
    for e in &timeline.events {
        w.sched_event(e, &timeline.stacks)?;
    }
    for s in &timeline.samples {
        w.cpu_sample(s, &timeline.stacks)?;
    }
    for c in &timeline.counters {
        w.counter(c)?;
    }
    let (_, stats) = w.finish(timeline.end_ns, &timeline.losses)?;
    Ok(stats)
}

/// A streaming Perfetto writer: the recording session can feed it while it drains.
/// Stack ids must all come from one [`StackTable`] (the writer caches callstacks by id).
pub struct TraceWriter<W: Write> {
    out: W,
    scratch: Vec<u8>,
    start_ns: u64,
    stats: WriteStats,
    pending_tree: proto::ProcessTree,
    main_threads: Vec<(u32, String)>,
    /// (tid, pid) named in a process tree already.
    declared: HashSet<(u32, u32)>,
    /// (tid, pid) seen in events: first timestamp and newest comm.
    seen: HashMap<(u32, u32), (u64, String)>,
    bundles: BTreeMap<u32, Vec<proto::FtraceEvent>>,
    cpu_samples: SampleSequence,
    switch_stacks: SampleSequence,
    /// Counter tracks declared so far.
    counters: u64,
}

impl<W: Write> TraceWriter<W> {
    /// Starts a trace for a window beginning at `start_ns`; `sample_period_ns` is the CPU time
    /// one CPU sample stands for.
    pub fn new(out: W, start_ns: u64, sample_period_ns: u64) -> Result<Self, TraceError> {
        let cpu_timebase = perf_events::Timebase {
            interval: Some(perf_events::timebase::Interval::Period(sample_period_ns)),
            event: Some(perf_events::timebase::Event::Counter(
                perf_events::Counter::SwCpuClock as i32,
            )),
            timestamp_clock: Some(perf_events::PerfClock::Boottime as i32),
            name: Some(CPU_TIMEBASE_NAME.to_string()),
        };
        let switch_timebase = perf_events::Timebase {
            interval: Some(perf_events::timebase::Interval::Period(1)),
            event: Some(perf_events::timebase::Event::Tracepoint(
                perf_events::Tracepoint {
                    name: Some(SWITCH_TRACEPOINT.to_string()),
                    filter: None,
                },
            )),
            timestamp_clock: Some(perf_events::PerfClock::Boottime as i32),
            name: Some("off-cpu stacks (sched_switch)".to_string()),
        };
        let mut w = TraceWriter {
            out,
            scratch: Vec::with_capacity(64 * 1024),
            start_ns,
            stats: WriteStats::default(),
            pending_tree: proto::ProcessTree::default(),
            main_threads: Vec::new(),
            declared: HashSet::new(),
            seen: HashMap::new(),
            bundles: BTreeMap::new(),
            cpu_samples: SampleSequence::new(SEQ_CPU_SAMPLES, cpu_timebase),
            switch_stacks: SampleSequence::new(SEQ_SWITCH_STACKS, switch_timebase),
            counters: 0,
        };
        w.service_event(
            start_ns,
            proto::tracing_service_event::EventType::TracingStarted(true),
        )?;
        // The CPU sequence opens at once: its defaults carry the sampling period even when no
        // sample (only a loss) follows.
        w.cpu_samples.started = true;
        let first = w.cpu_samples.first_packet(start_ns);
        w.write_packet(first)?;
        Ok(w)
    }

    /// Declares a process (written with the next packet).
    pub fn process(&mut self, p: &ProcessInfo) {
        // Perfetto names a process from its cmdline; without one, from its comm.
        let (cmdline, is_comm) = if p.cmdline.is_empty() {
            (vec![p.name.clone()], Some(true))
        } else {
            (p.cmdline.clone(), None)
        };
        self.pending_tree
            .processes
            .push(proto::process_tree::Process {
                pid: Some(p.pid as i32),
                ppid: Some(p.ppid as i32),
                cmdline,
                cmdline_is_comm: is_comm,
            });
        // The main thread carries the process's comm, which the cmdline does not; added at
        // the flush unless declared by then.
        self.main_threads.push((p.pid, p.name.clone()));
    }

    /// Declares a thread (written with the next packet). The first declaration of a tid wins.
    pub fn thread(&mut self, t: &ThreadInfo) {
        if self.declared.insert((t.tid, t.pid)) {
            self.pending_tree.threads.push(proto::process_tree::Thread {
                tid: Some(t.tid as i32),
                tgid: Some(t.pid as i32),
                name: Some(t.name.clone()),
            });
        }
    }

    pub fn sched_event(&mut self, e: &SchedEvent, stacks: &StackTable) -> Result<(), TraceError> {
        self.stats.sched_events += 1;
        let (cpu, event) = match e {
            SchedEvent::Switch(s) => {
                self.saw(s.ts, s.prev.tid, s.prev.pid, &s.prev.comm);
                self.saw(s.ts, s.next.tid, s.next.pid, &s.next.comm);
                if let Some(stack) = s.prev_stack {
                    let sample = CpuSample {
                        ts: s.ts,
                        cpu: s.cpu,
                        pid: s.prev.pid,
                        tid: s.prev.tid,
                        stack,
                    };
                    self.sample(&sample, stacks, true)?;
                }
                let ev = proto::FtraceEvent {
                    timestamp: Some(s.ts),
                    pid: Some(s.prev.tid),
                    event: Some(ftrace_event::Event::SchedSwitch(
                        proto::SchedSwitchFtraceEvent {
                            prev_comm: Some(s.prev.comm.clone()),
                            prev_pid: Some(s.prev.tid as i32),
                            prev_prio: Some(s.prev.prio),
                            prev_state: Some(s.prev_state.to_ftrace()),
                            next_comm: Some(s.next.comm.clone()),
                            next_pid: Some(s.next.tid as i32),
                            next_prio: Some(s.next.prio),
                        },
                    )),
                };
                (s.cpu, ev)
            }
            SchedEvent::Waking(w) => {
                self.saw(w.ts, w.wakee.tid, w.wakee.pid, &w.wakee.comm);
                // The waker's comm is not in the event; its pid still has to reach the reader.
                self.saw(w.ts, w.waker_tid, w.waker_pid, "");
                // Always `sched_waking`, also for a new task: Perfetto derives Runnable and the
                // waker from it and only lists `sched_wakeup_new` as a raw event.
                let ev = proto::FtraceEvent {
                    timestamp: Some(w.ts),
                    pid: Some(w.waker_tid),
                    event: Some(ftrace_event::Event::SchedWaking(
                        proto::SchedWakingFtraceEvent {
                            comm: Some(w.wakee.comm.clone()),
                            pid: Some(w.wakee.tid as i32),
                            prio: Some(w.wakee.prio),
                            success: Some(1),
                            target_cpu: Some(w.target_cpu as i32),
                        },
                    )),
                };
                (w.cpu, ev)
            }
        };
        let bundle = self.bundles.entry(cpu).or_default();
        bundle.push(event);
        if bundle.len() >= BUNDLE_EVENTS {
            self.flush_bundle(cpu)?;
        }
        Ok(())
    }

    pub fn cpu_sample(&mut self, s: &CpuSample, stacks: &StackTable) -> Result<(), TraceError> {
        self.sample(s, stacks, false)
    }

    /// A counter track and all its values.
    pub fn counter(&mut self, c: &Counter) -> Result<(), TraceError> {
        let uuid = COUNTER_UUID_BASE + self.counters;
        // The first packet of the sequence says its (empty) incremental state is valid.
        let flags = (self.counters == 0)
            .then_some(trace_packet::SequenceFlags::SeqIncrementalStateCleared as u32);
        self.counters += 1;
        let unit = match c.unit {
            CounterUnit::Count => proto::counter_descriptor::Unit::Count,
            CounterUnit::Bytes => proto::counter_descriptor::Unit::SizeBytes,
        };
        self.write_packet(proto::TracePacket {
            timestamp: Some(c.points.first().map_or(self.start_ns, |p| p.0)),
            sequence_flags: flags,
            data: Some(trace_packet::Data::TrackDescriptor(
                proto::TrackDescriptor {
                    uuid: Some(uuid),
                    parent_uuid: None,
                    name: Some(c.name.clone()),
                    counter: Some(proto::CounterDescriptor {
                        unit: Some(unit as i32),
                    }),
                },
            )),
            ..sequence(SEQ_COUNTERS)
        })?;
        for &(ts, value) in &c.points {
            self.stats.counter_values += 1;
            self.write_packet(proto::TracePacket {
                timestamp: Some(ts),
                data: Some(trace_packet::Data::TrackEvent(proto::TrackEvent {
                    r#type: Some(proto::track_event::Type::Counter as i32),
                    track_uuid: Some(uuid),
                    counter_value_field: Some(
                        proto::track_event::CounterValueField::DoubleCounterValue(value),
                    ),
                })),
                ..sequence(SEQ_COUNTERS)
            })?;
        }
        Ok(())
    }

    /// Flushes everything, writes the losses and the end marker, and hands back the output.
    pub fn finish(mut self, end_ns: u64, losses: &Losses) -> Result<(W, WriteStats), TraceError> {
        let cpus: Vec<u32> = self.bundles.keys().copied().collect();
        for cpu in cpus {
            self.flush_bundle(cpu)?;
        }
        // Every task that appeared in an event, so the reader (and Perfetto) can map tids to
        // processes; names only where none was declared. Stamped with the first appearance:
        // a tid that comes back under another pid maps to that pid from then on.
        let mut undeclared: BTreeMap<u64, Vec<proto::process_tree::Thread>> = BTreeMap::new();
        for ((tid, pid), (first_ts, comm)) in std::mem::take(&mut self.seen) {
            // The idle task needs no entry; a task whose pid the recorder did not know would
            // be filed under the idle process.
            if tid == 0 || pid == 0 || self.declared.contains(&(tid, pid)) {
                continue;
            }
            undeclared
                .entry(first_ts)
                .or_default()
                .push(proto::process_tree::Thread {
                    tid: Some(tid as i32),
                    tgid: Some(pid as i32),
                    name: (!comm.is_empty()).then_some(comm),
                });
        }
        self.flush_tree()?;
        for (ts, mut threads) in undeclared {
            threads.sort_by_key(|t| t.tid);
            self.write_packet(proto::TracePacket {
                timestamp: Some(ts.max(self.start_ns)),
                data: Some(trace_packet::Data::ProcessTree(proto::ProcessTree {
                    threads,
                    ..Default::default()
                })),
                ..sequence(SEQ_SCHED)
            })?;
        }
        if !losses.sched_events_by_cpu.is_empty() {
            // Perfetto reports END - START of `dropped_events` per CPU as a data-loss error.
            let stats = |phase: proto::ftrace_stats::Phase, counted: bool| proto::FtraceStats {
                phase: Some(phase as i32),
                cpu_stats: losses
                    .sched_events_by_cpu
                    .iter()
                    .map(|(cpu, n)| proto::FtraceCpuStats {
                        cpu: Some(u64::from(*cpu)),
                        dropped_events: Some(if counted { *n } else { 0 }),
                        ..Default::default()
                    })
                    .collect(),
            };
            for (ts, phase, counted) in [
                (
                    self.start_ns,
                    proto::ftrace_stats::Phase::StartOfTrace,
                    false,
                ),
                (end_ns, proto::ftrace_stats::Phase::EndOfTrace, true),
            ] {
                self.write_packet(proto::TracePacket {
                    timestamp: Some(ts),
                    data: Some(trace_packet::Data::FtraceStats(stats(phase, counted))),
                    ..sequence(SEQ_SCHED)
                })?;
            }
        }
        if losses.samples > 0 {
            let mut packet = self.cpu_samples.packet(end_ns);
            packet.data = Some(trace_packet::Data::PerfSample(proto::PerfSample {
                kernel_records_lost: Some(losses.samples),
                ..Default::default()
            }));
            self.write_packet(packet)?;
        }
        self.service_event(
            end_ns,
            proto::tracing_service_event::EventType::TracingDisabled(true),
        )?;
        self.out.flush().map_err(TraceError::Write)?;
        Ok((self.out, self.stats))
    }

    fn saw(&mut self, ts: u64, tid: u32, pid: u32, comm: &str) {
        let entry = self
            .seen
            .entry((tid, pid))
            .or_insert_with(|| (ts, String::new()));
        if !comm.is_empty() {
            // The newest comm wins, as Perfetto's own naming from sched_switch does.
            entry.1.clear();
            entry.1.push_str(comm);
        }
    }

    fn sample(
        &mut self,
        s: &CpuSample,
        stacks: &StackTable,
        switch_stack: bool,
    ) -> Result<(), TraceError> {
        let frames = stacks.get(s.stack);
        let seq = if switch_stack {
            self.stats.switch_stacks += 1;
            &mut self.switch_stacks
        } else {
            self.stats.cpu_samples += 1;
            &mut self.cpu_samples
        };
        let mut packet = seq.packet(s.ts);
        let callstack_iid = seq.callstack(s.stack, frames, &mut packet);
        let cpu_mode = match frames.first() {
            Some(f) if f.kernel => proto::profiling::CpuMode::ModeKernel,
            Some(_) => proto::profiling::CpuMode::ModeUser,
            None => proto::profiling::CpuMode::ModeUnknown,
        };
        packet.data = Some(trace_packet::Data::PerfSample(proto::PerfSample {
            cpu: Some(s.cpu),
            pid: Some(s.pid),
            tid: Some(s.tid),
            cpu_mode: Some(cpu_mode as i32),
            timebase_count: None,
            callstack_iid,
            kernel_records_lost: None,
        }));
        if !seq.started {
            seq.started = true;
            let first = seq.first_packet(s.ts);
            self.write_packet(first)?;
        }
        self.write_packet(packet)
    }

    fn flush_bundle(&mut self, cpu: u32) -> Result<(), TraceError> {
        let Some(events) = self.bundles.get_mut(&cpu) else {
            return Ok(());
        };
        if events.is_empty() {
            return Ok(());
        }
        let event = std::mem::take(events);
        let ts = event.first().and_then(|e| e.timestamp);
        self.flush_tree()?;
        self.write_packet(proto::TracePacket {
            timestamp: ts,
            data: Some(trace_packet::Data::FtraceEvents(proto::FtraceEventBundle {
                cpu: Some(cpu),
                event,
                lost_events: None,
            })),
            ..sequence(SEQ_SCHED)
        })
    }

    fn flush_tree(&mut self) -> Result<(), TraceError> {
        for (pid, name) in std::mem::take(&mut self.main_threads) {
            self.thread(&ThreadInfo {
                tid: pid,
                pid,
                name,
            });
        }
        if self.pending_tree.processes.is_empty() && self.pending_tree.threads.is_empty() {
            return Ok(());
        }
        let tree = std::mem::take(&mut self.pending_tree);
        let start = self.start_ns;
        self.write_packet(proto::TracePacket {
            timestamp: Some(start),
            data: Some(trace_packet::Data::ProcessTree(tree)),
            ..sequence(SEQ_SCHED)
        })
    }

    fn service_event(
        &mut self,
        ts: u64,
        event: proto::tracing_service_event::EventType,
    ) -> Result<(), TraceError> {
        self.write_packet(proto::TracePacket {
            timestamp: Some(ts),
            data: Some(trace_packet::Data::ServiceEvent(
                proto::TracingServiceEvent {
                    event_type: Some(event),
                },
            )),
            ..sequence(SEQ_SCHED)
        })
    }

    /// One `Trace.packet` field: tag, length, message.
    fn write_packet(&mut self, packet: proto::TracePacket) -> Result<(), TraceError> {
        self.scratch.clear();
        prost::encoding::message::encode(1, &packet, &mut self.scratch);
        self.out
            .write_all(&self.scratch)
            .map_err(TraceError::Write)?;
        self.stats.packets += 1;
        self.stats.bytes += self.scratch.len() as u64;
        Ok(())
    }
}

fn sequence(id: u32) -> proto::TracePacket {
    proto::TracePacket {
        optional_trusted_packet_sequence_id: Some(
            trace_packet::OptionalTrustedPacketSequenceId::TrustedPacketSequenceId(id),
        ),
        ..Default::default()
    }
}

/// A packet sequence of perf samples with its own interning tables.
struct SampleSequence {
    id: u32,
    timebase: perf_events::Timebase,
    started: bool,
    strings: HashMap<(StringKind, String), u64>,
    mappings: HashMap<String, u64>,
    frames: HashMap<Frame, u64>,
    callstacks: HashMap<StackId, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StringKind {
    Function,
    Source,
    MappingPath,
}

impl SampleSequence {
    fn new(id: u32, timebase: perf_events::Timebase) -> Self {
        SampleSequence {
            id,
            timebase,
            started: false,
            strings: HashMap::new(),
            mappings: HashMap::new(),
            frames: HashMap::new(),
            callstacks: HashMap::new(),
        }
    }

    /// The packet that opens the sequence: cleared state and the timebase defaults.
    fn first_packet(&self, ts: u64) -> proto::TracePacket {
        proto::TracePacket {
            timestamp: Some(ts),
            sequence_flags: Some(trace_packet::SequenceFlags::SeqIncrementalStateCleared as u32),
            trace_packet_defaults: Some(proto::TracePacketDefaults {
                timestamp_clock_id: None,
                perf_sample_defaults: Some(proto::PerfSampleDefaults {
                    timebase: Some(self.timebase.clone()),
                }),
            }),
            ..sequence(self.id)
        }
    }

    fn packet(&self, ts: u64) -> proto::TracePacket {
        proto::TracePacket {
            timestamp: Some(ts),
            sequence_flags: Some(trace_packet::SequenceFlags::SeqNeedsIncrementalState as u32),
            ..sequence(self.id)
        }
    }

    /// The callstack iid for `stack`, adding whatever is new to `packet`'s interned data.
    /// None for an empty stack (a sample without a callstack).
    fn callstack(
        &mut self,
        stack: StackId,
        frames: &[Frame],
        packet: &mut proto::TracePacket,
    ) -> Option<u64> {
        if frames.is_empty() {
            return None;
        }
        if let Some(iid) = self.callstacks.get(&stack) {
            return Some(*iid);
        }
        let interned = packet.interned_data.get_or_insert_with(Default::default);
        // Perfetto lists callstack frames from the root, we keep them leaf first.
        let frame_ids = frames
            .iter()
            .rev()
            .map(|f| self.frame(f, interned))
            .collect();
        let iid = self.callstacks.len() as u64 + 1;
        self.callstacks.insert(stack, iid);
        interned.callstacks.push(proto::Callstack {
            iid: Some(iid),
            frame_ids,
        });
        Some(iid)
    }

    fn frame(&mut self, f: &Frame, interned: &mut proto::InternedData) -> u64 {
        if let Some(iid) = self.frames.get(f) {
            return *iid;
        }
        let function_name_id = Some(self.string(StringKind::Function, &f.function, interned));
        let source_path_iid =
            (!f.file.is_empty()).then(|| self.string(StringKind::Source, &f.file, interned));
        let (mapping_id, rel_pc) = if f.module.is_empty() {
            (None, None)
        } else {
            (Some(self.mapping(&f.module, interned)), Some(f.rel_pc))
        };
        let kind = if f.kernel {
            proto::frame::Kind::Kernel
        } else {
            proto::frame::Kind::Native
        };
        let iid = self.frames.len() as u64 + 1;
        self.frames.insert(f.clone(), iid);
        interned.frames.push(proto::Frame {
            iid: Some(iid),
            function_name_id,
            mapping_id,
            rel_pc,
            source_path_iid,
            line_number: (f.line != 0).then_some(f.line),
            kind_field: Some(proto::frame::KindField::Kind(kind as i32)),
        });
        iid
    }

    /// A mapping per module path: no address range, so Perfetto keys frames by (module,
    /// rel_pc, function) and the flame graph shows the module name.
    fn mapping(&mut self, path: &str, interned: &mut proto::InternedData) -> u64 {
        if let Some(iid) = self.mappings.get(path) {
            return *iid;
        }
        // One component holding the whole path: Perfetto joins components with '/' and
        // strips the doubled slash this gives for absolute paths.
        let path_id = self.string(StringKind::MappingPath, path, interned);
        let iid = self.mappings.len() as u64 + 1;
        self.mappings.insert(path.to_string(), iid);
        interned.mappings.push(proto::Mapping {
            iid: Some(iid),
            path_string_ids: vec![path_id],
            ..Default::default()
        });
        iid
    }

    fn string(&mut self, kind: StringKind, s: &str, interned: &mut proto::InternedData) -> u64 {
        if let Some(iid) = self.strings.get(&(kind, s.to_string())) {
            return *iid;
        }
        // iids are per table in Perfetto; one counter across the three is simpler and valid.
        let iid = self.strings.len() as u64 + 1;
        self.strings.insert((kind, s.to_string()), iid);
        let entry = proto::InternedString {
            iid: Some(iid),
            str: Some(s.as_bytes().to_vec()),
        };
        match kind {
            StringKind::Function => interned.function_names.push(entry),
            StringKind::Source => interned.source_paths.push(entry),
            StringKind::MappingPath => interned.mapping_paths.push(entry),
        }
        iid
    }
}
