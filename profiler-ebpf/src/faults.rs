//! The page-fault collector's kernel types: the `page_faults` program samples the target's page
//! faults (a software perf event) exactly as `cpu` samples CPU time, into its own maps, with the
//! same key and the same outcomes (`CpuCounter`).

/// Name of the page-fault sampling program (a `perf_event` program).
pub const FAULTS_PROGRAM: &str = "page_faults";
/// `HashMap<CpuKey, u64>`: faults per key, one map per set.
pub const FAULT_COUNTS: [&str; 2] = ["FAULT_COUNTS_0", "FAULT_COUNTS_1"];
/// `RingBuf` of stack copies, as `cpu::CPU_COPIES`.
pub const FAULT_COPIES: &str = "FAULT_COPIES";
/// `PerCpuArray<u64>` indexed by `CpuCounter`.
pub const FAULT_COUNTERS: &str = "FAULT_COUNTERS";
