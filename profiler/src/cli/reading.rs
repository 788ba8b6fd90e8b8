//! The commands that read captures (no root needed): flamegraph, fold, top, list, diff,
//! convert.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use profiler::capture;
use profiler::render::diff::{DiffOptions, diff_table, write_diff_flamegraph};
use profiler::render::flamegraph::{FlamegraphOptions, write_flamegraph};
use profiler::render::folded::{FoldOptions, write_folded};
use profiler::render::list::{ListOptions, write_list};
use profiler::render::top::{Format, TopOptions, top as top_table};
use profiler::render::{RenderError, Selection, compile};

use super::{FilterArgs, TableFormat};

/// Draw a flame graph SVG from a capture (pprof or folded).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  profiler flamegraph cpu.pb.gz -o cpu.svg
  profiler flamegraph cpu.pb.gz --focus 'search' --reverse -o search-icicle.svg
  profiler flamegraph heap.pb.gz --sample-type inuse_space -o heap.svg
  profiler flamegraph wall.pb.gz --sample-type offcpu --tag state=S --tag state=D -o blocked.svg
  profiler flamegraph all.pb.gz --per-process -o all.svg")]
pub struct FlamegraphArgs {
    pub capture: PathBuf,
    /// Output SVG path.
    #[arg(short, long, default_value = "flamegraph.svg")]
    pub output: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Draw an icicle graph (roots at the top).
    #[arg(long)]
    pub reverse: bool,
    /// One root frame per thread.
    #[arg(long)]
    pub per_thread: bool,
    /// One root frame per process (with `record -a` or several pids).
    #[arg(long)]
    pub per_process: bool,
    /// Title (default: from the capture's metadata).
    #[arg(long)]
    pub title: Option<String>,
}

/// Print folded stacks (`root;...;leaf count`) of a capture to stdout.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  profiler fold cpu.pb.gz > cpu.folded
  profiler fold cpu.pb.gz --sample-type cpu | sort -k2 -n")]
pub struct FoldArgs {
    pub capture: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// The flat/cumulative table of functions, like `go tool pprof -top`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  profiler top cpu.pb.gz
  profiler top cpu.pb.gz -n 40 --cum
  profiler top heap.pb.gz --sample-type alloc_space --format csv")]
pub struct TopArgs {
    pub capture: PathBuf,
    /// Number of rows.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub count: usize,
    /// Sort by cumulative value instead of flat.
    #[arg(long)]
    pub cum: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long, value_enum, default_value_t = TableFormat::Text)]
    pub format: TableFormat,
}

/// Annotated source of the functions matching REGEX, with flat and cum values per line.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  profiler list cpu.pb.gz 'search_server::search'
  profiler list cpu.pb.gz matches --source-dir ~/src/search-server")]
pub struct ListArgs {
    pub capture: PathBuf,
    pub regex: String,
    /// Extra directories to look for source files in.
    #[arg(long)]
    pub source_dir: Vec<PathBuf>,
    #[arg(long)]
    pub sample_type: Option<String>,
}

/// Compare a base capture with a current one: differential flame graph and change table.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  profiler diff base.pb.gz current.pb.gz -o diff.svg
  profiler diff base.pb.gz current.pb.gz --cum     # which code paths grew, callees included
  profiler diff base.pb.gz current.pb.gz --focus 'search_server::search' -o search-diff.svg
  profiler diff base.folded current.pb.gz --normalize
  profiler diff base.pb.gz current.pb.gz --fail-if-regressed 5   # for CI
  profiler diff heap-1.pb.gz heap-2.pb.gz --sample-type inuse_space
  profiler diff heap-1.pb.gz heap-2.pb.gz --sample-type alloc_space --cum --rows '^my_service::' 
