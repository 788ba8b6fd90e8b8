//! Cost of the user-space half of `--call-graph dwarf`: unwinding one sample's stack copy
//! (16 KiB, about 20 frames of this benchmark plus the harness's) with the CFI of the
//! benchmark binary and libc, as the session does per copied sample. The unwinder and its rule
//! cache are warm, as they are after the first drain of a recording.
//! Run: `cargo bench -p profiler --bench unwind`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use profiler::symbolize::ProcessMaps;
use profiler::unwind::{StackCopy, Unwinder};

/// A stack `depth` calls deeper than the caller's, copied at its bottom.
#[inline(never)]
fn copy_at_depth(depth: u32, size: usize) -> StackCopy {
    if depth == 0 {
        StackCopy::of_current_thread(size).expect("copy this thread's stack")
    } else {
        black_box(copy_at_depth(black_box(depth - 1), size))
    }
}

fn unwind(c: &mut Criterion) {
    let mut maps = ProcessMaps::default();
    maps.refresh_self().expect("read /proc/self/maps");
    let pid = std::process::id();
    let mut unwinder = Unwinder::new("dwarf", 16 * 1024);
    for (name, depth) in [
        ("unwind/16KiB copy", 0),
        ("unwind/16KiB copy, 20 frames deeper", 20),
    ] {
        let copy = copy_at_depth(depth, 16 * 1024);
        let (ips, ending) = unwinder.unwind(pid, "bench", &maps, &copy);
        eprintln!("{name}: {} frames, ended {ending:?}", ips.len());
        c.bench_function(name, |b| {
            b.iter(|| unwinder.unwind(pid, "bench", &maps, black_box(&copy)))
        });
    }
}

criterion_group!(benches, unwind);
criterion_main!(benches);
