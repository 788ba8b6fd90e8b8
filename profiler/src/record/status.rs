//! What a person sees: the live status line while recording (only on a terminal) and the
//! summary at the end, written so that each line says what to do when something is off.

use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use profiler_ebpf::Counter;

use super::StopReason;
use super::assemble::{Meta, Stats};
use super::sampler::ProgramCost;

pub struct StatusLine {
    bar: ProgressBar,
}

impl StatusLine {
    pub fn new(enabled: bool, pid: u32, command: &str) -> Self {
        let bar = if enabled && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} recording pid {prefix} {elapsed_precise}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let short: String = command.chars().take(40).collect();
            bar.set_prefix(format!("{pid} ({short})"));
            bar
        } else {
            ProgressBar::hidden()
        };
        StatusLine { bar }
    }

    /// `samples` is only asked for when the line is shown: reading the counters costs a
    /// syscall per counter, wasted when nobody looks.
    pub fn update(&self, elapsed: Duration, samples: impl FnOnce() -> u64) {
        if self.bar.is_hidden() {
            return;
        }
        let samples = samples();
        let rate = samples as f64 / elapsed.as_secs_f64().max(1e-3);
        self.bar
            .set_message(format!("{samples} samples ({rate:.0}/s)  Ctrl-C to stop"));
        self.bar.tick();
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The end-of-recording report. The caller adds the files it wrote.
#[derive(Debug, Clone)]
pub struct Summary {
    pub pid: u32,
    pub command: String,
    pub stop: StopReason,
    pub duration: Duration,
    pub frequency: u64,
    pub samples: u64,
    pub samples_taken: u64,
    pub lost_samples: u64,
    pub threads: usize,
    pub missing_user_stack: u64,
    pub truncated_user_stack: u64,
    pub stack_collisions: u64,
    pub frames: u64,
    pub unsymbolized_frames: u64,
    pub program_cost: Option<ProgramCost>,
    pub files: Vec<(String, PathBuf)>,
    /// From the end of sampling to every output written.
    pub finish: Option<Duration>,
}

impl Summary {
    pub(super) fn new(meta: &Meta, stats: &Stats) -> Self {
        Summary {
            pid: meta.pid,
            command: meta.command.clone(),
            stop: meta.stop,
            duration: meta.duration,
            frequency: meta.frequency,
            samples: stats.samples,
            samples_taken: meta.counter(Counter::TargetSamples),
            lost_samples: meta.counter(Counter::CountsFull),
            threads: stats.threads,
            missing_user_stack: stats.missing_user_stack,
            truncated_user_stack: stats.truncated_user_stack,
            stack_collisions: meta.counter(Counter::UserStackCollision)
                + meta.counter(Counter::KernelStackCollision)
                + meta.counter(Counter::UserStackMapFull)
                + meta.counter(Counter::KernelStackMapFull),
            frames: stats.frames,
            unsymbolized_frames: stats.unsymbolized_frames,
            program_cost: meta.program_cost,
            files: Vec::new(),
            finish: None,
        }
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The profiler's own CPU time (user + system) and peak RSS in KiB.
pub fn own_usage() -> (Duration, u64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as u64)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.duration.as_secs_f64();
        let ended = match self.stop {
            StopReason::Duration => "duration reached",
            StopReason::TargetExited => "target exited",
            StopReason::Interrupted => "interrupted",
        };
        writeln!(
            f,
            "recorded pid {} ({}) for {secs:.2} s ({ended})",
            self.pid, self.command
        )?;
        let rate = self.samples as f64 / secs.max(1e-3);
        writeln!(
            f,
            "  samples:      {} at {rate:.1}/s (requested {} Hz per CPU; {rate_share:.0}% of one CPU busy in the target)",
            self.samples,
            self.frequency,
            rate_share = 100.0 * rate / self.frequency as f64
        )?;
        writeln!(f, "  threads seen: {}", self.threads)?;
        if self.samples == 0 {
            writeln!(
                f,
                "  note: no samples: the target did not run on a CPU while recording (idle or sleeping)"
            )?;
        }
        if self.lost_samples > 0 {
            writeln!(
                f,
                "  lost:         {} samples ({:.1}%): the count map was full; record for less time or at a lower -F",
                self.lost_samples,
                pct(self.lost_samples, self.samples_taken)
            )?;
        }
        writeln!(
            f,
            "  stacks:       {:.1}% without a user stack, {:.1}% truncated at 127 frames{}",
            pct(self.missing_user_stack, self.samples),
            pct(self.truncated_user_stack, self.samples),
            if self.stack_collisions > 0 {
                format!(", {} lost to stack-map collisions", self.stack_collisions)
            } else {
                String::new()
            }
        )?;
        let unsym = pct(self.unsymbolized_frames, self.frames);
        writeln!(
            f,
            "  symbols:      {unsym:.1}% of frames unsymbolized{}",
            if unsym > 5.0 {
                " (shown as module+0xoffset; build the target with debug info / symbols to name them)"
            } else {
                ""
            }
        )?;
        let (cpu, rss_kib) = own_usage();
        writeln!(
            f,
            "  profiler:     {:.2} s CPU ({:.2}% of one core), peak RSS {:.1} MiB",
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / secs.max(1e-3),
            rss_kib as f64 / 1024.0
        )?;
        if let Some(cost) = self.program_cost {
            writeln!(
                f,
                "  in kernel:    {:.2} s in the eBPF program over {} runs ({:.2} us per run, {:.2}% of one core)",
                cost.run_time.as_secs_f64(),
                cost.runs,
                cost.run_time.as_secs_f64() * 1e6 / cost.runs.max(1) as f64,
                100.0 * cost.run_time.as_secs_f64() / secs.max(1e-3)
            )?;
        }
        if let Some(finish) = self.finish {
            writeln!(
                f,
                "  finishing:    {:.3} s from the end of sampling to all outputs written",
                finish.as_secs_f64()
            )?;
        }
        for (what, path) in &self.files {
            writeln!(f, "  {what:<13} {}", path.display())?;
        }
        Ok(())
    }
}
