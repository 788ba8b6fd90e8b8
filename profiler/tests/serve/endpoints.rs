//! The endpoints over a fake agent, on tokio's paused clock: a 30-second profile takes no
//! wall time, and `Retry-After`, timeouts and windows are exact. No eBPF, no root.

use std::time::Duration;

use profiler::serve::{EndpointOptions, HttpOptions, Kind, TargetState};
use reqwest::StatusCode;

use super::harness::{FAKE_PID, attached, decode, fake_agent, raw, start_endpoints};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[tokio::test(start_paused = true)]
async fn profile_is_a_gzipped_pprof_of_the_seconds_asked() {
    let agent = fake_agent();
    let (base, _stop) =
        start_endpoints(&agent, EndpointOptions::default(), HttpOptions::default()).await;
    let (status, headers, body) = get(&format!("{base}/debug/pprof/profile?seconds=7")).await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"profile\""
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzipped");
    let p = decode(&body);
    assert_eq!(
        p.duration_nanos, 7_000_000_000,
        "the window is the 7 s asked"
    );
    // Without seconds, Go's default of 30 s.
    let (status, _, body) = get(&format!("{base}/debug/pprof/profile")).await;
    assert_eq!(status, 200);
    assert_eq!(decode(&body).duration_nanos, 30_000_000_000);
    let log = agent.logged();
    assert_eq!(
        log,
        vec!["open profile 1", "close 1", "open profile 2", "close 2"]
    );
}

#[tokio::test(start_paused = true)]
async fn default_and_max_seconds_are_options() {
    let agent = fake_agent();
    let opts = EndpointOptions {
        max_seconds: 10,
        default_seconds: Some(3),
        ..EndpointOptions::default()
    };
    let (base, _stop) = start_endpoints(&agent, opts, HttpOptions::default()).await;
    let (status, _, body) = get(&format!("{base}/debug/pprof/profile")).await;
    assert_eq!(status, 200);
    assert_eq!(decode(&body).duration_nanos, 3_000_000_000);
    let (status, _, body) = get(&format!("{base}/debug/pprof/profile?seconds=11")).await;
    assert_eq!(status, 400);
    assert!(text(&body).contains("--max-seconds"), "{}", text(&body));
}

#[tokio::test(start_paused = true)]
async fn bad_seconds_are_400_with_a_reason_go_tool_pprof_prints() {
    let agent = fake_agent();
    let (base, _stop) =
        start_endpoints(&agent, EndpointOptions::default(), HttpOptions::default()).await;
    for bad in [
        "0",
        "-5",
        "abc",
        "2.5",
        "",
        "301",
        "99999999999999999999999",
    ] {
        let (status, headers, body) =
            get(&format!("{base}/debug/pprof/profile?seconds={bad}")).await;
        assert_eq!(status, 400, "seconds={bad}");
        // pprof prints the body of a text/plain answer marked X-Go-Pprof.
        assert_eq!(headers["x-go-pprof"], "1");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let t = text(&body);
        assert!(t.contains("seconds"), "seconds={bad}: {t}");
    }
    assert!(agent.logged().is_empty(), "no window for a bad request");
}

