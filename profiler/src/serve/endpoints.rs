//! The `/debug/pprof/*` URLs, with the semantics of Go's `net/http/pprof`:
//!
//! | URL | answer |
//! |---|---|
//! | `/debug/pprof/` | an index page (plain HTML, no JavaScript) |
//! | `/debug/pprof/profile?seconds=N` | gzipped pprof of N seconds of on-CPU samples (default 30) |
//! | `/debug/pprof/heap`, `allocs`, `block`, `mutex`, `trace` | their capture when the agent has their collector, else 501 saying why |
//! | `/debug/pprof/cmdline` | the target's command line, arguments separated by NUL bytes |
//! | `/debug/pprof/symbol` | `num_symbols: 1`; a POST (or GET query) of `0x…+0x…` names those addresses in the target |
//!
//! Unlike Go's, these are not open to whoever reaches the port: with a token every request
//! needs `Authorization: Bearer TOKEN`; `seconds` is bounded; one profile of a kind runs at a
//! time (a second gets 429 with `Retry-After`); when the target has exited every URL answers
//! 410. Errors are `text/plain` with Go's `X-Go-Pprof: 1` header, which makes `go tool pprof`
//! print our message instead of only the status.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Instant;

use super::Kind;
use super::agent::{AgentError, AgentHandle, AttachedTarget, TargetState, WindowId};
use super::push::PushStats;
use crate::record::{RecordError, TargetSpec};
use crate::trace::{self, TraceOptions, TraceRecordError};

/// What the endpoints allow.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    /// Longest `seconds` a request may ask for.
    pub max_seconds: u64,
    /// `seconds` when a request names none, for every kind that takes one; None: Go's
    /// defaults (30 s for CPU, 1 s for a trace).
    pub default_seconds: Option<u64>,
    /// When set, every request needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Largest request body read (only `/debug/pprof/symbol` reads one); larger gets 413.
    pub max_body_bytes: usize,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            max_seconds: 300,
            default_seconds: None,
            token: None,
            max_body_bytes: 1024 * 1024,
        }
    }
}

pub type Reply = Response<Full<Bytes>>;

/// The endpoints over one agent. Shared by every connection.
pub struct Endpoints {
    agent: AgentHandle,
    opts: EndpointOptions,
    /// The kinds with a request running, with when it will end (for `Retry-After`).
    busy: Arc<Mutex<HashMap<Kind, Instant>>>,
    push: Option<Arc<PushStats>>,
}

impl Endpoints {
    pub fn new(agent: AgentHandle, opts: EndpointOptions) -> Self {
        Endpoints {
            agent,
            opts,
            busy: Arc::default(),
            push: None,
        }
    }

    /// Shows the push loop's counters on the index page.
    pub fn with_push_stats(mut self, stats: Arc<PushStats>) -> Self {
        self.push = Some(stats);
        self
    }

