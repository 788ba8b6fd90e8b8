//! `profiler serve`: Go's `net/http/pprof` for any process, from the outside, and continuous
//! profiling pushed to Grafana Pyroscope.
//!
//! Three parts, each usable alone:
//! - [`agent`]: one thread that owns the recording [`Session`](crate::record::Session) for
//!   the target (attached once, symbol caches kept warm, re-attached to the next process of a
//!   name with `--wait-for`). Consumers open *windows* on it; each window is its own
//!   `RawSamples` accumulator fed by the agent's drains. A collector runs only while a window
//!   needs it, so an idle agent costs the target nothing.
//! - [`http`] and [`endpoints`]: the HTTP server (a listener and a shutdown future in, limits
//!   on heads, bodies and connections, bearer tokens) and the `/debug/pprof/*` URLs with Go's
//!   semantics: a request of `profile?seconds=N` opens a window, sleeps N seconds on tokio's
//!   clock and answers the window's capture.
//! - [`push`] and [`pyroscope`]: every interval, the interval's capture is pushed to
//!   Pyroscope's Connect API (or `/ingest`) and/or written to a directory, retried with backoff
//!   and then dropped with a counter; memory stays bounded.
//!
//! The agent talks to the rest through [`agent::AgentHandle`] (commands over a channel, the
//! target's state over a watch), so the HTTP and push layers are tested against a fake agent
//! without eBPF, and the real one in root tests.

pub mod agent;
pub mod endpoints;
pub mod http;
pub mod push;
pub mod pyroscope;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::profile::Profile;

pub use agent::{AgentHandle, AgentOptions, TargetState, spawn_agent};
pub use endpoints::{EndpointOptions, Endpoints};
pub use http::{HttpOptions, serve};
pub use push::{Protocol, PushAuth, PushOptions, PushStats, run_push};

/// How long the endpoints keep answering 410 after the target exited, before the server
/// stops: a client polling them learns why instead of meeting a closed port.
pub const GONE_LINGER: Duration = Duration::from_secs(1);

/// Why [`run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The target exited (and nothing was to re-attach).
    TargetGone { pid: u32, process: String },
    /// The agent stopped for another reason.
    AgentFailed(String),
    /// `shutdown` completed (Ctrl-C).
    Shutdown,
}

/// Everything `profiler serve` runs: the endpoints on `listener` and, with `push`, the
/// continuous loop, until `shutdown` or until the target is gone for good.
pub async fn run(
    agent: AgentHandle,
    listener: TcpListener,
    endpoint_opts: EndpointOptions,
    http_opts: HttpOptions,
    push: Option<(PushOptions, Arc<PushStats>)>,
    shutdown: impl Future<Output = ()>,
) -> Ended {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut endpoints = Endpoints::new(agent.clone(), endpoint_opts);
    let mut push_task = None;
    if let Some((opts, stats)) = push {
        endpoints = endpoints.with_push_stats(Arc::clone(&stats));
        push_task = Some(tokio::spawn(run_push(
            agent.clone(),
            opts,
            stats,
            stopped(),
        )));
    }
    let server = tokio::spawn(serve(listener, Arc::new(endpoints), http_opts, stopped()));
    let ended = tokio::select! {
        () = shutdown => Ended::Shutdown,
        ended = gone(&agent) => {
            tokio::time::sleep(GONE_LINGER).await;
            ended
        }
    };
    let _ = stop_tx.send(true);
    if let Some(task) = push_task {
        let _ = task.await;
    }
    let _ = server.await;
    ended
}

/// Resolves when the agent has ended for good.
async fn gone(agent: &AgentHandle) -> Ended {
    let mut state = agent.watch();
    loop {
        match &*state.borrow_and_update() {
            TargetState::Gone { pid, process } => {
                return Ended::TargetGone {
                    pid: *pid,
                    process: process.clone(),
                };
            }
            TargetState::Failed(m) => return Ended::AgentFailed(m.clone()),
            _ => {}
        }
        if state.changed().await.is_err() {
            return match &*state.borrow() {
                TargetState::Gone { pid, process } => Ended::TargetGone {
                    pid: *pid,
                    process: process.clone(),
                },
                _ => Ended::AgentFailed("the agent stopped".into()),
            };
        }
    }
}

/// The exposure rule: loopback needs nothing; any other address needs a bearer token or an
/// explicit `insecure` (the profiles name every function of the target, and a request costs
/// it CPU: Go's endpoints are open to anyone who reaches the port, ours are not).
pub fn check_exposure(
    addrs: &[SocketAddr],
    has_token: bool,
    insecure: bool,
) -> Result<(), ServeError> {
    let exposed: Vec<String> = addrs
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    if exposed.is_empty() || has_token || insecure {
        return Ok(());
    }
    Err(ServeError::Invalid(format!(
        "listening on {} lets other machines read the target's profiles; give --token-file FILE \
         (clients then send `Authorization: Bearer TOKEN`) or --insecure if the network is trusted",
        exposed.join(", ")
    )))
}

