//! Continuous mode: every interval, the CPU capture of that interval (and with `heap`, the
//! heap's) goes to Grafana Pyroscope and/or a directory. One window per kind stays open on the
//! agent and is rotated at each tick, so consecutive intervals neither lose nor repeat a
//! sample.
//!
//! Failures never reach the target or the endpoints: a push that fails is retried with
//! exponential backoff (on tokio's clock) and then dropped with a counter. Memory is bounded:
//! at most `queue` captures wait to be sent; when the queue is full the new capture is
//! dropped and counted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::Kind;
use super::agent::{AgentError, AgentHandle, TargetState};
use super::pyroscope;

/// Which Pyroscope API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /push.v1.PusherService/Push` (Connect): the documented, stable one.
    Push,
    /// `POST /ingest?format=pprof` with a multipart body: for older servers and proxies.
    Ingest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushAuth {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Base URL of the Pyroscope server (`http://pyroscope:4040`); None: only `dir`.
    pub url: Option<String>,
    pub protocol: Protocol,
    pub interval: Duration,
    /// `service_name`; None: the target's process name.
    pub service_name: Option<String>,
    /// The user's labels, added to `__name__`, `service_name`, `host` and `pid`.
    pub labels: Vec<(String, String)>,
    /// `X-Scope-OrgID` for a multi-tenant server.
    pub tenant: Option<String>,
    pub auth: PushAuth,
    /// Also write each interval's capture here.
    pub dir: Option<PathBuf>,
    /// Push the heap too (`__name__` `memory`: the interval's allocations, in use at its end).
    pub heap: bool,
    /// Time limit of one HTTP request.
    pub timeout: Duration,
    /// Tries per capture (the first and the retries).
    pub attempts: u32,
    /// Wait before the first retry; doubled after each, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Captures waiting to be sent, at most.
    pub queue: usize,
}

impl PushOptions {
    pub fn new(interval: Duration) -> Self {
        PushOptions {
            url: None,
            protocol: Protocol::Push,
            interval,
            service_name: None,
            labels: Vec::new(),
            tenant: None,
            auth: PushAuth::None,
            dir: None,
            heap: false,
            timeout: Duration::from_secs(10),
            attempts: 4,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            queue: 4,
        }
    }

    /// Everything that can be checked before the agent starts.
    pub fn validate(&self) -> Result<(), super::ServeError> {
        let invalid = |m: String| Err(super::ServeError::Invalid(m));
        if self.url.is_none() && self.dir.is_none() {
            return invalid("continuous mode needs --push URL or --push-dir DIR".into());
        }
        if self.interval < Duration::from_secs(1) {
            return invalid(format!(
                "--push-interval {:?} is too short; use 1s or more (15s is usual)",
                self.interval
            ));
        }
        if let Some(url) = &self.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(format!(
                "--push {url:?} is not an http:// or https:// URL (e.g. http://localhost:4040)"
            ));
        }
        for (k, _) in &self.labels {
            if !pyroscope::valid_label_name(k) || k.starts_with("__") {
                return invalid(format!(
                    "label name {k:?} is not allowed: use letters, digits and _ (not starting with a digit or __)"
                ));
            }
        }
        if let Some(dir) = &self.dir
            && !dir.is_dir()
        {
            return invalid(format!(
                "--push-dir {} is not a directory; create it first",
                dir.display()
            ));
        }
        if self.attempts == 0 || self.queue == 0 {
            return invalid("attempts and queue must be at least 1".into());
        }
        Ok(())
    }
}

