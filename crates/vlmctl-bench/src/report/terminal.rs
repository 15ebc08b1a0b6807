//! The terminal table of a run ([`table`]): per target its server's facts, a row per config,
//! the SLO and the load, and hints for the errors counted.

use std::fmt::Write as _;

use super::{
    Columns, describe_failed, error_hints, head, image_cost, image_cost_line, load_line, row,
    slo_details, slo_line,
};
use crate::results::Results;
use crate::text;

/// The terminal table.
#[must_use]
pub fn table(r: &Results) -> String {
    let cols = Columns::of(r);
    let rows: Vec<Vec<String>> = r
        .targets
        .iter()
        .flat_map(|t| t.configs.iter().map(move |c| row(cols, &t.name, c, "eval")))
        .collect();
    let head = head(cols);
    let mut widths: Vec<usize> = head.iter().map(String::len).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{:<w$}", text::printable(c)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(&head);
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    for l in load_line(r)
        .into_iter()
        .chain(slo_line(r))
        .chain(r.targets.iter().flat_map(slo_details))
    {
        out.push('\n');
        out.push_str(&l);
    }
    for t in &r.targets {
        if let Some(cost) = image_cost(r, t) {
            let _ = write!(out, "\n{}: {}", t.name, image_cost_line(&cost));
        }
    }
    for t in &r.targets {
        for c in &t.configs {
            for (k, n) in &c.summary.errors {
                let _ = write!(out, "\n{} {}: {n} x {k}", t.name, c.name);
            }
        }
        if let Some(d) = describe_failed(t) {
            let _ = write!(out, "\n{}: {d}", t.name);
        }
    }
    for h in error_hints(r) {
        let _ = write!(out, "\nhint: {h}");
    }
    // Names, URLs and error details come from the plan, the server or an imported file.
    text::printable(&out).into_owned()
}
