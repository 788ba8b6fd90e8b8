//! Recording: a [`Session`] over collectors (one eBPF program and one module each: `cpu`,
//! ...), from validated options to written outputs. `record` is the whole job of
//! `profiler record`; the session is the reusable part (watch and serve drive it too).
//!
//! Data flow: collectors' programs aggregate in kernel maps → `Session::drain` flips the map
//! sets, reads counts and new stacks, refreshes process maps, resolves symbols → consumers add
//! each `Batch` to their windows (`RawSamples`) → `Session::build` assembles a `Profile` →
//! `capture` writes it, `render` draws it.

mod assemble;
mod btf;
pub mod collector;
pub mod cpu;
pub mod faults;
pub mod health;
pub mod heap;
pub mod kernel;
pub mod offcpu;
mod outputs;
mod process;
pub mod sched;
pub mod session;
mod status;
pub mod targets;
pub mod timeline;
mod uprobe;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::capture::info::{CollectorInfo, ProgramCostInfo, RecordingInfo, TargetInfo};
use crate::profile::Profile;
use crate::unwind::CallGraph;

pub use btf::BtfError;
pub use collector::{Batch, Collector, RawSamples};
pub use cpu::{CpuCollector, MAX_FREQUENCY};
pub use faults::PageFaultCollector;
pub use heap::{HeapCollector, HeapMode, HeapOptions};
pub use offcpu::{OffCpuCollector, OffCpuOptions};
pub use outputs::Outputs;
use outputs::Snapshots;
pub use process::TargetProcess;
pub use session::{Retained, Session};
pub use status::Summary;
pub use targets::Wake;

/// How often the loop wakes to check Ctrl-C and refresh the status line.
const TICK: Duration = Duration::from_millis(100);

/// Which processes to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// Running processes; with `follow_children`, the processes they start later too.
    Pids {
        pids: Vec<u32>,
        follow_children: bool,
    },
    /// argv of a command to launch and profile, with all its descendants, until it exits.
    Command(Vec<String>),
    /// Every process on the machine (but the profiler).
    All,
}

/// Options of `profiler record`, with the CLI's defaults.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub target: TargetSpec,
    /// None: until Ctrl-C or the target exits.
    pub duration: Option<Duration>,
    /// Sample on-CPU stacks (at `frequency`).
    pub cpu: bool,
    pub frequency: u64,
    /// How user stacks of perf-event samples (cpu, page faults) are taken.
    pub call_graph: CallGraph,
    /// Record off-CPU time, with these options.
    pub offcpu: Option<OffCpuOptions>,
    /// Record heap profiles, with these options.
    pub heap: Option<HeapOptions>,
    /// Record page faults, every Nth.
    pub page_faults: Option<u64>,
    /// Also write a numbered capture (the heap state then) this often.
    pub snapshot_every: Option<Duration>,
    /// Draw a live status line on stderr (only when it is a terminal).
    pub show_status: bool,
    pub outputs: Outputs,
}

impl RecordOptions {
    pub fn new(target: TargetSpec) -> Self {
        RecordOptions {
            target,
            duration: None,
            cpu: true,
            frequency: 99,
            call_graph: CallGraph::default(),
            offcpu: None,
            heap: None,
            page_faults: None,
            snapshot_every: None,
            show_status: true,
            outputs: Outputs::default(),
        }
    }

