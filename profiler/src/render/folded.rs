//! Folded stacks (`root;caller;leaf count`, one line per distinct stack, sorted): the text
//! form flame graph tools read, and the input of our SVG and diff renderings.

use std::cmp::Ordering;
use std::io::Write;

use rustc_hash::FxHashMap;

use super::{RenderError, Selection, frame_label};
use crate::profile::{Profile, Sample};

#[derive(Debug, Clone, Default)]
pub struct FoldOptions {
    pub selection: Selection,
    /// Put a root frame per thread (from the `thread` label, else `tid N`) under each stack.
    pub per_thread: bool,
    /// Put a root frame per process (from the `process` and `pid` labels) under each stack,
    /// below the thread's when both are asked for.
    pub per_process: bool,
}

/// Distinct stacks with their summed value, sorted by stack for deterministic output.
/// Samples with negative values (possible in foreign diff profiles) are dropped, since folded
/// counts are non-negative.
pub fn fold(profile: &Profile, opts: &FoldOptions) -> Result<Vec<(String, u64)>, RenderError> {
    let mut labels = Labels::default();
    let mut stacks = IdStacks::collect(profile, opts, &mut labels)?;
    stacks.sort_and_merge(&labels);
    Ok((0..stacks.len())
        .map(|i| (labels.spell(stacks.frames(i)), stacks.value(i)))
        .collect())
}

/// A capture's stacks as runs of interned frame labels (root first) in one arena, so that
/// sorting and merging compare small integers instead of long strings with long common
/// prefixes, and two captures folded with one [`Labels`] can be paired up by id.
pub(super) struct IdStacks {
    arena: Vec<u32>,
    /// (start in `arena`, frame count, value)
    stacks: Vec<(u32, u32, u64)>,
}

impl IdStacks {
    /// The selected samples' stacks, merged by location ids, unsorted.
    pub(super) fn collect(
        profile: &Profile,
        opts: &FoldOptions,
        labels: &mut Labels,
    ) -> Result<Self, RenderError> {
        let vi = opts.selection.value_index(profile, "the capture")?;
        // Merge samples on their location ids first (cheap keys): a capture has far fewer
        // distinct stacks than samples.
        let mut by_locations: FxHashMap<(Vec<String>, &[usize]), u64> = FxHashMap::default();
        for (sample, value) in opts.selection.samples(profile, vi) {
            if value <= 0 {
                continue;
            }
            let mut roots = Vec::new();
            if opts.per_process {
                roots.push(process_root(sample).replace(';', ":"));
            }
            if opts.per_thread {
                roots.push(thread_root(sample).replace(';', ":"));
            }
            *by_locations
                .entry((roots, sample.locations.as_slice()))
                .or_default() += value as u64;
        }
        // Each location's labels are formatted and interned once.
        let mut location_frames: Vec<Option<(u32, u32)>> = vec![None; profile.locations.len()];
        let mut location_arena: Vec<u32> = Vec::new();
        let mut arena: Vec<u32> = Vec::new();
        let mut stacks: Vec<(u32, u32, u64)> = Vec::with_capacity(by_locations.len());
        for ((roots, locations), value) in by_locations {
            let start = arena.len();
            for r in roots {
                arena.push(labels.intern_owned(r));
            }
            for &loc in locations.iter().rev() {
                let (from, to) = *location_frames[loc].get_or_insert_with(|| {
                    let from = location_arena.len() as u32;
                    let mut label = String::new();
                    for frame in profile.location_frames(loc) {
                        label.clear();
                        frame_label(&frame, &mut label);
                        location_arena.push(labels.intern(&label));
                    }
                    (from, location_arena.len() as u32)
                });
                arena.extend_from_slice(&location_arena[from as usize..to as usize]);
            }
            if arena.len() == start {
                arena.push(labels.intern("[no frames]"));
            }
            stacks.push((start as u32, (arena.len() - start) as u32, value));
        }
        Ok(Self { arena, stacks })
    }

