//! The `search-server` binary: parse the command line, load the feeds, serve until SIGINT or
//! SIGTERM. Everything else lives in the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use search_server::config::Cli;
use search_server::feeds::FeedCache;
use search_server::{server, web};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// The system allocator behind the heap-sampler: it samples allocations by bytes, in-process,
/// and fires USDT probes only for sampled ones and only while a profiler listens, so
/// `sudo profiler record --heap --pid $(pgrep search-server)` costs the server almost nothing
/// (allocator uprobes would trap on every malloc and free). The example for other services.
#[cfg(feature = "heap-sampling")]
#[global_allocator]
static ALLOCATOR: heap_sampler::Sampler = heap_sampler::Sampler::new(std::alloc::System);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Per-request logs are at debug level: off unless RUST_LOG asks for them.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("search-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let sources = cli.sources().context("cannot load the feed sources")?;
    let listener = TcpListener::bind(cli.listen).await.with_context(|| {
        format!(
            "cannot listen on {}; pick another address with --listen",
            cli.listen
        )
    })?;
    let cache = FeedCache::new(sources, cli.cache_options());
    tracing::info!(feeds = ?cli.feeds, "loading feeds");
    cache.refresh_all().await;
    for s in cache.stats().iter().filter(|s| s.failures > 0) {
        tracing::warn!(feed = %s.location, "feed unavailable at startup; it will be retried");
    }
    let items: usize = cache.stats().iter().map(|s| s.items).sum();
    tracing::info!(items, "feeds loaded");
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    tracing::info!("listening on http://{addr}/search");
    let matching = cli.matching();
    if cli.slow_search {
        tracing::info!("--slow-search: matching with search::matching::naive_match");
    }
    let app = web::App::with_matching(cache, matching);
    server::serve(listener, app, cli.server_options(), shutdown_signal()).await;
    Ok(())
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
