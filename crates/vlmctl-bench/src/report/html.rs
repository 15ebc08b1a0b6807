//! `report.html` ([`html`]): self-contained, with real tables and the charts as inline SVG
//! ([`super::charts`]); every string from outside goes through [`html_escape`].

use std::fmt::Write as _;

use super::{
    Columns, capitalize, charts, describe_failed, head, html_escape, image_cost, image_cost_line,
    load_line, row, server_facts, slo_details, slo_line, started_utc, sweep, title_names,
};
use crate::results::Results;

/// Latency against offered rate, per sweep (plotters, through [`crate::charts`]).
fn sweep_figures(out: &mut String, r: &Results) {
    for (i, sw) in r.sweep.iter().enumerate() {
        let pts = sw.series();
        let p50: Vec<(f64, f64)> = pts
            .iter()
            .filter_map(|p| Some((p.offered_hz, p.p50_ms?)))
            .collect();
        let p95: Vec<(f64, f64)> = pts
            .iter()
            .filter_map(|p| Some((p.offered_hz, p.p95_ms?)))
            .collect();
        let _ = writeln!(
            out,
            "<figure id=chart-sweep-{i}>{}<figcaption>{} {}: latency against offered rate \
             ({})</figcaption></figure>",
            crate::charts::latency_vs_rate(&p50, &p95, None),
            html_escape(&sw.target),
            html_escape(&sw.config),
            html_escape(&sw.verdict_line())
        );
    }
}

const STYLE: &str = "body{font:14px sans-serif;margin:2em;max-width:1200px}\
table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}\
th{background:#f3f3f3}td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}\
figure{margin:1em 0}svg{max-width:100%;height:auto}code{font-size:13px}\
table.servers td,table.servers th{text-align:left;white-space:normal}.started{color:#555}\
.warning{background:#fff4e5;border-left:4px solid #e69f00;padding:6px 10px}";

/// A self-contained HTML page (nothing fetched): the terminal table's columns as a real
/// `<table>`, the lines beside it, a latency CDF per config and p50 bars against the 27.8 ms
/// (36 Hz) target line, beside `baseline`'s when given ([`charts`], inline SVG).
#[must_use]
pub fn html(r: &Results, baseline: Option<&Results>) -> String {
    let mut out = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>vlmctl bench: {title}, {date}</title>\
         <style>{STYLE}</style><h1>vlmctl bench: {title}</h1>\n<p class=started>{date}</p>\n",
        title = html_escape(&title_names(r)),
        date = html_escape(&started_utc(r)),
    );
    out.push_str("<table class=servers><thead><tr><th scope=col>target</th><th scope=col>server</th><th scope=col>settings</th></tr></thead><tbody>\n");
    for t in &r.targets {
        let facts = server_facts(r, t);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} <code>{}</code></td><td>",
            html_escape(&t.name),
            t.backend,
            html_escape(&t.url)
        );
        if facts.is_empty() {
            out.push_str("no server settings reported");
        }
        for (i, (what, v)) in facts.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}{what} <strong>{}</strong>", html_escape(v));
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n");
    let _ = writeln!(
        out,
        "<p>plan sha256 <code>{}</code>, image sha256 \
         <code>{}</code>, host {} ({}), GPU {}. Percentiles: nearest rank over measured samples \
         ({} runs, {} warm-up excluded).</p>",
        html_escape(r.plan_sha256.get(..12).unwrap_or(&r.plan_sha256)),
        html_escape(r.image_sha256.get(..12).unwrap_or(&r.image_sha256)),
        html_escape(&r.environment.arch),
        html_escape(r.environment.cpu.as_deref().unwrap_or("?")),
        html_escape(r.environment.gpu.as_deref().unwrap_or("none")),
        r.plan.runs,
        r.plan.warmup,
    );
    for t in &r.targets {
        if let Some(d) = describe_failed(t) {
            let _ = writeln!(
                out,
                "<p class=warning><strong>Warning:</strong> {}: {}</p>",
                html_escape(&t.name),
                html_escape(&d)
            );
        }
    }
    for l in load_line(r).into_iter().chain(slo_line(r)) {
        let _ = writeln!(out, "<p>{}.</p>", html_escape(&capitalize(&l)));
    }
    out.push_str("<h2>Results</h2>\n");
    html_table(&mut out, r);
    let mut notes: Vec<String> = r.targets.iter().flat_map(slo_details).collect();
    for t in &r.targets {
        if let Some(cost) = image_cost(r, t) {
            notes.push(format!("{}: {}", t.name, image_cost_line(&cost)));
        }
        for c in &t.configs {
            for (k, n) in &c.summary.errors {
                notes.push(format!("{} {}: {n} x {k}", t.name, c.name));
            }
        }
    }
    if !notes.is_empty() {
        out.push_str("<ul class=notes>");
        for n in &notes {
            let _ = write!(out, "<li>{}</li>", html_escape(n));
        }
        out.push_str("</ul>\n");
    }
    cdf_figure(&mut out, r);
    p50_figure(&mut out, r, baseline);
    sweep::html(&mut out, &r.sweep);
    sweep_figures(&mut out, r);
    for t in &r.targets {
        if let Some(d) = &t.describe_answer {
            let _ = writeln!(
                out,
                "<p><code>describe</code> answer ({}): {}</p>",
                html_escape(&t.name),
                html_escape(d)
            );
        }
    }
    out.push_str("</html>\n");
    out
}

