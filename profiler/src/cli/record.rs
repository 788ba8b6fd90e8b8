//! `profiler record`: arguments to `RecordOptions`, the library records and writes every
//! output, this prints the summary and passes a launched command's exit code on.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use profiler::record::{
    self, HeapMode, HeapOptions, OffCpuOptions, Outputs, RecordOptions, TargetSpec,
};

use profiler::unwind::{CallGraph, CallGraphMode};

use super::{parse_bytes, parse_duration, parse_threshold};

/// Sample the stacks of running processes (--pid, -a) or of a command it launches (after --).
#[derive(Debug, Args)]
#[command(after_help = "Needs root (or CAP_BPF and CAP_PERFMON).

Examples:
  sudo profiler record --pid 4242 --duration 10s
  sudo profiler record --pid 4242 -F 999 -o cpu.pb.gz --flamegraph cpu.svg --folded cpu.folded
  sudo profiler record --pid 4242,4243 --follow-children -d 30s
  sudo profiler record -a -d 5s -o all.pb.gz            # every process on the machine
  sudo profiler record --offcpu --pid 4242 -d 10s       # where its threads wait
  sudo profiler record --cpu --offcpu --pid 4242 -d 10s --flamegraph wall.svg   # wall clock
  sudo profiler record --heap --pid 4242 -d 30s --heap-snapshot-every 10s  # heap.0001.pb.gz, ...
  sudo profiler record --heap --min-age 5s -- ./my-service                 # what leaks
  sudo profiler record --page-faults --pid 4242 -d 10s                     # where RSS grows
  sudo profiler record -o bench.pb.gz -- cargo bench -p search-server --bench search
