//! The agent: one OS thread that owns the recording session for the target (a `Session` holds
//! eBPF objects and blocks on the target's pidfd, so it lives on a thread of its own, not on
//! the async runtime). It attaches once and keeps the symbol caches warm; consumers (HTTP
//! requests, the push loop) open *windows*, each its own `RawSamples` accumulator fed by the
//! agent's drains, and close them for a capture. A collector runs only while some window
//! needs it: the agent pauses it when the last such window closes, so an idle agent costs
//! the target nothing.
//!
//! When the target exits the agent says so through the state watch (`Gone`) and ends, or,
//! with `wait_for`, waits for the next process of that name and attaches to it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use super::{Capture, Kind, ServeError};
use crate::capture::info::ProgramCostInfo;
use crate::profile::{Profile, ValueType};
use crate::record::kernel::ProgramCost;
use crate::record::offcpu::{OffCpuCollector, OffCpuOptions};
use crate::record::{Collector, CpuCollector, RawSamples, RecordError, Session, TargetSpec, Wake};
use crate::record::{HeapCollector, HeapOptions};
use crate::symbolize::{ProcessMaps, Symbolizer};

/// How long the agent waits on the target between looks at its commands: the latency a
/// request sees before its window opens. Waking 20 times a second costs nothing measurable.
const TICK: Duration = Duration::from_millis(50);

/// How often the session forgets what no open window needs (see `Session::forget_except`).
/// Stacks of a window closed since are read and resolved again if they come back, so this is
/// rare enough to keep the warm caches useful between requests.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// How often a `--wait-for` agent looks for its process in /proc.
const SCAN_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOptions {
    /// Attach to this process first.
    pub pid: Option<u32>,
    /// Attach to the next process with this name whenever no target is attached (a
    /// restarted service); without it the agent ends when its target exits.
    pub wait_for: Option<String>,
    /// Also sample the processes the target starts.
    pub follow_children: bool,
    /// CPU sampling frequency while a CPU window is open, Hz per CPU.
    pub frequency: u64,
    /// Load the off-CPU collector too (block and mutex profiles). It costs nothing while no
    /// such profile is taken, but its maps take some kernel memory.
    pub offcpu: bool,
    /// Probe the allocator from attach on (heap and allocs profiles). Unlike the others this
    /// collector never pauses: in-use memory is what was allocated and not freed since
    /// attach, so every allocation and free must be seen.
    pub heap: Option<HeapOptions>,
}

/// The process the agent is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedTarget {
    pub pid: u32,
    /// Short name (`comm`).
    pub process: String,
    /// `/proc/PID/cmdline` as read at attach time: arguments separated by NUL bytes.
    pub cmdline: Vec<u8>,
    /// Names of the collectors in the session (which profiles can be served).
    pub collectors: Vec<&'static str>,
    /// Whether the processes it starts are profiled too (a trace request follows them).
    pub follow_children: bool,
    pub since: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// No target yet: waiting for a process with this name (`wait_for`).
    Waiting {
        name: String,
        previous: Option<u32>,
    },
    Attached(AttachedTarget),
    /// The target exited and nothing will re-attach; the agent has ended.
    Gone {
        pid: u32,
        process: String,
    },
    /// The agent could not go on (attaching failed for a reason retrying cannot fix).
    Failed(String),
}

impl TargetState {
    pub fn attached(&self) -> Option<&AttachedTarget> {
        match self {
            TargetState::Attached(t) => Some(t),
            _ => None,
        }
    }
}

pub type WindowId = u64;

