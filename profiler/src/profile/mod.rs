//! The in-memory profile: what every stage produces or consumes. Recording builds one,
//! `capture` reads and writes it as pprof, `render` draws it. It mirrors pprof's data model
//! (several value types per sample, locations with inlined lines, mappings, labels) with owned
//! strings and 0-based indexes instead of ids and a string table.

use std::collections::HashMap;

/// A value type such as `samples/count` or `cpu/nanoseconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueType {
    pub kind: String,
    pub unit: String,
}

impl ValueType {
    pub fn new(kind: &str, unit: &str) -> Self {
        Self {
            kind: kind.to_string(),
            unit: unit.to_string(),
        }
    }
}

/// A loaded object (executable, shared library, the kernel).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    /// Path of the object; `[kernel.kallsyms]` for the kernel.
    pub filename: String,
    /// Hex build id, empty when unknown.
    pub build_id: String,
    pub has_functions: bool,
    pub has_filenames: bool,
    pub has_line_numbers: bool,
    pub has_inline_frames: bool,
}

impl Mapping {
    pub const KERNEL: &'static str = "[kernel.kallsyms]";

    pub fn is_kernel(&self) -> bool {
        self.filename == Self::KERNEL || self.filename.starts_with("[kernel")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Function {
    /// Demangled name, e.g. `search_server::search::run`.
    pub name: String,
    /// Mangled (system) name when known, otherwise the same as `name`.
    pub system_name: String,
    pub filename: String,
    pub start_line: i64,
}

/// One source line of a location: a function index and a line number (0 = unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Line {
    pub function: usize,
    pub line: i64,
}

/// A program address and what it resolves to. `lines[0]` is the innermost (inlined) frame and
/// the last entry is the real, outermost function, as in pprof.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Index into `Profile::mappings`, if the address belongs to a known object.
    pub mapping: Option<usize>,
    pub address: u64,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LabelValue {
    Str(String),
    Num { value: i64, unit: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub key: String,
    pub value: LabelValue,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    /// Indexes into `Profile::locations`, leaf first.
    pub locations: Vec<usize>,
    /// One value per `Profile::sample_types` entry.
    pub values: Vec<i64>,
    pub labels: Vec<Label>,
}

impl Sample {
    pub fn str_label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find_map(|l| match (&l.value, l.key == key) {
                (LabelValue::Str(s), true) => Some(s.as_str()),
                _ => None,
            })
    }

    pub fn num_label(&self, key: &str) -> Option<i64> {
        self.labels
            .iter()
            .find_map(|l| match (&l.value, l.key == key) {
                (LabelValue::Num { value, .. }, true) => Some(*value),
                _ => None,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub sample_types: Vec<ValueType>,
    /// Kind of the sample type shown by default (pprof's `default_sample_type`).
    pub default_sample_type: Option<String>,
    pub period_type: Option<ValueType>,
    pub period: i64,
    pub time_nanos: i64,
    pub duration_nanos: i64,
    /// Free-form notes: how the capture went (counters, target, tool version).
    pub comments: Vec<String>,
    pub mappings: Vec<Mapping>,
    pub functions: Vec<Function>,
    pub locations: Vec<Location>,
    pub samples: Vec<Sample>,
}

/// A frame as renderings see it: one entry per (possibly inlined) function on a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub function: &'a Function,
    pub line: i64,
    /// This frame was inlined into its caller (it is not the location's outermost line).
    pub inlined: bool,
    pub kernel: bool,
}

impl Profile {
    /// Index of the sample type named `kind` (e.g. "cpu"), or of the default one when `None`.
    /// The default is `default_sample_type` if set, otherwise the last type, as pprof does.
    pub fn sample_type_index(&self, kind: Option<&str>) -> Option<usize> {
        let wanted = kind.or(self.default_sample_type.as_deref());
        match wanted {
            Some(k) => self.sample_types.iter().position(|t| t.kind == k),
            None => self.sample_types.len().checked_sub(1),
        }
    }

    pub fn sample_type_names(&self) -> Vec<String> {
        self.sample_types.iter().map(|t| t.kind.clone()).collect()
    }

    /// The frames of one location, outermost (caller) first — the order folded stacks use.
    pub fn location_frames(&self, loc: usize) -> impl Iterator<Item = Frame<'_>> {
        let location = &self.locations[loc];
        let kernel = location
            .mapping
            .is_some_and(|m| self.mappings[m].is_kernel());
        let n = location.lines.len();
        location
            .lines
            .iter()
            .enumerate()
            .rev()
            .map(move |(i, l)| Frame {
                function: &self.functions[l.function],
                line: l.line,
                inlined: i + 1 != n,
                kernel,
            })
    }

    /// The frames of a sample from root to leaf, inlined frames expanded.
    pub fn sample_frames<'a>(&'a self, sample: &'a Sample) -> impl Iterator<Item = Frame<'a>> + 'a {
        sample
            .locations
            .iter()
            .rev()
            .flat_map(move |&l| self.location_frames(l))
    }

    /// Sum of one value column over all samples.
    pub fn total(&self, value_index: usize) -> i64 {
        self.samples
            .iter()
            .map(|s| s.values.get(value_index).copied().unwrap_or(0))
            .sum()
    }
}

/// Builds a `Profile` while interning functions, mappings and locations, so producers (the
/// recorder, the folded-stack reader, tests) never create duplicates.
#[derive(Debug, Default)]
pub struct ProfileBuilder {
    profile: Profile,
    functions: HashMap<Function, usize>,
    locations: HashMap<(Option<usize>, u64, Vec<Line>), usize>,
}

impl ProfileBuilder {
    pub fn new(sample_types: Vec<ValueType>) -> Self {
        Self {
            profile: Profile {
                sample_types,
                ..Profile::default()
            },
            ..Self::default()
        }
    }

