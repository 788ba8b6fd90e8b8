//! Types shared between the eBPF programs and user space. Everything here is `#[repr(C)]`
//! with explicit padding: map keys are hashed as raw bytes.
#![no_std]
