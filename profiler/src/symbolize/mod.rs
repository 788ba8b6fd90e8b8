//! Symbolization of raw addresses with blazesym: user frames through snapshots of the target's
//! memory maps (so a target that exited can still be symbolized from the files on disk), kernel
//! frames from kallsyms. One blazesym `Symbolizer` per recording: it caches parsed ELF/DWARF.
//! A miss is a value (`module+0xoffset`) with a reason ([`MissReason`]), never an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use blazesym::Pid;
use blazesym::symbolize::source::{Elf, Kernel, Process, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized, Symbolizer as BlazeSymbolizer};

use crate::profile::Mapping;

/// One executable mapping of the target, as seen in `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    /// Path of the mapped file, or a pseudo name such as `[vdso]` / `[anon]`.
    pub name: String,
    /// The file to read symbols from (None for pseudo mappings).
    pub file: Option<PathBuf>,
}

/// Every executable mapping the target had at some snapshot. Mappings only get added: a
/// library unloaded later still explains addresses sampled while it was loaded.
#[derive(Debug, Default, Clone)]
pub struct ProcessMaps {
    vmas: Vec<Vma>,
}

fn read_maps(path: &str) -> std::io::Result<procfs::process::MemoryMaps> {
    <procfs::process::MemoryMaps as procfs::FromRead>::from_file(path)
        .map_err(std::io::Error::other)
}

impl ProcessMaps {
    /// Reads the executable mappings of `pid` and merges them in. Fails when the process is
    /// gone; the snapshot taken so far stays usable.
    pub fn refresh(&mut self, pid: u32) -> std::io::Result<()> {
        // By path, not relative to a /proc/PID directory handle: the same file, and qemu-user
        // (the aarch64 tests on x86_64) shows a guest its own maps only when the path names
        // them, as it does for /proc/self/maps.
        let maps = read_maps(&format!("/proc/{pid}/maps"))?;
        // A process in another mount namespace (a container) names files as it sees them:
        // read them through its root instead.
        let root = other_mount_namespace(pid).then(|| PathBuf::from(format!("/proc/{pid}/root")));
        self.merge(maps, root)
    }

    /// Reads this process's own executable mappings from `/proc/self/maps` (not by pid: under
    /// an emulator such as qemu-user only `self` names the guest's maps).
    pub fn refresh_self(&mut self) -> std::io::Result<()> {
        self.merge(read_maps("/proc/self/maps")?, None)
    }

    fn merge(
        &mut self,
        maps: procfs::process::MemoryMaps,
        root: Option<PathBuf>,
    ) -> std::io::Result<()> {
        for m in maps {
            if !m.perms.contains(procfs::process::MMPermissions::EXECUTE) {
                continue;
            }
            let (name, file) = match &m.pathname {
                procfs::process::MMapPath::Path(p) => {
                    let shown = p
                        .to_string_lossy()
                        .trim_end_matches(" (deleted)")
                        .to_string();
                    let file = match &root {
                        Some(root) => root.join(shown.trim_start_matches('/')),
                        None => PathBuf::from(&shown),
                    };
                    (shown, Some(file))
                }
                procfs::process::MMapPath::Vdso => ("[vdso]".to_string(), None),
                procfs::process::MMapPath::Vsyscall => ("[vsyscall]".to_string(), None),
                procfs::process::MMapPath::Anonymous => ("[anon]".to_string(), None),
                other => (format!("{other:?}"), None),
            };
            let vma = Vma {
                start: m.address.0,
                end: m.address.1,
                file_offset: m.offset,
                name,
                file,
            };
            if !self.vmas.contains(&vma) {
                self.vmas.push(vma);
            }
        }
        Ok(())
    }

    /// The newest mapping containing `addr`.
    pub fn find(&self, addr: u64) -> Option<(usize, &Vma)> {
        self.vmas
            .iter()
            .enumerate()
            .rev()
            .find(|(_, v)| v.start <= addr && addr < v.end)
    }

    pub fn vmas(&self) -> &[Vma] {
        &self.vmas
    }

    pub fn is_empty(&self) -> bool {
        self.vmas.is_empty()
    }
}

/// Whether `pid` lives in a mount namespace other than ours.
fn other_mount_namespace(pid: u32) -> bool {
    let ns = |p: &str| std::fs::read_link(p).ok();
    match (ns("/proc/self/ns/mnt"), ns(&format!("/proc/{pid}/ns/mnt"))) {
        (Some(ours), Some(theirs)) => ours != theirs,
        _ => false,
    }
}

