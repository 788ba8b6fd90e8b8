//! Base-versus-current comparison: the change table (functions whose share of the total moved
//! most) and a differential flame graph (inferno: shaped as CURRENT, grew red, shrank blue).

use std::collections::HashMap;
use std::io::Write;

use serde::Serialize;

use super::flamegraph::base_options;
use super::folded::{FoldOptions, IdStacks, Labels};
use super::top::{csv_field, function_totals};
use super::{Metadata, RenderError, Selection, Unit, is_time_based};
use crate::profile::{Profile, ValueType};

#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub selection: Selection,
    /// Scale base so both captures have the same total.
    pub normalize: bool,
    /// Rows in the change table.
    pub count: usize,
    /// Compare cumulative values (the function and everything it calls) instead of flat ones
    /// (the function's own code): shows which code path grew rather than which leaf.
    pub by_cum: bool,
    /// Only functions whose name matches appear in the table (e.g. the program's own crate),
    /// shares still of everything.
    pub rows: Option<regex::Regex>,
}

/// How base and current values were made comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// Both scaled to the same total (`--normalize`).
    Normalized,
    /// Values per second of capture (time-based types with known durations).
    PerSecond,
    /// Raw totals (heap types, or captures without a duration such as folded files).
    Totals,
}

/// Which value of a function the table compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Samples whose leaf is the function.
    Flat,
    /// Samples with the function anywhere on the stack.
    Cum,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffRow {
    pub function: String,
    /// Flat (or cum) value in base and current, after scaling (per second when
    /// `Scaling::PerSecond`).
    pub base: f64,
    pub current: f64,
    pub delta: f64,
    /// Relative change in percent; `None` when the function is new.
    pub delta_pct: Option<f64>,
    /// Share of each capture's total, in percent.
    pub base_share: f64,
    pub current_share: f64,
    /// `current_share - base_share`, in percentage points.
    pub share_delta: f64,
}

#[derive(Debug, Clone)]
pub struct DiffTable {
    pub sample_type: ValueType,
    pub scaling: Scaling,
    pub measure: Measure,
    pub base_total: f64,
    pub current_total: f64,
    /// All functions, ordered by how much their share moved (largest first).
    pub rows: Vec<DiffRow>,
    pub count: usize,
}

/// The sample type kind both captures are compared on.
fn common_kind(
    base: &Profile,
    current: &Profile,
    wanted: Option<&str>,
) -> Result<String, RenderError> {
    let missing = |p: &Profile, what: &str, k: &str| RenderError::UnknownSampleType {
        wanted: k.to_string(),
        what: what.to_string(),
        available: p.sample_type_names(),
    };
    if let Some(k) = wanted {
        for (p, what) in [(current, "the current capture"), (base, "the base capture")] {
            if p.sample_type_index(Some(k)).is_none() {
                return Err(missing(p, what, k));
            }
        }
        return Ok(k.to_string());
    }
    let ci = current
        .sample_type_index(None)
        .ok_or(RenderError::NoSampleTypes {
            what: "the current capture".into(),
        })?;
    let kind = current.sample_types[ci].kind.clone();
    if base.sample_type_index(Some(&kind)).is_some() {
        return Ok(kind);
    }
    // A folded file only has `samples`: compare on that when the other side has it too.
    if base.sample_type_index(Some("samples")).is_some()
        && current.sample_type_index(Some("samples")).is_some()
    {
        return Ok("samples".into());
    }
    Err(missing(base, "the base capture", &kind))
}

fn selection_for(opts: &DiffOptions, kind: &str) -> Selection {
    Selection {
        sample_type: Some(kind.to_string()),
        ..opts.selection.clone()
    }
}

/// How to scale base values (multiplier) and current values so they compare.
fn scaling(
    base: &Profile,
    current: &Profile,
    t: &ValueType,
    bt: i64,
    ct: i64,
    normalize: bool,
) -> (Scaling, f64, f64) {
    if normalize {
        let f = if bt == 0 { 1.0 } else { ct as f64 / bt as f64 };
        return (Scaling::Normalized, f, 1.0);
    }
    if is_time_based(t) && base.duration_nanos > 0 && current.duration_nanos > 0 {
        return (
            Scaling::PerSecond,
            1e9 / base.duration_nanos as f64,
            1e9 / current.duration_nanos as f64,
        );
    }
    (Scaling::Totals, 1.0, 1.0)
}

