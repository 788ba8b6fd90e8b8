//! Connections: the accept loop, one task per connection (HTTP/1.1 with keep-alive), limits
//! on the request head, the header-read timeout, and graceful shutdown that lets requests in
//! flight finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::web::App;

/// Limits and timeouts of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A client must send a whole request head within this time, or its connection is closed.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_head_bytes: usize,
    /// Most header fields in a request; more gets 431.
    pub max_headers: usize,
    /// After shutdown is asked for, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets
/// connections finish their requests in flight (up to `shutdown_grace`) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    opts: ServerOptions,
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
    // Open connections; when the last one closes the server is idle (see release_free_memory).
    let open = Arc::new(AtomicUsize::new(0));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning; the
                // connections already open keep being served.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Responses are written whole; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(app.handle(req).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        open.fetch_add(1, Ordering::AcqRel);
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            if open.fetch_sub(1, Ordering::AcqRel) == 1 {
                release_free_memory();
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(opts.shutdown_grace) => {
            tracing::warn!(grace = ?opts.shutdown_grace, "requests still in flight after the grace period; closing");
        }
    }
}

/// Called when the last open connection closes. A burst of connections (say 256 at once)
/// leaves their buffers freed but kept in glibc's heaps, and the process's RSS stays at the
/// burst's size; trimming at idle hands that memory back to the kernel, as Go's runtime
/// scavenger does. It costs well under a millisecond, and nobody is waiting then.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim has no preconditions; it only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
