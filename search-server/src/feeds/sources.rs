//! Where the feeds come from: the embedded offline set (default), the public CNN/BBC/NYT
//! URLs (`--feeds live`), or a TOML file naming sources and their feed URLs or paths.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{FeedLocation, Source};

/// Why a feeds file was refused. Each message names the file and the offending value.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("cannot read feeds file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("feeds file {path} is not valid TOML for this format: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("feeds file {path} names no sources; add at least one [[source]] table")]
    NoSources { path: PathBuf },
    #[error(
        "feeds file {path}: source id {id:?} is invalid; use 1-32 lowercase letters, digits or '-'"
    )]
    BadId { path: PathBuf, id: String },
    #[error("feeds file {path}: source id {id:?} appears more than once; ids must be unique")]
    DuplicateId { path: PathBuf, id: String },
    #[error("feeds file {path}: source {id:?} has an empty name; give it a display name")]
    EmptyName { path: PathBuf, id: String },
    #[error("feeds file {path}: source {id:?} lists no feeds; add at least one URL or path")]
    NoFeeds { path: PathBuf, id: String },
    #[error("feeds file {path}: source {id:?}: feed {value:?} is not a usable URL: {reason}")]
    BadUrl {
        path: PathBuf,
        id: String,
        value: String,
        reason: String,
    },
    #[error(
        "feeds file {path}: source {id:?}: feed {value:?} does not exist as a local file (paths are relative to the feeds file)"
    )]
    MissingFile {
        path: PathBuf,
        id: String,
        value: PathBuf,
    },
}

macro_rules! embedded_feed {
    ($name:literal) => {
        FeedLocation::Embedded {
            name: $name,
            bytes: include_bytes!(concat!("../../feeds/", $name, ".xml")),
        }
    };
}

/// The default, offline feed set compiled into the binary: sample documents written for this
/// project by `search-server/feeds/generate.py`, four per source, about 600 items in all.
pub fn embedded() -> Vec<Source> {
    vec![
        source(
            "cnn",
            "CNN",
            vec![
                embedded_feed!("cnn-top"),
                embedded_feed!("cnn-world"),
                embedded_feed!("cnn-us"),
                embedded_feed!("cnn-politics"),
            ],
        ),
        source(
            "bbc",
            "BBC",
            vec![
                embedded_feed!("bbc-news"),
                embedded_feed!("bbc-world"),
                embedded_feed!("bbc-uk"),
                embedded_feed!("bbc-business"),
            ],
        ),
        source(
            "nyt",
            "NYT",
            vec![
                embedded_feed!("nyt-home"),
                embedded_feed!("nyt-world"),
                embedded_feed!("nyt-us"),
                embedded_feed!("nyt-business"),
            ],
        ),
    ]
}

/// The public CNN, BBC and NYT RSS feeds, four each, as the original service used.
pub fn live() -> Vec<Source> {
    let urls = |list: &[&str]| {
        list.iter()
            .map(|u| FeedLocation::Url((*u).to_owned()))
            .collect()
    };
    vec![
        source(
            "cnn",
            "CNN",
            urls(&[
                "http://rss.cnn.com/rss/cnn_topstories.rss",
                "http://rss.cnn.com/rss/cnn_world.rss",
                "http://rss.cnn.com/rss/cnn_us.rss",
                "http://rss.cnn.com/rss/cnn_allpolitics.rss",
            ]),
        ),
        source(
            "bbc",
            "BBC",
            urls(&[
                "https://feeds.bbci.co.uk/news/rss.xml",
                "https://feeds.bbci.co.uk/news/world/rss.xml",
                "https://feeds.bbci.co.uk/news/uk/rss.xml",
                "https://feeds.bbci.co.uk/news/business/rss.xml",
            ]),
        ),
        source(
            "nyt",
            "NYT",
            urls(&[
                "https://rss.nytimes.com/services/xml/rss/nyt/HomePage.xml",
                "https://rss.nytimes.com/services/xml/rss/nyt/World.xml",
                "https://rss.nytimes.com/services/xml/rss/nyt/US.xml",
                "https://rss.nytimes.com/services/xml/rss/nyt/Business.xml",
            ]),
        ),
    ]
}

