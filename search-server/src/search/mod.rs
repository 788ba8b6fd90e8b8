//! Search: the validated query, matching a term against cached feed items, merging the
//! sources in their fixed order, and the `first` option.
//!
//! Matching is a case-insensitive substring search: the term is lowercased once per query
//! and found with a precompiled `memchr::memmem::Finder` in each item's `folded` text, which
//! the feeds module lowercased when the feed was parsed. `--slow-search` swaps in
//! [`matching::naive_match`] instead (see [`Matching`]).

pub mod matching;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::feeds::{FeedSnapshot, Item, Source};

pub use matching::{Matching, match_snapshots, naive_match};

/// Longest accepted term, in characters (not bytes).
pub const MAX_TERM_CHARS: usize = 256;

/// Why a term cannot be searched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "the search term is {chars} characters long; the limit is {MAX_TERM_CHARS}: shorten it"
    )]
    TermTooLong { chars: usize },
    #[error("unknown source {0:?}: pick from {1}")]
    UnknownSource(String, String),
}

/// A term ready to search: trimmed, whitespace runs collapsed to one space (feed text is
/// collapsed the same way, and a newline must not match across title and description),
/// and lowercased.
#[derive(Debug, Clone)]
pub struct Query {
    term: String,
    folded: String,
    /// Selected source ids; results still come in the configured source order.
    sources: Vec<String>,
    first: bool,
}

impl Query {
    /// `Ok(None)` when the term is empty: the page is shown without a search.
    pub fn new(term: &str, sources: Vec<String>, first: bool) -> Result<Option<Self>, QueryError> {
        let chars = term.chars().count();
        if chars > MAX_TERM_CHARS {
            return Err(QueryError::TermTooLong { chars });
        }
        let mut normal = String::with_capacity(term.len());
        for word in term.split_whitespace() {
            if !normal.is_empty() {
                normal.push(' ');
            }
            normal.push_str(word);
        }
        if normal.is_empty() {
            return Ok(None);
        }
        let folded = normal.to_lowercase();
        Ok(Some(Self {
            term: normal,
            folded,
            sources,
            first,
        }))
    }

    /// The term as searched (trimmed and collapsed, original case).
    pub fn term(&self) -> &str {
        &self.term
    }

    pub fn folded(&self) -> &str {
        &self.folded
    }

    /// The selected source ids, as given.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    pub fn first(&self) -> bool {
        self.first
    }

    pub fn selects(&self, source_id: &str) -> bool {
        self.sources.iter().any(|s| s == source_id)
    }
}

/// Where a search gets the current state of a source's feeds (the feed cache in the server;
/// fixed snapshots in tests). `None`: the source is not configured.
pub trait Snapshots: Sync {
    fn snapshot(
        &self,
        source_id: &str,
    ) -> impl Future<Output = Option<Vec<Arc<FeedSnapshot>>>> + Send;
}

/// A problem with one feed, shown on the page and in the API beside the hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedNote {
    pub location: String,
    pub error: String,
    /// True when an earlier good copy is still being searched.
    pub stale: bool,
}

/// A feed note with the source it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceNote {
    pub source_id: String,
    pub source_name: String,
    pub note: FeedNote,
}

/// One source's part of a result. Hits point into the snapshots, so a result holds the feed
/// data alive without copying any item.
#[derive(Debug, Clone)]
pub struct SourceResult {
    pub id: String,
    pub name: String,
    snapshots: Vec<Arc<FeedSnapshot>>,
    /// (snapshot index, item index), in feed order then item order.
    hits: Vec<(u32, u32)>,
    pub notes: Vec<FeedNote>,
    /// The source is not configured at all (a bad id reached the search).
    pub missing: bool,
}

impl SourceResult {
    pub fn hit_count(&self) -> usize {
        self.hits.len()
    }

