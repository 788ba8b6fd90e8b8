//! Folded stacks (`root;caller;leaf 123`, the flamegraph.pl/inferno format) read into a
//! [`Profile`]. Kernel frames carry `_[k]` and inlined frames `_[i]`, as perf and inferno write.

use std::collections::HashMap;

use crate::profile::{Line, Mapping, Profile, ProfileBuilder, Sample, ValueType};

/// What reading a folded file found besides the stacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldedReport {
    /// Lines that held a stack.
    pub stacks: usize,
    /// Lines that were neither a stack, blank nor a `#` comment; skipped.
    pub malformed: usize,
    /// The first malformed line (1-based number and text) so the message can point at it.
    pub first_malformed: Option<(usize, String)>,
}

pub const KERNEL_SUFFIX: &str = "_[k]";
pub const INLINED_SUFFIX: &str = "_[i]";

/// Parses one line into (frames root first, count). Frame names may contain spaces: the count
/// is the last whitespace-separated field.
fn parse_line(line: &str) -> Option<(&str, u64)> {
    let line = line.trim_end();
    let (stack, count) = line.rsplit_once(|c: char| c.is_ascii_whitespace())?;
    let count: u64 = count.parse().ok()?;
    let stack = stack.trim();
    if stack.is_empty() || stack.split(';').any(str::is_empty) {
        return None;
    }
    Some((stack, count))
}

/// True when `text` has at least one folded-stack line: how `read_capture` tells a folded file
/// from other text.
pub fn looks_folded(text: &str) -> bool {
    text.lines().take(1000).any(|l| parse_line(l).is_some())
}

/// Builds a profile with one `samples/count` value per stack. Identical stacks are merged.
pub fn parse(text: &str) -> (Profile, FoldedReport) {
    let mut b = ProfileBuilder::new(vec![ValueType::new("samples", "count")]);
    let mut report = FoldedReport::default();
    let mut kernel_mapping = None;
    let mut merged: HashMap<Vec<usize>, usize> = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((stack, count)) = parse_line(raw) else {
            report.malformed += 1;
            if report.first_malformed.is_none() {
                report.first_malformed = Some((n + 1, trimmed.chars().take(120).collect()));
            }
            continue;
        };
        report.stacks += 1;
        // Group each real frame with the inlined frames that follow it (its callees inlined
        // into it) into one location, innermost line first as pprof wants.
        let mut groups: Vec<(bool, Vec<usize>)> = Vec::new();
        for frame in stack.split(';') {
            let (name, kernel, inlined) = if let Some(n) = frame.strip_suffix(KERNEL_SUFFIX) {
                (n, true, false)
            } else if let Some(n) = frame.strip_suffix(INLINED_SUFFIX) {
                (n, false, true)
            } else {
                (frame, false, false)
            };
            let f = b.function(name, "");
            match groups.last_mut() {
                Some((_, fs)) if inlined => fs.push(f),
                _ => groups.push((kernel, vec![f])),
            }
        }
        let mut locations: Vec<usize> = groups
            .into_iter()
            .map(|(kernel, fs)| {
                let mapping = kernel.then(|| {
                    *kernel_mapping.get_or_insert_with(|| {
                        b.add_mapping(Mapping {
                            filename: Mapping::KERNEL.to_string(),
                            ..Mapping::default()
                        })
                    })
                });
                let lines = fs
                    .into_iter()
                    .rev()
                    .map(|function| Line { function, line: 0 })
                    .collect();
                b.location(mapping, 0, lines)
            })
            .collect();
        locations.reverse(); // pprof order: leaf first
        match merged.get(&locations) {
            Some(&i) => b.profile_mut().samples[i].values[0] += count as i64,
            None => {
                merged.insert(locations.clone(), b.profile_mut().samples.len());
                b.add_sample(Sample {
                    locations,
                    values: vec![count as i64],
                    labels: vec![],
                });
            }
        }
    }
    let mut p = b.finish();
    p.comments.push("converted from folded stacks".to_string());
    if report.malformed > 0 {
        p.comments.push(format!(
            "folded: {} malformed line(s) skipped",
            report.malformed
        ));
    }
    (p, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_kernel_inlined_and_malformed() {
        let text = "main;do work;leaf_[i];sys_read_[k] 5\nmain;do work 3\nnot a stack\n\n# note\nmain;do work 2\nx;;y 1\n";
        let (p, r) = parse(text);
        assert_eq!(r.stacks, 3);
        assert_eq!(r.malformed, 2);
        assert_eq!(r.first_malformed, Some((3, "not a stack".to_string())));
        assert_eq!(p.samples.len(), 2, "identical stacks merge");
        assert_eq!(p.total(0), 10);
        let frames: Vec<(String, bool, bool)> = p
            .sample_frames(&p.samples[0])
            .map(|f| (f.function.name.clone(), f.inlined, f.kernel))
            .collect();
        assert_eq!(
            frames,
            vec![
                ("main".into(), false, false),
                ("do work".into(), false, false),
                ("leaf".into(), true, false),
                ("sys_read".into(), false, true)
            ]
        );
        assert!(looks_folded(text));
        assert!(!looks_folded("hello world\nthis is prose"));
    }
}
