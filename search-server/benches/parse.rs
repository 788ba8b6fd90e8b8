//! Benchmarks of the feeds side: parsing the embedded feed set (what a refresh costs), reducing
//! a description's HTML to text, and the cache's warm `snapshot` (the request hot path).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use search_server::feeds::parse::{html_to_text, parse};
use search_server::feeds::{CacheOptions, FeedCache, FeedLocation, sources};

fn embedded_documents() -> Vec<(&'static str, &'static [u8])> {
    sources::embedded()
        .into_iter()
        .flat_map(|s| s.feeds)
        .map(|f| match f {
            FeedLocation::Embedded { name, bytes } => (name, bytes),
            other => panic!("embedded set holds {other:?}"),
        })
        .collect()
}

fn bench_parse(c: &mut Criterion) {
    let docs = embedded_documents();
    let bytes: usize = docs.iter().map(|(_, b)| b.len()).sum();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("embedded_set_12_feeds", |b| {
        b.iter(|| {
            for (_, doc) in &docs {
                black_box(parse(black_box(doc)).expect("embedded feeds parse"));
            }
        })
    });
    group.finish();

    let description = "<p>Forecasters said Storm Ingrid would bring gusts of up to 80 mph \
        overnight, with more than 40,000 homes already without power &amp; rail services \
        suspended.</p><p>It&#8217;s the latest in a series. <a href=\"https://ex.org/\">Read \
        more</a></p><img src=\"https://ex.org/x.jpg\" width=\"1\" height=\"1\"/>";
    c.bench_function("html_to_text/description", |b| {
        b.iter(|| black_box(html_to_text(black_box(description))))
    });
}

fn bench_snapshot(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = FeedCache::new(sources::embedded(), CacheOptions::default());
    runtime.block_on(cache.refresh_all());
    // A warm snapshot never waits, so polling it once completes it: no runtime overhead measured.
    c.bench_function("cache/snapshot_warm", |b| {
        b.iter(|| {
            let snaps = cache
                .snapshot(black_box("nyt"))
                .now_or_never()
                .expect("warm: no wait");
            black_box(snaps.expect("known source"))
        })
    });
}

criterion_group!(benches, bench_parse, bench_snapshot);
criterion_main!(benches);
