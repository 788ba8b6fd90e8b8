//! A feed's trigram index: for every three-byte sequence in its items' folded text, the items
//! that contain it. Built once when the feed is parsed, it lets a search visit only the items
//! that hold every trigram of the term, and confirm each with a substring search, instead of
//! scanning the whole feed on every request. Byte trigrams of UTF-8 text work for any term:
//! an item containing the term contains each of the term's trigrams.

use super::Item;

/// Sorted trigram keys, each with its posting list (ascending item indexes) in one array.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrigramIndex {
    /// Three bytes packed into the low 24 bits, ascending.
    keys: Vec<u32>,
    /// `keys[by_first[b]..by_first[b + 1]]` are the keys whose first byte is `b`: a lookup
    /// binary-searches a few hundred keys instead of all of them (fewer cache misses under
    /// load, when the kernel's socket copies have evicted the index).
    by_first: Vec<u32>,
    /// `postings[starts[k]..starts[k + 1]]` lists the items holding `keys[k]`.
    starts: Vec<u32>,
    postings: Vec<u32>,
    /// How many items the index was built over.
    items: usize,
}

fn key(w: &[u8]) -> u32 {
    (u32::from(w[0]) << 16) | (u32::from(w[1]) << 8) | u32::from(w[2])
}

impl TrigramIndex {
    pub fn build(items: &[Item]) -> Self {
        // (key << 32 | item) pairs: one sort groups them by key, items ascending within.
        let mut pairs: Vec<u64> = Vec::with_capacity(items.iter().map(|i| i.folded.len()).sum());
        for (i, item) in items.iter().enumerate() {
            // Feeds are capped far below u32::MAX items by the fetch body size limit.
            let i = i as u64;
            pairs.extend(
                item.folded
                    .as_bytes()
                    .windows(3)
                    .map(|w| (u64::from(key(w)) << 32) | i),
            );
        }
        pairs.sort_unstable();
        pairs.dedup();
        let mut keys = Vec::new();
        let mut starts = Vec::new();
        let mut postings = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let k = (pair >> 32) as u32;
            if keys.last() != Some(&k) {
                keys.push(k);
                starts.push(postings.len() as u32);
            }
            postings.push(pair as u32);
        }
        starts.push(postings.len() as u32);
        let by_first = (0..=256u32)
            .map(|b| keys.partition_point(|&k| k >> 16 < b) as u32)
            .collect();
        keys.shrink_to_fit();
        starts.shrink_to_fit();
        Self {
            keys,
            by_first,
            starts,
            postings,
            items: items.len(),
        }
    }

    /// How many items the index covers.
    pub fn len(&self) -> usize {
        self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    fn posting(&self, k: u32) -> &[u32] {
        let first = (k >> 16) as usize;
        // An index built over no items has no table at all.
        let (Some(&lo), Some(&hi)) = (self.by_first.get(first), self.by_first.get(first + 1))
        else {
            return &[];
        };
        match self.keys[lo as usize..hi as usize].binary_search(&k) {
            Ok(at) => {
                let at = lo as usize + at;
                &self.postings[self.starts[at] as usize..self.starts[at + 1] as usize]
            }
            Err(_) => &[],
        }
    }

    /// The items (ascending) that hold every trigram of `term`: a superset of the items that
    /// contain it, to be confirmed one by one. `None` when the term is shorter than three
    /// bytes and has no trigram to look up: then every item is a candidate.
    pub fn candidates(&self, term: &[u8]) -> Option<Vec<u32>> {
        if term.len() < 3 {
            return None;
        }
        let mut lists: Vec<&[u32]> = term.windows(3).map(|w| self.posting(key(w))).collect();
        // Rarest first: the candidate set starts as small as it can be and only shrinks.
        lists.sort_unstable_by_key(|l| l.len());
        lists.dedup();
        let (first, rest) = lists
            .split_first()
            .expect("a term of 3+ bytes has a trigram");
        let mut candidates = first.to_vec();
        for list in rest {
            if candidates.is_empty() {
                break;
            }
            candidates.retain(|c| list.binary_search(c).is_ok());
        }
        Some(candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(texts: &[&str]) -> Vec<Item> {
        texts
            .iter()
            .map(|t| Item::new((*t).into(), None, String::new()))
            .collect()
    }

    #[test]
    fn candidates_hold_every_trigram_of_the_term() {
        let items = items(&["White House", "a shoe", "house", "the use of ho", "Épée"]);
        let index = TrigramIndex::build(&items);
        assert_eq!(index.len(), 5);
        // "the use of ho" has "hou"? no: it has "use" and "ho" but not "hou" or "ous".
        assert_eq!(index.candidates(b"house"), Some(vec![0, 2]));
        assert_eq!(index.candidates(b"use"), Some(vec![0, 2, 3]));
        assert_eq!(index.candidates("épée".as_bytes()), Some(vec![4]));
        assert_eq!(index.candidates(b"zzz"), Some(vec![]));
        assert_eq!(index.candidates(b"ho"), None, "too short to look up");
    }

    #[test]
    fn candidates_are_a_superset_to_confirm() {
        // Every trigram of "abcabd" occurs in item 0, but not the term itself.
        let items = items(&["abcab xbd abd cabd", "abcabd"]);
        let index = TrigramIndex::build(&items);
        assert_eq!(index.candidates(b"abcabd"), Some(vec![0, 1]));
    }

    #[test]
    fn empty_feed() {
        let index = TrigramIndex::build(&[]);
        assert!(index.is_empty());
        assert_eq!(index.candidates(b"house"), Some(vec![]));
    }
}
