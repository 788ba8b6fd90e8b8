//! One mapped object's unwind data: its `.eh_frame`/`.eh_frame_hdr`/`.debug_frame` sections,
//! memory-mapped once per file and shared by every process that maps it, its load segments (to
//! place it in a process), and whether its code keeps frame pointers.

use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::Arc;

use framehop::ExplicitModuleSectionInfo;
use gimli::{BaseAddresses, CallFrameInstruction, CieOrFde, EhFrame, LittleEndian, UnwindSection};
use memmap2::Mmap;
use object::{Object as _, ObjectSection as _, ObjectSegment as _, SegmentFlags};

/// Functions shorter than this (PLT stubs, trampolines, tiny leaves) never set up a frame,
/// whatever the compiler flags: they say nothing about the object.
const MIN_FUNCTION_BYTES: u64 = 32;

/// Bytes of a memory-mapped file: what framehop reads unwind sections from.
#[derive(Clone)]
pub struct Section {
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl Deref for Section {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

/// Which unwind tables an object has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cfi {
    EhFrame,
    DebugFrame,
    /// Neither: only frame pointers can walk through it.
    None,
}

impl Cfi {
    pub fn name(self) -> &'static str {
        match self {
            Cfi::EhFrame => "eh_frame",
            Cfi::DebugFrame => "debug_frame",
            Cfi::None => "none",
        }
    }
}

/// A PT_LOAD segment: file range and address.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    size: u64,
    vaddr: u64,
    executable: bool,
}

pub struct ObjectUnwind {
    map: Arc<Mmap>,
    eh_frame: Option<(Range<u64>, Range<usize>)>,
    eh_frame_hdr: Option<(Range<u64>, Range<usize>)>,
    debug_frame: Option<Range<usize>>,
    text_svma: Option<Range<u64>>,
    got_svma: Option<Range<u64>>,
    segments: Vec<Segment>,
    pub cfi: Cfi,
    /// Whether most of its functions set up a frame pointer (see `FramePointers`).
    pub frame_pointers: bool,
    /// Its code without frame pointers, as sorted address runs (object addresses).
    pub fp_less: Vec<Range<u64>>,
}

impl ObjectUnwind {
    /// Maps and parses `path`. None when it cannot be read or is not an ELF object.
    pub fn open(path: &Path) -> Option<Self> {
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: a read-only private mapping; a file truncated under us could fault, which
        // is the same risk every symbolizer reading binaries takes (blazesym maps them too).
        let map = Arc::new(unsafe { Mmap::map(&file) }.ok()?);
        let elf = object::File::parse(&map[..]).ok()?;
        let section = |name: &str| {
            let s = elf.section_by_name(name)?;
            let (offset, size) = s.file_range()?;
            Some((
                s.address()..s.address() + s.size(),
                offset as usize..(offset + size) as usize,
            ))
        };
        let eh_frame = section(".eh_frame").filter(|(_, f)| !f.is_empty());
        let eh_frame_hdr = section(".eh_frame_hdr");
        // Compressed debug sections (SHF_COMPRESSED) would need inflating first: skipped.
        let debug_frame = elf
            .section_by_name(".debug_frame")
            .filter(|s| {
                s.compressed_file_range()
                    .is_ok_and(|c| c.format == object::CompressionFormat::None)
            })
            .and_then(|s| s.file_range())
            .map(|(o, n)| o as usize..(o + n) as usize)
            .filter(|f| !f.is_empty());
        let svma = |name: &str| section(name).map(|(a, _)| a);
        let segments = elf
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                let executable = match s.flags() {
                    SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_X != 0,
                    _ => false,
                };
                Segment {
                    offset,
                    size,
                    vaddr: s.address(),
                    executable,
                }
            })
            .collect();
        let cfi = match (&eh_frame, &debug_frame) {
            (Some(_), _) => Cfi::EhFrame,
            (None, Some(_)) => Cfi::DebugFrame,
            (None, None) => Cfi::None,
        };
        let fp = match &eh_frame {
            Some((svma, file)) => FramePointers::read(&map[file.clone()], svma.start),
            // No tables: nothing but frame pointers can walk it anyway.
            None => FramePointers {
                object: true,
                fp_less: Vec::new(),
            },
        };
        Some(ObjectUnwind {
            eh_frame,
            eh_frame_hdr,
            debug_frame,
            text_svma: svma(".text"),
            got_svma: svma(".got"),
            segments,
            cfi,
            frame_pointers: fp.object,
            fp_less: fp.fp_less,
            map,
        })
    }

    /// The load bias of a mapping of this object at `start` from file offset `file_offset`
    /// (`avma = svma + bias`): from the load segment that maps that part of the file, since
    /// linkers (lld) may place a segment at an address that differs from its file offset.
    pub fn bias(&self, start: u64, file_offset: u64, len: u64) -> u64 {
        let overlaps =
            |s: &&Segment| s.offset < file_offset + len && file_offset < s.offset + s.size.max(1);
        let segment = self
            .segments
            .iter()
            .filter(overlaps)
            .find(|s| s.executable)
            .or_else(|| self.segments.iter().find(overlaps));
        match segment {
            // File offset `s.offset` is at `start + (s.offset - file_offset)`, and is `s.vaddr`.
            Some(s) => start
                .wrapping_add(s.offset)
                .wrapping_sub(file_offset)
                .wrapping_sub(s.vaddr),
            None => start.wrapping_sub(file_offset),
        }
    }

    /// framehop's view of the sections (cheap: the data is shared).
    pub fn section_info(&self) -> ExplicitModuleSectionInfo<Section> {
        let data = |range: &Range<usize>| Section {
            map: self.map.clone(),
            range: range.clone(),
        };
        ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text_svma.clone(),
            got_svma: self.got_svma.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|(a, _)| a.clone()),
            eh_frame: self.eh_frame.as_ref().map(|(_, f)| data(f)),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|(a, _)| a.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|(_, f)| data(f)),
            debug_frame: self.debug_frame.as_ref().map(data),
            // Mach-O only.
            stubs_svma: None,
            stub_helper_svma: None,
            unwind_info: None,
            text: None,
            text_segment_svma: None,
            text_segment: None,
        }
    }
}

