//! `report.md` ([`markdown`]): the runbooks' tables, a header with the run's provenance, and the
//! sweeps' sections ([`super::sweep::markdown`]).

use std::fmt::Write as _;

use super::{
    Columns, capitalize, describe_failed, facts_line, image_cost, image_cost_line, load_line, ms,
    prompt_tokens, slo_details, slo_line, started_utc, sweep, title_names, where_served,
};
use crate::results::Results;
use crate::{stats, text};

/// report.md's title (deployments, date), a line per target with its server's settings, and the
/// run's provenance.
fn markdown_header(r: &Results) -> String {
    let md = text::markdown;
    let short = |h: &str| text::markdown_code(h.get(..12).unwrap_or(h));
    let mut out = format!(
        "# vlmctl bench: {}, {}\n\n",
        md(&title_names(r)),
        started_utc(r)
    );
    for t in &r.targets {
        let facts = facts_line(r, t, |v| format!("**{}**", md(v)));
        let _ = writeln!(
            out,
            "- {} ({}, {}): {}",
            md(&t.name),
            t.backend,
            md(&t.url),
            if facts.is_empty() {
                "no server settings reported".to_owned()
            } else {
                facts
            }
        );
    }
    let _ = write!(
        out,
        "\nplan sha256 {}, image sha256 {}, host {} ({}), GPU {}.\nPercentiles: nearest rank over measured samples ({} runs, {} warm-up excluded).\n",
        short(&r.plan_sha256),
        // A text-only run has no frame.
        if r.image_sha256.is_empty() {
            "`none`".to_owned()
        } else {
            short(&r.image_sha256)
        },
        md(&r.environment.arch),
        md(r.environment.cpu.as_deref().unwrap_or("?")),
        md(r.environment.gpu.as_deref().unwrap_or("none")),
        r.plan.runs,
        r.plan.warmup,
    );
    out
}

/// Markdown shaped like the runbooks' tables (p50 ms, p95, eff Hz, TTFT, prompt tokens, schema,
/// notes), and per target the camera frame's cost ([`image_cost`]).
#[must_use]
///
/// Every string from outside (names, URLs, the server's answer and settings, an imported
/// file's anything) goes through [`text::markdown`]: it reads as the text it is, never as
/// Markdown, HTML or a terminal escape.
pub fn markdown(r: &Results) -> String {
    let md = text::markdown;
    let mut out = markdown_header(r);
    for l in load_line(r).into_iter().chain(slo_line(r)) {
        let _ = writeln!(out, "{}.", capitalize(&l));
    }
    let cols = Columns::of(r);
    let mut heads = vec!["Test", "p50 ms", "p95 ms"];
    heads.extend(cols.rate_heads(true));
    heads.push("TTFT p50 ms");
    heads.extend(cols.token_heads(true));
    heads.extend(["prompt tok", "schema pass"]);
    heads.extend(cols.slo_heads(true));
    heads.push("notes");
    let table_head = format!(
        "| {} |\n|---|{}---|\n",
        heads.join(" | "),
        "---:|".repeat(heads.len() - 2)
    );
    for t in &r.targets {
        let _ = write!(
            out,
            "\n## {} ({}, {}{})\n\n{table_head}",
            md(&t.name),
            t.backend,
            md(&t.url),
            md(&where_served(t))
        );
        for c in &t.configs {
            let s = &c.summary;
            let mut notes = vec![s.wall_ms.map_or("no successful sample".to_owned(), |w| {
                stats::target_band(w.p50).to_owned()
            })];
            if s.cache_hits > 0 {
                notes.push(format!("cache hits {}/{}", s.cache_hits, s.ok));
            }
            for (k, n) in &s.errors {
                notes.push(format!("{n} {k}"));
            }
            let mut cells = vec![
                md(&format!("{} {}", c.name, c.description)),
                ms(s.wall_ms.map(|w| w.p50)),
                ms(s.wall_ms.map(|w| w.p95)),
            ];
            cells.extend(cols.rate_cells(s));
            cells.push(ms(s.ttft_ms.map(|t| t.p50)));
            cells.extend(cols.token_cells(s));
            cells.extend([
                prompt_tokens(s, "evaluated"),
                s.schema_pass_rate
                    .map_or("-".to_owned(), |p| format!("{:.0}%", p * 100.0)),
            ]);
            cells.extend(cols.slo_cells(s));
            cells.push(md(&notes.join("; ")));
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        let details: Vec<String> = slo_details(t).collect();
        if !details.is_empty() {
            let details: Vec<String> = details.iter().map(|d| md(d)).collect();
            let _ = write!(out, "\n{}\n", details.join("  \n"));
        }
        if let Some(cost) = image_cost(r, t) {
            let _ = write!(out, "\n{}\n", md(&capitalize(&image_cost_line(&cost))));
        }
        if let Some(d) = &t.describe_answer {
            let _ = write!(out, "\n`describe` answer: {}\n", md(d));
        }
        if let Some(d) = describe_failed(t) {
            let _ = write!(out, "\n**Warning:** {}\n", md(&d));
        }
    }
    out.push_str(&sweep::markdown(&r.sweep));
    out
}
