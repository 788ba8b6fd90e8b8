//! The pprof wire format (`perftools.profiles.Profile`, profile.proto) as prost messages, and
//! conversion between it and the in-memory [`Profile`].

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::profile::{
    Function, Label, LabelValue, Line, Location, Mapping, Profile, Sample, ValueType,
};

/// Field tags follow profile.proto; fields we never write (drop_frames, keep_frames,
/// is_folded) are still decoded so foreign files round-trip without surprises.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// Interns strings for the string table; index 0 is always "" as profile.proto requires.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Self {
            table: Vec::new(),
            index: HashMap::new(),
        };
        s.id("");
        s
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Model → wire. Ids are 1-based positions in the model's vectors.
pub fn to_proto(p: &Profile) -> proto::Profile {
    let mut st = Strings::new();
    let vt = |st: &mut Strings, t: &ValueType| proto::ValueType {
        r#type: st.id(&t.kind),
        unit: st.id(&t.unit),
    };
    let sample_type = p.sample_types.iter().map(|t| vt(&mut st, t)).collect();
    let period_type = p.period_type.as_ref().map(|t| vt(&mut st, t));
    let mapping = p
        .mappings
        .iter()
        .enumerate()
        .map(|(i, m)| proto::Mapping {
            id: i as u64 + 1,
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: st.id(&m.filename),
            build_id: st.id(&m.build_id),
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        })
        .collect();
    let function = p
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| proto::Function {
            id: i as u64 + 1,
            name: st.id(&f.name),
            system_name: st.id(&f.system_name),
            filename: st.id(&f.filename),
            start_line: f.start_line,
        })
        .collect();
    let location = p
        .locations
        .iter()
        .enumerate()
        .map(|(i, l)| proto::Location {
            id: i as u64 + 1,
            mapping_id: l.mapping.map_or(0, |m| m as u64 + 1),
            address: l.address,
            line: l
                .lines
                .iter()
                .map(|ln| proto::Line {
                    function_id: ln.function as u64 + 1,
                    line: ln.line,
                })
                .collect(),
            is_folded: false,
        })
        .collect();
    let sample = p
        .samples
        .iter()
        .map(|s| proto::Sample {
            location_id: s.locations.iter().map(|&l| l as u64 + 1).collect(),
            value: s.values.clone(),
            label: s
                .labels
                .iter()
                .map(|l| match &l.value {
                    LabelValue::Str(v) => proto::Label {
                        key: st.id(&l.key),
                        str: st.id(v),
                        num: 0,
                        num_unit: 0,
                    },
                    LabelValue::Num { value, unit } => proto::Label {
                        key: st.id(&l.key),
                        str: 0,
                        num: *value,
                        num_unit: st.id(unit),
                    },
                })
                .collect(),
        })
        .collect();
    let comment = p.comments.iter().map(|c| st.id(c)).collect();
    let default_sample_type = p.default_sample_type.as_deref().map_or(0, |k| st.id(k));
    proto::Profile {
        sample_type,
        sample,
        mapping,
        location,
        function,
        string_table: st.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: p.time_nanos,
        duration_nanos: p.duration_nanos,
        period_type,
        period: p.period,
        comment,
        default_sample_type,
    }
}

