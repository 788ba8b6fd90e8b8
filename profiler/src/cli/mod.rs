//! Command line of the `profiler` binary: the only code that knows clap and anyhow. Each
//! subcommand turns its arguments into the library's option types and calls the library.

mod graph;
mod info;
mod reading;
mod record;
mod serve;
mod trace;
mod watch;

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
  sudo profiler watch --pid 4242 --detail
  sudo profiler trace --pid 4242 --duration 2s -o trace.perfetto-trace
  profiler top cpu.pb.gz -n 20
  profiler flamegraph cpu.pb.gz -o cpu.svg
  profiler diff base.pb.gz current.pb.gz -o diff.svg
  profiler info cpu.pb.gz
  profiler graph cpu.pb.gz -o graph.svg
  sudo profiler serve --pid 4242    # then: go tool pprof http://127.0.0.1:6060/debug/pprof/profile"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Record(record::RecordArgs),
    Watch(watch::WatchArgs),
    Trace(trace::TraceArgs),
    Flamegraph(reading::FlamegraphArgs),
    Fold(reading::FoldArgs),
    Top(reading::TopArgs),
    List(reading::ListArgs),
    Diff(reading::DiffArgs),
    Convert(reading::ConvertArgs),
    Info(info::InfoArgs),
    Serve(serve::ServeArgs),
    Graph(graph::GraphArgs),
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
    /// Keep only samples with this label value, e.g. `state=S`, `process=search-server`,
    /// `thread=worker-1`; repeat for several (values of one key are alternatives).
    #[arg(long, value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    Text,
    Csv,
    Json,
}

/// Parses `10s`, `1500ms`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("us").or(s.strip_suffix("µs")) {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
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
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (try 10s, 1500ms, 100us, 2m)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("duration must be positive, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult_ms / 1000.0))
}

/// Parses a byte count: `524288`, `512KiB`, `64k`, `1MiB`, `2m` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = [
        ("kib", 1u64 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("k", 1 << 10),
        ("m", 1 << 20),
        ("g", 1 << 30),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suffix, m)| {
        lower
            .strip_suffix(suffix)
            .map(|n| (n.trim().to_string(), *m))
    })
    .unwrap_or((lower.clone(), 1));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {t:?} (try 512KiB, 64k, 1MiB, 4096)"))?;
    if n == 0 {
        return Err(format!("the size must be positive, got {t:?}"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("the size {t:?} is too large"))
}

/// Like [`parse_duration`], but 0 is allowed (a threshold of nothing).
pub fn parse_threshold(s: &str) -> Result<Duration, String> {
    if s.trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == 'µ')
        == "0"
    {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// Entry point for `main`: returns the process exit code.
pub fn run() -> Result<i32> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Record(args) => record::record(args),
        Command::Watch(args) => watch::watch(args),
        Command::Trace(args) => trace::trace(args),
        Command::Flamegraph(args) => reading::flamegraph(args),
        Command::Fold(args) => reading::fold(args),
        Command::Top(args) => reading::top(args),
        Command::List(args) => reading::list(args),
        Command::Diff(args) => reading::diff(args),
        Command::Convert(args) => reading::convert(args),
        Command::Info(args) => info::info(args),
        Command::Serve(args) => serve::serve(args),
        Command::Graph(args) => graph::graph(args),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_threshold("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_bytes("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_bytes("64k").unwrap(), 65536);
        assert_eq!(parse_bytes("1").unwrap(), 1);
        assert_eq!(parse_bytes("2MiB").unwrap(), 2 << 20);
        assert!(parse_bytes("0").is_err() && parse_bytes("lots").is_err());
        assert_eq!(parse_threshold("0us").unwrap(), Duration::ZERO);
        assert_eq!(parse_threshold("50us").unwrap(), Duration::from_micros(50));
        assert!(parse_threshold("-1").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