/// What consumers ask of the agent.
#[derive(Debug)]
pub enum Command {
    /// Starts a window of `kind`; `note` goes into the capture's comments.
    Open {
        kind: Kind,
        note: String,
        reply: oneshot::Sender<Result<WindowId, AgentError>>,
    },
    /// Ends a window and builds its capture.
    Close {
        id: WindowId,
        reply: oneshot::Sender<Result<Capture, AgentError>>,
    },
    /// Builds the capture of a window so far and restarts it at the same drain, so
    /// consecutive intervals neither lose nor repeat a sample (continuous mode).
    Rotate {
        id: WindowId,
        reply: oneshot::Sender<Result<Capture, AgentError>>,
    },
    /// Ends a window without a capture (its client went away).
    Cancel { id: WindowId },
    /// The capture of a snapshot kind (heap without `seconds`): the agent's resident window
    /// for it, open since attach, so far.
    Snapshot {
        kind: Kind,
        reply: oneshot::Sender<Result<Capture, AgentError>>,
    },
    /// Names the addresses of the target's address space (`/debug/pprof/symbol`).
    Symbolize {
        addrs: Vec<u64>,
        reply: oneshot::Sender<Result<Vec<(u64, String)>, AgentError>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("pid {pid} ({process}) exited")]
    Gone { pid: u32, process: String },
    #[error("no process named {0:?} is running yet; the agent attaches to it when it starts")]
    Waiting(String),
    #[error("{}", .0.unavailable_reason())]
    Unavailable(Kind),
    #[error("no open window {0}: it was closed, or the target changed")]
    NoWindow(WindowId),
    #[error("{0}")]
    Failed(String),
    #[error("the agent has stopped")]
    Stopped,
}

/// The consumers' side of an agent: commands in, the target's state out. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<TargetState>,
}

impl AgentHandle {
    /// A handle over channels served by something other than [`spawn_agent`]'s thread (the
    /// tests' fake agent).
    pub fn from_parts(
        commands: mpsc::UnboundedSender<Command>,
        state: watch::Receiver<TargetState>,
    ) -> Self {
        AgentHandle { commands, state }
    }

    pub fn state(&self) -> TargetState {
        self.state.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<TargetState> {
        self.state.clone()
    }

    pub async fn open(&self, kind: Kind, note: String) -> Result<WindowId, AgentError> {
        self.ask(|reply| Command::Open { kind, note, reply }).await
    }

    pub async fn close(&self, id: WindowId) -> Result<Capture, AgentError> {
        self.ask(|reply| Command::Close { id, reply }).await
    }

    pub async fn rotate(&self, id: WindowId) -> Result<Capture, AgentError> {
        self.ask(|reply| Command::Rotate { id, reply }).await
    }

    /// Synchronous, so a request's drop guard can call it.
    pub fn cancel(&self, id: WindowId) {
        let _ = self.commands.send(Command::Cancel { id });
    }

    pub async fn snapshot(&self, kind: Kind) -> Result<Capture, AgentError> {
        self.ask(|reply| Command::Snapshot { kind, reply }).await
    }

    pub async fn symbolize(&self, addrs: Vec<u64>) -> Result<Vec<(u64, String)>, AgentError> {
        self.ask(|reply| Command::Symbolize { addrs, reply }).await
    }

    /// Resolves when the state stops being "attached to `pid`" (the target exited, the agent
    /// re-attached elsewhere or stopped), with the state then.
    pub async fn detached_from(&self, pid: u32) -> TargetState {
        let mut state = self.state.clone();
        loop {
            if state.borrow_and_update().attached().map(|t| t.pid) != Some(pid) {
                return state.borrow().clone();
            }
            if state.changed().await.is_err() {
                // The agent ended: whatever it said last is final.
                let last = state.borrow().clone();
                return match last {
                    TargetState::Attached(t) => TargetState::Gone {
                        pid: t.pid,
                        process: t.process,
                    },
                    other => other,
                };
            }
        }
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, AgentError>>) -> Command,
    ) -> Result<T, AgentError> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(command(tx)).is_err() {
            return Err(self.stopped_error());
        }
        rx.await.unwrap_or_else(|_| Err(self.stopped_error()))
    }

    /// The error for an agent that no longer answers: its last state says why.
    fn stopped_error(&self) -> AgentError {
        match &*self.state.borrow() {
            TargetState::Gone { pid, process } => AgentError::Gone {
                pid: *pid,
                process: process.clone(),
            },
            TargetState::Failed(m) => AgentError::Failed(m.clone()),
            _ => AgentError::Stopped,
        }
    }
}