pub fn diff_table(
    base: &Profile,
    current: &Profile,
    opts: &DiffOptions,
) -> Result<DiffTable, RenderError> {
    let kind = common_kind(base, current, opts.selection.sample_type.as_deref())?;
    let sel = selection_for(opts, &kind);
    // The two sides are independent: compute them on two threads.
    let (b, c) = std::thread::scope(|s| {
        let b = s.spawn(|| function_totals(base, &sel));
        let c = function_totals(current, &sel);
        (b.join().expect("function_totals does not panic"), c)
    });
    let ((brows, bt), (crows, ct)) = (b?, c?);
    let t = current.sample_types[current.sample_type_index(Some(&kind)).expect("checked")].clone();
    let (scaling, bf, cf) = scaling(base, current, &t, bt, ct, opts.normalize);
    let measure = if opts.by_cum {
        Measure::Cum
    } else {
        Measure::Flat
    };
    let value = |r: &super::top::FunctionTotals| match measure {
        Measure::Flat => r.flat,
        Measure::Cum => r.cum,
    };
    let mut both: HashMap<String, (i64, i64)> = HashMap::new();
    for r in brows {
        both.entry(r.function.clone()).or_default().0 = value(&r);
    }
    for r in crows {
        both.entry(r.function.clone()).or_default().1 = value(&r);
    }
    let share = |v: i64, total: i64| {
        if total == 0 {
            0.0
        } else {
            v as f64 * 100.0 / total as f64
        }
    };
    // Against an empty base (a heap snapshot taken before any load) every function is new,
    // and by cum the root chain (main, the thread start: on nearly every stack) would lead the
    // table with +100 points while telling nothing: leave it out.
    let everywhere =
        |b: i64, c: i64| opts.by_cum && bt == 0 && b == 0 && c as f64 >= 0.995 * ct as f64;
    let mut rows: Vec<DiffRow> = both
        .into_iter()
        .filter(|(f, (b, c))| {
            (*b != 0 || *c != 0)
                && !everywhere(*b, *c)
                && opts.rows.as_ref().is_none_or(|re| re.is_match(f))
        })
        .map(|(function, (b, c))| {
            let (base, current) = (b as f64 * bf, c as f64 * cf);
            let (base_share, current_share) = (share(b, bt), share(c, ct));
            DiffRow {
                function,
                base,
                current,
                delta: current - base,
                delta_pct: (base != 0.0).then(|| (current - base) * 100.0 / base),
                base_share,
                current_share,
                share_delta: current_share - base_share,
            }
        })
        .collect();
    if rows.is_empty() && (opts.selection.focus.is_some() || opts.selection.ignore.is_some()) {
        return Err(RenderError::NoMatch(
            "no samples left in either capture after --focus/--ignore; loosen the regexes".into(),
        ));
    }
    rows.sort_by(|a, b| {
        b.share_delta
            .abs()
            .total_cmp(&a.share_delta.abs())
            .then(b.delta.abs().total_cmp(&a.delta.abs()))
            .then_with(|| a.function.cmp(&b.function))
    });
    Ok(DiffTable {
        sample_type: t,
        scaling,
        measure,
        base_total: bt as f64 * bf,
        current_total: ct as f64 * cf,
        rows,
        count: opts.count,
    })
}

impl DiffTable {
    /// The function whose share grew most, with the growth in percentage points.
    pub fn max_share_growth(&self) -> Option<(&str, f64)> {
        self.rows
            .iter()
            .filter(|r| r.share_delta > 0.0)
            .max_by(|a, b| a.share_delta.total_cmp(&b.share_delta))
            .map(|r| (r.function.as_str(), r.share_delta))
    }

    fn unit_label(&self) -> String {
        let u = Unit::of(&self.sample_type).table_unit(&self.sample_type);
        match self.scaling {
            Scaling::PerSecond => format!("{u} per second of capture"),
            Scaling::Normalized => format!("{u}, base scaled to current's total"),
            Scaling::Totals => format!("{u}, totals"),
        }
    }

