//! `profiler graph`: golden DOT text of the fixture captures (rewritten only with BLESS=1),
//! SVG and PDF through Graphviz's `dot`, and `go tool pprof -svg`/`-pdf` on our captures (the
//! lesson's "Generate PDF Call Graph"). Graphviz and Go are installed by scripts/setup.sh; a
//! missing one fails the test.

use super::golden::check_golden;
use super::interop::{go, run};
use super::{fixture, ok, path_str, profiler, stderr};

fn cpu() -> String {
    path_str(&fixture("cpu.pb.gz")).to_string()
}

fn dot_of(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("graph.dot");
    let mut all = vec!["graph"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", path_str(&out)]);
    ok(&all);
    std::fs::read_to_string(&out).unwrap()
}

#[test]
fn dot_text_is_golden() {
    check_golden("graph-cpu.dot", &dot_of(&[&cpu()]));
    // Three boxes; the legend counts what was dropped.
    check_golden(
        "graph-nodecount.dot",
        &dot_of(&[&cpu(), "--nodecount", "3", "--sample-type", "samples"]),
    );
    check_golden(
        "graph-focus.dot",
        &dot_of(&[&cpu(), "--focus", "matches", "--title", "focus on matches"]),
    );
    let heap = path_str(&fixture("heap.pb.gz")).to_string();
    check_golden(
        "graph-heap-alloc_space.dot",
        &dot_of(&[&heap, "--sample-type", "alloc_space"]),
    );
}

#[test]
fn the_same_capture_gives_the_same_bytes() {
    assert_eq!(dot_of(&[&cpu()]), dot_of(&[&cpu()]));
}

#[test]
fn svg_and_pdf_through_graphviz() {
    let dir = tempfile::tempdir().unwrap();
    for (ext, magic) in [
        ("svg", &b"<?xml"[..]),
        ("pdf", &b"%PDF"[..]),
        ("png", &b"\x89PNG"[..]),
    ] {
        let out = dir.path().join(format!("graph.{ext}"));
        ok(&["graph", &cpu(), "-o", path_str(&out)]);
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.starts_with(magic), "{ext}");
    }
    let svg = std::fs::read_to_string(dir.path().join("graph.svg")).unwrap();
    assert!(svg.contains("search_server::search::matches"));
    assert!(svg.contains("(inline)"), "the inlined call is marked");
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = profiler(&[
        "graph",
        &cpu(),
        "-o",
        path_str(&dir.path().join("graph.jpg")),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(".svg, .pdf, .png or .dot"),
        "{}",
        stderr(&o)
    );
    let o = profiler(&[
        "graph",
        "missing.pb.gz",
        "-o",
        path_str(&dir.path().join("g.svg")),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = profiler(&[
        "graph",
        &cpu(),
        "--focus",
        "no_such_fn",
        "-o",
        path_str(&dir.path().join("g.dot")),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no samples"), "{}", stderr(&o));
    let o = profiler(&[
        "graph",
        &cpu(),
        "--sample-type",
        "nope",
        "-o",
        path_str(&dir.path().join("g.dot")),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

#[test]
fn go_tool_pprof_draws_svg_and_pdf_call_graphs_of_our_captures() {
    let home = tempfile::tempdir().unwrap();
    for capture in ["cpu.pb.gz", "heap.pb.gz"] {
        for (flag, magic) in [("-svg", &b"<?xml"[..]), ("-pdf", &b"%PDF"[..])] {
            let out = home.path().join(format!("{capture}{flag}"));
            let mut c = go(home.path());
            c.args(["tool", "pprof", flag, "-output", path_str(&out)])
                .arg(fixture(capture));
            run(c);
            let bytes = std::fs::read(&out).unwrap();
            assert!(bytes.starts_with(magic), "{capture} {flag}");
        }
    }
}
