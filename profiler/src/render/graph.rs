//! The call graph (`go tool pprof -svg`/`web`, for people without Go): one box per function,
//! its font growing with its flat value, labelled flat and cum; one arrow per caller → callee
//! pair, as thick as the value that went through it; colour from grey (cold) to red (hot) by
//! cum. Written as Graphviz DOT, which `dot` lays out into SVG or PDF.
//!
//! Like pprof's graphs it stays readable on big profiles by keeping only the heaviest
//! functions (by cum, at most `node_count`, none under `node_fraction` of the total) and
//! the arrows above `edge_fraction`; an arrow that skips dropped functions is dotted, and the
//! legend says how much was dropped. Inlined calls are labelled `(inline)`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{Metadata, RenderError, Selection, Unit};
use crate::profile::Profile;

#[derive(Debug, Clone)]
pub struct GraphOptions {
    pub selection: Selection,
    /// Most functions drawn.
    pub node_count: usize,
    /// Functions whose cum is below this share of the total are dropped.
    pub node_fraction: f64,
    /// Arrows whose value is below this share of the total are dropped.
    pub edge_fraction: f64,
    /// Overrides the legend's first line (the capture's target).
    pub title: Option<String>,
}

impl Default for GraphOptions {
    /// pprof's defaults, so the two draw comparable graphs.
    fn default() -> Self {
        Self {
            selection: Selection::default(),
            node_count: 80,
            node_fraction: 0.005,
            edge_fraction: 0.001,
            title: None,
        }
    }
}

/// What the graph holds, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Kept functions, heaviest (cum) first.
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Total of the selected samples.
    pub total: i64,
    /// Functions left out, and the largest cum among them.
    pub dropped_nodes: usize,
    pub dropped_node_max: i64,
    /// Arrows left out, and the largest value among them.
    pub dropped_edges: usize,
    pub dropped_edge_max: i64,
    /// Functions with a value before any was dropped.
    pub all_nodes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub flat: i64,
    pub cum: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Indexes into `Graph::nodes`.
    pub from: usize,
    pub to: usize,
    pub value: i64,
    /// The callee was inlined into the caller (on every stack through this arrow).
    pub inline: bool,
    /// Dropped functions lay between the two on some stack.
    pub residual: bool,
}

