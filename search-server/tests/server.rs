//! The server end to end: started on 127.0.0.1:0 over fixture feeds served by a loopback
//! origin, driven with a real HTTP client (and raw TCP where the client would hide the
//! behaviour under test: slow clients, oversized heads).

mod support;

use std::sync::Arc;
use std::time::Duration;

use search_server::feeds::{CacheOptions, FeedCache, FeedLocation, Source};
use search_server::search::Matching;
use search_server::server::{self, ServerOptions};
use search_server::web::App;
use serde_json::Value;
use support::origin::{Behavior, Origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An RSS 2.0 document with the given (title, link, description) items.
fn rss(items: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel><title>T</title>\n",
    );
    for (title, link, desc) in items {
        s.push_str(&format!(
            "<item><title><![CDATA[{title}]]></title><link>{link}</link><description><![CDATA[{desc}]]></description></item>\n"
        ));
    }
    s.push_str("</channel></rss>\n");
    s
}

/// Three sources of two feeds each on one origin; "house" hits every source.
fn serve_world(origin: &Origin) -> Vec<Source> {
    origin.serve(
        "/cnn-1.xml",
        rss(&[
            (
                "White House talks resume",
                "https://cnn.example/1",
                "Negotiators met.",
            ),
            ("Markets rally", "https://cnn.example/2", "Stocks rose."),
        ]),
    );
    origin.serve(
        "/cnn-2.xml",
        rss(&[(
            "Storm nears coast",
            "https://cnn.example/3",
            "A house was flooded.",
        )]),
    );
    origin.serve(
        "/bbc-1.xml",
        rss(&[(
            "Greenhouse gas report",
            "https://bbc.example/1",
            "Emissions fell.",
        )]),
    );
    origin.serve(
        "/bbc-2.xml",
        rss(&[("Storm warning", "https://bbc.example/2", "Wind.")]),
    );
    origin.serve(
        "/nyt-1.xml",
        rss(&[("House prices climb", "https://nyt.example/1", "Again.")]),
    );
    origin.serve(
        "/nyt-2.xml",
        rss(&[("Opera season opens", "https://nyt.example/2", "Music.")]),
    );
    vec![
        source(origin, "cnn", "CNN", &["/cnn-1.xml", "/cnn-2.xml"]),
        source(origin, "bbc", "BBC", &["/bbc-1.xml", "/bbc-2.xml"]),
        source(origin, "nyt", "NYT", &["/nyt-1.xml", "/nyt-2.xml"]),
    ]
}

fn source(origin: &Origin, id: &str, name: &str, paths: &[&str]) -> Source {
    Source {
        id: id.into(),
        name: name.into(),
        feeds: paths
            .iter()
            .map(|p| FeedLocation::Url(origin.url(p)))
            .collect(),
    }
}

struct TestServer {
    base: String,
    addr: std::net::SocketAddr,
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    http: reqwest::Client,
}

impl TestServer {
    async fn start(sources: Vec<Source>) -> TestServer {
        Self::start_with(sources, CacheOptions::default(), ServerOptions::default()).await
    }

    async fn start_with(
        sources: Vec<Source>,
        cache: CacheOptions,
        opts: ServerOptions,
    ) -> TestServer {
        Self::start_matching(sources, cache, opts, Matching::Fast).await
    }

    async fn start_matching(
        sources: Vec<Source>,
        cache: CacheOptions,
        opts: ServerOptions,
        matching: Matching,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App::with_matching(FeedCache::new(sources, cache), matching);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, Arc::clone(&app), opts, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestServer {
            base: format!("http://{addr}"),
            addr,
            app,
            stop: Some(stop),
            task,
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_form(&self, path: &str, body: &str) -> (u16, String) {
        let resp = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn api(&self, query: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.url(&format!("/api/search?{query}")))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], "application/json");
        (
            status,
            serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
        )
    }

    async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200);
        text
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("server stops")
            .unwrap();
    }
}

/// Titles of the hits on a rendered page, in order, with their source badge.
fn page_hits(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in html.split("<li class=\"hit\">").skip(1) {
        let source = between(chunk, "\">", "</span>").to_owned();
        let after_class = &chunk[chunk.find("class=\"title\"").expect("hit has a title")..];
        let title = between(after_class, ">", "<").to_owned();
        out.push((source, title));
    }
    out
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let from = s.find(start).expect(start) + start.len();
    let to = s[from..].find(end).expect(end) + from;
    &s[from..to]
}