Time types (cpu, samples, off-CPU) compare per second of capture, heap types as totals.")]
pub struct DiffArgs {
    pub base: PathBuf,
    pub current: PathBuf,
    /// Differential flame graph output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Scale both captures to the same total.
    #[arg(long)]
    pub normalize: bool,
    /// Compare cumulative values (a function and all it calls) instead of flat ones.
    #[arg(long)]
    pub cum: bool,
    /// Rows in the change table.
    #[arg(short = 'n', long, default_value_t = 15)]
    pub count: usize,
    /// Only functions matching this regex get rows (e.g. your crate: '^my_service::'); shares
    /// are still of everything.
    #[arg(long, value_name = "RE")]
    pub rows: Option<String>,
    /// Exit 3 when a function's share (flat, or cum with --cum) grew by more than PCT
    /// percentage points.
    #[arg(long, value_name = "PCT")]
    pub fail_if_regressed: Option<f64>,
    /// Format of the change table.
    #[arg(long, value_enum, default_value_t = TableFormat::Text)]
    pub format: TableFormat,
}

/// Convert between pprof (.pb.gz) and folded stacks, by the output's extension.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  profiler convert cpu.pb.gz -o cpu.folded
  profiler convert perf.folded -o perf.pb.gz")]
pub struct ConvertArgs {
    /// Capture to read: pprof (.pb.gz or raw) or folded stacks
    pub input: PathBuf,
    /// File to write: folded stacks (*.folded, .fold, .collapsed, .txt) or pprof (*.pb.gz, .pb, .pprof)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Sample type to write when converting to folded (default: the capture's default)
    #[arg(long)]
    pub sample_type: Option<String>,
}

/// Exit code of `diff --fail-if-regressed` when a share grew too much (1 is for errors).
pub const EXIT_REGRESSED: i32 = 3;

/// Reads a capture, warning (not failing) about skipped malformed folded lines.
pub fn load(path: &Path) -> Result<profiler::profile::Profile> {
    let loaded = capture::read_capture_detailed(path)?;
    if let Some(r) = loaded.folded.as_ref().filter(|r| r.malformed > 0) {
        let (n, line) = r.first_malformed.clone().unwrap_or_default();
        eprintln!(
            "profiler: warning: {}: skipped {} malformed line(s) of {} (first: line {n}: {line:?}); \
             folded lines look like `root;caller;leaf 123`",
            path.display(),
            r.malformed,
            r.malformed + r.stacks
        );
    }
    Ok(loaded.profile)
}

fn selection(f: &FilterArgs) -> Result<Selection> {
    Ok(Selection::new(
        f.sample_type.clone(),
        f.focus.as_deref(),
        f.ignore.as_deref(),
    )?
    .with_tags(&f.tag)?)
}

pub fn format(f: TableFormat) -> Format {
    match f {
        TableFormat::Text => Format::Text,
        TableFormat::Csv => Format::Csv,
        TableFormat::Json => Format::Json,
    }
}

/// Names the file in render errors about a capture (e.g. an unknown sample type).
fn in_file(path: &Path) -> impl FnOnce(RenderError) -> anyhow::Error + '_ {
    move |e| anyhow::Error::new(e).context(format!("{}", path.display()))
}