/// The frame-pointer register's DWARF number.
#[cfg(target_arch = "x86_64")]
const FP_REGISTER: u16 = 6; // rbp
#[cfg(target_arch = "aarch64")]
const FP_REGISTER: u16 = 29; // x29

/// Which code of an object keeps frame pointers, read from its CFI: a function that sets up a
/// frame pointer says so in its FDE (x86_64: the CFA becomes rbp-based, `DW_CFA_def_cfa_register
/// rbp`; aarch64: x29 is saved as part of the frame record, or the CFA becomes x29-based). Code
/// built with `-fno-omit-frame-pointer` / `-C force-frame-pointers=yes` does this in every
/// function; `gcc -O2` code and Debian's glibc in few (only where they need a variable-sized
/// frame). The CFI says what the code generator did, function by function, which file names or
/// build flags recorded elsewhere cannot be trusted to say: a Rust binary built without frame
/// pointers still links a standard library built with them.
pub struct FramePointers {
    /// Whether at least two thirds of its non-trivial functions keep them (for the report).
    pub object: bool,
    /// Runs of functions without them, sorted: consecutive such functions (by address) with
    /// no frame-pointer function between them form one run.
    pub fp_less: Vec<Range<u64>>,
}

impl FramePointers {
    pub fn read(eh_frame: &[u8], eh_frame_svma: u64) -> Self {
        let section = EhFrame::new(eh_frame, LittleEndian);
        let bases = BaseAddresses::default().set_eh_frame(eh_frame_svma);
        let mut entries = section.entries(&bases);
        let mut functions: Vec<(Range<u64>, bool)> = Vec::new();
        while let Ok(Some(entry)) = entries.next() {
            let CieOrFde::Fde(partial) = entry else {
                continue;
            };
            let Ok(fde) = partial.parse(EhFrame::cie_from_offset) else {
                continue;
            };
            let mut with_fp = false;
            let mut instructions = fde.instructions(&section, &bases);
            while let Ok(Some(i)) = instructions.next() {
                with_fp = match i {
                    CallFrameInstruction::DefCfa { register, .. }
                    | CallFrameInstruction::DefCfaRegister { register } => {
                        register.0 == FP_REGISTER
                    }
                    #[cfg(target_arch = "aarch64")]
                    CallFrameInstruction::Offset { register, .. } => register.0 == FP_REGISTER,
                    _ => false,
                };
                if with_fp {
                    break;
                }
            }
            let start = fde.initial_address();
            functions.push((start..start + fde.len(), with_fp));
        }
        let sized = functions
            .iter()
            .filter(|(r, _)| r.end - r.start >= MIN_FUNCTION_BYTES);
        let (with_fp, total) = sized.fold((0usize, 0usize), |(f, t), (_, fp)| {
            (f + usize::from(*fp), t + 1)
        });
        functions.sort_by_key(|(r, _)| r.start);
        let mut fp_less: Vec<Range<u64>> = Vec::new();
        let mut open = false;
        for (range, fp) in functions {
            if fp {
                open = false;
            } else if open {
                let last = fp_less.last_mut().expect("an open run");
                last.end = last.end.max(range.end);
            } else {
                fp_less.push(range);
                open = true;
            }
        }
        FramePointers {
            object: total > 0 && with_fp * 3 >= total * 2,
            fp_less,
        }
    }
}