/// Starts the agent thread. With a pid, returns once attached (or with the reason attaching
/// failed); with only `wait_for`, at once, in the `Waiting` state. The thread ends when its
/// target is gone for good or every handle is dropped.
pub fn spawn_agent(opts: AgentOptions) -> Result<(AgentHandle, JoinHandle<()>), ServeError> {
    crate::record::check_frequency(opts.frequency)?;
    if opts.pid.is_none() && opts.wait_for.is_none() {
        return Err(ServeError::Invalid(
            "nothing to serve: give --pid PID or --wait-for NAME".into(),
        ));
    }
    if let Some(name) = &opts.wait_for
        && (name.is_empty() || name.contains('/'))
    {
        return Err(ServeError::Invalid(format!(
            "--wait-for takes a process name (as in `ps -o comm`), not {name:?}"
        )));
    }
    crate::record::check_privileges()?;
    let initial = match (&opts.pid, &opts.wait_for) {
        (None, Some(name)) => TargetState::Waiting {
            name: name.clone(),
            previous: None,
        },
        _ => TargetState::Failed("attaching".into()),
    };
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (state_tx, state_rx) = watch::channel(initial);
    let (attached_tx, attached_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("profiler-agent".into())
        .spawn(move || {
            let mut agent = Agent {
                opts,
                commands: commands_rx,
                state: state_tx,
                target: None,
                next_id: 1,
                exited: Vec::new(),
                last_scan: None,
            };
            if let Some(pid) = agent.opts.pid {
                match agent.attach(pid) {
                    Ok(()) => {
                        let _ = attached_tx.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = attached_tx.send(Err(e));
                        return;
                    }
                }
            }
            drop(attached_tx);
            agent.run();
        })
        .map_err(|e| ServeError::Io("starting the agent thread".into(), e))?;
    if let Ok(Err(e)) = attached_rx.recv() {
        let _ = thread.join();
        return Err(e.into());
    }
    Ok((AgentHandle::from_parts(commands_tx, state_rx), thread))
}

struct Agent {
    opts: AgentOptions,
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<TargetState>,
    target: Option<Attached>,
    next_id: WindowId,
    /// Processes not to attach to again (they exited, or attaching failed), with their start
    /// times: a pid the kernel hands out again is another process.
    exited: Vec<(u32, Option<u64>)>,
    last_scan: Option<Instant>,
}

/// Everything about the current target.
struct Attached {
    session: Session,
    spec: TargetSpec,
    info: AttachedTarget,
    /// The target's start time (clock ticks since boot), which tells it from a later process
    /// given the same pid.
    started: Option<u64>,
    windows: HashMap<WindowId, Window>,
    /// Windows open from attach to exit, by collector, for the snapshot kinds (heap): the
    /// state of a heap is everything since attach.
    resident: HashMap<&'static str, WindowId>,
    last_drain: Instant,
    /// When the session last forgot what no open window needs.
    last_forget: Instant,
    /// For `/debug/pprof/symbol`, made on first use.
    symbolizer: Option<Symbolizer>,
}

struct Window {
    kind: Kind,
    note: String,
    samples: RawSamples,
    opened: Instant,
    opened_wall: SystemTime,
    /// Counters and program costs when the window opened: a capture reports its own.
    counters: BTreeMap<String, BTreeMap<String, u64>>,
    cost: Vec<ProgramCost>,
}

impl Agent {
    fn run(&mut self) {
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    // Every handle is gone: the server stopped. Dropping the session detaches.
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            match &mut self.target {
                Some(t) => {
                    let wake = t.session.wait(TICK).unwrap_or_else(|e| {
                        // A collector could not follow a new process: the target goes on.
                        tracing::warn!("{e}");
                        Wake::Timeout
                    });
                    if wake == Wake::TargetsExited {
                        if !self.target_exited() {
                            return;
                        }
                        continue;
                    }
                    if let Err(e) = t.drain_if_due() {
                        tracing::warn!("draining the maps failed: {e}");
                    }
                    t.forget_if_due();
                }
                None => {
                    self.look_for_target();
                    if self.target.is_none() {
                        std::thread::sleep(TICK);
                    }
                }
            }
        }
    }

    fn attach(&mut self, pid: u32) -> Result<(), RecordError> {
        let spec = TargetSpec::Pids {
            pids: vec![pid],
            follow_children: self.opts.follow_children,
        };
        let mut collectors: Vec<Box<dyn Collector>> =
            vec![Box::new(CpuCollector::new(self.opts.frequency)?)];
        if self.opts.offcpu {
            collectors.push(Box::new(OffCpuCollector::new(OffCpuOptions::default())));
        }
        if let Some(heap) = self.opts.heap {
            collectors.push(Box::new(HeapCollector::new(heap)?));
        }
        let mut session = Session::start(&spec, collectors)?;
        let names: Vec<&'static str> = session.collectors().map(|c| c.name()).collect();
        // Nothing samples until a window asks for it, but for the collectors of snapshot
        // kinds (heap): their resident windows, opened below, need them from now on.
        for name in &names {
            let resident = Kind::ALL
                .iter()
                .any(|k| k.default_seconds().is_none() && k.collector() == *name);
            if !resident {
                session.pause(name)?;
            }
        }
        session.drain()?;
        let process = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| format!("pid-{pid}"));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let info = AttachedTarget {
            pid,
            process,
            cmdline,
            collectors: names,
            follow_children: self.opts.follow_children,
            since: SystemTime::now(),
        };
        tracing::info!(pid, process = %info.process, "attached");
        let mut target = Attached {
            session,
            spec,
            info: info.clone(),
            started: start_time(pid),
            windows: HashMap::new(),
            resident: HashMap::new(),
            last_drain: Instant::now(),
            last_forget: Instant::now(),
            symbolizer: None,
        };
        for kind in Kind::ALL {
            let collector = kind.collector();
            if kind.default_seconds().is_none()
                && target.has_collector(collector)
                && !target.resident.contains_key(collector)
            {
                let id = self.next_id;
                self.next_id += 1;
                target
                    .open(id, kind, "since the agent attached".into())
                    .map_err(|e| RecordError::Bpf {
                        what: format!("starting the {collector} collector"),
                        source: Box::new(e),
                    })?;
                target.resident.insert(collector, id);
            }
        }
        self.state.send_replace(TargetState::Attached(info));
        self.target = Some(target);
        Ok(())
    }

    /// The target exited: says so, and says whether the agent goes on (waiting for the next
    /// process of its name).
    fn target_exited(&mut self) -> bool {
        let Some(t) = self.target.take() else {
            return true;
        };
        let pid = t.info.pid;
        let process = t.info.process.clone();
        tracing::info!(pid, %process, "target exited");
        self.exited.push((pid, t.started));
        // Open windows end with the session; their requests see the state change.
        drop(t);
        match &self.opts.wait_for {
            Some(name) => {
                self.state.send_replace(TargetState::Waiting {
                    name: name.clone(),
                    previous: Some(pid),
                });
                true
            }
            None => {
                self.state.send_replace(TargetState::Gone { pid, process });
                false
            }
        }
    }

    fn look_for_target(&mut self) {
        let Some(name) = self.opts.wait_for.clone() else {
            return;
        };
        if self.last_scan.is_some_and(|t| t.elapsed() < SCAN_EVERY) {
            return;
        }
        self.last_scan = Some(Instant::now());
        // Forget the pids that now name no process or another one: the list stays short.
        self.exited
            .retain(|&(pid, started)| start_time(pid) == started);
        let exclude: Vec<u32> = self.exited.iter().map(|&(pid, _)| pid).collect();
        let Some(pid) = find_process(&name, &exclude) else {
            return;
        };
        match self.attach(pid) {
            Ok(()) => {}
            Err(e @ RecordError::NeedPrivileges(_)) => {
                self.state.send_replace(TargetState::Failed(e.to_string()));
            }
            Err(e) => {
                // Most often it exited in between; never try that process again.
                tracing::warn!(pid, "could not attach to {name}: {e}");
                self.exited.push((pid, start_time(pid)));
            }
        }
    }

    fn not_attached(&self) -> AgentError {
        match &*self.state.borrow() {
            TargetState::Waiting { name, .. } => AgentError::Waiting(name.clone()),
            TargetState::Gone { pid, process } => AgentError::Gone {
                pid: *pid,
                process: process.clone(),
            },
            TargetState::Failed(m) => AgentError::Failed(m.clone()),
            TargetState::Attached(_) => AgentError::Stopped,
        }
    }

    fn handle(&mut self, command: Command) {
        let not_attached = self.not_attached();
        let Some(t) = self.target.as_mut() else {
            match command {
                Command::Open { reply, .. } => drop(reply.send(Err(not_attached))),
                Command::Close { reply, .. } | Command::Rotate { reply, .. } => {
                    drop(reply.send(Err(not_attached)))
                }
                Command::Symbolize { reply, .. } => drop(reply.send(Err(not_attached))),
                Command::Snapshot { reply, .. } => drop(reply.send(Err(not_attached))),
                Command::Cancel { .. } => {}
            }
            return;
        };
        match command {
            Command::Open { kind, note, reply } => {
                let id = self.next_id;
                self.next_id += 1;
                let _ = reply.send(t.open(id, kind, note));
            }
            Command::Close { id, reply } => {
                let _ = reply.send(t.close(id));
            }
            Command::Rotate { id, reply } => {
                let _ = reply.send(t.rotate(id));
            }
            Command::Cancel { id } => {
                if let Err(e) = t.cancel(id) {
                    tracing::warn!("ending window {id}: {e}");
                }
            }
            Command::Symbolize { addrs, reply } => {
                let _ = reply.send(Ok(t.symbolize(&addrs)));
            }
            Command::Snapshot { kind, reply } => {
                let _ = reply.send(t.snapshot(kind));
            }
        }
    }
}

