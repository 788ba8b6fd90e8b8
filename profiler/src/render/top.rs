//! The flat/cumulative function table (`go tool pprof -top`): flat, flat%, sum%, cum, cum%,
//! function, in the sample type's unit, as aligned text, CSV or JSON.

use std::collections::HashMap;
use std::io::Write;

use serde::Serialize;

use super::{RenderError, Selection, Unit};
use crate::profile::{Profile, ValueType};

#[derive(Debug, Clone, Default)]
pub struct TopOptions {
    pub selection: Selection,
    /// Rows to show.
    pub count: usize,
    /// Sort by cumulative value instead of flat.
    pub by_cum: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Csv,
    Json,
}

/// Flat and cumulative totals per function name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionTotals {
    pub function: String,
    /// Value of samples whose leaf frame is this function.
    pub flat: i64,
    /// Value of samples with this function anywhere on the stack (once per stack, even when
    /// it recurses).
    pub cum: i64,
}

/// Per-function totals of the selected samples, and the selected total.
pub fn function_totals(
    profile: &Profile,
    selection: &Selection,
) -> Result<(Vec<FunctionTotals>, i64), RenderError> {
    let vi = selection.value_index(profile, "the capture")?;
    // Group functions by name: the same function may appear with several files or mappings.
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let group: Vec<usize> = profile
        .functions
        .iter()
        .map(|f| {
            let n = by_name.len();
            *by_name.entry(f.name.as_str()).or_insert(n)
        })
        .collect();
    let mut names = vec![""; by_name.len()];
    for (name, &g) in &by_name {
        names[g] = name;
    }
    let mut flat = vec![0i64; names.len()];
    let mut cum = vec![0i64; names.len()];
    let mut seen = vec![usize::MAX; names.len()];
    let mut total = 0i64;
    for (n, (sample, value)) in selection.samples(profile, vi).enumerate() {
        total += value;
        let mut leaf = None;
        for frame in sample
            .locations
            .iter()
            .flat_map(|&l| profile.locations[l].lines.iter())
        {
            let g = group[frame.function];
            leaf.get_or_insert(g);
            if seen[g] != n {
                seen[g] = n;
                cum[g] += value;
            }
        }
        if let Some(g) = leaf {
            flat[g] += value;
        }
    }
    let rows = names
        .iter()
        .enumerate()
        .filter(|&(g, _)| cum[g] != 0 || flat[g] != 0)
        .map(|(g, name)| FunctionTotals {
            function: name.to_string(),
            flat: flat[g],
            cum: cum[g],
        })
        .collect();
    Ok((rows, total))
}

/// The computed table, ready to print in any format.
#[derive(Debug, Clone)]
pub struct TopTable {
    pub sample_type: ValueType,
    pub total: i64,
    /// Functions with a non-zero value, before truncation to `count`.
    pub functions: usize,
    pub rows: Vec<FunctionTotals>,
}

pub fn top(profile: &Profile, opts: &TopOptions) -> Result<TopTable, RenderError> {
    let vi = opts.selection.value_index(profile, "the capture")?;
    let (mut rows, total) = function_totals(profile, &opts.selection)?;
    if rows.is_empty() && (opts.selection.focus.is_some() || opts.selection.ignore.is_some()) {
        return Err(RenderError::NoMatch(
            "no samples left after --focus/--ignore; loosen the regexes".into(),
        ));
    }
    let key = |r: &FunctionTotals| {
        if opts.by_cum {
            (r.cum, r.flat)
        } else {
            (r.flat, r.cum)
        }
    };
    rows.sort_by(|a, b| {
        key(b)
            .cmp(&key(a))
            .then_with(|| a.function.cmp(&b.function))
    });
    let functions = rows.len();
    rows.truncate(opts.count);
    Ok(TopTable {
        sample_type: profile.sample_types[vi].clone(),
        total,
        functions,
        rows,
    })
}

fn pct(v: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        v as f64 * 100.0 / total as f64
    }
}

#[derive(Serialize)]
struct JsonRow<'a> {
    function: &'a str,
    flat: f64,
    flat_pct: f64,
    sum_pct: f64,
    cum: f64,
    cum_pct: f64,
}

#[derive(Serialize)]
struct JsonTable<'a> {
    sample_type: &'a str,
    unit: String,
    total: f64,
    functions: usize,
    rows: Vec<JsonRow<'a>>,
}

