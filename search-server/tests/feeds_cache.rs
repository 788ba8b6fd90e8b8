//! Feed cache against real loopback origins (tests/support/origin.rs): timeouts, stale copies
//! on failure, malformed feeds beside good ones, TTL expiry, single flight, body cap, files.
//!
//! Tests about time (TTLs, fetch timeouts, slow origins) run on tokio's paused clock: the
//! origin shares the test's runtime, so whenever everything waits on a timer the clock jumps
//! to it. They advance time instead of sleeping and measure it on that clock, never on the
//! wall clock, so they take no real time and do not depend on the machine's load.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, advance};

use search_server::feeds::{CacheOptions, FeedCache, FeedLocation, FeedSnapshot, Source};
use support::origin::{Behavior, Origin, fixture};

fn source(id: &str, urls: Vec<String>) -> Source {
    Source {
        id: id.to_owned(),
        name: id.to_uppercase(),
        feeds: urls.into_iter().map(FeedLocation::Url).collect(),
    }
}

fn options(ttl: Duration, timeout: Duration) -> CacheOptions {
    CacheOptions {
        ttl,
        connect_timeout: timeout,
        total_timeout: timeout,
        ..CacheOptions::default()
    }
}

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);

fn titles(snapshot: &FeedSnapshot) -> Vec<String> {
    let feed = snapshot
        .feed
        .as_ref()
        .unwrap_or_else(|| panic!("{}: no feed: {:?}", snapshot.location, snapshot.error));
    feed.items.iter().map(|i| i.title.clone()).collect()
}

fn one_item_feed(title: &str) -> String {
    format!(
        "<rss version=\"2.0\"><channel><title>T</title><item><title>{title}</title>\
         <link>https://ex.org/</link><description>d</description></item></channel></rss>"
    )
}

