//! What the serve tests share: a fake agent (answers the agent's commands with synthetic
//! captures, on tokio's clock, its target state set by the test), starting the endpoints on
//! 127.0.0.1:0, raw HTTP for what a client library would hide, and the real `profiler serve`
//! as a child process for the root tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use profiler::profile::{Line, Profile, ProfileBuilder, Sample, ValueType};
use profiler::serve::agent::{AgentError, AttachedTarget, Command as AgentCommand};
use profiler::serve::{AgentHandle, Capture, EndpointOptions, Endpoints, HttpOptions, TargetState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::common::Reaped;

pub const FAKE_PID: u32 = 4242;
pub const FAKE_PERIOD: i64 = 1_000_000_000 / 19;

/// A stand-in for the agent thread: windows are open times on tokio's clock, captures are
/// one synthetic sample whose duration is the window's.
pub struct FakeAgent {
    pub handle: AgentHandle,
    pub state: watch::Sender<TargetState>,
    /// Every command seen, in words (`open cpu 1`, `close 1`, `cancel 1`, ...).
    pub log: Arc<Mutex<Vec<String>>>,
}

pub fn attached(collectors: &[&'static str]) -> TargetState {
    TargetState::Attached(AttachedTarget {
        pid: FAKE_PID,
        process: "fake-service".into(),
        cmdline: b"/usr/bin/fake-service\0--port\x005000\0".to_vec(),
        collectors: collectors.to_vec(),
        follow_children: false,
        since: std::time::SystemTime::now(),
    })
}

pub fn fake_agent() -> FakeAgent {
    let (tx, mut rx) = mpsc::unbounded_channel::<AgentCommand>();
    let (state_tx, state_rx) = watch::channel(attached(&["cpu"]));
    let log = Arc::new(Mutex::new(Vec::new()));
    let state = state_rx.clone();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        let mut next = 1u64;
        let mut open: HashMap<u64, tokio::time::Instant> = HashMap::new();
        let note = |s: String| seen.lock().unwrap().push(s);
        while let Some(command) = rx.recv().await {
            let current = state.borrow().clone();
            let target = current.attached().cloned();
            let not_attached = || match &current {
                TargetState::Gone { pid, process } => AgentError::Gone {
                    pid: *pid,
                    process: process.clone(),
                },
                TargetState::Waiting { name, .. } => AgentError::Waiting(name.clone()),
                _ => AgentError::Stopped,
            };
            match command {
                AgentCommand::Open { kind, reply, .. } => {
                    let r = match &target {
                        None => Err(not_attached()),
                        Some(t) if !t.collectors.contains(&kind.collector()) => {
                            Err(AgentError::Unavailable(kind))
                        }
                        Some(_) => {
                            let id = next;
                            next += 1;
                            open.insert(id, tokio::time::Instant::now());
                            note(format!("open {} {id}", kind.endpoint()));
                            Ok(id)
                        }
                    };
                    let _ = reply.send(r);
                }
                AgentCommand::Close { id, reply } => {
                    note(format!("close {id}"));
                    let r = match (open.remove(&id), &target) {
                        (Some(at), Some(_)) => Ok(capture(at.elapsed())),
                        (_, None) => Err(not_attached()),
                        (None, _) => Err(AgentError::NoWindow(id)),
                    };
                    let _ = reply.send(r);
                }
                AgentCommand::Rotate { id, reply } => {
                    note(format!("rotate {id}"));
                    let r = match (open.get_mut(&id), &target) {
                        (Some(at), Some(_)) => {
                            let elapsed = at.elapsed();
                            *at = tokio::time::Instant::now();
                            Ok(capture(elapsed))
                        }
                        (_, None) => Err(not_attached()),
                        (None, _) => Err(AgentError::NoWindow(id)),
                    };
                    let _ = reply.send(r);
                }
                AgentCommand::Cancel { id } => {
                    open.remove(&id);
                    note(format!("cancel {id}"));
                }
                AgentCommand::Snapshot { kind, reply } => {
                    let _ = reply.send(Err(AgentError::Unavailable(kind)));
                }
                AgentCommand::Symbolize { addrs, reply } => {
                    let names = addrs
                        .into_iter()
                        .filter(|a| *a != 0)
                        .map(|a| (a, format!("fake::function_at_{a:x}")))
                        .collect();
                    let _ = reply.send(Ok(names));
                }
            }
        }
    });
    FakeAgent {
        handle: AgentHandle::from_parts(tx, state_rx),
        state: state_tx,
        log,
    }
}

