//! Annotated source (`go tool pprof -list`): for each function matching a regex, its source
//! lines with flat and cum values from the capture's file:line data. A missing source file is
//! reported and the per-line values are still printed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::{RenderError, Selection, Unit};
use crate::profile::Profile;

#[derive(Debug, Clone)]
pub struct ListOptions {
    pub selection: Selection,
    pub regex: Regex,
    /// Extra directories to look for sources in (after the path as recorded).
    pub source_dirs: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct Routine {
    flat: i64,
    cum: i64,
    /// line → (flat, cum); line 0 means unknown.
    lines: BTreeMap<i64, (i64, i64)>,
}

/// Lines of context printed around the lines that have values.
const CONTEXT: i64 = 2;

pub fn write_list(
    profile: &Profile,
    opts: &ListOptions,
    out: &mut impl Write,
) -> Result<(), RenderError> {
    let vi = opts.selection.value_index(profile, "the capture")?;
    let t = &profile.sample_types[vi];
    let unit = Unit::of(t);
    let matches: Vec<bool> = profile
        .functions
        .iter()
        .map(|f| opts.regex.is_match(&f.name))
        .collect();
    let mut routines: HashMap<(&str, &str), Routine> = HashMap::new();
    let mut total = 0i64;
    let mut seen_fn: Vec<(&str, &str)> = Vec::new();
    let mut seen_line: Vec<(&str, &str, i64)> = Vec::new();
    for (sample, value) in opts.selection.samples(profile, vi) {
        total += value;
        seen_fn.clear();
        seen_line.clear();
        let mut leaf = true;
        for line in sample
            .locations
            .iter()
            .flat_map(|&l| profile.locations[l].lines.iter())
        {
            let is_leaf = std::mem::take(&mut leaf);
            if !matches[line.function] {
                continue;
            }
            let f = &profile.functions[line.function];
            let key = (f.name.as_str(), f.filename.as_str());
            let r = routines.entry(key).or_default();
            if is_leaf {
                r.flat += value;
                r.lines.entry(line.line).or_default().0 += value;
            }
            if !seen_fn.contains(&key) {
                seen_fn.push(key);
                r.cum += value;
            }
            if !seen_line.contains(&(key.0, key.1, line.line)) {
                seen_line.push((key.0, key.1, line.line));
                r.lines.entry(line.line).or_default().1 += value;
            }
        }
    }
    if routines.is_empty() {
        return Err(RenderError::NoMatch(format!(
            "no function with samples matches {:?}; `profiler top` shows the names in this capture",
            opts.regex.as_str()
        )));
    }
    let mut order: Vec<_> = routines.into_iter().collect();
    order.sort_by(|a, b| b.1.cum.cmp(&a.1.cum).then_with(|| a.0.cmp(&b.0)));
    let pct = |v: i64| {
        if total == 0 {
            0.0
        } else {
            v as f64 * 100.0 / total as f64
        }
    };
    for ((name, file), r) in &order {
        writeln!(
            out,
            "ROUTINE ======================== {name} in {}",
            if file.is_empty() {
                "(unknown file)"
            } else {
                file
            }
        )?;
        writeln!(
            out,
            "{} flat ({:.2}%), {} cum ({:.2}%) of {} total {}",
            unit.format(r.flat as f64),
            pct(r.flat),
            unit.format(r.cum as f64),
            pct(r.cum),
            unit.format(total as f64),
            t.kind
        )?;
        let cells: BTreeMap<i64, (String, String)> = r
            .lines
            .iter()
            .map(|(&l, &(f, c))| (l, (cell(unit, f), cell(unit, c))))
            .collect();
        let w = cells
            .values()
            .map(|(f, c)| f.len().max(c.len()))
            .max()
            .unwrap_or(1)
            .max(4);
        let source = (!file.is_empty())
            .then(|| find_source(Path::new(file), &opts.source_dirs))
            .flatten();
        match source
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok().map(|s| (p, s)))
        {
            Some((path, text)) => {
                if path.as_path() != Path::new(file) {
                    writeln!(out, "(source: {})", path.display())?;
                }
                let src: Vec<&str> = text.lines().collect();
                let known: Vec<i64> = cells.keys().copied().filter(|&l| l > 0).collect();
                if let (Some(&lo), Some(&hi)) = (known.first(), known.last()) {
                    let (lo, hi) = ((lo - CONTEXT).max(1), (hi + CONTEXT).min(src.len() as i64));
                    let mut prev_printed = lo - 1;
                    for n in lo..=hi {
                        // Skip long stretches without values between hot lines.
                        let near = known.iter().any(|&k| (k - n).abs() <= CONTEXT);
                        if !near {
                            continue;
                        }
                        if n != prev_printed + 1 {
                            writeln!(out, "{:>w$} {:>w$}  ...", "", "")?;
                        }
                        prev_printed = n;
                        let (f, c) = cells.get(&n).cloned().unwrap_or((".".into(), ".".into()));
                        let text = src.get((n - 1) as usize).copied().unwrap_or("");
                        writeln!(out, "{f:>w$} {c:>w$} {n:>6}: {text}")?;
                    }
                }
                if let Some((f, c)) = cells.get(&0) {
                    writeln!(out, "{f:>w$} {c:>w$}      ?: (no line information)")?;
                }
            }
            None => {
                let looked: Vec<String> = std::iter::once(".".to_string())
                    .chain(opts.source_dirs.iter().map(|d| d.display().to_string()))
                    .collect();
                if file.is_empty() {
                    writeln!(out, "(the capture has no source file for this function)")?;
                } else {
                    writeln!(
                        out,
                        "source file {file} not found (looked in: {}); add --source-dir DIR to show the source",
                        looked.join(", ")
                    )?;
                }
                for (n, (f, c)) in &cells {
                    let line = if *n > 0 { n.to_string() } else { "?".into() };
                    writeln!(out, "{f:>w$} {c:>w$} {line:>6}")?;
                }
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

fn cell(unit: Unit, v: i64) -> String {
    if v == 0 {
        ".".into()
    } else {
        unit.format(v as f64)
    }
}

/// The recorded path if it exists, else the path (or each shorter tail of it, for sources
/// built elsewhere) under each source directory.
fn find_source(file: &Path, dirs: &[PathBuf]) -> Option<PathBuf> {
    if file.is_file() {
        return Some(file.to_path_buf());
    }
    let parts: Vec<_> = file
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    for dir in dirs {
        for skip in 0..parts.len() {
            let candidate: PathBuf = std::iter::once(dir.as_os_str())
                .chain(parts[skip..].iter().map(|c| c.as_os_str()))
                .collect();
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}
