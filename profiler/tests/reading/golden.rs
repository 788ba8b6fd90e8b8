//! Golden-file tests of every rendering on the fixture captures. `BLESS=1` rewrites the files.

use super::{fixture, manifest_dir, ok, path_str, profiler, stderr};

/// Compares `actual` with tests/golden/NAME, or writes it under BLESS=1.
pub fn check_golden(name: &str, actual: &str) {
    let path = manifest_dir().join("tests/golden").join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with BLESS=1 to create it", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b);
        panic!(
            "{} differs (first differing line {first:?}); rerun with BLESS=1 if the change is intended\n--- actual ---\n{}",
            path.display(),
            &actual[..actual.len().min(4000)]
        );
    }
}

fn cpu() -> String {
    path_str(&fixture("cpu.pb.gz")).to_string()
}

fn slower() -> String {
    path_str(&fixture("cpu-slower.pb.gz")).to_string()
}

#[test]
fn top_text_csv_json_cum() {
    check_golden("top.txt", &ok(&["top", &cpu()]));
    check_golden("top-cum.txt", &ok(&["top", &cpu(), "--cum", "-n", "4"]));
    check_golden("top.csv", &ok(&["top", &cpu(), "--format", "csv"]));
    check_golden(
        "top-samples.json",
        &ok(&[
            "top",
            &cpu(),
            "--format",
            "json",
            "--sample-type",
            "samples",
        ]),
    );
    check_golden(
        "top-focus.txt",
        &ok(&["top", &cpu(), "--focus", "feeds", "--ignore", "sys_"]),
    );
    let heap = path_str(&fixture("heap.pb.gz")).to_string();
    check_golden("top-heap.txt", &ok(&["top", &heap]));
    check_golden(
        "top-heap-alloc_objects.txt",
        &ok(&["top", &heap, "--sample-type", "alloc_objects"]),
    );
}

#[test]
fn top_values_are_right() {
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "top",
        &cpu(),
        "--format",
        "json",
        "--sample-type",
        "samples",
    ]))
    .unwrap();
    assert_eq!(json["total"], 150.0);
    assert_eq!(
        json["rows"][0]["function"],
        "search_server::search::matches"
    );
    // matches: 40 + 20 flat (the inlined lowercase takes the leaf of the third stack).
    assert_eq!(json["rows"][0]["flat"], 60.0);
}

#[test]
fn list_with_and_without_source() {
    let src = "tests/fixtures".to_string();
    check_golden(
        "list-found.txt",
        &ok(&["list", &cpu(), "search::matches$", "--source-dir", &src]),
    );
    let out = ok(&["list", &cpu(), "search::(matches|run)$"]);
    assert!(out.contains("source file src/search.rs not found"), "{out}");
    check_golden("list-missing-source.txt", &out);
}

#[test]
fn fold_output() {
    check_golden("cpu.folded", &ok(&["fold", &cpu()]));
    check_golden(
        "cpu-samples.folded",
        &ok(&["fold", &cpu(), "--sample-type", "samples"]),
    );
}

#[test]
fn flamegraph_svgs() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("cpu.svg");
    ok(&["flamegraph", &cpu(), "-o", path_str(&svg)]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("CPU: pid 4242 (search-server)"),
        "title from metadata"
    );
    assert!(
        text.contains("150 samples"),
        "subtitle carries the sample count"
    );
    check_golden("cpu.svg", &text);

    let icicle = dir.path().join("icicle.svg");
    ok(&[
        "flamegraph",
        &cpu(),
        "-o",
        path_str(&icicle),
        "--reverse",
        "--per-thread",
        "--sample-type",
        "samples",
    ]);
    let text = std::fs::read_to_string(&icicle).unwrap();
    assert!(
        text.contains("worker-1 (tid 101)"),
        "per-thread root frames"
    );
    check_golden("cpu-icicle-per-thread.svg", &text);

    let focused = dir.path().join("focus.svg");
    ok(&[
        "flamegraph",
        &cpu(),
        "-o",
        path_str(&focused),
        "--focus",
        "feeds::parse",
    ]);
    let text = std::fs::read_to_string(&focused).unwrap();
    assert!(text.contains("feeds::parse") && !text.contains("search::matches"));
}

