//! Reads a Perfetto trace back into a [`Timeline`], so `profiler trace --summary FILE` prints
//! the same tables as the end of a recording. It understands the layout [`super::perfetto`]
//! writes (see there); other packets, and other writers' extra fields, are counted and
//! skipped. A trace cut short (a recorder killed mid-write) keeps what was whole.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint};

use super::TraceError;
use super::model::{
    Counter, CounterUnit, CpuSample, Frame, ProcessInfo, SchedEvent, StackId, Switch, Task,
    TaskState, ThreadInfo, Timeline, Waking,
};
use super::perfetto::{CPU_TIMEBASE_NAME, SWITCH_TRACEPOINT};
use super::proto::{self, ftrace_event, perf_events, trace_packet};

/// How the reading went: what was skipped is counted here, not failed on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub packets: u64,
    /// Packets (and ftrace events) of kinds this reader does not use.
    pub ignored: u64,
    /// References to interned data that was never defined, and switch-out stacks that matched
    /// no `sched_switch`.
    pub unresolved: u64,
    /// Bytes after the last whole packet (a truncated file).
    pub truncated_bytes: u64,
}

pub fn read_trace_file(path: &Path) -> Result<(Timeline, ReadStats), TraceError> {
    let bytes = std::fs::read(path).map_err(|source| TraceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    read_trace(&bytes).map_err(|e| match e {
        TraceError::NotATrace { reason, .. } => TraceError::NotATrace {
            what: path.display().to_string(),
            reason,
        },
        other => other,
    })
}

/// Decodes a whole trace held in memory.
pub fn read_trace(bytes: &[u8]) -> Result<(Timeline, ReadStats), TraceError> {
    let mut reader = Reader::default();
    let mut buf = bytes;
    while !buf.is_empty() {
        let before = buf.len();
        match next_packet(&mut buf) {
            Ok(packet) => reader.packet(packet),
            Err(reason) if reader.stats.packets == 0 => {
                return Err(TraceError::NotATrace {
                    what: "input".to_string(),
                    reason,
                });
            }
            Err(_) => {
                reader.stats.truncated_bytes = before as u64;
                break;
            }
        }
    }
    Ok(reader.finish())
}

/// One `Trace.packet` (field 1, length-delimited) from the front of `buf`.
fn next_packet(buf: &mut &[u8]) -> Result<proto::TracePacket, String> {
    let (tag, wire_type) = decode_key(buf).map_err(|e| e.to_string())?;
    if tag != 1 || wire_type != WireType::LengthDelimited {
        return Err(format!(
            "field {tag} ({wire_type:?}) where packets (field 1) were expected"
        ));
    }
    let len = decode_varint(buf).map_err(|e| e.to_string())? as usize;
    if len > buf.len() {
        return Err(format!("a packet of {len} bytes with {} left", buf.len()));
    }
    let packet = proto::TracePacket::decode(&buf[..len]).map_err(|e| e.to_string())?;
    *buf = &buf[len..];
    Ok(packet)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleKind {
    Cpu,
    SwitchStack,
}

/// Interning tables of one packet sequence.
#[derive(Default)]
struct Sequence {
    kind: Option<SampleKind>,
    strings: HashMap<u64, String>,
    source_paths: HashMap<u64, String>,
    mapping_paths: HashMap<u64, String>,
    mappings: HashMap<u64, String>,
    frames: HashMap<u64, Frame>,
    callstacks: HashMap<u64, StackId>,
}

impl Sequence {
    fn clear(&mut self) {
        let kind = self.kind;
        *self = Sequence::default();
        self.kind = kind;
    }
}

struct RawEvent {
    ts: u64,
    cpu: u32,
    event: proto::FtraceEvent,
}

#[derive(Default)]
struct Reader {
    stats: ReadStats,
    timeline: Timeline,
    sequences: HashMap<u32, Sequence>,
    events: Vec<RawEvent>,
    /// tid -> (from ts, pid), from process trees: a tid maps to the pid of the newest entry
    /// not after the event (or to its first entry).
    thread_pids: HashMap<u32, Vec<(u64, u32)>>,
    thread_names: Vec<ThreadInfo>,
    processes: Vec<proto::process_tree::Process>,
    /// Stacks at switch-out by (ts, cpu, tid), in file order.
    switch_stacks: HashMap<(u64, u32, u32), VecDeque<StackId>>,
    dropped_start: HashMap<u32, u64>,
    dropped_end: HashMap<u32, u64>,
    started: Option<u64>,
    stopped: Option<u64>,
    min_ts: Option<u64>,
    max_ts: Option<u64>,
    /// Counter tracks by uuid, in the order they were declared.
    counters: Vec<(u64, Counter)>,
}

impl Reader {
    fn packet(&mut self, p: proto::TracePacket) {
        self.stats.packets += 1;
        if let Some(ts) = p.timestamp {
            self.saw_ts(ts);
        }
        let seq_id = match p.optional_trusted_packet_sequence_id {
            Some(trace_packet::OptionalTrustedPacketSequenceId::TrustedPacketSequenceId(id)) => id,
            None => 0,
        };
        let flags = p.sequence_flags.unwrap_or(0);
        if flags & trace_packet::SequenceFlags::SeqIncrementalStateCleared as u32 != 0 {
            self.sequences.entry(seq_id).or_default().clear();
        }
        if let Some(defaults) = &p.trace_packet_defaults
            && let Some(timebase) = defaults
                .perf_sample_defaults
                .as_ref()
                .and_then(|d| d.timebase.as_ref())
        {
            let kind = sample_kind(timebase);
            if kind == Some(SampleKind::Cpu)
                && let Some(perf_events::timebase::Interval::Period(period)) = timebase.interval
            {
                self.timeline.sample_period_ns = period;
            }
            self.sequences.entry(seq_id).or_default().kind = kind;
        }
        let carries_state = p.interned_data.is_some() || p.trace_packet_defaults.is_some();
        if let Some(interned) = p.interned_data {
            self.interned(seq_id, interned);
        }
        let ts = p.timestamp.unwrap_or(0);
        match p.data {
            Some(trace_packet::Data::FtraceEvents(bundle)) => {
                let cpu = bundle.cpu.unwrap_or(0);
                for event in bundle.event {
                    let ts = event.timestamp.unwrap_or(0);
                    self.saw_ts(ts);
                    self.events.push(RawEvent { ts, cpu, event });
                }
            }
            Some(trace_packet::Data::ProcessTree(tree)) => {
                for t in tree.threads {
                    let (Some(tid), Some(pid)) = (t.tid, t.tgid) else {
                        continue;
                    };
                    self.thread_pids
                        .entry(tid as u32)
                        .or_default()
                        .push((ts, pid as u32));
                    if let Some(name) = t.name {
                        self.thread_names.push(ThreadInfo {
                            tid: tid as u32,
                            pid: pid as u32,
                            name,
                        });
                    }
                }
                self.processes.extend(tree.processes);
            }
            Some(trace_packet::Data::PerfSample(sample)) => self.perf_sample(seq_id, ts, sample),
            Some(trace_packet::Data::FtraceStats(stats)) => {
                let end = stats.phase == Some(proto::ftrace_stats::Phase::EndOfTrace as i32);
                let table = if end {
                    &mut self.dropped_end
                } else {
                    &mut self.dropped_start
                };
                for c in stats.cpu_stats {
                    table.insert(c.cpu.unwrap_or(0) as u32, c.dropped_events.unwrap_or(0));
                }
            }
            Some(trace_packet::Data::TrackDescriptor(d)) => match (d.uuid, d.counter) {
                (Some(uuid), Some(counter)) => {
                    let unit = match counter.unit() {
                        proto::counter_descriptor::Unit::SizeBytes => CounterUnit::Bytes,
                        _ => CounterUnit::Count,
                    };
                    self.counters.push((
                        uuid,
                        Counter {
                            name: d.name.unwrap_or_default(),
                            unit,
                            points: Vec::new(),
                        },
                    ));
                }
                _ => self.stats.ignored += 1,
            },
            Some(trace_packet::Data::TrackEvent(e)) => {
                let value = match e.counter_value_field {
                    Some(proto::track_event::CounterValueField::DoubleCounterValue(v)) => Some(v),
                    Some(proto::track_event::CounterValueField::CounterValue(v)) => Some(v as f64),
                    None => None,
                };
                let track = e
                    .track_uuid
                    .and_then(|uuid| self.counters.iter_mut().find(|(u, _)| *u == uuid));
                match (value, track) {
                    (Some(v), Some((_, c))) => c.points.push((ts, v)),
                    (Some(_), None) => self.stats.unresolved += 1,
                    (None, _) => self.stats.ignored += 1,
                }
            }
            Some(trace_packet::Data::ServiceEvent(e)) => match e.event_type {
                Some(proto::tracing_service_event::EventType::TracingStarted(true)) => {
                    self.started = Some(ts);
                }
                Some(proto::tracing_service_event::EventType::TracingDisabled(true)) => {
                    self.stopped = Some(ts);
                }
                _ => {}
            },
            // Defaults or interned data only, or a kind the trimmed schema does not know.
            None if carries_state => {}
            None => self.stats.ignored += 1,
        }
    }

    fn saw_ts(&mut self, ts: u64) {
        self.min_ts = Some(self.min_ts.map_or(ts, |m| m.min(ts)));
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
    }

    fn interned(&mut self, seq_id: u32, data: proto::InternedData) {
        let seq = self.sequences.entry(seq_id).or_default();
        let string = |s: proto::InternedString| {
            (
                s.iid.unwrap_or(0),
                String::from_utf8_lossy(&s.str.unwrap_or_default()).into_owned(),
            )
        };
        seq.strings
            .extend(data.function_names.into_iter().map(string));
        seq.source_paths
            .extend(data.source_paths.into_iter().map(string));
        seq.mapping_paths
            .extend(data.mapping_paths.into_iter().map(string));
        for m in data.mappings {
            let mut path = String::new();
            for id in &m.path_string_ids {
                match seq.mapping_paths.get(id) {
                    Some(component) if path.is_empty() => path.push_str(component),
                    Some(component) => {
                        path.push('/');
                        path.push_str(component);
                    }
                    None => self.stats.unresolved += 1,
                }
            }
            seq.mappings.insert(m.iid.unwrap_or(0), path);
        }
        for f in data.frames {
            let mut lookup = |table: &HashMap<u64, String>, iid: Option<u64>| match iid {
                None | Some(0) => String::new(),
                Some(iid) => table.get(&iid).cloned().unwrap_or_else(|| {
                    self.stats.unresolved += 1;
                    String::new()
                }),
            };
            let function = lookup(&seq.strings, f.function_name_id);
            let file = lookup(&seq.source_paths, f.source_path_iid);
            let module = lookup(&seq.mappings, f.mapping_id);
            let kernel = f.kind_field
                == Some(proto::frame::KindField::Kind(
                    proto::frame::Kind::Kernel as i32,
                ));
            let frame = Frame {
                function,
                file,
                line: f.line_number.unwrap_or(0),
                rel_pc: if module.is_empty() {
                    0
                } else {
                    f.rel_pc.unwrap_or(0)
                },
                module,
                kernel,
            };
            seq.frames.insert(f.iid.unwrap_or(0), frame);
        }
        for c in data.callstacks {
            let mut frames = Vec::with_capacity(c.frame_ids.len());
            // Perfetto lists frames from the root; the model keeps them leaf first.
            for id in c.frame_ids.iter().rev() {
                match seq.frames.get(id) {
                    Some(f) => frames.push(f.clone()),
                    None => self.stats.unresolved += 1,
                }
            }
            let id = self.timeline.stacks.intern(frames);
            seq.callstacks.insert(c.iid.unwrap_or(0), id);
        }
    }

    fn perf_sample(&mut self, seq_id: u32, ts: u64, s: proto::PerfSample) {
        if let Some(lost) = s.kernel_records_lost {
            self.timeline.losses.samples += lost;
            return;
        }
        let Some(seq) = self.sequences.get(&seq_id) else {
            self.stats.ignored += 1;
            return;
        };
        let stack = match s.callstack_iid {
            None | Some(0) => self.timeline.stacks.intern(Vec::new()),
            Some(iid) => match seq.callstacks.get(&iid) {
                Some(id) => *id,
                None => {
                    self.stats.unresolved += 1;
                    self.timeline.stacks.intern(Vec::new())
                }
            },
        };
        let (cpu, tid) = (s.cpu.unwrap_or(0), s.tid.unwrap_or(0));
        match seq.kind {
            Some(SampleKind::Cpu) => self.timeline.samples.push(CpuSample {
                ts,
                cpu,
                pid: s.pid.unwrap_or(0),
                tid,
                stack,
            }),
            Some(SampleKind::SwitchStack) => self
                .switch_stacks
                .entry((ts, cpu, tid))
                .or_default()
                .push_back(stack),
            None => self.stats.ignored += 1,
        }
    }

    fn finish(mut self) -> (Timeline, ReadStats) {
        // Events of one CPU keep their file order; CPUs interleave by time.
        self.events.sort_by_key(|e| (e.ts, e.cpu));
        for entries in self.thread_pids.values_mut() {
            entries.sort_by_key(|(ts, _)| *ts);
        }
        let thread_pids = &self.thread_pids;
        let pid_at = |tid: u32, ts: u64| {
            let entries = thread_pids.get(&tid).map_or(&[][..], |v| v.as_slice());
            let newest = entries.partition_point(|(from, _)| *from <= ts);
            entries
                .get(newest.saturating_sub(1))
                .map_or(0, |(_, pid)| *pid)
        };
        let mut events = Vec::with_capacity(self.events.len());
        for raw in std::mem::take(&mut self.events) {
            let waker_tid = raw.event.pid.unwrap_or(0);
            // The two wake-up events have the same fields under different types (other writers
            // use `sched_wakeup_new` for new tasks).
            let (tid, comm, prio, target_cpu) = match raw.event.event {
                Some(ftrace_event::Event::SchedSwitch(s)) => {
                    let prev_tid = s.prev_pid.unwrap_or(0) as u32;
                    let prev_stack = self
                        .switch_stacks
                        .get_mut(&(raw.ts, raw.cpu, prev_tid))
                        .and_then(|q| q.pop_front());
                    events.push(SchedEvent::Switch(Switch {
                        ts: raw.ts,
                        cpu: raw.cpu,
                        prev: Task {
                            tid: prev_tid,
                            pid: pid_at(prev_tid, raw.ts),
                            comm: s.prev_comm.unwrap_or_default(),
                            prio: s.prev_prio.unwrap_or(0),
                        },
                        prev_state: TaskState::from_ftrace(s.prev_state.unwrap_or(0)),
                        next: Task {
                            tid: s.next_pid.unwrap_or(0) as u32,
                            pid: pid_at(s.next_pid.unwrap_or(0) as u32, raw.ts),
                            comm: s.next_comm.unwrap_or_default(),
                            prio: s.next_prio.unwrap_or(0),
                        },
                        prev_stack,
                    }));
                    continue;
                }
                Some(ftrace_event::Event::SchedWaking(w)) => (w.pid, w.comm, w.prio, w.target_cpu),
                Some(ftrace_event::Event::SchedWakeupNew(w)) => {
                    (w.pid, w.comm, w.prio, w.target_cpu)
                }
                None => {
                    self.stats.ignored += 1;
                    continue;
                }
            };
            let tid = tid.unwrap_or(0) as u32;
            let wakee = Task {
                tid,
                pid: pid_at(tid, raw.ts),
                comm: comm.unwrap_or_default(),
                prio: prio.unwrap_or(0),
            };
            let target_cpu = target_cpu.unwrap_or(0) as u32;
            events.push(SchedEvent::Waking(Waking {
                ts: raw.ts,
                cpu: raw.cpu,
                waker_tid,
                waker_pid: pid_at(waker_tid, raw.ts),
                wakee,
                target_cpu,
            }));
        }
        self.stats.unresolved += self
            .switch_stacks
            .values()
            .map(|q| q.len() as u64)
            .sum::<u64>();

        let mut t = self.timeline;
        t.events = events;
        t.counters = self.counters.into_iter().map(|(_, c)| c).collect();
        t.start_ns = self.started.or(self.min_ts).unwrap_or(0);
        t.end_ns = self.stopped.or(self.max_ts).unwrap_or(t.start_ns);
        for (cpu, end) in &self.dropped_end {
            let start = self.dropped_start.get(cpu).copied().unwrap_or(0);
            let lost = end.saturating_sub(start);
            if lost > 0 || self.dropped_start.contains_key(cpu) {
                t.losses.sched_events_by_cpu.insert(*cpu, lost);
            }
        }
        for p in self.processes {
            let pid = p.pid.unwrap_or(0) as u32;
            let main_thread = self
                .thread_names
                .iter()
                .find(|t| t.tid == pid && t.pid == pid);
            let (cmdline, comm) = if p.cmdline_is_comm == Some(true) {
                (Vec::new(), p.cmdline.first().cloned())
            } else {
                (p.cmdline, None)
            };
            let name = main_thread
                .map(|t| t.name.clone())
                .or(comm)
                .unwrap_or_default();
            t.processes.push(ProcessInfo {
                pid,
                ppid: p.ppid.unwrap_or(0) as u32,
                name,
                cmdline,
            });
        }
        t.threads = self.thread_names;
        (t, self.stats)
    }
}

fn sample_kind(timebase: &proto::perf_events::Timebase) -> Option<SampleKind> {
    match &timebase.event {
        Some(perf_events::timebase::Event::Tracepoint(tp))
            if tp.name.as_deref() == Some(SWITCH_TRACEPOINT) =>
        {
            Some(SampleKind::SwitchStack)
        }
        Some(perf_events::timebase::Event::Counter(c))
            if *c == perf_events::Counter::SwCpuClock as i32 =>
        {
            Some(SampleKind::Cpu)
        }
        // Perfetto's default timebase when none is named.
        None if timebase
            .name
            .as_deref()
            .is_none_or(|n| n == CPU_TIMEBASE_NAME) =>
        {
            Some(SampleKind::Cpu)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::StackTable;
    use crate::trace::perfetto::write_timeline;
    use crate::trace::scenario::{MS, PID, Scenario, workload};
    use crate::trace::summary::{SummaryOptions, summarize};

    const START: u64 = 5_000 * MS;

    fn frames(stacks: &StackTable, id: Option<StackId>) -> Option<Vec<Frame>> {
        id.map(|id| stacks.get(id).to_vec())
    }

    type Spelled = (Vec<(SchedEvent, Option<Vec<Frame>>)>, Vec<String>);

    /// Events and samples with stacks spelled out: ids differ between two tables.
    fn comparable(t: &Timeline) -> Spelled {
        let events = t
            .events
            .iter()
            .map(|e| match e {
                SchedEvent::Switch(s) => {
                    let stack = frames(&t.stacks, s.prev_stack);
                    let mut s = s.clone();
                    s.prev_stack = None;
                    (SchedEvent::Switch(s), stack)
                }
                other => (other.clone(), None),
            })
            .collect();
        let mut samples: Vec<String> = t
            .samples
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} {} {:?}",
                    s.ts,
                    s.cpu,
                    s.pid,
                    s.tid,
                    t.stacks.get(s.stack)
                )
            })
            .collect();
        samples.sort();
        (events, samples)
    }

    fn round_trip(t: &Timeline) -> (Timeline, ReadStats) {
        let mut bytes = Vec::new();
        let written = write_timeline(t, &mut bytes).expect("write");
        assert_eq!(written.bytes as usize, bytes.len());
        read_trace(&bytes).expect("read")
    }

    #[test]
    fn a_written_trace_reads_back_to_the_same_timeline_and_summary() {
        let (t, _) = workload(START, 6);
        let (back, stats) = round_trip(&t);
        assert_eq!(stats.unresolved, 0);
        assert_eq!(stats.ignored, 0);
        assert_eq!(stats.truncated_bytes, 0);
        assert_eq!((back.start_ns, back.end_ns), (t.start_ns, t.end_ns));
        assert_eq!(back.sample_period_ns, t.sample_period_ns);
        assert_eq!(back.processes, t.processes);
        assert_eq!(back.losses, t.losses);
        for th in &t.threads {
            assert!(back.threads.contains(th), "{th:?}");
        }
        assert_eq!(comparable(&back), comparable(&t));
        let opts = SummaryOptions::default();
        assert_eq!(summarize(&back, &opts), summarize(&t, &opts));
    }

    #[test]
    fn counters_survive_the_file() {
        let (mut t, _) = workload(START, 2);
        t.counters = vec![
            Counter {
                name: "heap: live bytes".into(),
                unit: CounterUnit::Bytes,
                points: vec![(START, 1024.0), (START + MS, 2048.5)],
            },
            Counter {
                name: "heap: allocations/s".into(),
                unit: CounterUnit::Count,
                points: vec![(START + MS, 20_000.0)],
            },
        ];
        let (back, stats) = round_trip(&t);
        assert_eq!(stats.unresolved + stats.ignored, 0);
        assert_eq!(back.counters, t.counters);
    }

    #[test]
    fn losses_reused_tids_and_odd_states_survive_the_file() {
        let mut s = Scenario::new(START);
        s.undeclared(401, PID, "first");
        s.switch(START, 0, 0, TaskState::Runnable, None, 401);
        s.switch(START + MS, 0, 401, TaskState::Dead, None, 0);
        s.other_task(401, 999, "stranger");
        s.switch(START + 3 * MS, 1, 0, TaskState::Runnable, None, 401);
        s.switch(START + 4 * MS, 1, 401, TaskState::Other(0x40), None, 0);
        s.undeclared(402, PID, "io");
        let empty = s.t.stacks.intern(Vec::new());
        s.switch(
            START + 5 * MS,
            2,
            402,
            TaskState::Uninterruptible,
            Some(empty),
            0,
        );
        s.switch(START + 6 * MS, 2, 0, TaskState::Stopped, None, 402);
        let mut t = s.finish(START + 10 * MS);
        t.processes[0].cmdline.clear();
        t.losses.sched_events_by_cpu.insert(1, 17);
        t.losses.sched_events_by_cpu.insert(3, 0);
        t.losses.samples = 4;
        let (back, stats) = round_trip(&t);
        assert_eq!(stats.unresolved, 0);
        assert_eq!(back.losses, t.losses);
        assert_eq!(back.processes, t.processes, "comm-only process");
        assert_eq!(comparable(&back), comparable(&t));
        let opts = SummaryOptions::default();
        assert_eq!(summarize(&back, &opts), summarize(&t, &opts));
    }

    #[test]
    fn a_cut_trace_keeps_its_whole_packets_and_garbage_is_refused() {
        let (t, _) = workload(START, 2);
        let mut bytes = Vec::new();
        write_timeline(&t, &mut bytes).unwrap();
        let cut = &bytes[..bytes.len() - 7];
        let (back, stats) = read_trace(cut).expect("a cut trace still reads");
        assert!(stats.truncated_bytes > 0);
        assert!(!back.events.is_empty());
        let err = read_trace(b"this is not a trace").unwrap_err();
        assert!(err.to_string().contains("not a Perfetto trace"), "{err}");
    }
}
