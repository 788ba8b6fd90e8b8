//! `profiler serve`: arguments to the library's agent, endpoint, HTTP and push options; the
//! library serves. Prints where it listens, and at the end why it stopped.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use profiler::record::{HeapMode, HeapOptions};
use profiler::serve::{
    self, AgentOptions, Ended, EndpointOptions, HttpOptions, Protocol, PushAuth, PushOptions,
    PushStats, TargetState,
};

use super::record::HeapModeArg;
use super::{parse_bytes, parse_duration};

/// Serve Go's /debug/pprof endpoints for a running native process, from the outside, and
/// optionally push its profiles to Grafana Pyroscope continuously.
#[derive(Debug, Args)]
#[command(
    after_help = "Needs root (or CAP_BPF and CAP_PERFMON). Nothing samples until a request asks.

Endpoints (like Go's net/http/pprof):
  /debug/pprof/                   index page
  /debug/pprof/profile?seconds=N  CPU profile of the next N seconds (default 30), gzipped pprof
  /debug/pprof/cmdline            the target's command line
  /debug/pprof/symbol             address → name lookups (Go's symbol protocol)
  /debug/pprof/block?seconds=N    off-CPU time blocked (sleeps, I/O, locks) by stack (default 30)
  /debug/pprof/mutex?seconds=N    off-CPU time in lock and futex waits by stack (default 30)
  /debug/pprof/heap, allocs       with --heap: in use since attach, and allocated (Go's four types)
  /debug/pprof/trace              501 until the session writes timelines
One profile of a kind at a time (a second gets 429 + Retry-After). When the target exits every
endpoint answers 410 and serve exits, unless --wait-for re-attaches to the next process.

Examples:
  sudo profiler serve --pid $(pgrep -o search-server)
  go tool pprof -top http://127.0.0.1:6060/debug/pprof/profile?seconds=10
  go tool pprof -http=:8080 http://127.0.0.1:6060/debug/pprof/profile
  curl -s http://127.0.0.1:6060/debug/pprof/profile?seconds=5 > cpu.pb.gz
  sudo profiler serve --wait-for search-server              # survives restarts
  sudo profiler serve --pid 4242 --listen 0.0.0.0:6060 --token-file /etc/profiler/token
  curl -H \"Authorization: Bearer $(cat /etc/profiler/token)\" http://HOST:6060/debug/pprof/profile > cpu.pb.gz
  sudo profiler serve --pid 4242 -F 19 --push http://localhost:4040 --label env=prod
  sudo profiler serve --pid 4242 --heap && curl -s http://127.0.0.1:6060/debug/pprof/heap > base.heap
  sudo profiler serve --pid 4242 --push-dir /var/lib/profiles --push-interval 60s"
)]
pub struct ServeArgs {
    /// Process to profile (all its threads).
    #[arg(short, long, required_unless_present = "wait_for")]
    pub pid: Option<u32>,
    /// Attach to the (oldest) process with this name, now or when it starts, and again after
    /// it restarts; without it serve exits when its target exits.
    #[arg(long, value_name = "NAME")]
    pub wait_for: Option<String>,
    /// Also sample the processes the target starts.
    #[arg(long)]
    pub follow_children: bool,
    /// Do not load the off-CPU collector (no block and mutex profiles; saves its maps'
    /// kernel memory).
    #[arg(long)]
    pub no_offcpu: bool,
    /// Probe the allocator from attach on, for /debug/pprof/heap and allocs (and `memory`
    /// profiles in continuous mode). Nearly free for programs that link the heap-sampler
    /// allocator; uprobes on the allocator otherwise (every malloc and free traps: about
    /// 0.7 us each), for as long as serve runs.
    #[arg(long)]
    pub heap: bool,
    /// Mean bytes between heap samples, for allocator uprobes (e.g. 512KiB, 64KiB).
    #[arg(long, value_parser = parse_bytes, default_value = "512KiB", value_name = "BYTES", requires = "heap")]
    pub heap_rate: u64,
    /// auto: heap-sampler probes where linked, allocator uprobes otherwise; uprobes; sampler.
    #[arg(long, value_enum, default_value_t = HeapModeArg::Auto, requires = "heap")]
    pub heap_mode: HeapModeArg,
    /// Address to listen on. Anything but loopback needs --token-file or --insecure.
    #[arg(long, default_value = "127.0.0.1:6060", value_name = "HOST:PORT")]
    pub listen: String,
    /// Require `Authorization: Bearer TOKEN` on every request, TOKEN being this file's
    /// content (at least 16 characters; e.g. `openssl rand -hex 32 > token`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Allow a non-loopback --listen without a token (a trusted network only).
    #[arg(long)]
    pub insecure: bool,
    /// Longest profile a request may ask for, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub max_seconds: u64,
    /// Seconds when a request names none (Go's defaults: 30 for CPU, 1 for a trace).
    #[arg(long, value_name = "SECONDS")]
    pub default_seconds: Option<u64>,
    /// CPU sampling frequency in Hz per CPU while a profile is taken (default 99; 19 in
    /// continuous mode, the usual rate of continuous profilers).
    #[arg(short = 'F', long)]
    pub frequency: Option<u64>,
    /// Push every interval's CPU profile to this Grafana Pyroscope server (base URL, e.g.
    /// http://localhost:4040), with its Connect API /push.v1.PusherService/Push.
    #[arg(long, value_name = "URL")]
    pub push: Option<String>,
    /// Use Pyroscope's older /ingest?format=pprof API instead of Push.
    #[arg(long, requires = "push")]
    pub push_ingest: bool,
    /// Length of one continuous-mode interval.
    #[arg(long, value_parser = parse_duration, default_value = "15s", value_name = "DURATION")]
    pub push_interval: Duration,
    /// Write every interval's capture (process_cpu-UNIXTIME-PID-N.pb.gz, and memory-... with
    /// --heap) to this directory; works with or without --push.
    #[arg(long, value_name = "DIR")]
    pub push_dir: Option<PathBuf>,
    /// The service_name label (default: the target's process name).
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
    /// An extra label on pushed profiles; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Tenant for a multi-tenant Pyroscope (sent as X-Scope-OrgID).
    #[arg(long, value_name = "ID", requires = "push")]
    pub tenant: Option<String>,
    /// Authenticate pushes with `Authorization: Bearer` and this file's content.
    #[arg(
        long,
        value_name = "FILE",
        requires = "push",
        conflicts_with = "push_user"
    )]
    pub push_token_file: Option<PathBuf>,
    /// Authenticate pushes with HTTP basic auth as this user (password from
    /// --push-password-file), e.g. a Grafana Cloud instance id.
    #[arg(long, value_name = "USER", requires_all = ["push", "push_password_file"])]
    pub push_user: Option<String>,
    #[arg(long, value_name = "FILE", requires = "push_user")]
    pub push_password_file: Option<PathBuf>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn read_secret(path: &PathBuf) -> Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string();
    if s.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(s)
}

