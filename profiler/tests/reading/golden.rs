//! Golden-file tests of every rendering on the fixture captures. `BLESS=1` rewrites the files.

use std::path::Path;

use super::{BLESS, fixture, manifest_dir, ok, path_str, profiler, stderr};

/// Compares `actual` with tests/golden/NAME, or writes it under BLESS=1. Flame graph SVGs are
/// compared and kept without inferno's `<script>` block: its JavaScript is inferno's code, the
/// same in every graph, and would fill the goldens and their diffs with lines that are not ours.
pub fn check_golden(name: &str, actual: &str) {
    let path = manifest_dir().join("tests/golden").join(name);
    let actual = if name.ends_with(".svg") {
        without_script(actual)
    } else {
        actual.to_string()
    };
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it: {BLESS}", path.display()));
    if let Some(report) = mismatch(&path, &expected, &actual) {
        panic!("{report}");
    }
}

/// `svg` without its `<script>` element. A graph without one fails: the SVGs we write are
/// interactive (search, zoom), and a golden compared without the script would not notice.
fn without_script(svg: &str) -> String {
    const END: &str = "</script>";
    let start = svg
        .find("<script")
        .expect("a flame graph SVG embeds inferno's <script> (search, zoom); this one has none");
    let end = svg[start..]
        .find(END)
        .map(|i| start + i + END.len())
        .expect("the <script> element of the SVG is not closed");
    format!("{}{}", &svg[..start], &svg[end..])
}

/// `None` when the texts are equal; otherwise where they first differ, as `file:line:column`
/// with both lines around that column, and how to bless the change.
fn mismatch(path: &Path, expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    // Relative to the workspace root, where the bless command runs.
    let shown = path
        .strip_prefix(manifest_dir().parent().expect("workspace root"))
        .unwrap_or(path);
    let dir = shown.parent().unwrap_or(shown).display();
    let shown = shown.display();
    let (mut golden, mut output) = (expected.lines(), actual.lines());
    let mut line = 1;
    let (want, have) = loop {
        match (golden.next(), output.next()) {
            (Some(w), Some(h)) if w == h => line += 1,
            (None, None) => break (None, None),
            differ => break differ,
        }
    };
    let where_ = match (want, have) {
        (None, None) => format!("{shown}:{line}: the same lines, but not the same final newline"),
        (w, h) => {
            let (w, h) = (w.unwrap_or(""), h.unwrap_or(""));
            let column = w.chars().zip(h.chars()).take_while(|(a, b)| a == b).count();
            let excerpt = |text: Option<&str>| match text {
                None => "(end of file)".to_string(),
                Some(t) => {
                    let chars: Vec<char> = t.chars().collect();
                    let from = column.saturating_sub(40);
                    let to = (column + 40).min(chars.len());
                    let mut e: String = chars[from..to].iter().collect();
                    if from > 0 {
                        e.insert(0, '…');
                    }
                    if to < chars.len() {
                        e.push('…');
                    }
                    e
                }
            };
            format!(
                "{shown}:{line}:{}: the output differs from the golden file\n  golden: {}\n  output: {}",
                column + 1,
                excerpt(want),
                excerpt(have)
            )
        }
    };
    Some(format!(
        "{where_}\nIf the change is intended, bless it and review the diff:\n  {BLESS}\n  \
         git diff {dir}"
    ))
}

#[test]
fn a_mismatch_names_file_line_column_and_how_to_bless() {
    let path = manifest_dir().join("tests/golden/top.txt");
    assert_eq!(mismatch(&path, "a\nb\n", "a\nb\n"), None);

    assert_eq!(
        mismatch(&path, "same\nflat 40%\nend\n", "same\nflat 45%\nend\n").unwrap(),
        "profiler/tests/golden/top.txt:2:7: the output differs from the golden file
  golden: flat 40%
  output: flat 45%
If the change is intended, bless it and review the diff:
  BLESS=1 cargo test -p profiler --test reading
  git diff profiler/tests/golden"
    );

    let report = mismatch(&path, "a\n", "a\nb\n").unwrap();
    assert!(
        report.starts_with(
            "profiler/tests/golden/top.txt:2:1: the output differs from the golden file
  golden: (end of file)
  output: b\n"
        ),
        "{report}"
    );

    let report = mismatch(&path, "a\n", "a").unwrap();
    assert!(report.contains("top.txt:2: the same lines"), "{report}");

    // A long SVG line is shown around its first difference, not whole.
    let long = |c: char| format!("{}{c}{}\n", "x".repeat(500), "y".repeat(500));
    let report = mismatch(&path, &long('a'), &long('b')).unwrap();
    assert!(report.contains("top.txt:1:501:"), "{report}");
    assert!(report.lines().all(|l| l.chars().count() < 120), "{report}");
}

#[test]
fn svg_goldens_have_no_script_and_the_rest_is_kept() {
    assert_eq!(
        without_script(
            "<svg><style>s</style><script type=\"t\"><![CDATA[\nvar a;\n]]></script><rect/></svg>"
        ),
        "<svg><style>s</style><rect/></svg>"
    );
    // Under BLESS=1 the other tests are rewriting these files at this moment.
    if std::env::var_os("BLESS").is_some() {
        return;
    }
    let dir = manifest_dir().join("tests/golden");
    let mut svgs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "svg") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("<script") && !text.contains("</script>"),
                "{} holds inferno's script; {BLESS}",
                path.display()
            );
            assert!(text.contains("<svg id=\"frames\""), "{}", path.display());
            svgs += 1;
        }
    }
    assert!(svgs >= 3, "only {svgs} SVG goldens in {}", dir.display());
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
