//! `profiler serve` itself, as root, attached to workloads of our own with known answers:
//! what `go tool pprof` asks for and gets, 429/410 with the real agent, re-attaching with
//! `--wait-for`, no perf events while idle, tokens, and continuous push end to end.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::common::{self, Workload};
use super::harness::{Served, get};
use super::receiver::{Behavior, Receiver};

/// Hang guard only: a broken server must not stall CI. Never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(90);

fn pprof(args: &[&str], tmp: &Path) -> Output {
    Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        // pprof saves every fetched profile under $PPROF_TMPDIR (default ~/pprof).
        .env("PPROF_TMPDIR", tmp)
        .output()
        .expect("run go tool pprof (Debian golang-go, installed by scripts/setup.sh)")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Function names of `go tool pprof -top`'s table, in its order.
fn top_functions(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| !l.contains("flat%"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
        .collect()
}

/// BPF links the process holds: aya attaches the CPU program to each CPU's perf event
/// through a link, so while sampling there is one per CPU, and none when idle (without
/// --follow-children no other program of ours is attached by a link).
fn perf_links(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|l| l.to_string_lossy().contains("bpf_link"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn go_tool_pprof_top_names_the_heavy_function_first_and_asks_only_for_the_profile() {
    common::require_root();
    let _serial = common::serial();
    let tmp = common::scratch();
    let workload = Workload::start("cpu_split", &["120"]);
    let served = Served::start(&["--pid", &workload.pid().to_string()]);
    let url = served.url("/debug/pprof/profile?seconds=3");
    let top = ok(&pprof(&["-top", &url], tmp.path()), "go tool pprof -top");
    let functions = top_functions(&top);
    assert!(
        functions.first().is_some_and(|f| f.contains("work_sixty")),
        "heaviest first should be work_sixty:\n{top}"
    );
    let position = |name: &str| functions.iter().position(|f| f.contains(name));
    assert!(position("work_thirty") < position("work_ten"), "{top}");

    let raw = ok(
        &pprof(
            &["-raw", &served.url("/debug/pprof/profile?seconds=2")],
            tmp.path(),
        ),
        "go tool pprof -raw",
    );
    for expected in [
        "PeriodType: cpu nanoseconds",
        "Samples:",
        "samples/count cpu/nanoseconds",
        "work_sixty",
    ] {
        assert!(raw.contains(expected), "-raw lacks {expected:?}:\n{raw}");
    }

    // A refused request: pprof prints our reason (the X-Go-Pprof header makes it).
    let refused = pprof(
        &[
            "-top",
            "-seconds",
            "400",
            &served.url("/debug/pprof/profile"),
        ],
        tmp.path(),
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("400 Bad Request") && stderr.contains("--max-seconds"),
        "{stderr}"
    );

    // What pprof asked for: the profile URLs only. Our captures are symbolized (mappings
    // say has_functions), so it never posts to /debug/pprof/symbol.
    assert_eq!(
        served.requests(),
        vec![
            "GET /debug/pprof/profile?seconds=3 200",
            "GET /debug/pprof/profile?seconds=2 200",
            "GET /debug/pprof/profile?seconds=400 400",
        ],
        "{}",
        served.log()
    );
}

#[test]
fn served_captures_render_with_go_tool_pprof_svg_pdf_and_profiler_graph() {
    common::require_root();
    let _serial = common::serial();
    let tmp = common::scratch();
    let workload = Workload::start("cpu_split", &["120"]);
    let served = Served::start(&["--pid", &workload.pid().to_string()]);
    let (status, _, body) = get(&served.url("/debug/pprof/profile?seconds=2"));
    assert_eq!(status, 200);
    let cap = tmp.path().join("cpu.pb.gz");
    std::fs::write(&cap, &body).unwrap();
    let p = common::load(&cap);
    assert!(common::inclusive_share(&p, "cpu_split::work_sixty") > 40.0);
    for (flag, magic) in [("-svg", &b"<?xml"[..]), ("-pdf", &b"%PDF"[..])] {
        let out_file = tmp.path().join(format!("pprof{flag}"));
        ok(
            &pprof(
                &[
                    flag,
                    "-output",
                    out_file.to_str().unwrap(),
                    cap.to_str().unwrap(),
                ],
                tmp.path(),
            ),
            &format!("go tool pprof {flag}"),
        );
        let bytes = std::fs::read(&out_file).unwrap();
        assert!(
            bytes.starts_with(magic),
            "{flag} output starts {:?}",
            &bytes[..8.min(bytes.len())]
        );
    }
    for ext in ["svg", "pdf"] {
        let out_file = tmp.path().join(format!("graph.{ext}"));
        let out = common::profiler_cmd()
            .args([
                "graph",
                cap.to_str().unwrap(),
                "-o",
                out_file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        ok(&out, "profiler graph");
        let bytes = std::fs::read(&out_file).unwrap();
        assert!(bytes.len() > 1000, "{ext}: {} bytes", bytes.len());
    }
    let svg = std::fs::read_to_string(tmp.path().join("graph.svg")).unwrap();
    assert!(
        svg.contains("work_sixty"),
        "the graph names the hot function"
    );
}

#[test]
fn sampling_runs_only_while_a_profile_is_taken_and_one_at_a_time() {
    common::require_root();
    let _serial = common::serial();
    let workload = Workload::start("cpu_split", &["120"]);
    let served = Served::start(&["--pid", &workload.pid().to_string()]);
    let agent = served.child.0.id();
    assert_eq!(perf_links(agent), 0, "idle: no perf event attached");
    let url = served.url("/debug/pprof/profile?seconds=4");
    let first = std::thread::spawn(move || get(&url));
    let deadline = Instant::now() + HANG_GUARD;
    while perf_links(agent) == 0 {
        assert!(Instant::now() < deadline, "sampling never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, headers, body) = get(&served.url("/debug/pprof/profile?seconds=2"));
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let retry: u64 = headers["retry-after"].parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    let (status, _, body) = first.join().unwrap();
    assert_eq!(status, 200);
    let p = super::harness::decode(&body);
    assert!(
        common::total_samples(&p) > 0,
        "a 4 s capture of a busy thread"
    );
    let info = profiler::capture::info::RecordingInfo::from_comments(&p.comments).unwrap();
    assert_eq!(info.kind, "serve");
    common::assert_cpu_counter_invariant(&info);
    // The window's own counters, not the agent's since attach: exactly its samples.
    let counted = info.counter("cpu", "counted");
    assert_eq!(
        counted as i64,
        common::total_samples(&p),
        "{:?}",
        info.counters
    );
    assert_eq!(info.collectors.len(), 1, "{:?}", info.collectors);
    assert_eq!(perf_links(agent), 0, "idle again: the events are closed");
}

#[test]
fn target_exit_answers_410_and_serve_exits() {
    common::require_root();
    let _serial = common::serial();
    let workload = Workload::start("cpu_split", &["3"]);
    let mut served = Served::start(&["--pid", &workload.pid().to_string()]);
    let (status, _, body) = get(&served.url("/debug/pprof/profile?seconds=60"));
    assert_eq!(status, 410, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(&workload.pid().to_string()) && text.contains("exited"),
        "{text}"
    );
    let code = served.wait_exit(HANG_GUARD);
    assert_eq!(code, Some(0), "{}", served.log());
    assert!(
        served.log().contains("exited; stopped serving"),
        "{}",
        served.log()
    );
    drop(workload);
}

#[test]
fn wait_for_reattaches_to_the_next_process_of_that_name() {
    common::require_root();
    let _serial = common::serial();
    // A name of our own: other tests on the machine may run cpu_split at the same time.
    let dir = common::scratch();
    let name = format!("srvwait{}", std::process::id() % 100_000);
    let exe = dir.path().join(&name);
    std::fs::copy(common::workload("cpu_split"), &exe).unwrap();
    let start = |secs: &str| {
        common::Reaped(
            Command::new(&exe)
                .arg(secs)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let first = start("4");
    let first_pid = first.0.id();
    let served = Served::start(&["--wait-for", &name]);
    let deadline = Instant::now() + HANG_GUARD;
    let target_pid = |body: &[u8]| {
        let p = super::harness::decode(body);
        profiler::capture::info::RecordingInfo::from_comments(&p.comments)
            .unwrap()
            .targets[0]
            .pid
    };
    // Attached to the running one.
    let (status, _, body) = loop {
        let r = get(&served.url("/debug/pprof/profile?seconds=1"));
        if r.0 != 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{}", served.log());
    assert_eq!(target_pid(&body), first_pid);
    // It exits: the agent waits (503 with Retry-After), the server stays up.
    drop(first);
    let (status, headers, _) = loop {
        let r = get(&served.url("/debug/pprof/profile?seconds=1"));
        if r.0 == 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 503, "{}", served.log());
    assert_eq!(headers["retry-after"], "1");
    // A restarted service: attached again.
    let second = start("30");
    let (status, _, body) = loop {
        let r = get(&served.url("/debug/pprof/profile?seconds=1"));
        if r.0 == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{}", served.log());
    assert_eq!(target_pid(&body), second.0.id());
    drop(second);
}

#[test]
fn exposure_needs_a_token_or_insecure_and_the_token_is_checked() {
    common::require_root();
    let dir = common::scratch();
    let refused = common::profiler_cmd()
        .args(["serve", "--pid", "1", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--token-file") && stderr.contains("--insecure"),
        "{stderr}"
    );
    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let refused = common::profiler_cmd()
        .args([
            "serve",
            "--pid",
            "1",
            "--token-file",
            short.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("16 characters"),
        "{stderr}"
    );

    let _serial = common::serial();
    let token = "6b1f0c4e9a7d2b3c8e5f1a0d9c7b6a5e";
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let workload = Workload::start("cpu_split", &["60"]);
    let served = Served::start(&[
        "--pid",
        &workload.pid().to_string(),
        "--token-file",
        file.to_str().unwrap(),
    ]);
    let (status, _, _) = get(&served.url("/debug/pprof/cmdline"));
    assert_eq!(status, 401);
    let out = Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(served.url("/debug/pprof/cmdline"))
        .output()
        .unwrap();
    let cmdline = String::from_utf8_lossy(&out.stdout);
    assert!(
        cmdline.contains("cpu_split") && cmdline.ends_with("\u{0}60"),
        "{cmdline:?}"
    );
}

#[test]
fn continuous_push_reaches_the_receiver_and_the_directory() {
    common::require_root();
    let _serial = common::serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(Behavior::Accept));
    let dir = common::scratch();
    let workload = Workload::start("cpu_split", &["120"]);
    let pid = workload.pid().to_string();
    let mut served = Served::start(&[
        "--pid",
        &pid,
        "--push",
        &receiver.url,
        "--push-interval",
        "1s",
        "--push-dir",
        dir.path().to_str().unwrap(),
        "--service-name",
        "split",
        "--label",
        "env=ci",
        "--tenant",
        "team-a",
    ]);
    let deadline = Instant::now() + HANG_GUARD;
    while receiver.received().len() < 4 {
        assert!(Instant::now() < deadline, "no pushes:\n{}", served.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // While pushing, the endpoints still answer (a second CPU window beside the push one).
    let (status, _, _) = get(&served.url("/debug/pprof/profile?seconds=1"));
    assert_eq!(status, 200);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(served.child.0.id() as i32, libc::SIGINT) };
    assert_eq!(served.wait_exit(HANG_GUARD), Some(0), "{}", served.log());
    let got = receiver.received();
    // Intervals follow a fixed grid of ticks: one whose rotation waited (the first
    // symbolization of the target) is long and the next short; together they cover the time
    // without gaps. The last is the part interval flushed at Ctrl-C.
    let total: f64 = got
        .iter()
        .map(|r| r.profile.duration_nanos as f64 / 1e9)
        .sum();
    assert!(
        total >= (got.len() - 2) as f64 * 0.9,
        "{total} s over {} intervals",
        got.len()
    );
    for r in &got[1..] {
        assert_eq!(r.label("__name__"), Some("process_cpu"));
        assert_eq!(r.label("service_name"), Some("split"));
        assert_eq!(r.label("pid"), Some(pid.as_str()));
        assert_eq!(r.label("env"), Some("ci"));
        assert_eq!(r.tenant.as_deref(), Some("team-a"));
        let p = &r.profile;
        assert_eq!(p.sample_type_names(), vec!["samples", "cpu"]);
        assert_eq!(
            p.period,
            1_000_000_000 / 19,
            "continuous mode samples at 19 Hz"
        );
        let secs = p.duration_nanos as f64 / 1e9;
        assert!(secs > 0.0 && secs < 2.5, "{secs} s");
        if common::total_samples(p) >= 10 {
            assert!(common::inclusive_share(p, "cpu_split::work_sixty") > 30.0);
        }
    }
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(
        files >= got.len() - 1,
        "{files} files for {} pushes",
        got.len()
    );
    let log = served.log();
    assert!(
        log.contains("continuous mode:") && log.contains("pushed"),
        "{log}"
    );
    drop(rt);
}

#[test]
fn block_and_mutex_profiles_come_from_the_off_cpu_collector() {
    common::require_root();
    let _serial = common::serial();
    let tmp = common::scratch();
    let waits = Workload::start("waits", &["60"]);
    let served = Served::start(&["--pid", &waits.pid().to_string()]);
    let agent = served.child.0.id();
    let (status, _, body) = get(&served.url("/debug/pprof/block?seconds=3"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let p = super::harness::decode(&body);
    assert_eq!(p.sample_types[0].kind, "offcpu");
    assert_eq!(p.default_sample_type.as_deref(), Some("offcpu"));
    assert!(
        p.samples.iter().all(|s| s.str_label("state") != Some("R")),
        "no preemptions"
    );
    // The sleeper's split: 30 ms and 10 ms naps, 75% and 25% of its blocked time.
    let blocked_in = |f: &str| {
        p.samples
            .iter()
            .filter(|s| {
                p.sample_frames(s)
                    .any(|fr| common::plain_name(&fr.function.name) == f)
            })
            .map(|s| s.values[0])
            .sum::<i64>()
    };
    let (thirty, ten) = (
        blocked_in("waits::sleep_thirty"),
        blocked_in("waits::sleep_ten"),
    );
    assert!(thirty > 0 && ten > 0, "{thirty} {ten}");
    let share = 100.0 * thirty as f64 / (thirty + ten) as f64;
    assert!(
        (65.0..=85.0).contains(&share),
        "sleep_thirty {share:.1}% of the naps"
    );
    // go tool pprof reads it, and the agent is idle again.
    let cap = tmp.path().join("block.pb.gz");
    std::fs::write(&cap, &body).unwrap();
    ok(
        &pprof(&["-top", cap.to_str().unwrap()], tmp.path()),
        "go tool pprof -top block",
    );
    assert_eq!(
        perf_links(agent),
        0,
        "idle again: off-CPU tracepoints detached"
    );
    drop(served);
    drop(waits);

    let locks = Workload::start("locks", &["60"]);
    let served = Served::start(&["--pid", &locks.pid().to_string()]);
    let (status, _, body) = get(&served.url("/debug/pprof/mutex?seconds=2"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let p = super::harness::decode(&body);
    let total: i64 = p.samples.iter().map(|s| s.values[0]).sum();
    // Three of four threads wait for the lock most of the time: seconds of waiting in 2 s.
    assert!(total > 1_000_000_000, "{total} ns of lock waits");
    let in_contend: i64 = p
        .samples
        .iter()
        .filter(|s| {
            p.sample_frames(s)
                .any(|f| common::plain_name(&f.function.name) == "locks::contend")
        })
        .map(|s| s.values[0])
        .sum();
    assert!(
        in_contend * 10 >= total * 9,
        "lock waits are in locks::contend: {in_contend} of {total}"
    );
    let (status, _, body) = get(&served.url("/debug/pprof/block?seconds=1"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Without the collector: 501 saying how it was started.
    drop(served);
    let served = Served::start(&["--pid", &locks.pid().to_string(), "--no-offcpu"]);
    let (status, _, body) = get(&served.url("/debug/pprof/mutex?seconds=1"));
    assert_eq!(status, 501);
    assert!(String::from_utf8_lossy(&body).contains("--no-offcpu"));
}

/// The lesson's "Comparing Profiles": the heap endpoint twice, then `go tool pprof -base` and
/// `profiler diff` on the same files agree on what grew (a workload whose growth is 75% under
/// `keep`, 25% under `churn`).
#[test]
fn heap_snapshots_compare_the_same_in_go_tool_pprof_and_profiler_diff() {
    common::require_root();
    let _serial = common::serial();
    let tmp = common::scratch();
    let workload = Workload::start("heap_grow", &["120"]);
    let pid = workload.pid().to_string();
    // Without --heap: 501 saying how to get it.
    let served = Served::start(&["--pid", &pid]);
    let (status, _, body) = get(&served.url("/debug/pprof/heap"));
    assert_eq!(status, 501);
    assert!(String::from_utf8_lossy(&body).contains("--heap"));
    drop(served);

    let served = Served::start(&["--pid", &pid, "--heap", "--heap-rate", "64KiB"]);
    let save = |name: &str, path: &str| {
        let (status, _, body) = get(&served.url(path));
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let file = tmp.path().join(name);
        std::fs::write(&file, &body).unwrap();
        file
    };
    std::thread::sleep(Duration::from_secs(1));
    let base = save("base.heap", "/debug/pprof/heap");
    std::thread::sleep(Duration::from_secs(3));
    let current = save("current.heap", "/debug/pprof/heap");
    let p = profiler::capture::read_capture(&current).unwrap();
    assert_eq!(
        p.sample_type_names(),
        vec![
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    assert_eq!(p.default_sample_type.as_deref(), Some("inuse_space"));

    // go tool pprof: cumulative growth of alloc_space by function.
    let go = ok(
        &pprof(
            &[
                "-top",
                "-cum",
                "-sample_index=alloc_space",
                "-base",
                base.to_str().unwrap(),
                current.to_str().unwrap(),
            ],
            tmp.path(),
        ),
        "go tool pprof -base",
    );
    let go_cum = |f: &str| -> String {
        go.lines()
            .find(|l| l.split_whitespace().nth(5) == Some(f))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            .unwrap_or_else(|| panic!("{f} not in go tool pprof's table:\n{go}"))
    };
    // profiler diff on the same files, cumulative.
    let ours = ok(
        &common::profiler_cmd()
            .args(["diff", base.to_str().unwrap(), current.to_str().unwrap()])
            .args(["--sample-type", "alloc_space", "--cum", "-n", "30"])
            .output()
            .unwrap(),
        "profiler diff",
    );
    let our_delta = |f: &str| -> String {
        ours.lines()
            .find(|l| l.split_whitespace().last() == Some(f))
            .and_then(|l| {
                l.split_whitespace()
                    .nth(2)
                    .map(|d| d.trim_start_matches('+').to_string())
            })
            .unwrap_or_else(|| panic!("{f} not in profiler diff's table:\n{ours}"))
    };
    for f in ["heap_grow::keep", "heap_grow::churn"] {
        assert_eq!(go_cum(f), our_delta(f), "{f}: go\n{go}\nours\n{ours}");
    }
    let mb = |s: String| s.trim_end_matches("MB").parse::<f64>().unwrap();
    let (keep, churn) = (
        mb(go_cum("heap_grow::keep")),
        mb(go_cum("heap_grow::churn")),
    );
    let share = 100.0 * keep / (keep + churn);
    assert!(
        (60.0..=90.0).contains(&share),
        "keep grew {share:.1}% of the allocations"
    );

    // In use: what keep kept, nothing of churn's.
    let inuse_under = |f: &str| {
        let i = p.sample_type_index(Some("inuse_space")).unwrap();
        p.samples
            .iter()
            .filter(|s| {
                p.sample_frames(s)
                    .any(|fr| common::plain_name(&fr.function.name) == f)
            })
            .map(|s| s.values[i])
            .sum::<i64>()
    };
    assert!(inuse_under("heap_grow::keep") > 10 * inuse_under("heap_grow::churn").max(1));

    // allocs is the same profile shown by allocated space; seconds gives one window.
    let allocs =
        profiler::capture::read_capture(&save("allocs.pb.gz", "/debug/pprof/allocs")).unwrap();
    assert_eq!(allocs.default_sample_type.as_deref(), Some("alloc_space"));
    let window =
        profiler::capture::read_capture(&save("window.heap", "/debug/pprof/heap?seconds=2"))
            .unwrap();
    let secs = window.duration_nanos as f64 / 1e9;
    assert!((1.9..3.0).contains(&secs), "{secs} s");
}

/// The lesson's `curl -o trace.out /debug/pprof/trace?seconds=N`, for any process: a Perfetto
/// timeline of the target recorded in a session of its own, which Perfetto's protos read and
/// which shows the workload's known waits; a client that goes away ends the recording.
#[test]
fn trace_endpoint_serves_a_perfetto_timeline_and_stops_when_the_client_leaves() {
    common::require_root();
    let _serial = common::serial();
    let tmp = common::scratch();
    let waits = Workload::start("waits", &["120"]);
    let served = Served::start(&["--pid", &waits.pid().to_string(), "--no-offcpu"]);
    let agent = served.child.0.id();
    let (status, _, index) = get(&served.url("/debug/pprof/"));
    assert_eq!(status, 200);
    let index = String::from_utf8_lossy(&index);
    let trace_row = index
        .lines()
        .find(|l| l.contains("href=\"trace?seconds=1\""))
        .unwrap_or_else(|| panic!("no trace row: {index}"));
    assert!(!trace_row.contains("not available"), "{trace_row}");

    let (status, headers, body) = get(&served.url("/debug/pprof/trace?seconds=2"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(headers["content-disposition"].contains("attachment"));
    let file = tmp.path().join("trace.perfetto-trace");
    std::fs::write(&file, &body).unwrap();
    let v = common::perfetto_view(&file);
    assert_eq!(v["unresolved"], 0, "every interned reference resolves");
    let window = (v["service"]["tracing_disabled"].as_u64().unwrap()
        - v["service"]["tracing_started"].as_u64().unwrap()) as f64;
    assert!((window - 2e9).abs() <= 0.1 * 2e9, "window {window} ns");
    // The sleeper naps 30 ms and 10 ms in turn: its sleeps are there, of those lengths.
    let threads = v["thread_names"].as_object().expect("thread names by tid");
    let sleeper = threads
        .iter()
        .find(|(_, name)| name.as_str() == Some("sleeper"))
        .map(|(tid, _)| tid.clone())
        .unwrap_or_else(|| panic!("no sleeper thread in {threads:?}"));
    let naps: Vec<f64> = v["sleep_intervals_ns"][&sleeper]
        .as_array()
        .expect("the sleeper's sleeps")
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    let thirty = naps
        .iter()
        .filter(|&&d| (29.9e6..40e6).contains(&d))
        .count();
    let ten = naps.iter().filter(|&&d| (9.9e6..15e6).contains(&d)).count();
    assert!(thirty >= 10 && ten >= 10, "naps of 30 and 10 ms: {naps:?}");

    // Too long for a trace: 400 saying the limit; the agent stays up.
    let (status, _, body) = get(&served.url("/debug/pprof/trace?seconds=61"));
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("60"));

    // A client that gives up after 1 s of a 30 s trace: the recording's programs go soon
    // after, not 30 s later (the agent itself holds no link while idle).
    assert_eq!(perf_links(agent), 0, "idle between requests");
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "1"])
        .arg(served.url("/debug/pprof/trace?seconds=30"))
        .output()
        .expect("run curl");
    assert!(!out.status.success(), "curl gave up");
    let deadline = Instant::now() + Duration::from_secs(15);
    while perf_links(agent) > 0 {
        assert!(
            Instant::now() < deadline,
            "the trace kept recording for a client that left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _, _) = get(&served.url("/debug/pprof/trace?seconds=1"));
    assert_eq!(status, 200, "the next trace runs");
}
