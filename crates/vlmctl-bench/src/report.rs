//! Human-facing renderings of a results file: a terminal table, Markdown shaped like the
//! runbooks' tables, and a self-contained HTML report with SVG charts.

use std::fmt::Write as _;

use crate::plan::Arrivals;
use crate::run::{ConfigResult, ConfigSummary, Results, TargetResult};
use crate::stats;

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"))
}

/// The prompt's size as the server counted it, and what it evaluated when its cache served the
/// rest: `759 (1 evaluated)`; `evaluated` is the word for it (the terminal table: `eval`).
fn prompt_tokens(s: &ConfigSummary, evaluated: &str) -> String {
    match (s.prompt_tokens_p50, s.prompt_evaluated_p50) {
        (None, _) => "-".to_owned(),
        (Some(total), Some(e)) if e < total => format!("{total} ({e} {evaluated})"),
        (Some(total), _) => total.to_string(),
    }
}

/// What the camera frame costs on one target: config A (the nav prompt with the frame) against
/// T (the same prompt without it), p50 against p50.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageCost {
    /// A's prompt tokens minus T's, when both configs report them.
    pub prompt_tokens: Option<i64>,
    /// A's p50 wall time minus T's, ms, when both had successful samples.
    pub p50_ms: Option<f64>,
    /// [`Self::p50_ms`] as a percentage of T's p50.
    pub p50_pct: Option<f64>,
}

/// The frame's cost on target `t` of `r`; `None` unless it ran both A and T with a frame (a
/// plan without an image sends A text-only too, and then there is nothing to compare).
#[must_use]
pub fn image_cost(r: &Results, t: &TargetResult) -> Option<ImageCost> {
    if r.image_sha256.is_empty() {
        return None;
    }
    let config = |name: &str| {
        t.configs
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.summary)
    };
    let (a, text) = (config("A")?, config("T")?);
    let tokens = |s: &ConfigSummary| s.prompt_tokens_p50.and_then(|n| i64::try_from(n).ok());
    let p50_ms = a.wall_ms.zip(text.wall_ms).map(|(a, t)| a.p50 - t.p50);
    Some(ImageCost {
        prompt_tokens: tokens(a).zip(tokens(text)).map(|(a, t)| a - t),
        p50_ms,
        p50_pct: p50_ms
            .zip(text.wall_ms)
            .filter(|(_, t)| t.p50 > 0.0)
            .map(|(d, t)| 100.0 * d / t.p50),
    })
}

/// `image cost (A vs T, same frame every request): +66 prompt tokens, +3.2 ms p50 (+15 %)`. The
/// plan sends one frame again and again, which a server with a prompt cache encodes once: this
/// is the cost of a repeated frame (the PROMPT column's "evaluated" shows what was cached).
#[must_use]
pub fn image_cost_line(c: &ImageCost) -> String {
    let tokens = c.prompt_tokens.map_or_else(
        || "prompt tokens not reported".to_owned(),
        |n| format!("{n:+} prompt tokens"),
    );
    let time = match (c.p50_ms, c.p50_pct) {
        (Some(d), Some(pct)) => format!("{d:+.1} ms p50 ({pct:+.0} %)"),
        (Some(d), None) => format!("{d:+.1} ms p50"),
        (None, _) => "p50 not measured (no successful sample in A or T)".to_owned(),
    };
    format!("image cost (A vs T, same frame every request): {tokens}, {time}")
}

/// Which of the optional column groups a results file needs: open-loop figures (instead of
/// effective Hz), ITL, TPOT, and the SLO. A group shows when the run has it, so a closed-loop
/// run without an SLO reads as before.
#[derive(Debug, Clone, Copy)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "four independent column groups, each shown or not"
)]
struct Columns {
    open: bool,
    itl: bool,
    tpot: bool,
    slo: bool,
}

impl Columns {
    fn of(r: &Results) -> Self {
        let any = |f: fn(&ConfigSummary) -> bool| {
            r.targets
                .iter()
                .flat_map(|t| &t.configs)
                .any(|c| f(&c.summary))
        };
        Self {
            open: r.plan.load.period().is_some() || any(|s| s.offered_hz.is_some()),
            itl: any(|s| s.itl_ms.is_some()),
            tpot: any(|s| s.tpot_ms.is_some()),
            slo: r.plan.slo.is_some() || any(|s| s.slo.is_some()),
        }
    }

