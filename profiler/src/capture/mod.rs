//! Captures on disk: pprof (`.pb.gz` or raw profile.proto) read and write, and folded stacks
//! read, with the file type sniffed from the content. Every error names the file and says what
//! to do about it.

pub mod folded;
pub mod info;
pub mod pprof;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use prost::Message;

use crate::profile::Profile;

pub use folded::FoldedReport;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "capture {path} does not exist; check the path (captures are written by `profiler record -o FILE`)"
    )]
    NotFound { path: PathBuf },
    #[error("cannot read capture {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("capture {path} is empty; the recording that wrote it may have failed, record again")]
    Empty { path: PathBuf },
    #[error("capture {path} is truncated: the file was cut short, copy or record it again")]
    Truncated {
        path: PathBuf,
        #[source]
        source: DecodeProblem,
    },
    #[error(
        "capture {path} is corrupt or truncated: record or copy it again, and check that it is a pprof file"
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: DecodeProblem,
    },
    #[error(
        "{path} is not a capture: it looks like {what}; give a pprof profile (.pb.gz, .pb) or folded stacks (`a;b;c 12` per line)"
    )]
    Foreign { path: PathBuf, what: String },
    #[error("cannot write {path}: {source}; check that the directory exists and is writable")]
    Write { path: PathBuf, source: io::Error },
}

/// What exactly could not be decoded, kept as the source of `Truncated` and `Corrupt`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeProblem {
    #[error("bad gzip data")]
    Gzip(#[source] io::Error),
    #[error("bad protobuf")]
    Protobuf(#[source] prost::DecodeError),
    /// Decoded, but the profile contradicts itself (a dangling id or string index).
    #[error("{0}")]
    Inconsistent(String),
}

/// Which format a capture was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    PprofGzip,
    PprofRaw,
    Folded,
}

/// A capture and what reading it noticed.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub profile: Profile,
    pub format: CaptureFormat,
    /// Only for folded input: stacks read and malformed lines skipped.
    pub folded: Option<FoldedReport>,
}

/// Reads a pprof (gzipped or raw) or folded capture, sniffing the format from the content.
pub fn read_capture(path: &Path) -> Result<Profile, CaptureError> {
    read_capture_detailed(path).map(|l| l.profile)
}

/// Like [`read_capture`], also telling the format and, for folded files, how many malformed
/// lines were skipped (also noted in the profile's comments), so the caller can warn.
pub fn read_capture_detailed(path: &Path) -> Result<Loaded, CaptureError> {
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => CaptureError::NotFound {
            path: path.to_path_buf(),
        },
        _ => CaptureError::Read {
            path: path.to_path_buf(),
            source,
        },
    })?;
    decode_capture(&bytes, path)
}

/// Decodes capture bytes; `path` is only used in messages.
pub fn decode_capture(bytes: &[u8], path: &Path) -> Result<Loaded, CaptureError> {
    let p = || path.to_path_buf();
    if bytes.is_empty() {
        return Err(CaptureError::Empty { path: p() });
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => CaptureError::Truncated {
                    path: p(),
                    source: DecodeProblem::Gzip(e),
                },
                _ => CaptureError::Corrupt {
                    path: p(),
                    source: DecodeProblem::Gzip(e),
                },
            })?;
        if raw.is_empty() {
            return Err(CaptureError::Empty { path: p() });
        }
        let mut loaded = decode_uncompressed(&raw, path)?;
        if loaded.format == CaptureFormat::PprofRaw {
            loaded.format = CaptureFormat::PprofGzip;
        }
        return Ok(loaded);
    }
    decode_uncompressed(bytes, path)
}

fn decode_uncompressed(bytes: &[u8], path: &Path) -> Result<Loaded, CaptureError> {
    let p = || path.to_path_buf();
    if let Some(what) = foreign_magic(bytes) {
        return Err(CaptureError::Foreign {
            path: p(),
            what: what.into(),
        });
    }
    if let Some(text) = as_text(bytes) {
        if !folded::looks_folded(text) {
            return Err(CaptureError::Foreign {
                path: p(),
                what: "text without any folded-stack line".into(),
            });
        }
        let (profile, report) = folded::parse(text);
        return Ok(Loaded {
            profile,
            format: CaptureFormat::Folded,
            folded: Some(report),
        });
    }
    let wire = pprof::proto::Profile::decode(bytes).map_err(|e| {
        // prost says how decoding failed only in words: running out of bytes is a cut file.
        let text = e.to_string();
        let truncated = text.contains("underflow") || text.contains("unexpected end");
        let source = DecodeProblem::Protobuf(e);
        if truncated {
            CaptureError::Truncated { path: p(), source }
        } else {
            CaptureError::Corrupt { path: p(), source }
        }
    })?;
    if wire.sample_type.is_empty() || wire.string_table.is_empty() {
        return Err(CaptureError::Foreign {
            path: p(),
            what: "binary data that is not a pprof profile (no sample types)".into(),
        });
    }
    let profile = pprof::from_proto(wire).map_err(|detail| CaptureError::Corrupt {
        path: p(),
        source: DecodeProblem::Inconsistent(detail),
    })?;
    Ok(Loaded {
        profile,
        format: CaptureFormat::PprofRaw,
        folded: None,
    })
}