/// What the push loop did, readable while it runs (index page, the end summary).
#[derive(Debug, Default)]
pub struct PushStats {
    /// Interval captures taken.
    pub intervals: AtomicU64,
    /// Captures the server accepted.
    pub pushed: AtomicU64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Captures given up on after their last attempt, or refused for good (4xx).
    pub dropped: AtomicU64,
    /// Captures dropped because the send queue was full (the server is slower than the
    /// interval).
    pub queue_full: AtomicU64,
    /// Captures written to the directory, and writes that failed.
    pub written: AtomicU64,
    pub write_failures: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl PushStats {
    fn fail(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }

    pub fn get(&self, counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = format!(
            "{} interval(s): {} pushed, {} failed attempt(s), {} dropped, {} dropped on a full queue, {} written to the directory",
            g(&self.intervals),
            g(&self.pushed),
            g(&self.failed_attempts),
            g(&self.dropped),
            g(&self.queue_full),
            g(&self.written),
        );
        if g(&self.write_failures) > 0 {
            s.push_str(&format!(", {} write failure(s)", g(&self.write_failures)));
        }
        if let Some(e) = &*self.last_error.lock().unwrap_or_else(|p| p.into_inner()) {
            s.push_str(&format!("; last error: {e}"));
        }
        s
    }
}

/// One interval's capture, encoded once for every destination.
struct Job {
    pprof_gz: Arc<Vec<u8>>,
    labels: Vec<(String, String)>,
    service: String,
    from: u64,
    until: u64,
}

/// Runs continuous mode until `shutdown` (then the last, partial interval is sent too) or
/// until the target is gone for good.
pub async fn run_push(
    agent: AgentHandle,
    opts: PushOptions,
    stats: Arc<PushStats>,
    shutdown: impl Future<Output = ()>,
) {
    let (queue, pending) = mpsc::channel::<Job>(opts.queue);
    let sender = tokio::spawn(send_loop(pending, opts.clone(), Arc::clone(&stats)));
    let mut shutdown = std::pin::pin!(shutdown);
    let host = hostname();
    // The profiles pushed: Pyroscope's `__name__` for each.
    let mut kinds = vec![(Kind::Cpu, "process_cpu")];
    if opts.heap {
        kinds.push((Kind::Heap, "memory"));
    }
    'targets: loop {
        let Some(target) = wait_attached(&agent, &mut shutdown).await else {
            break;
        };
        let mut windows = Vec::new();
        for &(kind, name) in &kinds {
            match agent.open(kind, "continuous push interval".into()).await {
                Ok(id) => windows.push((kind, name, id)),
                Err(AgentError::Gone { .. } | AgentError::Waiting(_)) => continue 'targets,
                Err(e) => {
                    tracing::error!("continuous mode cannot start: {e}");
                    stats.fail(e.to_string());
                    break 'targets;
                }
            }
        }
        let service = opts
            .service_name
            .clone()
            .unwrap_or_else(|| target.process.clone());
        let labels_of = |name: &str| {
            let mut labels = vec![
                ("__name__".to_string(), name.to_string()),
                ("service_name".to_string(), service.clone()),
                ("host".to_string(), host.clone()),
                ("pid".to_string(), target.pid.to_string()),
            ];
            labels.extend(opts.labels.iter().cloned());
            labels
        };
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + opts.interval, opts.interval);
        // A late tick (a slow drain) shifts the schedule instead of firing a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut from = unix_now();
        let mut started = tokio::time::Instant::now();
        loop {
            let last = tokio::select! {
                _ = ticks.tick() => false,
                () = &mut shutdown => true,
            };
            // A shutdown right after a tick leaves an interval too short to say anything.
            let too_short = last && started.elapsed() < Duration::from_secs(1);
            started = tokio::time::Instant::now();
            let mut until = from;
            for &(_, name, id) in &windows {
                let result = if last {
                    agent.close(id).await
                } else {
                    agent.rotate(id).await
                };
                until = unix_now();
                match result {
                    Ok(_) if too_short => {}
                    Ok(capture) => {
                        stats.intervals.fetch_add(1, Ordering::Relaxed);
                        let job = Job {
                            pprof_gz: Arc::new(crate::capture::encode_pprof(&capture.profile)),
                            labels: labels_of(name),
                            service: service.clone(),
                            from,
                            until,
                        };
                        if let Some(dir) = &opts.dir {
                            let n = stats.intervals.load(Ordering::Relaxed);
                            write_to_dir(dir, &job, name, capture.pid, n, &stats).await;
                        }
                        if opts.url.is_some() && queue.try_send(job).is_err() {
                            stats.queue_full.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "push queue full ({} waiting): dropped this interval's capture",
                                opts.queue
                            );
                        }
                    }
                    // The target exited: its windows went with it. Wait for the next one.
                    Err(
                        AgentError::Gone { .. } | AgentError::NoWindow(_) | AgentError::Waiting(_),
                    ) if !last => continue 'targets,
                    Err(e) => {
                        tracing::warn!("interval capture failed: {e}");
                        stats.fail(e.to_string());
                    }
                }
            }
            from = until;
            if last {
                break 'targets;
            }
        }
    }
    drop(queue);
    // Let what is queued go out, but never hang the exit on an unreachable server.
    let budget = opts.timeout * 2;
    if tokio::time::timeout(budget, sender).await.is_err() {
        tracing::warn!("pushes still pending at exit were dropped");
    }
}

