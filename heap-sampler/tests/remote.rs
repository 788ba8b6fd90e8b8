//! The reader against a live child (examples/alloc_then_wait.rs): it must find the registry
//! by symbol, read exactly the totals the child printed, and toggle a probe semaphore. Needs
//! root or CAP_SYS_PTRACE over the child (process_vm_readv).

use std::path::PathBuf;

use common::{Waiting, field};
use heap_sampler::remote::elf::{find_registry, load_bias_of, sdt_probes};
use heap_sampler::remote::{adjust_semaphore, read_totals};

mod common;

#[test]
fn reads_exactly_what_the_child_counted() {
    let mut w = Waiting::start();
    let pid = w.pid();
    let printed = field(&w.after, "registry");
    let found = find_registry(pid)
        .unwrap()
        .expect("the example exports the registry");
    assert_eq!(
        found, printed,
        "symbol + load bias = the child's own address"
    );

    let t = read_totals(pid, found).unwrap();
    for (key, value) in [
        ("allocs", t.allocs),
        ("frees", t.frees),
        ("alloc_bytes", t.alloc_bytes),
        ("free_bytes", t.free_bytes),
        ("sampled_allocs", t.sampled_allocs),
        ("sampled_frees", t.sampled_frees),
    ] {
        assert_eq!(
            value,
            field(&w.after, key),
            "{key}: read {value}, child printed {}",
            w.after
        );
    }
    assert!(
        t.blocks >= 2,
        "the main thread and at least one joined thread: {t:?}"
    );
    assert_eq!(t.rate, heap_sampler::DEFAULT_RATE);

    // The known workload, exactly: KEEP vectors + the holding vector + CHURN pairs.
    let d = |key: &str| field(&w.after, key) - field(&w.before, key);
    assert_eq!(d("allocs"), 1000 + 1 + 20_000);
    assert_eq!(d("frees"), 20_000);
    assert_eq!(d("alloc_bytes"), 1000 * 4096 + 1000 * 24 + 20_000 * 100);
    assert_eq!(d("free_bytes"), 20_000 * 100);

    // Read again after the child did more work on the same threads' blocks.
    let churned = w.churn();
    let t = read_totals(pid, found).unwrap();
    assert_eq!(
        (t.allocs, t.alloc_bytes),
        (field(&churned, "allocs"), field(&churned, "alloc_bytes"))
    );
    assert_eq!(
        (t.frees, t.free_bytes),
        (field(&churned, "frees"), field(&churned, "free_bytes"))
    );
}

#[test]
fn toggles_a_probe_semaphore_in_the_child() {
    let w = Waiting::start();
    let pid = w.pid();
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let alloc = sdt_probes(&exe)
        .unwrap()
        .into_iter()
        .find(|p| p.provider == "heap_sampler" && p.name == "alloc")
        .expect("the alloc probe");
    let addr = alloc.semaphore + load_bias_of(pid).unwrap();
    assert_eq!(
        adjust_semaphore(pid, addr, 0).unwrap(),
        0,
        "nothing attached yet"
    );
    assert_eq!(adjust_semaphore(pid, addr, 1).unwrap(), 1);
    assert_eq!(adjust_semaphore(pid, addr, -1).unwrap(), 0);
}

#[test]
fn a_wrong_address_is_refused_not_misread() {
    let w = Waiting::start();
    let pid = w.pid();
    let registry = find_registry(pid).unwrap().unwrap();
    let err = read_totals(pid, registry + 8).unwrap_err();
    assert!(
        err.to_string().contains("no heap-sampler registry"),
        "{err}"
    );
}
