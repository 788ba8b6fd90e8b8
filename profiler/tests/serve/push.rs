//! The push loop over a fake agent against the test receiver, on tokio's paused clock:
//! intervals, retries and backoff take no wall time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use profiler::serve::{Protocol, PushAuth, PushOptions, PushStats, TargetState, run_push};

use super::harness::{FAKE_PERIOD, FAKE_PID, attached, fake_agent};
use super::receiver::{Behavior, Receiver};

fn options(url: Option<String>, interval_secs: u64) -> PushOptions {
    let mut o = PushOptions::new(Duration::from_secs(interval_secs));
    o.url = url;
    o.labels = vec![("env".into(), "test".into())];
    o
}

/// Runs the push loop for `for_secs` of tokio time, then shuts it down.
async fn run_for(opts: PushOptions, for_secs: u64) -> (Arc<PushStats>, super::harness::FakeAgent) {
    let agent = fake_agent();
    let stats = Arc::new(PushStats::default());
    opts.validate().unwrap();
    run_push(
        agent.handle.clone(),
        opts,
        Arc::clone(&stats),
        tokio::time::sleep(Duration::from_secs(for_secs)),
    )
    .await;
    (stats, agent)
}

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[tokio::test(start_paused = true)]
async fn every_interval_is_pushed_with_its_labels_types_and_duration() {
    let receiver = Receiver::start(Behavior::Accept).await;
    let mut opts = options(Some(receiver.url.clone()), 15);
    opts.tenant = Some("team-a".into());
    opts.auth = PushAuth::Bearer("push-secret".into());
    // Three whole intervals, then a partial one sent at shutdown.
    let (stats, agent) = run_for(opts, 50).await;
    let got = receiver.received();
    assert_eq!(got.len(), 4, "{}", stats.summary());
    assert_eq!(count(&stats.pushed), 4);
    assert_eq!(count(&stats.failed_attempts), 0);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.path, "/push.v1.PusherService/Push");
        assert_eq!(r.content_type, "application/proto");
        assert_eq!(r.connect_version.as_deref(), Some("1"));
        assert_eq!(r.tenant.as_deref(), Some("team-a"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer push-secret"));
        assert_eq!(r.label("__name__"), Some("process_cpu"));
        assert_eq!(r.label("service_name"), Some("fake-service"));
        assert_eq!(r.label("pid"), Some(FAKE_PID.to_string().as_str()));
        assert_eq!(r.label("env"), Some("test"));
        assert!(r.label("host").is_some_and(|h| !h.is_empty()));
        assert_eq!(r.id.len(), 36, "a UUID per profile");
        let p = &r.profile;
        assert_eq!(p.sample_type_names(), vec!["samples", "cpu"]);
        assert_eq!(p.sample_types[1].unit, "nanoseconds");
        assert_eq!(p.period_type.as_ref().unwrap().kind, "cpu");
        assert_eq!(p.period, FAKE_PERIOD);
        let expected = if i < 3 { 15 } else { 5 };
        assert_eq!(
            p.duration_nanos,
            expected * 1_000_000_000,
            "interval {i} lasts its {expected} s"
        );
    }
    let ids: std::collections::HashSet<_> = got.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 4);
    // One window, rotated at each tick, closed at the end: no gap, no overlap.
    assert_eq!(
        agent.logged(),
        vec![
            "open profile 1",
            "rotate 1",
            "rotate 1",
            "rotate 1",
            "close 1"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_ingest_fallback_sends_multipart_pprof_with_the_name_and_times() {
    let receiver = Receiver::start(Behavior::Accept).await;
    let mut opts = options(Some(receiver.url.clone()), 10);
    opts.protocol = Protocol::Ingest;
    opts.service_name = Some("search".into());
    opts.auth = PushAuth::Basic {
        user: "12345".into(),
        password: "pw".into(),
    };
    let (stats, _agent) = run_for(opts, 20).await;
    let got = receiver.received();
    assert_eq!(got.len(), 2, "{}", stats.summary());
    for r in &got {
        assert_eq!(r.path, "/ingest");
        assert!(r.content_type.starts_with("multipart/form-data; boundary="));
        // Basic base64("12345:pw").
        assert_eq!(r.authorization.as_deref(), Some("Basic MTIzNDU6cHc="));
        assert_eq!(r.label("service_name"), Some("search"));
        assert_eq!(r.label("env"), Some("test"));
        assert_eq!(r.label("pid"), Some("4242"));
        let q = |k: &str| {
            r.query
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(q("format"), "pprof");
        let from: u64 = q("from").parse().unwrap();
        let until: u64 = q("until").parse().unwrap();
        assert!(until >= from);
        assert_eq!(r.profile.sample_type_names(), vec!["samples", "cpu"]);
        assert_eq!(r.profile.duration_nanos, 10_000_000_000);
    }
}

#[tokio::test(start_paused = true)]
async fn failed_pushes_are_retried_with_backoff() {
    let receiver = Receiver::start(Behavior::FailTimes(503, 2)).await;
    let opts = options(Some(receiver.url.clone()), 15);
    let started = tokio::time::Instant::now();
    let (stats, _agent) = run_for(opts, 20).await;
    // The 15 s interval is tried at +0, +1 s, +2 s after it; the 5 s left at shutdown once.
    assert_eq!(count(&stats.failed_attempts), 2, "{}", stats.summary());
    assert_eq!(count(&stats.pushed), 2);
    assert_eq!(count(&stats.dropped), 0);
    assert_eq!(receiver.request_count(), 4);
    assert!(
        stats.summary().contains("test receiver says no"),
        "{}",
        stats.summary()
    );
    assert!(started.elapsed() >= Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_server_costs_a_counter_not_the_agent() {
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut opts = options(Some(format!("http://{closed}")), 5);
    opts.attempts = 3;
    let (stats, agent) = run_for(opts, 32).await;
    // 6 intervals + the 2 s left at shutdown; each tried 3 times, then dropped (the last may
    // be cut short by the exit budget).
    assert_eq!(count(&stats.intervals), 7, "{}", stats.summary());
    assert_eq!(count(&stats.pushed), 0);
    assert!(count(&stats.dropped) >= 6, "{}", stats.summary());
    assert!(count(&stats.failed_attempts) >= 18, "{}", stats.summary());
    let summary = stats.summary();
    assert!(summary.contains("last error"), "{summary}");
    // The agent was asked for every interval regardless.
    assert_eq!(
        agent
            .logged()
            .iter()
            .filter(|l| l.starts_with("rotate"))
            .count(),
        6
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_profile_is_dropped_without_retries() {
    let receiver = Receiver::start(Behavior::Always(400)).await;
    let (stats, _agent) = run_for(options(Some(receiver.url.clone()), 10), 10).await;
    assert_eq!(count(&stats.failed_attempts), count(&stats.dropped));
    assert!(count(&stats.dropped) >= 1);
    assert_eq!(receiver.request_count() as u64, count(&stats.dropped));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_server_fills_a_bounded_queue_and_captures_are_dropped() {
    let receiver = Receiver::start(Behavior::Hang).await;
    let mut opts = options(Some(receiver.url.clone()), 1);
    opts.timeout = Duration::from_secs(600);
    opts.queue = 3;
    let (stats, _agent) = run_for(opts, 40).await;
    let intervals = count(&stats.intervals);
    assert_eq!(intervals, 40, "{}", stats.summary());
    // One capture in flight, three queued: everything else was dropped, never held.
    assert_eq!(
        count(&stats.queue_full),
        intervals - 4,
        "{}",
        stats.summary()
    );
    // The first push hung until its timeout; the exit gives pending pushes a bounded time.
    assert!(
        receiver.request_count() <= 3,
        "{}",
        receiver.request_count()
    );
}

#[tokio::test(start_paused = true)]
async fn push_dir_gets_each_interval_as_a_capture_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(None, 15);
    opts.dir = Some(dir.path().to_path_buf());
    let (stats, _agent) = run_for(opts, 45).await;
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(count(&stats.written) as usize, files.len());
    // 3 intervals; the shutdown at the third tick leaves nothing worth a file.
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("process_cpu-") && name.contains(&format!("-{FAKE_PID}-")),
            "{name}"
        );
        let p = profiler::capture::read_capture(f).unwrap();
        assert_eq!(p.sample_type_names(), vec!["samples", "cpu"]);
    }
}

#[tokio::test(start_paused = true)]
async fn the_loop_ends_when_the_target_is_gone_for_good() {
    let receiver = Receiver::start(Behavior::Accept).await;
    let agent = fake_agent();
    let stats = Arc::new(PushStats::default());
    let loop_done = tokio::spawn(run_push(
        agent.handle.clone(),
        options(Some(receiver.url.clone()), 5),
        Arc::clone(&stats),
        std::future::pending::<()>(),
    ));
    tokio::time::sleep(Duration::from_secs(12)).await;
    agent.state.send_replace(TargetState::Gone {
        pid: FAKE_PID,
        process: "fake-service".into(),
    });
    tokio::time::timeout(Duration::from_secs(60), loop_done)
        .await
        .expect("the push loop ends with its target")
        .unwrap();
    assert_eq!(count(&stats.pushed), 2, "{}", stats.summary());
}

#[test]
fn options_are_checked_up_front() {
    let mut o = PushOptions::new(Duration::from_secs(15));
    assert!(
        o.validate()
            .unwrap_err()
            .to_string()
            .contains("--push URL or --push-dir")
    );
    o.url = Some("localhost:4040".into());
    assert!(o.validate().unwrap_err().to_string().contains("http://"));
    o.url = Some("http://localhost:4040".into());
    o.validate().unwrap();
    o.labels = vec![("bad-name".into(), "x".into())];
    assert!(o.validate().unwrap_err().to_string().contains("bad-name"));
    o.labels = vec![("__name__".into(), "x".into())];
    assert!(o.validate().is_err(), "__name__ is ours");
    o.labels.clear();
    o.interval = Duration::from_millis(500);
    assert!(o.validate().unwrap_err().to_string().contains("too short"));
    o.interval = Duration::from_secs(1);
    o.dir = Some("/nonexistent/dir".into());
    assert!(
        o.validate()
            .unwrap_err()
            .to_string()
            .contains("not a directory")
    );
}

#[tokio::test(start_paused = true)]
async fn with_heap_a_memory_profile_goes_beside_the_cpu_one() {
    let receiver = Receiver::start(Behavior::Accept).await;
    let agent = fake_agent();
    agent.state.send_replace(attached(&["cpu", "heap"]));
    let mut opts = options(Some(receiver.url.clone()), 15);
    opts.heap = true;
    let stats = Arc::new(PushStats::default());
    run_push(
        agent.handle.clone(),
        opts,
        Arc::clone(&stats),
        // Off the ticks (15 s, 30 s): a shutdown due with a tick may win either way.
        tokio::time::sleep(Duration::from_secs(40)),
    )
    .await;
    let names: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.label("__name__").unwrap().to_string())
        .collect();
    assert_eq!(names, ["process_cpu", "memory"].repeat(3));
    assert_eq!(
        agent.logged(),
        vec![
            "open profile 1",
            "open heap 2",
            "rotate 1",
            "rotate 2",
            "rotate 1",
            "rotate 2",
            "close 1",
            "close 2"
        ]
    );
}
