//! `profiler trace`: records a Perfetto timeline of a process and prints its summary, or
//! prints the summary of a trace file (`--summary FILE`, no root needed).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use profiler::record::{StopReason, TargetSpec};
use profiler::trace::{
    self, MAX_DURATION, Summary, SummaryOptions, TraceOptions, read_trace_file, summarize,
};

use super::parse_duration;

/// A timeline of a process's threads for ui.perfetto.dev, and go-tool-trace-like tables.
#[derive(Debug, Args)]
#[command(
    after_help = "Recording needs root (or CAP_BPF and CAP_PERFMON); --summary does not.

The trace (Perfetto protobuf, timestamps on CLOCK_BOOTTIME) holds, for the target's threads:
  - scheduling per CPU (sched_switch and sched_waking, as ftrace events): each thread's
    Running / Runnable / Sleeping (S) / Uninterruptible (D) states and who woke it;
  - CPU samples (cpu-clock, -F Hz per CPU) with symbolized callstacks: a flame graph of any
    selected range;
  - the stack each thread blocked in, as samples on their own track (off-CPU stacks);
  - process and thread names; events lost in the kernel (counted per CPU);
  - with --heap, counter tracks: allocations, frees and bytes allocated per second, and the
    live heap (the Heap graph of go tool trace), every 100 ms.
Open the file at https://ui.perfetto.dev (Open trace file; it is read in the browser, nothing
is uploaded). At the end the summary tables are printed: per thread the time running,
runnable and blocked by state, the scheduler-latency histogram, the blocking sites with the
most blocked time, and the longest single blocks with their stacks and wakers.

Bounds: --duration is required and at most 60s; events go through a kernel ring buffer
sized from the duration and the event rate, read every 100 ms; what does not fit is
counted and written into the trace and the summary.

Examples:
  sudo profiler trace --pid 4242 --duration 2s -o trace.perfetto-trace
  sudo profiler trace --duration 5s -F 999 -o bench.perfetto-trace -- ./target/release/my-bench
  sudo profiler trace --pid 4242 --duration 2s --heap     # with the heap counters
  profiler trace --summary trace.perfetto-trace
  profiler trace --summary trace.perfetto-trace --json | jq '.threads[0]'"
)]
pub struct TraceArgs {
    /// Process ids to trace (all their threads); repeat or separate with commas.
    #[arg(short, long, value_delimiter = ',', conflicts_with_all = ["command", "summary"])]
    pub pid: Vec<u32>,
    /// Length of the window, e.g. 2s, 500ms (required when recording; at most 60s).
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// CPU samples per second per CPU (1..=10000).
    #[arg(short = 'F', long, default_value_t = profiler::trace::DEFAULT_FREQUENCY)]
    pub frequency: u64,
    /// Where to write the trace.
    #[arg(short, long, default_value = "trace.perfetto-trace")]
    pub output: PathBuf,
    /// Print the summary tables of an existing trace file instead of recording.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["command", "duration"])]
    pub summary: Option<PathBuf>,
    /// The summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also heap counters every 100 ms (allocations, frees and bytes per second; live bytes):
    /// exact and almost free when the program links heap-sampler (its registry and sampled
    /// USDT probes); otherwise uprobes on the allocator, where every call traps (about 0.7 us
    /// each here).
    #[arg(long)]
    pub heap: bool,
    /// Rows in the blocking-sites and longest-blocks tables.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Command to launch and trace; its exit code is passed on.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn trace(args: TraceArgs) -> Result<i32> {
    let opts = SummaryOptions {
        top_sites: args.top,
        longest_blocks: args.top,
    };
    if let Some(file) = &args.summary {
        let (timeline, read) = read_trace_file(file)?;
        if read.truncated_bytes > 0 {
            eprintln!(
                "{}: the last {} bytes are not a whole packet (a trace cut short); summarized what is whole",
                file.display(),
                read.truncated_bytes
            );
        }
        print_summary(&summarize(&timeline, &opts), args.json)?;
        return Ok(0);
    }
    let target = if !args.pid.is_empty() {
        TargetSpec::Pids {
            pids: args.pid,
            follow_children: false,
        }
    } else if !args.command.is_empty() {
        TargetSpec::Command(args.command)
    } else {
        anyhow::bail!(
            "nothing to trace: give --pid PID, a command after `--`, or --summary FILE to read a trace"
        );
    };
    let Some(duration) = args.duration else {
        anyhow::bail!(
            "--duration is required (at most {}s), e.g. --duration 2s",
            MAX_DURATION.as_secs()
        );
    };
    let opts_rec = TraceOptions {
        target,
        duration,
        frequency: args.frequency,
        output: args.output,
        heap: args.heap,
    };
    eprintln!(
        "tracing for {} (Ctrl-C ends it early) ...",
        humantime::format_duration(duration)
    );
    let traced = trace::record_trace(&opts_rec)?;
    if traced.stop == StopReason::Interrupted {
        eprintln!("interrupted: the trace covers what was recorded");
    }
    for note in &traced.notes {
        eprintln!("{note}");
    }
    let w = &traced.written;
    let secs = (traced.timeline.end_ns - traced.timeline.start_ns) as f64 / 1e9;
    eprintln!(
        "wrote {} ({} bytes, {:.0} KiB/s: {} scheduler events, {} CPU samples, {} off-CPU stacks, {} counter values); open it at https://ui.perfetto.dev",
        opts_rec.output.display(),
        w.bytes,
        w.bytes as f64 / 1024.0 / secs.max(1e-9),
        w.sched_events,
        w.cpu_samples,
        w.switch_stacks,
        w.counter_values,
    );
    print_summary(&summarize(&traced.timeline, &opts), args.json)?;
    Ok(traced.exit_code.unwrap_or(0))
}

fn print_summary(summary: &Summary, json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).context("encoding the summary")?
        );
    } else {
        print!("{summary}");
    }
    Ok(())
}
