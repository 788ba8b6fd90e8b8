//! `profiler trace`: a timeline of one process's threads, the `go tool trace` of native
//! services. The pure half: the [`Timeline`] model, the Perfetto trace writer ([`perfetto`])
//! and reader ([`read`]), and the summary tables ([`summary`]), with no eBPF. The live half,
//! [`recorder`], drives a recording session with the timeline collector
//! (`record::timeline`) and fills a `Timeline`. No clap.
//!
//! ```no_run
//! use profiler::trace::{SummaryOptions, Timeline, read_trace_file, summarize, write_timeline};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // End of a recording: the session has filled a Timeline.
//! let timeline = Timeline::default();
//! let out = std::io::BufWriter::new(std::fs::File::create("trace.perfetto-trace")?);
//! let written = write_timeline(&timeline, out)?;
//! println!("{}", summarize(&timeline, &SummaryOptions::default()));
//! // `profiler trace --summary FILE`: the same tables from the file.
//! let (back, _read) = read_trace_file("trace.perfetto-trace".as_ref())?;
//! println!("{}", summarize(&back, &SummaryOptions::default()));
//! # let _ = written;
//! # Ok(())
//! # }
//! ```

pub mod model;
pub mod perfetto;
pub mod proto;
pub mod read;
pub mod recorder;
#[cfg(test)]
mod scenario;
pub mod summary;

use std::path::PathBuf;

pub use model::{
    Counter, CounterUnit, CpuSample, Frame, Losses, ProcessInfo, SchedEvent, StackId, StackTable,
    Switch, Task, TaskState, ThreadInfo, Timeline, Waking,
};
pub use perfetto::{TraceWriter, WriteStats, write_timeline};
pub use read::{ReadStats, read_trace, read_trace_file};
pub use recorder::{
    DEFAULT_FREQUENCY, MAX_DURATION, TraceOptions, TraceRecordError, Traced, record_trace,
    trace_bytes,
};
pub use summary::{Summary, SummaryOptions, summarize};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("writing the trace: {0}")]
    Write(#[source] std::io::Error),
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not a Perfetto trace ({reason}); pass a file written by `profiler trace`")]
    NotATrace { what: String, reason: String },
}
