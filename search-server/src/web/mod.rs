//! The HTTP surface: routing, request parameters, the search page and JSON API, static
//! assets, `/metrics`, `/healthz`, and the mapping of every error to a status code (here,
//! in [`WebError`], and nowhere else).

mod api;
mod metrics;
mod page;
mod params;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use tracing::Instrument;

use crate::feeds::cache::FeedCache;
use crate::feeds::{FeedSnapshot, Source};
use crate::search::{self, Matching, Outcome, Query, QueryError, Snapshots};

pub use metrics::{Metrics, Route};

/// Largest request body accepted (a search form is well under 1 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

const STYLE_CSS: &str = include_str!("../../static/style.css");

/// The response type of every route: bodies are rendered whole before they are sent.
pub type HttpResponse = Response<Full<Bytes>>;

/// Shared state of the web layer: the feed cache and the metrics.
#[derive(Debug)]
pub struct App {
    cache: Arc<FeedCache>,
    matching: Matching,
    metrics: Metrics,
    next_request_id: AtomicU64,
}

impl Snapshots for FeedCache {
    fn snapshot(
        &self,
        source_id: &str,
    ) -> impl Future<Output = Option<Vec<Arc<FeedSnapshot>>>> + Send {
        FeedCache::snapshot(self, source_id)
    }
}

/// A request that cannot be served as asked. The status code of each is decided here.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes; send a shorter form")]
    BodyTooLarge,
    #[error("the request body could not be read: {0}")]
    BodyUnreadable(String),
    #[error(
        "the request body has content type {0:?}; send the form as application/x-www-form-urlencoded"
    )]
    UnsupportedMediaType(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("parameter {name}={value:?} is not valid: {expected}")]
    BadParam {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("missing parameter term: add ?term=WORD")]
    MissingTerm,
    #[error("no source selected: tick at least one of the sources")]
    NoSourceSelected,
    #[error("no page at {0}; the search page is at /search")]
    NotFound(String),
    #[error("method {method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: Method, allow: &'static str },
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebError::BodyUnreadable(_)
            | WebError::Query(_)
            | WebError::BadParam { .. }
            | WebError::MissingTerm
            | WebError::NoSourceSelected => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn into_plain_response(self) -> HttpResponse {
        let status = self.status();
        let allow = match &self {
            WebError::MethodNotAllowed { allow, .. } => Some(*allow),
            _ => None,
        };
        let mut resp = text_response(status, "text/plain; charset=utf-8", format!("{self}\n"));
        if let Some(allow) = allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

impl App {
    pub fn new(cache: Arc<FeedCache>) -> Arc<Self> {
        Self::with_matching(cache, Matching::Fast)
    }

    /// An app whose searches use `matching` (`Matching::Naive` is `--slow-search`).
    pub fn with_matching(cache: Arc<FeedCache>, matching: Matching) -> Arc<Self> {
        Arc::new(Self {
            cache,
            matching,
            metrics: Metrics::default(),
            next_request_id: AtomicU64::new(1),
        })
    }

    pub fn cache(&self) -> &Arc<FeedCache> {
        &self.cache
    }

    pub fn sources(&self) -> &[Source] {
        self.cache.sources()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves one request. Never fails: every error becomes a response with its status.
    pub async fn handle<B>(&self, req: Request<B>) -> HttpResponse
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // The span's fields (and the id counter) are only evaluated when debug logging is on.
        let span = tracing::debug_span!(
            "request",
            id = self.next_request_id.fetch_add(1, Ordering::Relaxed),
            method = %req.method(),
            path = req.uri().path(),
        );
        async move {
            let started = Instant::now();
            let (route, resp) = self.route(req).await;
            self.metrics.count_request(route, resp.status());
            tracing::debug!(
                status = resp.status().as_u16(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "done"
            );
            resp
        }
        .instrument(span)
        .await
    }

    async fn route<B>(&self, req: Request<B>) -> (Route, HttpResponse)
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        let path = req.uri().path();
        let route = match path {
            "/" => Route::Root,
            "/search" if *req.method() == Method::POST => Route::SearchPost,
            "/search" => Route::SearchPage,
            "/api/search" => Route::Api,
            "/metrics" => Route::Metrics,
            "/healthz" => Route::Healthz,
            "/static/style.css" => Route::Static,
            _ => Route::Other,
        };
        let not_allowed = |allow| WebError::MethodNotAllowed {
            method: req.method().clone(),
            allow,
        };
        let resp = match route {
            Route::SearchPost => self.search_page(req).await,
            Route::SearchPage if get => self.search_page(req).await,
            Route::SearchPage => not_allowed("GET or POST").into_plain_response(),
            _ if !get => {
                if route == Route::Other {
                    WebError::NotFound(path.to_owned()).into_plain_response()
                } else {
                    not_allowed("GET").into_plain_response()
                }
            }
            Route::Root => redirect("/search"),
            Route::Api => self.api_search(&req).await,
            Route::Metrics => {
                let text = self.metrics.render(&self.cache.stats());
                text_response(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text,
                )
            }
            Route::Healthz => text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            Route::Static => {
                let mut resp = text_response(
                    StatusCode::OK,
                    "text/css; charset=utf-8",
                    Bytes::from_static(STYLE_CSS.as_bytes()),
                );
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                );
                resp
            }
            Route::Other => WebError::NotFound(path.to_owned()).into_plain_response(),
        };
        (route, resp)
    }

    /// `GET /search` (the page; a `term` in the query string also searches, so results can be
    /// linked) and `POST /search` (the form, from the body and/or the query string).
    async fn search_page<B>(&self, req: Request<B>) -> HttpResponse
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let sources = self.sources();
        let mut form = params::Form::default();
        if let Some(q) = req.uri().query() {
            form.absorb(q.as_bytes(), sources);
        }
        let submitted = *req.method() == Method::POST || form.term.is_some();
        if *req.method() == Method::POST {
            match read_form_body(req).await {
                Ok(body) => form.absorb(&body, sources),
                Err(e) => return e.into_plain_response(),
            }
        }
        if !submitted {
            // A fresh page: every source ticked, nothing searched.
            form.checked = sources.iter().map(|s| s.id.clone()).collect();
            return page::render(sources, &form, None, None, StatusCode::OK);
        }
        let term = form.term.as_deref().unwrap_or("");
        let query = match Query::new(term, form.checked.clone(), form.first) {
            Ok(Some(q)) => q,
            Ok(None) => return page::render(sources, &form, None, None, StatusCode::OK),
            Err(e) => {
                return page::render(
                    sources,
                    &form,
                    None,
                    Some(&WebError::from(e)),
                    StatusCode::BAD_REQUEST,
                );
            }
        };
        if form.checked.is_empty() {
            let e = WebError::NoSourceSelected;
            return page::render(sources, &form, None, Some(&e), e.status());
        }
        let outcome = search::run(self.cache.as_ref(), sources, &query, self.matching).await;
        self.metrics.observe_search(outcome.elapsed);
        page::render(
            sources,
            &form,
            Some((&query, &outcome)),
            None,
            StatusCode::OK,
        )
    }

    /// `GET /api/search?term=..&sources=cnn,bbc&first=false`: the same search as JSON.
    async fn api_search<B>(&self, req: &Request<B>) -> HttpResponse {
        let sources = self.sources();
        let parsed = api::parse(req.uri().query().unwrap_or(""), sources);
        let (query, selected) = match parsed {
            Ok(v) => v,
            Err(e) => return api::error(&e),
        };
        let outcome = search::run(self.cache.as_ref(), sources, &query, self.matching).await;
        self.metrics.observe_search(outcome.elapsed);
        api::render(&query, &selected, &outcome)
    }
}

