//! Matching one source's feed snapshots against a compiled term: the CPU hot path of a search.

use std::sync::Arc;

use memchr::memmem::Finder;

use crate::feeds::FeedSnapshot;

/// Positions (snapshot index, item index) of the items whose folded text contains the term,
/// in feed order then item order. Snapshots without a good copy contribute nothing.
pub fn match_snapshots(finder: &Finder<'_>, snapshots: &[Arc<FeedSnapshot>]) -> Vec<(u32, u32)> {
    let mut hits = Vec::new();
    for (f, snap) in snapshots.iter().enumerate() {
        let Some(feed) = snap.feed.as_deref() else {
            continue;
        };
        for (i, item) in feed.items.iter().enumerate() {
            if finder.find(item.folded.as_bytes()).is_some() {
                // Feeds are capped far below u32::MAX items by the fetch body size limit.
                hits.push((f as u32, i as u32));
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::{Feed, Item};

    fn snapshot(items: Vec<Item>) -> Arc<FeedSnapshot> {
        Arc::new(FeedSnapshot {
            location: "t".into(),
            feed: Some(Arc::new(Feed {
                title: "t".into(),
                items,
            })),
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
}
