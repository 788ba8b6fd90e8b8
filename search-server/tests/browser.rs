//! The page in a real browser: headless Debian Chromium driven over WebDriver (chromedriver +
//! fantoccini) against the server on 127.0.0.1:0, with fixture feeds on a loopback origin.
//! One feed carries hostile items (`<script>`, `<img onerror>`, a `javascript:` link, and
//! double-escaped markup that survives parsing as text); the test fills and submits the form
//! like a person, checks the hits, and proves that nothing from a feed ran or became markup.
//! It also saves desktop and phone screenshots to /tmp for a person to look at.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/setup.sh` installs them);
//! without them the test fails rather than passing silently.

mod support;

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use search_server::feeds::{CacheOptions, FeedCache, FeedLocation, Source};
use search_server::server::{self, ServerOptions};
use search_server::web::App;
use serde_json::{Value, json};
use support::origin::Origin;
use tokio::sync::oneshot;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// What every hostile payload would do if it ran.
const PAYLOAD: &str = "window.__pwned=1;document.title='pwned'";

fn rss(items: &[String]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel><title>T</title>\n{}</channel></rss>\n",
        items.concat()
    )
}

fn item(title: &str, link: &str, description: &str) -> String {
    format!(
        "<item><title>{title}</title><link>{link}</link><description>{description}</description></item>\n"
    )
}

/// CNN: one plain hit and the hostile items; BBC: one hit, one miss; NYT: one hit that the
/// test leaves unticked, so it must not show.
fn serve_world(origin: &Origin) -> Vec<Source> {
    origin.serve(
        "/cnn.xml",
        rss(&[
            item(
                "House passes the budget",
                "https://cnn.example/budget",
                "Lawmakers voted late.",
            ),
            // Raw markup in CDATA: the parser reduces it to text and drops script bodies.
            item(
                &format!("<![CDATA[House <script>{PAYLOAD}</script>hearing]]>"),
                "https://cnn.example/hearing",
                &format!("<![CDATA[Witnesses <img src=x onerror=\"{PAYLOAD}\"> spoke.]]>"),
            ),
            // A javascript: link: must never become an href.
            item(
                "House tour goes online",
                &format!("javascript:{PAYLOAD}"),
                "Click the link.",
            ),
            // Double-escaped markup: after parsing it is the literal text `<script>...`,
            // which the page must show as text, never as an element.
            item(
                &format!("House &amp;lt;script&amp;gt;{PAYLOAD}&amp;lt;/script&amp;gt; notes"),
                "https://cnn.example/notes",
                "&amp;lt;img src=x onerror=&amp;quot;window.__pwned=2&amp;quot;&amp;gt; caption",
            ),
        ]),
    );
    origin.serve(
        "/bbc.xml",
        rss(&[
            item(
                "Greenhouse gas report",
                "https://bbc.example/gas",
                "Emissions fell.",
            ),
            item(
                "Cricket scores",
                "https://bbc.example/cricket",
                "Rain delay.",
            ),
        ]),
    );
    origin.serve(
        "/nyt.xml",
        rss(&[item(
            "House prices climb",
            "https://nyt.example/prices",
            "Again.",
        )]),
    );
    let source = |id: &str, name: &str, path: &str| Source {
        id: id.into(),
        name: name.into(),
        feeds: vec![FeedLocation::Url(origin.url(path))],
    };
    vec![
        source("cnn", "CNN", "/cnn.xml"),
        source("bbc", "BBC", "/bbc.xml"),
        source("nyt", "NYT", "/nyt.xml"),
    ]
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: the browser test needs Debian's chromium and chromium-driver; \
                 run scripts/setup.sh (as root) to install them"
            );
        }
        // The port is free when probed; chromedriver binds it a moment later.
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("probe a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; run scripts/setup.sh"));
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _profile: tempfile::tempdir().expect("temp dir for the Chromium profile"),
        }
    }

    /// A WebDriver session on a fresh headless Chromium, once chromedriver answers.
    async fn session(&self) -> Client {
        let profile = self._profile.path().display();
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    format!("--user-data-dir={profile}"),
                    "--window-size=1280,900",
                ],
            },
        }))
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&self.url)
                .await;
            match attempt {
                Ok(client) => return client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!(
                    "no WebDriver session from {CHROMEDRIVER} at {} within 30 s: {e}; \
                     check that chromium and chromium-driver are the same version (scripts/setup.sh)",
                    self.url
                ),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
}