    /// Headers (terminal or Markdown) of the rate columns: the open-loop ones replace
    /// effective Hz.
    fn rate_heads(self, markdown: bool) -> Vec<&'static str> {
        match (self.open, markdown) {
            (false, false) => vec!["EFF Hz"],
            (false, true) => vec!["eff Hz"],
            (true, false) => vec!["OFFERED Hz", "ACHVD Hz", "MISS", "QUEUE p50/p95"],
            (true, true) => vec![
                "offered Hz",
                "achieved Hz",
                "deadline miss",
                "queue p50/p95 ms",
            ],
        }
    }

    fn rate_cells(self, s: &ConfigSummary) -> Vec<String> {
        if self.open {
            vec![
                ms(s.offered_hz),
                ms(s.achieved_hz),
                pct(s.deadline_miss_pct.map(|p| p / 100.0)),
                pair(s.queue_ms),
            ]
        } else {
            vec![ms(s.effective_hz)]
        }
    }

    fn token_heads(self, markdown: bool) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.itl {
            v.push(if markdown {
                "ITL p50/p95 ms"
            } else {
                "ITL p50/p95"
            });
        }
        if self.tpot {
            v.push(if markdown { "TPOT p50 ms" } else { "TPOT ms" });
        }
        v
    }

    fn token_cells(self, s: &ConfigSummary) -> Vec<String> {
        let mut v = Vec::new();
        if self.itl {
            v.push(pair(s.itl_ms));
        }
        if self.tpot {
            v.push(ms(s.tpot_ms.map(|t| t.p50)));
        }
        v
    }

    fn slo_heads(self, markdown: bool) -> Vec<&'static str> {
        match (self.slo, markdown) {
            (false, _) => vec![],
            (true, false) => vec!["SLO", "GOODPUT"],
            (true, true) => vec!["SLO", "goodput"],
        }
    }

    fn slo_cells(self, s: &ConfigSummary) -> Vec<String> {
        if !self.slo {
            return vec![];
        }
        vec![
            s.slo
                .as_ref()
                .map_or("-", |o| if o.met { "met" } else { "MISSED" })
                .to_owned(),
            pct(s.slo.as_ref().and_then(|o| o.goodput)),
        ]
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{:.0}%", x * 100.0))
}

/// `p50/p95` of a series, ms.
fn pair(v: Option<stats::Summary>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| format!("{:.1}/{:.1}", s.p50, s.p95))
}

fn row(cols: Columns, target: &str, config: &ConfigResult) -> Vec<String> {
    let s = &config.summary;
    let w = s.wall_ms;
    let mut v = vec![
        target.to_owned(),
        format!("{} {}", config.name, config.description),
        ms(w.map(|w| w.p50)),
        ms(w.map(|w| w.p95)),
        ms(w.map(|w| w.p99)),
    ];
    v.extend(cols.rate_cells(s));
    v.push(ms(s.ttft_ms.map(|t| t.p50)));
    v.extend(cols.token_cells(s));
    v.extend([
        prompt_tokens(s, "eval"),
        ms(s.server_tokens_per_s),
        s.schema_pass_rate
            .map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
    ]);
    v.extend(cols.slo_cells(s));
    v.push(format!("{}/{}", s.ok, config.samples.len()));
    v
}

fn head(cols: Columns) -> Vec<String> {
    let mut v = vec!["TARGET", "CONFIG", "P50 ms", "P95", "P99"];
    v.extend(cols.rate_heads(false));
    v.push("TTFT p50");
    v.extend(cols.token_heads(false));
    v.extend(["PROMPT tok", "SRV tok/s", "SCHEMA"]);
    v.extend(cols.slo_heads(false));
    v.push("OK");
    v.into_iter().map(str::to_owned).collect()
}

/// How the load was applied, for a line beside a table; `None` in closed loop.
#[must_use]
pub fn load_line(r: &Results) -> Option<String> {
    let load = &r.plan.load;
    let rate = load.rate_hz.filter(|_| load.period().is_some())?;
    Some(match load.arrivals {
        Arrivals::Constant => format!(
            "open loop: constant arrivals at {rate} Hz; latency counts from each request's \
             scheduled send"
        ),
        Arrivals::Poisson => format!(
            "open loop: Poisson arrivals at {rate} Hz on average (seed {}); latency counts from \
             each request's scheduled send",
            load.seed
        ),
    })
}