/// The page `POST /search` answers for `outcome`: the form showing `query`'s term and
/// sources, then the hits. Public for the rendering benchmark.
pub fn render_result_page(sources: &[Source], query: &Query, outcome: &Outcome) -> HttpResponse {
    let form = params::Form {
        term: Some(query.term().to_owned()),
        checked: query.sources().to_vec(),
        first: query.first(),
    };
    page::render(sources, &form, Some((query, outcome)), None, StatusCode::OK)
}

/// Reads an urlencoded form body, refusing bodies over [`MAX_BODY_BYTES`] before reading them
/// when the length is declared, and as soon as they pass the limit when it is not.
async fn read_form_body<B>(req: Request<B>) -> Result<Bytes, WebError>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let headers = req.headers();
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        && len.parse::<u64>().is_ok_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(WebError::BodyTooLarge);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                WebError::BodyTooLarge
            } else {
                WebError::BodyUnreadable(e.to_string())
            }
        })?;
    let body = body.to_bytes();
    if let Some(ct) = content_type {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !body.is_empty() && !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(WebError::UnsupportedMediaType(ct));
        }
    }
    Ok(body)
}

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn redirect(to: &'static str) -> HttpResponse {
    let mut resp = text_response(
        StatusCode::FOUND,
        "text/plain; charset=utf-8",
        format!("see {to}\n"),
    );
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    resp
}
