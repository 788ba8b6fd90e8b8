//! Options that shape the readings: how diff makes captures comparable (per second for time,
//! totals for heap, `--normalize`), a regex that leaves nothing in each command, and the
//! examples in every command's `--help`.

use profiler::capture;
use serde_json::Value;

use super::{fixture, fixtures, ok, path_str, profiler, stderr};

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).unwrap()
}

fn row<'a>(table: &'a Value, function: &str) -> &'a Value {
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["function"] == function)
        .unwrap_or_else(|| panic!("{function} not in {table}"))
}

#[test]
fn diff_compares_time_per_second_and_heap_as_totals() {
    let dir = tempfile::tempdir().unwrap();
    // The same CPU samples over twice the time: half the CPU per second, same shares.
    let mut longer = fixtures::cpu(false);
    longer.duration_nanos *= 2;
    let longer_path = dir.path().join("longer.pb.gz");
    capture::write_pprof(&longer, &longer_path).unwrap();
    let cpu = path_str(&fixture("cpu.pb.gz")).to_string();
    let t = json(&["diff", &cpu, path_str(&longer_path), "--format", "json"]);
    assert_eq!(t["scaling"], "per_second", "{t}");
    assert_eq!(t["measure"], "flat", "flat by default, as go tool pprof");
    assert_eq!(t["unit"], "ms per second of capture");
    let m = row(&t, "search_server::search::matches");
    // 60 samples of 10.10101 ms over 2 s, then over 4 s.
    assert!(
        (m["base"].as_f64().unwrap() - 303.0303e6).abs() < 1e3,
        "{m}"
    );
    assert!(
        (m["current"].as_f64().unwrap() - 151.51515e6).abs() < 1e3,
        "{m}"
    );
    assert!(m["share_delta"].as_f64().unwrap().abs() < 1e-9, "{m}");

    // --normalize scales base to current's total: nothing changed.
    let t = json(&[
        "diff",
        &cpu,
        path_str(&longer_path),
        "--normalize",
        "--format",
        "json",
    ]);
    assert_eq!(t["scaling"], "normalized");
    for r in t["rows"].as_array().unwrap() {
        assert!(r["delta"].as_f64().unwrap().abs() < 1e-3, "{r}");
    }

    // Heap: totals, whatever the durations; one site doubled its in-use bytes.
    let mut base = fixtures::heap();
    base.duration_nanos = 10_000_000_000;
    let mut current = fixtures::heap();
    current.duration_nanos = 30_000_000_000;
    let inuse = current.sample_type_index(Some("inuse_space")).unwrap();
    current.samples[0].values[inuse] *= 2;
    let (bp, cp) = (dir.path().join("h1.pb.gz"), dir.path().join("h2.pb.gz"));
    capture::write_pprof(&base, &bp).unwrap();
    capture::write_pprof(&current, &cp).unwrap();
    let t = json(&["diff", path_str(&bp), path_str(&cp), "--format", "json"]);
    assert_eq!(
        t["sample_type"], "inuse_space",
        "the default type of a heap profile"
    );
    assert_eq!(t["scaling"], "totals", "{t}");
    let c = row(&t, "search_server::feeds::cache::insert");
    assert_eq!(c["base"].as_f64().unwrap(), (3 << 20) as f64);
    assert_eq!(c["delta"].as_f64().unwrap(), (3 << 20) as f64);
    let text = ok(&["diff", path_str(&bp), path_str(&cp)]);
    assert!(
        text.starts_with("Type: inuse_space (bytes, totals)"),
        "{text}"
    );
    assert!(text.contains("+3.00MB"), "{text}");
}

#[test]
fn a_regex_that_leaves_nothing_fails_in_every_command() {
    let cpu = path_str(&fixture("cpu.pb.gz")).to_string();
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("x.svg");
    for args in [
        vec!["top", &cpu, "--focus", "^nothing$"],
        vec!["top", &cpu, "--ignore", "search_server"],
        vec!["fold", &cpu, "--focus", "^nothing$"],
        vec!["flamegraph", &cpu, "--ignore", ".", "-o", path_str(&svg)],
        vec!["list", &cpu, "^nothing$"],
        vec!["diff", &cpu, &cpu, "--focus", "^nothing$"],
        vec!["diff", &cpu, &cpu, "--ignore", "main", "-o", path_str(&svg)],
    ] {
        let o = profiler(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = stderr(&o);
        assert!(
            err.contains("loosen the regexes") || err.contains("no function with samples matches"),
            "{args:?}: {err}"
        );
    }
    assert!(!svg.exists(), "no SVG is written when nothing is left");
}

#[test]
fn every_command_has_examples_in_its_help() {
    let top = ok(&["--help"]);
    assert!(top.contains("Examples:"), "{top}");
    for cmd in [
        "record",
        "flamegraph",
        "fold",
        "top",
        "list",
        "diff",
        "convert",
    ] {
        let help = ok(&[cmd, "--help"]);
        assert!(help.contains("Examples:"), "{cmd} --help:\n{help}");
        assert!(
            help.contains(&format!("profiler {cmd} ")),
            "{cmd} --help shows its own use:\n{help}"
        );
    }
}

#[test]
fn diff_focus_keeps_the_matching_stacks_on_both_sides() {
    let cpu = path_str(&fixture("cpu.pb.gz")).to_string();
    let slower = path_str(&fixture("cpu-slower.pb.gz")).to_string();
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("focus.svg");
    let t = json(&[
        "diff",
        &cpu,
        &slower,
        "--focus",
        "search::run",
        "--ignore",
        "lowercase",
        "--format",
        "json",
        "-o",
        path_str(&svg),
    ]);
    let functions: Vec<&str> = t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["function"].as_str().unwrap())
        .collect();
    assert!(functions.contains(&"search_server::feeds::parse"), "{t}");
    assert!(
        !functions.contains(&"sys_read"),
        "not under search::run: {t}"
    );
    assert!(
        !functions.contains(&"search_server::search::lowercase"),
        "ignored: {t}"
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("feeds::parse") && !text.contains("sys_read"));
    // Title and subtitle from both captures' metadata.
    assert!(text.contains("Differential flame graph: pid 4242 (search-server)"));
    assert!(text.contains("base 2.00 s → current 2.00 s"));
}