    /// Sorts in folded-string order and merges equal stacks (different locations can spell
    /// the same stack, e.g. two addresses in one function).
    pub(super) fn sort_and_merge(&mut self, labels: &Labels) {
        let arena = &self.arena;
        let frames =
            |&(start, len, _): &(u32, u32, u64)| &arena[start as usize..(start + len) as usize];
        self.stacks
            .sort_unstable_by(|a, b| labels.cmp_stacks(frames(a), frames(b)));
        self.stacks.dedup_by(|next, kept| {
            let same = frames(next) == frames(kept);
            if same {
                kept.2 += next.2;
            }
            same
        });
    }

    pub(super) fn len(&self) -> usize {
        self.stacks.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    pub(super) fn frames(&self, i: usize) -> &[u32] {
        let (start, len, _) = self.stacks[i];
        &self.arena[start as usize..(start + len) as usize]
    }

    pub(super) fn value(&self, i: usize) -> u64 {
        self.stacks[i].2
    }

    pub(super) fn total(&self) -> u64 {
        self.stacks.iter().map(|s| s.2).sum()
    }
}

/// Frame labels interned to ids: equal ids are equal strings and vice versa.
#[derive(Default)]
pub(super) struct Labels {
    names: Vec<String>,
    ids: FxHashMap<String, u32>,
}

impl Labels {
    /// The folded string of a stack, with room for the count(s) renderers append.
    pub(super) fn spell(&self, ids: &[u32]) -> String {
        let len: usize = ids
            .iter()
            .map(|&id| self.names[id as usize].len() + 1)
            .sum();
        let mut line = String::with_capacity(len + 48);
        for (i, &id) in ids.iter().enumerate() {
            if i > 0 {
                line.push(';');
            }
            line.push_str(&self.names[id as usize]);
        }
        line
    }

    fn intern(&mut self, label: &str) -> u32 {
        match self.ids.get(label) {
            Some(&id) => id,
            None => self.intern_owned(label.to_string()),
        }
    }

    fn intern_owned(&mut self, label: String) -> u32 {
        let next = self.names.len() as u32;
        *self.ids.entry(label).or_insert_with_key(|label| {
            self.names.push(label.clone());
            next
        })
    }

    /// The byte order of the two stacks' folded strings (`a;b;c`), computed from their
    /// labels: labels hold no `;`, so past the common frames only the first differing pair
    /// of labels matters, and when one label is a prefix of the other, what follows it
    /// (`;` or the end of the stack) against the longer label's next byte.
    pub(super) fn cmp_stacks(&self, a: &[u32], b: &[u32]) -> Ordering {
        // Stacks share long runs of root frames: skip them eight ids at a time.
        let n = a.len().min(b.len());
        let mut i = 0;
        while i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
            i += 8;
        }
        while i < n && a[i] == b[i] {
            i += 1;
        }
        if i == n {
            return a.len().cmp(&b.len());
        }
        let (x, y) = (
            self.names[a[i] as usize].as_bytes(),
            self.names[b[i] as usize].as_bytes(),
        );
        let n = x.len().min(y.len());
        match x[..n].cmp(&y[..n]) {
            Ordering::Equal if x.len() < y.len() => {
                if i + 1 < a.len() {
                    b';'.cmp(&y[n])
                } else {
                    Ordering::Less
                }
            }
            Ordering::Equal => {
                if i + 1 < b.len() {
                    x[n].cmp(&b';')
                } else {
                    Ordering::Greater
                }
            }
            order => order,
        }
    }
}

fn process_root(sample: &Sample) -> String {
    match (sample.str_label("process"), sample.num_label("pid")) {
        (Some(name), Some(pid)) => format!("{name} (pid {pid})"),
        (Some(name), None) => name.to_string(),
        (None, Some(pid)) => format!("pid {pid}"),
        (None, None) => "unknown process".to_string(),
    }
}

