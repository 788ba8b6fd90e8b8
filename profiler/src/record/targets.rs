//! The target set: the processes a recording covers. Initial targets are pids (each watched
//! through a pidfd), a launched command, or every process (`-a`). The kernel's `TARGETS` map
//! gets the initial tgids; with following on, the lifecycle programs add child processes as
//! they fork and report fork/exec/exit through a ring buffer. This module keeps a record of
//! every process seen (name, command line, memory maps snapshotted while it lived), which
//! symbolization and labels use after the process is gone.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use profiler_ebpf::targets::{
    EXEC_PROGRAM, EXIT_PROGRAM, FOLLOW_CHILDREN, FORK_PROGRAM, PROCESS_EVENTS, ProcessEvent,
    ProcessEventKind, TARGET_COUNTERS, TARGETS, TargetCounter,
};

use super::kernel::{ProgramCost, bpf_err, program_cost, read_counters, take_map};
use super::process::TargetProcess;
use super::{RecordError, TargetSpec};
use crate::symbolize::ProcessMaps;

/// Processes the kernel set can hold: followed descendants of a `make -j` and the like.
pub const TARGETS_ENTRIES: u32 = 65_536;

/// After an exec, the dynamic loader maps the libraries within milliseconds: the maps are
/// read again at these delays so short-lived programs keep their libraries' symbols.
const REREAD_AFTER_EXEC: [Duration; 2] = [Duration::from_millis(20), Duration::from_millis(250)];

/// What the recording knows of one process.
#[derive(Debug, Clone)]
pub struct ProcessRecord {
    pub pid: u32,
    /// Short name (`comm`), for `process` labels.
    pub name: String,
    /// Full command line when it could be read.
    pub command_line: String,
    /// File name of its executable, when it could be read.
    pub executable: Option<String>,
    /// Path of its executable, when it could be read.
    pub exe_path: Option<std::path::PathBuf>,
    pub parent: Option<u32>,
    pub maps: ProcessMaps,
    pub exited: bool,
    /// Map re-reads still due (after an exec).
    reread: Vec<Instant>,
}

impl ProcessRecord {
    fn new(pid: u32, parent: Option<u32>, fallback_name: &str) -> Self {
        let mut r = ProcessRecord {
            pid,
            name: fallback_name.to_string(),
            command_line: String::new(),
            executable: None,
            exe_path: None,
            parent,
            maps: ProcessMaps::default(),
            exited: false,
            reread: Vec::new(),
        };
        r.refresh_identity();
        r
    }

    /// A record for a process whose maps are already known (tests).
    #[cfg(test)]
    pub fn for_tests(pid: u32, maps: ProcessMaps) -> Self {
        let mut r = Self::new(pid, None, "");
        r.maps = maps;
        r
    }

    fn refresh_identity(&mut self) {
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/comm", self.pid)) {
            self.name = comm.trim().to_string();
        }
        if let Some(cmd) = super::process::read_cmdline(self.pid) {
            self.command_line = cmd;
        }
        if let Ok(exe) = std::fs::read_link(format!("/proc/{}/exe", self.pid)) {
            self.executable = exe.file_name().map(|f| {
                f.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string()
            });
            self.exe_path = Some(exe);
        }
    }
}

/// Why waiting returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Timeout,
    /// Every initial target has exited.
    TargetsExited,
}

pub struct Targets {
    /// Initial targets, watched for exit (empty with `-a`).
    initial: Vec<TargetProcess>,
    all: bool,
    follow: bool,
    kernel_set: BpfHashMap<MapData, u32, u32>,
    events: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    links_attached: bool,
    pub processes: BTreeMap<u32, ProcessRecord>,
    /// Processes that joined since the session last asked (see `take_new`).
    new: Vec<u32>,
}

impl Targets {
    /// Resolves the spec to processes: opens pids (errors for missing ones), or launches the
    /// command held before exec. Nothing is attached yet.
    pub fn open(spec: &TargetSpec) -> Result<(Vec<TargetProcess>, bool, bool), RecordError> {
        match spec {
            TargetSpec::Pids {
                pids,
                follow_children,
            } => {
                let opened = pids
                    .iter()
                    .map(|&p| TargetProcess::open(p))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((opened, false, *follow_children))
            }
            TargetSpec::Command(argv) => Ok((vec![TargetProcess::launch(argv)?], false, true)),
            TargetSpec::All => Ok((Vec::new(), true, false)),
        }
    }

