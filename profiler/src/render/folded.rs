//! Folded stacks (`root;caller;leaf count`, one line per distinct stack, sorted): the text
//! form flame graph tools read, and the input of our SVG and diff renderings.

use std::collections::HashMap;
use std::io::Write;

use super::{RenderError, Selection, frame_label};
use crate::profile::{Profile, Sample};

#[derive(Debug, Clone, Default)]
pub struct FoldOptions {
    pub selection: Selection,
    /// Put a root frame per thread (from the `thread` label, else `tid N`) under each stack.
    pub per_thread: bool,
}

/// Distinct stacks with their summed value, sorted by stack for deterministic output.
/// Samples with negative values (possible in foreign diff profiles) are dropped, since folded
/// counts are non-negative.
pub fn fold(profile: &Profile, opts: &FoldOptions) -> Result<Vec<(String, u64)>, RenderError> {
    let vi = opts.selection.value_index(profile, "the capture")?;
    let mut stacks: HashMap<String, u64> = HashMap::new();
    let mut line = String::new();
    for (sample, value) in opts.selection.samples(profile, vi) {
        if value <= 0 {
            continue;
        }
        line.clear();
        if opts.per_thread {
            line.push_str(&thread_root(sample).replace(';', ":"));
        }
        for frame in profile.sample_frames(sample) {
            if !line.is_empty() {
                line.push(';');
            }
            frame_label(&frame, &mut line);
        }
        if line.is_empty() {
            line.push_str("[no frames]");
        }
        match stacks.get_mut(line.as_str()) {
            Some(v) => *v += value as u64,
            None => {
                stacks.insert(line.clone(), value as u64);
            }
        }
    }
    let mut out: Vec<(String, u64)> = stacks.into_iter().collect();
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
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