#[tokio::test]
async fn fetches_and_parses_over_http_with_our_user_agent() {
    let origin = Origin::start().await;
    origin.serve_fixture("/a.xml", "rss2.xml");
    let opts = CacheOptions::default();
    let cache = FeedCache::new(vec![source("a", vec![origin.url("/a.xml")])], opts.clone());
    let snaps = cache.snapshot("a").await.expect("source a");
    assert_eq!(
        titles(&snaps[0]),
        ["First story", "Second story", "Third story"]
    );
    assert_eq!(snaps[0].location, origin.url("/a.xml"));
    assert_eq!(
        origin.last_user_agent("/a.xml").as_deref(),
        Some(opts.user_agent.as_str())
    );
    let stats = cache.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].fetches, stats[0].failures, stats[0].items),
        (1, 0, 3)
    );
    assert_eq!(stats[0].source, "a");
    assert!(stats[0].last_success.is_some());
    assert!(cache.snapshot("unknown").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn slow_origin_without_a_copy_is_reported_unavailable_within_the_timeout() {
    let origin = Origin::start().await;
    origin.serve_fixture("/fast.xml", "rss2.xml");
    origin.serve_fixture("/slow.xml", "atom.xml");
    origin.set("/slow.xml", Behavior::Delay(MIN));
    let timeout = 10 * SEC;
    let cache = FeedCache::new(
        vec![source(
            "s",
            vec![origin.url("/fast.xml"), origin.url("/slow.xml")],
        )],
        options(15 * MIN, timeout),
    );
    let started = Instant::now();
    let snaps = cache.snapshot("s").await.unwrap();
    // Waited out the fetch timeout, not the origin's minute.
    let waited = started.elapsed();
    assert!(timeout <= waited && waited < MIN, "waited {waited:?}");
    assert_eq!(titles(&snaps[0]).len(), 3);
    assert!(snaps[1].feed.is_none());
    let error = snaps[1]
        .error
        .as_deref()
        .expect("unavailable feed says why");
    assert!(!error.is_empty());
    assert_eq!(origin.hits("/slow.xml"), 1);
}

#[tokio::test(start_paused = true)]
async fn slow_refresh_serves_the_stale_copy_within_the_timeout() {
    let origin = Origin::start().await;
    origin.serve("/f.xml", one_item_feed("old news"));
    let (ttl, timeout) = (15 * MIN, 10 * SEC);
    let cache = FeedCache::new(
        vec![source("s", vec![origin.url("/f.xml")])],
        options(ttl, timeout),
    );
    assert_eq!(titles(&cache.snapshot("s").await.unwrap()[0]), ["old news"]);
    origin.serve("/f.xml", one_item_feed("new news"));
    origin.set("/f.xml", Behavior::Delay(MIN));
    advance(ttl).await;
    let started = Instant::now();
    let snaps = cache.snapshot("s").await.unwrap();
    let waited = started.elapsed();
    assert!(timeout <= waited && waited < MIN, "waited {waited:?}");
    assert_eq!(titles(&snaps[0]), ["old news"]);
    assert_eq!(origin.hits("/f.xml"), 2);
}

#[tokio::test(start_paused = true)]
async fn failing_refresh_keeps_the_last_good_copy_and_records_the_failure() {
    let origin = Origin::start().await;
    origin.serve_fixture("/f.xml", "rss2.xml");
    // A TTL shorter than the cache's pause before retrying a failed feed, so the retry
    // comes after one TTL.
    let ttl = 10 * SEC;
    let cache = FeedCache::new(
        vec![source("s", vec![origin.url("/f.xml")])],
        options(ttl, 2 * SEC),
    );
    let first = cache.snapshot("s").await.unwrap();
    assert!(first[0].error.is_none());
    origin.set("/f.xml", Behavior::Status(500));
    advance(ttl).await;
    let snaps = cache.snapshot("s").await.unwrap();
    assert_eq!(titles(&snaps[0]), titles(&first[0]), "stale copy served");
    let error = snaps[0]
        .error
        .as_deref()
        .expect("failure visible in the snapshot");
    assert!(error.contains("500"), "{error}");
    assert!(
        error.contains(&origin.url("/f.xml")),
        "error names the URL: {error}"
    );
    let stats = &cache.stats()[0];
    assert_eq!((stats.fetches, stats.failures, stats.items), (2, 1, 3));
    assert!(stats.last_success.is_some());

    // The origin recovers: the next refresh clears the error.
    origin.set("/f.xml", Behavior::Ok);
    advance(ttl).await;
    let snaps = cache.snapshot("s").await.unwrap();
    assert!(snaps[0].error.is_none(), "{:?}", snaps[0].error);
    assert_eq!(cache.stats()[0].failures, 1);
}

#[tokio::test]
async fn failed_feed_is_not_refetched_on_every_request() {
    let origin = Origin::start().await;
    origin.serve("/down.xml", "");
    origin.set("/down.xml", Behavior::Status(503));
    let cache = FeedCache::new(
        vec![source("s", vec![origin.url("/down.xml")])],
        options(MIN, SEC),
    );
    for _ in 0..5 {
        let snaps = cache.snapshot("s").await.unwrap();
        assert!(snaps[0].feed.is_none());
        assert!(snaps[0].error.as_deref().unwrap().contains("503"));
    }
    assert_eq!(origin.hits("/down.xml"), 1);
}

#[tokio::test]
async fn malformed_feed_fails_alone() {
    let origin = Origin::start().await;
    origin.serve_fixture("/good1.xml", "rss2.xml");
    origin.serve_fixture("/bad.xml", "malformed.xml");
    origin.serve_fixture("/good2.xml", "atom.xml");
    let cache = FeedCache::new(
        vec![source(
            "s",
            vec![
                origin.url("/good1.xml"),
                origin.url("/bad.xml"),
                origin.url("/good2.xml"),
            ],
        )],
        options(MIN, 2 * SEC),
    );
    let snaps = cache.snapshot("s").await.unwrap();
    assert_eq!(titles(&snaps[0]).len(), 3);
    assert_eq!(titles(&snaps[2]).len(), 3);
    assert!(snaps[1].feed.is_none());
    let error = snaps[1].error.as_deref().unwrap();
    assert!(
        error.contains("parse") && error.contains("/bad.xml"),
        "{error}"
    );
    let stats = cache.stats();
    assert_eq!(
        stats.iter().map(|s| s.failures).collect::<Vec<_>>(),
        [0, 1, 0]
    );
}

#[tokio::test(start_paused = true)]
async fn ttl_expiry_refetches() {
    let origin = Origin::start().await;
    origin.serve("/f.xml", one_item_feed("first"));
    let ttl = 15 * MIN;
    let cache = FeedCache::new(
        vec![source("s", vec![origin.url("/f.xml")])],
        options(ttl, 10 * SEC),
    );
    assert_eq!(titles(&cache.snapshot("s").await.unwrap()[0]), ["first"]);
    origin.serve("/f.xml", one_item_feed("second"));
    // Up to the last moment of the TTL: served from the cache, no new fetch.
    advance(ttl - Duration::from_millis(1)).await;
    assert_eq!(titles(&cache.snapshot("s").await.unwrap()[0]), ["first"]);
    assert_eq!(origin.hits("/f.xml"), 1);
    // At the TTL: fetched again.
    advance(Duration::from_millis(1)).await;
    assert_eq!(titles(&cache.snapshot("s").await.unwrap()[0]), ["second"]);
    assert_eq!(origin.hits("/f.xml"), 2);
    assert_eq!(cache.stats()[0].fetches, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fetch() {
    let origin = Origin::start().await;
    origin.serve_fixture("/f.xml", "rss2.xml");
    // The delay keeps the fetch in flight while all callers arrive. On the real clock: this
    // test is about threads racing, and a paused clock needs a single-threaded runtime.
    origin.set("/f.xml", Behavior::Delay(Duration::from_millis(300)));
    let cache = FeedCache::new(
        vec![source("s", vec![origin.url("/f.xml")])],
        options(MIN, 5 * SEC),
    );
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.snapshot("s").await.unwrap() })
        })
        .collect();
    for caller in callers {
        let snaps = caller.await.unwrap();
        assert_eq!(titles(&snaps[0]).len(), 3);
    }
    assert_eq!(origin.hits("/f.xml"), 1);
    assert_eq!(cache.stats()[0].fetches, 1);
}