/// Builds the graph of the selected samples.
pub fn build_graph(profile: &Profile, opts: &GraphOptions) -> Result<Graph, RenderError> {
    let vi = opts.selection.value_index(profile, "the capture")?;
    // Per sample: the stack as function-name ids, root first, with "inlined into its
    // caller" per frame, and the value.
    let mut names: Vec<String> = Vec::new();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut stacks: Vec<(Vec<(usize, bool)>, i64)> = Vec::new();
    for (sample, value) in opts.selection.samples(profile, vi) {
        let stack: Vec<(usize, bool)> = profile
            .sample_frames(sample)
            .map(|f| {
                let name = f.function.name.as_str();
                let id = *ids.entry(name).or_insert_with(|| {
                    names.push(display_name(name));
                    names.len() - 1
                });
                (id, f.inlined)
            })
            .collect();
        stacks.push((stack, value));
    }
    if stacks.is_empty() {
        return Err(RenderError::NoMatch(
            "no samples to draw (none left after --focus/--ignore, or the capture is empty)".into(),
        ));
    }
    let total: i64 = stacks.iter().map(|(_, v)| v).sum();
    let mut flat = vec![0i64; names.len()];
    let mut cum = vec![0i64; names.len()];
    let mut seen = vec![usize::MAX; names.len()];
    for (n, (stack, value)) in stacks.iter().enumerate() {
        if let Some(&(leaf, _)) = stack.last() {
            flat[leaf] += value;
        }
        for &(id, _) in stack {
            // Recursion counts a function once per stack.
            if seen[id] != n {
                seen[id] = n;
                cum[id] += value;
            }
        }
    }

    // The functions kept: heaviest by cum, then flat, then name (a stable order).
    let mut order: Vec<usize> = (0..names.len()).filter(|&i| cum[i] != 0).collect();
    let all_nodes = order.len();
    order.sort_by(|&a, &b| {
        cum[b]
            .abs()
            .cmp(&cum[a].abs())
            .then(flat[b].abs().cmp(&flat[a].abs()))
            .then(names[a].cmp(&names[b]))
    });
    let min_cum = (opts.node_fraction * total.abs() as f64).ceil() as i64;
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        if rank < opts.node_count && cum[i].abs() >= min_cum {
            kept.push(i);
        } else {
            dropped.push(i);
        }
    }
    let mut index = vec![usize::MAX; names.len()];
    for (n, &i) in kept.iter().enumerate() {
        index[i] = n;
    }

    // Arrows between consecutive kept functions of each stack.
    #[derive(Default)]
    struct Acc {
        value: i64,
        inline_all: bool,
        residual: bool,
        last_sample: usize,
    }
    let mut acc: BTreeMap<(usize, usize), Acc> = BTreeMap::new();
    for (n, (stack, value)) in stacks.iter().enumerate() {
        let mut prev: Option<usize> = None;
        // Whether a dropped function lies between `prev` and the current frame.
        let mut skipped = false;
        for &(id, inlined) in stack {
            let node = index[id];
            if node == usize::MAX {
                skipped = true;
                continue;
            }
            if let Some(from) = prev
                && from != node
            {
                let a = acc.entry((from, node)).or_insert_with(|| Acc {
                    inline_all: true,
                    last_sample: usize::MAX,
                    ..Acc::default()
                });
                if a.last_sample != n {
                    a.last_sample = n;
                    a.value += value;
                }
                a.inline_all &= inlined && !skipped;
                a.residual |= skipped;
            }
            prev = Some(node);
            skipped = false;
        }
    }
    let min_edge = (opts.edge_fraction * total.abs() as f64).ceil() as i64;
    let mut edges = Vec::new();
    let mut dropped_edges = 0;
    let mut dropped_edge_max = 0;
    for ((from, to), a) in acc {
        if a.value.abs() < min_edge {
            dropped_edges += 1;
            dropped_edge_max = dropped_edge_max.max(a.value.abs());
            continue;
        }
        edges.push(Edge {
            from,
            to,
            value: a.value,
            inline: a.inline_all,
            residual: a.residual,
        });
    }
    Ok(Graph {
        nodes: kept
            .iter()
            .map(|&i| Node {
                name: names[i].clone(),
                flat: flat[i],
                cum: cum[i],
            })
            .collect(),
        edges,
        total,
        dropped_nodes: dropped.len(),
        dropped_node_max: dropped.iter().map(|&i| cum[i].abs()).max().unwrap_or(0),
        dropped_edges,
        dropped_edge_max,
        all_nodes,
    })
}

/// A function name for a box: without the Rust hash suffix, broken into lines at `::` so
/// long paths stay narrow.
fn display_name(name: &str) -> String {
    let name = match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    };
    if name.is_empty() {
        return "[unknown]".into();
    }
    name.to_string()
}