    /// Everything that can be checked before recording: a bad option fails here, before any
    /// program is loaded or command launched.
    pub fn validate(&self) -> Result<(), RecordError> {
        check_frequency(self.frequency)?;
        if !self.cpu && self.offcpu.is_none() && self.heap.is_none() && self.page_faults.is_none() {
            return Err(RecordError::NoCollector);
        }
        if self.snapshot_every == Some(Duration::ZERO) {
            return Err(RecordError::InvalidDuration);
        }
        if self.heap.is_some() && self.target == TargetSpec::All {
            return Err(RecordError::HeapNeedsTargets);
        }
        if self.duration == Some(Duration::ZERO) {
            return Err(RecordError::InvalidDuration);
        }
        match &self.target {
            TargetSpec::Pids { pids, .. } if pids.is_empty() => {
                return Err(RecordError::NothingToRecord);
            }
            TargetSpec::Command(argv) if argv.is_empty() => return Err(RecordError::EmptyCommand),
            _ => {}
        }
        self.outputs.check()?;
        check_privileges()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "frequency {0} Hz is out of range: use 1..={MAX_FREQUENCY} (default 99; 999 for short runs)"
    )]
    InvalidFrequency(u64),
    #[error("the duration must be longer than 0")]
    InvalidDuration,
    #[error(
        "nothing to record: give --pid PID, -a for every process, or a command after `--` (e.g. `-- ./my-bench`)"
    )]
    NothingToRecord,
    #[error("pid {0} does not exist (check it with `ps -p {0}` or `pgrep`)")]
    NoSuchPid(u32),
    #[error("pid {0} exited before recording could start; nothing was recorded")]
    ExitedBeforeAttach(u32),
    #[error(
        "recording needs root or the CAP_BPF and CAP_PERFMON capabilities ({0}); run it with sudo, e.g. `sudo profiler record ...`"
    )]
    NeedPrivileges(String),
    #[error("command not found: {0:?} (not an executable path, and not found on PATH)")]
    CommandNotFound(String),
    #[error("could not run {0:?}: {1}")]
    CommandFailed(String, #[source] io::Error),
    #[error("the command after `--` is empty; give a program to run, e.g. `-- ./my-bench`")]
    EmptyCommand,
    #[error("bad command: {0}")]
    BadCommand(String),
    #[error("cannot write {}: {reason}; choose a writable path", path.display())]
    OutputPath {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("writing the outputs")]
    Write(#[from] crate::capture::CaptureError),
    #[error("rendering the outputs")]
    Render(#[from] crate::render::RenderError),
    #[error("eBPF: {what}")]
    Bpf {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the embedded eBPF object has no {0}; the build is broken, rebuild the profiler")]
    MissingInObject(String),
    #[error("--page-fault-period must be at least 1 (every fault)")]
    InvalidFaultPeriod,
    #[error("--heap-rate must be at least 1 byte (default 524288: one sample per 512 KiB)")]
    InvalidHeapRate,
    #[error(
        "pid {0} does not link the heap-sampler allocator (no heap_sampler USDT probes in its program); drop --heap-mode sampler to probe its allocator instead"
    )]
    NoHeapSampler(u32),
    #[error("cannot read the USDT probe {probe}'s arguments ({args})")]
    UsdtArgs { probe: String, args: String },
    #[error(
        "--heap needs target processes (--pid or a command), not -a: probing every process's allocator would slow the whole machine"
    )]
    HeapNeedsTargets,
    #[error("--heap: nothing to probe: {0}")]
    NothingToHook(String),
    #[error("the {0} collector was used before it was attached")]
    NotAttached(&'static str),
    #[error(
        "nothing to collect: give --cpu, --offcpu, --heap and/or --page-faults (the default is --cpu)"
    )]
    NoCollector,
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(transparent)]
    Unwind(#[from] crate::unwind::UnwindError),
    #[error("{0}")]
    Io(String, #[source] io::Error),
    #[error("the {0} collector cannot be resumed after a pause")]
    CannotResume(&'static str),
    #[error("no collector named {0} in this session")]
    NoSuchCollector(String),
}

impl RecordError {
    /// Maps a load/attach failure to the privileges message when that is what it is.
    pub fn from_load<E: std::error::Error + Send + Sync + 'static>(err: E) -> Self {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>()
                && matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
            {
                return RecordError::NeedPrivileges(format!("the kernel refused: {io}"));
            }
            cur = e.source();
        }
        RecordError::Bpf {
            what: "loading or attaching the programs".into(),
            source: Box::new(err),
        }
    }
}

/// Checks up front that `path` can be written, so a bad path fails before any recording.
/// Creates nothing that stays: a file made for the check is removed again.
pub fn check_output_path(path: &Path) -> Result<(), RecordError> {
    let fail = |reason: String| RecordError::OutputPath {
        path: path.to_path_buf(),
        reason,
    };
    if path.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    let existed = path.exists();
    match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                Err(fail(format!(
                    "directory {} does not exist",
                    parent.display()
                )))
            } else {
                Err(fail(e.to_string()))
            }
        }
    }
}

pub fn check_frequency(frequency: u64) -> Result<(), RecordError> {
    if frequency == 0 || frequency > MAX_FREQUENCY {
        return Err(RecordError::InvalidFrequency(frequency));
    }
    Ok(())
}

/// Fails early, with the capabilities named, when this process cannot load eBPF programs.
pub fn check_privileges() -> Result<(), RecordError> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| RecordError::Io("reading /proc/self/status".into(), e))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(c, _)| !has(*c))
        .map(|(_, n)| n)
        .collect();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    Err(RecordError::NeedPrivileges(format!(
        "running as uid {euid} without {}",
        missing.join(" and ")
    )))
}

/// Why recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Duration,
    TargetExited,
    Interrupted,
}

impl StopReason {
    pub fn words(self) -> &'static str {
        match self {
            StopReason::Duration => "duration",
            StopReason::TargetExited => "target exit",
            StopReason::Interrupted => "Ctrl-C",
        }
    }
}

/// A finished recording: its outputs are written; the profile and summary are for the caller.
pub struct Recording {
    pub profile: Profile,
    pub summary: Summary,
    pub stop: StopReason,
    targets: Vec<TargetProcess>,
}

