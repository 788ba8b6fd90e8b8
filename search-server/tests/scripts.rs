//! The server's scripts, run for real: `scripts/load.sh` puts load (oha) on a server started
//! here on 127.0.0.1:0 over the embedded feeds, and refuses bad input with a message naming
//! it; `scripts/bench-server.sh` validates its arguments. (Running the benchmark itself is a
//! measurement, not a test.)

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use search_server::feeds::{CacheOptions, FeedCache, sources};
use search_server::server::{self, ServerOptions};
use search_server::web::App;
use tokio::process::Command;
use tokio::sync::oneshot;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

async fn run(name: &str, args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new("bash")
        .arg(script(name))
        .args(args)
        .env_remove("LOAD_REQUESTS")
        .env_remove("LOAD_CONNECTIONS")
        .env_remove("LOAD_URL")
        .env_remove("LOAD_DURATION")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[tokio::test]
async fn load_help_shows_the_tutorial_command() {
    let (code, out, _) = run("load.sh", &["--help"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(
            r#"oha -m POST -c 8 -n 100000 "http://localhost:5000/search?term=house&cnn=on&bbc=on&nyt=on""#
        ),
        "{out}"
    );
    assert!(out.contains("Examples:"), "{out}");
}

#[tokio::test]
async fn load_refuses_bad_input_by_name() {
    for (args, want) in [
        (
            &["-n", "lots"][..],
            "request count 'lots' is not a positive whole number",
        ),
        (
            &["-c", "0"],
            "connection count '0' is not a positive whole number",
        ),
        (
            &["-u", "localhost:5000/search"],
            "URL 'localhost:5000/search' must start with http://",
        ),
        (&["-z", "soon"], "duration 'soon' is not like 30s"),
        (&["--fast"], "unknown argument '--fast'"),
        (&["-n"], "-n needs a value"),
    ] {
        let (code, _, err) = run("load.sh", args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn load_says_when_no_server_answers() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/search?term=house&cnn=on");
    let (code, _, err) = run("load.sh", &["-n", "10", "-u", &url]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("nothing answers at {url}")), "{err}");
    assert!(err.contains("start the server first"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_puts_the_requests_on_a_running_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cache = FeedCache::new(sources::embedded(), CacheOptions::default());
    cache.refresh_all().await;
    let app = App::new(cache);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        listener,
        Arc::clone(&app),
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let url = format!("http://{addr}/search?term=house&cnn=on&bbc=on&nyt=on");
    let (code, out, err) = run("load.sh", &["-n", "300", "-c", "3", "-u", &url]).await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("Success rate:\t100.00%"), "{out}");
    assert!(
        err.contains(&format!("load: POST {url}, 300 requests, 3 connections")),
        "{err}"
    );
    // The probe request plus the 300 of the load, all searched.
    let metrics = app.metrics().render(&app.cache().stats());
    assert!(
        metrics.contains("search_http_requests_total{route=\"POST /search\",status=\"200\"} 301\n"),
        "{metrics}"
    );

    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn bench_server_help_and_bad_arguments() {
    let (code, out, _) = run("bench-server.sh", &["--help"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("Usage: scripts/bench-server.sh"), "{out}");
    assert!(out.contains("fixed_page"), "{out}");
    let (code, _, err) = run("bench-server.sh", &["3", "many"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("'many' is not a positive whole number"),
        "{err}"
    );
}
