//! `profiler info`: what a capture says about itself (format, sample types, totals) and how
//! it was recorded (targets, collectors, every counter, stack health), for people or as JSON.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use profiler::capture::info::RecordingInfo;
use profiler::capture::{self, CaptureFormat};
use serde::Serialize;

use super::TableFormat;
use super::reading::to_stdout;

/// Print a capture's metadata: sample types and totals, and for captures written by
/// `profiler record`, the targets, collectors, every counter and the stack health.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  profiler info cpu.pb.gz
  profiler info cpu.pb.gz --format json | jq .recording.counters")]
pub struct InfoArgs {
    pub capture: PathBuf,
    /// Output format (csv is not offered: the metadata is not a table).
    #[arg(long, value_enum, default_value_t = TableFormat::Text)]
    pub format: TableFormat,
}

#[derive(Serialize)]
struct SampleTypeTotal {
    r#type: String,
    unit: String,
    total: i64,
}

#[derive(Serialize)]
struct Report {
    file: String,
    format: &'static str,
    sample_types: Vec<SampleTypeTotal>,
    default_sample_type: Option<String>,
    period: i64,
    period_type: Option<String>,
    duration_nanos: i64,
    samples: usize,
    /// None for captures not written by `profiler record` (Go's, converted folded stacks).
    recording: Option<RecordingInfo>,
    comments: Vec<String>,
}

pub fn info(args: InfoArgs) -> Result<i32> {
    let loaded = capture::read_capture_detailed(&args.capture)?;
    let p = &loaded.profile;
    let recording = RecordingInfo::from_comments(&p.comments);
    let report = Report {
        file: args.capture.display().to_string(),
        format: match loaded.format {
            CaptureFormat::PprofGzip => "pprof (gzip)",
            CaptureFormat::PprofRaw => "pprof",
            CaptureFormat::Folded => "folded stacks",
        },
        sample_types: p
            .sample_types
            .iter()
            .enumerate()
            .map(|(i, t)| SampleTypeTotal {
                r#type: t.kind.clone(),
                unit: t.unit.clone(),
                total: p.total(i),
            })
            .collect(),
        default_sample_type: p.default_sample_type.clone(),
        period: p.period,
        period_type: p
            .period_type
            .as_ref()
            .map(|t| format!("{}/{}", t.kind, t.unit)),
        duration_nanos: p.duration_nanos,
        samples: p.samples.len(),
        comments: if recording.is_some() {
            Vec::new()
        } else {
            p.comments.clone()
        },
        recording,
    };
    match args.format {
        TableFormat::Json => to_stdout(|w| {
            serde_json::to_writer_pretty(&mut *w, &report)?;
            writeln!(w)
        }),
        TableFormat::Text | TableFormat::Csv => {
            if args.format == TableFormat::Csv {
                anyhow::bail!("info prints text or json; use --format json for scripts");
            }
            let mut text = String::new();
            let _ = writeln!(text, "capture:      {} ({})", report.file, report.format);
            let types: Vec<String> = report
                .sample_types
                .iter()
                .map(|t| format!("{}/{} = {}", t.r#type, t.unit, t.total))
                .collect();
            let _ = writeln!(text, "sample types: {}", types.join(", "));
            if let Some(d) = &report.default_sample_type {
                let _ = writeln!(text, "default:      {d}");
            }
            if let Some(pt) = &report.period_type {
                let _ = writeln!(text, "period:       {} {pt}", report.period);
            }
            let _ = writeln!(text, "samples:      {} distinct stacks", report.samples);
            match &report.recording {
                Some(info) => info.write_report(&mut text),
                None => {
                    let _ = writeln!(
                        text,
                        "recording:    no metadata (not written by `profiler record`)"
                    );
                    for c in &report.comments {
                        let _ = writeln!(text, "comment:      {c}");
                    }
                }
            }
            to_stdout(|w| w.write_all(text.as_bytes()))
        }
    }
}
