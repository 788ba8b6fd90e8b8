//! Bad input through the real binary: each fails with a message naming the file or value and
//! what to do, or (malformed folded lines) is skipped and counted.

use super::{fixture, ok, path_str, profiler, stderr};

fn fails(args: &[&str], needles: &[&str]) -> String {
    let o = profiler(args);
    assert!(!o.status.success(), "profiler {args:?} should fail");
    let err = stderr(&o);
    for n in needles {
        assert!(
            err.contains(n),
            "profiler {args:?}: stderr lacks {n:?}:\n{err}"
        );
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn missing_file() {
    for cmd in ["top", "flamegraph", "fold"] {
        fails(
            &[cmd, "does-not-exist.pb.gz"],
            &["does-not-exist.pb.gz", "does not exist"],
        );
    }
    fails(
        &["diff", path_str(&fixture("cpu.pb.gz")), "nope.pb.gz"],
        &["nope.pb.gz", "does not exist"],
    );
}

#[test]
fn corrupt_truncated_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("cpu.pb.gz")).unwrap();
    let cut = dir.path().join("cut.pb.gz");
    std::fs::write(&cut, &good[..good.len() * 2 / 3]).unwrap();
    for cmd in ["top", "flamegraph", "fold"] {
        fails(&[cmd, path_str(&cut)], &["cut.pb.gz", "truncated"]);
    }

    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(good.as_slice()), &mut raw)
        .unwrap();
    let cut_raw = dir.path().join("cut.pb");
    // Cut inside a message (a cut at a field boundary is valid protobuf and cannot be told).
    std::fs::write(&cut_raw, &raw[..raw.len() / 2]).unwrap();
    fails(&["top", path_str(&cut_raw)], &["cut.pb", "truncated"]);

    let garbage = dir.path().join("garbage.pb.gz");
    let mut bytes = good.clone();
    for b in bytes.iter_mut().skip(20).step_by(3) {
        *b ^= 0x5a;
    }
    std::fs::write(&garbage, &bytes).unwrap();
    fails(&["fold", path_str(&garbage)], &["garbage.pb.gz", "corrupt"]);

    let png = dir.path().join("picture.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10").unwrap();
    fails(
        &["flamegraph", path_str(&png)],
        &["picture.png", "PNG", "is not a capture"],
    );

    let text = dir.path().join("README.md");
    std::fs::write(&text, "# Notes\n\nNothing to see here.\n").unwrap();
    fails(
        &["top", path_str(&text)],
        &["README.md", "is not a capture"],
    );

    let empty = dir.path().join("empty.pb.gz");
    std::fs::write(&empty, b"").unwrap();
    fails(&["top", path_str(&empty)], &["empty.pb.gz", "empty"]);
}

#[test]
fn folded_with_malformed_lines_is_read_and_counted() {
    let f = path_str(&fixture("junk.folded")).to_string();
    let o = profiler(&["top", &f]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("skipped 2 malformed line(s) of 6"), "{err}");
    assert!(
        err.contains("line 3"),
        "points at the first bad line: {err}"
    );
    let out = super::stdout(&o);
    assert!(out.contains("total 52"), "{out}");
    assert!(out.contains("lower"), "{out}");
}

#[test]
fn unknown_sample_type_lists_the_available_ones() {
    let cpu = path_str(&fixture("cpu.pb.gz")).to_string();
    for cmd in ["top", "flamegraph", "fold"] {
        fails(
            &[cmd, &cpu, "--sample-type", "inuse_space"],
            &["inuse_space", "samples, cpu"],
        );
    }
    fails(
        &["list", &cpu, "main", "--sample-type", "bogus"],
        &["bogus", "samples, cpu"],
    );
    let heap = path_str(&fixture("heap.pb.gz")).to_string();
    fails(
        &["diff", &cpu, &heap],
        &["inuse_space", "base capture", "samples, cpu"],
    );
    fails(
        &["diff", &heap, &cpu, "--sample-type", "alloc_space"],
        &["alloc_space", "current capture", "samples, cpu"],
    );
    fails(
        &["diff", &heap, &cpu],
        &[
            "cpu",
            "base capture",
            "alloc_objects, alloc_space, inuse_objects, inuse_space",
        ],
    );
}

#[test]
fn regex_matching_nothing() {
    let cpu = path_str(&fixture("cpu.pb.gz")).to_string();
    fails(
        &["list", &cpu, "no_such_function"],
        &["no_such_function", "profiler top"],
    );
    fails(&["top", &cpu, "--focus", "no_such_function"], &["--focus"]);
    fails(
        &[
            "flamegraph",
            &cpu,
            "--focus",
            "no_such_function",
            "-o",
            "/dev/null",
        ],
        &["--focus"],
    );
    fails(&["list", &cpu, "("], &["invalid regex", "\"(\""]);
}

#[test]
fn bad_output_paths() {
    let cpu = path_str(&fixture("cpu.pb.gz")).to_string();
    fails(
        &["flamegraph", &cpu, "-o", "/nonexistent-dir/x.svg"],
        &["/nonexistent-dir/x.svg"],
    );
    fails(
        &["convert", &cpu, "-o", "out.weird"],
        &["out.weird", ".folded", ".pb.gz"],
    );
    let o = profiler(&["diff", &cpu, &cpu, "--fail-if-regressed", "-1"]);
    assert!(!o.status.success());
    // Sanity: the good path works.
    ok(&["top", &cpu]);
}
