//! Command line: the only module that knows clap. Each subcommand turns its arguments into the
//! library's option types and calls the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "profiler",
    version,
    about = "Profile native processes from the outside with eBPF; read, render and compare pprof captures",
    after_help = "Examples:
  sudo profiler record --pid 4242 --duration 10s -o cpu.pb.gz --flamegraph cpu.svg
  sudo profiler record -o bench.pb.gz -- ./target/release/my-bench --quick
  profiler top cpu.pb.gz -n 20
  profiler flamegraph cpu.pb.gz -o cpu.svg
  profiler diff base.pb.gz current.pb.gz -o diff.svg"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Record(RecordArgs),
    Flamegraph(FlamegraphArgs),
    Fold(FoldArgs),
    Top(TopArgs),
    List(ListArgs),
    Diff(DiffArgs),
    Convert(ConvertArgs),
}

/// Sample CPU stacks of a running process (--pid) or of a command it launches (after --).
#[derive(Debug, Args)]
#[command(after_help = "Needs root (or CAP_BPF and CAP_PERFMON).

Examples:
  sudo profiler record --pid 4242 --duration 10s
  sudo profiler record --pid 4242 -F 999 -o cpu.pb.gz --flamegraph cpu.svg --folded cpu.folded
  sudo profiler record -o bench.pb.gz -- cargo bench --bench search
Without --duration, records until Ctrl-C or until the target exits. A second Ctrl-C aborts.")]
pub struct RecordArgs {
    /// Process id to profile (all its threads, including ones started later).
    #[arg(short, long, conflicts_with = "command")]
    pub pid: Option<u32>,
    /// How long to record, e.g. 10s, 1500ms, 2m. Default: until Ctrl-C or the target exits.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Sampling frequency in Hz per CPU (1..=10000).
    #[arg(short = 'F', long, default_value_t = 99)]
    pub frequency: u64,
    /// Where to write the pprof capture.
    #[arg(short, long, default_value = "cpu.pb.gz")]
    pub output: PathBuf,
    /// Also write a flame graph SVG here.
    #[arg(long)]
    pub flamegraph: Option<PathBuf>,
    /// Also write folded stacks here.
    #[arg(long)]
    pub folded: Option<PathBuf>,
    /// Command to launch and profile until it exits; its exit code is passed on.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Draw a flame graph SVG from a capture (pprof or folded).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  profiler flamegraph cpu.pb.gz -o cpu.svg
  profiler flamegraph cpu.pb.gz --focus 'search' --reverse -o search-icicle.svg
  profiler flamegraph heap.pb.gz --sample-type inuse_space -o heap.svg")]
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

#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Sample type to use (e.g. samples, cpu, alloc_space); default: the capture's default.
    #[arg(long)]
    pub sample_type: Option<String>,
    /// Keep only stacks with a frame matching this regex.
    #[arg(long, value_name = "RE")]
    pub focus: Option<String>,
    /// Drop stacks with a frame matching this regex.
    #[arg(long, value_name = "RE")]
    pub ignore: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    Text,
    Csv,
    Json,
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
  profiler diff base.folded current.pb.gz --normalize
  profiler diff base.pb.gz current.pb.gz --fail-if-regressed 5   # for CI")]
pub struct DiffArgs {
    pub base: PathBuf,
    pub current: PathBuf,
    /// Differential flame graph output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub sample_type: Option<String>,
    /// Scale both captures to the same total.
    #[arg(long)]
    pub normalize: bool,
    /// Rows in the change table.
    #[arg(short = 'n', long, default_value_t = 15)]
    pub count: usize,
    /// Exit 3 when a function's share grew by more than PCT percentage points.
    #[arg(long, value_name = "PCT")]
    pub fail_if_regressed: Option<f64>,
}

/// Convert between pprof (.pb.gz) and folded stacks, by the output's extension.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  profiler convert cpu.pb.gz -o cpu.folded
  profiler convert perf.folded -o perf.pb.gz")]
pub struct ConvertArgs {
    pub input: PathBuf,
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long)]
    pub sample_type: Option<String>,
}

/// Parses `10s`, `1500ms`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (s, 1000.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("invalid duration {s:?} (try 10s, 1500ms, 2m)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("duration must be positive, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult_ms / 1000.0))
}

/// Entry point for `main`: returns the process exit code.
pub fn run() -> Result<i32> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Record(args) => record(args),
        Command::Flamegraph(_)
        | Command::Fold(_)
        | Command::Top(_)
        | Command::List(_)
        | Command::Diff(_)
        | Command::Convert(_) => anyhow::bail!("this command is being built"),
    }
}

/// `record`: validate everything that can be checked before sampling (frequency, output
/// paths, privileges), record, write every output, print the summary, and pass a launched
/// command's exit code on.
fn record(args: RecordArgs) -> Result<i32> {
    use anyhow::Context as _;
    use crate::record::{self, RecordOptions, TargetSpec};

    let target = match (args.pid, args.command.is_empty()) {
        (Some(pid), true) => TargetSpec::Pid(pid),
        (None, false) => TargetSpec::Command(args.command.clone()),
        (None, true) => anyhow::bail!("nothing to record: give --pid PID, or a command after `--` (e.g. `-- ./my-bench`)"),
        (Some(_), false) => anyhow::bail!("give either --pid or a command after `--`, not both"),
    };
    record::check_frequency(args.frequency)?;
    record::check_privileges()?;
    let mut outputs = vec![("capture:", args.output.clone())];
    outputs.extend(args.flamegraph.clone().map(|p| ("flame graph:", p)));
    outputs.extend(args.folded.clone().map(|p| ("folded:", p)));
    for (_, path) in &outputs {
        record::check_output_path(path)?;
    }
    let opts = RecordOptions { target, duration: args.duration, frequency: args.frequency, show_status: true };
    let mut recording = record::record(&opts)?;
    write_recording(&recording.profile, &args).context("writing the outputs")?;
    recording.summary.finish = Some(recording.stopped_at.elapsed());
    recording.summary.files = outputs.into_iter().map(|(w, p)| (w.to_string(), p)).collect();
    eprint!("{}", recording.summary);
    Ok(recording.finish_target().unwrap_or(0))
}

fn write_recording(profile: &crate::profile::Profile, args: &RecordArgs) -> Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;

    crate::capture::write_pprof(profile, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let create = |path: &std::path::Path| {
        std::fs::File::create(path)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("creating {}", path.display()))
    };
    if let Some(path) = &args.flamegraph {
        let mut out = create(path)?;
        let opts = crate::render::flamegraph::FlamegraphOptions::default();
        crate::render::flamegraph::write_flamegraph(profile, &opts, &mut out)
            .with_context(|| format!("writing {}", path.display()))?;
        out.flush().with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.folded {
        let mut out = create(path)?;
        let opts = crate::render::folded::FoldOptions::default();
        crate::render::folded::write_folded(profile, &opts, &mut out)
            .with_context(|| format!("writing {}", path.display()))?;
        out.flush().with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