/// The terminal table's columns as an HTML table (the PROMPT column says "evaluated" in full).
fn html_table(out: &mut String, r: &Results) {
    let cols = Columns::of(r);
    out.push_str("<table class=results><thead><tr>");
    for h in head(cols) {
        let _ = write!(out, "<th scope=col>{}</th>", html_escape(&h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for t in &r.targets {
        for c in &t.configs {
            out.push_str("<tr>");
            for cell in row(cols, &t.name, c, "evaluated") {
                let _ = write!(out, "<td>{}</td>", html_escape(&cell));
            }
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</tbody></table>\n");
}

/// The latency CDF per config: successful samples only.
fn cdf_figure(out: &mut String, r: &Results) {
    let samples: Vec<(String, Vec<f64>)> = r
        .targets
        .iter()
        .flat_map(|t| {
            t.configs.iter().map(move |c| {
                let mut v: Vec<f64> = c
                    .samples
                    .iter()
                    .filter(|s| s.error.is_none())
                    .map(|s| s.wall_ms)
                    .collect();
                v.sort_by(f64::total_cmp);
                (format!("{} {}", t.name, c.name), v)
            })
        })
        .collect();
    let series: Vec<charts::CdfSeries<'_>> = samples
        .iter()
        .map(|(name, v)| charts::CdfSeries { name, sorted_ms: v })
        .collect();
    figure(
        out,
        "chart-cdf",
        "Latency CDF per config (successful requests; circle: p50, triangle: p95)",
        &charts::latency_cdf(&series),
    );
}

/// p50 bars per config, beside `baseline`'s for the same target and config.
fn p50_figure(out: &mut String, r: &Results, baseline: Option<&Results>) {
    let labels: Vec<(String, Option<f64>, Option<f64>)> = r
        .targets
        .iter()
        .flat_map(|t| {
            t.configs.iter().map(move |c| {
                let base = baseline.and_then(|b| {
                    b.targets
                        .iter()
                        .find(|x| x.name == t.name)?
                        .configs
                        .iter()
                        .find(|x| x.name == c.name)?
                        .summary
                        .wall_ms
                        .map(|s| s.p50)
                });
                (
                    format!("{} {} {}", t.name, c.name, c.description),
                    c.summary.wall_ms.map(|s| s.p50),
                    base,
                )
            })
        })
        .collect();
    let bars: Vec<charts::Bar<'_>> = labels
        .iter()
        .map(|(label, p50_ms, baseline_ms)| charts::Bar {
            label,
            p50_ms: *p50_ms,
            baseline_ms: *baseline_ms,
        })
        .collect();
    figure(
        out,
        "chart-p50",
        &format!(
            "p50 per config against the 27.8 ms (36 Hz) target{}",
            if baseline.is_some() {
                "; grey: the baseline run"
            } else {
                ""
            }
        ),
        &charts::p50_bars(&bars, baseline.map(|_| "the --baseline run")),
    );
}

/// A chart under its heading; `id` names it for tests and links.
fn figure(out: &mut String, id: &str, caption: &str, svg: &str) {
    let _ = writeln!(
        out,
        "<figure id={id}><figcaption><h2>{}</h2></figcaption>\n{svg}</figure>",
        html_escape(caption)
    );
}