fn failed(e: RecordError) -> AgentError {
    AgentError::Failed(e.to_string())
}

impl Attached {
    fn has_collector(&self, name: &str) -> bool {
        self.info.collectors.contains(&name)
    }

    /// Whether another open window than `except` needs collector `name`.
    fn collector_needed(&self, name: &str, except: Option<WindowId>) -> bool {
        self.windows
            .iter()
            .any(|(id, w)| Some(*id) != except && w.kind.collector() == name)
    }

    fn drain_if_due(&mut self) -> Result<(), RecordError> {
        if !self.windows.is_empty() && self.last_drain.elapsed() >= self.session.drain_interval() {
            self.drain()?;
        }
        Ok(())
    }

    /// Lets the session forget the stacks, symbols, processes and thread names no open window
    /// needs, so that the agent's memory follows its windows over weeks, not every stack the
    /// target ever ran.
    fn forget_if_due(&mut self) {
        if self.last_forget.elapsed() >= FORGET_EVERY {
            self.last_forget = Instant::now();
            self.session
                .forget_except(self.windows.values().map(|w| &w.samples));
        }
    }

    /// Drains once and feeds every open window the samples of its collector.
    fn drain(&mut self) -> Result<(), RecordError> {
        self.last_drain = Instant::now();
        let batch = self.session.drain()?;
        self.feed(&batch);
        Ok(())
    }

