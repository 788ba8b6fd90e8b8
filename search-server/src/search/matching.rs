//! Matching one source's feed snapshots against a term: the CPU hot path of a search, in
//! two versions. The fast one ([`match_snapshots`]) finds a precompiled term in text that was
//! lowercased once at parse time; the naive one ([`naive_match`], chosen by
//! `search-server --slow-search`) redoes the lowercasing per request and per item, as a first
//! implementation would, so that the profiler's compare walkthrough has a real regression to
//! find by name. Both return the same hits.

use std::sync::Arc;

use memchr::memmem::Finder;

use crate::feeds::{FeedSnapshot, Item};

/// Which matching a server uses for every search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Matching {
    /// [`match_snapshots`]: precompiled finder over the parse-time folded text.
    #[default]
    Fast,
    /// [`naive_match`]: lowercase again per item per request, then `str::contains`.
    Naive,
}

/// Positions (snapshot index, item index) of the items whose folded text contains the term,
/// in feed order then item order. Snapshots without a good copy contribute nothing. Items
/// come from the feed's trigram index when it has one, else every item is tried; either way
/// each hit is confirmed with the precompiled finder.
// Kept out of line so that profiles name it beside `naive_match`.
#[inline(never)]
pub fn match_snapshots(finder: &Finder<'_>, snapshots: &[Arc<FeedSnapshot>]) -> Vec<(u32, u32)> {
    let mut hits = Vec::new();
    for (f, snap) in snapshots.iter().enumerate() {
        let Some(feed) = snap.feed.as_deref() else {
            continue;
        };
        // Feeds are capped far below u32::MAX items by the fetch body size limit.
        let f = f as u32;
        match feed.index().and_then(|x| x.candidates(finder.needle())) {
            Some(candidates) => hits.extend(
                candidates
                    .into_iter()
                    .filter(|&i| {
                        finder
                            .find(feed.items[i as usize].folded.as_bytes())
                            .is_some()
                    })
                    .map(|i| (f, i)),
            ),
            None => scan_items(finder, f, &feed.items, &mut hits),
        }
    }
    hits
}

/// Tries every item of one feed: for terms too short for the index, and unindexed feeds.
fn scan_items(finder: &Finder<'_>, feed: u32, items: &[Item], hits: &mut Vec<(u32, u32)>) {
    for (i, item) in items.iter().enumerate() {
        if finder.find(item.folded.as_bytes()).is_some() {
            hits.push((feed, i as u32));
        }
    }
}

/// The deliberately slow matching of `--slow-search`: the same hits as [`match_snapshots`]
/// for the same `folded_term` (the query's lowercased term), found the naive way. Every call
/// lowercases every item's title and description again (two allocations per item) and
/// searches them with `str::contains`. The folded term never holds a newline, so matching
/// title and description apart equals matching their newline-joined folded text.
#[inline(never)]
pub fn naive_match(folded_term: &str, snapshots: &[Arc<FeedSnapshot>]) -> Vec<(u32, u32)> {
    let mut hits = Vec::new();
    for (f, snap) in snapshots.iter().enumerate() {
        let Some(feed) = snap.feed.as_deref() else {
            continue;
        };
        for (i, item) in feed.items.iter().enumerate() {
            let title = item.title.to_lowercase();
            let description = item.description.to_lowercase();
            if title.contains(folded_term) || description.contains(folded_term) {
                hits.push((f as u32, i as u32));
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::Feed;

    fn snapshot(items: Vec<Item>) -> Arc<FeedSnapshot> {
        Arc::new(FeedSnapshot {
            location: "t".into(),
            feed: Some(Arc::new(Feed::new("t".into(), items))),
            error: None,
        })
    }

    fn find(term: &str, items: Vec<Item>) -> Vec<(u32, u32)> {
        let folded = term.to_lowercase();
        match_snapshots(&Finder::new(folded.as_bytes()), &[snapshot(items)])
    }

    #[test]
    fn matches_title_or_description_case_insensitively() {
        let items = vec![
            Item::new("Nothing here".into(), None, "a STORM is coming".into()),
            Item::new("Storm watch".into(), None, String::new()),
            Item::new("Calm".into(), None, "sunny".into()),
        ];
        assert_eq!(find("StOrM", items), vec![(0, 0), (0, 1)]);
    }

    #[test]
    fn unicode_case_folding() {
        let items = vec![
            Item::new("ÉLECTIONS À PARIS".into(), None, String::new()),
            Item::new("Straße gesperrt".into(), None, String::new()),
            Item::new("ΑΘΗΝΑ".into(), None, String::new()),
        ];
        assert_eq!(find("élections", items.clone()), vec![(0, 0)]);
        assert_eq!(
            find("STRASSE", items.clone()),
            vec![],
            "lowercasing is not full case folding: ß stays ß"
        );
        assert_eq!(find("STRAẞE", items.clone()), vec![(0, 1)]);
        assert_eq!(find("αθηνα", items), vec![(0, 2)]);
    }

    #[test]
    fn term_does_not_match_across_title_and_description() {
        let items = vec![Item::new("White".into(), None, "House".into())];
        assert_eq!(find("white house", items), vec![]);
    }

    #[test]
    fn skips_feeds_without_a_good_copy() {
        let empty = Arc::new(FeedSnapshot {
            location: "x".into(),
            feed: None,
            error: Some("e".into()),
        });
        let good = snapshot(vec![Item::new("house".into(), None, String::new())]);
        let finder = Finder::new(b"house");
        assert_eq!(match_snapshots(&finder, &[empty, good]), vec![(1, 0)]);
    }

    #[test]
    fn a_feed_changed_after_indexing_is_scanned() {
        let mut feed = Feed::new("t".into(), vec![]);
        feed.items
            .push(Item::new("Storm watch".into(), None, String::new()));
        assert!(
            feed.index().is_none(),
            "the index no longer covers the items"
        );
        let snap = Arc::new(FeedSnapshot {
            location: "t".into(),
            feed: Some(Arc::new(feed)),
            error: None,
        });
        assert_eq!(
            match_snapshots(&Finder::new(b"storm"), &[snap]),
            vec![(0, 0)]
        );
    }

    #[test]
    fn naive_and_fast_agree_on_the_embedded_set() {
        let snaps: Vec<Arc<FeedSnapshot>> = crate::feeds::sources::embedded()
            .iter()
            .flat_map(|s| s.feeds.iter())
            .map(|loc| {
                let crate::feeds::FeedLocation::Embedded { name, bytes } = loc else {
                    panic!("the embedded set holds only embedded feeds");
                };
                let feed = crate::feeds::parse(bytes).expect("embedded feeds parse");
                Arc::new(FeedSnapshot {
                    location: (*name).into(),
                    feed: Some(Arc::new(feed)),
                    error: None,
                })
            })
            .collect();
        let terms = [
            "house",
            "HOUSE",
            "market",
            "storm",
            "white house",
            "é",
            "the",
            "z",
            "no-such-word",
            "ouse",
            "e m",
            "’s",
            "s, ",
            "officials said",
            "h",
            "in",
        ];
        for term in terms {
            let folded = crate::search::Query::new(term, vec![], false)
                .unwrap()
                .unwrap()
                .folded()
                .to_owned();
            let fast = match_snapshots(&Finder::new(folded.as_bytes()), &snaps);
            let naive = naive_match(&folded, &snaps);
            assert_eq!(fast, naive, "term {term:?}");
            if term.eq_ignore_ascii_case("house") {
                assert!(fast.len() >= 10, "house hits {} items", fast.len());
            }
        }
    }
}
