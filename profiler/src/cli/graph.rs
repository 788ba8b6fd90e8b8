//! `profiler graph`: the pprof-style call graph of a capture, as SVG, PDF, PNG (through
//! Graphviz's `dot`) or the DOT text itself.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use profiler::capture;
use profiler::render::Selection;
use profiler::render::graph::{GraphOptions, output_format, render_dot, write_dot};

use super::FilterArgs;

/// Draw the call graph of a capture (boxes sized by flat, labelled flat/cum; arrows weighted
/// by cum), like `go tool pprof -svg`, without Go.
#[derive(Debug, Args)]
#[command(
    after_help = "The format follows the output's extension: .svg, .pdf, .png (laid out by
Graphviz's dot; scripts/setup.sh installs it) or .dot (the graph text).

Examples:
  profiler graph cpu.pb.gz -o graph.svg
  profiler graph cpu.pb.gz -o graph.pdf --focus 'search_server::search' --nodecount 40
  profiler graph heap.pb.gz --sample-type alloc_space -o alloc.svg
  profiler graph cpu.pb.gz -o graph.dot && dot -Tsvg graph.dot > graph.svg"
)]
pub struct GraphArgs {
    pub capture: PathBuf,
    /// Output file: .svg, .pdf, .png or .dot.
    #[arg(short, long, default_value = "graph.svg")]
    pub output: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Most functions drawn (the heaviest by cum).
    #[arg(long, default_value_t = 80, value_name = "N")]
    pub nodecount: usize,
    /// Drop functions whose cum is below this share of the total.
    #[arg(long, default_value_t = 0.005, value_name = "FRACTION")]
    pub nodefraction: f64,
    /// Drop arrows whose value is below this share of the total.
    #[arg(long, default_value_t = 0.001, value_name = "FRACTION")]
    pub edgefraction: f64,
    /// First line of the legend (default: the capture's target).
    #[arg(long)]
    pub title: Option<String>,
}

pub fn graph(args: GraphArgs) -> Result<i32> {
    let format = output_format(&args.output)?;
    let profile = capture::read_capture(&args.capture)?;
    let opts = GraphOptions {
        selection: Selection::new(
            args.filter.sample_type,
            args.filter.focus.as_deref(),
            args.filter.ignore.as_deref(),
        )?,
        node_count: args.nodecount.max(1),
        node_fraction: args.nodefraction.max(0.0),
        edge_fraction: args.edgefraction.max(0.0),
        title: args.title,
    };
    let dot = write_dot(&profile, &opts)?;
    let bytes = if format == "dot" {
        dot.into_bytes()
    } else {
        render_dot(&dot, format)?
    };
    capture::write_atomic(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(0)
}