    pub fn write(&self, format: super::top::Format, out: &mut impl Write) -> std::io::Result<()> {
        use super::top::Format;
        let unit = Unit::of(&self.sample_type);
        let rows = &self.rows[..self.rows.len().min(self.count)];
        match format {
            Format::Json => {
                #[derive(Serialize)]
                struct J<'a> {
                    sample_type: &'a str,
                    unit: String,
                    scaling: Scaling,
                    measure: Measure,
                    base_total: f64,
                    current_total: f64,
                    rows: &'a [DiffRow],
                }
                let j = J {
                    sample_type: &self.sample_type.kind,
                    unit: self.unit_label(),
                    scaling: self.scaling,
                    measure: self.measure,
                    base_total: self.base_total,
                    current_total: self.current_total,
                    rows,
                };
                serde_json::to_writer_pretty(&mut *out, &j)?;
                writeln!(out)
            }
            Format::Csv => {
                writeln!(
                    out,
                    "base,current,delta,delta_pct,base_share,current_share,share_delta,function"
                )?;
                for r in rows {
                    writeln!(
                        out,
                        "{:.3},{:.3},{:.3},{},{:.2},{:.2},{:.2},{}",
                        unit.scaled(r.base),
                        unit.scaled(r.current),
                        unit.scaled(r.delta),
                        r.delta_pct.map_or("new".into(), |p| format!("{p:.2}")),
                        r.base_share,
                        r.current_share,
                        r.share_delta,
                        csv_field(&r.function)
                    )?;
                }
                Ok(())
            }
            Format::Text => {
                writeln!(
                    out,
                    "Type: {} ({}); total base {}, current {}",
                    self.sample_type.kind,
                    self.unit_label(),
                    unit.format(self.base_total),
                    unit.format(self.current_total)
                )?;
                writeln!(
                    out,
                    "Functions whose share of the total changed most ({}):",
                    match self.measure {
                        Measure::Flat => "flat: own code",
                        Measure::Cum => "cum: with everything they call",
                    }
                )?;
                let headers = ["base", "current", "delta", "delta%", "share", "change"];
                let cells: Vec<[String; 6]> = rows
                    .iter()
                    .map(|r| {
                        [
                            unit.format(r.base),
                            unit.format(r.current),
                            signed(unit.format(r.delta), r.delta),
                            r.delta_pct.map_or("new".into(), |p| format!("{p:+.1}%")),
                            format!("{:.1}%→{:.1}%", r.base_share, r.current_share),
                            format!("{:+.2}pt", r.share_delta),
                        ]
                    })
                    .collect();
                let widths: Vec<usize> = (0..6)
                    .map(|i| {
                        cells
                            .iter()
                            .map(|c| c[i].chars().count())
                            .chain([headers[i].len()])
                            .max()
                            .unwrap_or(0)
                    })
                    .collect();
                let pad = |s: &str, w: usize| {
                    format!("{}{s}", " ".repeat(w.saturating_sub(s.chars().count())))
                };
                let header: Vec<String> = headers
                    .iter()
                    .zip(&widths)
                    .map(|(h, &w)| pad(h, w))
                    .collect();
                writeln!(out, "{}  function", header.join(" "))?;
                for (c, r) in cells.iter().zip(rows) {
                    let line: Vec<String> =
                        c.iter().zip(&widths).map(|(s, &w)| pad(s, w)).collect();
                    writeln!(out, "{}  {}", line.join(" "), r.function)?;
                }
                Ok(())
            }
        }
    }
}

fn signed(s: String, v: f64) -> String {
    if v > 0.0 { format!("+{s}") } else { s }
}

