//! Renderings of a profile: folded stacks, flame graph SVG, top table, annotated source, diff,
//! call graph.
//! This module owns what they share: choosing the sample type, focus/ignore filtering, frame
//! labels and units.

pub mod diff;
pub mod flamegraph;
pub mod folded;
pub mod graph;
pub mod list;
pub mod top;

use regex::Regex;

use crate::profile::{Frame, Profile, Sample, ValueType};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("sample type {wanted:?} is not in {what}; it has: {}", available.join(", "))]
    UnknownSampleType {
        wanted: String,
        what: String,
        available: Vec<String>,
    },
    #[error("{what} has no sample types")]
    NoSampleTypes { what: String },
    #[error("invalid regex {pattern:?}: {source}")]
    BadRegex {
        pattern: String,
        source: regex::Error,
    },
    #[error("{0}")]
    NoMatch(String),
    #[error(
        "bad tag filter {0:?}: write KEY=VALUE, e.g. --tag state=S or --tag process=search-server"
    )]
    BadTag(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// An external program a rendering needs (Graphviz's `dot`) is missing or failed.
    #[error("{0}")]
    Tool(String),
}

/// Which samples and which value a rendering uses.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Sample type kind (e.g. `cpu`, `alloc_space`); `None` = the capture's default.
    pub sample_type: Option<String>,
    /// Keep only samples with a frame whose name matches.
    pub focus: Option<Regex>,
    /// Drop samples with a frame whose name matches.
    pub ignore: Option<Regex>,
    /// Keep only samples whose labels match: for each key, one of its values (`state=S`,
    /// `state=D`, `process=search-server`); different keys must all match.
    pub tags: Vec<(String, String)>,
}

impl Selection {
    /// Builds a selection from the command line's strings, compiling the regexes.
    pub fn new(
        sample_type: Option<String>,
        focus: Option<&str>,
        ignore: Option<&str>,
    ) -> Result<Self, RenderError> {
        Ok(Self {
            sample_type,
            focus: focus.map(compile).transpose()?,
            ignore: ignore.map(compile).transpose()?,
            tags: Vec::new(),
        })
    }

    /// Adds `KEY=VALUE` tag filters, checking their form.
    pub fn with_tags(mut self, tags: &[String]) -> Result<Self, RenderError> {
        for t in tags {
            let (k, v) = t
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| RenderError::BadTag(t.clone()))?;
            self.tags.push((k.to_string(), v.to_string()));
        }
        Ok(self)
    }

    fn tags_match(&self, sample: &Sample) -> bool {
        let mut keys: Vec<&str> = self.tags.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|key| {
            let value = sample
                .labels
                .iter()
                .find(|l| l.key == *key)
                .map(|l| match &l.value {
                    crate::profile::LabelValue::Str(s) => s.clone(),
                    crate::profile::LabelValue::Num { value, .. } => value.to_string(),
                });
            value.is_some_and(|v| self.tags.iter().any(|(k, want)| k == key && *want == v))
        })
    }

    /// The value column to use, or an error listing the capture's types.
    pub fn value_index(&self, profile: &Profile, what: &str) -> Result<usize, RenderError> {
        if profile.sample_types.is_empty() {
            return Err(RenderError::NoSampleTypes {
                what: what.to_string(),
            });
        }
        profile
            .sample_type_index(self.sample_type.as_deref())
            .ok_or_else(|| RenderError::UnknownSampleType {
                wanted: self
                    .sample_type
                    .clone()
                    .or(profile.default_sample_type.clone())
                    .unwrap_or_default(),
                what: what.to_string(),
                available: profile.sample_type_names(),
            })
    }

    /// Whether a sample passes focus and ignore.
    pub fn keeps(&self, profile: &Profile, sample: &Sample) -> bool {
        if !self.tags.is_empty() && !self.tags_match(sample) {
            return false;
        }
        if self.focus.is_none() && self.ignore.is_none() {
            return true;
        }
        let mut focused = self.focus.is_none();
        for f in profile.sample_frames(sample) {
            if self
                .ignore
                .as_ref()
                .is_some_and(|re| re.is_match(&f.function.name))
            {
                return false;
            }
            focused |= self
                .focus
                .as_ref()
                .is_some_and(|re| re.is_match(&f.function.name));
        }
        focused
    }

    /// The samples kept, each with its chosen value (samples with a zero value are skipped).
    pub fn samples<'a>(
        &'a self,
        profile: &'a Profile,
        value_index: usize,
    ) -> impl Iterator<Item = (&'a Sample, i64)> + 'a {
        profile.samples.iter().filter_map(move |s| {
            let v = s.values.get(value_index).copied().unwrap_or(0);
            (v != 0 && self.keeps(profile, s)).then_some((s, v))
        })
    }
}