impl ServeArgs {
    fn push_options(&self) -> Result<Option<PushOptions>> {
        if self.push.is_none() && self.push_dir.is_none() {
            if !self.labels.is_empty() || self.service_name.is_some() {
                bail!("--label and --service-name go with --push or --push-dir");
            }
            return Ok(None);
        }
        let mut opts = PushOptions::new(self.push_interval);
        opts.url = self.push.clone();
        opts.protocol = if self.push_ingest {
            Protocol::Ingest
        } else {
            Protocol::Push
        };
        opts.service_name = self.service_name.clone();
        opts.labels = self.labels.clone();
        opts.tenant = self.tenant.clone();
        opts.dir = self.push_dir.clone();
        opts.heap = self.heap;
        opts.auth = match (&self.push_token_file, &self.push_user) {
            (Some(f), _) => PushAuth::Bearer(read_secret(f)?),
            (None, Some(user)) => PushAuth::Basic {
                user: user.clone(),
                password: read_secret(self.push_password_file.as_ref().expect("required by clap"))?,
            },
            (None, None) => PushAuth::None,
        };
        opts.validate()?;
        Ok(Some(opts))
    }
}

pub fn serve(args: ServeArgs) -> Result<i32> {
    let push = args.push_options()?;
    let frequency = args
        .frequency
        .unwrap_or(if push.is_some() { 19 } else { 99 });
    if args.max_seconds == 0 {
        bail!("--max-seconds must be at least 1");
    }
    if args.default_seconds == Some(0) {
        bail!("--default-seconds must be at least 1");
    }
    let addrs: Vec<SocketAddr> = args
        .listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {:?} is not HOST:PORT", args.listen))?
        .collect();
    let token = args
        .token_file
        .as_deref()
        .map(serve::read_token)
        .transpose()?;
    serve::check_exposure(&addrs, token.is_some(), args.insecure)?;
    if args.insecure && addrs.iter().any(|a| !a.ip().is_loopback()) && token.is_none() {
        eprintln!(
            "warning: --insecure: anyone who can reach {} can read the target's profiles",
            args.listen
        );
    }
    let listener = std::net::TcpListener::bind(&addrs[..])
        .with_context(|| format!("listening on {}", args.listen))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;

    let (agent, thread) = serve::spawn_agent(AgentOptions {
        pid: args.pid,
        wait_for: args.wait_for.clone(),
        follow_children: args.follow_children,
        frequency,
        offcpu: !args.no_offcpu,
        heap: args.heap.then_some(HeapOptions {
            rate: args.heap_rate,
            min_age: None,
            mode: match args.heap_mode {
                HeapModeArg::Auto => HeapMode::Auto,
                HeapModeArg::Uprobes => HeapMode::Uprobes,
                HeapModeArg::Sampler => HeapMode::Sampler,
            },
        }),
    })?;
    match agent.state() {
        TargetState::Attached(t) => eprintln!(
            "serving http://{local}/debug/pprof/ for pid {} ({}); CPU sampling at {frequency} Hz while a profile is taken",
            t.pid, t.process
        ),
        TargetState::Waiting { name, .. } => {
            eprintln!("serving http://{local}/debug/pprof/; waiting for a process named {name:?}")
        }
        _ => {}
    }
    let stats = push.as_ref().map(|_| Arc::new(PushStats::default()));
    if let Some(p) = &push {
        let to: Vec<String> = p
            .url
            .iter()
            .cloned()
            .chain(p.dir.iter().map(|d| d.display().to_string()))
            .collect();
        eprintln!(
            "continuous mode: a CPU profile every {} to {}",
            humantime::format_duration(p.interval),
            to.join(" and ")
        );
    }
    let endpoint_opts = EndpointOptions {
        max_seconds: args.max_seconds,
        default_seconds: args.default_seconds,
        token,
        ..EndpointOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ended = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let push = push.zip(stats.clone());
        anyhow::Ok(
            serve::run(
                agent,
                listener,
                endpoint_opts,
                HttpOptions::default(),
                push,
                shutdown,
            )
            .await,
        )
    })?;
    let _ = thread.join();
    if let Some(stats) = stats {
        eprintln!("continuous mode: {}", stats.summary());
    }
    match ended {
        Ended::TargetGone { pid, process } => {
            eprintln!("pid {pid} ({process}) exited; stopped serving");
            Ok(0)
        }
        Ended::Shutdown => Ok(0),
        Ended::AgentFailed(m) => bail!("the agent stopped: {m}"),
    }
}
