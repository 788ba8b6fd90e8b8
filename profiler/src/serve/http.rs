//! Connections for `profiler serve`: the accept loop, one task per connection (HTTP/1.1 with
//! keep-alive), limits on connections and request heads, the header-read timeout (a client
//! trickling its head is cut off), and graceful shutdown that lets requests in flight finish.
//! What a request gets is decided in `endpoints`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::endpoints::Endpoints;

/// Limits and timeouts of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// A client must send a whole request head within this time, or its connection is closed.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_head_bytes: usize,
    /// Most header fields in a request; more gets 431.
    pub max_headers: usize,
    /// Connections served at once; more wait in the listen backlog. A profiling endpoint
    /// has a handful of clients: this bounds what a misbehaving one can hold.
    pub max_connections: usize,
    /// After shutdown is asked for, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_connections: 32,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Serves `endpoints` on `listener` until `shutdown` completes, then stops accepting, lets
/// requests in flight finish (up to `shutdown_grace`) and returns.
pub async fn serve(
    listener: TcpListener,
    endpoints: Arc<Endpoints>,
    opts: HttpOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_header_size(opts.max_head_bytes)
        .max_headers(opts.max_headers)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let endpoints = Arc::clone(&endpoints);
        let service = service_fn(move |req| {
            let endpoints = Arc::clone(&endpoints);
            async move { Ok::<_, Infallible>(endpoints.handle(req).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(opts.shutdown_grace) => {
            tracing::warn!(grace = ?opts.shutdown_grace, "requests still in flight after the grace period; closing");
        }
    }
}
