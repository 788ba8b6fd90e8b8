//! Offsets of the `task_struct` fields the eBPF programs read, from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`). Rust eBPF programs have no CO-RE relocations, so user space
//! finds the offsets and hands them to the programs as a global.
//!
//! This reads just enough of the BTF format (kernel Documentation/bpf/btf.rst): the type
//! records, to walk them in order, and a struct's members with their bit offsets. aya parses
//! BTF too but keeps type lookups crate-private, and the one standalone BTF crate is LGPL;
//! a hundred lines of reading beats either.

use std::path::Path;

use profiler_ebpf::sched::SchedFields;
use profiler_ebpf::targets::TaskOffsets;
use profiler_ebpf::timeline::TaskFields;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read the kernel's BTF at {path}: {source}; the profiler needs a kernel built with CONFIG_DEBUG_INFO_BTF"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel's BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no {0}")]
    Missing(String),
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Offsets of `task_struct.pid`, `.tgid` and `.comm` in the running kernel.
pub fn task_offsets() -> Result<TaskOffsets, BtfError> {
    task_offsets_from(Path::new(VMLINUX))
}

pub fn task_offsets_from(path: &Path) -> Result<TaskOffsets, BtfError> {
    let data = read(path)?;
    let btf = Btf::parse(&data)?;
    let task = btf
        .find_struct("task_struct")
        .ok_or_else(|| BtfError::Missing("struct task_struct".into()))?;
    let field = |name: &str| {
        btf.member_offset(task, name)
            .ok_or_else(|| BtfError::Missing(format!("task_struct.{name}")))
    };
    Ok(TaskOffsets {
        pid: field("pid")?,
        tgid: field("tgid")?,
        comm: field("comm")?,
        valid: 1,
    })
}

/// Offsets of `task_struct.prio` and of the CPU a task is on, which the timeline's records
/// carry. The CPU is `task_struct.cpu`, or `thread_info.cpu` inside it where the kernel keeps
/// it there (x86_64 since 5.16); a kernel with neither gives records without a target CPU.
pub fn timeline_task_fields() -> Result<TaskFields, BtfError> {
    let data = read(Path::new(VMLINUX))?;
    let btf = Btf::parse(&data)?;
    let task = btf
        .find_struct("task_struct")
        .ok_or_else(|| BtfError::Missing("struct task_struct".into()))?;
    let prio = btf
        .member_offset(task, "prio")
        .ok_or_else(|| BtfError::Missing("task_struct.prio".into()))?;
    let cpu = btf.member_offset(task, "cpu").or_else(|| {
        let info = btf.find_struct("thread_info")?;
        Some(btf.member_offset(task, "thread_info")? + btf.member_offset(info, "cpu")?)
    });
    Ok(TaskFields {
        prio,
        cpu: cpu.unwrap_or(0),
        valid: 1,
        has_cpu: u32::from(cpu.is_some()),
    })
}