/// Waits until the agent is attached; None when the target is gone for good or on shutdown.
async fn wait_attached(
    agent: &AgentHandle,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<super::agent::AttachedTarget> {
    let mut state = agent.watch();
    loop {
        match &*state.borrow_and_update() {
            TargetState::Attached(t) => return Some(t.clone()),
            TargetState::Gone { .. } | TargetState::Failed(_) => return None,
            TargetState::Waiting { .. } => {}
        }
        tokio::select! {
            changed = state.changed() => if changed.is_err() { return None },
            () = shutdown.as_mut() => return None,
        }
    }
}

/// Writes `NAME-FROM-PID-N.pb.gz` (`process_cpu-…`, `memory-…`): start time after the kind
/// so names sort by time; `N` (the capture's number) keeps two starting in the same second
/// apart.
async fn write_to_dir(
    dir: &std::path::Path,
    job: &Job,
    name: &str,
    pid: u32,
    n: u64,
    stats: &PushStats,
) {
    let path = dir.join(format!("{name}-{}-{pid}-{n}.pb.gz", job.from));
    let bytes = Arc::clone(&job.pprof_gz);
    let written = tokio::task::spawn_blocking(move || {
        crate::capture::write_atomic(&path, &bytes).map(|()| path)
    })
    .await;
    match written {
        Ok(Ok(path)) => {
            stats.written.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(path = %path.display(), "interval capture written");
        }
        Ok(Err(e)) => {
            stats.write_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("{e}");
            stats.fail(e.to_string());
        }
        Err(e) => {
            stats.write_failures.fetch_add(1, Ordering::Relaxed);
            stats.fail(e.to_string());
        }
    }
}

/// Why one attempt failed; `permanent` when retrying cannot help (the server refused the
/// request itself: bad auth, bad profile).
struct Failure {
    message: String,
    permanent: bool,
}

async fn send_loop(mut pending: mpsc::Receiver<Job>, opts: PushOptions, stats: Arc<PushStats>) {
    let Some(base) = opts.url.clone() else {
        while pending.recv().await.is_some() {}
        return;
    };
    let base = base.trim_end_matches('/').to_string();
    let client = match reqwest::Client::builder().timeout(opts.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            stats.fail(format!("no HTTP client: {e}"));
            while pending.recv().await.is_some() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    };
    while let Some(job) = pending.recv().await {
        let mut wait = opts.backoff;
        for attempt in 1..=opts.attempts {
            match send_once(&client, &base, &opts, &job).await {
                Ok(()) => {
                    stats.pushed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(f) => {
                    stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    stats.fail(f.message.clone());
                    if f.permanent || attempt == opts.attempts {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "push to {base} failed {attempt} time(s), capture dropped: {}",
                            f.message
                        );
                        break;
                    }
                    tracing::debug!("push attempt {attempt} failed: {}; retrying", f.message);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(opts.max_backoff);
                }
            }
        }
    }
}

async fn send_once(
    client: &reqwest::Client,
    base: &str,
    opts: &PushOptions,
    job: &Job,
) -> Result<(), Failure> {
    let request = match opts.protocol {
        Protocol::Push => client
            .post(format!("{base}{}", pyroscope::PUSH_PATH))
            .header("content-type", "application/proto")
            .header("connect-protocol-version", "1")
            .body(pyroscope::push_body(
                &job.labels,
                job.pprof_gz.as_ref().clone(),
                pyroscope::random_id(),
            )),
        Protocol::Ingest => {
            let boundary = format!("profiler-{}", pyroscope::random_id());
            let (body, content_type) = pyroscope::ingest_body(&job.pprof_gz, &boundary);
            let query = pyroscope::ingest_query(&job.service, &job.labels, job.from, job.until);
            client
                .post(format!("{base}{}?{query}", pyroscope::INGEST_PATH))
                .header("content-type", content_type)
                .body(body)
        }
    };
    let request = match &opts.tenant {
        Some(t) => request.header("x-scope-orgid", t),
        None => request,
    };
    let request = match &opts.auth {
        PushAuth::None => request,
        PushAuth::Bearer(token) => request.bearer_auth(token),
        PushAuth::Basic { user, password } => request.basic_auth(user, Some(password)),
    };
    let response = request.send().await.map_err(|e| Failure {
        message: format!("{e}"),
        permanent: false,
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Err(Failure {
        message: format!("HTTP {status}: {}", body.trim()),
        // Timeouts and rate limits pass; other client errors are the request's own fault.
        permanent: status.is_client_error()
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
            && status != reqwest::StatusCode::REQUEST_TIMEOUT,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