    /// Answers one request, and logs it (method, URL, status, time) at info level: that log
    /// is how one sees what a client such as `go tool pprof` asks for.
    pub async fn handle<B>(&self, req: Request<B>) -> Reply
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let mut reply = self.route(req).await;
        let headers = reply.headers_mut();
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        tracing::info!(
            target: "profiler::serve::access",
            "{method} {uri} {} {:.3}s",
            reply.status().as_u16(),
            started.elapsed().as_secs_f64()
        );
        reply
    }

    async fn route<B>(&self, req: Request<B>) -> Reply
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if !self.authorized(req.headers()) {
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer TOKEN` with the token of `profiler serve --token-file`",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"profiler\""),
            );
            return r;
        }
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        let method = req.method().clone();
        let Some(name) = path.strip_prefix("/debug/pprof/") else {
            return match path.as_str() {
                "/" | "/debug/pprof" => redirect("/debug/pprof/"),
                _ => text(
                    StatusCode::NOT_FOUND,
                    &format!("no such endpoint {path}; the profiles are listed at /debug/pprof/"),
                ),
            };
        };
        let get_only = |allowed: bool| -> Option<Reply> {
            (!allowed).then(|| {
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("{method} is not allowed here; use GET"),
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                r
            })
        };
        let is_get = method == Method::GET || method == Method::HEAD;
        if let Some(r) = self.unavailable_target(name.is_empty()) {
            return r;
        }
        match name {
            "" => get_only(is_get).unwrap_or_else(|| self.index()),
            "cmdline" => get_only(is_get).unwrap_or_else(|| self.cmdline()),
            "symbol" => {
                if method == Method::POST {
                    self.symbol(req).await
                } else if let Some(r) = get_only(is_get) {
                    r
                } else {
                    self.symbol_query(query.as_deref()).await
                }
            }
            "goroutine" | "threadcreate" => text(
                StatusCode::NOT_IMPLEMENTED,
                &format!(
                    "{name}: a native process has no goroutines; /debug/pprof/profile samples every thread (see the `thread` label)"
                ),
            ),
            _ => match Kind::from_endpoint(name) {
                Some(kind) => match get_only(is_get) {
                    Some(r) => r,
                    None => self.profile(kind, query.as_deref()).await,
                },
                None => text(
                    StatusCode::NOT_FOUND,
                    &format!("unknown profile {name:?}; the profiles are listed at /debug/pprof/"),
                ),
            },
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.opts.token else {
            return true;
        };
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|given| same_secret(given.trim().as_bytes(), token.as_bytes()))
    }

    /// The answer for every URL when there is no target to serve (the index page stays up
    /// while waiting for a process, so a person can see what the agent waits for).
    fn unavailable_target(&self, is_index: bool) -> Option<Reply> {
        match self.agent.state() {
            TargetState::Attached(_) => None,
            TargetState::Gone { pid, process } => Some(text(
                StatusCode::GONE,
                &format!("pid {pid} ({process}) exited; profiler serve is stopping"),
            )),
            TargetState::Waiting { .. } if is_index => None,
            TargetState::Waiting { name, previous } => {
                let previous = previous
                    .map(|p| format!(" (pid {p} exited)"))
                    .unwrap_or_default();
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "no process named {name:?} is running{previous}; the agent attaches to the next one that starts, retry then"
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Some(r)
            }
            TargetState::Failed(m) => Some(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the agent stopped: {m}"),
            )),
        }
    }

    async fn profile(&self, kind: Kind, query: Option<&str>) -> Reply {
        let default = kind
            .default_seconds()
            .map(|d| self.opts.default_seconds.unwrap_or(d));
        let seconds = match parse_seconds(query, default, self.opts.max_seconds) {
            Ok(s) => s,
            Err(msg) => return text(StatusCode::BAD_REQUEST, &msg),
        };
        let state = self.agent.state();
        let Some(target) = state.attached() else {
            return self
                .unavailable_target(false)
                .unwrap_or_else(|| text(StatusCode::SERVICE_UNAVAILABLE, "no target"));
        };
        if !kind.served_by(&target.collectors) {
            return text(
                StatusCode::NOT_IMPLEMENTED,
                &format!(
                    "/debug/pprof/{}: {}",
                    kind.endpoint(),
                    kind.unavailable_reason()
                ),
            );
        }
        let pid = target.pid;
        let Some(seconds) = seconds else {
            // A snapshot (heap without seconds): the agent's resident window so far.
            return match self.agent.snapshot(kind).await {
                Ok(capture) => pprof_reply(kind, &capture.profile),
                Err(e) => self.agent_error(e),
            };
        };
        let duration = Duration::from_secs(seconds);
        let _slot = match self.take_slot(kind, duration) {
            Ok(slot) => slot,
            Err(retry_after) => {
                let secs = retry_after.as_secs() + 1;
                let mut r = text(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!(
                        "/debug/pprof/{} is already running for another request; one profile of a kind runs at a time, retry in {secs} s",
                        kind.endpoint()
                    ),
                );
                r.headers_mut().insert(header::RETRY_AFTER, secs.into());
                return r;
            }
        };
        if kind == Kind::Trace {
            return trace(target, duration).await;
        }
        let note = format!("served: /debug/pprof/{}?seconds={seconds}", kind.endpoint());
        let id = match self.agent.open(kind, note).await {
            Ok(id) => id,
            Err(e) => return self.agent_error(e),
        };
        let mut window = WindowGuard {
            agent: &self.agent,
            id: Some(id),
        };
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            state = self.agent.detached_from(pid) => {
                return gone_reply(pid, &target.process, &state);
            }
        }
        window.id = None;
        match self.agent.close(id).await {
            Ok(capture) => pprof_reply(kind, &capture.profile),
            Err(e) => self.agent_error(e),
        }
    }

    /// Claims `kind` for `duration`; when it is taken, how long until it is free.
    fn take_slot(&self, kind: Kind, duration: Duration) -> Result<SlotGuard, Duration> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(until) = busy.get(&kind) {
            return Err(until.saturating_duration_since(now));
        }
        busy.insert(kind, now + duration);
        Ok(SlotGuard {
            busy: Arc::clone(&self.busy),
            kind,
        })
    }

    fn agent_error(&self, e: AgentError) -> Reply {
        match e {
            AgentError::Gone { pid, process } => text(
                StatusCode::GONE,
                &format!("pid {pid} ({process}) exited; no profile"),
            ),
            AgentError::Waiting(_) => self
                .unavailable_target(false)
                .unwrap_or_else(|| text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
            AgentError::Unavailable(kind) => text(
                StatusCode::NOT_IMPLEMENTED,
                &format!(
                    "/debug/pprof/{}: {}",
                    kind.endpoint(),
                    kind.unavailable_reason()
                ),
            ),
            other => text(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
        }
    }

    fn cmdline(&self) -> Reply {
        let state = self.agent.state();
        let Some(target) = state.attached() else {
            return self
                .unavailable_target(false)
                .unwrap_or_else(|| text(StatusCode::SERVICE_UNAVAILABLE, "no target"));
        };
        let args = target
            .cmdline
            .strip_suffix(b"\0")
            .unwrap_or(&target.cmdline);
        let mut r = Response::new(Full::new(Bytes::copy_from_slice(args)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }

    async fn symbol<B>(&self, req: Request<B>) -> Reply
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.opts.max_body_bytes;
        let body = match Limited::new(req.into_body(), limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is larger than {limit} bytes"),
                );
            }
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
        };
        self.symbol_query(Some(&String::from_utf8_lossy(&body)))
            .await
    }

    /// Go's symbol protocol: `num_symbols: 1` (symbols are available), then `0xADDR name`
    /// for each address of `0x…+0x…` that has a name.
    async fn symbol_query(&self, words: Option<&str>) -> Reply {
        let mut out = String::from("num_symbols: 1\n");
        let addrs: Vec<u64> = words
            .unwrap_or("")
            .split(['+', ' ', '\n', '\r', '\t'])
            .filter_map(parse_address)
            .collect();
        if !addrs.is_empty() {
            match self.agent.symbolize(addrs).await {
                Ok(names) => {
                    for (addr, name) in names {
                        let _ = writeln!(out, "{addr:#x} {name}");
                    }
                }
                Err(e) => return self.agent_error(e),
            }
        }
        let mut r = Response::new(Full::new(Bytes::from(out)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }

    fn index(&self) -> Reply {
        let state = self.agent.state();
        let mut html = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>/debug/pprof/</title>\n\
             <style>body{font-family:sans-serif;margin:2em}td{padding:.2em 1em .2em 0;vertical-align:top}\
             .off{color:#777}</style></head>\n<body>\n<h1>/debug/pprof/</h1>\n",
        );
        let collectors: Vec<&'static str> = match &state {
            TargetState::Attached(t) => {
                let _ = writeln!(
                    html,
                    "<p>Profiling pid {} ({}) from the outside with eBPF: <code>{}</code></p>",
                    t.pid,
                    escape(&t.process),
                    escape(&String::from_utf8_lossy(&t.cmdline).replace('\0', " "))
                );
                t.collectors.clone()
            }
            TargetState::Waiting { name, .. } => {
                let _ = writeln!(
                    html,
                    "<p>Waiting for a process named <code>{}</code> to start.</p>",
                    escape(name)
                );
                Vec::new()
            }
            _ => Vec::new(),
        };
        html.push_str(
            "<table>\n<tr><th align=left>Profile</th><th align=left>What it is</th></tr>\n",
        );
        for kind in Kind::ALL {
            let name = kind.endpoint();
            let (class, extra) = if kind.served_by(&collectors) {
                ("", String::new())
            } else {
                (
                    " class=\"off\"",
                    format!(" (not available: {})", kind.unavailable_reason()),
                )
            };
            let href = match kind.default_seconds() {
                Some(d) => format!("{name}?seconds={}", self.opts.default_seconds.unwrap_or(d)),
                None => name.to_string(),
            };
            let _ = writeln!(
                html,
                "<tr{class}><td><a href=\"{}\">{name}</a></td><td>{}{}</td></tr>",
                escape(&href),
                escape(kind.description()),
                escape(&extra)
            );
        }
        html.push_str(
            "<tr><td><a href=\"cmdline\">cmdline</a></td><td>The target's command line, arguments separated by NUL bytes.</td></tr>\n\
             <tr><td><a href=\"symbol\">symbol</a></td><td>Names addresses of the target: POST <code>0xADDR+0xADDR</code>.</td></tr>\n</table>\n",
        );
        let _ = writeln!(
            html,
            "<p>Requests take at most {} seconds; one profile of a kind runs at a time.</p>",
            self.opts.max_seconds
        );
        if let Some(push) = &self.push {
            let _ = writeln!(
                html,
                "<h2>Continuous push</h2>\n<p>{}</p>",
                escape(&push.summary())
            );
        }
        html.push_str(
            "<h2>Examples</h2>\n<pre>go tool pprof -top http://HOST:PORT/debug/pprof/profile?seconds=10\n\
             go tool pprof -http=:8080 http://HOST:PORT/debug/pprof/profile\n\
             curl -s http://HOST:PORT/debug/pprof/profile?seconds=5 &gt; cpu.pb.gz &amp;&amp; profiler top cpu.pb.gz</pre>\n</body>\n</html>\n",
        );
        let mut r = Response::new(Full::new(Bytes::from(html)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    }
}

/// Cancels an open window when its request ends early (the client went away, or the target
/// exited): the agent pauses the collector if nobody else needs it.
struct WindowGuard<'a> {
    agent: &'a AgentHandle,
    id: Option<WindowId>,
}

impl Drop for WindowGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.agent.cancel(id);
        }
    }
}

/// Frees a kind's slot when its request ends, however it ends.
struct SlotGuard {
    busy: Arc<Mutex<HashMap<Kind, Instant>>>,
    kind: Kind,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.kind);
    }
}

/// `/debug/pprof/trace?seconds=N`: records a Perfetto timeline of the target (its children
/// too when the agent follows them) in a session of its own, on a blocking thread, and sends
/// the file. When the client goes away the request's future is dropped, and with it the guard
/// that ends the recording's window early, so its programs do not trace on for nobody.
async fn trace(target: &AttachedTarget, duration: Duration) -> Reply {
    if duration > trace::MAX_DURATION {
        return text(
            StatusCode::BAD_REQUEST,
            &format!(
                "seconds={} is longer than a trace may be ({}): a trace is for seconds of detail; use /debug/pprof/block or profile for minutes",
                duration.as_secs(),
                trace::MAX_DURATION.as_secs()
            ),
        );
    }
    let opts = TraceOptions {
        target: TargetSpec::Pids {
            pids: vec![target.pid],
            follow_children: target.follow_children,
        },
        duration,
        frequency: trace::DEFAULT_FREQUENCY,
        output: PathBuf::new(),
        // The agent's own heap collector already probes the allocator; a second set of
        // uprobes would double the target's cost for counters /debug/pprof/heap has.
        heap: false,
    };
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = Arc::clone(&stop.0);
    let recorded = tokio::task::spawn_blocking(move || trace::trace_bytes(&opts, &flag)).await;
    match recorded {
        Ok(Ok((_, bytes))) => {
            let mut r = Response::new(Full::new(Bytes::from(bytes)));
            let headers = r.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"trace.perfetto-trace\""),
            );
            r
        }
        Ok(Err(TraceRecordError::Record(
            RecordError::NoSuchPid(pid) | RecordError::ExitedBeforeAttach(pid),
        ))) => text(
            StatusCode::GONE,
            &format!("pid {pid} ({}) exited; no trace", target.process),
        ),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("recording the trace: {e}"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the trace recorder failed: {e}"),
        ),
    }
}

/// `seconds` from the query: a whole number from 1 to `max`; `default` when absent.
pub fn parse_seconds(
    query: Option<&str>,
    default: Option<u64>,
    max: u64,
) -> Result<Option<u64>, String> {
    let given = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "seconds")
        .map(|(_, v)| v.into_owned());
    let Some(given) = given else {
        return Ok(default.map(|d| d.min(max)));
    };
    let bad =
        || format!("seconds must be a whole number of seconds from 1 to {max}, got {given:?}");
    let n: u64 = given.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    if n > max {
        return Err(format!(
            "seconds={n} is longer than this server allows ({max}; `profiler serve --max-seconds` sets it)"
        ));
    }
    Ok(Some(n))
}

fn parse_address(word: &str) -> Option<u64> {
    let w = word.trim();
    match w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => w.parse().ok(),
    }
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An error or note for people and for `go tool pprof` (which prints the body of a
/// `text/plain` answer carrying `X-Go-Pprof`).
pub fn text(status: StatusCode, message: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-go-pprof", HeaderValue::from_static("1"));
    r
}

fn redirect(to: &'static str) -> Reply {
    let mut r = text(StatusCode::MOVED_PERMANENTLY, &format!("see {to}"));
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn gone_reply(pid: u32, process: &str, state: &TargetState) -> Reply {
    let next = match state {
        TargetState::Waiting { name, .. } => {
            format!("; waiting for the next process named {name:?}")
        }
        TargetState::Attached(t) => format!("; now attached to pid {}", t.pid),
        _ => "; profiler serve is stopping".to_string(),
    };
    text(
        StatusCode::GONE,
        &format!("pid {pid} ({process}) exited during the profile{next}"),
    )
}

/// A capture as Go serves one: gzipped pprof, as a download named after the profile.
fn pprof_reply(kind: Kind, profile: &crate::profile::Profile) -> Reply {
    let bytes = crate::capture::encode_pprof(profile);
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let disposition = format!("attachment; filename=\"{}\"", kind.endpoint());
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_bounded_whole_numbers() {
        assert_eq!(parse_seconds(None, Some(30), 300), Ok(Some(30)));
        assert_eq!(parse_seconds(Some("debug=1"), Some(30), 300), Ok(Some(30)));
        assert_eq!(parse_seconds(Some("seconds=5"), Some(30), 300), Ok(Some(5)));
        assert_eq!(parse_seconds(None, None, 300), Ok(None));
        // A default above the bound is cut to it.
        assert_eq!(parse_seconds(None, Some(30), 10), Ok(Some(10)));
        for bad in [
            "seconds=0",
            "seconds=-3",
            "seconds=abc",
            "seconds=1.5",
            "seconds=",
        ] {
            let e = parse_seconds(Some(bad), Some(30), 300).unwrap_err();
            assert!(e.contains("whole number"), "{bad}: {e}");
        }
        let e = parse_seconds(Some("seconds=301"), Some(30), 300).unwrap_err();
        assert!(e.contains("300") && e.contains("--max-seconds"), "{e}");
    }

    #[test]
    fn addresses_and_secrets() {
        assert_eq!(parse_address("0x1f"), Some(31));
        assert_eq!(parse_address("42"), Some(42));
        assert_eq!(parse_address("zz"), None);
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
