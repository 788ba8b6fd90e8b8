//! Out-of-process profiler for native services, as a library: recording with eBPF
//! (`record`: a session over collectors), symbolization (`symbolize`), the in-memory profile
//! (`profile`), captures on disk and their metadata (`capture`), and the renderings people
//! read (`render`); `serve` puts live profiles behind Go's `/debug/pprof` URLs and pushes them
//! to Pyroscope. The `profiler` binary is a thin command line over it.

pub mod capture;
pub mod profile;
pub mod record;
pub mod render;
pub mod serve;
pub mod symbolize;
pub mod trace;
pub mod unwind;
pub mod watch;