    /// Takes the target maps from the loaded object, fills the kernel set, attaches the
    /// lifecycle programs.
    pub fn attach(
        bpf: &mut Ebpf,
        btf: &aya::Btf,
        initial: Vec<TargetProcess>,
        all: bool,
        follow: bool,
    ) -> Result<Self, RecordError> {
        let mut kernel_set =
            BpfHashMap::try_from(take_map(bpf, TARGETS)?).map_err(bpf_err("opening TARGETS"))?;
        let events = RingBuf::try_from(take_map(bpf, PROCESS_EVENTS)?)
            .map_err(bpf_err("opening PROCESS_EVENTS"))?;
        let counters = PerCpuArray::try_from(take_map(bpf, TARGET_COUNTERS)?)
            .map_err(bpf_err("opening TARGET_COUNTERS"))?;
        let flags = if follow { FOLLOW_CHILDREN } else { 0 };
        let mut processes = BTreeMap::new();
        for t in &initial {
            kernel_set
                .insert(t.pid(), flags, 0)
                .map_err(bpf_err(format!("adding pid {} to the target set", t.pid())))?;
            let mut record = ProcessRecord::new(t.pid(), None, "");
            record.command_line = t.command_line().to_string();
            if t.is_launched() {
                // Held before exec: /proc shows the profiler until the command runs.
                record.exe_path = t.exe().map(Path::to_path_buf);
                record.executable = record
                    .exe_path
                    .as_deref()
                    .and_then(Path::file_name)
                    .map(|f| f.to_string_lossy().into_owned());
            }
            let _ = record.maps.refresh(t.pid());
            processes.insert(t.pid(), record);
        }
        if all {
            for pid in all_pids() {
                let mut record = ProcessRecord::new(pid, None, "");
                let _ = record.maps.refresh(pid);
                processes.insert(pid, record);
            }
        }
        let mut targets = Targets {
            initial,
            all,
            follow,
            kernel_set,
            events,
            counters,
            links_attached: false,
            processes,
            new: Vec::new(),
        };
        // Lifecycle programs matter when the set can change or processes come and go.
        if follow || all {
            for name in [FORK_PROGRAM, EXEC_PROGRAM, EXIT_PROGRAM] {
                let program: &mut BtfTracePoint = bpf
                    .program_mut(name)
                    .ok_or_else(|| RecordError::MissingInObject(format!("program {name}")))?
                    .try_into()
                    .map_err(bpf_err(format!("program {name}")))?;
                program.load(name, btf).map_err(RecordError::from_load)?;
                program.attach().map_err(RecordError::from_load)?;
            }
            targets.links_attached = true;
        }
        Ok(targets)
    }

    /// Lets launched commands exec (no-op for pids).
    pub fn release(&mut self) -> Result<(), RecordError> {
        for t in &mut self.initial {
            t.release()?;
            // The exec just happened: read the new program's maps (and again shortly).
            if let Some(r) = self.processes.get_mut(&t.pid()) {
                r.reread = REREAD_AFTER_EXEC
                    .iter()
                    .map(|d| Instant::now() + *d)
                    .collect();
                if r.maps.refresh(t.pid()).is_ok() {
                    r.refresh_identity();
                }
            }
        }
        Ok(())
    }

    /// Whether a target exited before attaching finished (then nothing was recorded).
    pub fn exited_before_attach(&self) -> Option<u32> {
        self.initial
            .iter()
            .find(|t| !t.is_launched() && t.has_exited())
            .map(|t| t.pid())
    }

    /// Waits up to `timeout` for a lifecycle event or the initial targets' exit, handling
    /// events as they come.
    pub fn wait(&mut self, timeout: Duration) -> Wake {
        let deadline = Instant::now() + timeout;
        loop {
            self.handle_events();
            self.reread_due();
            if !self.all && !self.initial.is_empty() && self.initial.iter().all(|t| t.has_exited())
            {
                return Wake::TargetsExited;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wake::Timeout;
            }
            let mut next = deadline;
            for r in self.processes.values() {
                for &t in &r.reread {
                    next = next.min(t);
                }
            }
            let mut fds: Vec<RawFd> = self
                .initial
                .iter()
                .filter(|t| !t.has_exited())
                .map(|t| t.pidfd())
                .collect();
            if self.links_attached {
                fds.push(self.events.as_raw_fd());
            }
            poll_fds(&fds, next.saturating_duration_since(now));
        }
    }