    fn feed(&mut self, batch: &crate::record::Batch) {
        if batch.samples.is_empty() || self.windows.is_empty() {
            return;
        }
        let columns = self.columns();
        for w in self.windows.values_mut() {
            let Some(range) = columns.get(w.kind.collector()) else {
                continue;
            };
            for (key, values) in &batch.samples {
                if values[range.clone()].iter().all(|&v| v == 0) {
                    continue;
                }
                let slot = w
                    .samples
                    .counts
                    .entry(key.clone())
                    .or_insert_with(|| vec![0; values.len()]);
                for (s, v) in slot.iter_mut().zip(values) {
                    *s += v;
                }
            }
        }
    }

    /// Each collector's columns among the session's sample types (in collector order).
    fn columns(&self) -> HashMap<&'static str, Range<usize>> {
        let mut start = 0;
        self.session
            .collectors()
            .map(|c| {
                let n = c.sample_types().len();
                start += n;
                (c.name(), start - n..start)
            })
            .collect()
    }

    fn open(&mut self, id: WindowId, kind: Kind, note: String) -> Result<WindowId, AgentError> {
        let collector = kind.collector();
        if !self.has_collector(collector) {
            return Err(AgentError::Unavailable(kind));
        }
        let paused = self.session.is_paused(collector);
        if !paused {
            // Samples already in the maps were taken before this window: they go to the
            // windows that were open then.
            self.drain().map_err(failed)?;
        }
        // Counters before the events start, so that a window of a paused collector counts
        // exactly its own samples.
        let counters = self.session.counters().unwrap_or_default();
        let cost = self.session.program_cost();
        if paused {
            self.session.resume(collector).map_err(failed)?;
        }
        let window = Window {
            kind,
            note,
            samples: RawSamples::default(),
            opened: Instant::now(),
            opened_wall: SystemTime::now(),
            counters,
            cost,
        };
        self.windows.insert(id, window);
        Ok(id)
    }

    /// Pauses `collector` when no window but `except` needs it, then drains what is left in
    /// both map sets with what it still has in flight (threads still blocked count until
    /// now); otherwise drains once.
    fn drain_for_end(&mut self, collector: &str, except: WindowId) -> Result<(), RecordError> {
        if self.collector_needed(collector, Some(except)) {
            return self.drain();
        }
        self.session.pause(collector)?;
        self.drain()?;
        let batch = self.session.drain_with_in_flight(collector)?;
        self.feed(&batch);
        Ok(())
    }

    fn close(&mut self, id: WindowId) -> Result<Capture, AgentError> {
        let kind = self.windows.get(&id).ok_or(AgentError::NoWindow(id))?.kind;
        self.drain_for_end(kind.collector(), id).map_err(failed)?;
        let window = self.windows.remove(&id).ok_or(AgentError::NoWindow(id))?;
        self.capture(&window, window.kind, "window").map_err(failed)
    }

    fn rotate(&mut self, id: WindowId) -> Result<Capture, AgentError> {
        if !self.windows.contains_key(&id) {
            return Err(AgentError::NoWindow(id));
        }
        self.drain().map_err(failed)?;
        let counters = self.session.counters().unwrap_or_default();
        let cost = self.session.program_cost();
        let window = self.windows.get_mut(&id).ok_or(AgentError::NoWindow(id))?;
        let ended = Window {
            kind: window.kind,
            note: window.note.clone(),
            samples: std::mem::take(&mut window.samples),
            opened: window.opened,
            opened_wall: window.opened_wall,
            counters: std::mem::replace(&mut window.counters, counters),
            cost: std::mem::replace(&mut window.cost, cost),
        };
        window.opened = Instant::now();
        window.opened_wall = SystemTime::now();
        self.capture(&ended, ended.kind, "interval").map_err(failed)
    }

    fn snapshot(&mut self, kind: Kind) -> Result<Capture, AgentError> {
        let id = *self
            .resident
            .get(kind.collector())
            .ok_or(AgentError::Unavailable(kind))?;
        self.drain().map_err(failed)?;
        let window = self.windows.get(&id).ok_or(AgentError::NoWindow(id))?;
        // Built from a borrowed window: the resident window keeps accumulating.
        let window = Window {
            kind: window.kind,
            note: window.note.clone(),
            samples: window.samples.clone(),
            opened: window.opened,
            opened_wall: window.opened_wall,
            counters: window.counters.clone(),
            cost: window.cost.clone(),
        };
        self.capture(&window, kind, "snapshot").map_err(failed)
    }

    fn cancel(&mut self, id: WindowId) -> Result<(), RecordError> {
        let Some(kind) = self.windows.get(&id).map(|w| w.kind) else {
            return Ok(());
        };
        let result = self.drain_for_end(kind.collector(), id);
        self.windows.remove(&id);
        result
    }

    /// The capture of `window`: its samples with the session's warm symbols, its own counters
    /// and duration, and only its collector's sample types.
    fn capture(
        &mut self,
        window: &Window,
        kind: Kind,
        ended_by: &str,
    ) -> Result<Capture, RecordError> {
        let duration = window.opened.elapsed();
        let collector = kind.collector();
        let (mut profile, stats) = if collector == "heap" {
            // Allocations are events of the window; in-use is the state now.
            let mut samples = window.samples.clone();
            samples.add(&self.session.snapshot()?);
            self.session.build(&samples)
        } else {
            self.session.build(&window.samples)
        };
        let mut info = crate::record::recording_info(
            &self.session,
            &stats,
            window.opened_wall,
            duration,
            ended_by,
            &self.spec,
        )?;
        info.kind = "serve".into();
        // The capture describes its own collector: the others may have been paused all along.
        info.collectors.retain(|c| c.name == collector);
        info.counters = counters_since(&info.counters, &window.counters);
        info.counters
            .retain(|group, _| group == collector || group == "targets");
        info.program_cost = cost_since(&self.session.program_cost(), &window.cost);
        info.program_cost.retain(|c| c.runs > 0);
        if !window.note.is_empty() {
            info.notes.push(window.note.clone());
        }
        info.write_into(&mut profile);
        if let Some(c) = self.session.collectors().find(|c| c.name() == collector)
            && let Some(range) = self.columns().get(collector)
        {
            keep_columns(
                &mut profile,
                range.clone(),
                c.main_sample_type(),
                c.period(),
            );
        }
        if let Some(main) = kind.default_sample_type() {
            profile.default_sample_type = Some(main.to_string());
        }
        keep_samples_of(kind, &mut profile);
        Ok(Capture {
            profile,
            pid: self.info.pid,
            process: self.info.process.clone(),
        })
    }

    fn symbolize(&mut self, addrs: &[u64]) -> Vec<(u64, String)> {
        let mut maps = ProcessMaps::default();
        if maps.refresh(self.info.pid).is_err() {
            return Vec::new();
        }
        let symbolizer = self.symbolizer.get_or_insert_with(Symbolizer::new);
        let resolved = symbolizer.user(&maps, addrs);
        let mut out: Vec<(u64, String)> = resolved
            .into_iter()
            .filter(|(_, r)| r.symbolized())
            .filter_map(|(a, r)| r.lines.into_iter().next().map(|l| (a, l.function)))
            .collect();
        out.sort_unstable();
        out
    }
}