async fn screenshot(client: &Client, width: u32, height: u32, path: &str) {
    client.set_window_size(width, height).await.unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    eprintln!("screenshot: {path} ({width}x{height})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_in_a_real_browser_runs_nothing_from_feeds() {
    let origin = Origin::start().await;
    let sources = serve_world(&origin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::new(FeedCache::new(sources, CacheOptions::default()));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        Arc::clone(&app),
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let driver = Driver::start();
    let client = driver.session().await;
    let result = drive(&client, &format!("http://{addr}")).await;
    let _ = client.close().await;
    drop(driver);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
    result.unwrap();
}

/// The browser part, returning errors so the session is closed whatever happens.
async fn drive(client: &Client, base: &str) -> Result<(), fantoccini::error::CmdError> {
    client.goto(&format!("{base}/")).await?;
    assert_eq!(
        client.current_url().await?.path(),
        "/search",
        "/ redirects to the page"
    );
    assert_eq!(client.title().await?, "News Search");

    let term = client.find(Locator::Id("term")).await?;
    term.clear().await?;
    term.send_keys("house").await?;
    // The fresh page has every source ticked: untick NYT, leave CNN and BBC.
    for (name, want) in [("cnn", true), ("bbc", true), ("nyt", false)] {
        let boxed = client
            .find(Locator::Css(&format!("input[type=checkbox][name={name}]")))
            .await?;
        if boxed.is_selected().await? != want {
            boxed.click().await?;
        }
        assert_eq!(boxed.is_selected().await?, want, "checkbox {name}");
    }
    client
        .find(Locator::Css("form.search button[type=submit]"))
        .await?
        .click()
        .await?;
    let summary = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(".summary"))
        .await?
        .text()
        .await?;
    assert!(summary.starts_with("5 hits in "), "summary: {summary:?}");

    // Nothing ran: give a stray onerror handler time to fire before looking.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        js(client, "return typeof window.__pwned").await,
        json!("undefined"),
        "a feed payload ran"
    );
    assert_eq!(client.title().await?, "house · News Search");
    // No markup from feed content: the page itself has no scripts and no images.
    assert_eq!(
        js(
            client,
            "return document.getElementsByTagName('script').length"
        )
        .await,
        json!(0)
    );
    assert_eq!(js(client, "return document.images.length").await, json!(0));
    assert_eq!(
        js(
            client,
            "return document.querySelectorAll('[onerror],[onload],[onclick]').length"
        )
        .await,
        json!(0)
    );
    let hrefs = js(
        client,
        "return Array.from(document.querySelectorAll('a[href]'), a => a.getAttribute('href'))",
    )
    .await;
    let hrefs: Vec<String> = serde_json::from_value(hrefs).unwrap();
    assert!(!hrefs.is_empty());
    for href in &hrefs {
        assert!(
            href.starts_with("https://") || href.starts_with('/'),
            "unexpected href {href:?} (all: {hrefs:?})"
        );
        assert!(
            !href.to_ascii_lowercase().contains("javascript"),
            "{href:?}"
        );
    }
    // The hits, in source then item order, each with its source badge.
    let mut hits = Vec::new();
    for hit in client.find_all(Locator::Css("li.hit")).await? {
        let src = hit.find(Locator::Css(".src")).await?.text().await?;
        let title = hit.find(Locator::Css(".title")).await?.text().await?;
        hits.push((src, title));
    }
    let literal = format!("House <script>{PAYLOAD}</script> notes");
    let want = [
        ("CNN", "House passes the budget"),
        ("CNN", "House hearing"),
        ("CNN", "House tour goes online"),
        ("CNN", literal.as_str()),
        ("BBC", "Greenhouse gas report"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(s, t)| (s.to_string(), t.to_string()))
        .collect();
    assert_eq!(hits, want, "hits as the browser shows them");

    // The form kept its values.
    assert_eq!(
        client
            .find(Locator::Id("term"))
            .await?
            .prop("value")
            .await?,
        Some("house".into())
    );
    let nyt = client.find(Locator::Css("input[name=nyt]")).await?;
    assert!(!nyt.is_selected().await?, "NYT stays unticked");

    // The javascript: item is shown, as plain text without a link.
    let tour = client
        .find(Locator::XPath(
            "//li[@class='hit'][.//*[contains(., 'House tour goes online')]]/*[contains(@class,'title')]",
        ))
        .await?;
    assert_eq!(tour.tag_name().await?, "span");
    // The double-escaped description shows as the literal text it is.
    let body = client.find(Locator::Css("ol.hits")).await?.text().await?;
    assert!(
        body.contains("<img src=x onerror=\"window.__pwned=2\"> caption"),
        "{body}"
    );

    screenshot(client, 1280, 900, "/tmp/search-server-desktop.png").await;
    screenshot(client, 390, 844, "/tmp/search-server-phone.png").await;
    Ok(())
}