fn source(id: &str, name: &str, feeds: Vec<FeedLocation>) -> Source {
    Source {
        id: id.to_owned(),
        name: name.to_owned(),
        feeds,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedsFile {
    #[serde(default)]
    source: Vec<SourceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceEntry {
    id: String,
    name: String,
    feeds: Vec<String>,
}

/// Reads sources from a TOML file:
///
/// ```toml
/// [[source]]
/// id = "local"                # lowercase key used in forms and the API
/// name = "Local news"         # display name
/// feeds = ["https://example.org/rss.xml", "feeds/extra.xml"]   # http(s) URLs or paths
/// ```
///
/// Relative paths are resolved against the file's directory. Every source is validated; the
/// first problem found is returned, naming the file and the value.
pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Vec<Source>, SourcesError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| SourcesError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_toml_str(&text, path)
}

/// Like [`from_toml_file`], with the text already read; `path` names the file in errors and
/// anchors relative feed paths.
pub fn from_toml_str(text: &str, path: &Path) -> Result<Vec<Source>, SourcesError> {
    let file: FeedsFile = toml::from_str(text).map_err(|e| SourcesError::Toml {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    if file.source.is_empty() {
        return Err(SourcesError::NoSources {
            path: path.to_owned(),
        });
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut seen = HashSet::new();
    let mut sources = Vec::with_capacity(file.source.len());
    for entry in file.source {
        let id = entry.id.trim().to_owned();
        let valid_id = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_id {
            return Err(SourcesError::BadId {
                path: path.to_owned(),
                id: entry.id,
            });
        }
        if !seen.insert(id.clone()) {
            return Err(SourcesError::DuplicateId {
                path: path.to_owned(),
                id,
            });
        }
        let name = entry.name.trim().to_owned();
        if name.is_empty() {
            return Err(SourcesError::EmptyName {
                path: path.to_owned(),
                id,
            });
        }
        if entry.feeds.is_empty() {
            return Err(SourcesError::NoFeeds {
                path: path.to_owned(),
                id,
            });
        }
        let mut feeds = Vec::with_capacity(entry.feeds.len());
        for value in entry.feeds {
            feeds.push(
                feed_location(&value, base).map_err(|problem| match problem {
                    LocationProblem::Url(reason) => SourcesError::BadUrl {
                        path: path.to_owned(),
                        id: id.clone(),
                        value: value.clone(),
                        reason,
                    },
                    LocationProblem::MissingFile(file) => SourcesError::MissingFile {
                        path: path.to_owned(),
                        id: id.clone(),
                        value: file,
                    },
                })?,
            );
        }
        sources.push(Source { id, name, feeds });
    }
    Ok(sources)
}

enum LocationProblem {
    Url(String),
    MissingFile(PathBuf),
}

fn feed_location(value: &str, base: &Path) -> Result<FeedLocation, LocationProblem> {
    let value = value.trim();
    if value.is_empty() {
        return Err(LocationProblem::Url("it is empty".into()));
    }
    if value.contains("://") {
        let url = url::Url::parse(value).map_err(|e| LocationProblem::Url(e.to_string()))?;
        return match url.scheme() {
            "http" | "https" if url.host().is_some() => Ok(FeedLocation::Url(url.into())),
            "http" | "https" => Err(LocationProblem::Url("it has no host".into())),
            "file" => {
                let file = url
                    .to_file_path()
                    .map_err(|()| LocationProblem::Url("not a local file path".into()))?;
                local_file(file)
            }
            other => Err(LocationProblem::Url(format!(
                "scheme {other:?} is not supported; use http, https or a local path"
            ))),
        };
    }
    local_file(base.join(value))
}

fn local_file(file: PathBuf) -> Result<FeedLocation, LocationProblem> {
    if file.is_file() {
        Ok(FeedLocation::File(file))
    } else {
        Err(LocationProblem::MissingFile(file))
    }
}

impl FeedLocation {
    /// The human-readable form used in snapshots, stats and logs.
    pub fn label(&self) -> String {
        match self {
            FeedLocation::Embedded { name, .. } => format!("embedded:{name}"),
            FeedLocation::Url(url) => url.clone(),
            FeedLocation::File(path) => path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_set_has_three_sources_of_four_feeds() {
        let sources = embedded();
        let ids: Vec<_> = sources.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["cnn", "bbc", "nyt"]);
        for s in &sources {
            assert_eq!(s.feeds.len(), 4, "{}", s.id);
            for f in &s.feeds {
                let FeedLocation::Embedded { bytes, .. } = f else {
                    panic!("not embedded")
                };
                assert!(bytes.starts_with(b"<?xml"), "{}", f.label());
            }
        }
    }

    #[test]
    fn live_set_uses_http_urls() {
        for s in live() {
            assert_eq!(s.feeds.len(), 4);
            for f in &s.feeds {
                let FeedLocation::Url(u) = f else {
                    panic!("not a URL")
                };
                assert!(u.starts_with("http://") || u.starts_with("https://"), "{u}");
            }
        }
    }
}
