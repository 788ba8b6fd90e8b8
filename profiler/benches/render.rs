//! Speed of the commands that read captures on a large capture: 100,000 distinct stacks.
//! Each case includes decoding the gzipped pprof bytes, as the CLI does.
//! Run: `cargo bench -p profiler --bench render`. The capture is also written to
//! `$TMPDIR/profiler-bench-100k.pb.gz` (and a second one, `-b`) to time the CLI itself.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use profiler::capture;
use profiler::profile::{Label, LabelValue, Line, Profile, ProfileBuilder, Sample, ValueType};
use profiler::render::Selection;
use profiler::render::diff::{DiffOptions, diff_table, write_diff_flamegraph};
use profiler::render::flamegraph::{FlamegraphOptions, write_flamegraph};
use profiler::render::top::{Format, TopOptions, top};

const STACKS: u64 = 100_000;
const FUNCTIONS: u64 = 20_000;

fn mix(mut x: u64) -> u64 {
    // splitmix64: a deterministic spread of frame choices.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A tree-shaped profile: stacks share prefixes near the root and fan out towards the leaves,
/// 8 to 40 frames deep, like a real service's. `seed` varies the weights for a diff.
fn big_profile(seed: u64) -> Profile {
    let mut b = ProfileBuilder::new(vec![
        ValueType::new("samples", "count"),
        ValueType::new("cpu", "nanoseconds"),
    ]);
    let names: Vec<usize> = (0..FUNCTIONS)
        .map(|f| {
            b.function(
                &format!("service::module_{}::function_{f}", f % 97),
                &format!("src/module_{}.rs", f % 97),
            )
        })
        .collect();
    for i in 0..STACKS {
        let depth = 8 + (mix(i) % 33) as u32;
        let mut locations = Vec::with_capacity(depth as usize);
        for level in 0..depth {
            // Frames near the root depend on few bits of i (shared), leaves on all of them.
            let shift = 2 * (depth - 1 - level).min(31);
            let f = if level + 1 == depth {
                mix(i ^ 0xabcd)
            } else {
                mix((i >> shift) ^ u64::from(level) << 40)
            } % FUNCTIONS;
            let line = Line {
                function: names[f as usize],
                line: 1 + (f % 300) as i64,
            };
            locations.push(b.location(None, 0x1000 + f * 16, vec![line]));
        }
        locations.reverse();
        let n = 1 + (mix(i ^ seed) % 20) as i64;
        b.add_sample(Sample {
            locations,
            values: vec![n, n * 10_101_010],
            labels: vec![Label {
                key: "thread".into(),
                value: LabelValue::Str(format!("worker-{}", i % 8)),
            }],
        });
    }
    let p = b.profile_mut();
    p.default_sample_type = Some("cpu".into());
    p.duration_nanos = 30_000_000_000;
    b.finish()
}

fn bench(c: &mut Criterion) {
    let base = capture::encode_pprof(&big_profile(1));
    let current = capture::encode_pprof(&big_profile(2));
    let tmp = std::env::temp_dir();
    let _ = std::fs::write(tmp.join("profiler-bench-100k.pb.gz"), &base);
    let _ = std::fs::write(tmp.join("profiler-bench-100k-b.pb.gz"), &current);
    let decode = |bytes: &[u8]| {
        capture::decode_capture(bytes, Path::new("bench.pb.gz"))
            .unwrap()
            .profile
    };

    let mut g = c.benchmark_group("100k_stacks");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("decode", |b| b.iter(|| black_box(decode(&base))));
    g.bench_function("top", |b| {
        b.iter(|| {
            let p = decode(&base);
            let t = top(
                &p,
                &TopOptions {
                    count: 20,
                    ..TopOptions::default()
                },
            )
            .unwrap();
            let mut out = Vec::new();
            t.write(Format::Text, &mut out).unwrap();
            black_box(out)
        })
    });
    g.bench_function("flamegraph", |b| {
        b.iter(|| {
            let p = decode(&base);
            let mut out = Vec::new();
            write_flamegraph(&p, &FlamegraphOptions::default(), &mut out).unwrap();
            black_box(out)
        })
    });
    g.bench_function("diff", |b| {
        b.iter(|| {
            let (pb, pc) = (decode(&base), decode(&current));
            let opts = DiffOptions {
                selection: Selection::default(),
                normalize: false,
                count: 15,
                by_cum: false,
                rows: None,
            };
            let t = diff_table(&pb, &pc, &opts).unwrap();
            let mut out = Vec::new();
            t.write(Format::Text, &mut out).unwrap();
            write_diff_flamegraph(&pb, &pc, &opts, &mut out).unwrap();
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