/// The plan's SLO and what makes a request good, for a line beside a table.
#[must_use]
pub fn slo_line(r: &Results) -> Option<String> {
    let o = r.plan.slo.as_ref()?;
    let mut bounds: Vec<String> = [("p50", o.p50_ms), ("p95", o.p95_ms), ("p99", o.p99_ms)]
        .into_iter()
        .filter_map(|(k, b)| Some(format!("{k} <= {} ms", b?)))
        .collect();
    if let Some(b) = o.ttft_ms {
        bounds.push(format!("TTFT p95 <= {b} ms (streamed configs)"));
    }
    if let Some(b) = o.schema_pass {
        bounds.push(format!("schema pass >= {:.0}%", b * 100.0));
    }
    let mut good = vec!["succeeded".to_owned(), "passed the schema".to_owned()];
    if let Some(b) = o.request_wall_ms() {
        good.push(format!("took <= {b} ms"));
    }
    if let Some(b) = o.ttft_ms {
        good.push(format!("if streamed, had TTFT <= {b} ms"));
    }
    let last = good.pop().unwrap_or_default();
    Some(format!(
        "SLO: {}; goodput = share of requests that {} and {last} (a failed request counts as \
         too slow)",
        bounds.join(", "),
        good.join(", ")
    ))
}

/// Per config of `t` with an SLO: `target C: SLO met: p95 25.1 ms <= 30.0 ms; goodput 19/20`.
fn slo_details(t: &TargetResult) -> impl Iterator<Item = String> + '_ {
    t.configs.iter().filter_map(move |c| {
        let o = c.summary.slo.as_ref()?;
        Some(format!(
            "{} {}: SLO {}: {}; goodput {}/{}",
            t.name,
            c.name,
            if o.met { "met" } else { "MISSED" },
            if o.checks.is_empty() {
                "no bound applies".to_owned()
            } else {
                o.describe()
            },
            o.good,
            o.total
        ))
    })
}

/// The terminal table.
#[must_use]
pub fn table(r: &Results) -> String {
    let cols = Columns::of(r);
    let rows: Vec<Vec<String>> = r
        .targets
        .iter()
        .flat_map(|t| t.configs.iter().map(move |c| row(cols, &t.name, c)))
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
            .map(|(c, w)| format!("{c:<w$}"))
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
    }
    out
}

/// Markdown shaped like the runbooks' tables (p50 ms, p95, eff Hz, TTFT, prompt tokens, schema,
/// notes), and per target the camera frame's cost ([`image_cost`]).
#[must_use]
pub fn markdown(r: &Results) -> String {
    let mut out = format!(
        "# vlmctl bench\n\nplan sha256 `{}`, image sha256 `{}`, host {} ({}), GPU {}.\nPercentiles: nearest rank over measured samples ({} runs, {} warm-up excluded).\n",
        &r.plan_sha256[..12.min(r.plan_sha256.len())],
        &r.image_sha256[..12.min(r.image_sha256.len())],
        r.environment.arch,
        r.environment.cpu.as_deref().unwrap_or("?"),
        r.environment.gpu.as_deref().unwrap_or("none"),
        r.plan.runs,
        r.plan.warmup,
    );
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
            "\n## {} ({:?}, {})\n\n{table_head}",
            t.name, t.backend, t.url
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
                format!("{} {}", c.name, c.description),
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
            cells.push(notes.join("; "));
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        let details: Vec<String> = slo_details(t).collect();
        if !details.is_empty() {
            let _ = write!(out, "\n{}\n", details.join("  \n"));
        }
        if let Some(cost) = image_cost(r, t) {
            let _ = write!(out, "\n{}\n", capitalize(&image_cost_line(&cost)));
        }
        if let Some(d) = &t.describe_answer {
            let _ = write!(out, "\n`describe` answer: {}\n", d.replace('\n', " "));
        }
    }
    out.push_str(&crate::sweep::markdown(&r.sweep));
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A self-contained HTML page: the Markdown table's numbers, a latency CDF per config and p50
/// bars against the 27.8 ms (36 Hz) target line, and against `baseline` when given.
#[must_use]
pub fn html(r: &Results, baseline: Option<&Results>) -> String {
    let mut out = String::from(
        "<!doctype html><meta charset=utf-8><title>vlmctl bench</title><style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style><h1>vlmctl bench</h1>",
    );
    let _ = write!(out, "<pre>{}</pre>", esc(&table(r)));
    cdf_svg(&mut out, r);
    p50_svg(&mut out, r, baseline);
    crate::sweep::html(&mut out, &r.sweep);
    let _ = write!(out, "<h2>Markdown</h2><pre>{}</pre>", esc(&markdown(r)));
    out
}

