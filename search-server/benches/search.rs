//! Benchmarks of the request hot path over the embedded feed set (600 items in twelve feeds,
//! warm cache): the search the server runs for the tutorial's term "house" (fast matching and
//! the `--slow-search` matching side by side), rendering its 30-hit result page, and one whole
//! `POST /search` through the web layer without the network.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Empty};
use search_server::feeds::{CacheOptions, FeedCache, sources};
use search_server::search::{self, Matching, Query};
use search_server::web::{self, App};

/// A cache holding the whole embedded set; every later snapshot is a cache hit, so polling a
/// search once completes it and no runtime overhead is measured. The runtime only loads the
/// feeds (the cache spawns its fetches) and is kept alive beside the cache.
fn warm_cache() -> (tokio::runtime::Runtime, Arc<FeedCache>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cache = FeedCache::new(sources::embedded(), CacheOptions::default());
    runtime.block_on(cache.refresh_all());
    (runtime, cache)
}

fn house() -> Query {
    Query::new(
        "house",
        vec!["cnn".into(), "bbc".into(), "nyt".into()],
        false,
    )
    .expect("valid term")
    .expect("non-empty term")
}

fn bench_search(c: &mut Criterion) {
    let (_runtime, cache) = warm_cache();
    let query = house();
    let items: usize = cache.stats().iter().map(|s| s.items).sum();
    let mut group = c.benchmark_group("search");
    group.throughput(Throughput::Elements(items as u64));
    for (name, matching) in [
        ("house_12_feeds", Matching::Fast),
        ("house_12_feeds_slow_search", Matching::Naive),
    ] {
        let outcome = search::run(cache.as_ref(), cache.sources(), &query, matching)
            .now_or_never()
            .expect("a warm search does not wait");
        assert_eq!(outcome.hit_count(), 30, "the embedded set changed shape");
        group.bench_function(name, |b| {
            b.iter(|| {
                let outcome = search::run(cache.as_ref(), cache.sources(), &query, matching)
                    .now_or_never()
                    .expect("a warm search does not wait");
                black_box(outcome.hit_count())
            })
        });
    }
    group.finish();
}

fn bench_render(c: &mut Criterion) {
    let (_runtime, cache) = warm_cache();
    let query = house();
    let outcome = search::run(cache.as_ref(), cache.sources(), &query, Matching::Fast)
        .now_or_never()
        .expect("a warm search does not wait");
    let page_bytes = body_len(web::render_result_page(cache.sources(), &query, &outcome));
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Bytes(page_bytes as u64));
    group.bench_function("house_page_30_hits", |b| {
        b.iter(|| {
            black_box(web::render_result_page(
                cache.sources(),
                black_box(&query),
                &outcome,
            ))
        })
    });
    group.finish();
}

fn bench_handle(c: &mut Criterion) {
    let (_runtime, cache) = warm_cache();
    let app = App::new(cache);
    let request = || {
        http::Request::post("/search?term=house&cnn=on&bbc=on&nyt=on")
            .body(Empty::<Bytes>::new())
            .expect("valid request")
    };
    let check = app.handle(request()).now_or_never().expect("no I/O");
    assert_eq!(check.status(), 200);
    c.bench_function("handle/post_search_house", |b| {
        b.iter(|| {
            let resp = app
                .handle(request())
                .now_or_never()
                .expect("a warm request does not wait");
            black_box(resp)
        })
    });
}

fn body_len(resp: web::HttpResponse) -> usize {
    resp.into_body()
        .collect()
        .now_or_never()
        .expect("a full body is ready")
        .expect("infallible")
        .to_bytes()
        .len()
}

criterion_group!(benches, bench_search, bench_render, bench_handle);
criterion_main!(benches);
