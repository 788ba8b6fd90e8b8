//! Whether stacks are whole. A user stack is whole only when its outermost frame is a known
//! root: the program's entry (`_start`, the `__libc_start_main` → `main` chain), a thread's
//! entry (`clone`, `clone3`, `start_thread`, Rust's and Go's thread starts), or, for kernel
//! threads, the kernel's thread entry. Anything else ended early: a frame without a frame
//! pointer broke the walk, or the kernel's depth limit cut it. Health is counted per program
//! (the process's executable) so a broken binary is named, and for cut stacks, by the module
//! the walk ended in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Function names that start a user stack. Matched exactly, or as a path suffix for the
/// language runtimes' thread entries.
const ROOTS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_main_impl",
    "__libc_start_call_main",
    "main",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "__clone_internal",
    "start_thread",
    // Go: the runtime starts goroutines at goexit, threads at mstart, the program at rt0_go.
    "runtime.goexit",
    "runtime.goexit.abi0",
    "runtime.mstart",
    "runtime.mstart.abi0",
    "runtime.rt0_go",
    "runtime.rt0_go.abi0",
];

/// Kernel functions that start a kernel thread's stack (kernel-only stacks).
const KERNEL_ROOTS: &[&str] = &["ret_from_fork", "ret_from_fork_asm", "kthread"];

/// Rust's std starts every spawned thread here (whatever the platform module path).
const RUST_THREAD_START_SUFFIX: &str = "::thread_start";

/// `crate::f::h0123456789abcdef` → `crate::f`.
fn without_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

pub fn is_user_root(function: &str) -> bool {
    let f = without_hash(function);
    ROOTS.contains(&f) || f.ends_with(RUST_THREAD_START_SUFFIX)
}

pub fn is_kernel_root(function: &str) -> bool {
    KERNEL_ROOTS.contains(&function)
}

/// How one stack ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It reached a root frame.
    Whole,
    /// It has as many frames as the kernel records: the rest was cut off.
    DepthLimit,
    /// It ended in a frame that is not a root: the walk broke there.
    NoRoot,
    /// There was no user stack at all.
    Missing,
}

/// Stack counts (weighted by events) for one program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramHealth {
    pub whole: u64,
    pub depth_limit: u64,
    pub no_root: u64,
    pub missing: u64,
    /// For stacks with no root: the module of the outermost frame reached, with counts.
    pub ended_in: BTreeMap<String, u64>,
}

impl ProgramHealth {
    pub fn total(&self) -> u64 {
        self.whole + self.depth_limit + self.no_root + self.missing
    }

    pub fn cut(&self) -> u64 {
        self.depth_limit + self.no_root
    }
}

/// Stack health of a recording, by program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub by_program: BTreeMap<String, ProgramHealth>,
}

impl Health {
    pub fn add(&mut self, program: &str, ending: Ending, ended_in: &str, events: u64) {
        let h = self.by_program.entry(program.to_string()).or_default();
        match ending {
            Ending::Whole => h.whole += events,
            Ending::DepthLimit => h.depth_limit += events,
            Ending::NoRoot => {
                h.no_root += events;
                *h.ended_in.entry(ended_in.to_string()).or_default() += events;
            }
            Ending::Missing => h.missing += events,
        }
    }

    pub fn total(&self) -> ProgramHealth {
        let mut t = ProgramHealth::default();
        for h in self.by_program.values() {
            t.whole += h.whole;
            t.depth_limit += h.depth_limit;
            t.no_root += h.no_root;
            t.missing += h.missing;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_recognized() {
        for root in [
            "_start",
            "__libc_start_call_main",
            "main",
            "clone3",
            "start_thread",
            "std::sys::pal::unix::thread::Thread::new::thread_start",
            "std::sys::thread::unix::Thread::new::thread_start::h0123456789abcdef",
            "runtime.goexit.abi0",
        ] {
            assert!(is_user_root(root), "{root}");
        }
        for not_root in ["leaf", "cpu_split::main", "memcpy", "mainly", "my_start"] {
            assert!(!is_user_root(not_root), "{not_root}");
        }
        assert!(is_kernel_root("ret_from_fork_asm"));
        assert!(!is_kernel_root("do_syscall_64"));
    }

    #[test]
    fn counts_by_program_and_where_cut_stacks_ended() {
        let mut h = Health::default();
        h.add("app", Ending::Whole, "libc.so.6", 90);
        h.add("app", Ending::NoRoot, "app", 7);
        h.add("app", Ending::NoRoot, "libz.so", 3);
        h.add("other", Ending::DepthLimit, "other", 1);
        let app = &h.by_program["app"];
        assert_eq!((app.total(), app.cut(), app.whole), (100, 10, 90));
        assert_eq!(app.ended_in["app"], 7);
        assert_eq!(h.total().cut(), 11);
    }
}
