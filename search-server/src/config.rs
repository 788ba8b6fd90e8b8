//! Command-line configuration: parsed with clap, validated, and turned into the options of
//! the feed cache and the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::feeds::sources::{self, SourcesError};
use crate::feeds::{CacheOptions, Source};
use crate::search::Matching;
use crate::server::ServerOptions;

/// A search engine over RSS news feeds (CNN, BBC, NYT), with a web page and a JSON API.
#[derive(Debug, Parser)]
#[command(name = "search-server", version, about)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,

    /// Where the feeds come from: `embedded` (sample feeds built into the binary, works
    /// offline), `live` (the public CNN, BBC and NYT feeds) or the path of a TOML feeds file.
    #[arg(long, value_name = "embedded|live|FILE.toml", default_value = "embedded", value_parser = parse_feeds)]
    pub feeds: FeedsArg,

    /// How long a fetched feed is served before it is fetched again (e.g. 15m, 90s).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = positive_duration)]
    pub cache_ttl: Duration,

    /// Longest wait for one feed fetch (connect, headers and body); no request waits on an
    /// origin longer than this.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub fetch_timeout: Duration,

    /// A client must send a whole request head within this time, or it is disconnected.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,

    /// Deliberately slower matching, for the compare walkthrough.
    ///
    /// Every search lowercases every item again (`search::matching::naive_match`): the same
    /// results for more CPU, a regression for `profiler diff` to find by name.
    #[arg(long)]
    pub slow_search: bool,
}

/// The `--feeds` choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedsArg {
    Embedded,
    Live,
    File(PathBuf),
}

fn parse_feeds(value: &str) -> Result<FeedsArg, String> {
    match value {
        "embedded" => Ok(FeedsArg::Embedded),
        "live" => Ok(FeedsArg::Live),
        "" => Err("empty value: use embedded, live or the path of a TOML feeds file".into()),
        path if path.ends_with(".toml") || std::path::Path::new(path).exists() => {
            Ok(FeedsArg::File(PathBuf::from(path)))
        }
        other => Err(format!(
            "{other:?} is neither embedded, live nor an existing file; give the path of a TOML feeds file"
        )),
    }
}

fn positive_duration(value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value).map_err(|e| {
        format!("{value:?} is not a duration ({e}); write it like 15m, 90s or 500ms")
    })?;
    if d.is_zero() {
        return Err(format!(
            "{value:?} is zero; give a positive duration such as 30s"
        ));
    }
    Ok(d)
}

impl Cli {
    /// The configured sources; a feeds file is read and validated here.
    pub fn sources(&self) -> Result<Vec<Source>, SourcesError> {
        match &self.feeds {
            FeedsArg::Embedded => Ok(sources::embedded()),
            FeedsArg::Live => Ok(sources::live()),
            FeedsArg::File(path) => sources::from_toml_file(path),
        }
    }

    pub fn cache_options(&self) -> CacheOptions {
        CacheOptions {
            ttl: self.cache_ttl,
            total_timeout: self.fetch_timeout,
            ..CacheOptions::default()
        }
    }

    pub fn matching(&self) -> Matching {
        if self.slow_search {
            Matching::Naive
        } else {
            Matching::Fast
        }
    }

    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            header_read_timeout: self.header_timeout,
            ..ServerOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("search-server").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.listen, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(cli.feeds, FeedsArg::Embedded);
        assert_eq!(cli.cache_ttl, Duration::from_secs(900));
        assert_eq!(cli.cache_options().ttl, Duration::from_secs(900));
        assert_eq!(cli.sources().unwrap().len(), 3);
        assert_eq!(cli.matching(), Matching::Fast);
    }

    #[test]
    fn slow_search_picks_the_naive_matcher() {
        assert_eq!(
            parse(&["--slow-search"]).unwrap().matching(),
            Matching::Naive
        );
    }

    #[test]
    fn values() {
        let cli = parse(&[
            "--listen",
            "0.0.0.0:8080",
            "--feeds",
            "live",
            "--cache-ttl",
            "90s",
        ])
        .unwrap();
        assert_eq!(cli.listen.port(), 8080);
        assert_eq!(cli.feeds, FeedsArg::Live);
        assert_eq!(cli.cache_ttl, Duration::from_secs(90));
        let cli = parse(&["--feeds", "my-feeds.toml"]).unwrap();
        assert_eq!(cli.feeds, FeedsArg::File("my-feeds.toml".into()));
    }

    #[test]
    fn bad_values_name_the_value() {
        let e = parse(&["--feeds", "cnn"]).unwrap_err().to_string();
        assert!(
            e.contains("\"cnn\" is neither embedded, live nor an existing file"),
            "{e}"
        );
        let e = parse(&["--cache-ttl", "soon"]).unwrap_err().to_string();
        assert!(e.contains("\"soon\" is not a duration"), "{e}");
        let e = parse(&["--cache-ttl", "0s"]).unwrap_err().to_string();
        assert!(e.contains("\"0s\" is zero"), "{e}");
        let e = parse(&["--listen", "localhost"]).unwrap_err().to_string();
        assert!(e.contains("localhost"), "{e}");
    }

    #[test]
    fn missing_feeds_file_is_an_error_naming_it() {
        let cli = parse(&["--feeds", "/nonexistent/feeds.toml"]).unwrap();
        let e = cli.sources().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/feeds.toml"), "{e}");
    }
}
