//! Feeds: where they come from (`sources`: embedded default set, live URLs, a TOML file),
//! how they are fetched (`fetch`, reqwest), parsed (`parse`, quick-xml, pure) and cached
//! (`cache`: TTL, single flight per URL, stale copy kept when a refresh fails) and indexed
//! for search (`index`: trigrams, built once per parse).
//!
//! The types below are the contract between this module and `search`/`web`.

pub mod cache;
pub mod fetch;
pub mod index;
pub mod parse;
pub mod sources;

pub use cache::{CacheOptions, FeedCache};
pub use index::TrigramIndex;
pub use parse::{ParseError, parse};

use std::sync::Arc;
use std::time::SystemTime;

/// One news item, as shown and searched. Everything here came from a feed: untrusted text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub title: String,
    /// Only `http`/`https` links survive parsing; anything else becomes `None`.
    pub link: Option<String>,
    /// Plain text: markup inside the feed's description removed, entities decoded,
    /// whitespace collapsed.
    pub description: String,
    /// `title` and `description` lowercased (Unicode-aware), joined by '\n': what search
    /// matches against, computed once when the feed is parsed, never per request.
    pub folded: String,
    /// `title` and `description` HTML-escaped once, when the item is made: what the page
    /// shows, so a request renders hits without escaping them again.
    pub title_html: EscapedHtml,
    pub description_html: EscapedHtml,
    /// `link` escaped for an attribute value, under the same rule.
    pub link_html: Option<EscapedHtml>,
}

impl Item {
    pub fn new(title: String, link: Option<String>, description: String) -> Self {
        let mut folded = String::with_capacity(title.len() + description.len() + 1);
        folded.push_str(&title.to_lowercase());
        folded.push('\n');
        folded.push_str(&description.to_lowercase());
        Self {
            title_html: EscapedHtml::escape(&title),
            description_html: EscapedHtml::escape(&description),
            link_html: link.as_deref().map(EscapedHtml::escape),
            title,
            link,
            description,
            folded,
        }
    }
}

/// Untrusted text escaped for HTML by askama's own escaper. The only way to make one is
/// [`EscapedHtml::escape`], so templates may print it as it is (it is marked
/// [`HtmlSafe`](askama::filters::HtmlSafe)) and still never emit markup from a feed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EscapedHtml(Box<str>);

impl EscapedHtml {
    pub fn escape(text: &str) -> Self {
        let escaped = askama::filters::escape(text, askama::filters::Html)
            .expect("escaping is infallible")
            .to_string();
        Self(escaped.into_boxed_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EscapedHtml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl askama::filters::HtmlSafe for EscapedHtml {}

/// A parsed feed document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Feed {
    pub title: String,
    pub items: Vec<Item>,
    /// Built by [`Feed::new`] and by the parser once the items are complete.
    index: TrigramIndex,
}

impl Feed {
    pub fn new(title: String, items: Vec<Item>) -> Self {
        let index = TrigramIndex::build(&items);
        Self {
            title,
            items,
            index,
        }
    }

    /// The trigram index of the items, unless items were added or removed after it was
    /// built (then a search scans every item instead).
    pub fn index(&self) -> Option<&TrigramIndex> {
        (self.index.len() == self.items.len()).then_some(&self.index)
    }

    /// (Re)builds the index after the items were filled in place.
    pub(crate) fn build_index(&mut self) {
        self.index = TrigramIndex::build(&self.items);
    }
}

/// A news source (CNN, BBC, NYT, or one from a feeds file) and its feeds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Lowercase key used in forms and the API: "cnn", "bbc", "nyt".
    pub id: String,
    /// Display name: "CNN".
    pub name: String,
    pub feeds: Vec<FeedLocation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedLocation {
    /// A document compiled into the binary (the default, offline feed set).
    Embedded {
        name: &'static str,
        bytes: &'static [u8],
    },
    /// An http(s) URL.
    Url(String),
    /// A local file.
    File(std::path::PathBuf),
}

/// The state of one feed as the cache holds it at the moment of a search.
#[derive(Debug, Clone)]
pub struct FeedSnapshot {
    /// Human-readable location (URL, path, or `embedded:cnn-top`).
    pub location: String,
    /// The last good copy, if there ever was one.
    pub feed: Option<Arc<Feed>>,
    /// Why the last fetch or parse failed, if it did (the stale copy above is still served).
    pub error: Option<String>,
}

/// Per-feed counters for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct FeedStats {
    pub location: String,
    pub source: String,
    pub fetches: u64,
    pub failures: u64,
    pub last_success: Option<SystemTime>,
    pub items: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_carry_their_text_escaped_once() {
        let item = Item::new(
            "<script>x</script> & \"q\"".into(),
            Some("https://x.example/?a=1&b=\"2\"".into()),
            "<img src=x onerror='y'>".into(),
        );
        assert_eq!(
            item.title_html.as_str(),
            "&#60;script&#62;x&#60;/script&#62; &#38; &#34;q&#34;"
        );
        assert_eq!(
            item.description_html.to_string(),
            "&#60;img src=x onerror=&#39;y&#39;&#62;"
        );
        assert_eq!(
            item.link_html.unwrap().as_str(),
            "https://x.example/?a=1&#38;b=&#34;2&#34;"
        );
    }
}