    fn reread_due(&mut self) {
        let now = Instant::now();
        for r in self.processes.values_mut() {
            if r.reread.iter().any(|&t| t <= now) {
                r.reread.retain(|&t| t > now);
                if r.maps.refresh(r.pid).is_ok() {
                    r.refresh_identity();
                }
            }
        }
    }

    fn handle_events(&mut self) {
        while let Some(item) = self.events.next() {
            if item.len() < size_of::<ProcessEvent>() {
                continue;
            }
            // SAFETY: the program writes whole `ProcessEvent`s; read unaligned from the ring.
            let e: ProcessEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let name = String::from_utf8_lossy(e.comm.as_bytes()).into_owned();
            match e.kind {
                k if k == ProcessEventKind::Fork as u32 => {
                    let parent = (e.parent_tgid != 0).then_some(e.parent_tgid);
                    let mut r = ProcessRecord::new(e.tgid, parent, &name);
                    // Until it execs, a child runs its parent's program at the same addresses.
                    if r.maps.refresh(e.tgid).is_err()
                        && let Some(p) = parent.and_then(|p| self.processes.get(&p))
                    {
                        r.maps = p.maps.clone();
                    }
                    self.processes.insert(e.tgid, r);
                    if !self.all {
                        self.new.push(e.tgid);
                    }
                }
                k if k == ProcessEventKind::Exec as u32 => {
                    let r = self
                        .processes
                        .entry(e.tgid)
                        .or_insert_with(|| ProcessRecord::new(e.tgid, None, &name));
                    r.refresh_identity();
                    let _ = r.maps.refresh(e.tgid);
                    r.reread = REREAD_AFTER_EXEC
                        .iter()
                        .map(|d| Instant::now() + *d)
                        .collect();
                }
                k if k == ProcessEventKind::Exit as u32 => {
                    if let Some(r) = self.processes.get_mut(&e.tgid) {
                        r.exited = true;
                        r.reread.clear();
                    }
                }
                _ => {}
            }
        }
    }

    /// Refreshes the maps of the processes in `pids` (those with samples in a drain), and
    /// learns of processes not seen before (with `-a`, or when an event was lost).
    pub fn refresh(&mut self, pids: impl IntoIterator<Item = u32>) {
        self.handle_events();
        for pid in pids {
            let r = self
                .processes
                .entry(pid)
                .or_insert_with(|| ProcessRecord::new(pid, None, ""));
            if !r.exited && r.maps.refresh(pid).is_err() {
                r.exited = true;
            }
        }
    }

    /// Forgets the processes that exited and are not in `keep` (no open window has their
    /// samples), so a long session following short-lived children stays small.
    pub fn forget_exited(&mut self, keep: &HashSet<u32>) {
        self.processes
            .retain(|pid, r| !r.exited || keep.contains(pid));
    }

    /// Processes that joined the targets since the last call.
    pub fn take_new(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.new)
    }

    pub fn counters(&self) -> Result<Vec<(&'static str, u64)>, RecordError> {
        read_counters::<TargetCounter>(&self.counters)
    }

    pub fn program_cost(&self, bpf: &Ebpf) -> Vec<ProgramCost> {
        if !self.links_attached {
            return Vec::new();
        }
        [FORK_PROGRAM, EXEC_PROGRAM, EXIT_PROGRAM]
            .into_iter()
            .filter_map(|p| program_cost(bpf, p))
            .collect()
    }

    pub fn initial(&self) -> &[TargetProcess] {
        &self.initial
    }

    pub fn into_initial(self) -> Vec<TargetProcess> {
        self.initial
    }

    pub fn is_all(&self) -> bool {
        self.all
    }

    pub fn follows_children(&self) -> bool {
        self.follow
    }

    /// Tgids currently in the kernel set (initial targets still alive and followed children).
    pub fn kernel_set_len(&self) -> usize {
        self.kernel_set.keys().count()
    }
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until one of `fds` is readable or `timeout` passes.
fn poll_fds(fds: &[RawFd], timeout: Duration) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Rounded up: rounded down, the last fraction of a millisecond would be a 0 ms poll,
    // and the caller's loop would spin until its deadline.
    let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    // SAFETY: a valid array of pollfds (possibly empty: then poll just sleeps).
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
}