/// One source-level frame of an address: a function, its file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLine {
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// Why an address has no name: blazesym's reason where it gave one, ours otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MissReason {
    /// No mapping of the process contains the address.
    Unmapped,
    /// The mapping has no file (anonymous memory: JIT code, or a mapping we could not name).
    NoFile,
    /// The mapped file could not be read (deleted, or in a namespace we cannot reach).
    FileUnreadable,
    /// The file has no symbols for it (stripped).
    NoSymbols,
    /// The file's symbols do not cover the address.
    UnknownAddress,
    /// The file offset is not code.
    InvalidOffset,
    /// Anything else blazesym reports (unsupported entity, ignored error).
    Other,
}

impl MissReason {
    pub const ALL: [MissReason; 7] = [
        MissReason::Unmapped,
        MissReason::NoFile,
        MissReason::FileUnreadable,
        MissReason::NoSymbols,
        MissReason::UnknownAddress,
        MissReason::InvalidOffset,
        MissReason::Other,
    ];

    /// Stable snake_case name (capture metadata, JSON).
    pub fn name(self) -> &'static str {
        match self {
            MissReason::Unmapped => "unmapped",
            MissReason::NoFile => "no_file",
            MissReason::FileUnreadable => "file_unreadable",
            MissReason::NoSymbols => "no_symbols",
            MissReason::UnknownAddress => "unknown_address",
            MissReason::InvalidOffset => "invalid_offset",
            MissReason::Other => "other",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// What a person can do about it.
    pub fn advice(self) -> &'static str {
        match self {
            MissReason::Unmapped => {
                "addresses outside any mapping (a process that exited before its maps were read)"
            }
            MissReason::NoFile => "anonymous code (JIT or generated)",
            MissReason::FileUnreadable => {
                "the mapped file could not be read (deleted or replaced since it was loaded)"
            }
            MissReason::NoSymbols => {
                "stripped binaries: build with symbols or install debug packages"
            }
            MissReason::UnknownAddress => "addresses the symbol tables do not cover",
            MissReason::InvalidOffset => "file offsets that are not code",
            MissReason::Other => "other symbolization failures",
        }
    }

    fn from_blazesym(reason: blazesym::symbolize::Reason) -> Self {
        use blazesym::symbolize::Reason as R;
        match reason {
            R::Unmapped => MissReason::Unmapped,
            R::MissingComponent => MissReason::NoFile,
            R::MissingSyms => MissReason::NoSymbols,
            R::UnknownAddr => MissReason::UnknownAddress,
            R::InvalidFileOffset => MissReason::InvalidOffset,
            _ => MissReason::Other,
        }
    }
}

/// What an address resolved to. `lines` is innermost first (inlined frames before the real
/// function), as pprof wants; it always has at least one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Index into `ProcessMaps::vmas` (user frames) or None (kernel or unmapped).
    pub vma: Option<usize>,
    pub lines: Vec<FrameLine>,
    /// Why the name is only `module+0xoffset`; None when symbolized.
    pub miss: Option<MissReason>,
    pub has_line_info: bool,
    pub has_inlined: bool,
}

impl Resolved {
    fn unknown(vma: Option<usize>, name: String, reason: MissReason) -> Self {
        Resolved {
            vma,
            lines: vec![FrameLine {
                function: name,
                file: String::new(),
                line: 0,
            }],
            miss: Some(reason),
            has_line_info: false,
            has_inlined: false,
        }
    }

    pub fn symbolized(&self) -> bool {
        self.miss.is_none()
    }
}