#[tokio::test(start_paused = true)]
async fn a_second_profile_of_a_kind_gets_429_with_retry_after() {
    let agent = fake_agent();
    let (base, _stop) =
        start_endpoints(&agent, EndpointOptions::default(), HttpOptions::default()).await;
    let first = tokio::spawn({
        let url = format!("{base}/debug/pprof/profile?seconds=30");
        async move { get(&url).await }
    });
    agent.until_logged("open profile").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (status, headers, body) = get(&format!("{base}/debug/pprof/profile?seconds=5")).await;
    assert_eq!(status, 429, "{}", text(&body));
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    // 20 s of the first profile remain.
    assert!((20..=21).contains(&retry), "Retry-After {retry}");
    assert!(
        text(&body).contains("one profile of a kind"),
        "{}",
        text(&body)
    );
    let (status, _, body) = first.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        decode(&body).duration_nanos,
        30_000_000_000,
        "not disturbed"
    );
    // Free again.
    let (status, _, _) = get(&format!("{base}/debug/pprof/profile?seconds=1")).await;
    assert_eq!(status, 200);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_frees_its_window_and_slot() {
    let agent = fake_agent();
    let (base, _stop) =
        start_endpoints(&agent, EndpointOptions::default(), HttpOptions::default()).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = impatient
        .get(format!("{base}/debug/pprof/profile?seconds=60"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    agent.until_logged("cancel 1").await;
    let (status, _, _) = get(&format!("{base}/debug/pprof/profile?seconds=1")).await;
    assert_eq!(status, 200, "the slot was freed");
}

#[tokio::test(start_paused = true)]
async fn target_exit_answers_410_in_flight_and_after() {
    let agent = fake_agent();
    let (base, _stop) =
        start_endpoints(&agent, EndpointOptions::default(), HttpOptions::default()).await;
    let in_flight = tokio::spawn({
        let url = format!("{base}/debug/pprof/profile?seconds=60");
        async move { get(&url).await }
    });
    agent.until_logged("open profile").await;
    agent.state.send_replace(TargetState::Gone {
        pid: FAKE_PID,
        process: "fake-service".into(),
    });
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, 410);
    let t = text(&body);
    assert!(t.contains("4242") && t.contains("exited"), "{t}");
    for path in ["", "profile?seconds=1", "cmdline", "symbol", "heap"] {
        let (status, _, body) = get(&format!("{base}/debug/pprof/{path}")).await;
        assert_eq!(status, 410, "/debug/pprof/{path}: {}", text(&body));
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_process_answers_503_and_the_index_says_so() {
    let agent = fake_agent();
    agent.state.send_replace(TargetState::Waiting {
        name: "search-server".into(),
        previous: Some(77),
    });
    let (base, _stop) =
        start_endpoints(&agent, EndpointOptions::default(), HttpOptions::default()).await;
    let (status, headers, body) = get(&format!("{base}/debug/pprof/profile?seconds=1")).await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
    assert!(text(&body).contains("search-server"), "{}", text(&body));
    let (status, _, body) = get(&format!("{base}/debug/pprof/")).await;
    assert_eq!(status, 200);
    assert!(text(&body).contains("Waiting for a process named"));
    // Re-attached: served again.
    agent.state.send_replace(attached(&["cpu"]));
    let (status, _, _) = get(&format!("{base}/debug/pprof/profile?seconds=1")).await;
    assert_eq!(status, 200);
}

#[tokio::test(start_paused = true)]
async fn kinds_without_a_collector_are_501_with_a_clear_text() {
    let agent = fake_agent();
    let (base, _stop) =
        start_endpoints(&agent, EndpointOptions::default(), HttpOptions::default()).await;
    // The fake agent runs only the cpu collector; a trace needs none (it records in a session
    // of its own: tests/serve/live.rs).
    for kind in Kind::ALL
        .into_iter()
        .filter(|k| !matches!(k, Kind::Cpu | Kind::Trace))
    {
        let (status, _, body) = get(&format!("{base}/debug/pprof/{}", kind.endpoint())).await;
        assert_eq!(status, 501, "{kind:?}");
        let t = text(&body);
        let why = match kind {
            Kind::Block | Kind::Mutex => "--no-offcpu",
            Kind::Heap | Kind::Allocs => "--heap",
            other => unreachable!("{other:?} is served without a collector"),
        };
        assert!(t.contains("collector") && t.contains(why), "{t}");
    }
    let (status, _, body) = get(&format!("{base}/debug/pprof/goroutine")).await;
    assert_eq!(status, 501);
    assert!(text(&body).contains("no goroutines"));
    assert!(agent.logged().is_empty());
}

#[tokio::test(start_paused = true)]
async fn index_cmdline_and_symbol() {
    let agent = fake_agent();
    let (base, _stop) =
        start_endpoints(&agent, EndpointOptions::default(), HttpOptions::default()).await;
    let (status, headers, body) = get(&format!("{base}/debug/pprof/")).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = text(&body);
    for link in [
        "href=\"profile?seconds=30\"",
        "href=\"heap\"",
        "href=\"cmdline\"",
    ] {
        assert!(page.contains(link), "{link} missing:\n{page}");
    }
    assert!(!page.contains("<script"), "no JavaScript");
    assert!(page.contains("pid 4242 (fake-service)"));
    // Go's redirect of the bare path.
    let (status, headers, _) = get(&format!("{base}/debug/pprof")).await;
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "/debug/pprof/");
    // Arguments separated by NUL, without the trailing one, like os.Args joined.
    let (status, _, body) = get(&format!("{base}/debug/pprof/cmdline")).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"/usr/bin/fake-service\0--port\x005000");
    let (status, _, body) = get(&format!("{base}/debug/pprof/symbol")).await;
    assert_eq!(status, 200);
    assert_eq!(text(&body), "num_symbols: 1\n");
    let r = client()
        .post(format!("{base}/debug/pprof/symbol"))
        .body("0x401000+0x402000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "num_symbols: 1\n0x401000 fake::function_at_401000\n0x402000 fake::function_at_402000\n"
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_paths_and_wrong_methods() {
    let agent = fake_agent();
    let (base, _stop) =
        start_endpoints(&agent, EndpointOptions::default(), HttpOptions::default()).await;
    let (status, _, body) = get(&format!("{base}/nope")).await;
    assert_eq!(status, 404);
    assert!(text(&body).contains("/debug/pprof/"));
    let (status, _, _) = get(&format!("{base}/debug/pprof/nope")).await;
    assert_eq!(status, 404);
    let r = client()
        .post(format!("{base}/debug/pprof/profile?seconds=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
}

#[tokio::test(start_paused = true)]
async fn the_token_is_required_on_every_url() {
    let agent = fake_agent();
    let token = "0123456789abcdef0123456789abcdef";
    let opts = EndpointOptions {
        token: Some(token.into()),
        ..EndpointOptions::default()
    };
    let (base, _stop) = start_endpoints(&agent, opts, HttpOptions::default()).await;
    for path in ["/debug/pprof/", "/debug/pprof/profile?seconds=1", "/nope"] {
        let (status, headers, _) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"profiler\"");
    }
    let with = |t: &str| {
        client()
            .get(format!("{base}/debug/pprof/profile?seconds=1"))
            .bearer_auth(t)
            .send()
    };
    assert_eq!(with("wrong-token-wrong-token").await.unwrap().status(), 401);
    assert_eq!(with(&token[..31]).await.unwrap().status(), 401);
    let r = with(token).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(agent.logged(), vec!["open profile 1", "close 1"]);
}

#[tokio::test(start_paused = true)]
async fn oversized_heads_and_bodies_are_refused() {
    let agent = fake_agent();
    let opts = EndpointOptions {
        max_body_bytes: 1024,
        ..EndpointOptions::default()
    };
    let (base, _stop) = start_endpoints(&agent, opts, HttpOptions::default()).await;
    let big = format!(
        "GET /debug/pprof/ HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let answer = raw(&base, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw(
        &base,
        format!("GET /debug/pprof/ HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let r = client()
        .post(format!("{base}/debug/pprof/symbol"))
        .body("0x1+".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test(start_paused = true)]
async fn a_client_trickling_its_head_is_cut_off() {
    let agent = fake_agent();
    let http = HttpOptions {
        header_read_timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    };
    let (base, _stop) = start_endpoints(&agent, EndpointOptions::default(), http).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    // The server must close the connection (after answering 408 or not) by itself.
    let read = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection was not closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(7),
        "closed after {waited:?}"
    );
    let answer = String::from_utf8_lossy(&out);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // The server still serves others.
    let (status, _, _) = get(&format!("{base}/debug/pprof/")).await;
    assert_eq!(status, 200);
}
