//! `profiler watch`: arguments to `WatchOptions`; each interval printed as text lines or one
//! JSON object per line on stdout, notes about the recording on stderr.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use profiler::record::TargetSpec;
use profiler::watch::{self, Output, Stop, WatchOptions};

use super::parse_duration;

/// Live scheduler and allocation lines for a process, like Go's GODEBUG=schedtrace,gctrace.
#[derive(Debug, Args)]
#[command(after_help = "Needs root (or CAP_BPF and CAP_PERFMON).

Each interval prints (rates per second; `-` where a figure could not be read):
  SCHED <ms>: cpus threads cpu usr sys running runnable rqlat_p50 rqlat_p99 rqlat_max vcsw ivcsw migr
  ALLOC <ms>: source [allocs frees alloc_bytes [live]] rss anon minflt majflt
and with --detail one line per thread (amounts during the interval):
  T<tid> \"name\" state cpu oncpu rq vcsw ivcsw migr wait

Where each field comes from:
  cpus                  CPUs the process may run on (sched_getaffinity)
  threads               /proc/PID/stat num_threads
  cpu, usr, sys         /proc/PID/stat utime+stime, % of one CPU (exited threads included)
  running, runnable     threads on a CPU / waiting for one, on average: the kernel's per-thread
                        sum_exec_runtime and run_delay (/proc/PID/task/*/schedstat)
  rqlat_p50/p99/max     run-queue latency: each wait from a wake-up or preemption to running,
                        read by eBPF at the thread's next switch-out (sched_switch) from the
                        kernel's accounting (sched_info.run_delay), in a histogram with 8
                        buckets per power of two (quantiles within 12.5%; max exact)
  vcsw, ivcsw           voluntary / involuntary switches (eBPF sched_switch, as the kernel
                        counts nvcsw/nivcsw)
  migr                  migrations to another CPU (the kernel's se.nr_migrations, read by
                        eBPF at switch-out)
  allocs, frees,        exact counters of heap-sampler (heap_sampler::Sampler), read from the
  alloc_bytes, live     target's memory with process_vm_readv; present only when it links it;
                        with --alloc-probes, allocs/frees/alloc_bytes count every allocator
                        call with uprobes instead (no live heap)
  rss, anon             /proc/PID/status VmRSS, RssAnon (change over the interval in brackets)
  minflt, majflt        /proc/PID/stat minor and major page faults
  state, cpu (thread)   /proc/PID/task/TID/stat state and last CPU
  oncpu, rq (thread)    /proc/PID/task/TID/schedstat
  wait (thread)         where it last blocked: the leaf user function and the first caller of
                        the program's own (eBPF sched_switch, a user stack walk of 8 frames)
One eBPF program runs, on sched_switch: a target test for other processes' switches, a few
map updates per switch-out of the target's threads.
No uprobe is used unless --alloc-probes asks for it.

Examples:
  sudo profiler watch --pid 4242
  sudo profiler watch --pid 4242 --interval 500ms --detail
  sudo profiler watch --pid 4242 --json --count 10 | jq .sched.rqlat_p99_ns
  sudo profiler watch -- ./target/release/my-bench
  sudo profiler watch --pid 4242 --alloc-probes --count 5     # every malloc counted, at a cost
Ends with Ctrl-C, when the target exits (after a last, shorter interval marked end=exited),
or after --count intervals.")]
pub struct WatchArgs {
    /// The process to watch (all its threads, including ones started later).
    #[arg(short, long, conflicts_with = "command")]
    pub pid: Option<u32>,
    /// Length of an interval, e.g. 1s, 500ms.
    #[arg(short, long, value_parser = parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// Also a line per thread: state, CPU, time on a CPU and waiting for one, switches,
    /// migrations, and where it last blocked.
    #[arg(long)]
    pub detail: bool,
    /// One JSON object per interval and line, with the same fields (raw numbers, ns, bytes).
    #[arg(long)]
    pub json: bool,
    /// Stop after this many intervals.
    #[arg(short, long)]
    pub count: Option<u64>,
    /// Count allocations with uprobes on the allocator (libc's malloc family, or the
    /// program's own). Every call then traps into the kernel: about 0.7 us each here, which
    /// cut search-server's throughput about 20x. For programs that do not link heap-sampler.
    #[arg(long)]
    pub alloc_probes: bool,
    /// Command to launch and watch until it exits; its exit code is passed on.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn watch(args: WatchArgs) -> Result<i32> {
    let target = match (args.pid, args.command.is_empty()) {
        (Some(pid), _) => TargetSpec::Pids {
            pids: vec![pid],
            follow_children: false,
        },
        (None, false) => TargetSpec::Command(args.command),
        (None, true) => anyhow::bail!(
            "nothing to watch: give --pid PID, or a command after `--` (e.g. `-- ./my-bench`)"
        ),
    };
    let opts = WatchOptions {
        target,
        interval: args.interval,
        detail: args.detail,
        count: args.count,
        alloc_probes: args.alloc_probes,
    };
    let stdout = std::io::stdout();
    let json = args.json;
    let watched = watch::watch(&opts, |output| match output {
        Output::Interval(interval) => {
            let mut out = stdout.lock();
            if json {
                serde_json::to_writer(&mut out, interval)?;
                writeln!(out)?;
            } else {
                write!(out, "{interval}")?;
            }
            out.flush()
        }
        Output::Note(note) => {
            eprintln!("{note}");
            Ok(())
        }
    })?;
    if watched.stop == Stop::Exited {
        eprintln!("pid {} exited", watched.pid);
    }
    Ok(watched.exit_code.unwrap_or(0))
}
