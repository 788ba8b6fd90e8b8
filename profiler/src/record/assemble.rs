//! Turns drained samples into a `Profile`: resolves every stack address (incrementally, while
//! the target lives, so the end of a recording is quick), builds locations with inlined lines,
//! mappings with build ids, `thread`/`tid` labels, and comments that record how it went.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use profiler_ebpf::{Counter, MAX_STACK_DEPTH};

use super::StopReason;
use super::sampler::{ProgramCost, RawSamples};
use crate::profile::{
    Label, LabelValue, Line, Mapping, Profile, ProfileBuilder, Sample, ValueType,
};
use crate::symbolize::{ProcessMaps, Resolved, Symbolizer};

/// Kernel text lives in the upper half of the address space on x86_64.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;

/// The first frame is where the CPU was; every other frame is a return address, which points
/// after the call. Looking up `ip - 1` attributes it to the call's line and inlined frames.
fn lookup_address(index: usize, ip: u64) -> u64 {
    if index == 0 { ip } else { ip.saturating_sub(1) }
}

/// Symbolization results by lookup address, filled as stacks arrive.
#[derive(Default)]
pub struct Resolver {
    user: HashMap<u64, Resolved>,
    kernel: HashMap<u64, Resolved>,
    done: usize,
}

impl Resolver {
    /// Resolves the addresses of stacks not seen before.
    pub fn resolve_new(
        &mut self,
        raw: &RawSamples,
        maps: &ProcessMaps,
        symbolizer: &mut Symbolizer,
    ) {
        let mut user = Vec::new();
        let mut kernel = Vec::new();
        for stack in &raw.stacks[self.done..] {
            for (i, &ip) in stack.iter().enumerate() {
                let addr = lookup_address(i, ip);
                if ip >= KERNEL_START {
                    if !self.kernel.contains_key(&addr) {
                        kernel.push(addr);
                    }
                } else if !self.user.contains_key(&addr) {
                    user.push(addr);
                }
            }
        }
        self.done = raw.stacks.len();
        for list in [&mut user, &mut kernel] {
            list.sort_unstable();
            list.dedup();
        }
        if !user.is_empty() {
            self.user.extend(symbolizer.user(maps, &user));
        }
        if !kernel.is_empty() {
            self.kernel.extend(symbolizer.kernel(&kernel));
        }
    }

    fn get(&self, addr: u64, ip: u64) -> Option<&Resolved> {
        if ip >= KERNEL_START {
            self.kernel.get(&addr)
        } else {
            self.user.get(&addr)
        }
    }
}

/// Facts about the recording that go into the profile and the summary.
pub struct Meta {
    pub pid: u32,
    pub command: String,
    pub frequency: u64,
    pub duration: Duration,
    pub start: SystemTime,
    /// Indexed by `Counter as usize`.
    pub counters: Vec<u64>,
    pub unreadable_stacks: u64,
    /// The sampling program's own time in the kernel, when the kernel keeps statistics.
    pub program_cost: Option<ProgramCost>,
    pub stop: StopReason,
}

impl Meta {
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters.get(c as usize).copied().unwrap_or(0)
    }
}

/// What the profile holds, for the summary.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub samples: u64,
    pub threads: usize,
    pub missing_user_stack: u64,
    pub truncated_user_stack: u64,
    /// Frames over all samples (weighted by sample count), and how many were unsymbolized.
    pub frames: u64,
    pub unsymbolized_frames: u64,
}

pub const MISSING_USER_STACK: &str = "[missing user stack]";
pub const TRUNCATED: &str = "[truncated]";

