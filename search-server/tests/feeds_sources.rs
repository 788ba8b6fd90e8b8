//! Feeds files (`--feeds FILE.toml`): a valid file, and each way one is refused with a
//! message that names the file and the offending value.

use std::path::{Path, PathBuf};

use search_server::feeds::FeedLocation;
use search_server::feeds::sources::{SourcesError, from_toml_file};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let dir = Dir(tempfile::tempdir().unwrap());
        std::fs::write(dir.path().join("local.xml"), "<rss/>").unwrap();
        dir
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn write(&self, toml: &str) -> PathBuf {
        let file = self.path().join("feeds.toml");
        std::fs::write(&file, toml).unwrap();
        file
    }

    fn error(&self, toml: &str) -> (SourcesError, String) {
        let file = self.write(toml);
        let err = from_toml_file(&file).expect_err("must be refused");
        let message = err.to_string();
        assert!(
            message.contains(&file.display().to_string()),
            "names the file: {message}"
        );
        (err, message)
    }
}

#[test]
fn valid_file_with_urls_and_relative_paths() {
    let dir = Dir::new();
    let file = dir.write(
        r#"
[[source]]
id = "local"
name = "Local news"
feeds = ["https://news.example.org/rss.xml", "local.xml", "http://127.0.0.1:8080/a.xml"]

[[source]]
id = "tech-2"
name = "Tech"
feeds = ["file://LOCAL"]
"#
        .replace("LOCAL", &dir.path().join("local.xml").display().to_string())
        .as_str(),
    );
    let sources = from_toml_file(&file).unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(
        (sources[0].id.as_str(), sources[0].name.as_str()),
        ("local", "Local news")
    );
    assert_eq!(
        sources[0].feeds,
        [
            FeedLocation::Url("https://news.example.org/rss.xml".into()),
            FeedLocation::File(dir.path().join("local.xml")),
            FeedLocation::Url("http://127.0.0.1:8080/a.xml".into()),
        ]
    );
    assert_eq!(
        sources[1].feeds,
        [FeedLocation::File(dir.path().join("local.xml"))]
    );
}

#[test]
fn unreadable_file() {
    let err = from_toml_file("/nonexistent/feeds.toml").unwrap_err();
    assert!(matches!(err, SourcesError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/feeds.toml"), "{err}");
}

#[test]
fn invalid_toml_and_unknown_keys() {
    let dir = Dir::new();
    let (err, _) = dir.error("[[source]\nid = ");
    assert!(matches!(err, SourcesError::Toml { .. }));
    let (err, message) =
        dir.error("[[source]]\nid = \"a\"\nname = \"A\"\nfeeds = [\"local.xml\"]\nurl = \"x\"\n");
    assert!(matches!(err, SourcesError::Toml { .. }));
    assert!(message.contains("url"), "{message}");
}

#[test]
fn no_sources() {
    let (err, _) = Dir::new().error("# nothing here\n");
    assert!(matches!(err, SourcesError::NoSources { .. }));
}

#[test]
fn bad_and_duplicate_ids() {
    let dir = Dir::new();
    let (err, message) =
        dir.error("[[source]]\nid = \"Big News\"\nname = \"B\"\nfeeds = [\"local.xml\"]\n");
    assert!(matches!(err, SourcesError::BadId { .. }));
    assert!(message.contains("\"Big News\""), "{message}");
    let (err, message) = dir.error(
        "[[source]]\nid = \"a\"\nname = \"A\"\nfeeds = [\"local.xml\"]\n\
         [[source]]\nid = \"a\"\nname = \"A2\"\nfeeds = [\"local.xml\"]\n",
    );
    assert!(matches!(err, SourcesError::DuplicateId { .. }));
    assert!(message.contains("\"a\""), "{message}");
}

#[test]
fn empty_name_and_no_feeds() {
    let dir = Dir::new();
    let (err, _) = dir.error("[[source]]\nid = \"a\"\nname = \"  \"\nfeeds = [\"local.xml\"]\n");
    assert!(matches!(err, SourcesError::EmptyName { .. }));
    let (err, message) = dir.error("[[source]]\nid = \"a\"\nname = \"A\"\nfeeds = []\n");
    assert!(matches!(err, SourcesError::NoFeeds { .. }));
    assert!(message.contains("\"a\""), "{message}");
}

#[test]
fn unsupported_schemes_and_bad_urls() {
    let dir = Dir::new();
    for (value, expect) in [
        ("ftp://example.org/feed.xml", "scheme \"ftp\""),
        ("javascript://alert(1)", "scheme \"javascript\""),
        ("http://", "http://"),
        ("", "empty"),
    ] {
        let (err, message) = dir.error(&format!(
            "[[source]]\nid = \"a\"\nname = \"A\"\nfeeds = [\"{value}\"]\n"
        ));
        assert!(
            matches!(err, SourcesError::BadUrl { .. }),
            "{value}: {err:?}"
        );
        assert!(message.contains(expect), "{value}: {message}");
    }
}

#[test]
fn missing_local_file() {
    let dir = Dir::new();
    let (err, message) =
        dir.error("[[source]]\nid = \"a\"\nname = \"A\"\nfeeds = [\"nope/feed.xml\"]\n");
    assert!(matches!(err, SourcesError::MissingFile { .. }));
    assert!(message.contains("nope/feed.xml"), "{message}");
}
