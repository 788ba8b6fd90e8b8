//! `profiler serve` and continuous push: the endpoints and the push loop over a fake agent on
//! tokio's paused clock (no root), and the real binary against real processes, `go tool
//! pprof`, `curl` and a Pyroscope receiver written here (root).

#[path = "../common/mod.rs"]
mod common;
mod endpoints;
mod harness;
mod lesson;
mod live;
mod push;
mod receiver;