/// Offsets of the kernel's per-task scheduler accounting that `watch` reads:
/// `task_struct.sched_info.{pcount, run_delay}` and `task_struct.se.nr_migrations`.
pub fn watch_sched_fields() -> Result<SchedFields, BtfError> {
    let data = read(Path::new(VMLINUX))?;
    let btf = Btf::parse(&data)?;
    let nested = |outer: &str, member: &str, inner: &str, field: &str| {
        let outer_id = btf.find_struct(outer)?;
        let inner_id = btf.find_struct(inner)?;
        Some(btf.member_offset(outer_id, member)? + btf.member_offset(inner_id, field)?)
    };
    let missing = |what: &str| BtfError::Missing(what.to_string());
    Ok(SchedFields {
        pcount: nested("task_struct", "sched_info", "sched_info", "pcount")
            .ok_or_else(|| missing("task_struct.sched_info.pcount (CONFIG_SCHED_INFO)"))?,
        run_delay: nested("task_struct", "sched_info", "sched_info", "run_delay")
            .ok_or_else(|| missing("task_struct.sched_info.run_delay (CONFIG_SCHED_INFO)"))?,
        nr_migrations: nested("task_struct", "se", "sched_entity", "nr_migrations")
            .ok_or_else(|| missing("task_struct.se.nr_migrations"))?,
        valid: 1,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, BtfError> {
    std::fs::read(path).map_err(|source| BtfError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The type section as records, each a start offset into `types`.
struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// `records[id - 1]` = offset of type `id`.
    records: Vec<usize>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let bad = BtfError::Malformed;
        let magic = u16::from_le_bytes(
            data.get(0..2)
                .ok_or(bad("shorter than its header"))?
                .try_into()
                .expect("2 bytes"),
        );
        if magic != MAGIC {
            return Err(bad("bad magic (is this a big-endian kernel?)"));
        }
        let field = |i: usize| u32_at(data, 4 + 4 * i).ok_or(bad("shorter than its header"));
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
        let section = |off: u32, len: u32| {
            let start = hdr_len as usize + off as usize;
            data.get(start..start + len as usize)
                .ok_or(bad("a section lies outside the file"))
        };
        let types = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let mut records = Vec::new();
        let mut at = 0;
        while at < types.len() {
            records.push(at);
            let info = u32_at(types, at + 4).ok_or(bad("a type record is cut off"))?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            // Bytes that follow the 12-byte common part, by kind.
            let extra = match kind {
                1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
                3 => 12,                      // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
                _ => return Err(bad("a type of unknown kind")),
            };
            at += 12 + extra;
        }
        Ok(Btf {
            types,
            strings,
            records,
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    fn kind_vlen(&self, id: u32) -> Option<(u32, usize, usize)> {
        let at = *self.records.get((id as usize).checked_sub(1)?)?;
        let info = u32_at(self.types, at + 4)?;
        Some(((info >> 24) & 0x1f, (info & 0xffff) as usize, at))
    }

    fn find_struct(&self, name: &str) -> Option<u32> {
        (1..=self.records.len() as u32).find(|&id| {
            let Some((kind, vlen, at)) = self.kind_vlen(id) else {
                return false;
            };
            // A forward declaration has kind FWD; the definition has members.
            kind == KIND_STRUCT
                && vlen > 0
                && u32_at(self.types, at).is_some_and(|n| self.name(n) == name.as_bytes())
        })
    }

    /// Byte offset of member `name` of struct/union `id`, looking into anonymous members.
    fn member_offset(&self, id: u32, name: &str) -> Option<u32> {
        let (kind, vlen, at) = self.kind_vlen(id)?;
        if kind != KIND_STRUCT && kind != KIND_UNION {
            return None;
        }
        let kind_flag = u32_at(self.types, at + 4)? >> 31 == 1;
        for m in 0..vlen {
            let base = at + 12 + 12 * m;
            let (name_off, ty, off) = (
                u32_at(self.types, base)?,
                u32_at(self.types, base + 4)?,
                u32_at(self.types, base + 8)?,
            );
            // With kind_flag the top 8 bits hold a bitfield size.
            let bits = if kind_flag { off & 0x00ff_ffff } else { off };
            let member = self.name(name_off);
            if member == name.as_bytes() {
                return Some(bits / 8);
            }
            if member.is_empty()
                && let Some(inner) = self.member_offset(self.resolve(ty)?, name)
            {
                return Some(bits / 8 + inner);
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> Option<u32> {
        for _ in 0..16 {
            let (kind, _, at) = self.kind_vlen(id)?;
            match kind {
                8..=11 | 18 => id = u32_at(self.types, at + 8)?,
                _ => return Some(id),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_kernel_has_task_struct_ids_and_comm() {
        let off = task_offsets().expect("this machine's kernel has BTF");
        assert_eq!(off.valid, 1);
        // pid and tgid are adjacent pid_t fields; comm is a 16-byte array further on.
        assert_eq!(off.tgid, off.pid + 4, "{off:?}");
        assert!(off.pid > 0 && off.pid < 16384, "{off:?}");
        assert!(off.comm > 0 && off.comm < 16384, "{off:?}");
    }

    #[test]
    fn running_kernel_has_task_prio_and_cpu() {
        let f = timeline_task_fields().expect("this machine's kernel has BTF");
        let ids = task_offsets().unwrap();
        assert_eq!(f.valid, 1);
        // Both lie before pid (thread_info, when it holds the CPU, is the first member).
        assert!(f.prio > 0 && f.prio < ids.pid, "{f:?} {ids:?}");
        assert_eq!(f.has_cpu, 1, "{f:?}");
        assert!(f.cpu < ids.pid, "{f:?} {ids:?}");
    }

    #[test]
    fn running_kernel_has_the_scheduler_accounting_watch_reads() {
        let f = watch_sched_fields().expect("this kernel has BTF and CONFIG_SCHED_INFO");
        assert_eq!(f.valid, 1);
        // pcount and run_delay are adjacent u64s of struct sched_info.
        assert_eq!(f.run_delay, f.pcount + 8, "{f:?}");
        assert!(f.nr_migrations > 0 && f.nr_migrations < 16384, "{f:?}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for data in [&b""[..], b"\x9f\xeb\x01\x00", b"not btf at all, really"] {
            assert!(Btf::parse(data).is_err());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinux");
        std::fs::write(&path, b"\x9f\xeb\x01\x00\x18\x00\x00\x00").unwrap();
        assert!(task_offsets_from(&path).is_err());
        let missing = task_offsets_from(&dir.path().join("nope")).unwrap_err();
        assert!(
            missing.to_string().contains("CONFIG_DEBUG_INFO_BTF"),
            "{missing}"
        );
    }
}
