//! Out-of-process profiler for native services: eBPF sampling (`record`), symbolization
//! (`symbolize`), the in-memory profile (`profile`), pprof captures (`capture`) and the
//! renderings people read (`render`). `cli` is the only module that knows clap.

pub mod capture;
pub mod cli;
pub mod profile;
pub mod record;
pub mod render;
pub mod symbolize;
pub mod trace;