impl TopTable {
    pub fn write(&self, format: Format, out: &mut impl Write) -> std::io::Result<()> {
        let unit = Unit::of(&self.sample_type);
        let mut sum = 0.0;
        let rows: Vec<JsonRow<'_>> = self
            .rows
            .iter()
            .map(|r| {
                sum += pct(r.flat, self.total);
                JsonRow {
                    function: &r.function,
                    flat: unit.scaled(r.flat as f64),
                    flat_pct: pct(r.flat, self.total),
                    sum_pct: sum,
                    cum: unit.scaled(r.cum as f64),
                    cum_pct: pct(r.cum, self.total),
                }
            })
            .collect();
        match format {
            Format::Json => {
                let t = JsonTable {
                    sample_type: &self.sample_type.kind,
                    unit: unit.table_unit(&self.sample_type),
                    total: unit.scaled(self.total as f64),
                    functions: self.functions,
                    rows,
                };
                serde_json::to_writer_pretty(&mut *out, &t)?;
                writeln!(out)
            }
            Format::Csv => {
                writeln!(out, "flat,flat_pct,sum_pct,cum,cum_pct,function,unit")?;
                let u = unit.table_unit(&self.sample_type);
                for r in &rows {
                    writeln!(
                        out,
                        "{},{:.2},{:.2},{},{:.2},{},{u}",
                        r.flat,
                        r.flat_pct,
                        r.sum_pct,
                        r.cum,
                        r.cum_pct,
                        csv_field(r.function)
                    )?;
                }
                Ok(())
            }
            Format::Text => {
                writeln!(
                    out,
                    "Type: {} ({})\nShowing {} of {} functions, total {}",
                    self.sample_type.kind,
                    unit.table_unit(&self.sample_type),
                    self.rows.len(),
                    self.functions,
                    unit.format(self.total as f64)
                )?;
                let cells: Vec<[String; 5]> = self
                    .rows
                    .iter()
                    .zip(&rows)
                    .map(|(r, j)| {
                        [
                            unit.format(r.flat as f64),
                            format!("{:.2}%", j.flat_pct),
                            format!("{:.2}%", j.sum_pct),
                            unit.format(r.cum as f64),
                            format!("{:.2}%", j.cum_pct),
                        ]
                    })
                    .collect();
                let headers = ["flat", "flat%", "sum%", "cum", "cum%"];
                let widths: Vec<usize> = (0..5)
                    .map(|i| {
                        cells
                            .iter()
                            .map(|c| c[i].len())
                            .chain([headers[i].len()])
                            .max()
                            .unwrap_or(0)
                    })
                    .collect();
                for (i, h) in headers.iter().enumerate() {
                    write!(
                        out,
                        "{}{h:>w$}",
                        if i == 0 { "" } else { " " },
                        w = widths[i]
                    )?;
                }
                writeln!(out, "  function")?;
                for (c, r) in cells.iter().zip(&self.rows) {
                    for (i, cell) in c.iter().enumerate() {
                        write!(
                            out,
                            "{}{cell:>w$}",
                            if i == 0 { "" } else { " " },
                            w = widths[i]
                        )?;
                    }
                    writeln!(out, "  {}", r.function)?;
                }
                Ok(())
            }
        }
    }
}

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Line, ProfileBuilder, Sample};

    #[test]
    fn recursion_counts_once_in_cum() {
        let mut b = ProfileBuilder::new(vec![ValueType::new("samples", "count")]);
        let main = b.function("main", "");
        let rec = b.function("rec", "");
        let lm = b.location(
            None,
            1,
            vec![Line {
                function: main,
                line: 0,
            }],
        );
        let lr = b.location(
            None,
            2,
            vec![Line {
                function: rec,
                line: 0,
            }],
        );
        b.add_sample(Sample {
            locations: vec![lr, lr, lr, lm],
            values: vec![4],
            labels: vec![],
        });
        b.add_sample(Sample {
            locations: vec![lm],
            values: vec![1],
            labels: vec![],
        });
        let p = b.finish();
        let t = top(
            &p,
            &TopOptions {
                count: 10,
                ..TopOptions::default()
            },
        )
        .unwrap();
        assert_eq!(t.total, 5);
        assert_eq!(
            t.rows[0],
            FunctionTotals {
                function: "rec".into(),
                flat: 4,
                cum: 4
            }
        );
        assert_eq!(
            t.rows[1],
            FunctionTotals {
                function: "main".into(),
                flat: 1,
                cum: 5
            }
        );
    }
}