/// Counters of a window: the counters now minus those when it opened.
fn counters_since(
    now: &BTreeMap<String, BTreeMap<String, u64>>,
    then: &BTreeMap<String, BTreeMap<String, u64>>,
) -> BTreeMap<String, BTreeMap<String, u64>> {
    now.iter()
        .map(|(group, counters)| {
            let before = then.get(group);
            let counters = counters
                .iter()
                .map(|(name, v)| {
                    let b = before.and_then(|g| g.get(name)).copied().unwrap_or(0);
                    (name.clone(), v.saturating_sub(b))
                })
                .collect();
            (group.clone(), counters)
        })
        .collect()
}

fn cost_since(now: &[ProgramCost], then: &[ProgramCost]) -> Vec<ProgramCostInfo> {
    now.iter()
        .map(|c| {
            let before = then.iter().find(|b| b.program == c.program);
            ProgramCostInfo {
                program: c.program.to_string(),
                runs: c.runs - before.map_or(0, |b| b.runs.min(c.runs)),
                run_time_ns: c
                    .run_time
                    .saturating_sub(before.map_or(Duration::ZERO, |b| b.run_time))
                    .as_nanos() as u64,
            }
        })
        .collect()
}

/// Go's block profile is time spent blocked, and its mutex profile time spent waiting for
/// locks. From the off-CPU collector's samples: `block` drops preemptions (state R: waiting
/// for a CPU is not blocking); `mutex` keeps the waits in a lock or futex (condition variables
/// and thread parking wait in futexes too: a native process does not tell them apart).
pub fn keep_samples_of(kind: Kind, profile: &mut Profile) {
    if !matches!(kind, Kind::Block | Kind::Mutex) {
        return;
    }
    let lock_wait = regex::Regex::new(LOCK_WAIT).expect("a valid pattern");
    let samples = std::mem::take(&mut profile.samples);
    profile.samples = samples
        .into_iter()
        .filter(|s| s.str_label("state") != Some("R"))
        .filter(|s| {
            kind != Kind::Mutex
                || profile
                    .sample_frames(s)
                    .any(|f| lock_wait.is_match(&f.function.name))
        })
        .collect();
}