impl FakeAgent {
    pub fn logged(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (on tokio's clock) until the log has a line starting with `prefix`.
    pub async fn until_logged(&self, prefix: &str) {
        for _ in 0..10_000 {
            if self.logged().iter().any(|l| l.starts_with(prefix)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the fake agent never saw {prefix:?}: {:?}", self.logged());
    }
}

/// A CPU capture as the agent would build it: `main` → `work`, 19 Hz.
pub fn capture(duration: Duration) -> Capture {
    let mut b = ProfileBuilder::new(vec![
        ValueType::new("samples", "count"),
        ValueType::new("cpu", "nanoseconds"),
    ]);
    let main = b.function("main", "main.rs");
    let work = b.function("fake::work", "work.rs");
    let l_main = b.location(
        None,
        0x1000,
        vec![Line {
            function: main,
            line: 1,
        }],
    );
    let l_work = b.location(
        None,
        0x2000,
        vec![Line {
            function: work,
            line: 2,
        }],
    );
    let n = (duration.as_secs_f64() * 19.0).round().max(1.0) as i64;
    b.add_sample(Sample {
        locations: vec![l_work, l_main],
        values: vec![n, n * FAKE_PERIOD],
        labels: vec![],
    });
    let p = b.profile_mut();
    p.period_type = Some(ValueType::new("cpu", "nanoseconds"));
    p.period = FAKE_PERIOD;
    p.duration_nanos = duration.as_nanos() as i64;
    p.default_sample_type = Some("cpu".into());
    Capture {
        profile: b.finish(),
        pid: FAKE_PID,
        process: "fake-service".into(),
    }
}

/// The endpoints over `agent` on 127.0.0.1:0; stops when the returned sender is dropped.
pub async fn start_endpoints(
    agent: &FakeAgent,
    opts: EndpointOptions,
    http: HttpOptions,
) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let endpoints = Arc::new(Endpoints::new(agent.handle.clone(), opts));
    tokio::spawn(profiler::serve::serve(listener, endpoints, http, async {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// A raw HTTP exchange: writes `request` as is and reads until the server closes or
/// `Connection: close` ends the answer.
pub async fn raw(base: &str, request: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn decode(bytes: &[u8]) -> Profile {
    profiler::capture::decode_capture(bytes, "response".as_ref())
        .unwrap_or_else(|e| panic!("not a capture: {e}"))
        .profile
}

// ---------------------------------------------------------------------------------------------
// The real `profiler serve`, for the root tests.

/// A running `profiler serve`; its stderr (the access log with RUST_LOG=info) is kept.
pub struct Served {
    pub child: Reaped,
    pub base: String,
    pub log: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `profiler serve ARGS --listen 127.0.0.1:0` and waits for its address.
    pub fn start(args: &[&str]) -> Served {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_profiler"));
        cmd.arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self::spawn(cmd)
    }

    pub fn spawn(mut cmd: Command) -> Served {
        let mut child = Reaped(cmd.spawn().expect("start profiler serve"));
        let stderr = child.0.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("serving http://") {
                    let addr: String = line[at + "serving ".len()..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != ';')
                        .collect();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim_end_matches("/debug/pprof/").to_string());
                    }
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => panic!(
                "profiler serve did not start:\n{}",
                log.lock().unwrap().as_str()
            ),
        };
        Served { child, base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The URLs the server answered, as its access log lists them (`GET /path?query 200`).
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once("profiler::serve::access: ").map(|(_, r)| r))
            .map(|r| {
                r.rsplit_once(' ')
                    .map_or(r, |(head, _time)| head)
                    .to_string()
            })
            .collect()
    }

    /// Waits for the process to end (hang guard only), returning its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// A blocking GET with a client that has no opinion on status codes.
pub fn get(url: &str) -> (u16, HashMap<String, String>, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "--max-time", "120", url])
        .output()
        .expect("run curl");
    split_response(&out.stdout)
}

pub fn split_response(bytes: &[u8]) -> (u16, HashMap<String, String>, Vec<u8>) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, bytes[end + 4..].to_vec())
}