/// Reads a bearer token from a file: trimmed, at least 16 characters (shorter ones can be
/// guessed).
pub fn read_token(path: &std::path::Path) -> Result<String, ServeError> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| ServeError::Io(format!("reading the token file {}", path.display()), e))?;
    let token = raw.trim().to_string();
    if token.len() < 16 || token.chars().any(char::is_whitespace) {
        return Err(ServeError::Invalid(format!(
            "the token in {} must be one word of at least 16 characters; make one with `openssl rand -hex 32 > {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(token)
}

/// The profiles the endpoints serve, by their `/debug/pprof/` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `profile`: on-CPU samples over `seconds`.
    Cpu,
    /// `heap`: in-use memory now and allocations since the agent attached (or over `seconds`).
    Heap,
    /// `allocs`: the heap profile shown by allocated space.
    Allocs,
    /// `block`: time threads spent off CPU, waiting, over `seconds`.
    Block,
    /// `mutex`: off-CPU time in lock waits, over `seconds`.
    Mutex,
    /// `trace`: a Perfetto timeline over `seconds`.
    Trace,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Cpu,
        Kind::Heap,
        Kind::Allocs,
        Kind::Block,
        Kind::Mutex,
        Kind::Trace,
    ];

    /// The last path segment under `/debug/pprof/`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::Cpu => "profile",
            Kind::Heap => "heap",
            Kind::Allocs => "allocs",
            Kind::Block => "block",
            Kind::Mutex => "mutex",
            Kind::Trace => "trace",
        }
    }

    pub fn from_endpoint(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.endpoint() == name)
    }

    /// Whether an agent whose session runs `collectors` can serve this profile. A trace
    /// needs none of them: each request records its timeline in a session of its own (its
    /// programs trace every switch, which the agent's session must not pay between requests).
    pub fn served_by(self, collectors: &[&str]) -> bool {
        self == Kind::Trace || collectors.contains(&self.collector())
    }

    /// The collector (by `Collector::name`) whose samples make this profile in the agent's
    /// session (`trace`, in none: see [`served_by`](Self::served_by)).
    pub fn collector(self) -> &'static str {
        match self {
            Kind::Cpu => "cpu",
            Kind::Heap | Kind::Allocs => "heap",
            Kind::Block | Kind::Mutex => "offcpu",
            Kind::Trace => "trace",
        }
    }

    /// What the index page says about it.
    pub fn description(self) -> &'static str {
        match self {
            Kind::Cpu => {
                "CPU profile: on-CPU stacks of every thread. Use the seconds GET parameter to set the duration (default 30 s). Open it with go tool pprof."
            }
            Kind::Heap => {
                "A sampling of memory allocations of live objects (allocated since the agent attached and not freed), and of everything allocated since then. With seconds: the allocations of that window, and what is in use at its end."
            }
            Kind::Allocs => "The heap profile, shown by default as space allocated.",
            Kind::Block => {
                "Stacks where threads blocked off CPU (sleeps, I/O, locks; not preemption), weighted by the time blocked, over seconds (default 30 s)."
            }
            Kind::Mutex => {
                "Off-CPU time waiting in locks and futexes (condition variables and thread parking included), over seconds (default 30 s)."
            }
            Kind::Trace => {
                "A timeline of every thread of the target (scheduling states, wake-ups, CPU samples with stacks) as a Perfetto trace; open it at ui.perfetto.dev or with profiler trace --summary. Duration from seconds (default 1 s, at most 60)."
            }
        }
    }

    /// Seconds when the request names none: Go's defaults (30 s for CPU, 1 s for a trace).
    /// None: the profile is a snapshot unless `seconds` is given (heap).
    pub fn default_seconds(self) -> Option<u64> {
        match self {
            Kind::Cpu | Kind::Block | Kind::Mutex => Some(30),
            Kind::Trace => Some(1),
            Kind::Heap | Kind::Allocs => None,
        }
    }

    /// The sample type shown by default, when not the collector's own (Go's `allocs`).
    pub fn default_sample_type(self) -> Option<&'static str> {
        match self {
            Kind::Allocs => Some("alloc_space"),
            _ => None,
        }
    }

    /// Why this kind cannot be served when its collector is not in the agent's session.
    pub fn unavailable_reason(self) -> &'static str {
        match self {
            Kind::Cpu => "the cpu collector is not running in this agent",
            Kind::Heap | Kind::Allocs => {
                "the heap profile needs the heap collector: start profiler serve with --heap (it probes the allocator from attach on; in use means allocated since then and not freed)"
            }
            Kind::Block | Kind::Mutex => {
                "block and mutex profiles need the off-CPU collector, and this agent runs without it (profiler serve --no-offcpu); /debug/pprof/profile (CPU) works"
            }
            Kind::Trace => "a trace is recorded in a session of its own and is always available",
        }
    }
}

/// A capture the agent built for a window: the profile, ready to encode.
#[derive(Debug, Clone)]
pub struct Capture {
    pub profile: Profile,
    /// The target it was taken from.
    pub pid: u32,
    /// The target's short name (`comm`), e.g. `search-server`.
    pub process: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
    #[error("invalid option: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_goes_without_a_token() {
        let addr = |s: &str| vec![s.parse::<SocketAddr>().unwrap()];
        check_exposure(&addr("127.0.0.1:6060"), false, false).unwrap();
        check_exposure(&addr("[::1]:6060"), false, false).unwrap();
        let e = check_exposure(&addr("0.0.0.0:6060"), false, false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("0.0.0.0:6060")
                && msg.contains("--token-file")
                && msg.contains("--insecure"),
            "{msg}"
        );
        check_exposure(&addr("0.0.0.0:6060"), true, false).unwrap();
        check_exposure(&addr("10.1.2.3:6060"), false, true).unwrap();
    }

    #[test]
    fn tokens_are_long_single_words() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(read_token(&file).unwrap(), "0123456789abcdef0123");
        for bad in ["short\n", "0123456789 abcdef0123", ""] {
            std::fs::write(&file, bad).unwrap();
            let e = read_token(&file).unwrap_err().to_string();
            assert!(e.contains("16 characters"), "{bad:?}: {e}");
        }
        let e = read_token(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token file"), "{e}");
    }
}
