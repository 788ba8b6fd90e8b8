//! The feed cache: one entry per feed location, fresh for a TTL, refreshed by at most one
//! fetch at a time per location (concurrent callers share it), the last good copy kept and
//! served when a refresh fails, and no caller waiting on an origin past the fetch timeout.
//!
//! The warm path of [`FeedCache::snapshot`] is the server's hot path: it reads a clock, an
//! atomic and an `Arc` per feed, and allocates one small `Vec`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::fetch::Fetcher;
use super::parse::{self, Limits};
use super::{FeedLocation, FeedSnapshot, FeedStats, Source};

/// How feeds are fetched and kept.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// How long a fetched feed is served before it is fetched again.
    pub ttl: Duration,
    /// Limit on establishing a connection to an origin.
    pub connect_timeout: Duration,
    /// Limit on a whole fetch (connect, headers, body); also the longest any caller waits.
    pub total_timeout: Duration,
    /// Largest feed body accepted; larger ones fail that feed (`--max-feed-bytes`).
    pub max_body_bytes: usize,
    pub user_agent: String,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(15 * 60),
            connect_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(10),
            max_body_bytes: 8 * 1024 * 1024,
            user_agent: concat!(
                "search-server/",
                env!("CARGO_PKG_VERSION"),
                " (RSS news search)"
            )
            .to_owned(),
        }
    }
}

/// Longest pause before retrying a feed whose refresh failed (shorter when the TTL is):
/// without one, every request would wait on a dead origin.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Feeds of all sources, shared by every request.
#[derive(Debug)]
pub struct FeedCache {
    sources: Vec<Source>,
    /// For each source (same order as `sources`), its entries in feed order.
    by_source: Vec<Vec<Arc<Entry>>>,
    /// Every distinct location once: sources that share a URL share its entry.
    entries: Vec<Arc<Entry>>,
    fetcher: Arc<Fetcher>,
    opts: CacheOptions,
    clock: Clock,
}

/// Monotonic nanoseconds since the cache was made, so deadlines fit in an `AtomicU64`. On
/// tokio's clock, which is std's outside tests, so that TTL tests can pause and advance it.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn after(&self, delay: Duration) -> u64 {
        self.now()
            .saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX))
    }
}

#[derive(Debug)]
struct Entry {
    location: FeedLocation,
    label: String,
    source: String,
    current: RwLock<Arc<FeedSnapshot>>,
    /// Clock time until which `current` is served without a refresh; 0 = never fetched.
    fresh_until: AtomicU64,
    /// The refresh in flight, if any: callers clone the receiver and wait for `true`.
    inflight: Mutex<Option<watch::Receiver<bool>>>,
    fetches: AtomicU64,
    failures: AtomicU64,
    last_success: Mutex<Option<SystemTime>>,
    items: AtomicUsize,
}

impl Entry {
    fn current(&self) -> Arc<FeedSnapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn set_current(&self, snapshot: FeedSnapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }
}