/// Writes stdout output; a closed pipe (`| head`) is not an error.
pub fn to_stdout(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<i32> {
    let stdout = std::io::stdout();
    let mut lock = std::io::BufWriter::new(stdout.lock());
    match write(&mut lock).and_then(|()| lock.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        r => r.map(|()| 0).context("writing to stdout"),
    }
}

pub fn flamegraph(args: FlamegraphArgs) -> Result<i32> {
    let profile = load(&args.capture)?;
    let opts = FlamegraphOptions {
        fold: FoldOptions {
            selection: selection(&args.filter)?,
            per_thread: args.per_thread,
            per_process: args.per_process,
        },
        reverse: args.reverse,
        title: args.title,
    };
    let mut svg = Vec::new();
    write_flamegraph(&profile, &opts, &mut svg).map_err(in_file(&args.capture))?;
    capture::write_atomic(&args.output, &svg)?;
    eprintln!("flame graph written to {}", args.output.display());
    Ok(0)
}

pub fn fold(args: FoldArgs) -> Result<i32> {
    let profile = load(&args.capture)?;
    let opts = FoldOptions {
        selection: selection(&args.filter)?,
        per_thread: false,
        per_process: false,
    };
    // Compute first so a bad sample type is reported as itself, not as an I/O error.
    let stacks = profiler::render::folded::fold(&profile, &opts).map_err(in_file(&args.capture))?;
    if stacks.is_empty() && (args.filter.focus.is_some() || args.filter.ignore.is_some()) {
        bail!(
            "{}: no samples left after --focus/--ignore; loosen the regexes",
            args.capture.display()
        );
    }
    to_stdout(|w| profiler::render::folded::write_lines(&stacks, w))
}

pub fn top(args: TopArgs) -> Result<i32> {
    let profile = load(&args.capture)?;
    let opts = TopOptions {
        selection: selection(&args.filter)?,
        count: args.count,
        by_cum: args.cum,
    };
    let table = top_table(&profile, &opts).map_err(in_file(&args.capture))?;
    to_stdout(|w| table.write(format(args.format), &mut &mut *w))
}

pub fn list(args: ListArgs) -> Result<i32> {
    let profile = load(&args.capture)?;
    let opts = ListOptions {
        selection: Selection {
            sample_type: args.sample_type,
            ..Selection::default()
        },
        regex: compile(&args.regex)?,
        source_dirs: args.source_dir,
    };
    let mut out = Vec::new();
    write_list(&profile, &opts, &mut out).map_err(in_file(&args.capture))?;
    to_stdout(|w| w.write_all(&out))
}

pub fn diff(args: DiffArgs) -> Result<i32> {
    // Decoding dominates on big captures and the two files are independent.
    let (base, current) = std::thread::scope(|s| {
        let base = s.spawn(|| load(&args.base));
        let current = load(&args.current);
        (base.join().expect("loading does not panic"), current)
    });
    let (base, current) = (base?, current?);
    let opts = DiffOptions {
        selection: selection(&args.filter)?,
        normalize: args.normalize,
        count: args.count,
        by_cum: args.cum,
        rows: args.rows.as_deref().map(compile).transpose()?,
    };
    let table = diff_table(&base, &current, &opts)?;
    if let Some(out) = &args.output {
        let mut svg = Vec::new();
        write_diff_flamegraph(&base, &current, &opts, &mut svg)?;
        capture::write_atomic(out, &svg)?;
        eprintln!("differential flame graph written to {}", out.display());
    }
    to_stdout(|w| table.write(format(args.format), &mut &mut *w))?;
    if let Some(limit) = args.fail_if_regressed {
        if !(limit.is_finite() && limit >= 0.0) {
            bail!("--fail-if-regressed {limit} is not a percentage; give e.g. 5 for 5 points");
        }
        if let Some((function, grew)) = table.max_share_growth().filter(|&(_, g)| g > limit) {
            eprintln!(
                "profiler: regression: the share of {function} grew by {grew:.2} points (limit {limit})"
            );
            return Ok(EXIT_REGRESSED);
        }
    }
    Ok(0)
}

/// Output kind from the output path's extension.
fn is_folded_path(path: &Path) -> Result<bool> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if [".folded", ".fold", ".collapsed", ".txt"]
        .iter()
        .any(|e| name.ends_with(e))
    {
        Ok(true)
    } else if [".pb.gz", ".pb", ".pprof", ".gz"]
        .iter()
        .any(|e| name.ends_with(e))
    {
        Ok(false)
    } else {
        bail!(
            "cannot tell the output format of {}: name it *.folded (folded stacks) or *.pb.gz (pprof)",
            path.display()
        )
    }
}

pub fn convert(args: ConvertArgs) -> Result<i32> {
    let to_folded = is_folded_path(&args.output)?;
    let profile = load(&args.input)?;
    if to_folded {
        let opts = FoldOptions {
            selection: Selection {
                sample_type: args.sample_type,
                ..Selection::default()
            },
            per_thread: false,
            per_process: false,
        };
        let mut out = Vec::new();
        write_folded(&profile, &opts, &mut out).map_err(in_file(&args.input))?;
        capture::write_atomic(&args.output, &out)?;
    } else {
        if let Some(t) = &args.sample_type {
            bail!("--sample-type {t} applies to folded output only; pprof keeps every sample type");
        }
        capture::write_pprof(&profile, &args.output)?;
    }
    eprintln!("wrote {}", args.output.display());
    Ok(0)
}