const W: f64 = 640.0;

/// Latency CDF per config: x = latency ms, y = fraction of samples.
fn cdf_svg(out: &mut String, r: &Results) {
    // CDF: x = latency ms, y = fraction.
    let series: Vec<(String, Vec<f64>)> = r
        .targets
        .iter()
        .flat_map(|t| {
            t.configs.iter().map(move |c| {
                (format!("{} {}", t.name, c.name), {
                    let mut v: Vec<f64> = c
                        .samples
                        .iter()
                        .filter(|s| s.error.is_none())
                        .map(|s| s.wall_ms)
                        .collect();
                    v.sort_by(f64::total_cmp);
                    v
                })
            })
        })
        .collect();
    // x spans the observed range, so close configs are told apart.
    let max = series
        .iter()
        .filter_map(|(_, v)| v.last().copied())
        .fold(f64::MIN, f64::max);
    let min = series
        .iter()
        .filter_map(|(_, v)| v.first().copied())
        .fold(f64::MAX, f64::min);
    let (min, max) = if min < max {
        (min, max)
    } else {
        (0.0, max.max(1.0))
    };
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    ];
    let (w, h) = (W, 320.0);
    let _ = write!(
        out,
        "<h2>Latency CDF</h2><svg width='{w}' height='{}' xmlns='http://www.w3.org/2000/svg'><rect width='{w}' height='{h}' fill='white' stroke='#999'/>",
        h + 20.0
    );
    for (i, (name, v)) in series.iter().enumerate() {
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(k, x)| {
                format!(
                    "{:.1},{:.1}",
                    (x - min) / (max - min) * w,
                    h - (k + 1) as f64 / v.len() as f64 * h
                )
            })
            .collect();
        let c = colors[i % colors.len()];
        let _ = write!(
            out,
            "<polyline fill='none' stroke='{c}' points='{}'/><text x='5' y='{}' fill='{c}'>{}</text>",
            pts.join(" "),
            15 + 15 * i,
            esc(name)
        );
    }
    let _ = write!(
        out,
        "<text x='5' y='{}'>{min:.1} ms</text><text x='{}' y='{}'>{max:.1} ms</text></svg>",
        h + 15.0,
        w - 60.0,
        h + 15.0
    );
}

/// p50 bars per config against the 27.8 ms line, with the baseline's p50 in grey.
fn p50_svg(out: &mut String, r: &Results, baseline: Option<&Results>) {
    let w = W;
    // p50 bars.
    let bars: Vec<(String, f64, Option<f64>)> = r
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
                    format!("{} {}", t.name, c.name),
                    c.summary.wall_ms.map_or(0.0, |s| s.p50),
                    base,
                )
            })
        })
        .collect();
    let top = bars
        .iter()
        .map(|b| b.1.max(b.2.unwrap_or(0.0)))
        .fold(30.0f64, f64::max)
        * 1.1;
    let bh = 22.0;
    let height = bh * bars.len() as f64 + 30.0;
    let _ = write!(
        out,
        "<h2>p50 per config (line: 27.8 ms = 36 Hz target{})</h2><svg width='{w}' height='{height}' xmlns='http://www.w3.org/2000/svg'>",
        if baseline.is_some() {
            "; grey: baseline"
        } else {
            ""
        }
    );
    for (i, (name, p50, base)) in bars.iter().enumerate() {
        let y = i as f64 * bh;
        if let Some(b) = base {
            let _ = write!(
                out,
                "<rect x='150' y='{:.1}' width='{:.1}' height='8' fill='#bbb'/>",
                y + 12.0,
                b / top * (w - 160.0)
            );
        }
        let _ = write!(
            out,
            "<text x='0' y='{:.1}'>{}</text><rect x='150' y='{:.1}' width='{:.1}' height='10' fill='#1f77b4'/><text x='{:.1}' y='{:.1}'>{p50:.1}</text>",
            y + 14.0,
            esc(name),
            y + 2.0,
            p50 / top * (w - 160.0),
            155.0 + p50 / top * (w - 160.0),
            y + 11.0
        );
    }
    let x = 150.0 + 27.8 / top * (w - 160.0);
    let _ = write!(
        out,
        "<line x1='{x:.1}' x2='{x:.1}' y1='0' y2='{height}' stroke='red' stroke-dasharray='4'/></svg>"
    );
}