/// Sends raw bytes, then reads until the server closes the connection.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .expect("server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn all_house_hits() -> Vec<(String, String)> {
    [
        ("CNN", "White House talks resume"),
        ("CNN", "Storm nears coast"),
        ("BBC", "Greenhouse gas report"),
        ("NYT", "House prices climb"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

#[tokio::test]
async fn get_page_shows_the_form_without_a_search() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;

    let resp = srv.http.get(srv.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/search");

    let resp = srv.http.get(srv.url("/search")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("<title>News Search</title>"));
    assert!(html.contains(r#"<form class="search" method="post" action="/search""#));
    for id in ["cnn", "bbc", "nyt"] {
        assert!(
            html.contains(&format!(r#"<input type="checkbox" name="{id}" checked>"#)),
            "{id} ticked on a fresh page"
        );
    }
    assert!(html.contains(r#"<input type="checkbox" name="first">"#));
    assert!(html.contains(r#"<button type="submit">Search</button>"#));
    assert!(
        !html.contains("class=\"results\""),
        "no search on a plain GET"
    );
    assert_eq!(
        origin.hits("/cnn-1.xml"),
        0,
        "showing the form fetches nothing"
    );

    let (status, css) = srv.get("/static/style.css").await;
    assert_eq!(status, 200);
    assert!(css.contains(".hit"));
    srv.stop().await;
}

#[tokio::test]
async fn post_with_form_body_searches_and_keeps_the_form() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    let (status, html) = srv.post_form("/search", "term=HoUsE&cnn=on&nyt=on").await;
    assert_eq!(status, 200);
    assert_eq!(
        page_hits(&html),
        vec![
            ("CNN".to_string(), "White House talks resume".to_string()),
            ("CNN".to_string(), "Storm nears coast".to_string()),
            ("NYT".to_string(), "House prices climb".to_string()),
        ]
    );
    assert!(html.contains(r#"value="HoUsE""#), "term kept");
    assert!(html.contains(r#"name="cnn" checked"#));
    assert!(html.contains(r#"name="bbc">"#), "bbc stays unticked");
    assert!(html.contains(r#"name="nyt" checked"#));
    assert!(html.contains("3 hits in "), "{html}");
    assert!(html.contains(r#"<a class="title" href="https://cnn.example/1" rel="noopener noreferrer">White House talks resume</a>"#));
    assert!(
        html.contains(r#"<p class="desc">A house was flooded.</p>"#),
        "description shown as text"
    );
    assert_eq!(
        origin.hits("/bbc-1.xml"),
        0,
        "an unticked source is not fetched"
    );
    srv.stop().await;
}

#[tokio::test]
async fn post_with_query_string_only_searches() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    // The tutorial's load command: POST with the parameters in the URL and no body.
    let resp = srv
        .http
        .post(srv.url("/search?term=house&cnn=on&bbc=on&nyt=on"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert_eq!(page_hits(&html), all_house_hits());
    assert!(html.contains("4 hits in "));
    srv.stop().await;
}

#[tokio::test]
async fn slow_search_finds_the_same_hits() {
    let origin = Origin::start().await;
    let fast = TestServer::start(serve_world(&origin)).await;
    let slow = TestServer::start_matching(
        serve_world(&origin),
        CacheOptions::default(),
        ServerOptions::default(),
        Matching::Naive,
    )
    .await;
    for body in [
        "term=house&cnn=on&bbc=on&nyt=on",
        "term=STORM&cnn=on&bbc=on&nyt=on",
        "term=ho&cnn=on&bbc=on&nyt=on",
        "term=zebra&cnn=on&bbc=on&nyt=on",
        "term=house&nyt=on&first=on",
    ] {
        let (fast_status, fast_html) = fast.post_form("/search", body).await;
        let (slow_status, slow_html) = slow.post_form("/search", body).await;
        assert_eq!((fast_status, slow_status), (200, 200), "{body}");
        assert_eq!(page_hits(&fast_html), page_hits(&slow_html), "{body}");
    }
    let (_, html) = slow
        .post_form("/search", "term=house&cnn=on&bbc=on&nyt=on")
        .await;
    assert_eq!(page_hits(&html), all_house_hits());
    fast.stop().await;
    slow.stop().await;
}

#[tokio::test]
async fn no_hits_shows_a_friendly_message() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    let (status, html) = srv
        .post_form("/search", "term=zebra&cnn=on&bbc=on&nyt=on")
        .await;
    assert_eq!(status, 200);
    assert!(page_hits(&html).is_empty());
    assert!(html.contains("0 hits in "));
    assert!(
        html.contains("Nothing in the news matches “zebra” right now."),
        "{html}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn json_api_returns_the_same_hits_as_the_page() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    let (status, json) = srv.api("term=house&sources=cnn,bbc,nyt&first=false").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["count"], 4);
    assert_eq!(json["term"], "house");
    let hits: Vec<(String, String)> = json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["source"].as_str().unwrap().to_uppercase(),
                h["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(hits, all_house_hits());
    assert_eq!(json["hits"][0]["link"], "https://cnn.example/1");
    assert_eq!(json["hits"][0]["description"], "Negotiators met.");

    let (_, html) = srv
        .post_form("/search", "term=house&cnn=on&bbc=on&nyt=on")
        .await;
    assert_eq!(page_hits(&html), hits);

    // No `sources` means all; a subset keeps the configured order whatever order it is given in.
    let (_, json) = srv.api("term=house").await;
    assert_eq!(json["count"], 4);
    let (_, json) = srv.api("term=house&sources=nyt,bbc").await;
    let sources: Vec<&str> = json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["bbc", "nyt"]);
    srv.stop().await;
}

#[tokio::test]
async fn json_api_rejects_bad_parameters_by_name() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    let (status, json) = srv.api("term=house&sources=cnn,fox").await;
    assert_eq!(status, 400);
    let msg = json["error"].as_str().unwrap();
    assert!(
        msg.contains("\"fox\"") && msg.contains("cnn, bbc, nyt"),
        "{msg}"
    );
    let (status, json) = srv.api("term=house&first=maybe").await;
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().contains("first=\"maybe\""),
        "{json}"
    );
    let (status, json) = srv.api("sources=cnn").await;
    assert_eq!(status, 400);
    assert!(json["error"].as_str().unwrap().contains("term"), "{json}");
    let long = "a".repeat(300);
    let (status, json) = srv.api(&format!("term={long}")).await;
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().contains("300 characters"),
        "{json}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn first_shows_only_the_first_source_with_hits() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    // "storm" hits CNN and BBC: only CNN's hits are shown.
    let (_, html) = srv
        .post_form("/search", "term=storm&cnn=on&bbc=on&nyt=on&first=on")
        .await;
    assert_eq!(
        page_hits(&html),
        vec![("CNN".to_string(), "Storm nears coast".to_string())]
    );
    assert!(html.contains(r#"name="first" checked"#));
    // Without CNN ticked, BBC is the first with hits.
    let (_, html) = srv
        .post_form("/search", "term=storm&bbc=on&nyt=on&first=on")
        .await;
    assert_eq!(
        page_hits(&html),
        vec![("BBC".to_string(), "Storm warning".to_string())]
    );
    // "prices" only hits NYT, the last source.
    let (_, json) = srv.api("term=prices&first=true").await;
    assert_eq!(json["count"], 1);
    assert_eq!(json["hits"][0]["source"], "nyt");
    srv.stop().await;
}

#[tokio::test]
async fn empty_and_oversized_terms() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    let (status, html) = srv.post_form("/search", "term=++&cnn=on").await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("class=\"results\""),
        "blank term: the page without a search"
    );

    let long = "x".repeat(257);
    let (status, html) = srv
        .post_form("/search", &format!("term={long}&cnn=on"))
        .await;
    assert_eq!(status, 400);
    assert!(
        html.contains("the search term is 257 characters long; the limit is 256: shorten it"),
        "clear message on the page"
    );
    assert!(
        html.contains("<form"),
        "the form is still there to fix the term"
    );
    assert!(!html.contains("class=\"results\""));

    // 256 characters is fine (counted in characters, not bytes).
    let ok: String = "é".repeat(256);
    let body = format!("term={}&cnn=on", url_encode(&ok));
    let (status, _) = srv.post_form("/search", &body).await;
    assert_eq!(status, 200);

    let (status, html) = srv.post_form("/search", "term=house").await;
    assert_eq!(status, 400);
    assert!(html.contains("no source selected"), "{html}");
    srv.stop().await;
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn oversized_body_headers_and_wrong_media_type_are_refused() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    let big = format!("term=house&pad={}", "x".repeat(20_000));
    let (status, text) = srv.post_form("/search", &big).await;
    assert_eq!(status, 413);
    assert!(text.contains("larger than 16384 bytes"), "{text}");

    // A chunked body with no declared length is cut off at the limit too.
    let chunk = "x".repeat(8000);
    let mut req = String::from(
        "POST /search HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..3 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let resp = raw(srv.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

    let huge_header = format!(
        "GET /search HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
        "y".repeat(32 * 1024)
    );
    let resp = raw(srv.addr, huge_header.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");

    let mut many = String::from("GET /search HTTP/1.1\r\nHost: t\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let resp = raw(srv.addr, many.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");

    let resp = srv
        .http
        .post(srv.url("/search"))
        .header("content-type", "application/json")
        .body(r#"{"term":"house"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert!(resp.text().await.unwrap().contains("\"application/json\""));

    // The server still serves normally afterwards.
    let (status, _) = srv.post_form("/search", "term=house&cnn=on").await;
    assert_eq!(status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    let (status, text) = srv.get("/nope").await;
    assert_eq!(status, 404);
    assert!(text.contains("/nope"));
    let resp = srv.http.delete(srv.url("/search")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET or POST");
    let resp = srv
        .http
        .post(srv.url("/api/search?term=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let (status, text) = srv.get("/healthz").await;
    assert_eq!((status, text.as_str()), (200, "ok\n"));
    srv.stop().await;
}

#[tokio::test]
async fn slow_client_is_disconnected_by_the_header_timeout() {
    let origin = Origin::start().await;
    let opts = ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let srv = TestServer::start_with(serve_world(&origin), CacheOptions::default(), opts).await;
    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    // Half a request head, then silence.
    stream
        .write_all(b"GET /search HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out)).await;
    let read = read.expect("the server closes the connection instead of waiting forever");
    // Closed (EOF, possibly after a 408) or reset: either way the connection is gone.
    if read.is_ok() {
        let text = String::from_utf8_lossy(&out);
        assert!(out.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    // Other clients are unaffected.
    let (status, _) = srv.get("/healthz").await;
    assert_eq!(status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let origin = Origin::start().await;
    let srv = TestServer::start(serve_world(&origin)).await;
    let req = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let resp = raw(srv.addr, req).await;
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 2, "{resp}");
    srv.stop().await;
}

#[tokio::test]
async fn slow_origin_does_not_hold_the_request_past_the_fetch_timeout() {
    let origin = Origin::start().await;
    let sources = serve_world(&origin);
    origin.set("/bbc-2.xml", Behavior::Delay(Duration::from_secs(120)));
    let cache = CacheOptions {
        total_timeout: Duration::from_millis(500),
        ..CacheOptions::default()
    };
    let srv = TestServer::start_with(sources, cache, ServerOptions::default()).await;
    // Far below the origin's 120 s delay: the search answers when the fetch times out.
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        srv.post_form("/search", "term=house&cnn=on&bbc=on&nyt=on"),
    )
    .await
    .expect("the request answers without waiting for the slow origin");
    let (status, html) = resp;
    assert_eq!(status, 200);
    assert_eq!(
        page_hits(&html),
        all_house_hits(),
        "the other feeds are still searched"
    );
    assert!(html.contains("bbc-2.xml is unavailable"), "{html}");
    srv.stop().await;
}

// On tokio's paused clock (server, client and origin share the runtime): the TTL passes by
// `advance`, not by sleeping.
#[tokio::test(start_paused = true)]
async fn failing_origin_after_a_good_fetch_serves_the_stale_copy_and_shows_the_failure() {
    let origin = Origin::start().await;
    let sources = serve_world(&origin);
    let cache = CacheOptions {
        ttl: Duration::from_secs(15 * 60),
        ..CacheOptions::default()
    };
    let ttl = cache.ttl;
    let srv = TestServer::start_with(sources, cache, ServerOptions::default()).await;
    let (_, html) = srv
        .post_form("/search", "term=house&cnn=on&bbc=on&nyt=on")
        .await;
    assert_eq!(page_hits(&html), all_house_hits());
    assert!(!html.contains("class=\"note\""));

    origin.set("/nyt-1.xml", Behavior::Status(503));
    tokio::time::advance(ttl).await;
    let (status, html) = srv
        .post_form("/search", "term=house&cnn=on&bbc=on&nyt=on")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        page_hits(&html),
        all_house_hits(),
        "NYT's last good copy is still searched"
    );
    let note = format!(
        "NYT: showing the last good copy of {}; the latest refresh failed",
        origin.url("/nyt-1.xml")
    );
    assert!(html.contains(&note), "{html}");
    assert!(html.contains("503"), "the reason is shown: {html}");

    let (_, json) = srv.api("term=house").await;
    assert_eq!(json["count"], 4);
    assert_eq!(json["notes"][0]["source"], "nyt");
    assert_eq!(json["notes"][0]["stale"], true);

    let metrics = srv.metrics().await;
    let label = format!("source=\"nyt\",feed=\"{}\"", origin.url("/nyt-1.xml"));
    assert!(
        metrics.contains(&format!("search_feed_failures_total{{{label}}} 1\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("search_feed_fetches_total{{{label}}} 2\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("search_feed_items{{{label}}} 1\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "search_feed_last_success_timestamp_seconds{{{label}}} "
        )),
        "{metrics}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn malformed_feed_beside_good_ones() {
    let origin = Origin::start().await;
    let sources = serve_world(&origin);
    origin.serve_fixture("/cnn-2.xml", "malformed.xml");
    let srv = TestServer::start(sources).await;
    let (status, html) = srv
        .post_form("/search", "term=house&cnn=on&bbc=on&nyt=on")
        .await;
    assert_eq!(status, 200);
    let want: Vec<_> = all_house_hits()
        .into_iter()
        .filter(|(_, t)| t != "Storm nears coast")
        .collect();
    assert_eq!(page_hits(&html), want);
    assert!(
        html.contains(&format!(
            "CNN: {} is unavailable: ",
            origin.url("/cnn-2.xml")
        )),
        "{html}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn concurrent_searches_share_one_origin_fetch() {
    let origin = Origin::start().await;
    let sources = serve_world(&origin);
    for path in [
        "/cnn-1.xml",
        "/cnn-2.xml",
        "/bbc-1.xml",
        "/bbc-2.xml",
        "/nyt-1.xml",
        "/nyt-2.xml",
    ] {
        origin.set(path, Behavior::Delay(Duration::from_millis(300)));
    }
    let srv = Arc::new(TestServer::start(sources).await);
    let searches: Vec<_> = (0..24)
        .map(|_| {
            let srv = Arc::clone(&srv);
            tokio::spawn(async move {
                srv.post_form("/search?term=house&cnn=on&bbc=on&nyt=on", "")
                    .await
            })
        })
        .collect();
    for s in searches {
        let (status, html) = s.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(page_hits(&html), all_house_hits());
    }
    for path in [
        "/cnn-1.xml",
        "/cnn-2.xml",
        "/bbc-1.xml",
        "/bbc-2.xml",
        "/nyt-1.xml",
        "/nyt-2.xml",
    ] {
        assert_eq!(
            origin.hits(path),
            1,
            "{path} fetched once for 24 concurrent searches"
        );
    }
    let metrics = srv.metrics().await;
    assert!(
        metrics.contains("search_http_requests_total{route=\"POST /search\",status=\"200\"} 24\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("search_duration_seconds_count 24\n"),
        "{metrics}"
    );
    assert_eq!(
        srv.app
            .metrics()
            .requests(search_server::web::Route::SearchPost, http::StatusCode::OK),
        24
    );
    Arc::into_inner(srv)
        .expect("all requests done")
        .stop()
        .await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let origin = Origin::start().await;
    let sources = serve_world(&origin);
    // A cold cache and a slow origin keep the first search in flight for a while.
    origin.set("/nyt-2.xml", Behavior::Delay(Duration::from_millis(1500)));
    let srv = TestServer::start(sources).await;
    let client = srv.http.clone();
    let url = srv.url("/search?term=house&cnn=on&bbc=on&nyt=on");
    let in_flight = tokio::spawn(async move { client.post(url).send().await });
    // Wait until the request has reached the origin, i.e. is being served.
    while origin.hits("/nyt-2.xml") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = srv.addr;
    srv.stop().await;
    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request got its answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(page_hits(&resp.text().await.unwrap()), all_house_hits());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn hostile_feed_content_is_escaped_and_links_filtered() {
    let origin = Origin::start().await;
    origin.serve_fixture("/hostile.xml", "hostile.xml");
    let sources = vec![source(&origin, "cnn", "CNN", &["/hostile.xml"])];
    let srv = TestServer::start(sources).await;
    for term in ["news", "data link", "scheme", "click", "nested"] {
        let (status, html) = srv
            .post_form("/search", &format!("term={}&cnn=on", url_encode(term)))
            .await;
        assert_eq!(status, 200);
        assert!(!page_hits(&html).is_empty(), "{term} should hit: {html}");
        let lower = html.to_lowercase();
        assert!(!lower.contains("<script"), "{html}");
        assert!(!lower.contains("<img"), "{html}");
        assert!(!lower.contains("<iframe"), "{html}");
        assert!(!lower.contains("<svg"), "{html}");
        // Our own favicon is a data: URL in the head; feed links are in the results.
        let results = &lower[lower.find("class=\"results\"").expect("results shown")..];
        assert!(!results.contains("href=\"javascript:"), "{html}");
        assert!(!results.contains("href=\"data:"), "{html}");
        assert!(!results.contains("href=\" javascript:"), "{html}");
    }
    srv.stop().await;
}