pub fn build_profile(
    raw: &RawSamples,
    threads: &HashMap<u32, String>,
    maps: &ProcessMaps,
    resolver: &Resolver,
    symbolizer: &mut Symbolizer,
    meta: &Meta,
) -> (Profile, Stats) {
    let period = (1_000_000_000 / meta.frequency.max(1)) as i64;
    let mut b = ProfileBuilder::new(vec![
        ValueType::new("samples", "count"),
        ValueType::new("cpu", "nanoseconds"),
    ]);
    let mut stats = Stats::default();
    let mut vma_mapping: HashMap<usize, usize> = HashMap::new();
    let mut kernel_mapping: Option<usize> = None;
    // (address, is the leaf) → (location id, lines in it, symbolized).
    let mut location_cache: HashMap<(u64, bool), (usize, u64, bool)> = HashMap::new();

    let mut keys: Vec<_> = raw.counts.iter().collect();
    keys.sort_unstable_by_key(|(k, _)| **k);
    let mut tids_seen = std::collections::HashSet::new();
    for (&(tid, user, kernel), &n) in keys {
        tids_seen.insert(tid);
        stats.samples += n;
        let mut locations = Vec::new();
        let mut frames = 0u64;
        let mut unsymbolized = 0u64;
        let stacks = kernel.into_iter().chain(user);
        for stack in stacks {
            for (i, &ip) in raw.stacks[stack].iter().enumerate() {
                // Stacks share most of their frames (the same server loop under every
                // request): each frame becomes a location once, not once per sample.
                let key = (ip, i == 0);
                let (location, lines, symbolized) = match location_cache.get(&key) {
                    Some(&cached) => cached,
                    None => {
                        let addr = lookup_address(i, ip);
                        let Some(r) = resolver.get(addr, ip) else {
                            continue;
                        };
                        let mapping = if ip >= KERNEL_START {
                            Some(*kernel_mapping.get_or_insert_with(|| {
                                b.add_mapping(Mapping {
                                    filename: Mapping::KERNEL.to_string(),
                                    has_functions: true,
                                    ..Mapping::default()
                                })
                            }))
                        } else {
                            r.vma.map(|v| {
                                *vma_mapping.entry(v).or_insert_with(|| {
                                    let vma = &maps.vmas()[v];
                                    let build_id = vma
                                        .file
                                        .as_deref()
                                        .map(|f| symbolizer.build_id(f))
                                        .unwrap_or_default();
                                    b.add_mapping(Mapping {
                                        memory_start: vma.start,
                                        memory_limit: vma.end,
                                        file_offset: vma.file_offset,
                                        filename: vma.name.clone(),
                                        build_id,
                                        ..Mapping::default()
                                    })
                                })
                            })
                        };
                        if let Some(m) = mapping {
                            let mapping = &mut b.profile_mut().mappings[m];
                            mapping.has_functions |= r.symbolized;
                            mapping.has_filenames |= r.has_line_info;
                            mapping.has_line_numbers |= r.has_line_info;
                            mapping.has_inline_frames |= r.has_inlined;
                        }
                        let lines = r
                            .lines
                            .iter()
                            .map(|l| Line {
                                function: b.function(&l.function, &l.file),
                                line: l.line,
                            })
                            .collect();
                        let location = b.location(mapping, ip, lines);
                        let cached = (location, r.lines.len() as u64, r.symbolized);
                        location_cache.insert(key, cached);
                        cached
                    }
                };
                frames += lines;
                if !symbolized {
                    unsymbolized += 1;
                }
                locations.push(location);
            }
        }
        match user {
            None => {
                stats.missing_user_stack += n;
                let f = b.function(MISSING_USER_STACK, "");
                locations.push(b.location(
                    None,
                    0,
                    vec![Line {
                        function: f,
                        line: 0,
                    }],
                ));
            }
            Some(s) if raw.stacks[s].len() >= MAX_STACK_DEPTH => {
                stats.truncated_user_stack += n;
                let f = b.function(TRUNCATED, "");
                locations.push(b.location(
                    None,
                    0,
                    vec![Line {
                        function: f,
                        line: 0,
                    }],
                ));
            }
            Some(_) => {}
        }
        stats.frames += frames * n;
        stats.unsymbolized_frames += unsymbolized * n;
        let thread = threads
            .get(&tid)
            .cloned()
            .unwrap_or_else(|| format!("tid-{tid}"));
        b.add_sample(Sample {
            locations,
            values: vec![n as i64, n as i64 * period],
            labels: vec![
                Label {
                    key: "thread".into(),
                    value: LabelValue::Str(thread),
                },
                Label {
                    key: "tid".into(),
                    value: LabelValue::Num {
                        value: i64::from(tid),
                        unit: String::new(),
                    },
                },
            ],
        });
    }
    stats.threads = tids_seen.len();

    let p = b.profile_mut();
    p.default_sample_type = Some("cpu".into());
    p.period_type = Some(ValueType::new("cpu", "nanoseconds"));
    p.period = period;
    p.duration_nanos = meta.duration.as_nanos() as i64;
    p.time_nanos = meta
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    p.comments = comments(meta, &stats);
    (b.finish(), stats)
}

fn comments(meta: &Meta, stats: &Stats) -> Vec<String> {
    let c = |x| meta.counter(x);
    let mut out = vec![
        format!("profiler {} record", env!("CARGO_PKG_VERSION")),
        format!("target: pid {} ({})", meta.pid, meta.command),
        format!(
            "sampling: cpu-clock at {} Hz per CPU for {:.3} s, ended by {}",
            meta.frequency,
            meta.duration.as_secs_f64(),
            match meta.stop {
                StopReason::Duration => "the duration",
                StopReason::TargetExited => "the target's exit",
                StopReason::Interrupted => "Ctrl-C",
            }
        ),
        format!(
            "samples: {} in the profile of {} taken; lost: {} (count map full)",
            stats.samples,
            c(Counter::TargetSamples),
            c(Counter::CountsFull)
        ),
        format!(
            "user stacks: {} missing, {} collisions, {} stack map full, {} other errors, {} truncated at {} frames",
            c(Counter::UserStackMissing),
            c(Counter::UserStackCollision),
            c(Counter::UserStackMapFull),
            c(Counter::UserStackError),
            stats.truncated_user_stack,
            MAX_STACK_DEPTH
        ),
        format!(
            "kernel stacks: {} recorded, {} absent (user-mode samples), {} collisions, {} stack map full, {} other errors",
            c(Counter::KernelStack),
            c(Counter::KernelStackAbsent),
            c(Counter::KernelStackCollision),
            c(Counter::KernelStackMapFull),
            c(Counter::KernelStackError)
        ),
        format!(
            "frames: {} of {} unsymbolized",
            stats.unsymbolized_frames, stats.frames
        ),
    ];
    if let Some(cost) = meta.program_cost {
        out.push(format!(
            "ebpf cost: the cpu program ran {} times for {} ns in the kernel",
            cost.runs,
            cost.run_time.as_nanos()
        ));
    }
    let raw: Vec<String> = Counter::ALL
        .iter()
        .map(|&k| format!("{}={}", k.name(), c(k)))
        .collect();
    out.push(format!(
        "counters: {} unreadable_stacks={}",
        raw.join(" "),
        meta.unreadable_stacks
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_addresses_are_looked_up_one_byte_back() {
        assert_eq!(lookup_address(0, 0x1000), 0x1000);
        assert_eq!(lookup_address(1, 0x1000), 0xfff);
        assert_eq!(lookup_address(5, 0), 0);
    }
}