    pub fn profile_mut(&mut self) -> &mut Profile {
        &mut self.profile
    }

    pub fn add_mapping(&mut self, mapping: Mapping) -> usize {
        self.profile.mappings.push(mapping);
        self.profile.mappings.len() - 1
    }

    pub fn function(&mut self, name: &str, filename: &str) -> usize {
        let f = Function {
            name: name.to_string(),
            system_name: name.to_string(),
            filename: filename.to_string(),
            start_line: 0,
        };
        if let Some(&i) = self.functions.get(&f) {
            return i;
        }
        self.profile.functions.push(f.clone());
        let i = self.profile.functions.len() - 1;
        self.functions.insert(f, i);
        i
    }

    /// Interns a location; `lines` innermost first.
    pub fn location(&mut self, mapping: Option<usize>, address: u64, lines: Vec<Line>) -> usize {
        let key = (mapping, address, lines);
        if let Some(&i) = self.locations.get(&key) {
            return i;
        }
        self.profile.locations.push(Location {
            mapping,
            address,
            lines: key.2.clone(),
        });
        let i = self.profile.locations.len() - 1;
        self.locations.insert(key, i);
        i
    }

    pub fn add_sample(&mut self, sample: Sample) {
        self.profile.samples.push(sample);
    }

    pub fn finish(self) -> Profile {
        self.profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_frames_expand_outermost_first() {
        let mut b = ProfileBuilder::new(vec![ValueType::new("samples", "count")]);
        let outer = b.function("outer", "a.rs");
        let inner = b.function("inner", "a.rs");
        let loc = b.location(
            None,
            0x10,
            vec![
                Line {
                    function: inner,
                    line: 3,
                },
                Line {
                    function: outer,
                    line: 9,
                },
            ],
        );
        assert_eq!(
            b.location(
                None,
                0x10,
                vec![
                    Line {
                        function: inner,
                        line: 3
                    },
                    Line {
                        function: outer,
                        line: 9
                    }
                ]
            ),
            loc
        );
        b.add_sample(Sample {
            locations: vec![loc],
            values: vec![5],
            labels: vec![],
        });
        let p = b.finish();
        let names: Vec<(&str, bool)> = p
            .sample_frames(&p.samples[0])
            .map(|f| (f.function.name.as_str(), f.inlined))
            .collect();
        assert_eq!(names, vec![("outer", false), ("inner", true)]);
        assert_eq!(p.total(0), 5);
        assert_eq!(p.sample_type_index(None), Some(0));
        assert_eq!(p.sample_type_index(Some("cpu")), None);
    }
}