/// Frames of a lock wait: the kernel's futex waits, glibc's lock slow paths, Rust's std and
/// parking_lot contended paths.
const LOCK_WAIT: &str =
    r"futex_wait|__lll_lock_wait|pthread_mutex_lock|pthread_rwlock_|lock_contended|lock_slow";

/// Keeps the sample types in `columns` (one collector's), drops samples left without a
/// value, and takes that collector's default type and period. A session with one collector
/// keeps everything.
pub fn keep_columns(
    profile: &mut Profile,
    columns: Range<usize>,
    main: &str,
    period: Option<(ValueType, i64)>,
) {
    if columns.start == 0 && columns.end == profile.sample_types.len() {
        return;
    }
    profile.sample_types = profile.sample_types[columns.clone()].to_vec();
    profile.samples.retain_mut(|s| {
        s.values = s.values[columns.clone()].to_vec();
        s.values.iter().any(|&v| v != 0)
    });
    profile.default_sample_type = Some(main.to_string());
    match period {
        Some((t, p)) => {
            profile.period_type = Some(t);
            profile.period = p;
        }
        None => {
            profile.period_type = None;
            profile.period = 0;
        }
    }
}

/// The oldest running process called `name` (its `comm`, or its executable's file name; a
/// service's first process is its parent), other than us and the pids in `exclude`.
pub fn find_process(name: &str, exclude: &[u32]) -> Option<u32> {
    let own = std::process::id();
    // The kernel keeps 15 bytes of a name in `comm`.
    let short: String = name.chars().take(15).collect();
    let mut best: Option<(u64, u32)> = None;
    for entry in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own || exclude.contains(&pid) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim_end();
        let exe_matches = || {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .is_some_and(|f| f.trim_end_matches(" (deleted)") == name)
        };
        if comm != name && comm != short && !exe_matches() {
            continue;
        }
        let Some(started) = start_time(pid) else {
            continue;
        };
        if best.is_none_or(|(t, p)| (started, pid) < (t, p)) {
            best = Some((started, pid));
        }
    }
    best.map(|(_, pid)| pid)
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot); None for a zombie
/// (state Z), which can no longer be attached to.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name in parentheses may hold spaces: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ProfileBuilder, Sample};

    #[test]
    fn counters_of_a_window_are_differences() {
        let map = |v: u64| {
            BTreeMap::from([(
                "cpu".to_string(),
                BTreeMap::from([("target_samples".to_string(), v)]),
            )])
        };
        assert_eq!(counters_since(&map(130), &map(100)), map(30));
        // A counter missing at the start counts from zero.
        assert_eq!(counters_since(&map(5), &BTreeMap::new()), map(5));
    }

    #[test]
    fn keep_columns_projects_one_collector() {
        let mut b = ProfileBuilder::new(vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
            ValueType::new("alloc_space", "bytes"),
        ]);
        b.add_sample(Sample {
            locations: vec![],
            values: vec![1, 10, 0],
            labels: vec![],
        });
        b.add_sample(Sample {
            locations: vec![],
            values: vec![0, 0, 512],
            labels: vec![],
        });
        let mut p = b.finish();
        keep_columns(
            &mut p,
            2..3,
            "alloc_space",
            Some((ValueType::new("space", "bytes"), 524_288)),
        );
        assert_eq!(p.sample_type_names(), vec!["alloc_space"]);
        assert_eq!(p.samples.len(), 1);
        assert_eq!(p.samples[0].values, vec![512]);
        assert_eq!(p.period, 524_288);
        assert_eq!(p.default_sample_type.as_deref(), Some("alloc_space"));
    }

    #[test]
    fn block_drops_preemptions_and_mutex_keeps_lock_waits() {
        use crate::profile::{Label, LabelValue, Line};
        let mut b = ProfileBuilder::new(vec![ValueType::new("offcpu", "nanoseconds")]);
        let mut loc = |name: &str| {
            let f = b.function(name, "");
            b.location(
                None,
                f as u64,
                vec![Line {
                    function: f,
                    line: 0,
                }],
            )
        };
        let (futex, sleep, work) = (loc("futex_wait"), loc("do_nanosleep"), loc("app::work"));
        let state = |s: &str| Label {
            key: "state".into(),
            value: LabelValue::Str(s.into()),
        };
        for (locs, st) in [
            (vec![futex, work], "S"),
            (vec![sleep, work], "S"),
            (vec![work], "R"),
        ] {
            b.add_sample(Sample {
                locations: locs,
                values: vec![10],
                labels: vec![state(st)],
            });
        }
        let p = b.finish();
        let mut block = p.clone();
        keep_samples_of(Kind::Block, &mut block);
        assert_eq!(block.samples.len(), 2, "the preemption is not blocking");
        let mut mutex = p.clone();
        keep_samples_of(Kind::Mutex, &mut mutex);
        assert_eq!(mutex.samples.len(), 1);
        assert_eq!(mutex.samples[0].locations[0], futex);
        let mut cpu = p.clone();
        keep_samples_of(Kind::Cpu, &mut cpu);
        assert_eq!(cpu, p);
    }

    #[test]
    fn finds_a_process_by_name_and_skips_excluded() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        // Under qemu-user `vfork` is emulated as `fork`, so `spawn` can return before the
        // child has exec'd and renamed itself: wait (bounded) until it is `sleep`.
        for _ in 0..500 {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end() == "sleep" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Other `sleep`s may run on a shared machine: exclude all but ours.
        let others: Vec<u32> = std::iter::from_fn({
            let mut ex = vec![pid];
            move || {
                let found = find_process("sleep", &ex)?;
                ex.push(found);
                Some(found)
            }
        })
        .take(1000)
        .collect();
        let found_ours = find_process("sleep", &others);
        assert_eq!(found_ours, Some(pid));
        let mut all = others.clone();
        all.push(pid);
        assert_eq!(find_process("sleep", &all), None);
        assert_eq!(find_process("no-such-process-name-xyz", &[]), None);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
