//! A fixture HTTP origin for integration tests: a real hyper server on `127.0.0.1:0` that
//! serves bytes per path, with behaviour switchable while it runs (answer, answer after a
//! delay, fail with a status, stream the body without a length) and a hit counter per path.
//!
//! Use it from any test file with `mod support;` and:
//!
//! ```ignore
//! let origin = support::origin::Origin::start().await;
//! origin.serve_fixture("/cnn.xml", "rss2.xml");          // tests/fixtures/feeds/rss2.xml
//! origin.serve("/bbc.xml", "<rss>...</rss>");             // any bytes
//! origin.set("/bbc.xml", Behavior::Delay(Duration::from_secs(5)));
//! origin.set("/cnn.xml", Behavior::Status(500));
//! let url = origin.url("/cnn.xml");                       // http://127.0.0.1:PORT/cnn.xml
//! assert_eq!(origin.hits("/cnn.xml"), 1);
//! ```
//!
//! Unknown paths answer 404 (and are counted). The server stops when the `Origin` is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the origin answers a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// 200 with the path's bytes and a Content-Length.
    Ok,
    /// 200 with the bytes, after waiting this long.
    Delay(Duration),
    /// This status with a short text body.
    Status(u16),
    /// 200 with the bytes sent in 1 KiB chunks and no Content-Length.
    Chunked,
}

#[derive(Debug)]
struct Route {
    body: Bytes,
    content_type: &'static str,
    behavior: Behavior,
    hits: usize,
    last_user_agent: Option<String>,
}

#[derive(Default, Debug)]
struct State {
    routes: HashMap<String, Route>,
}

/// A running fixture origin. Cheap to make; one per test.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Origin {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(Arc::clone(&state), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin { addr, state, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `body` at `path` (as RSS), answering normally; hit counts are kept.
    pub fn serve(&self, path: &str, body: impl Into<Bytes>) {
        let mut state = self.state.lock().unwrap();
        let route = state
            .routes
            .entry(path.to_owned())
            .or_insert_with(|| Route {
                body: Bytes::new(),
                content_type: "application/rss+xml; charset=utf-8",
                behavior: Behavior::Ok,
                hits: 0,
                last_user_agent: None,
            });
        route.body = body.into();
        route.behavior = Behavior::Ok;
    }

    /// Serves the file `tests/fixtures/feeds/{name}` at `path`.
    pub fn serve_fixture(&self, path: &str, name: &str) {
        self.serve(path, fixture(name));
    }

    /// Changes how `path` answers from the next request on (the path must be served).
    pub fn set(&self, path: &str, behavior: Behavior) {
        let mut state = self.state.lock().unwrap();
        let route = state
            .routes
            .get_mut(path)
            .unwrap_or_else(|| panic!("{path} is not served"));
        route.behavior = behavior;
    }

    /// Requests received for `path` so far (counted on arrival, before any delay).
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .routes
            .get(path)
            .map_or(0, |r| r.hits)
    }

    /// The User-Agent of the latest request for `path`.
    pub fn last_user_agent(&self, path: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .routes
            .get(path)
            .and_then(|r| r.last_user_agent.clone())
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The bytes of `tests/fixtures/feeds/{name}`.
pub fn fixture(name: &str) -> Bytes {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/feeds")
        .join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let user_agent = req
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let found = {
        let mut state = state.lock().unwrap();
        state.routes.get_mut(req.uri().path()).map(|route| {
            route.hits += 1;
            route.last_user_agent = user_agent;
            (route.body.clone(), route.content_type, route.behavior)
        })
    };
    let Some((body, content_type, behavior)) = found else {
        return Ok(text(StatusCode::NOT_FOUND, "no such fixture"));
    };
    let response = match behavior {
        Behavior::Ok => ok(content_type, Full::new(body).boxed()),
        Behavior::Delay(delay) => {
            tokio::time::sleep(delay).await;
            ok(content_type, Full::new(body).boxed())
        }
        Behavior::Status(code) => text(
            StatusCode::from_u16(code).expect("valid status"),
            "fixture failure",
        ),
        Behavior::Chunked => {
            let chunks: Vec<Result<Frame<Bytes>, Infallible>> = body
                .chunks(1024)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            ok(
                content_type,
                StreamBody::new(futures_util::stream::iter(chunks)).boxed(),
            )
        }
    };
    Ok(response)
}

fn ok(content_type: &'static str, body: Body) -> Response<Body> {
    Response::builder()
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(body)
        .expect("valid response")
}

fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(message.as_bytes())).boxed())
        .expect("valid response")
}