    pub fn hits(&self) -> impl ExactSizeIterator<Item = &Item> + '_ {
        self.hits.iter().map(|&(feed, item)| {
            let feed = self.snapshots[feed as usize]
                .feed
                .as_ref()
                .expect("a hit only points into a snapshot that has a feed");
            &feed.items[item as usize]
        })
    }
}

/// The answer to one query.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Selected sources in the configured order; with `first`, only the first with hits
    /// (and none if no source has any).
    pub sources: Vec<SourceResult>,
    /// Notes of every selected source, also those that `first` dropped from `sources`.
    pub notes: Vec<SourceNote>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn hit_count(&self) -> usize {
        self.sources.iter().map(SourceResult::hit_count).sum()
    }
}

/// Runs `query` over the selected `sources` (in their configured order). The sources are
/// searched concurrently: one slow origin does not hold up the others' cache lookups.
/// `matching` picks the fast or the deliberately naive matcher; both find the same hits.
pub async fn run(
    snapshots: &impl Snapshots,
    sources: &[Source],
    query: &Query,
    matching: Matching,
) -> Outcome {
    let started = Instant::now();
    let finder = memchr::memmem::Finder::new(query.folded.as_bytes());
    let finder = &finder;
    let searches = sources
        .iter()
        .filter(|s| query.selects(&s.id))
        .map(|source| async move {
            let (snaps, missing) = match snapshots.snapshot(&source.id).await {
                Some(snaps) => (snaps, false),
                None => (Vec::new(), true),
            };
            let hits = match matching {
                Matching::Fast => match_snapshots(finder, &snaps),
                Matching::Naive => naive_match(&query.folded, &snaps),
            };
            let notes = notes_of(&snaps);
            SourceResult {
                id: source.id.clone(),
                name: source.name.clone(),
                snapshots: snaps,
                hits,
                notes,
                missing,
            }
        });
    let mut results = join_all(searches).await;
    let notes = results
        .iter()
        .flat_map(|r| {
            r.notes.iter().map(|n| SourceNote {
                source_id: r.id.clone(),
                source_name: r.name.clone(),
                note: n.clone(),
            })
        })
        .collect();
    if query.first {
        results = results
            .into_iter()
            .find(|r| r.hit_count() > 0)
            .into_iter()
            .collect();
    }
    Outcome {
        sources: results,
        notes,
        elapsed: started.elapsed(),
    }
}

