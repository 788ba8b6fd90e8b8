//! Getting a feed's bytes: http(s) through one shared reqwest client (connect and total
//! timeouts, a streamed body cap, our User-Agent), local files through tokio::fs (same cap),
//! embedded documents as they are.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::FeedLocation;
use super::cache::CacheOptions;

/// Why a feed's bytes could not be had. Messages name the location.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP client could not be set up: {0}")]
    Client(String),
    #[error("{url}: {message}")]
    Request { url: String, message: String },
    #[error("{url}: the origin answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error(
        "{location}: the body is larger than the {limit}-byte cap; if the feed is legitimately this large, start search-server with a larger --max-feed-bytes"
    )]
    TooLarge { location: String, limit: usize },
    #[error("{location}: no complete answer within {after:?}")]
    Timeout { location: String, after: Duration },
    #[error("cannot read feed file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Fetches feed bytes. One per cache: the reqwest client inside pools connections.
#[derive(Debug)]
pub struct Fetcher {
    client: Result<reqwest::Client, String>,
    max_body_bytes: usize,
    total_timeout: Duration,
}

impl Fetcher {
    pub fn new(opts: &CacheOptions) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.total_timeout)
            .user_agent(opts.user_agent.clone())
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| error_chain(&e));
        Self {
            client,
            max_body_bytes: opts.max_body_bytes,
            total_timeout: opts.total_timeout,
        }
    }

    /// The document at `location`, within the total timeout and the body cap.
    pub async fn fetch(&self, location: &FeedLocation) -> Result<Bytes, FetchError> {
        let work = async {
            match location {
                FeedLocation::Embedded { bytes, .. } => Ok(Bytes::from_static(bytes)),
                FeedLocation::Url(url) => self.fetch_url(url).await,
                FeedLocation::File(path) => self.read_file(path).await,
            }
        };
        // reqwest enforces the timeout too; this also bounds file reads (a hung mount).
        tokio::time::timeout(self.total_timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::Timeout {
                    location: location.label(),
                    after: self.total_timeout,
                })
            })
    }

    async fn fetch_url(&self, url: &str) -> Result<Bytes, FetchError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| FetchError::Client(e.clone()))?;
        let request_error = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout {
                    location: url.to_owned(),
                    after: self.total_timeout,
                }
            } else {
                FetchError::Request {
                    url: url.to_owned(),
                    message: error_chain(&e),
                }
            }
        };
        let mut response = client.get(url).send().await.map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            location: url.to_owned(),
            limit: self.max_body_bytes,
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_body_bytes as u64)
        {
            return Err(too_large());
        }
        // Streamed so that an origin lying about (or omitting) its length is cut off at the
        // cap instead of filling memory.
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    async fn read_file(&self, path: &std::path::Path) -> Result<Bytes, FetchError> {
        let read_error = |source| FetchError::Read {
            path: path.display().to_string(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(read_error)?;
        let mut body = Vec::new();
        // One byte past the cap tells "exactly at the cap" from "over it".
        file.take(self.max_body_bytes as u64 + 1)
            .read_to_end(&mut body)
            .await
            .map_err(read_error)?;
        if body.len() > self.max_body_bytes {
            return Err(FetchError::TooLarge {
                location: path.display().to_string(),
                limit: self.max_body_bytes,
            });
        }
        Ok(Bytes::from(body))
    }
}

/// reqwest's own message is terse ("error sending request"); the causes say what happened.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
