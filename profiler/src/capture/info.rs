//! Typed recording metadata: what a capture says about how it was made (targets, command,
//! times, collectors, every counter, stack health, unsymbolized frames by reason). It travels
//! in the pprof `comment` strings, one `key: value` line per fact, readable as they are with
//! `go tool pprof -comments`. This module is the only writer and the only reader of those
//! lines; everything else asks it for a [`RecordingInfo`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::record::health::{Health, ProgramHealth};
use crate::unwind::{ObjectReport, ProgramUnwind, UnwindReport};

/// The first comment line of every capture the profiler writes: `profiler VERSION KIND`.
const HEADER: &str = "profiler ";

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TargetInfo {
    pub pid: u32,
    /// Command line (or `[comm]` for kernel threads).
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CollectorInfo {
    pub name: String,
    /// Its parameters in words, e.g. `cpu-clock at 99 Hz per CPU`.
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProgramCostInfo {
    pub program: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

/// Everything a capture records about its recording.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordingInfo {
    /// Tool version, e.g. `0.1.0`.
    pub version: String,
    /// What made it: `record`, `serve`, ...
    pub kind: String,
    /// The initial targets (followed children are counted in `processes`).
    pub targets: Vec<TargetInfo>,
    /// `pids`, `command` or `all`.
    pub scope: String,
    /// The launched command, for `record -- CMD`.
    pub command: Option<String>,
    pub started_unix_nanos: i64,
    pub duration_nanos: i64,
    /// `duration`, `target exit`, `Ctrl-C`, `window`.
    pub ended_by: String,
    pub collectors: Vec<CollectorInfo>,
    /// Counter group (a collector's name, or `targets`) → counter name → value.
    pub counters: BTreeMap<String, BTreeMap<String, u64>>,
    pub program_cost: Vec<ProgramCostInfo>,
    /// Processes and threads that have samples.
    pub processes: u64,
    pub threads: u64,
    pub health: Health,
    /// How user stacks were taken and, per program, which unwinder and how unwinds ended.
    pub unwind: UnwindReport,
    /// Frames over all samples (weighted by events), and the unsymbolized ones by reason.
    pub frames: u64,
    pub unsymbolized: BTreeMap<String, u64>,
    /// Free text for people (caveats, what a value means).
    pub notes: Vec<String>,
}

impl RecordingInfo {
    /// A counter's value, 0 when absent.
    pub fn counter(&self, group: &str, name: &str) -> u64 {
        self.counters
            .get(group)
            .and_then(|g| g.get(name))
            .copied()
            .unwrap_or(0)
    }

    pub fn unsymbolized_frames(&self) -> u64 {
        self.unsymbolized.values().sum()
    }

    /// `pid 4242 (search-server)`, or several joined, for titles.
    pub fn target_label(&self) -> String {
        let short = |t: &TargetInfo| {
            let cmd = t.command.split_whitespace().next().unwrap_or("");
            let cmd = cmd.rsplit('/').next().unwrap_or(cmd);
            format!("pid {} ({cmd})", t.pid)
        };
        match (self.scope.as_str(), self.targets.as_slice()) {
            ("all", _) => "all processes".to_string(),
            (_, [t]) => short(t),
            (_, ts) => ts.iter().map(short).collect::<Vec<_>>().join(", "),
        }
    }

    /// Puts this info into a profile: its comments, start time and duration.
    pub fn write_into(&self, profile: &mut crate::profile::Profile) {
        profile.comments = self.to_comments();
        profile.duration_nanos = self.duration_nanos;
        profile.time_nanos = self.started_unix_nanos;
    }

    /// The comment lines that carry this info.
    pub fn to_comments(&self) -> Vec<String> {
        let mut out = vec![format!("{HEADER}{} {}", self.version, self.kind)];
        for t in &self.targets {
            out.push(format!("target: pid {} ({})", t.pid, t.command));
        }
        out.push(format!("scope: {}", self.scope));
        if let Some(c) = &self.command {
            out.push(format!("command: {c}"));
        }
        out.push(format!(
            "started: {} ns since the epoch",
            self.started_unix_nanos
        ));
        out.push(format!(
            "duration: {}.{:09} s",
            self.duration_nanos / 1_000_000_000,
            self.duration_nanos % 1_000_000_000
        ));
        out.push(format!("ended by: {}", self.ended_by));
        for c in &self.collectors {
            out.push(format!("collector {}: {}", c.name, c.description));
        }
        for (group, counters) in &self.counters {
            out.push(format!("counters {group}: {}", pairs(counters)));
        }
        for p in &self.program_cost {
            out.push(format!(
                "ebpf cost {}: runs={} ns={}",
                escape(&p.program),
                p.runs,
                p.run_time_ns
            ));
        }
        out.push(format!(
            "processes: {} threads: {}",
            self.processes, self.threads
        ));
        for (program, h) in &self.health.by_program {
            let ended: Vec<String> = h
                .ended_in
                .iter()
                .map(|(m, n)| format!("{}:{n}", escape(m)))
                .collect();
            out.push(format!(
                "stacks {}: whole={} depth_limit={} no_root={} missing={} ended_in={}",
                escape(program),
                h.whole,
                h.depth_limit,
                h.no_root,
                h.missing,
                ended.join(",")
            ));
        }
        if !self.unwind.mode.is_empty() {
            out.push(format!(
                "call graph: mode={} stack_size={}",
                self.unwind.mode, self.unwind.stack_size
            ));
        }
        for (program, u) in &self.unwind.by_program {
            out.push(format!(
                "unwind {}: dwarf={} fp={} reached_end={} copy_too_small={} no_unwind_info={} bad_registers={} depth_limit={} bytes={}",
                escape(program),
                u.dwarf,
                u.fp,
                u.reached_end,
                u.copy_too_small,
                u.no_unwind_info,
                u.bad_registers,
                u.depth_limit,
                u.bytes
            ));
        }
        for (object, o) in &self.unwind.objects {
            out.push(format!(
                "object {}: frame_pointers={} cfi={}",
                escape(object),
                if o.frame_pointers { "yes" } else { "no" },
                o.cfi
            ));
        }
        out.push(format!(
            "frames: {} unsymbolized: {}",
            self.frames,
            pairs(&self.unsymbolized)
        ));
        for n in &self.notes {
            out.push(format!("note: {n}"));
        }
        out
    }

    /// Reads the info back from a capture's comments; None when the capture was not written
    /// by this profiler (a Go profile, a folded file). Lines it does not know are skipped, so
    /// newer captures still read.
    pub fn from_comments(comments: &[String]) -> Option<Self> {
        let mut lines = comments.iter();
        let header = lines.find_map(|l| l.strip_prefix(HEADER))?;
        let (version, kind) = header.split_once(' ')?;
        let mut info = RecordingInfo {
            version: version.to_string(),
            kind: kind.to_string(),
            ..Default::default()
        };
        for line in lines {
            let Some((key, value)) = line.split_once(": ") else {
                continue;
            };
            info.read_line(key, value);
        }
        Some(info)
    }

    fn read_line(&mut self, key: &str, value: &str) {
        if let Some(rest) = value.strip_prefix("pid ")
            && key == "target"
            && let Some((pid, cmd)) = rest.split_once(' ')
            && let Ok(pid) = pid.parse()
        {
            let command = cmd
                .strip_prefix('(')
                .and_then(|c| c.strip_suffix(')'))
                .unwrap_or(cmd);
            self.targets.push(TargetInfo {
                pid,
                command: command.to_string(),
            });
            return;
        }
        match key {
            "scope" => self.scope = value.to_string(),
            "command" => self.command = Some(value.to_string()),
            "started" => {
                self.started_unix_nanos = first_number(value).unwrap_or(0);
            }
            "duration" => {
                let secs = value.trim_end_matches(" s");
                let (whole, frac) = secs.split_once('.').unwrap_or((secs, "0"));
                let frac = format!("{frac:0<9}");
                self.duration_nanos = whole.parse::<i64>().unwrap_or(0) * 1_000_000_000
                    + frac[..9].parse::<i64>().unwrap_or(0);
            }
            "ended by" => self.ended_by = value.to_string(),
            "processes" => {
                let mut parts = value.split_whitespace();
                self.processes = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                self.threads = parts.nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            }
            "frames" => {
                let (frames, rest) = value.split_once(" unsymbolized:").unwrap_or((value, ""));
                self.frames = frames.trim().parse().unwrap_or(0);
                self.unsymbolized = read_pairs(rest);
            }
            "note" => self.notes.push(value.to_string()),
            "call graph" => {
                for (k, v) in value.split_whitespace().filter_map(|kv| kv.split_once('=')) {
                    match k {
                        "mode" => self.unwind.mode = v.to_string(),
                        "stack_size" => self.unwind.stack_size = v.parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            _ => {
                if let Some(name) = key.strip_prefix("collector ") {
                    self.collectors.push(CollectorInfo {
                        name: name.to_string(),
                        description: value.to_string(),
                    });
                } else if let Some(group) = key.strip_prefix("counters ") {
                    self.counters.insert(group.to_string(), read_pairs(value));
                } else if let Some(program) = key.strip_prefix("ebpf cost ") {
                    let p = read_pairs(value);
                    self.program_cost.push(ProgramCostInfo {
                        program: unescape(program),
                        runs: p.get("runs").copied().unwrap_or(0),
                        run_time_ns: p.get("ns").copied().unwrap_or(0),
                    });
                } else if let Some(program) = key.strip_prefix("unwind ") {
                    let p = read_pairs(value);
                    let n = |k: &str| p.get(k).copied().unwrap_or(0);
                    self.unwind.by_program.insert(
                        unescape(program),
                        ProgramUnwind {
                            dwarf: n("dwarf"),
                            fp: n("fp"),
                            reached_end: n("reached_end"),
                            copy_too_small: n("copy_too_small"),
                            no_unwind_info: n("no_unwind_info"),
                            bad_registers: n("bad_registers"),
                            depth_limit: n("depth_limit"),
                            bytes: n("bytes"),
                        },
                    );
                } else if let Some(object) = key.strip_prefix("object ") {
                    let mut o = ObjectReport {
                        frame_pointers: false,
                        cfi: String::new(),
                    };
                    for (k, v) in value.split_whitespace().filter_map(|kv| kv.split_once('=')) {
                        match k {
                            "frame_pointers" => o.frame_pointers = v == "yes",
                            "cfi" => o.cfi = v.to_string(),
                            _ => {}
                        }
                    }
                    self.unwind.objects.insert(unescape(object), o);
                } else if let Some(program) = key.strip_prefix("stacks ") {
                    let mut h = ProgramHealth::default();
                    for (k, v) in value.split_whitespace().filter_map(|kv| kv.split_once('=')) {
                        let n = || v.parse().unwrap_or(0);
                        match k {
                            "whole" => h.whole = n(),
                            "depth_limit" => h.depth_limit = n(),
                            "no_root" => h.no_root = n(),
                            "missing" => h.missing = n(),
                            "ended_in" => {
                                for item in v.split(',').filter(|i| !i.is_empty()) {
                                    if let Some((m, c)) = item.rsplit_once(':') {
                                        h.ended_in.insert(unescape(m), c.parse().unwrap_or(0));
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    self.health.by_program.insert(unescape(program), h);
                }
            }
        }
    }

    /// A report for people: what `profiler info` prints after the capture's own facts.
    pub fn write_report(&self, out: &mut String) {
        let _ = writeln!(out, "written by:   profiler {} {}", self.version, self.kind);
        let _ = writeln!(out, "target:       {}", self.target_label());
        if let Some(c) = &self.command {
            let _ = writeln!(out, "command:      {c}");
        }
        for t in self.targets.iter().filter(|_| self.targets.len() > 1) {
            let _ = writeln!(out, "              pid {} ({})", t.pid, t.command);
        }
        let started = std::time::UNIX_EPOCH
            + std::time::Duration::from_nanos(self.started_unix_nanos.max(0) as u64);
        let _ = writeln!(
            out,
            "started:      {} UTC, for {:.3} s, ended by {}",
            humantime::format_rfc3339_seconds(started)
                .to_string()
                .replace('T', " ")
                .trim_end_matches('Z'),
            self.duration_nanos as f64 / 1e9,
            self.ended_by
        );
        for c in &self.collectors {
            let _ = writeln!(out, "collector:    {} ({})", c.name, c.description);
        }
        let _ = writeln!(
            out,
            "seen:         {} process(es), {} thread(s)",
            self.processes, self.threads
        );
        let total = self.health.total();
        if total.total() > 0 {
            let _ = writeln!(
                out,
                "stacks:       {:.1}% whole (reach a root frame), {:.1}% cut, {:.1}% without a user stack",
                pct(total.whole, total.total()),
                pct(total.cut(), total.total()),
                pct(total.missing, total.total())
            );
            for (program, h) in &self.health.by_program {
                if h.cut() == 0 {
                    continue;
                }
                let ended: Vec<String> =
                    h.ended_in.iter().map(|(m, n)| format!("{m} {n}")).collect();
                let _ = writeln!(
                    out,
                    "              {program}: {:.1}% cut ({} no root frame, {} at the depth limit; ended in: {})",
                    pct(h.cut(), h.total()),
                    h.no_root,
                    h.depth_limit,
                    if ended.is_empty() {
                        "-".into()
                    } else {
                        ended.join(", ")
                    }
                );
            }
        }
        self.write_unwind_report(out);
        let unsym = self.unsymbolized_frames();
        let _ = writeln!(
            out,
            "symbols:      {:.1}% of {} frames unsymbolized{}",
            pct(unsym, self.frames),
            self.frames,
            if unsym > 0 {
                format!(
                    " ({})",
                    self.unsymbolized
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            }
        );
        for p in &self.program_cost {
            let _ = writeln!(
                out,
                "ebpf cost:    {} ran {} times, {:.3} ms in all ({:.2} us per run)",
                p.program,
                p.runs,
                p.run_time_ns as f64 / 1e6,
                p.run_time_ns as f64 / 1e3 / p.runs.max(1) as f64
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "note:         {n}");
        }
        if !self.counters.is_empty() {
            let _ = writeln!(out, "counters:");
            for (group, counters) in &self.counters {
                for (name, v) in counters {
                    let _ = writeln!(out, "  {:<36} {v}", format!("{group}.{name}"));
                }
            }
        }
    }
}

impl RecordingInfo {
    /// The call-graph lines of the report: the mode, bytes copied per second, and per program
    /// which unwinder its stacks went through and how the DWARF unwinds ended.
    pub fn write_unwind_report(&self, out: &mut String) {
        let u = &self.unwind;
        if u.mode.is_empty() {
            return;
        }
        let secs = (self.duration_nanos as f64 / 1e9).max(1e-3);
        let _ = writeln!(
            out,
            "call graph:   {} ({} stacks copied, {} bytes each at most, {:.1} KiB/s copied)",
            u.mode,
            u.dwarf(),
            u.stack_size,
            u.bytes() as f64 / 1024.0 / secs
        );
        for (program, p) in &u.by_program {
            let _ = writeln!(
                out,
                "              {program}: {} ({} dwarf, {} fp){}",
                p.unwinder(),
                p.dwarf,
                p.fp,
                if p.dwarf > 0 {
                    format!(
                        "; dwarf unwinds: {} reached the stack's end, {} cut ({} copy too small, {} no unwind info, {} bad registers, {} depth limit)",
                        p.reached_end,
                        p.cut(),
                        p.copy_too_small,
                        p.no_unwind_info,
                        p.bad_registers,
                        p.depth_limit
                    )
                } else {
                    String::new()
                }
            );
        }
        let without: Vec<&str> = u
            .objects
            .iter()
            .filter(|(_, o)| !o.frame_pointers)
            .map(|(name, _)| name.rsplit('/').next().unwrap_or(name))
            .collect();
        if !without.is_empty() {
            let _ = writeln!(
                out,
                "              without frame pointers: {}",
                without.join(", ")
            );
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

fn first_number(s: &str) -> Option<i64> {
    s.split_whitespace().next()?.parse().ok()
}

fn pairs(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{}={v}", escape(k)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_pairs(s: &str) -> BTreeMap<String, u64> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((unescape(k), v.parse().ok()?)))
        .collect()
}

/// Names inside a line (program and module names) may hold the separators the line uses.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | ' ' | ',' | ':' | '=' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex: String = chars.by_ref().take(2).collect();
            match u8::from_str_radix(&hex, 16) {
                Ok(b) => out.push(b as char),
                Err(_) => {
                    out.push('%');
                    out.push_str(&hex);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::health::Ending;

    fn full_info() -> RecordingInfo {
        let mut health = Health::default();
        health.add("search-server", Ending::Whole, "libc.so.6", 990);
        health.add("search-server", Ending::NoRoot, "libc.so.6", 7);
        health.add("odd name, with: sep=", Ending::NoRoot, "lib z%.so", 3);
        health.add("cc1", Ending::DepthLimit, "cc1", 1);
        health.add("cc1", Ending::Missing, "", 2);
        let mut counters = BTreeMap::new();
        counters.insert(
            "cpu".to_string(),
            BTreeMap::from([
                ("target_samples".to_string(), 1000),
                ("counted".to_string(), 1000),
            ]),
        );
        counters.insert(
            "targets".to_string(),
            BTreeMap::from([("child_followed".to_string(), 2)]),
        );
        RecordingInfo {
            version: "0.1.0".into(),
            kind: "record".into(),
            targets: vec![
                TargetInfo {
                    pid: 4242,
                    command: "./search-server --listen 127.0.0.1:5000 (x)".into(),
                },
                TargetInfo {
                    pid: 7,
                    command: "[kworker/0:1]".into(),
                },
            ],
            scope: "pids".into(),
            command: Some("sh -c 'make -j2'".into()),
            started_unix_nanos: 1_764_662_400_123_456_789,
            duration_nanos: 10_000_000_123,
            ended_by: "Ctrl-C".into(),
            collectors: vec![CollectorInfo {
                name: "cpu".into(),
                description: "cpu-clock at 99 Hz per CPU".into(),
            }],
            counters,
            program_cost: vec![ProgramCostInfo {
                program: "cpu".into(),
                runs: 2000,
                run_time_ns: 1_500_000,
            }],
            processes: 3,
            threads: 12,
            health,
            unwind: UnwindReport {
                mode: "auto".into(),
                stack_size: 16384,
                by_program: BTreeMap::from([(
                    "c_split odd=name".to_string(),
                    ProgramUnwind {
                        dwarf: 90,
                        fp: 10,
                        reached_end: 85,
                        copy_too_small: 2,
                        no_unwind_info: 1,
                        bad_registers: 1,
                        depth_limit: 1,
                        bytes: 90 * 4096,
                    },
                )]),
                objects: BTreeMap::from([(
                    "/usr/lib/x86_64-linux-gnu/libc.so.6".to_string(),
                    ObjectReport {
                        frame_pointers: false,
                        cfi: "eh_frame".into(),
                    },
                )]),
            },
            frames: 12_000,
            unsymbolized: BTreeMap::from([
                ("unmapped".to_string(), 3),
                ("no_symbols".to_string(), 9),
            ]),
            notes: vec!["in-use: since the profiler attached".into()],
        }
    }

    #[test]
    fn round_trips_through_comments() {
        let info = full_info();
        let comments = info.to_comments();
        assert!(comments[0].starts_with("profiler 0.1.0 record"));
        assert_eq!(RecordingInfo::from_comments(&comments), Some(info));
    }

    #[test]
    fn round_trips_through_a_pprof_file() {
        let info = full_info();
        let profile = crate::profile::Profile {
            sample_types: vec![crate::profile::ValueType::new("samples", "count")],
            comments: info.to_comments(),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pb.gz");
        crate::capture::write_pprof(&profile, &path).unwrap();
        let back = crate::capture::read_capture(&path).unwrap();
        assert_eq!(RecordingInfo::from_comments(&back.comments), Some(info));
    }

    #[test]
    fn foreign_comments_are_not_recording_info() {
        assert_eq!(RecordingInfo::from_comments(&[]), None);
        assert_eq!(
            RecordingInfo::from_comments(&["some go comment".into(), "target: x".into()]),
            None
        );
    }

    #[test]
    fn old_captures_still_give_their_target() {
        // Captures written before the typed metadata had these lines.
        let old = vec![
            "profiler 0.1.0 record".to_string(),
            "target: pid 99 (./cpu_split 6)".to_string(),
            "sampling: cpu-clock at 99 Hz per CPU for 6.000 s, ended by the duration".to_string(),
        ];
        let info = RecordingInfo::from_comments(&old).unwrap();
        assert_eq!(info.target_label(), "pid 99 (cpu_split)");
    }

    #[test]
    fn report_names_cut_stacks_by_program() {
        let mut text = String::new();
        full_info().write_report(&mut text);
        assert!(text.contains("search-server: 0.7% cut"), "{text}");
        assert!(text.contains("cpu.target_samples"), "{text}");
        assert!(text.contains("unmapped 3"), "{text}");
        assert!(
            text.contains("c_split odd=name: dwarf+fp (90 dwarf, 10 fp)")
                && text.contains("85 reached the stack's end, 5 cut (2 copy too small")
                && text.contains("without frame pointers: libc.so.6"),
            "{text}"
        );
    }
}
