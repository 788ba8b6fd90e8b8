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
#[command(name = "search-server", version, about, after_help = EXAMPLES)]
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

    /// Largest feed body accepted, in bytes or KiB, MiB, GiB (e.g. 32MiB).
    ///
    /// A feed whose body is larger fails that round (its last good copy, if any, is still
    /// served) with an error that names this flag. The cap bounds the memory a feed can take
    /// while it is fetched and parsed; at most 1GiB.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = feed_size)]
    pub max_feed_bytes: usize,

    /// Deliberately slower matching, for the compare walkthrough.
    ///
    /// Every search lowercases every item again (`search::matching::naive_match`): the same
    /// results for more CPU, a regression for `profiler diff` to find by name.
    #[arg(long)]
    pub slow_search: bool,
}

const EXAMPLES: &str = "\
Examples:
  search-server                                       # 127.0.0.1:5000, embedded sample feeds
  search-server --feeds live --cache-ttl 5m           # the public feeds, refetched every 5 min
  search-server --feeds my.toml --max-feed-bytes 32MiB   # feeds of up to 32 MiB each
  search-server --listen 0.0.0.0:8080 --slow-search   # the compare walkthrough's slower build";

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

/// The largest `--max-feed-bytes`: a feed's whole body is held in memory while it is parsed.
const MAX_FEED_BYTES_LIMIT: u64 = 1 << 30;

/// `--max-feed-bytes`: whole bytes, or a whole number of KiB, MiB or GiB (1024-based, so that
/// `8MiB` means what it says).
fn feed_size(value: &str) -> Result<usize, String> {
    let not_a_size =
        || format!("{value:?} is not a size; write bytes or KiB, MiB, GiB, like 8MiB or 500000");
    let digits_end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(digits_end);
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(not_a_size()),
    };
    let bytes = digits
        .parse::<u64>()
        .map_err(|_| not_a_size())?
        .saturating_mul(scale);
    if bytes == 0 {
        return Err(format!(
            "{value:?} is zero; no feed would fit: give a size such as 8MiB"
        ));
    }
    if bytes > MAX_FEED_BYTES_LIMIT {
        return Err(format!(
            "{value:?} is over the 1GiB limit: a feed is held in memory whole while it is parsed"
        ));
    }
    usize::try_from(bytes).map_err(|_| not_a_size())
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
            max_body_bytes: self.max_feed_bytes,
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
        assert_eq!(
            cli.cache_options().max_body_bytes,
            CacheOptions::default().max_body_bytes,
            "the flag's default is the cache's"
        );
    }

    #[test]
    fn max_feed_bytes_reaches_the_cache() {
        for (arg, bytes) in [
            ("500000", 500_000),
            ("4096B", 4096),
            ("512KiB", 512 * 1024),
            ("32MiB", 32 << 20),
            ("32mib", 32 << 20),
            ("1GiB", 1 << 30),
        ] {
            let cli = parse(&["--max-feed-bytes", arg]).unwrap();
            assert_eq!(cli.cache_options().max_body_bytes, bytes, "{arg}");
        }
    }

    #[test]
    fn bad_max_feed_bytes_are_named() {
        for (arg, want) in [
            ("0", "\"0\" is zero"),
            ("0MiB", "\"0MiB\" is zero"),
            ("8MB", "\"8MB\" is not a size; write bytes or KiB, MiB, GiB"),
            ("lots", "\"lots\" is not a size"),
            ("-1", "\"-1\" is not a size"),
            ("2GiB", "\"2GiB\" is over the 1GiB limit"),
            ("99999999999999999999", "is not a size"),
        ] {
            let e = parse(&[&format!("--max-feed-bytes={arg}")])
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{arg}: {e}");
        }
    }

    #[test]
    fn help_documents_max_feed_bytes_with_an_example() {
        use clap::CommandFactory as _;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--max-feed-bytes <SIZE>"), "{help}");
        assert!(help.contains("[default: 8MiB]"), "{help}");
        assert!(help.contains("Examples:"), "{help}");
        assert!(
            help.contains("search-server --feeds my.toml --max-feed-bytes 32MiB"),
            "{help}"
        );
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
