//! `profiler info`: a capture's sample types and totals, and for our captures the recording
//! metadata, as text and as JSON; foreign and broken files get clear answers.

use super::{fixture, ok, path_str, profiler, stderr};

#[test]
fn prints_target_types_and_totals() {
    let text = ok(&["info", path_str(&fixture("cpu.pb.gz"))]);
    for needle in [
        "pprof (gzip)",
        "samples/count = 150",
        "cpu/nanoseconds",
        "default:      cpu",
        "target:       pid 4242 (search-server)",
        "ended by duration",
    ] {
        assert!(text.contains(needle), "info lacks {needle:?}:\n{text}");
    }
}

#[test]
fn json_carries_the_recording_metadata() {
    let json = ok(&["info", path_str(&fixture("cpu.pb.gz")), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("info --format json is JSON");
    assert_eq!(v["recording"]["targets"][0]["pid"], 4242, "{v}");
    assert_eq!(v["sample_types"][0]["type"], "samples", "{v}");
    assert_eq!(v["sample_types"][0]["total"], 150, "{v}");
    assert_eq!(v["recording"]["scope"], "pids", "{v}");
}

#[test]
fn foreign_captures_have_no_recording_metadata() {
    // A Go heap profile: sample types and totals, and a plain statement that there is no
    // recording metadata.
    let text = ok(&["info", path_str(&fixture("heap.pb.gz"))]);
    assert!(text.contains("inuse_space/bytes"), "{text}");
    assert!(text.contains("no metadata"), "{text}");
    let json = ok(&["info", path_str(&fixture("heap.pb.gz")), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["recording"].is_null(), "{v}");
}

#[test]
fn broken_files_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pb.gz");
    let whole = std::fs::read(fixture("cpu.pb.gz")).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let o = profiler(&["info", path_str(&cut)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cut.pb.gz") && stderr(&o).contains("truncated"),
        "{}",
        stderr(&o)
    );
    let o = profiler(&["info", "no-such-capture.pb.gz"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}