/// The recording's symbolizer.
pub struct Symbolizer {
    inner: BlazeSymbolizer,
    build_ids: HashMap<PathBuf, String>,
    /// Start of this process's own vDSO, looked up once (None inside: we have none).
    own_vdso_start: Option<Option<u64>>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        let inner = BlazeSymbolizer::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            .enable_demangling(true)
            .build();
        Symbolizer {
            inner,
            build_ids: HashMap::new(),
            own_vdso_start: None,
        }
    }

    /// Resolves user-space lookup addresses (return addresses already moved back by one).
    /// Addresses are batched per mapped file: one blazesym call per file.
    pub fn user(&mut self, maps: &ProcessMaps, addrs: &[u64]) -> HashMap<u64, Resolved> {
        let mut out = HashMap::with_capacity(addrs.len());
        let mut per_vma: HashMap<usize, Vec<u64>> = HashMap::new();
        let mut vdso: Vec<(u64, usize, u64)> = Vec::new();
        for &addr in addrs {
            match maps.find(addr) {
                Some((i, vma)) if vma.file.is_some() => per_vma.entry(i).or_default().push(addr),
                Some((i, vma)) if vma.name == "[vdso]" => vdso.push((addr, i, addr - vma.start)),
                Some((i, vma)) => {
                    let name = format!("{}+{:#x}", vma.name, addr - vma.start);
                    out.insert(addr, Resolved::unknown(Some(i), name, MissReason::NoFile));
                }
                None => {
                    out.insert(
                        addr,
                        Resolved::unknown(
                            None,
                            format!("[unmapped]+{addr:#x}"),
                            MissReason::Unmapped,
                        ),
                    );
                }
            }
        }
        for (i, addrs) in per_vma {
            let vma = &maps.vmas()[i];
            let path = vma.file.as_ref().expect("filtered above");
            let offsets: Vec<u64> = addrs
                .iter()
                .map(|a| a - vma.start + vma.file_offset)
                .collect();
            let module = Path::new(&vma.name)
                .file_name()
                .map_or(vma.name.clone(), |f| f.to_string_lossy().into_owned());
            let source = Source::Elf(Elf::new(path));
            let results = self.inner.symbolize(&source, Input::FileOffset(&offsets));
            if let Err(err) = &results {
                tracing::debug!("symbolizing {}: {err}", path.display());
            }
            for (k, &addr) in addrs.iter().enumerate() {
                let fallback = |reason| {
                    Resolved::unknown(Some(i), format!("{module}+{:#x}", offsets[k]), reason)
                };
                let resolved = match &results {
                    Ok(syms) => match syms.get(k) {
                        Some(s) => from_symbolized(s, Some(i)).unwrap_or_else(&fallback),
                        None => fallback(MissReason::Other),
                    },
                    Err(_) => fallback(MissReason::FileUnreadable),
                };
                out.insert(addr, resolved);
            }
        }
        self.vdso(&vdso, &mut out);
        out
    }

    /// The vDSO has no file, but every process maps the same kernel-provided image: an
    /// offset into the target's vDSO is resolved at the same offset in our own.
    fn vdso(&mut self, addrs: &[(u64, usize, u64)], out: &mut HashMap<u64, Resolved>) {
        if addrs.is_empty() {
            return;
        }
        let own = *self.own_vdso_start.get_or_insert_with(|| {
            let mut maps = ProcessMaps::default();
            let _ = maps.refresh(std::process::id());
            maps.vmas()
                .iter()
                .find(|v| v.name == "[vdso]")
                .map(|v| v.start)
        });
        let results = own.map(|base| {
            let abs: Vec<u64> = addrs.iter().map(|(_, _, off)| base + off).collect();
            self.inner.symbolize(
                &Source::Process(Process::new(Pid::Slf)),
                Input::AbsAddr(&abs),
            )
        });
        for (k, &(addr, vma, off)) in addrs.iter().enumerate() {
            let resolved = match &results {
                Some(Ok(syms)) => syms
                    .get(k)
                    .map_or(Err(MissReason::Other), |s| from_symbolized(s, Some(vma))),
                Some(Err(_)) => Err(MissReason::Other),
                None => Err(MissReason::NoFile),
            };
            out.insert(
                addr,
                resolved.unwrap_or_else(|reason| {
                    Resolved::unknown(Some(vma), format!("[vdso]+{off:#x}"), reason)
                }),
            );
        }
    }

    /// Resolves kernel lookup addresses through kallsyms.
    pub fn kernel(&mut self, addrs: &[u64]) -> HashMap<u64, Resolved> {
        let source = Source::Kernel(Kernel::default());
        let results = self.inner.symbolize(&source, Input::AbsAddr(addrs));
        addrs
            .iter()
            .enumerate()
            .map(|(k, &addr)| {
                let resolved = match &results {
                    Ok(syms) => syms
                        .get(k)
                        .map_or(Err(MissReason::Other), |s| from_symbolized(s, None)),
                    Err(_) => Err(MissReason::FileUnreadable),
                };
                let resolved = resolved.unwrap_or_else(|reason| {
                    Resolved::unknown(None, format!("{}+{addr:#x}", Mapping::KERNEL), reason)
                });
                (addr, resolved)
            })
            .collect()
    }

    /// Hex build id of an ELF file, read once per path; empty when it has none.
    pub fn build_id(&mut self, path: &Path) -> String {
        if let Some(id) = self.build_ids.get(path) {
            return id.clone();
        }
        let id = match blazesym::helper::read_elf_build_id(path) {
            Ok(Some(bytes)) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            _ => String::new(),
        };
        self.build_ids.insert(path.to_path_buf(), id.clone());
        id
    }
}