/// Wire → model. Returns a description of the first inconsistency (a dangling id or string
/// index) so the caller can name the file; foreign writers use arbitrary ids, so ids are mapped
/// through tables rather than assumed to be positions.
pub fn from_proto(mut w: proto::Profile) -> Result<Profile, String> {
    // Moved out so their values move into the profile instead of being copied.
    let samples = std::mem::take(&mut w.sample);
    if w.string_table.first().map(String::as_str) != Some("") {
        return Err("string table does not start with \"\"".into());
    }
    let strs = &w.string_table;
    let s = |i: i64| -> Result<String, String> {
        usize::try_from(i)
            .ok()
            .and_then(|i| strs.get(i))
            .cloned()
            .ok_or_else(|| format!("string index {i} out of range (table has {})", strs.len()))
    };
    let vt = |t: &proto::ValueType| -> Result<ValueType, String> {
        Ok(ValueType {
            kind: s(t.r#type)?,
            unit: s(t.unit)?,
        })
    };

    let mut p = Profile {
        sample_types: w.sample_type.iter().map(vt).collect::<Result<_, _>>()?,
        period_type: w.period_type.as_ref().map(vt).transpose()?,
        period: w.period,
        time_nanos: w.time_nanos,
        duration_nanos: w.duration_nanos,
        comments: w.comment.iter().map(|&c| s(c)).collect::<Result<_, _>>()?,
        ..Profile::default()
    };
    if w.default_sample_type != 0 {
        p.default_sample_type = Some(s(w.default_sample_type)?);
    }

    let mut mapping_ix = FxHashMap::default();
    for m in &w.mapping {
        mapping_ix.insert(m.id, p.mappings.len());
        p.mappings.push(Mapping {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: s(m.filename)?,
            build_id: s(m.build_id)?,
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        });
    }
    let mut function_ix = FxHashMap::default();
    for f in &w.function {
        function_ix.insert(f.id, p.functions.len());
        p.functions.push(Function {
            name: s(f.name)?,
            system_name: s(f.system_name)?,
            filename: s(f.filename)?,
            start_line: f.start_line,
        });
    }
    let mut location_ix = FxHashMap::default();
    // Functions made up for unsymbolized addresses, by name (one per module offset).
    let mut made_up: FxHashMap<String, usize> = FxHashMap::default();
    for l in &w.location {
        let mapping = match l.mapping_id {
            0 => None,
            id => Some(
                *mapping_ix
                    .get(&id)
                    .ok_or_else(|| format!("location {} names missing mapping {id}", l.id))?,
            ),
        };
        let mut lines = l
            .line
            .iter()
            .map(|ln| {
                let function = *function_ix.get(&ln.function_id).ok_or_else(|| {
                    format!(
                        "location {} names missing function {}",
                        l.id, ln.function_id
                    )
                })?;
                Ok(Line {
                    function,
                    line: ln.line,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if lines.is_empty() {
            // Unsymbolized address: give it a `module+0xoffset` frame so every rendering shows
            // where it was instead of dropping it.
            let name = unsymbolized_name(mapping.map(|m| &p.mappings[m]), l.address);
            let idx = *made_up.entry(name).or_insert_with_key(|name| {
                p.functions.push(Function {
                    name: name.clone(),
                    system_name: name.clone(),
                    ..Function::default()
                });
                p.functions.len() - 1
            });
            lines.push(Line {
                function: idx,
                line: 0,
            });
        }
        location_ix.insert(l.id, p.locations.len());
        p.locations.push(Location {
            mapping,
            address: l.address,
            lines,
        });
    }
    let nvalues = p.sample_types.len();
    p.samples.reserve(samples.len());
    for (n, smp) in samples.into_iter().enumerate() {
        if smp.value.len() != nvalues {
            return Err(format!(
                "sample {n} has {} values but there are {nvalues} sample types",
                smp.value.len()
            ));
        }
        let locations = smp
            .location_id
            .iter()
            .map(|id| {
                location_ix
                    .get(id)
                    .copied()
                    .ok_or_else(|| format!("sample {n} names missing location {id}"))
            })
            .collect::<Result<_, _>>()?;
        let labels = smp
            .label
            .iter()
            .map(|l| {
                let key = s(l.key)?;
                let value = if l.str != 0 {
                    LabelValue::Str(s(l.str)?)
                } else {
                    LabelValue::Num {
                        value: l.num,
                        unit: s(l.num_unit)?,
                    }
                };
                Ok(Label { key, value })
            })
            .collect::<Result<_, String>>()?;
        p.samples.push(Sample {
            locations,
            values: smp.value,
            labels,
        });
    }
    Ok(p)
}

fn unsymbolized_name(mapping: Option<&Mapping>, address: u64) -> String {
    match mapping {
        Some(m) if !m.filename.is_empty() => {
            let module = m.filename.rsplit('/').next().unwrap_or(&m.filename);
            let offset = address
                .wrapping_sub(m.memory_start)
                .wrapping_add(m.file_offset);
            format!("{module}+{offset:#x}")
        }
        _ => format!("{address:#x}"),
    }
}
