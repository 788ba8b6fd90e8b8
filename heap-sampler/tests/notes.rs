//! The USDT probes as a profiler finds them: one `.note.stapsdt` entry per probe in this test
//! binary (which installs the sampler), with a semaphore that is 0 while nothing is attached.
//! `readelf -n` is the independent witness for our own note parser.

use std::alloc::System;
use std::process::Command;

use heap_sampler::Sampler;
use heap_sampler::remote::elf::{SdtProbe, load_bias_of, sdt_probes};

#[global_allocator]
static ALLOC: Sampler<System> = Sampler::new(System);

fn our_probes() -> Vec<SdtProbe> {
    let exe = std::env::current_exe().unwrap();
    let mut probes: Vec<SdtProbe> = sdt_probes(&exe)
        .unwrap()
        .into_iter()
        .filter(|p| p.provider == "heap_sampler")
        .collect();
    probes.sort_by(|a, b| a.name.cmp(&b.name));
    probes
}

#[test]
fn one_alloc_and_one_free_probe_with_their_own_semaphores() {
    let probes = our_probes();
    let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alloc", "free"], "{probes:#?}");
    let (alloc, free) = (&probes[0], &probes[1]);
    assert_eq!(
        alloc.args.split(' ').count(),
        3,
        "ptr, size, weight_bytes: {}",
        alloc.args
    );
    assert_eq!(free.args.split(' ').count(), 2, "ptr, size: {}", free.args);
    for p in &probes {
        assert!(
            p.args.split(' ').all(|a| a.starts_with("-8@")),
            "8-byte arguments: {}",
            p.args
        );
        assert_ne!(p.semaphore, 0, "{} has a semaphore", p.name);
        assert!(
            p.semaphore_file_offset.is_some() && p.pc_file_offset.is_some(),
            "{p:?}"
        );
    }
    assert_ne!(alloc.semaphore, free.semaphore);
}

#[test]
fn semaphores_start_at_zero() {
    let bias = load_bias_of(std::process::id() as i32).unwrap();
    for p in our_probes() {
        let addr = p.semaphore.wrapping_add(bias) as *const u16;
        // SAFETY: the note's semaphore address, relocated by this process's load bias, is the
        // probe's u16 in .probes; a volatile read of it is what the probe site does.
        let value = unsafe { addr.read_volatile() };
        assert_eq!(value, 0, "{}'s semaphore with nothing attached", p.name);
    }
}

#[test]
fn readelf_sees_the_same_notes() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("readelf")
        .arg("-n")
        .arg(&exe)
        .output()
        .expect("run readelf -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // Per note: "Provider: P", "Name: N", "Location: 0x…, Base: 0x…, Semaphore: 0x…", "Arguments: …"
    let mut seen = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line != "Provider: heap_sampler" {
            continue;
        }
        let name = lines
            .next()
            .unwrap()
            .trim_start_matches("Name: ")
            .to_string();
        let location = lines.next().unwrap();
        let field = |key: &str| {
            let v = location
                .split(", ")
                .find_map(|f| f.strip_prefix(key))
                .unwrap();
            u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
        };
        seen.push((name, field("Location: "), field("Semaphore: ")));
    }
    seen.sort();
    let ours: Vec<(String, u64, u64)> = our_probes()
        .into_iter()
        .map(|p| (p.name, p.pc, p.semaphore))
        .collect();
    assert_eq!(seen, ours);
}