fn code_file(info: Option<&CodeInfo<'_>>) -> (String, i64) {
    match info {
        Some(ci) => {
            let path = match &ci.dir {
                Some(dir) if !dir.as_os_str().is_empty() => dir.join(&*ci.file),
                _ => PathBuf::from(&*ci.file),
            };
            (
                path.to_string_lossy().into_owned(),
                ci.line.map_or(0, i64::from),
            )
        }
        None => (String::new(), 0),
    }
}

/// blazesym reports the real function with its line, plus inlined calls outermost first, each
/// with the line inside it; pprof wants innermost first. A miss comes back with its reason.
fn from_symbolized(s: &Symbolized<'_>, vma: Option<usize>) -> Result<Resolved, MissReason> {
    let sym = match s {
        Symbolized::Sym(sym) => sym,
        Symbolized::Unknown(reason) => return Err(MissReason::from_blazesym(*reason)),
    };
    let mut lines = Vec::with_capacity(sym.inlined.len() + 1);
    let mut has_line_info = false;
    for inl in sym.inlined.iter().rev() {
        let (file, line) = code_file(inl.code_info.as_ref());
        has_line_info |= line != 0;
        lines.push(FrameLine {
            function: inl.name.to_string(),
            file,
            line,
        });
    }
    let (file, line) = code_file(sym.code_info.as_deref());
    has_line_info |= line != 0;
    lines.push(FrameLine {
        function: sym.name.to_string(),
        file,
        line,
    });
    Ok(Resolved {
        vma,
        lines,
        miss: None,
        has_line_info,
        has_inlined: !sym.inlined.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker_function_for_symbolize_test() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn resolves_own_function_by_name_with_line() {
        let mut maps = ProcessMaps::default();
        maps.refresh(std::process::id()).unwrap();
        assert!(!maps.is_empty());
        let addr = marker_function_for_symbolize_test as *const () as u64;
        assert_eq!(marker_function_for_symbolize_test(), 42);
        let mut sym = Symbolizer::new();
        let out = sym.user(&maps, &[addr, 8]);
        let r = &out[&addr];
        assert!(r.symbolized(), "{r:?}");
        assert!(
            r.lines
                .last()
                .unwrap()
                .function
                .ends_with("marker_function_for_symbolize_test"),
            "{r:?}"
        );
        assert!(
            r.lines.last().unwrap().file.ends_with("symbolize/mod.rs"),
            "{r:?}"
        );
        let unmapped = &out[&8];
        assert_eq!(unmapped.miss, Some(MissReason::Unmapped));
        assert_eq!(unmapped.lines[0].function, "[unmapped]+0x8");
    }

    /// This process's maps and its vDSO mapping.
    fn own_vdso() -> (ProcessMaps, Vma) {
        let mut maps = ProcessMaps::default();
        maps.refresh(std::process::id()).unwrap();
        let vdso = maps
            .vmas()
            .iter()
            .find(|v| v.name == "[vdso]")
            .expect("a vdso")
            .clone();
        (maps, vdso)
    }

    #[test]
    fn unknown_addresses_name_their_module() {
        let (maps, vdso) = own_vdso();
        // The vDSO's ELF header is no function.
        let addr = vdso.start + 0x10;
        let out = Symbolizer::new().user(&maps, &[addr]);
        assert_eq!(out[&addr].lines[0].function, "[vdso]+0x10");
        assert!(!out[&addr].symbolized());
    }

    #[test]
    fn vdso_functions_are_named() {
        let (maps, vdso) = own_vdso();
        // Scan the vDSO for addresses that resolve: it exports clock_gettime and friends.
        let addrs: Vec<u64> = (vdso.start..vdso.end).step_by(16).collect();
        let out = Symbolizer::new().user(&maps, &addrs);
        let names: Vec<&str> = out
            .values()
            .filter(|r| r.symbolized())
            .map(|r| r.lines[0].function.as_str())
            .collect();
        assert!(
            names.iter().any(|n| n.contains("clock_gettime")),
            "{names:?}"
        );
    }
}
