//! The files a recording writes: the pprof capture, and optionally a flame graph and folded
//! stacks. Paths are checked before recording starts; each file is written atomically.

use std::path::PathBuf;

use super::{RecordError, check_output_path};
use crate::capture;
use crate::profile::Profile;
use crate::render::flamegraph::{FlamegraphOptions, write_flamegraph};
use crate::render::folded::{FoldOptions, write_folded};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    pub capture: PathBuf,
    pub flamegraph: Option<PathBuf>,
    pub folded: Option<PathBuf>,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            capture: PathBuf::from("cpu.pb.gz"),
            flamegraph: None,
            folded: None,
        }
    }
}

impl Outputs {
    /// (what, path) for each file, in the summary's order.
    pub fn files(&self) -> Vec<(String, PathBuf)> {
        let mut out = vec![("capture:".to_string(), self.capture.clone())];
        out.extend(
            self.flamegraph
                .clone()
                .map(|p| ("flame graph:".to_string(), p)),
        );
        out.extend(self.folded.clone().map(|p| ("folded:".to_string(), p)));
        out
    }

    /// Fails before recording when any output cannot be written.
    pub fn check(&self) -> Result<(), RecordError> {
        for (_, path) in self.files() {
            check_output_path(&path)?;
        }
        Ok(())
    }

    /// Writes every output; returns what was written, for the summary.
    pub fn write(&self, profile: &Profile) -> Result<Vec<(String, PathBuf)>, RecordError> {
        capture::write_pprof(profile, &self.capture)?;
        if let Some(path) = &self.flamegraph {
            let mut opts = FlamegraphOptions::default();
            // With on- and off-CPU time, the graph worth drawing is where the wall time went.
            if profile.sample_types.iter().any(|t| t.kind == "wall") {
                opts.fold.selection.sample_type = Some("wall".into());
            }
            let mut svg = Vec::new();
            write_flamegraph(profile, &opts, &mut svg)?;
            capture::write_atomic(path, &svg)?;
        }
        if let Some(path) = &self.folded {
            let mut text = Vec::new();
            write_folded(profile, &FoldOptions::default(), &mut text)?;
            capture::write_atomic(path, &text)?;
        }
        Ok(self.files())
    }
}

/// Numbered captures written while recording (`heap.0001.pb.gz`, ...): the `--snapshot-every`
/// files, named after the capture.
pub struct Snapshots {
    every: Option<std::time::Duration>,
    next: Option<std::time::Instant>,
    /// The capture's path without `.pb.gz` (or its extension).
    stem: PathBuf,
    written: u32,
}

impl Snapshots {
    pub fn new(opts: &super::RecordOptions) -> Self {
        let capture = &opts.outputs.capture;
        let name = capture
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = name
            .strip_suffix(".pb.gz")
            .or_else(|| name.rsplit_once('.').map(|(b, _)| b))
            .unwrap_or(&name)
            .to_string();
        Snapshots {
            every: opts.snapshot_every,
            next: opts.snapshot_every.map(|e| std::time::Instant::now() + e),
            stem: capture.with_file_name(base),
            written: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.every.is_some()
    }

    /// Whether the next snapshot is due (and, if so, schedules the one after).
    pub fn due(&mut self) -> bool {
        match (self.next, self.every) {
            (Some(next), Some(every)) if std::time::Instant::now() >= next => {
                self.next = Some(next + every);
                true
            }
            _ => false,
        }
    }

    /// The path of snapshot `n`.
    pub fn path(&self, n: u32) -> PathBuf {
        let mut p = self.stem.clone().into_os_string();
        p.push(format!(".{n:04}.pb.gz"));
        PathBuf::from(p)
    }

    pub fn write(&mut self, profile: &Profile) -> Result<PathBuf, RecordError> {
        self.written += 1;
        let path = self.path(self.written);
        capture::write_pprof(profile, &path)?;
        Ok(path)
    }

    /// For the summary: which files were written.
    pub fn summary_line(&self) -> (String, PathBuf) {
        let first = self.path(1);
        (
            format!("snapshots ({}):", self.written),
            if self.written > 1 {
                PathBuf::from(format!(
                    "{} ... {}",
                    first.display(),
                    self.path(self.written).display()
                ))
            } else {
                first
            },
        )
    }
}