/// Splits a name into lines of about `width` characters at `::` boundaries.
fn wrap(name: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    let parts: Vec<&str> = name.split("::").collect();
    for (i, part) in parts.iter().enumerate() {
        let piece = if i + 1 < parts.len() {
            format!("{part}::")
        } else {
            (*part).to_string()
        };
        if !current.is_empty() && current.len() + piece.len() > width {
            lines.push(std::mem::take(&mut current));
        }
        current.push_str(&piece);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// DOT strings: quotes and backslashes escaped; `\n` is DOT's own line break.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Mixes two colours: `t` = 0 gives `a`, 1 gives `b`.
fn mix(a: (u8, u8, u8), b: (u8, u8, u8), t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let m = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", m(a.0, b.0), m(a.1, b.1), m(a.2, b.2))
}

/// How hot a value is for colours: the square root of its share spreads the cold end,
/// where most functions are.
fn heat(value: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (value.abs() as f64 / total.abs() as f64).sqrt()
    }
}

fn pct(v: i64, total: i64) -> String {
    if total == 0 {
        "0%".into()
    } else {
        format!("{:.2}%", 100.0 * v as f64 / total as f64)
    }
}

/// The graph as Graphviz DOT text (deterministic: same capture and options, same bytes).
pub fn write_dot(profile: &Profile, opts: &GraphOptions) -> Result<String, RenderError> {
    let graph = build_graph(profile, opts)?;
    let vi = opts.selection.value_index(profile, "the capture")?;
    let t = &profile.sample_types[vi];
    let unit = Unit::of(t);
    let fmt = |v: i64| unit.format(v as f64);
    let meta = Metadata::of(profile);

    let mut legend = Vec::new();
    if let Some(title) = opts.title.clone().or(meta.target) {
        legend.push(title);
    }
    legend.push(format!("Type: {}", t.kind));
    if let Some(d) = meta.duration_secs {
        legend.push(format!("Duration: {d:.2} s"));
    }
    let shown: i64 = graph.nodes.iter().map(|n| n.flat).sum();
    legend.push(format!(
        "Showing nodes accounting for {}, {} of {} total",
        fmt(shown),
        pct(shown, graph.total),
        fmt(graph.total)
    ));
    if graph.dropped_nodes > 0 {
        legend.push(format!(
            "Dropped {} nodes (cum <= {})",
            graph.dropped_nodes,
            fmt(graph.dropped_node_max)
        ));
    }
    if graph.dropped_edges > 0 {
        legend.push(format!(
            "Dropped {} edges (freq <= {})",
            graph.dropped_edges,
            fmt(graph.dropped_edge_max)
        ));
    }
    if graph.nodes.len() < graph.all_nodes {
        legend.push(format!(
            "Showing top {} nodes out of {}",
            graph.nodes.len(),
            graph.all_nodes
        ));
    }

    let mut dot = String::new();
    dot.push_str("digraph \"call graph\" {\n");
    dot.push_str("node [style=filled fillcolor=\"#f8f8f8\" fontname=\"Helvetica\"]\n");
    dot.push_str("edge [fontname=\"Helvetica\"]\n");
    // The legend: left-aligned lines (`\l`) in a plain box, as pprof draws it.
    let legend_label: String = legend
        .iter()
        .map(|l| quote(l).trim_matches('"').to_string() + "\\l")
        .collect();
    let _ = writeln!(
        dot,
        "subgraph cluster_legend {{ \"legend\" [shape=box fontsize=16 label=\"{legend_label}\" tooltip=\"legend\"] }}"
    );
    let max_flat = graph.nodes.iter().map(|n| n.flat.abs()).max().unwrap_or(0);
    for (i, n) in graph.nodes.iter().enumerate() {
        let mut label = wrap(&n.name, 32).join("\n");
        let _ = write!(label, "\n{} ({})", fmt(n.flat), pct(n.flat, graph.total));
        if n.cum != n.flat {
            let _ = write!(label, "\nof {} ({})", fmt(n.cum), pct(n.cum, graph.total));
        }
        let size = if max_flat == 0 {
            10
        } else {
            10 + (22.0 * (n.flat.abs() as f64 / max_flat as f64).sqrt()).round() as i64
        };
        let h = heat(n.cum, graph.total);
        let _ = writeln!(
            dot,
            "N{} [label={} id=\"node{}\" fontsize={size} shape=box tooltip={} color=\"{}\" fillcolor=\"{}\"]",
            i + 1,
            quote(&label),
            i + 1,
            quote(&format!("{} ({})", n.name, fmt(n.cum))),
            mix((0xa0, 0xa0, 0xa0), (0xc0, 0x00, 0x00), h),
            mix((0xf4, 0xf4, 0xf4), (0xf4, 0xc4, 0xc4), h),
        );
    }
    let max_edge = graph.edges.iter().map(|e| e.value.abs()).max().unwrap_or(0);
    for e in &graph.edges {
        let share = if max_edge == 0 {
            0.0
        } else {
            e.value.abs() as f64 / max_edge as f64
        };
        let weight = 1 + (100.0 * e.value.abs() as f64 / graph.total.abs().max(1) as f64) as i64;
        let mut label = format!(" {}", fmt(e.value));
        if e.inline {
            label.push_str(" (inline)");
        }
        let style = if e.residual { " style=dotted" } else { "" };
        let _ = writeln!(
            dot,
            "N{} -> N{} [label={} weight={weight} penwidth={:.2} color=\"{}\" tooltip={}{style}]",
            e.from + 1,
            e.to + 1,
            quote(&label),
            1.0 + 4.0 * share,
            mix(
                (0xb0, 0xb0, 0xb0),
                (0xc0, 0x00, 0x00),
                heat(e.value, graph.total)
            ),
            quote(&format!(
                "{} -> {} ({})",
                graph.nodes[e.from].name,
                graph.nodes[e.to].name,
                fmt(e.value)
            )),
        );
    }
    dot.push_str("}\n");
    Ok(dot)
}

/// What `path`'s extension asks for: `dot` (the DOT text itself) or a format `dot -T` makes.
pub fn output_format(path: &Path) -> Result<&'static str, RenderError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("dot" | "gv") => Ok("dot"),
        Some("svg") => Ok("svg"),
        Some("pdf") => Ok("pdf"),
        Some("png") => Ok("png"),
        _ => Err(RenderError::NoMatch(format!(
            "cannot tell the graph format from {}: name it .svg, .pdf, .png or .dot",
            path.display()
        ))),
    }
}

