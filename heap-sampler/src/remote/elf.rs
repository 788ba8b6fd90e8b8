//! Finding a sampler in a target's executable (feature `elf`): the registry's address in the
//! running process, and the `heap_sampler` USDT probes with their semaphores.
//!
//! Addresses in the file are link-time virtual addresses; a running PIE is loaded at a bias,
//! found from the executable's mappings in `/proc/PID/maps`. A binary without the sampler (or
//! stripped of its symbol table) is a miss, `Ok(None)`, not an error.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use object::{Endian, Endianness, Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::layout::REGISTRY_SYMBOL;

/// SystemTap's note type for SDT probes (v3), with owner name "stapsdt".
const NT_STAPSDT: u32 = 3;

/// Why an executable could not be examined.
#[derive(Debug)]
pub enum ElfError {
    Io { path: PathBuf, source: io::Error },
    Parse { path: PathBuf, reason: String },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::Parse { path, reason } => {
                write!(f, "{} is not a usable ELF file: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for ElfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Parse { .. } => None,
        }
    }
}

/// One SystemTap SDT probe site from `.note.stapsdt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdtProbe {
    pub provider: String,
    pub name: String,
    /// Link-time address of the probe's `nop` (prelink-adjusted).
    pub pc: u64,
    /// File offset of `pc`: what a uprobe attaches to.
    pub pc_file_offset: Option<u64>,
    /// Link-time address of the u16 semaphore, 0 when the probe has none.
    pub semaphore: u64,
    /// File offset of the semaphore: a uprobe's `ref_ctr_offset`.
    pub semaphore_file_offset: Option<u64>,
    /// Argument locations, e.g. `-8@%rax -8@%rcx`.
    pub args: String,
}

/// The absolute address of `HEAP_SAMPLER_REGISTRY` in process `pid`, `None` if its
/// executable has no such symbol.
pub fn find_registry(pid: i32) -> Result<Option<u64>, ElfError> {
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let data = read(&exe)?;
    let file = parse(&exe, &data)?;
    let Some(vaddr) = registry_symbol(&file) else {
        return Ok(None);
    };
    Ok(Some(vaddr.wrapping_add(load_bias(pid, &exe, &file)?)))
}

/// The link-time address of the registry symbol in an executable's symbol tables.
pub fn registry_address_in(path: &Path) -> Result<Option<u64>, ElfError> {
    let data = read(path)?;
    Ok(registry_symbol(&parse(path, &data)?))
}

/// The SDT probes of the executable at `path` (all providers; filter on `provider`).
pub fn sdt_probes(path: &Path) -> Result<Vec<SdtProbe>, ElfError> {
    let data = read(path)?;
    let file = parse(path, &data)?;
    let bad = |reason: &str| ElfError::Parse {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(notes) = file.section_by_name(".note.stapsdt") else {
        return Ok(Vec::new());
    };
    let notes = notes.data().map_err(|e| bad(&e.to_string()))?;
    // A prelinked binary moved `.stapsdt.base`; probes moved with it.
    let base_now = file.section_by_name(".stapsdt.base").map(|s| s.address());
    let endian = if file.is_little_endian() {
        Endianness::Little
    } else {
        Endianness::Big
    };
    let word = |b: &[u8]| endian.read_u64(b.try_into().expect("8 bytes"));
    let half = |b: &[u8]| endian.read_u32(b.try_into().expect("4 bytes"));
    let align4 = |n: usize| (n + 3) & !3;
    let mut probes = Vec::new();
    let mut at = 0;
    while at + 12 <= notes.len() {
        let namesz = half(&notes[at..at + 4]) as usize;
        let descsz = half(&notes[at + 4..at + 8]) as usize;
        let kind = half(&notes[at + 8..at + 12]);
        let name_at = at + 12;
        let desc_at = align4(name_at + namesz);
        let end = desc_at + descsz;
        if end > notes.len() {
            return Err(bad("truncated note in .note.stapsdt"));
        }
        at = align4(end);
        if kind != NT_STAPSDT || &notes[name_at..name_at + namesz] != b"stapsdt\0" {
            continue;
        }
        let desc = &notes[desc_at..end];
        if desc.len() < 24 {
            return Err(bad("short stapsdt note"));
        }
        let (mut pc, base, mut semaphore) =
            (word(&desc[0..8]), word(&desc[8..16]), word(&desc[16..24]));
        if let Some(now) = base_now {
            let shift = now.wrapping_sub(base);
            pc = pc.wrapping_add(shift);
            if semaphore != 0 {
                semaphore = semaphore.wrapping_add(shift);
            }
        }
        let mut strings = desc[24..]
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned());
        let (Some(provider), Some(name), Some(args)) =
            (strings.next(), strings.next(), strings.next())
        else {
            return Err(bad("stapsdt note without provider, name and arguments"));
        };
        probes.push(SdtProbe {
            provider,
            name,
            pc,
            pc_file_offset: file_offset(&file, pc),
            semaphore,
            semaphore_file_offset: (semaphore != 0)
                .then(|| file_offset(&file, semaphore))
                .flatten(),
            args,
        });
    }
    Ok(probes)
}

