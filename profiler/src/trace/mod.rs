//! `profiler trace`: a timeline of one process's threads.

pub mod proto;
