//! Feeds: where they come from (`sources`: embedded default set, live URLs, a TOML file),
//! how they are fetched (`fetch`, reqwest), parsed (`parse`, quick-xml, pure) and cached
//! (`cache`: TTL, single flight per URL, stale copy kept when a refresh fails).
//!
//! The types below are the contract between this module and `search`/`web`.

pub mod cache;
pub mod fetch;
pub mod parse;
pub mod sources;

pub use cache::{CacheOptions, FeedCache};
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
}

impl Item {
    pub fn new(title: String, link: Option<String>, description: String) -> Self {
        let mut folded = String::with_capacity(title.len() + description.len() + 1);
        folded.push_str(&title.to_lowercase());
        folded.push('\n');
        folded.push_str(&description.to_lowercase());
        Self {
            title,
            link,
            description,
            folded,
        }
    }
}

/// A parsed feed document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Feed {
    pub title: String,
    pub items: Vec<Item>,
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