fn notes_of(snaps: &[Arc<FeedSnapshot>]) -> Vec<FeedNote> {
    snaps
        .iter()
        .filter_map(|s| {
            s.error.as_ref().map(|error| FeedNote {
                location: s.location.clone(),
                error: error.clone(),
                stale: s.feed.is_some(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::{Feed, FeedLocation};
    use std::collections::HashMap;

    struct Fixed(HashMap<String, Vec<Arc<FeedSnapshot>>>);

    impl Snapshots for Fixed {
        async fn snapshot(&self, source_id: &str) -> Option<Vec<Arc<FeedSnapshot>>> {
            self.0.get(source_id).cloned()
        }
    }

    fn source(id: &str, name: &str) -> Source {
        Source {
            id: id.into(),
            name: name.into(),
            feeds: vec![FeedLocation::Url(format!("http://x/{id}"))],
        }
    }

    fn snap(location: &str, titles: &[&str], error: Option<&str>) -> Arc<FeedSnapshot> {
        let items = titles
            .iter()
            .map(|t| Item::new((*t).into(), None, String::new()))
            .collect();
        Arc::new(FeedSnapshot {
            location: location.into(),
            feed: (!titles.is_empty()).then(|| Arc::new(Feed::new(location.into(), items))),
            error: error.map(Into::into),
        })
    }

    fn world() -> (Fixed, Vec<Source>) {
        let mut m = HashMap::new();
        m.insert(
            "cnn".into(),
            vec![
                snap("cnn-1", &["White House talks", "Markets"], None),
                snap("cnn-2", &["Houseboat"], None),
            ],
        );
        m.insert(
            "bbc".into(),
            vec![snap("bbc-1", &["Storm", "Greenhouse gas"], None)],
        );
        m.insert(
            "nyt".into(),
            vec![
                snap("nyt-1", &["HOUSE prices"], Some("timed out")),
                snap("nyt-2", &[], Some("refused")),
            ],
        );
        (
            Fixed(m),
            vec![
                source("cnn", "CNN"),
                source("bbc", "BBC"),
                source("nyt", "NYT"),
            ],
        )
    }

    fn titles(o: &Outcome) -> Vec<(String, String)> {
        o.sources
            .iter()
            .flat_map(|s| s.hits().map(|i| (s.id.clone(), i.title.clone())))
            .collect()
    }

    fn all() -> Vec<String> {
        vec!["nyt".into(), "bbc".into(), "cnn".into()]
    }

    #[tokio::test]
    async fn results_in_source_then_feed_then_item_order() {
        let (snaps, sources) = world();
        let q = Query::new("house", all(), false).unwrap().unwrap();
        let o = run(&snaps, &sources, &q, Matching::Fast).await;
        let want = [
            ("cnn", "White House talks"),
            ("cnn", "Houseboat"),
            ("bbc", "Greenhouse gas"),
            ("nyt", "HOUSE prices"),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(titles(&o), want);
        assert_eq!(o.hit_count(), 4);
    }

    #[tokio::test]
    async fn notes_say_stale_or_unavailable() {
        let (snaps, sources) = world();
        let q = Query::new("house", all(), false).unwrap().unwrap();
        let o = run(&snaps, &sources, &q, Matching::Fast).await;
        let nyt = &o.sources[2];
        assert_eq!(nyt.notes.len(), 2);
        assert!(nyt.notes[0].stale, "nyt-1 still has its old copy");
        assert!(!nyt.notes[1].stale, "nyt-2 never had a copy");
        assert_eq!(nyt.notes[1].error, "refused");
    }

    #[tokio::test]
    async fn first_keeps_only_the_first_source_with_hits() {
        let (snaps, sources) = world();
        let q = Query::new("storm", all(), true).unwrap().unwrap();
        let o = run(&snaps, &sources, &q, Matching::Fast).await;
        assert_eq!(titles(&o), vec![("bbc".to_string(), "Storm".to_string())]);
        let q = Query::new("house", all(), true).unwrap().unwrap();
        let o = run(&snaps, &sources, &q, Matching::Fast).await;
        assert_eq!(o.sources.len(), 1);
        assert_eq!(o.sources[0].id, "cnn");
        assert_eq!(o.notes.len(), 2, "notes of dropped sources are kept");
        let q = Query::new("nothing-matches", all(), true).unwrap().unwrap();
        assert!(
            run(&snaps, &sources, &q, Matching::Fast)
                .await
                .sources
                .is_empty()
        );
    }

    #[tokio::test]
    async fn only_selected_sources_are_searched() {
        let (snaps, sources) = world();
        let q = Query::new("house", vec!["bbc".into()], false)
            .unwrap()
            .unwrap();
        let o = run(&snaps, &sources, &q, Matching::Fast).await;
        assert_eq!(
            titles(&o),
            vec![("bbc".to_string(), "Greenhouse gas".to_string())]
        );
    }

    #[test]
    fn term_is_trimmed_collapsed_and_bounded() {
        assert!(Query::new("  \t\n ", vec![], false).unwrap().is_none());
        let q = Query::new("  White\n  HOUSE ", vec![], false)
            .unwrap()
            .unwrap();
        assert_eq!(q.term(), "White HOUSE");
        assert_eq!(q.folded(), "white house");
        let ok = "é".repeat(MAX_TERM_CHARS);
        assert!(
            Query::new(&ok, vec![], false).unwrap().is_some(),
            "the limit counts characters, not bytes"
        );
        let long = "x".repeat(MAX_TERM_CHARS + 1);
        assert_eq!(
            Query::new(&long, vec![], false).unwrap_err(),
            QueryError::TermTooLong { chars: 257 }
        );
    }
}
