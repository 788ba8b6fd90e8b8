//! Recording: load and attach the eBPF programs, drain their maps, follow the target's life.