impl Recording {
    /// For a launched command: lets it finish (after forwarding an interrupt, if recording was
    /// interrupted) and returns its exit code. None for `--pid` targets.
    pub fn finish_target(&mut self) -> Option<i32> {
        let launched = self.targets.iter_mut().find(|t| t.is_launched())?;
        if self.stop == StopReason::Interrupted {
            launched.interrupt();
        }
        launched.wait_exit_code()
    }
}

/// Installs Ctrl-C handling: the first SIGINT/SIGTERM sets the returned flag (recording ends
/// and every output is still written), a second one exits at once with 130.
pub fn install_interrupt() -> Result<Arc<AtomicBool>, RecordError> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&flag)))
            .map_err(|e| RecordError::Io("installing the Ctrl-C handler".into(), e))?;
    }
    Ok(flag)
}

/// Records until the duration elapses, the targets exit, or Ctrl-C; writes every output and
/// returns the profile and the summary. Options are validated first, once.
pub fn record(opts: &RecordOptions) -> Result<Recording, RecordError> {
    opts.validate()?;
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    if opts.cpu {
        collectors.push(Box::new(
            CpuCollector::new(opts.frequency)?.with_call_graph(opts.call_graph),
        ));
    }
    if let Some(o) = opts.offcpu {
        collectors.push(Box::new(
            OffCpuCollector::new(o).with_call_graph(opts.call_graph),
        ));
    }
    if let Some(o) = opts.heap {
        collectors.push(Box::new(HeapCollector::new(o)?));
    }
    if let Some(period) = opts.page_faults {
        collectors.push(Box::new(
            PageFaultCollector::new(period)?.with_call_graph(opts.call_graph),
        ));
    }
    let mut session = Session::start_with_call_graph(&opts.target, collectors, opts.call_graph)?;
    let interrupted = install_interrupt()?;
    tracing::info!(frequency = opts.frequency, "recording started");

    let started = Instant::now();
    let wall_start = SystemTime::now();
    let label = target_infos(&session)
        .iter()
        .map(|t| format!("pid {}", t.pid))
        .collect::<Vec<_>>()
        .join(",");
    let status = status::StatusLine::new(opts.show_status, &label);
    let mut whole = RawSamples::default();
    let mut last_drain = Instant::now();
    let mut snapshots = Snapshots::new(opts);
    let stop = loop {
        let remaining = opts.duration.map(|d| d.saturating_sub(started.elapsed()));
        if remaining == Some(Duration::ZERO) {
            break StopReason::Duration;
        }
        let wait = remaining.map_or(TICK, |r| r.min(TICK));
        if session.wait(wait)? == Wake::TargetsExited {
            break StopReason::TargetExited;
        }
        if interrupted.load(Ordering::Relaxed) {
            break StopReason::Interrupted;
        }
        if last_drain.elapsed() >= session.drain_interval() {
            last_drain = Instant::now();
            whole.add(&session.drain()?);
        }
        if snapshots.due() {
            whole.add(&session.drain()?);
            let mut window = whole.clone();
            window.add(&session.snapshot()?);
            let (mut profile, stats) = session.build(&window);
            let info = recording_info(
                &session,
                &stats,
                wall_start,
                started.elapsed(),
                "snapshot",
                &opts.target,
            )?;
            info.write_into(&mut profile);
            snapshots.write(&profile)?;
        }
        status.update(started.elapsed(), || session.events_seen());
    };
    let elapsed = started.elapsed();
    let last = session.stop()?;
    let stopped_at = Instant::now();
    status.finish();
    if stop == StopReason::Interrupted {
        eprintln!("interrupted: writing what was recorded (Ctrl-C again to abort)");
    }
    whole.add(&last);
    // The state at the end (the live heap), beside the events of the whole run.
    whole.add(&session.snapshot()?);
    let (mut profile, stats) = session.build(&whole);
    let info = recording_info(
        &session,
        &stats,
        wall_start,
        elapsed,
        stop.words(),
        &opts.target,
    )?;
    info.write_into(&mut profile);
    let mut files = opts.outputs.write(&profile)?;
    if snapshots.enabled() {
        snapshots.write(&profile)?;
        files.push(snapshots.summary_line());
    }
    let summary = Summary {
        collector_lines: session.summary_lines(&profile),
        totals: session
            .sample_types()
            .iter()
            .cloned()
            .zip(stats.totals.iter().copied())
            .collect(),
        invariant_violations: session.invariant_violations()?,
        info,
        stop,
        frequency: opts.cpu.then_some(opts.frequency),
        files,
        finish: Some(stopped_at.elapsed()),
    };
    Ok(Recording {
        profile,
        summary,
        stop,
        targets: session.into_targets(),
    })
}

