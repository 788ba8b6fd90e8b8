//! Types shared between the eBPF programs and user space, one module per concern: what the
//! session owns (`targets`, `stacks`) and what each collector owns (`cpu`, ...). Everything
//! here is `#[repr(C)]` with explicit padding: map keys are hashed as raw bytes, so no byte may
//! be left undefined. Map and global names live here too, so both sides spell them alike.
//!
//! The counter invariant every collector keeps: each event of a target ends in exactly one
//! outcome per question the program asks (its user stack, its kernel stack, where its weight
//! went), and every outcome has a counter. User space reads them all and the fidelity tests
//! check the sums.
#![no_std]

pub mod cpu;
pub mod faults;
pub mod heap;
pub mod offcpu;
pub mod sched;
pub mod stacks;
pub mod targets;
pub mod timeline;
pub mod unwind;

/// A thread's command name as the kernel keeps it (NUL-padded, at most 15 bytes + NUL).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comm(pub [u8; 16]);

const _: () = assert!(core::mem::size_of::<Comm>() == 16);

impl Comm {
    /// The name up to the first NUL.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        &self.0[..end]
    }
}

/// `HashMap<u32, Comm>`: the latest command name seen per thread id, written by every
/// collector, so thread labels survive the thread's exit.
pub const THREAD_COMMS: &str = "THREAD_COMMS";

/// Declares a counter enum: its variants index a `PerCpuArray<u64>`, each with a stable
/// snake_case name used in capture metadata and summaries.
#[macro_export]
macro_rules! counters {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            pub const COUNT: u32 = Self::ALL.len() as u32;

            /// Stable snake_case name.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl $crate::CounterSet for $name {
            fn all() -> &'static [Self] {
                Self::ALL
            }
            fn index(self) -> u32 {
                self as u32
            }
            fn name(self) -> &'static str {
                $name::name(self)
            }
        }
    };
}

/// What user space needs to read any counter array: its slots and their names.
pub trait CounterSet: Copy + 'static {
    fn all() -> &'static [Self];
    fn index(self) -> u32;
    fn name(self) -> &'static str;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, made only of integers, with no padding (sizes asserted).
    unsafe impl aya::Pod for super::Comm {}
}
