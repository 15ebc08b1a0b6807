//! Human-facing renderings of results: the terminal table (`terminal`), Markdown shaped like
//! the runbooks' tables (`markdown`), a self-contained HTML report with real tables and inline
//! SVG charts (`html`, [`charts`]), and a rate sweep's verdict and steps in all three
//! ([`sweep`]). What they share is here: the facts and lines every rendering shows, and the one
//! HTML escape ([`html_escape`]).

pub mod charts;
mod html;
mod markdown;
pub mod sweep;
mod terminal;

pub use html::html;
pub use markdown::markdown;
pub use terminal::table;

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
