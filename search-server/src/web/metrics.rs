//! `/metrics` in the Prometheus text format: requests by route and status, the search
//! latency histogram, and per-feed counters read from the feed cache at scrape time.
//!
//! The request counters are fixed arrays of atomics indexed by route and status code, so the
//! hot path does one relaxed add per request: no map, no lock, no label hashing.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::feeds::FeedStats;

/// The routes counted separately. Unknown paths share `Other`, so a scan cannot grow labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Root,
    SearchPage,
    SearchPost,
    Api,
    Metrics,
    Healthz,
    Static,
    Other,
}

impl Route {
    const ALL: [Route; 8] = [
        Route::Root,
        Route::SearchPage,
        Route::SearchPost,
        Route::Api,
        Route::Metrics,
        Route::Healthz,
        Route::Static,
        Route::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::Root => "GET /",
            Route::SearchPage => "GET /search",
            Route::SearchPost => "POST /search",
            Route::Api => "GET /api/search",
            Route::Metrics => "GET /metrics",
            Route::Healthz => "GET /healthz",
            Route::Static => "GET /static",
            Route::Other => "other",
        }
    }
}

const FIRST_STATUS: usize = 100;
const STATUS_SLOTS: usize = 500;

/// Upper bounds of the search latency buckets, in seconds.
const LATENCY_BOUNDS: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0, 2.5, 10.0,
];

#[derive(Debug)]
pub struct Metrics {
    requests: Vec<[AtomicU64; STATUS_SLOTS]>,
    /// Per bucket (not cumulative); the last slot is +Inf.
    latency_buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_sum_nanos: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Route::ALL
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, route: Route, status: StatusCode) {
        let slot = usize::from(status.as_u16())
            .saturating_sub(FIRST_STATUS)
            .min(STATUS_SLOTS - 1);
        self.requests[route as usize][slot].fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_search(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Requests counted so far for one route and status (for tests and the bench script).
    pub fn requests(&self, route: Route, status: StatusCode) -> u64 {
        let slot = usize::from(status.as_u16())
            .saturating_sub(FIRST_STATUS)
            .min(STATUS_SLOTS - 1);
        self.requests[route as usize][slot].load(Ordering::Relaxed)
    }

    pub fn render(&self, feeds: &[FeedStats]) -> String {
        let mut out = String::with_capacity(4096 + feeds.len() * 600);
        out.push_str(
            "# HELP search_http_requests_total HTTP requests served, by route and status.\n",
        );
        out.push_str("# TYPE search_http_requests_total counter\n");
        for route in Route::ALL {
            for (slot, count) in self.requests[route as usize].iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let status = slot + FIRST_STATUS;
                    let _ = writeln!(
                        out,
                        "search_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                        route.label()
                    );
                }
            }
        }

        out.push_str("# HELP search_duration_seconds Time to search the feeds for one query.\n");
        out.push_str("# TYPE search_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bucket) in self.latency_buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match LATENCY_BOUNDS.get(i) {
                Some(bound) => {
                    let _ = writeln!(
                        out,
                        "search_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "search_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
                    );
                }
            }
        }
        let sum = self.latency_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "search_duration_seconds_sum {sum}");
        let _ = writeln!(out, "search_duration_seconds_count {cumulative}");

        feed_family(
            &mut out,
            feeds,
            "search_feed_fetches_total",
            "counter",
            "Fetches of each feed (including failed ones).",
            |f| Some(f.fetches as f64),
        );
        feed_family(
            &mut out,
            feeds,
            "search_feed_failures_total",
            "counter",
            "Failed fetches or parses of each feed.",
            |f| Some(f.failures as f64),
        );
        feed_family(
            &mut out,
            feeds,
            "search_feed_last_success_timestamp_seconds",
            "gauge",
            "Unix time of each feed's last successful fetch and parse.",
            |f| {
                f.last_success
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64())
            },
        );
        feed_family(
            &mut out,
            feeds,
            "search_feed_items",
            "gauge",
            "Items in each feed's cached copy.",
            |f| Some(f.items as f64),
        );
        out
    }
}

fn feed_family(
    out: &mut String,
    feeds: &[FeedStats],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&FeedStats) -> Option<f64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for f in feeds {
        if let Some(v) = value(f) {
            let _ = writeln!(
                out,
                "{name}{{source=\"{}\",feed=\"{}\"}} {v}",
                escape_label(&f.source),
                escape_label(&f.location)
            );
        }
    }
}

/// Label values escape backslash, double quote and newline (the text format's rule).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_and_latency() {
        let m = Metrics::default();
        m.count_request(Route::SearchPost, StatusCode::OK);
        m.count_request(Route::SearchPost, StatusCode::OK);
        m.count_request(Route::Api, StatusCode::BAD_REQUEST);
        m.observe_search(Duration::from_micros(30));
        m.observe_search(Duration::from_secs(30));
        let feeds = vec![FeedStats {
            location: "http://x/\"a\"\n".into(),
            source: "cnn".into(),
            fetches: 3,
            failures: 1,
            last_success: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            items: 42,
        }];
        let text = m.render(&feeds);
        assert!(
            text.contains("search_http_requests_total{route=\"POST /search\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "search_http_requests_total{route=\"GET /api/search\",status=\"400\"} 1\n"
            )
        );
        assert!(
            text.contains("search_duration_seconds_bucket{le=\"0.000025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("search_duration_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("search_duration_seconds_bucket{le=\"10\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("search_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("search_duration_seconds_count 2\n"));
        assert!(
            text.contains(
                "search_feed_fetches_total{source=\"cnn\",feed=\"http://x/\\\"a\\\"\\n\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "search_feed_failures_total{source=\"cnn\",feed=\"http://x/\\\"a\\\"\\n\"} 1\n"
        ));
        assert!(text.contains("search_feed_last_success_timestamp_seconds{source=\"cnn\",feed=\"http://x/\\\"a\\\"\\n\"} 1700000000\n"));
        assert!(
            text.contains("search_feed_items{source=\"cnn\",feed=\"http://x/\\\"a\\\"\\n\"} 42\n")
        );
    }
}
