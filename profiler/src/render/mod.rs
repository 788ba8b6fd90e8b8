//! Renderings of a profile: folded stacks, flame graph SVG, top table, annotated source, diff.
