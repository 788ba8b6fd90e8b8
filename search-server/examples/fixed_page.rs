//! A bare hyper server that answers every request with one fixed HTML page: the ceiling the
//! search server's throughput is compared with (`scripts/bench-server.sh`). Same runtime,
//! same HTTP/1.1 settings, no routing, no search, no rendering.
//!
//! `cargo run --release -p search-server --example fixed_page -- --listen 127.0.0.1:5001 --body page.html`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5001")]
    listen: SocketAddr,
    /// File whose bytes are the page; without it, a page of --bytes filler.
    #[arg(long)]
    body: Option<PathBuf>,
    /// Size of the filler page when no --body is given.
    #[arg(long, default_value_t = 23 * 1024)]
    bytes: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let page = match &args.body {
        Some(path) => Bytes::from(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        ),
        None => Bytes::from("x".repeat(args.bytes)),
    };
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "fixed_page: {} bytes on http://{}",
        page.len(),
        listener.local_addr()?
    );
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let page = page.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            service_fn(move |_req| {
                let page = page.clone();
                async move {
                    let mut resp = Response::new(Full::new(page));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            }),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