impl FeedCache {
    pub fn new(sources: Vec<Source>, opts: CacheOptions) -> Arc<FeedCache> {
        let mut entries: Vec<Arc<Entry>> = Vec::new();
        let by_source = sources
            .iter()
            .map(|source| {
                source
                    .feeds
                    .iter()
                    .map(|location| {
                        if let Some(e) = entries.iter().find(|e| e.location == *location) {
                            return Arc::clone(e);
                        }
                        let label = location.label();
                        let entry = Arc::new(Entry {
                            location: location.clone(),
                            label: label.clone(),
                            source: source.id.clone(),
                            current: RwLock::new(Arc::new(FeedSnapshot {
                                location: label,
                                feed: None,
                                error: None,
                            })),
                            fresh_until: AtomicU64::new(0),
                            inflight: Mutex::new(None),
                            fetches: AtomicU64::new(0),
                            failures: AtomicU64::new(0),
                            last_success: Mutex::new(None),
                            items: AtomicUsize::new(0),
                        });
                        entries.push(Arc::clone(&entry));
                        entry
                    })
                    .collect()
            })
            .collect();
        Arc::new(FeedCache {
            fetcher: Arc::new(Fetcher::new(&opts)),
            sources,
            by_source,
            entries,
            opts,
            clock: Clock(Instant::now()),
        })
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    pub fn options(&self) -> &CacheOptions {
        &self.opts
    }

    /// The feeds of source `source_id`, in order, or `None` for an unknown source. Expired
    /// feeds are refreshed first (one fetch per location however many callers ask), but this
    /// waits at most the fetch timeout: then a feed's last good copy is served, or, if it never
    /// had one, a snapshot with no feed and an error saying why.
    pub async fn snapshot(&self, source_id: &str) -> Option<Vec<Arc<FeedSnapshot>>> {
        let index = self.sources.iter().position(|s| s.id == source_id)?;
        let entries = &self.by_source[index];
        let now = self.clock.now();
        let mut waits: Vec<watch::Receiver<bool>> = Vec::new();
        for entry in entries {
            if entry.fresh_until.load(Ordering::Acquire) <= now
                && let Some(rx) = self.start_refresh(entry)
            {
                waits.push(rx);
            }
        }
        if !waits.is_empty() {
            self.wait(waits).await;
            return Some(entries.iter().map(|e| self.current_or_pending(e)).collect());
        }
        Some(entries.iter().map(|e| e.current()).collect())
    }

    /// Fetches every feed that is not fresh (all of them at startup) and waits for them, at
    /// most the fetch timeout.
    pub async fn refresh_all(&self) {
        let waits: Vec<_> = self
            .entries
            .iter()
            .filter_map(|e| self.start_refresh(e))
            .collect();
        self.wait(waits).await;
    }

    /// Counters for every distinct feed, in source and feed order.
    pub fn stats(&self) -> Vec<FeedStats> {
        self.entries
            .iter()
            .map(|e| FeedStats {
                location: e.label.clone(),
                source: e.source.clone(),
                fetches: e.fetches.load(Ordering::Relaxed),
                failures: e.failures.load(Ordering::Relaxed),
                last_success: *e.last_success.lock().unwrap_or_else(|p| p.into_inner()),
                items: e.items.load(Ordering::Relaxed),
            })
            .collect()
    }

    async fn wait(&self, waits: Vec<watch::Receiver<bool>>) {
        let deadline = Instant::now() + self.opts.total_timeout;
        for mut rx in waits {
            // Err: the deadline passed (the fetch goes on and lands later) or the refresh
            // task is gone; either way the caller gets what the entry holds now.
            let _ = tokio::time::timeout_at(deadline, rx.wait_for(|done| *done)).await;
        }
    }

    /// A feed that has never been fetched and whose first fetch is still running is
    /// reported with the reason it is missing.
    fn current_or_pending(&self, entry: &Entry) -> Arc<FeedSnapshot> {
        let current = entry.current();
        if current.feed.is_some() || current.error.is_some() {
            return current;
        }
        Arc::new(FeedSnapshot {
            location: entry.label.clone(),
            feed: None,
            error: Some(format!(
                "no answer from the origin within {:?}; still trying",
                self.opts.total_timeout
            )),
        })
    }

    /// Joins the refresh in flight for `entry`, or starts one if the entry is still stale.
    /// `None`: the entry became fresh meanwhile, nothing to wait for.
    fn start_refresh(&self, entry: &Arc<Entry>) -> Option<watch::Receiver<bool>> {
        let mut inflight = entry.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = inflight.as_ref() {
            return Some(rx.clone());
        }
        // A refresh stores its result before it clears `inflight`, so this re-check under the
        // lock cannot miss one that just finished.
        if entry.fresh_until.load(Ordering::Acquire) > self.clock.now() {
            return None;
        }
        let (tx, rx) = watch::channel(false);
        *inflight = Some(rx.clone());
        drop(inflight);
        let entry = Arc::clone(entry);
        let fetcher = Arc::clone(&self.fetcher);
        let (ttl, clock) = (self.opts.ttl, self.clock);
        // Spawned, not awaited in place: a caller that gives up (deadline, disconnect) must
        // not cancel the fetch that others share.
        tokio::spawn(async move {
            refresh(&entry, &fetcher, ttl, clock).await;
            *entry.inflight.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let _ = tx.send(true);
        });
        Some(rx)
    }
}

async fn refresh(entry: &Entry, fetcher: &Fetcher, ttl: Duration, clock: Clock) {
    entry.fetches.fetch_add(1, Ordering::Relaxed);
    let result = match fetcher.fetch(&entry.location).await {
        Ok(bytes) => {
            // Parsing a large feed takes a while: keep it off the request threads.
            tokio::task::spawn_blocking(move || parse::parse_with(&bytes, &Limits::default()))
                .await
                .unwrap_or_else(|join| {
                    Err(parse::ParseError::Xml {
                        position: 0,
                        message: join.to_string(),
                    })
                })
                .map_err(|e| format!("{}: cannot parse the feed: {e}", entry.label))
        }
        Err(e) => Err(e.to_string()),
    };
    let previous = entry.current();
    match result {
        Ok(parsed) => {
            if parsed.dropped_items > 0 || parsed.truncated_fields > 0 {
                tracing::info!(
                    feed = %entry.label,
                    dropped_items = parsed.dropped_items,
                    truncated_fields = parsed.truncated_fields,
                    "feed exceeded parse limits"
                );
            }
            tracing::debug!(feed = %entry.label, items = parsed.feed.items.len(), "feed refreshed");
            entry
                .items
                .store(parsed.feed.items.len(), Ordering::Relaxed);
            *entry.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(SystemTime::now());
            entry.set_current(FeedSnapshot {
                location: entry.label.clone(),
                feed: Some(Arc::new(parsed.feed)),
                error: None,
            });
            // Embedded documents cannot change: parse them once.
            let until = match entry.location {
                FeedLocation::Embedded { .. } => u64::MAX,
                _ => clock.after(ttl),
            };
            entry.fresh_until.store(until, Ordering::Release);
        }
        Err(error) => {
            entry.failures.fetch_add(1, Ordering::Relaxed);
            if previous.feed.is_some() {
                tracing::warn!(feed = %entry.label, %error, "feed refresh failed; serving the last good copy");
            } else {
                tracing::warn!(feed = %entry.label, %error, "feed unavailable");
            }
            entry.set_current(FeedSnapshot {
                location: entry.label.clone(),
                feed: previous.feed.clone(),
                error: Some(error),
            });
            entry
                .fresh_until
                .store(clock.after(ttl.min(RETRY_AFTER_FAILURE)), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::sources;

    #[tokio::test]
    async fn embedded_feeds_load_once_and_stay_fresh() {
        let cache = FeedCache::new(sources::embedded(), CacheOptions::default());
        cache.refresh_all().await;
        for source in ["cnn", "bbc", "nyt"] {
            let snaps = cache.snapshot(source).await.expect("known source");
            assert_eq!(snaps.len(), 4);
            for s in &snaps {
                assert!(s.error.is_none(), "{}: {:?}", s.location, s.error);
                let n = s.feed.as_ref().expect("parsed").items.len();
                assert!((25..=60).contains(&n), "{}: {n} items", s.location);
            }
        }
        assert!(
            cache
                .stats()
                .iter()
                .all(|s| s.fetches == 1 && s.failures == 0)
        );
        assert!(cache.snapshot("nope").await.is_none());
    }

    /// A feed that failed is retried after `RETRY_AFTER_FAILURE` (when the TTL is longer), not
    /// on every request and not only after the TTL.
    #[tokio::test(start_paused = true)]
    async fn failed_feed_is_retried_after_the_retry_pause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.xml");
        let cache = FeedCache::new(
            vec![Source {
                id: "f".into(),
                name: "F".into(),
                feeds: vec![FeedLocation::File(path.clone())],
            }],
            CacheOptions {
                ttl: Duration::from_secs(3600),
                ..CacheOptions::default()
            },
        );
        let fetches = || cache.stats()[0].fetches;
        let snaps = cache.snapshot("f").await.unwrap();
        assert!(snaps[0].error.as_deref().unwrap().contains("feed.xml"));
        std::fs::write(&path, include_bytes!("../../tests/fixtures/feeds/rss2.xml")).unwrap();

        tokio::time::advance(RETRY_AFTER_FAILURE - Duration::from_millis(1)).await;
        assert!(cache.snapshot("f").await.unwrap()[0].feed.is_none());
        assert_eq!(fetches(), 1, "retried before the pause was over");

        tokio::time::advance(Duration::from_millis(1)).await;
        let snaps = cache.snapshot("f").await.unwrap();
        assert!(snaps[0].error.is_none(), "{:?}", snaps[0].error);
        assert_eq!(snaps[0].feed.as_ref().unwrap().items.len(), 3);
        assert_eq!(fetches(), 2);
    }
}