#[test]
fn diff_table_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("diff.svg");
    let table = ok(&["diff", &cpu(), &slower(), "-o", path_str(&svg)]);
    check_golden("diff.txt", &table);
    // The two biggest share changes lead the table: matches grew, parse shrank.
    let lead: Vec<&str> = table.lines().skip(3).take(2).collect();
    assert!(
        lead.iter()
            .any(|l| l.ends_with("search::matches") && l.contains("+303.03ms")),
        "{table}"
    );
    assert!(
        lead.iter()
            .any(|l| l.ends_with("feeds::parse") && l.contains("-151.52ms")),
        "{table}"
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    check_golden("diff.svg", &text);
    // By cum: `run` (which calls both) grew with `matches`; `main` stays at 100%.
    let cum = ok(&["diff", &cpu(), &slower(), "--cum"]);
    check_golden("diff-cum.txt", &cum);
    assert!(cum.contains("(cum: with everything they call)"), "{cum}");
    let main_row = cum
        .lines()
        .find(|l| l.ends_with("  search_server::main"))
        .unwrap();
    assert!(main_row.contains("100.0%→100.0%"), "{cum}");
    check_golden(
        "diff-normalized.csv",
        &ok(&["diff", &cpu(), &slower(), "--normalize", "--format", "csv"]),
    );
}

#[test]
fn diff_fail_if_regressed() {
    // matches' share grows from 40% to ~65%: 20 points is exceeded, 30 is not.
    let o = profiler(&["diff", &cpu(), &slower(), "--fail-if-regressed", "20"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("search_server::search::matches"));
    let o = profiler(&["diff", &cpu(), &slower(), "--fail-if-regressed", "30"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // With --cum the limit applies to cumulative shares: matches went from 50% to ~77%.
    let o = profiler(&[
        "diff",
        &cpu(),
        &slower(),
        "--cum",
        "--fail-if-regressed",
        "25",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = profiler(&[
        "diff",
        &cpu(),
        &slower(),
        "--cum",
        "--fail-if-regressed",
        "28",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The other way round it shrank: no regression.
    let o = profiler(&["diff", &slower(), &cpu(), "--fail-if-regressed", "1"]);
    assert!(stdout_has(&o, "search_server::feeds::parse"));
    assert_eq!(
        o.status.code(),
        Some(3),
        "feeds::parse grew in this direction"
    );
}

fn stdout_has(o: &std::process::Output, s: &str) -> bool {
    super::stdout(o).contains(s)
}

#[test]
fn diff_mixes_folded_and_pprof() {
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("base.folded");
    ok(&["convert", &cpu(), "-o", path_str(&folded)]);
    let table = ok(&[
        "diff",
        path_str(&folded),
        &slower(),
        "--sample-type",
        "samples",
    ]);
    assert!(table.contains("search_server::search::matches"), "{table}");
    // Without an explicit type: current's default (cpu) is not in the folded base, so both
    // compare on samples.
    let table = ok(&["diff", path_str(&folded), &slower()]);
    assert!(table.starts_with("Type: samples"), "{table}");
}

#[test]
fn convert_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("cpu.folded");
    let back = dir.path().join("back.pb.gz");
    let again = dir.path().join("again.folded");
    ok(&[
        "convert",
        &cpu(),
        "-o",
        path_str(&folded),
        "--sample-type",
        "samples",
    ]);
    ok(&["convert", path_str(&folded), "-o", path_str(&back)]);
    ok(&["convert", path_str(&back), "-o", path_str(&again)]);
    let a = std::fs::read_to_string(&folded).unwrap();
    assert_eq!(a, std::fs::read_to_string(&again).unwrap());
    assert!(
        a.contains("search_server::search::matches;search_server::search::lowercase_[i] 15"),
        "{a}"
    );
    assert!(a.contains("sys_read_[k] 10"), "{a}");
    // pprof → pprof keeps everything.
    let copy = dir.path().join("copy.pb.gz");
    ok(&["convert", &cpu(), "-o", path_str(&copy)]);
    assert_eq!(
        profiler::capture::read_capture(&copy).unwrap(),
        profiler::capture::read_capture(&fixture("cpu.pb.gz")).unwrap()
    );
}
