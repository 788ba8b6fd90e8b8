//! Flame graph SVG through inferno: titles from the capture's metadata, counts named by the
//! sample type's unit, icicle (reverse) and per-thread variants, deterministic output.

use std::io::Write;

use inferno::flamegraph::{self, Direction, Options};

use super::folded::{FoldOptions, fold};
use super::{Metadata, RenderError, Unit};
use crate::profile::Profile;

#[derive(Debug, Clone, Default)]
pub struct FlamegraphOptions {
    pub fold: FoldOptions,
    /// Icicle graph: roots at the top, stacks growing down.
    pub reverse: bool,
    /// Overrides the title made from the capture's metadata.
    pub title: Option<String>,
}

/// The inferno options every graph of ours shares: deterministic (same input, same bytes) and
/// colored by name hash, so golden files are stable and colors mean the same across graphs.
pub fn base_options(
    title: String,
    subtitle: Option<String>,
    count_name: String,
    reverse: bool,
) -> Options<'static> {
    let mut o = Options::default();
    o.title = title;
    o.subtitle = subtitle;
    o.count_name = count_name;
    o.hash = true;
    o.deterministic = true;
    o.direction = if reverse {
        Direction::Inverted
    } else {
        Direction::Straight
    };
    o.colors = flamegraph::color::Palette::Multi(flamegraph::color::MultiPalette::Rust);
    o
}

/// `(title, subtitle)` for a capture: what was profiled, how long, how many samples.
pub fn titles(profile: &Profile, value_index: usize) -> (String, String) {
    let t = &profile.sample_types[value_index];
    let meta = Metadata::of(profile);
    let what = match t.kind.as_str() {
        "cpu" | "samples" => "CPU".to_string(),
        "offcpu" | "offcpu_events" => "Off-CPU".to_string(),
        "offcpu_wakers" => "Off-CPU with wakers".to_string(),
        "wall" => "Wall clock".to_string(),
        k => k.to_string(),
    };
    let title = match &meta.target {
        Some(target) => format!("{what}: {target}"),
        None => format!("{what} flame graph"),
    };
    let mut sub = Vec::new();
    if let Some(d) = meta.duration_secs {
        sub.push(format!("{d:.2} s"));
    }
    if let Some(si) = profile
        .sample_types
        .iter()
        .position(|t| t.kind == "samples")
    {
        sub.push(format!("{} samples", profile.total(si)));
    }
    sub.push(format!("{} in {}", t.kind, Unit::of(t).count_name(t)));
    (title, sub.join(", "))
}

pub fn write_flamegraph(
    profile: &Profile,
    opts: &FlamegraphOptions,
    out: impl Write,
) -> Result<(), RenderError> {
    let vi = opts.fold.selection.value_index(profile, "the capture")?;
    let stacks = fold(profile, &opts.fold)?;
    if stacks.is_empty() {
        return Err(RenderError::NoMatch(
            if opts.fold.selection.focus.is_some() || opts.fold.selection.ignore.is_some() {
                "no samples left to draw after --focus/--ignore; loosen the regexes".to_string()
            } else {
                "the capture has no samples with a value to draw".to_string()
            },
        ));
    }
    let t = &profile.sample_types[vi];
    let (title, subtitle) = titles(profile, vi);
    let mut o = base_options(
        opts.title.clone().unwrap_or(title),
        Some(subtitle),
        Unit::of(t).count_name(t),
        opts.reverse,
    );
    o.colors = palette(&t.kind);
    let lines = into_lines(stacks);
    o.no_sort = lines.is_sorted();
    flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), out)?;
    Ok(())
}

/// Colors that say what is drawn: blue for time off the CPU (inferno's I/O palette), the
/// wakeup palette for blocked-and-waker stacks, green for memory, the Rust palette otherwise.
fn palette(kind: &str) -> flamegraph::color::Palette {
    use flamegraph::color::{BasicPalette, MultiPalette, Palette};
    match kind {
        "offcpu" | "offcpu_events" => Palette::Basic(BasicPalette::Io),
        "offcpu_wakers" => Palette::Multi(MultiPalette::Wakeup),
        k if k.starts_with("alloc_") || k.starts_with("inuse_") || k.starts_with("page_faults") => {
            Palette::Basic(BasicPalette::Mem)
        }
        _ => Palette::Multi(MultiPalette::Rust),
    }
}

/// Folded lines (`stack count`) for inferno, reusing each stack's string.
pub fn into_lines(stacks: Vec<(String, u64)>) -> Vec<String> {
    use std::fmt::Write as _;
    stacks
        .into_iter()
        .map(|(mut s, c)| {
            let _ = write!(s, " {c}");
            s
        })
        .collect()
}
