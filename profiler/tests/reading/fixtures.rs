//! The fixture captures, built in code so their content is explained here, and committed so
//! the goldens and other tools see exact files. `BLESS=1` rewrites them.

use profiler::capture;
use profiler::capture::info::{RecordingInfo, TargetInfo};
use profiler::profile::{
    Label, LabelValue, Line, Mapping, Profile, ProfileBuilder, Sample, ValueType,
};

use super::{BLESS, fixture};

pub const PERIOD: i64 = 10_101_010; // 99 Hz

/// A search-server-like CPU profile. `slow_matches` doubles the time in `search::matches` and
/// halves `feeds::parse`, as a deliberately slower search path would.
pub fn cpu(slow_matches: bool) -> Profile {
    let mut b = ProfileBuilder::new(vec![
        ValueType::new("samples", "count"),
        ValueType::new("cpu", "nanoseconds"),
    ]);
    let exe = b.add_mapping(Mapping {
        memory_start: 0x5555_0000_0000,
        memory_limit: 0x5555_0010_0000,
        filename: "/srv/search-server".into(),
        build_id: "4f2a9c1e".into(),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
        ..Mapping::default()
    });
    let kernel = b.add_mapping(Mapping {
        filename: Mapping::KERNEL.into(),
        ..Mapping::default()
    });
    let f = |b: &mut ProfileBuilder, name: &str, file: &str| b.function(name, file);
    let main = f(&mut b, "search_server::main", "src/main.rs");
    let handle = f(&mut b, "search_server::web::handle", "src/web.rs");
    let run = f(&mut b, "search_server::search::run", "src/search.rs");
    let matches = f(&mut b, "search_server::search::matches", "src/search.rs");
    let lower = f(&mut b, "search_server::search::lowercase", "src/search.rs");
    let parse = f(&mut b, "search_server::feeds::parse", "src/feeds.rs");
    let read = f(&mut b, "sys_read", "");
    let loc = |b: &mut ProfileBuilder, addr: u64, lines: Vec<(usize, i64)>, m: usize| {
        b.location(
            Some(m),
            addr,
            lines
                .into_iter()
                .map(|(function, line)| Line { function, line })
                .collect(),
        )
    };
    let l_main = loc(&mut b, 0x5555_0000_1000, vec![(main, 12)], exe);
    let l_handle = loc(&mut b, 0x5555_0000_2000, vec![(handle, 40)], exe);
    let l_run = loc(&mut b, 0x5555_0000_3000, vec![(run, 6)], exe);
    let l_run2 = loc(&mut b, 0x5555_0000_3010, vec![(run, 6)], exe);
    let l_matches = loc(&mut b, 0x5555_0000_4000, vec![(matches, 17)], exe);
    let l_matches2 = loc(&mut b, 0x5555_0000_4010, vec![(matches, 16)], exe);
    // `lowercase` inlined into `matches` at line 17.
    let l_lower = loc(
        &mut b,
        0x5555_0000_4020,
        vec![(lower, 26), (matches, 17)],
        exe,
    );
    let l_parse = loc(&mut b, 0x5555_0000_5000, vec![(parse, 22)], exe);
    let l_read = loc(&mut b, 0xffff_ffff_8100_0000, vec![(read, 0)], kernel);
    let (m, p) = if slow_matches { (2, 1) } else { (1, 2) };
    let stacks: Vec<(Vec<usize>, i64, &str, i64)> = vec![
        (
            vec![l_matches, l_run, l_handle, l_main],
            40 * m,
            "worker-1",
            101,
        ),
        (
            vec![l_matches2, l_run, l_handle, l_main],
            20 * m,
            "worker-2",
            102,
        ),
        (
            vec![l_lower, l_run2, l_handle, l_main],
            15 * m,
            "worker-1",
            101,
        ),
        (
            vec![l_parse, l_run, l_handle, l_main],
            30 * p,
            "worker-2",
            102,
        ),
        (vec![l_read, l_handle, l_main], 10, "worker-1", 101),
        (vec![l_handle, l_main], 5, "worker-2", 102),
    ];
    for (locations, n, thread, tid) in stacks {
        b.add_sample(Sample {
            locations,
            values: vec![n, n * PERIOD],
            labels: vec![
                Label {
                    key: "thread".into(),
                    value: LabelValue::Str(thread.into()),
                },
                Label {
                    key: "tid".into(),
                    value: LabelValue::Num {
                        value: tid,
                        unit: String::new(),
                    },
                },
            ],
        });
    }
    let pr = b.profile_mut();
    pr.default_sample_type = Some("cpu".into());
    pr.period_type = Some(ValueType::new("cpu", "nanoseconds"));
    pr.period = PERIOD;
    pr.duration_nanos = 2_000_000_000;
    pr.time_nanos = 1_764_000_000_000_000_000;
    pr.comments = RecordingInfo {
        version: "fixture".into(),
        kind: "record".into(),
        targets: vec![TargetInfo {
            pid: 4242,
            command: "search-server".into(),
        }],
        scope: "pids".into(),
        started_unix_nanos: pr.time_nanos,
        duration_nanos: pr.duration_nanos,
        ended_by: "duration".into(),
        ..RecordingInfo::default()
    }
    .to_comments();
    b.finish()
}

