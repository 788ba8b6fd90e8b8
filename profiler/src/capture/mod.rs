//! Captures on disk: pprof (`.pb.gz`, profile.proto) read and write, and folded stacks.