pub fn compile(pattern: &str) -> Result<Regex, RenderError> {
    Regex::new(pattern).map_err(|source| RenderError::BadRegex {
        pattern: pattern.to_string(),
        source,
    })
}

/// A frame's name in folded output: `;` replaced (it separates frames), kernel frames marked
/// `_[k]` and inlined ones `_[i]`, the convention of perf and inferno.
pub fn frame_label(frame: &Frame<'_>, out: &mut String) {
    let name = if frame.function.name.is_empty() {
        "[unknown]"
    } else {
        frame.function.name.as_str()
    };
    for c in name.chars() {
        out.push(match c {
            ';' => ':',
            // Line breaks would split the stack; other control characters sort below the
            // space that ends a folded stack.
            c if c.is_control() => ' ',
            c => c,
        });
    }
    if frame.kernel {
        out.push_str(crate::capture::folded::KERNEL_SUFFIX);
    } else if frame.inlined {
        out.push_str(crate::capture::folded::INLINED_SUFFIX);
    }
}

/// How values of one sample type are shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Plain counts (samples, objects).
    Count,
    /// Nanoseconds, shown as milliseconds.
    Nanoseconds,
    Bytes,
}

impl Unit {
    pub fn of(t: &ValueType) -> Self {
        match t.unit.as_str() {
            "nanoseconds" | "ns" => Unit::Nanoseconds,
            "bytes" | "B" => Unit::Bytes,
            _ => Unit::Count,
        }
    }

    /// Name for counts in a flame graph's tooltips and the tables' unit column.
    pub fn count_name(self, t: &ValueType) -> String {
        match self {
            Unit::Nanoseconds => "ns".into(),
            Unit::Bytes => "bytes".into(),
            Unit::Count
                if t.kind == "samples" || t.unit == "count" && t.kind.contains("sample") =>
            {
                "samples".into()
            }
            Unit::Count if t.kind.contains("objects") => "objects".into(),
            Unit::Count => t.unit.clone(),
        }
    }

    /// A value in this unit for a table: ms for time, B/kB/MB for bytes, plain counts.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Count => {
                if v.fract().abs() < 1e-9 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            }
            Unit::Nanoseconds => format!("{:.2}ms", v / 1e6),
            Unit::Bytes => {
                let a = v.abs();
                if a >= 1024.0 * 1024.0 * 1024.0 {
                    format!("{:.2}GB", v / (1024.0 * 1024.0 * 1024.0))
                } else if a >= 1024.0 * 1024.0 {
                    format!("{:.2}MB", v / (1024.0 * 1024.0))
                } else if a >= 1024.0 {
                    format!("{:.2}kB", v / 1024.0)
                } else {
                    format!("{v:.0}B")
                }
            }
        }
    }

    /// The unit as a column header word (`samples`, `ms`, `bytes`, `objects`).
    pub fn table_unit(self, t: &ValueType) -> String {
        match self {
            Unit::Nanoseconds => "ms".into(),
            _ => self.count_name(t),
        }
    }

    /// Value in the unit a CSV/JSON consumer expects (ms for time, raw otherwise).
    pub fn scaled(self, v: f64) -> f64 {
        match self {
            Unit::Nanoseconds => v / 1e6,
            _ => v,
        }
    }
}

/// Whether values of this type accumulate with time (CPU, off-CPU, sample counts) and so
/// compare per second, or are a state/total (heap) and compare as totals.
pub fn is_time_based(t: &ValueType) -> bool {
    Unit::of(t) == Unit::Nanoseconds || t.kind == "samples"
}

/// What the capture says about its target and length, for titles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// E.g. `pid 4242 (search-server)`, from the capture's recording metadata.
    pub target: Option<String>,
    pub duration_secs: Option<f64>,
}

impl Metadata {
    pub fn of(profile: &Profile) -> Self {
        let target = crate::capture::info::RecordingInfo::from_comments(&profile.comments)
            .filter(|i| !i.targets.is_empty() || i.scope == "all")
            .map(|i| {
                // Titles name the first target in full, as the capture's comment has it.
                match i.targets.as_slice() {
                    [t] if i.scope != "all" => format!("pid {} ({})", t.pid, t.command),
                    _ => i.target_label(),
                }
            });
        let duration_secs =
            (profile.duration_nanos > 0).then(|| profile.duration_nanos as f64 / 1e9);
        Self {
            target,
            duration_secs,
        }
    }
}