fn target_infos(session: &Session) -> Vec<TargetInfo> {
    session
        .targets()
        .initial()
        .iter()
        .map(|t| TargetInfo {
            pid: t.pid(),
            command: t.command_line().to_string(),
        })
        .collect()
}

/// The capture's metadata for what `session` recorded.
pub fn recording_info(
    session: &Session,
    stats: &assemble::Stats,
    start: SystemTime,
    duration: Duration,
    ended_by: &str,
    spec: &TargetSpec,
) -> Result<RecordingInfo, RecordError> {
    let (scope, command) = match spec {
        TargetSpec::Pids { .. } => ("pids", None),
        TargetSpec::Command(argv) => ("command", Some(argv.join(" "))),
        TargetSpec::All => ("all", None),
    };
    Ok(RecordingInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "record".to_string(),
        targets: target_infos(session),
        scope: scope.to_string(),
        command,
        started_unix_nanos: start
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
        duration_nanos: duration.as_nanos() as i64,
        ended_by: ended_by.to_string(),
        collectors: session
            .collectors()
            .map(|c| CollectorInfo {
                name: c.name().to_string(),
                description: c.describe(),
            })
            .collect(),
        counters: session.counters()?,
        program_cost: session
            .program_cost()
            .into_iter()
            .map(|c| ProgramCostInfo {
                program: c.program.to_string(),
                runs: c.runs,
                run_time_ns: c.run_time.as_nanos() as u64,
            })
            .collect(),
        processes: stats.processes as u64,
        threads: stats.threads as u64,
        health: stats.health.clone(),
        unwind: session.unwind_report().clone(),
        frames: stats.frames,
        unsymbolized: stats
            .unsymbolized
            .iter()
            .map(|(r, n)| (r.name().to_string(), *n))
            .collect(),
        notes: session.notes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_bounds() {
        assert!(matches!(
            check_frequency(0),
            Err(RecordError::InvalidFrequency(0))
        ));
        assert!(matches!(
            check_frequency(10_001),
            Err(RecordError::InvalidFrequency(10_001))
        ));
        assert!(check_frequency(1).is_ok());
        assert!(check_frequency(MAX_FREQUENCY).is_ok());
        let msg = RecordError::InvalidFrequency(0).to_string();
        assert!(msg.contains("0 Hz") && msg.contains("1..=10000"), "{msg}");
    }

    #[test]
    fn drain_interval_shrinks_with_frequency() {
        let di = |f| CpuCollector::new(f).unwrap().drain_interval();
        assert_eq!(di(1), Duration::from_secs(1));
        assert_eq!(di(99), Duration::from_secs(1));
        assert_eq!(di(250), Duration::from_millis(400));
        assert_eq!(di(999), Duration::from_millis(200));
        assert_eq!(di(MAX_FREQUENCY), Duration::from_millis(200));
    }

    #[test]
    fn map_sizes_follow_cpus_frequency_and_interval() {
        let sizing = |cpus, ms| collector::Sizing {
            cpus,
            drain_interval: Duration::from_millis(ms),
        };
        // 64 CPUs at 99 Hz over 1 s: 6,336 samples at most, times the margin of 4.
        assert_eq!(sizing(64, 1000).entries_per_interval(99), 25_344);
        // A small machine gets the floor.
        assert_eq!(sizing(2, 1000).entries_per_interval(99), 1024);
        let cpu = CpuCollector::new(99).unwrap();
        assert_eq!(cpu.stacks_per_interval(&sizing(64, 1000)), 50_688);
    }

    #[test]
    fn options_are_checked_before_anything_runs() {
        let mut o = RecordOptions::new(TargetSpec::Pids {
            pids: vec![],
            follow_children: false,
        });
        assert!(matches!(o.validate(), Err(RecordError::NothingToRecord)));
        o.target = TargetSpec::Command(vec![]);
        assert!(matches!(o.validate(), Err(RecordError::EmptyCommand)));
        o.target = TargetSpec::All;
        o.duration = Some(Duration::ZERO);
        assert!(matches!(o.validate(), Err(RecordError::InvalidDuration)));
        o.duration = None;
        o.frequency = 0;
        assert!(matches!(
            o.validate(),
            Err(RecordError::InvalidFrequency(0))
        ));
    }

    #[test]
    fn output_path_checks() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("cpu.pb.gz");
        check_output_path(&fresh).unwrap();
        assert!(!fresh.exists(), "the check must not leave a file behind");
        std::fs::write(&fresh, b"keep").unwrap();
        check_output_path(&fresh).unwrap();
        assert_eq!(
            std::fs::read(&fresh).unwrap(),
            b"keep",
            "the check must not truncate"
        );
        let err = check_output_path(&dir.path().join("missing/cpu.pb.gz"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not exist") && err.contains("missing"),
            "{err}"
        );
        let err = check_output_path(dir.path()).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
    }
}