/// A heap profile in Go's layout: allocations by site, objects and bytes, allocated and in use.
pub fn heap() -> Profile {
    let mut b = ProfileBuilder::new(vec![
        ValueType::new("alloc_objects", "count"),
        ValueType::new("alloc_space", "bytes"),
        ValueType::new("inuse_objects", "count"),
        ValueType::new("inuse_space", "bytes"),
    ]);
    let main = b.function("search_server::main", "src/main.rs");
    let cache = b.function("search_server::feeds::cache::insert", "src/feeds/cache.rs");
    let parse = b.function("search_server::feeds::parse", "src/feeds.rs");
    let l_main = b.location(
        None,
        0x1000,
        vec![Line {
            function: main,
            line: 12,
        }],
    );
    let l_cache = b.location(
        None,
        0x2000,
        vec![Line {
            function: cache,
            line: 30,
        }],
    );
    let l_parse = b.location(
        None,
        0x3000,
        vec![Line {
            function: parse,
            line: 22,
        }],
    );
    b.add_sample(Sample {
        locations: vec![l_cache, l_main],
        values: vec![10, 4 << 20, 8, 3 << 20],
        labels: vec![],
    });
    b.add_sample(Sample {
        locations: vec![l_parse, l_main],
        values: vec![5000, 2 << 20, 20, 8 << 10],
        labels: vec![],
    });
    let p = b.profile_mut();
    p.period_type = Some(ValueType::new("space", "bytes"));
    p.period = 524_288;
    p.duration_nanos = 0;
    b.finish()
}

pub const FOLDED_WITH_JUNK: &str = "\
main;search::run;search::matches 30
main;search::run;feeds::parse 10
this line has no count
main;handle;sys_read_[k] 5
;; 3
main;search::run;search::matches;lower_[i] 7
";

/// The fixture files and their content.
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("cpu.pb.gz", capture::encode_pprof(&cpu(false))),
        ("cpu-slower.pb.gz", capture::encode_pprof(&cpu(true))),
        ("heap.pb.gz", capture::encode_pprof(&heap())),
        ("junk.folded", FOLDED_WITH_JUNK.as_bytes().to_vec()),
    ]
}

#[test]
fn fixtures_are_current() {
    for (name, bytes) in all() {
        let path = fixture(name);
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        // Compare decoded profiles, not bytes: gzip output may differ between flate2 backends.
        let want = capture::decode_capture(&bytes, &path).unwrap().profile;
        let have =
            capture::read_capture(&path).unwrap_or_else(|e| panic!("{e}; create it: {BLESS}"));
        assert_eq!(
            have,
            want,
            "{} is stale; rewrite it: {BLESS}",
            path.display()
        );
    }
}