/// How far the running process `pid` loaded its executable from the file's link addresses.
pub fn load_bias_of(pid: i32) -> Result<u64, ElfError> {
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let data = read(&exe)?;
    let file = parse(&exe, &data)?;
    load_bias(pid, &exe, &file)
}

fn registry_symbol(file: &object::File<'_>) -> Option<u64> {
    file.symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(REGISTRY_SYMBOL) && s.address() != 0)
        .map(|s| s.address())
}

/// The bias from the executable's mapping with the lowest file offset: for a mapping at
/// `start` of file offset `off` inside a segment loaded from (vaddr, offset), the running
/// address of link address v is v + bias with bias = start - off - (vaddr - offset).
fn load_bias(pid: i32, exe: &Path, file: &object::File<'_>) -> Result<u64, ElfError> {
    let meta = fs::metadata(exe).map_err(|source| ElfError::Io {
        path: exe.to_owned(),
        source,
    })?;
    let maps_path = PathBuf::from(format!("/proc/{pid}/maps"));
    let maps = fs::read_to_string(&maps_path).map_err(|source| ElfError::Io {
        path: maps_path.clone(),
        source,
    })?;
    let (dev_major, dev_minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let lowest = maps
        .lines()
        .filter_map(parse_map_line)
        .filter(|m| m.inode == meta.ino() && m.dev == (dev_major, dev_minor))
        .min_by_key(|m| m.offset);
    let not_found = |reason: String| ElfError::Parse {
        path: maps_path.clone(),
        reason,
    };
    let Some(map) = lowest else {
        return Err(not_found(format!(
            "no mapping of {} (inode {})",
            exe.display(),
            meta.ino()
        )));
    };
    let segment = file
        .segments()
        .find(|s| {
            let (off, size) = s.file_range();
            off <= map.offset && map.offset < off + size.max(1)
        })
        .ok_or_else(|| not_found(format!("no segment covers file offset {:#x}", map.offset)))?;
    let (seg_off, _) = segment.file_range();
    Ok(map
        .start
        .wrapping_sub(map.offset)
        .wrapping_sub(segment.address().wrapping_sub(seg_off)))
}

struct MapLine {
    start: u64,
    offset: u64,
    dev: (u32, u32),
    inode: u64,
}

/// `start-end perms offset major:minor inode path`
fn parse_map_line(line: &str) -> Option<MapLine> {
    let mut f = line.split_ascii_whitespace();
    let start = u64::from_str_radix(f.next()?.split('-').next()?, 16).ok()?;
    let _perms = f.next()?;
    let offset = u64::from_str_radix(f.next()?, 16).ok()?;
    let (major, minor) = f.next()?.split_once(':')?;
    let dev = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let inode = f.next()?.parse().ok()?;
    Some(MapLine {
        start,
        offset,
        dev,
        inode,
    })
}

fn file_offset(file: &object::File<'_>, vaddr: u64) -> Option<u64> {
    file.segments().find_map(|s| {
        let (off, size) = s.file_range();
        let delta = vaddr.checked_sub(s.address())?;
        (delta < size).then_some(off + delta)
    })
}

fn read(path: &Path) -> Result<Vec<u8>, ElfError> {
    fs::read(path).map_err(|source| ElfError::Io {
        path: path.to_owned(),
        source,
    })
}

fn parse<'a>(path: &Path, data: &'a [u8]) -> Result<object::File<'a>, ElfError> {
    let file = object::File::parse(data).map_err(|e| ElfError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if !file.is_64() {
        return Err(ElfError::Parse {
            path: path.to_owned(),
            reason: "32-bit ELF files are not supported".into(),
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines_parse() {
        let m =
            parse_map_line("5581e000-5581f000 r-xp 00002000 fd:01 1234567   /usr/bin/x").unwrap();
        assert_eq!(
            (m.start, m.offset, m.dev, m.inode),
            (0x5581e000, 0x2000, (0xfd, 1), 1234567)
        );
        assert!(parse_map_line("7ffd0000-7ffd1000 rw-p 00000000 00:00 0").is_some());
        assert!(parse_map_line("garbage").is_none());
    }

    #[test]
    fn finds_its_own_registry() {
        let pid = std::process::id() as i32;
        let found = find_registry(pid).unwrap();
        assert_eq!(found, Some(crate::registry_address() as u64));
    }
}
