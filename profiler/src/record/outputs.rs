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