/// Writes the differential flame graph: shaped as CURRENT, frames that grew red, shrank blue.
/// Base counts are scaled as in the table so a longer base capture does not paint all blue.
pub fn write_diff_flamegraph(
    base: &Profile,
    current: &Profile,
    opts: &DiffOptions,
    out: impl Write,
) -> Result<(), RenderError> {
    let kind = common_kind(base, current, opts.selection.sample_type.as_deref())?;
    let fold_opts = FoldOptions {
        selection: selection_for(opts, &kind),
        per_thread: false,
        per_process: false,
    };
    // One label table for both sides, so their stacks pair up by id.
    let mut labels = Labels::default();
    let mut bstacks = IdStacks::collect(base, &fold_opts, &mut labels)?;
    let mut cstacks = IdStacks::collect(current, &fold_opts, &mut labels)?;
    if cstacks.is_empty() {
        return Err(RenderError::NoMatch(
            if opts.selection.focus.is_some() || opts.selection.ignore.is_some() {
                "the current capture has no samples left to draw after --focus/--ignore; loosen the regexes"
            } else {
                "the current capture has no samples to draw"
            }
            .into(),
        ));
    }
    std::thread::scope(|s| {
        s.spawn(|| bstacks.sort_and_merge(&labels));
        cstacks.sort_and_merge(&labels);
    });
    let t = current.sample_types[current.sample_type_index(Some(&kind)).expect("checked")].clone();
    let (bt, ct) = (bstacks.total(), cstacks.total());
    let (scaling, bf, cf) = scaling(base, current, &t, bt as i64, ct as i64, opts.normalize);
    // Express base in current's terms (current stays exact, so the graph is shaped as it).
    let lines = differential_lines(&labels, &bstacks, &cstacks, bf / cf);
    let how = match scaling {
        Scaling::Normalized => "base normalized to current's total",
        Scaling::PerSecond => "base scaled per second of capture",
        Scaling::Totals => "totals",
    };
    let (bm, cm) = (Metadata::of(base), Metadata::of(current));
    let title = match (&bm.target, &cm.target) {
        (Some(b), Some(c)) if b != c => format!("Differential flame graph: {b} → {c}"),
        (_, Some(c)) => format!("Differential flame graph: {c}, base → current"),
        _ => "Differential flame graph: base → current".to_string(),
    };
    let length = |m: &Metadata| m.duration_secs.map_or("?".into(), |d| format!("{d:.2} s"));
    let lengths = if bm.duration_secs.is_some() || cm.duration_secs.is_some() {
        format!("base {} → current {}; ", length(&bm), length(&cm))
    } else {
        String::new()
    };
    let subtitle = format!(
        "{lengths}{} in {}; red grew, blue shrank; {how}",
        t.kind,
        Unit::of(&t).count_name(&t)
    );
    let mut o = base_options(title, Some(subtitle), Unit::of(&t).count_name(&t), false);
    o.no_sort = lines.is_sorted();
    inferno::flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), out)?;
    Ok(())
}

/// The differential folded lines inferno draws (`stack base current`, as
/// `inferno-diff-folded` writes them), merged from the two sides' sorted, distinct stacks in
/// one pass, so the result stays sorted.
fn differential_lines(
    labels: &Labels,
    base: &IdStacks,
    current: &IdStacks,
    base_factor: f64,
) -> Vec<String> {
    use std::cmp::Ordering;
    use std::fmt::Write as _;

    let scaled = |c: u64| (c as f64 * base_factor).round() as u64;
    let line = |ids: &[u32], before: u64, after: u64| {
        let mut line = labels.spell(ids);
        let _ = write!(line, " {before} {after}");
        line
    };
    let mut lines = Vec::with_capacity(base.len().max(current.len()));
    let (mut i, mut j) = (0, 0);
    while i < base.len() || j < current.len() {
        let order = if i == base.len() {
            Ordering::Greater
        } else if j == current.len() {
            Ordering::Less
        } else {
            labels.cmp_stacks(base.frames(i), current.frames(j))
        };
        lines.push(match order {
            Ordering::Less => {
                i += 1;
                line(base.frames(i - 1), scaled(base.value(i - 1)), 0)
            }
            Ordering::Greater => {
                j += 1;
                line(current.frames(j - 1), 0, current.value(j - 1))
            }
            Ordering::Equal => {
                i += 1;
                j += 1;
                line(
                    current.frames(j - 1),
                    scaled(base.value(i - 1)),
                    current.value(j - 1),
                )
            }
        });
    }
    lines
}
