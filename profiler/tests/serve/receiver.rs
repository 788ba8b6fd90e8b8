//! A Pyroscope stand-in for the push tests: it implements the documented ingestion requests
//! (`POST /push.v1.PusherService/Push` with a protobuf `PushRequest`, and
//! `POST /ingest?name=…&from=…&until=…&format=pprof` with a multipart `profile` field), decodes
//! the gzipped pprof inside, and keeps what it got for the test to check. The protobuf
//! messages are declared here again from `api/push/v1/push.proto` (not taken from the code
//! under test), so a wrong field number on either side fails the test.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use profiler::profile::Profile;
use prost::Message;
use tokio::net::TcpListener;

#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct RawSample {
    #[prost(bytes = "vec", tag = "1")]
    pub raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    pub id: String,
}

/// One profile the receiver accepted, whichever API it came by.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    pub tenant: Option<String>,
    pub authorization: Option<String>,
    pub connect_version: Option<String>,
    /// Push: the series labels. Ingest: parsed from `name=APP{k=v,...}` (APP as
    /// `service_name`).
    pub labels: Vec<(String, String)>,
    pub id: String,
    /// Ingest only: `from`, `until`, `format`.
    pub query: Vec<(String, String)>,
    pub profile: Profile,
}

impl Received {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Accept,
    /// Answers this status to the next `n` requests, then accepts.
    FailTimes(u16, usize),
    /// Answers this status to every request.
    Always(u16),
    /// Never answers (holds the request for an hour).
    Hang,
}

pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    /// Requests seen, accepted or not.
    pub requests: Arc<Mutex<usize>>,
}

impl Receiver {
    pub async fn start(behavior: Behavior) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let behavior = Arc::new(Mutex::new(behavior));
        let state = (
            Arc::clone(&got),
            Arc::clone(&requests),
            Arc::clone(&behavior),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(req, state).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { url, got, requests }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        *self.requests.lock().unwrap()
    }
}

type State = (
    Arc<Mutex<Vec<Received>>>,
    Arc<Mutex<usize>>,
    Arc<Mutex<Behavior>>,
);

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

async fn answer(req: Request<Incoming>, (got, requests, behavior): State) -> Response<Full<Bytes>> {
    *requests.lock().unwrap() += 1;
    let verdict = {
        let mut b = behavior.lock().unwrap();
        match *b {
            Behavior::Accept => None,
            Behavior::FailTimes(status, n) => {
                *b = if n <= 1 {
                    Behavior::Accept
                } else {
                    Behavior::FailTimes(status, n - 1)
                };
                Some(status)
            }
            Behavior::Always(status) => Some(status),
            Behavior::Hang => Some(0),
        }
    };
    match verdict {
        Some(0) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return reply(504, "");
        }
        // A Connect error body, as Pyroscope sends.
        Some(status) => {
            return reply(
                status,
                "{\"code\":\"unavailable\",\"message\":\"test receiver says no\"}",
            );
        }
        None => {}
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let content_type = header("content-type").unwrap_or_default();
    let tenant = header("x-scope-orgid");
    let authorization = header("authorization");
    let connect_version = header("connect-protocol-version");
    if req.method() != hyper::Method::POST {
        return reply(405, "POST only");
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let (labels, raw, id) = match path.as_str() {
        "/push.v1.PusherService/Push" => {
            if content_type != "application/proto" {
                return reply(
                    415,
                    "Connect unary with a protobuf body wants application/proto",
                );
            }
            let Ok(push) = PushRequest::decode(body.as_ref()) else {
                return reply(400, "not a PushRequest");
            };
            let [series] = push.series.as_slice() else {
                return reply(400, "expected one series");
            };
            let [sample] = series.samples.as_slice() else {
                return reply(400, "expected one sample");
            };
            let labels = series
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            (labels, sample.raw_profile.clone(), sample.id.clone())
        }
        "/ingest" => {
            let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
            if get("format").as_deref() != Some("pprof")
                || get("from").is_none()
                || get("until").is_none()
            {
                return reply(400, "ingest needs name, from, until and format=pprof");
            }
            let Some(name) = get("name") else {
                return reply(400, "no name");
            };
            let Some(profile) = multipart_field(&content_type, &body, "profile") else {
                return reply(400, "no multipart profile field");
            };
            (ingest_labels(&name), profile, String::new())
        }
        _ => return reply(404, "unknown API"),
    };
    let profile = match profiler::capture::decode_capture(&raw, "pushed profile".as_ref()) {
        Ok(l) if l.format == profiler::capture::CaptureFormat::PprofGzip => l.profile,
        Ok(_) => return reply(400, "the profile must be gzipped pprof"),
        Err(e) => return reply(400, &format!("bad profile: {e}")),
    };
    got.lock().unwrap().push(Received {
        path,
        content_type,
        tenant,
        authorization,
        connect_version,
        labels,
        id,
        query,
        profile,
    });
    reply(200, "")
}

/// `APP{k=v,k2=v2}` → `service_name=APP`, `k=v`, ...
fn ingest_labels(name: &str) -> Vec<(String, String)> {
    let (app, rest) = name.split_once('{').unwrap_or((name, "}"));
    let mut labels = vec![("service_name".to_string(), app.to_string())];
    for pair in rest
        .trim_end_matches('}')
        .split(',')
        .filter(|p| !p.is_empty())
    {
        if let Some((k, v)) = pair.split_once('=') {
            labels.push((k.to_string(), v.to_string()));
        }
    }
    labels
}

/// The bytes of field `name` of a multipart/form-data body.
fn multipart_field(content_type: &str, body: &[u8], name: &str) -> Option<Vec<u8>> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut at = 0;
    while let Some(pos) = find(&text[at..], delimiter.as_bytes()) {
        parts.push(at + pos);
        at += pos + delimiter.len();
    }
    for w in parts.windows(2) {
        let part = &text[w[0] + delimiter.len()..w[1]];
        let part = part.strip_prefix(b"\r\n")?;
        let head_end = find(part, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..head_end]);
        if head.contains(&format!("name=\"{name}\"")) {
            let data = &part[head_end + 4..];
            return Some(data.strip_suffix(b"\r\n").unwrap_or(data).to_vec());
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
