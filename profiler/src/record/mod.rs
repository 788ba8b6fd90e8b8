//! Recording: load and attach the eBPF programs, drain their maps, follow the target's life,
//! and turn what was sampled into a `Profile`. `record` is the whole job from validated options
//! to a symbolized profile; writing files is the caller's (it knows the formats).

mod assemble;
mod sampler;
mod status;
mod target;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::profile::Profile;
use crate::symbolize::{ProcessMaps, Symbolizer};

pub use status::Summary;
pub use target::TargetProcess;

/// Highest accepted sampling frequency: above this the profiler disturbs the target more
/// than it measures it (and the kernel throttles perf events anyway).
pub const MAX_FREQUENCY: u64 = 10_000;

/// How often the maps are drained while recording: keeps stack maps far from full and spreads
/// symbolization over the recording, so the end is quick. Stack-map collisions grow with the
/// square of the stacks gathered per interval, so higher frequencies drain more often: about
/// 100 samples per CPU per interval, between 200 ms and 1 s.
fn drain_interval(frequency: u64) -> Duration {
    let ms = 100_000 / frequency.max(1);
    Duration::from_millis(ms.clamp(200, 1000))
}
/// How often the loop wakes to check Ctrl-C and refresh the status line.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Pid(u32),
    /// argv of a command to launch and profile until it exits.
    Command(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub target: TargetSpec,
    /// None: until Ctrl-C or the target exits.
    pub duration: Option<Duration>,
    pub frequency: u64,
    /// Draw a live status line on stderr (only when it is a terminal).
    pub show_status: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "frequency {0} Hz is out of range: use 1..={MAX_FREQUENCY} (default 99; 999 for short runs)"
    )]
    InvalidFrequency(u64),
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
    OutputPath { path: PathBuf, reason: String },
    #[error("eBPF: {0}")]
    Bpf(String),
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
}

impl RecordError {
    /// Maps a load/attach failure to the privileges message when that is what it is.
    fn from_load(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>()
                && matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
            {
                return RecordError::NeedPrivileges(format!("the kernel refused: {io}"));
            }
            cur = e.source();
        }
        let mut text = err.to_string();
        let mut src = err.source();
        while let Some(e) = src {
            text.push_str(": ");
            text.push_str(&e.to_string());
            src = e.source();
        }
        RecordError::Bpf(text)
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

/// A finished recording: the profile, what to tell the user, and the target (a launched
/// command may still be running, see `finish_target`).
pub struct Recording {
    pub profile: Profile,
    pub summary: Summary,
    pub stop: StopReason,
    /// When sampling stopped: the caller measures how long finishing (symbolization, writing)
    /// took from here.
    pub stopped_at: Instant,
    target: TargetProcess,
}

impl Recording {
    /// For a launched command: lets it finish (after forwarding an interrupt, if recording was
    /// interrupted) and returns its exit code. None for `--pid` targets.
    pub fn finish_target(&mut self) -> Option<i32> {
        if !self.target.is_launched() {
            return None;
        }
        if self.stop == StopReason::Interrupted {
            self.target.interrupt();
        }
        self.target.wait_exit_code()
    }
}

/// Installs Ctrl-C handling: the first SIGINT/SIGTERM sets the returned flag (recording ends
/// and every output is still written), a second one exits at once with 130.
fn install_interrupt() -> Result<Arc<AtomicBool>, RecordError> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&flag)))
            .map_err(|e| RecordError::Io("installing the Ctrl-C handler".into(), e))?;
    }
    Ok(flag)
}

/// Records until the duration elapses, the target exits, or Ctrl-C; returns the symbolized
/// profile. Options are validated here too, so library callers get the same errors.
pub fn record(opts: &RecordOptions) -> Result<Recording, RecordError> {
    check_frequency(opts.frequency)?;
    check_privileges()?;
    let mut target = match &opts.target {
        TargetSpec::Pid(pid) => TargetProcess::open(*pid)?,
        TargetSpec::Command(argv) => TargetProcess::launch(argv)?,
    };
    let pid = target.pid();
    let mut maps = ProcessMaps::default();
    let mut sampler = sampler::Sampler::attach(pid, opts.frequency)?;
    // For --pid, a target gone by now was never recorded: say so rather than write nothing.
    if !target.is_launched() && target.has_exited() {
        return Err(RecordError::ExitedBeforeAttach(pid));
    }
    let interrupted = install_interrupt()?;
    target.release()?;
    let _ = maps.refresh(pid);
    tracing::info!(pid, frequency = opts.frequency, "recording started");

    let started = Instant::now();
    let wall_start = SystemTime::now();
    let status = status::StatusLine::new(opts.show_status, pid, target.command_line());
    let mut raw = sampler::RawSamples::default();
    let mut symbolizer = Symbolizer::new();
    let mut resolver = assemble::Resolver::default();
    let mut last_drain = Instant::now();
    let drain_every = drain_interval(opts.frequency);
    let stop = loop {
        let remaining = opts.duration.map(|d| d.saturating_sub(started.elapsed()));
        if remaining == Some(Duration::ZERO) {
            break StopReason::Duration;
        }
        let wait = remaining.map_or(TICK, |r| r.min(TICK));
        if target.wait_exit(wait) {
            break StopReason::TargetExited;
        }
        if interrupted.load(Ordering::Relaxed) {
            break StopReason::Interrupted;
        }
        if last_drain.elapsed() >= drain_every {
            last_drain = Instant::now();
            sampler.drain(&mut raw)?;
            // Maps first: the addresses just drained belong to the mappings of now.
            if maps.refresh(pid).is_ok() {
                resolver.resolve_new(&raw, &maps, &mut symbolizer);
            }
        }
        status.update(started.elapsed(), || sampler.samples_seen());
    };
    let elapsed = started.elapsed();
    sampler.stop();
    let stopped_at = Instant::now();
    status.finish();
    if stop == StopReason::Interrupted {
        eprintln!("interrupted: writing what was recorded (Ctrl-C again to abort)");
    }
    sampler.drain_all(&mut raw)?;
    let counters = sampler.counters()?;
    let threads = sampler.thread_names()?;
    let unreadable_stacks = sampler.unreadable_stacks;
    let program_cost = sampler.program_cost();
    drop(sampler);
    // A last look at the maps catches libraries loaded since the previous drain.
    let _ = maps.refresh(pid);
    resolver.resolve_new(&raw, &maps, &mut symbolizer);

    let meta = assemble::Meta {
        pid,
        command: target.command_line().to_string(),
        frequency: opts.frequency,
        duration: elapsed,
        start: wall_start,
        counters,
        unreadable_stacks,
        program_cost,
        stop,
    };
    let (profile, stats) =
        assemble::build_profile(&raw, &threads, &maps, &resolver, &mut symbolizer, &meta);
    let summary = Summary::new(&meta, &stats);
    Ok(Recording {
        profile,
        summary,
        stop,
        stopped_at,
        target,
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
        assert_eq!(drain_interval(1), Duration::from_secs(1));
        assert_eq!(drain_interval(99), Duration::from_secs(1));
        assert_eq!(drain_interval(250), Duration::from_millis(400));
        assert_eq!(drain_interval(999), Duration::from_millis(200));
        assert_eq!(drain_interval(MAX_FREQUENCY), Duration::from_millis(200));
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