A launched command is recorded with every process it starts (a shell, cargo, make -j ...).
Without --duration, records until Ctrl-C or until the targets exit. A second Ctrl-C aborts.")]
pub struct RecordArgs {
    /// Process ids to profile (all their threads, including ones started later); repeat the
    /// flag or separate with commas.
    #[arg(short, long, value_delimiter = ',', conflicts_with_all = ["command", "all"])]
    pub pid: Vec<u32>,
    /// Also record the processes the --pid targets start from now on.
    #[arg(long, requires = "pid")]
    pub follow_children: bool,
    /// Record every process on the machine (but the profiler itself).
    #[arg(short, long, conflicts_with = "command")]
    pub all: bool,
    /// How long to record, e.g. 10s, 1500ms, 2m. Default: until Ctrl-C or the targets exit.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Sample stacks on the CPU (the default when no signal is named).
    #[arg(long)]
    pub cpu: bool,
    /// Sampling frequency of --cpu in Hz per CPU (1..=10000).
    #[arg(short = 'F', long, default_value_t = 99)]
    pub frequency: u64,
    /// How user stacks of --cpu and --page-faults samples and of long --offcpu blocks are
    /// taken: fp walks frame pointers
    /// in the kernel (cheapest; cut short by code built without them, such as gcc -O2 code
    /// and Debian's glibc); dwarf copies the top of each sample's stack and unwinds it with
    /// the objects' .eh_frame/.debug_frame tables; auto copies only the samples whose
    /// instruction lies in an object without frame pointers.
    #[arg(long, default_value = "auto", value_name = "fp|dwarf|auto")]
    pub call_graph: String,
    /// Bytes of user stack copied per sample with --call-graph dwarf|auto (a multiple of 8,
    /// at most 64KiB); deeper stacks are reported cut.
    #[arg(long, value_parser = parse_bytes, default_value = "16KiB", value_name = "BYTES")]
    pub stack_size: u64,
    /// Record where threads wait off the CPU (sleeping S, disk D, runnable R), charged to the
    /// stack they blocked in, with who woke them. With --cpu too, the capture also has a
    /// `wall` type: each thread's wall-clock time, on and off the CPU.
    #[arg(long)]
    pub offcpu: bool,
    /// Off-CPU intervals shorter than this are counted, but not charged to a stack.
    #[arg(long, value_parser = parse_threshold, default_value = "0", value_name = "DURATION")]
    pub offcpu_min: Duration,
    /// Record who woke a blocked thread only when it was blocked at least this long (a waker
    /// costs two stack walks).
    #[arg(long, value_parser = parse_threshold, default_value = "100us", value_name = "DURATION")]
    pub waker_min: Duration,
    /// With --call-graph dwarf|auto: blocks in a system call at least this long get their user
    /// stack copied (when the thread leaves the call) and unwound with the objects' tables;
    /// shorter ones keep the frame-pointer walk (a copy costs a few microseconds).
    #[arg(long, value_parser = parse_threshold, default_value = "100us", value_name = "DURATION")]
    pub offcpu_copy_min: Duration,
    /// Do not record who woke blocked threads.
    #[arg(long)]
    pub no_wakers: bool,
    /// Record heap profiles: allocated and in-use space and objects (Go's four types), by
    /// allocation site. Uses the heap-sampler allocator's probes when the program links it
    /// (nearly free), uprobes on its allocator otherwise (every malloc and free traps: about
    /// 0.7 us each here; fine at moderate allocation rates and short windows).
    #[arg(long)]
    pub heap: bool,
    /// Mean bytes between heap samples, for allocator uprobes (e.g. 512KiB, 64KiB, 1).
    #[arg(long, value_parser = parse_bytes, default_value = "512KiB", value_name = "BYTES")]
    pub heap_rate: u64,
    /// auto: heap-sampler probes where linked, allocator uprobes otherwise; uprobes; sampler.
    #[arg(long, value_enum, default_value_t = HeapModeArg::Auto)]
    pub heap_mode: HeapModeArg,
    /// Also write numbered captures of the heap this often (heap.0001.pb.gz, ...), over one
    /// attachment; the end or Ctrl-C writes the last.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub heap_snapshot_every: Option<Duration>,
    /// In-use only for allocations at least this old: the leak view.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub min_age: Option<Duration>,
    /// Record page faults with their stacks: which code first touches memory (RSS growth).
    #[arg(long)]
    pub page_faults: bool,
    /// Sample every Nth page fault.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub page_fault_period: u64,
    /// Where to write the pprof capture (default: cpu.pb.gz, offcpu.pb.gz, or wall.pb.gz
    /// with both).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
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

impl RecordArgs {
    fn into_options(self) -> Result<RecordOptions> {
        let target = if self.all {
            TargetSpec::All
        } else if !self.pid.is_empty() {
            TargetSpec::Pids {
                pids: self.pid,
                follow_children: self.follow_children,
            }
        } else if !self.command.is_empty() {
            TargetSpec::Command(self.command)
        } else {
            return Err(record::RecordError::NothingToRecord.into());
        };
        // No signal named: on-CPU sampling, as before there were others.
        let cpu = self.cpu || !(self.offcpu || self.heap || self.page_faults);
        let default_output = if cpu && self.offcpu {
            "wall.pb.gz"
        } else if cpu {
            "cpu.pb.gz"
        } else if self.offcpu {
            "offcpu.pb.gz"
        } else if self.heap {
            "heap.pb.gz"
        } else {
            "faults.pb.gz"
        };
        if (self.min_age.is_some() || self.heap_snapshot_every.is_some()) && !self.heap {
            anyhow::bail!("--min-age and --heap-snapshot-every need --heap");
        }
        let call_graph = CallGraph::new(
            self.call_graph.parse::<CallGraphMode>()?,
            u32::try_from(self.stack_size).unwrap_or(u32::MAX),
        )?;
        Ok(RecordOptions {
            target,
            duration: self.duration,
            cpu,
            frequency: self.frequency,
            call_graph,
            offcpu: self.offcpu.then_some(OffCpuOptions {
                min: self.offcpu_min,
                wakers: !self.no_wakers,
                waker_min: self.waker_min,
                copy_min: self.offcpu_copy_min,
            }),
            heap: self.heap.then_some(HeapOptions {
                rate: self.heap_rate,
                min_age: self.min_age,
                mode: match self.heap_mode {
                    HeapModeArg::Auto => HeapMode::Auto,
                    HeapModeArg::Uprobes => HeapMode::Uprobes,
                    HeapModeArg::Sampler => HeapMode::Sampler,
                },
            }),
            page_faults: self.page_faults.then_some(self.page_fault_period),
            snapshot_every: self.heap_snapshot_every,
            show_status: true,
            outputs: Outputs {
                capture: self.output.unwrap_or_else(|| default_output.into()),
                flamegraph: self.flamegraph,
                folded: self.folded,
            },
        })
    }
}

pub fn record(args: RecordArgs) -> Result<i32> {
    let opts = args.into_options()?;
    let mut recording = record::record(&opts)?;
    eprint!("{}", recording.summary);
    Ok(recording.finish_target().unwrap_or(0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeapModeArg {
    Auto,
    Uprobes,
    Sampler,
}
