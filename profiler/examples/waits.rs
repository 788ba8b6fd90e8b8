//! A workload whose threads wait in known ways, for off-CPU and timeline tests:
//! - `sleeper` sleeps 30 ms in `waits::sleep_thirty`, then 10 ms in `waits::sleep_ten`, in a
//!   loop: 75% / 25% of its blocked time (both through `waits::nap`);
//! - `spinner` never blocks (`waits::spin`): it leaves the CPU only when preempted;
//! - `reader` blocks reading a pipe in `waits::read_pipe`; `writer` wakes it every 20 ms from
//!   `waits::write_pipe`;
//! - `waiter` waits for a child process (`sleep 0.05`) in `waits::wait_child`;
//! - `syncer` writes and fsyncs a file in `waits::sync_to_disk` (disk waits, state D).
//!
//! Usage: waits SECONDS   (prints "waits pid N" first, and exits after SECONDS)

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

// Each waiting function does a little work after its call, so the compiler cannot turn the
// call into a jump (a tail call leaves no frame: the function would vanish from the stack).

#[inline(never)]
fn sleep_thirty() -> u64 {
    std::hint::black_box(nap(30))
}

#[inline(never)]
fn sleep_ten() -> u64 {
    std::hint::black_box(nap(10))
}

/// The function that calls into glibc. glibc keeps no frame pointers, so a frame-pointer walk
/// from inside `clock_nanosleep` skips the frame of its caller: `nap` is the frame lost that
/// way, and `sleep_thirty`/`sleep_ten` stay visible (DWARF unwinding shows `nap` too).
#[inline(never)]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    std::hint::black_box(ms)
}

#[inline(never)]
fn spin(until: Instant) -> u64 {
    let mut v = 1u64;
    while Instant::now() < until {
        for _ in 0..10_000 {
            v = std::hint::black_box(v.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    v
}

#[inline(never)]
fn read_pipe(r: &mut std::fs::File) -> bool {
    let mut b = [0u8; 1];
    matches!(r.read(&mut b), Ok(1))
}

#[inline(never)]
fn write_pipe(w: &mut std::fs::File) {
    let _ = w.write_all(b"x");
}

#[inline(never)]
fn wait_child() {
    if let Ok(mut child) = std::process::Command::new("sleep").arg("0.05").spawn() {
        let _ = child.wait();
    }
}

#[inline(never)]
fn sync_to_disk(f: &mut std::fs::File, block: &[u8]) {
    let _ = f.write_all(block);
    let _ = f.sync_data();
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    println!("waits pid {}", std::process::id());
    let _ = std::io::stdout().flush();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .expect("spawn a thread")
    };
    let mut fds = [0; 2];
    // SAFETY: a valid two-element array for pipe(2).
    assert_eq!(unsafe { libc_pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: fresh descriptors we own.
    let (mut r, mut w) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    let threads = vec![
        spawn(
            "sleeper",
            Box::new(move || {
                while Instant::now() < until {
                    sleep_thirty();
                    sleep_ten();
                }
            }),
        ),
        spawn(
            "spinner",
            Box::new(move || {
                std::hint::black_box(spin(until));
            }),
        ),
        spawn("reader", Box::new(move || while read_pipe(&mut r) {})),
        spawn(
            "writer",
            Box::new(move || {
                while Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                    write_pipe(&mut w);
                }
                // Dropping the write end ends the reader.
            }),
        ),
        spawn(
            "waiter",
            Box::new(move || {
                while Instant::now() < until {
                    wait_child();
                }
            }),
        ),
        spawn(
            "syncer",
            Box::new(move || {
                let path = std::env::temp_dir().join(format!("waits-{}", std::process::id()));
                let Ok(mut f) = std::fs::File::create(&path) else {
                    return;
                };
                let block = vec![7u8; 64 * 1024];
                while Instant::now() < until {
                    sync_to_disk(&mut f, &block);
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = std::fs::remove_file(&path);
            }),
        ),
    ];
    for t in threads {
        let _ = t.join();
    }
}

unsafe extern "C" {
    #[link_name = "pipe"]
    fn libc_pipe(fds: *mut i32) -> i32;
}
