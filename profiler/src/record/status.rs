//! What a person sees: the live status line while recording (only on a terminal) and the
//! summary at the end, written so that each line says what to do when something is off.

use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::StopReason;
use crate::capture::info::RecordingInfo;
use crate::profile::ValueType;
use crate::symbolize::MissReason;

pub struct StatusLine {
    bar: ProgressBar,
}

impl StatusLine {
    pub fn new(enabled: bool, target: &str) -> Self {
        let bar = if enabled && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} recording {prefix} {elapsed_precise}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(target.chars().take(50).collect::<String>());
            bar
        } else {
            ProgressBar::hidden()
        };
        StatusLine { bar }
    }

    /// `events` is only asked for when the line is shown: reading the counters costs a
    /// syscall per counter, wasted when nobody looks.
    pub fn update(&self, elapsed: Duration, events: impl FnOnce() -> u64) {
        if self.bar.is_hidden() {
            return;
        }
        let n = events();
        let rate = n as f64 / elapsed.as_secs_f64().max(1e-3);
        self.bar
            .set_message(format!("{n} events ({rate:.0}/s)  Ctrl-C to stop"));
        self.bar.tick();
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The end-of-recording report.
#[derive(Debug, Clone)]
pub struct Summary {
    pub info: RecordingInfo,
    pub stop: StopReason,
    /// Sampling frequency of the cpu collector, when it ran.
    pub frequency: Option<u64>,
    /// Every sample type with its total over the profile.
    pub totals: Vec<(ValueType, i64)>,
    /// What each collector has to say about what it recorded.
    pub collector_lines: Vec<String>,
    /// Counter invariants that did not hold (a profiler bug if ever non-empty).
    pub invariant_violations: Vec<String>,
    pub files: Vec<(String, PathBuf)>,
    /// From the end of sampling to every output written.
    pub finish: Option<Duration>,
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

impl Summary {
    fn total(&self, kind: &str) -> Option<i64> {
        self.totals
            .iter()
            .find(|(t, _)| t.kind == kind)
            .map(|(_, v)| *v)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = &self.info;
        let secs = info.duration_nanos as f64 / 1e9;
        let ended = match self.stop {
            StopReason::Duration => "duration reached",
            StopReason::TargetExited => "target exited",
            StopReason::Interrupted => "interrupted",
        };
        writeln!(
            f,
            "recorded {} for {secs:.2} s ({ended})",
            info.target_label()
        )?;
        if let Some(c) = &info.command {
            writeln!(f, "  command:      {c}")?;
        }
        let followed = info.counter("targets", "child_followed");
        writeln!(
            f,
            "  seen:         {} process(es){}, {} thread(s)",
            info.processes,
            if followed > 0 {
                format!(" ({followed} child process(es) followed)")
            } else {
                String::new()
            },
            info.threads
        )?;
        if let (Some(freq), Some(samples)) = (self.frequency, self.total("samples")) {
            let rate = samples as f64 / secs.max(1e-3);
            writeln!(
                f,
                "  samples:      {samples} at {rate:.1}/s (requested {freq} Hz per CPU; {:.0}% of one CPU busy in the targets)",
                100.0 * rate / freq as f64
            )?;
            if samples == 0 {
                writeln!(
                    f,
                    "  note:         no samples: the targets did not run on a CPU while recording (idle or sleeping)"
                )?;
            }
            let lost = info.counter("cpu", "counts_full") + info.counter("cpu", "counts_error");
            if lost > 0 {
                writeln!(
                    f,
                    "  lost:         {lost} samples ({:.1}%): the count map was full; record at a lower -F",
                    pct(lost, info.counter("cpu", "target_samples"))
                )?;
            }
            let ring_full = info.counter("cpu", "copy_ring_full");
            if ring_full > 0 {
                writeln!(
                    f,
                    "  copies:       {ring_full} samples ({:.1}%) found the stack-copy ring full and were walked with frame pointers instead; record at a lower -F or --stack-size",
                    pct(ring_full, info.counter("cpu", "target_samples"))
                )?;
            }
        }
        for line in &self.collector_lines {
            writeln!(f, "  {line}")?;
        }
        let mut unwind = String::new();
        info.write_unwind_report(&mut unwind);
        for line in unwind.lines() {
            writeln!(f, "  {line}")?;
        }
        let health = info.health.total();
        if health.total() > 0 {
            let broken: Vec<String> = info
                .health
                .by_program
                .iter()
                .filter(|(_, h)| h.cut() > 0)
                .map(|(p, h)| {
                    let ended = h
                        .ended_in
                        .iter()
                        .max_by_key(|(_, n)| **n)
                        .map(|(m, _)| format!(", mostly ended in {m}"))
                        .unwrap_or_default();
                    format!("{p} {:.1}% cut{ended}", pct(h.cut(), h.total()))
                })
                .collect();
            writeln!(
                f,
                "  stacks:       {:.1}% whole (reach a root frame), {:.1}% cut{}, {:.1}% without a user stack",
                pct(health.whole, health.total()),
                pct(health.cut(), health.total()),
                if broken.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", broken.join("; "))
                },
                pct(health.missing, health.total())
            )?;
            if pct(health.cut(), health.total()) > 5.0 {
                writeln!(
                    f,
                    "                cut stacks lost their callers: record with --call-graph dwarf (or a larger --stack-size), or build those programs with frame pointers (-fno-omit-frame-pointer, -C force-frame-pointers=yes)"
                )?;
            }
        }
        let unsym = info.unsymbolized_frames();
        let reasons: Vec<String> = info
            .unsymbolized
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| {
                let advice = MissReason::from_name(r).map_or("", |m| m.advice());
                format!("{r} {:.1}%: {advice}", pct(*n, info.frames))
            })
            .collect();
        writeln!(
            f,
            "  symbols:      {:.1}% of frames unsymbolized{}",
            pct(unsym, info.frames),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join("; "))
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
        for cost in info.program_cost.iter().filter(|c| c.runs > 0) {
            let run = cost.run_time_ns as f64 / 1e9;
            writeln!(
                f,
                "  in kernel:    {run:.3} s in the {} program over {} runs ({:.2} us per run, {:.2}% of one core)",
                cost.program,
                cost.runs,
                run * 1e6 / cost.runs.max(1) as f64,
                100.0 * run / secs.max(1e-3)
            )?;
        }
        for v in &self.invariant_violations {
            writeln!(f, "  BUG:          counter invariant broken: {v}")?;
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