fn thread_root(sample: &Sample) -> String {
    match (sample.str_label("thread"), sample.num_label("tid")) {
        (Some(name), Some(tid)) => format!("{name} (tid {tid})"),
        (Some(name), None) => name.to_string(),
        (None, Some(tid)) => format!("tid {tid}"),
        (None, None) => "unknown thread".to_string(),
    }
}

/// Writes folded lines to `out`.
pub fn write_folded(
    profile: &Profile,
    opts: &FoldOptions,
    mut out: impl Write,
) -> Result<(), RenderError> {
    let stacks = fold(profile, opts)?;
    write_lines(&stacks, &mut out)?;
    Ok(())
}

pub fn write_lines(
    stacks: &[(String, u64)],
    out: &mut (impl Write + ?Sized),
) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(out);
    for (stack, count) in stacks {
        writeln!(w, "{stack} {count}")?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Label, LabelValue, Line, Mapping, ProfileBuilder, ValueType};

    #[test]
    fn marks_kernel_and_inlined_and_replaces_semicolons() {
        let mut b = ProfileBuilder::new(vec![ValueType::new("samples", "count")]);
        let k = b.add_mapping(Mapping {
            filename: Mapping::KERNEL.into(),
            ..Mapping::default()
        });
        let main = b.function("main", "");
        let odd = b.function("a;b", "");
        let inl = b.function("inl", "");
        let sys = b.function("do_syscall_64", "");
        let l1 = b.location(
            None,
            1,
            vec![Line {
                function: main,
                line: 0,
            }],
        );
        let l2 = b.location(
            None,
            2,
            vec![
                Line {
                    function: inl,
                    line: 0,
                },
                Line {
                    function: odd,
                    line: 0,
                },
            ],
        );
        let l3 = b.location(
            Some(k),
            3,
            vec![Line {
                function: sys,
                line: 0,
            }],
        );
        let thread = vec![Label {
            key: "thread".into(),
            value: LabelValue::Str("w".into()),
        }];
        b.add_sample(Sample {
            locations: vec![l3, l2, l1],
            values: vec![2],
            labels: thread.clone(),
        });
        b.add_sample(Sample {
            locations: vec![l3, l2, l1],
            values: vec![3],
            labels: thread,
        });
        let p = b.finish();
        let mut out = Vec::new();
        write_folded(&p, &FoldOptions::default(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "main;a:b;inl_[i];do_syscall_64_[k] 5\n"
        );
        let per_thread = fold(
            &p,
            &FoldOptions {
                per_thread: true,
                ..FoldOptions::default()
            },
        )
        .unwrap();
        assert_eq!(per_thread[0].0, "w;main;a:b;inl_[i];do_syscall_64_[k]");
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    /// The label comparison agrees with comparing the folded strings, on labels that are
    /// prefixes of each other followed by bytes below and above `;`.
    #[test]
    fn stack_order_is_string_order() {
        let names = [
            "a", "a:b", "a b", "ab", "a::x", "b", "foo", "foo::bar", "a<", "[k]",
        ];
        let mut labels = Labels::default();
        let ids: Vec<u32> = names.iter().map(|n| labels.intern(n)).collect();
        let mut stacks: Vec<Vec<u32>> = Vec::new();
        for &x in &ids {
            stacks.push(vec![x]);
            for &y in &ids {
                stacks.push(vec![x, y]);
                for &z in &ids[..4] {
                    stacks.push(vec![x, y, z]);
                }
            }
        }
        let text = |s: &[u32]| {
            s.iter()
                .map(|&i| labels.names[i as usize].as_str())
                .collect::<Vec<_>>()
                .join(";")
        };
        for a in &stacks {
            for b in &stacks {
                assert_eq!(
                    labels.cmp_stacks(a, b),
                    text(a).cmp(&text(b)),
                    "{:?} vs {:?}",
                    text(a),
                    text(b)
                );
            }
        }
    }
}