fn foreign_magic(bytes: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"\x7fELF", "an ELF executable"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a zip archive"),
        (b"<?xml", "an XML/SVG document"),
        (b"<svg", "an SVG image"),
        (b"{", "JSON"),
        (
            b"PERFILE2",
            "a perf.data file (run `perf script | inferno-collapse-perf` first)",
        ),
    ];
    MAGICS
        .iter()
        .find(|(m, _)| bytes.starts_with(m))
        .map(|(_, w)| *w)
}

/// The bytes as text when they are UTF-8 without control characters other than whitespace.
/// Protobuf almost always has such bytes early (field tags and lengths), text never does.
fn as_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .then_some(text)
}

/// Encodes a profile as gzipped pprof.
pub fn encode_pprof(profile: &Profile) -> Vec<u8> {
    let raw = pprof::to_proto(profile).encode_to_vec();
    let mut gz = GzEncoder::new(
        Vec::with_capacity(raw.len() / 4 + 64),
        Compression::default(),
    );
    gz.write_all(&raw).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// Writes `profile` as gzipped pprof to `path` atomically: a temporary file in the same
/// directory is written, synced and renamed, so a reader never sees half a capture.
pub fn write_pprof(profile: &Profile, path: &Path) -> Result<(), CaptureError> {
    write_atomic(path, &encode_pprof(profile))
}

/// Writes bytes to `path` through a temporary sibling file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CaptureError> {
    let err = |source| CaptureError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(io::Error::other("the path names no file")))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Label, LabelValue, Line, Mapping, ProfileBuilder, Sample, ValueType};

    fn sample_profile() -> Profile {
        let mut b = ProfileBuilder::new(vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ]);
        let exe = b.add_mapping(Mapping {
            memory_start: 0x1000,
            memory_limit: 0x9000,
            filename: "/usr/bin/app".into(),
            build_id: "abcd".into(),
            has_functions: true,
            has_line_numbers: true,
            has_inline_frames: true,
            ..Mapping::default()
        });
        let main = b.function("main", "src/main.rs");
        let work = b.function("app::work", "src/work.rs");
        let inl = b.function("app::inner", "src/work.rs");
        let l1 = b.location(
            Some(exe),
            0x1100,
            vec![Line {
                function: main,
                line: 3,
            }],
        );
        let l2 = b.location(
            Some(exe),
            0x1200,
            vec![
                Line {
                    function: inl,
                    line: 7,
                },
                Line {
                    function: work,
                    line: 12,
                },
            ],
        );
        b.add_sample(Sample {
            locations: vec![l2, l1],
            values: vec![3, 30_303_030],
            labels: vec![
                Label {
                    key: "thread".into(),
                    value: LabelValue::Str("worker-1".into()),
                },
                Label {
                    key: "tid".into(),
                    value: LabelValue::Num {
                        value: 42,
                        unit: String::new(),
                    },
                },
            ],
        });
        let p = b.profile_mut();
        p.period_type = Some(ValueType::new("cpu", "nanoseconds"));
        p.period = 10_101_010;
        p.duration_nanos = 1_000_000_000;
        p.time_nanos = 1_700_000_000_000_000_000;
        p.comments = vec!["pid=7".into(), "lost samples: 0".into()];
        p.default_sample_type = Some("cpu".into());
        b.finish()
    }

    #[test]
    fn pprof_round_trip_gz_and_raw() {
        let p = sample_profile();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpu.pb.gz");
        write_pprof(&p, &path).unwrap();
        let back = read_capture_detailed(&path).unwrap();
        assert_eq!(back.format, CaptureFormat::PprofGzip);
        assert_eq!(back.profile, p);
        let wire = pprof::to_proto(&p);
        assert_eq!(wire.string_table[0], "");
        assert_eq!(wire.location[0].id, 1);
        assert_eq!(wire.sample[0].location_id, vec![2, 1], "leaf first");
        let raw = dir.path().join("cpu.pb");
        fs::write(&raw, wire.encode_to_vec()).unwrap();
        let back = read_capture_detailed(&raw).unwrap();
        assert_eq!(back.format, CaptureFormat::PprofRaw);
        assert_eq!(back.profile, p);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn bad_inputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pb.gz");
        assert!(matches!(
            read_capture(&missing),
            Err(CaptureError::NotFound { .. })
        ));
        let bytes = encode_pprof(&sample_profile());
        let cut = dir.path().join("cut.pb.gz");
        fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(
            matches!(read_capture(&cut), Err(CaptureError::Truncated { .. })),
            "{:?}",
            read_capture(&cut)
        );
        let raw = pprof::to_proto(&sample_profile()).encode_to_vec();
        let cut = dir.path().join("cut.pb");
        fs::write(&cut, &raw[..raw.len() - 3]).unwrap();
        assert!(read_capture(&cut).is_err());
        let png = dir.path().join("x.png");
        fs::write(&png, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
        let e = read_capture(&png).unwrap_err();
        assert!(e.to_string().contains("PNG"), "{e}");
        let txt = dir.path().join("notes.txt");
        fs::write(&txt, "just some notes\nnothing here\n").unwrap();
        assert!(matches!(
            read_capture(&txt),
            Err(CaptureError::Foreign { .. })
        ));
        let empty = dir.path().join("empty");
        fs::write(&empty, b"").unwrap();
        assert!(matches!(
            read_capture(&empty),
            Err(CaptureError::Empty { .. })
        ));
    }

    #[test]
    fn write_to_missing_directory_fails_clearly() {
        let e = write_pprof(&sample_profile(), Path::new("/nonexistent-dir/x.pb.gz")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/x.pb.gz"), "{e}");
    }
}