/// Lays out DOT text with Graphviz's `dot` into `format` (svg, pdf, png).
pub fn render_dot(dot: &str, format: &str) -> Result<Vec<u8>, RenderError> {
    let mut child = Command::new("dot")
        .arg(format!("-T{format}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            RenderError::Tool(format!(
                "cannot run Graphviz's `dot` ({e}): install graphviz (apt install graphviz; scripts/setup.sh does), or write .dot and lay it out elsewhere"
            ))
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = dot.to_string();
    // Written from a thread: dot may fill its stdout pipe before it has read all its input.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(RenderError::Tool(format!(
            "dot -T{format} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Line, ProfileBuilder, Sample, ValueType};

    /// main → a → c (inlined into a), main → b → c; c is hot.
    fn profile() -> Profile {
        let mut b = ProfileBuilder::new(vec![ValueType::new("samples", "count")]);
        let main = b.function("main", "m.rs");
        let fa = b.function("app::a", "a.rs");
        let fb = b.function("app::b", "b.rs");
        let fc = b.function("app::c", "c.rs");
        let l_main = b.location(
            None,
            1,
            vec![Line {
                function: main,
                line: 1,
            }],
        );
        let l_ac = b.location(
            None,
            2,
            vec![
                Line {
                    function: fc,
                    line: 3,
                },
                Line {
                    function: fa,
                    line: 2,
                },
            ],
        );
        let l_b = b.location(
            None,
            3,
            vec![Line {
                function: fb,
                line: 4,
            }],
        );
        let l_c = b.location(
            None,
            4,
            vec![Line {
                function: fc,
                line: 5,
            }],
        );
        for (locs, v) in [
            (vec![l_ac, l_main], 60),
            (vec![l_c, l_b, l_main], 30),
            (vec![l_b, l_main], 9),
            (vec![l_main], 1),
        ] {
            b.add_sample(Sample {
                locations: locs,
                values: vec![v],
                labels: vec![],
            });
        }
        b.finish()
    }

    #[test]
    fn flat_cum_and_edges() {
        let g = build_graph(&profile(), &GraphOptions::default()).unwrap();
        assert_eq!(g.total, 100);
        let node = |n: &str| g.nodes.iter().position(|x| x.name == n).unwrap();
        assert_eq!(g.nodes[0].name, "main");
        assert_eq!((g.nodes[0].flat, g.nodes[0].cum), (1, 100));
        let c = &g.nodes[node("app::c")];
        assert_eq!((c.flat, c.cum), (90, 90));
        let edge = |a: &str, b: &str| {
            g.edges
                .iter()
                .find(|e| e.from == node(a) && e.to == node(b))
                .cloned()
                .unwrap()
        };
        assert_eq!(edge("main", "app::b").value, 39);
        let ac = edge("app::a", "app::c");
        assert_eq!(ac.value, 60);
        assert!(ac.inline && !ac.residual);
        assert!(!edge("app::b", "app::c").inline);
    }

    #[test]
    fn dropped_nodes_make_residual_edges() {
        let opts = GraphOptions {
            node_count: 3,
            ..GraphOptions::default()
        };
        let g = build_graph(&profile(), &opts).unwrap();
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        // By cum: main 100, c 90, a 60 (b 39 is dropped).
        assert_eq!(names, vec!["main", "app::c", "app::a"]);
        assert_eq!(g.dropped_nodes, 1);
        assert_eq!(g.dropped_node_max, 39);
        let through_b = g.edges.iter().find(|e| e.from == 0 && e.to == 1).unwrap();
        assert!(through_b.residual);
        assert_eq!(through_b.value, 30);
        let dot = write_dot(&profile(), &opts).unwrap();
        assert!(dot.contains("Dropped 1 nodes (cum <= 39)"), "{dot}");
        assert!(dot.contains("style=dotted"), "{dot}");
    }

    #[test]
    fn names_wrap_and_quote() {
        assert_eq!(
            wrap("search_server::search::matches::lowercase", 20),
            vec!["search_server::", "search::matches::", "lowercase"]
        );
        assert_eq!(display_name("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(mix((0, 0, 0), (255, 255, 255), 0.5), "#808080");
    }
}