#[tokio::test]
async fn sources_sharing_a_url_share_its_fetch() {
    let origin = Origin::start().await;
    origin.serve_fixture("/f.xml", "rss2.xml");
    let url = origin.url("/f.xml");
    let cache = FeedCache::new(
        vec![source("a", vec![url.clone()]), source("b", vec![url])],
        options(MIN, 2 * SEC),
    );
    cache.refresh_all().await;
    assert_eq!(titles(&cache.snapshot("a").await.unwrap()[0]).len(), 3);
    assert_eq!(titles(&cache.snapshot("b").await.unwrap()[0]).len(), 3);
    assert_eq!(origin.hits("/f.xml"), 1);
    assert_eq!(cache.stats().len(), 1);
}

#[tokio::test]
async fn body_over_the_cap_fails_that_feed() {
    let origin = Origin::start().await;
    let big = format!(
        "<rss><channel><title>{}</title></channel></rss>",
        "x".repeat(8_000)
    );
    origin.serve("/len.xml", big.clone());
    origin.serve("/chunked.xml", big);
    origin.set("/chunked.xml", Behavior::Chunked);
    origin.serve_fixture("/small.xml", "rss2.xml");
    let opts = CacheOptions {
        max_body_bytes: 4_096,
        ..options(MIN, 2 * SEC)
    };
    let cache = FeedCache::new(
        vec![source(
            "s",
            vec![
                origin.url("/len.xml"),
                origin.url("/chunked.xml"),
                origin.url("/small.xml"),
            ],
        )],
        opts,
    );
    let snaps = cache.snapshot("s").await.unwrap();
    for snap in &snaps[..2] {
        assert!(snap.feed.is_none(), "{}", snap.location);
        let error = snap.error.as_deref().unwrap();
        assert!(error.contains("4096-byte cap"), "{error}");
        // The way out is a flag users can reach.
        assert!(error.contains("a larger --max-feed-bytes"), "{error}");
    }
    assert_eq!(titles(&snaps[2]).len(), 3);
}

#[tokio::test]
async fn chunked_body_under_the_cap_is_read_whole() {
    let origin = Origin::start().await;
    origin.serve_fixture("/f.xml", "cdata-entities.xml");
    origin.set("/f.xml", Behavior::Chunked);
    let cache = FeedCache::new(
        vec![source("s", vec![origin.url("/f.xml")])],
        options(MIN, 2 * SEC),
    );
    assert_eq!(titles(&cache.snapshot("s").await.unwrap()[0]).len(), 3);
}

#[tokio::test]
async fn http_errors_name_the_url() {
    let origin = Origin::start().await;
    // A port that was just free: connection refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone.xml", listener.local_addr().unwrap())
    };
    let cache = FeedCache::new(
        vec![source(
            "s",
            vec![origin.url("/missing.xml"), closed.clone()],
        )],
        options(MIN, 2 * SEC),
    );
    let snaps = cache.snapshot("s").await.unwrap();
    let not_found = snaps[0].error.as_deref().unwrap();
    assert!(
        not_found.contains("404") && not_found.contains("/missing.xml"),
        "{not_found}"
    );
    let refused = snaps[1].error.as_deref().unwrap();
    assert!(refused.contains(&closed), "{refused}");
}

#[tokio::test]
async fn local_files_are_read_and_missing_ones_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.xml");
    std::fs::write(&path, fixture("rss1-rdf.xml")).unwrap();
    let missing = dir.path().join("nope.xml");
    let cache = FeedCache::new(
        vec![Source {
            id: "f".into(),
            name: "Files".into(),
            feeds: vec![
                FeedLocation::File(path.clone()),
                FeedLocation::File(missing.clone()),
            ],
        }],
        options(MIN, 2 * SEC),
    );
    let snaps = cache.snapshot("f").await.unwrap();
    assert_eq!(titles(&snaps[0]), ["RDF item A", "RDF item B"]);
    assert_eq!(snaps[0].location, path.display().to_string());
    let error = snaps[1].error.as_deref().unwrap();
    assert!(error.contains("nope.xml"), "{error}");
}

#[tokio::test]
async fn embedded_set_warms_up_and_serves_without_refetching() {
    let cache = FeedCache::new(
        search_server::feeds::sources::embedded(),
        CacheOptions::default(),
    );
    cache.refresh_all().await;
    let mut total = 0;
    for source in ["cnn", "bbc", "nyt"] {
        for snap in cache.snapshot(source).await.unwrap() {
            assert!(snap.location.starts_with("embedded:"), "{}", snap.location);
            total += titles(&snap).len();
        }
    }
    assert_eq!(total, 600);
    assert!(cache.stats().iter().all(|s| s.fetches == 1));
}
