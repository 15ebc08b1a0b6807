//! Human-facing renderings of a results file: a terminal table, Markdown shaped like the
//! runbooks' tables, and a self-contained HTML report with real tables and inline SVG charts
//! ([`crate::charts`]).

pub mod charts;
pub mod sweep;

use std::fmt::Write as _;

use crate::plan::Arrivals;
use crate::run::{ConfigResult, ConfigSummary, Results, TargetResult};
use crate::stats;
use crate::text;

/// When the run started, `2026-12-07 13:37 UTC`.
#[must_use]
pub fn started_utc(r: &Results) -> String {
    i64::try_from(r.started_unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(
            || format!("unix time {}", r.started_unix),
            |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

/// What is known of the server behind `t`, for a report's header: the model (the plan's, else
/// what `/v1/models` lists, else `/props`' `model_path`), the deployment and host, and the
/// server's settings as `/props` (llama-server) or `/api/show` (Ollama) reported them: context,
/// slots, threads, build; quantization and size. Each as (what, value), raw (escape to show).
#[must_use]
pub fn server_facts(r: &Results, t: &TargetResult) -> Vec<(&'static str, String)> {
    let info = &t.server_info;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let model = r
        .plan
        .targets
        .iter()
        .find(|p| p.name == t.name)
        .and_then(|p| p.model.clone())
        .or_else(|| text(&t.models["data"][0]["id"]))
        .or_else(|| {
            text(&info["model_path"]).map(|p| p.rsplit('/').next().unwrap_or(&p).to_owned())
        });
    let settings = &info["default_generation_settings"];
    let mut facts = Vec::new();
    let mut push = |what, v: Option<String>| {
        if let Some(v) = v {
            facts.push((what, v));
        }
    };
    push("model", model);
    push("deployment", t.deployment.clone());
    push("host", t.host.clone());
    push(
        "context",
        text(&settings["n_ctx"]).or_else(|| text(&info["n_ctx"])),
    );
    push("slots", text(&info["total_slots"]));
    push(
        "threads",
        text(&info["n_threads"]).or_else(|| text(&settings["n_threads"])),
    );
    push("build", text(&info["build_info"]));
    let details = &info["details"];
    push("parameters", text(&details["parameter_size"]));
    push("quantization", text(&details["quantization_level"]));
    facts
}

/// [`server_facts`] on one line: `model gemma-3-270m, context 2048, slots 4`.
fn facts_line(r: &Results, t: &TargetResult, show: impl Fn(&str) -> String) -> String {
    server_facts(r, t)
        .iter()
        .map(|(what, v)| format!("{what} {}", show(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The failure of a target's `describe` request, for a report.
fn describe_failed(t: &TargetResult) -> Option<String> {
    t.describe_error
        .as_ref()
        .map(|e| format!("the describe request failed ({e}); no describe answer recorded"))
}

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

/// A table row; `evaluated` is the PROMPT column's word for the tokens the server evaluated.
fn row(cols: Columns, target: &str, config: &ConfigResult, evaluated: &str) -> Vec<String> {
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
        prompt_tokens(s, evaluated),
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

/// What to do about the errors a run counted, once per target and kind: today the thinking
/// leak, whose cause (and fix) is in how the server was started, not in the plan.
#[must_use]
pub fn error_hints(r: &Results) -> Vec<String> {
    r.targets
        .iter()
        .filter(|t| {
            t.configs
                .iter()
                .any(|c| c.summary.errors.contains_key("thinking_leaked"))
        })
        .map(|t| match t.backend {
            crate::plan::Backend::Openai => format!(
                "{}: thinking leaked (empty content, the answer in reasoning_content): start llama-server with --jinja so that chat_template_kwargs.enable_thinking = false applies",
                t.name
            ),
            crate::plan::Backend::Ollama => format!(
                "{}: thinking leaked (empty content, the answer in `thinking`): this Ollama or model ignores `think: false`; update Ollama or use a model without thinking",
                t.name
            ),
        })
        .collect()
}

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

/// The targets' deployments (else their names) for a report's title: `panda-llamacpp`.
fn title_names(r: &Results) -> String {
    let mut names: Vec<&str> = r
        .targets
        .iter()
        .map(|t| t.deployment.as_deref().unwrap_or(&t.name))
        .collect();
    names.dedup();
    if names.is_empty() {
        "no target".to_owned()
    } else {
        names.join(", ")
    }
}

/// `, on beast, deployment panda-llamacpp` for what is known of where a target's server runs;
/// empty when nothing is (results written before hosts were recorded).
fn where_served(t: &TargetResult) -> String {
    let mut s = String::new();
    if let Some(h) = &t.host {
        let _ = write!(s, ", on {h}");
    }
    if let Some(d) = &t.deployment {
        let _ = write!(s, ", deployment {d}");
    }
    s
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

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

/// Text made safe inside HTML, in an element or a quoted attribute: characters a terminal would
/// obey shown as escapes ([`text::printable`]), then `&`, `<`, `>` and `"` escaped. The one
/// HTML escape of the reports (the charts' SVG text included).
#[must_use]
pub fn html_escape(s: &str) -> String {
    text::printable(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
