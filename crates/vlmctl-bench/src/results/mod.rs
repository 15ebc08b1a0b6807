//! The results file's types (`results.json`): plain serde data, at the bottom of the crate
//! beside the plan. What computes them lives above: [`crate::run`] and [`crate::sweep`] measure,
//! [`crate::summary`] summarizes, [`crate::slo`] checks the SLO, `check` (here) validates a
//! file read from outside, [`crate::report`] renders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{ErrorKind, ServerTimings};
use crate::plan::{Arrivals, Backend, Plan, SweepSpec};
use crate::schema::Strategy;
use crate::stats::Summary;

mod check;

/// Results file format identifier.
pub const FORMAT: &str = "vlmctl-bench/1";

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// 0-based index within its config (warm-ups counted separately).
    pub index: usize,
    /// Client wall time, ms (from the scheduled send time in open loop).
    pub wall_ms: f64,
    /// Time to first token, ms (streaming).
    pub ttft_ms: Option<f64>,
    /// Failure kind, if any.
    pub error: Option<ErrorKind>,
    /// Failure detail.
    pub error_detail: Option<String>,
    /// Schema strategy of a successful answer.
    pub strategy: Option<Strategy>,
    /// Server timings.
    pub server: ServerTimings,
    /// Completion tokens per the server.
    pub completion_tokens: Option<u64>,
    /// Open loop: when the request was scheduled, ms after the config's first scheduled send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_ms: Option<f64>,
    /// Open loop: how late the client sent it, ms (scheduled send to the moment it was handed
    /// to the HTTP client). Waiting in the server's queue is not in it: that is in `wall_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ms: Option<f64>,
    /// Streamed: ms between consecutive non-empty deltas ([`crate::client::Answer::itl_ms`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub itl_ms: Vec<f64>,
    /// Why the server's [`Self::server`] timings are left out of TPOT and server tokens/s
    /// (`timings_problem`: a time that is negative, or longer than the client waited), when
    /// they are. The figures themselves are kept as the server sent them. Absent when they are
    /// usable, and in results written before it existed (summaries recompute it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings_unusable: Option<String>,
}

/// How much longer than the client waited a server may say it worked on a request, ms: servers
/// time their own phases on their own clock, and round.
pub const TIMINGS_SLACK_MS: f64 = 1000.0;

/// Derived per-config figures; recomputable from the samples by `summarize_for`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// Successful samples.
    pub ok: usize,
    /// Errors by kind.
    pub errors: BTreeMap<String, usize>,
    /// Wall time of successful samples.
    pub wall_ms: Option<Summary>,
    /// 1000 / p50.
    pub effective_hz: Option<f64>,
    /// TTFT of successful streamed samples.
    pub ttft_ms: Option<Summary>,
    /// Completion tokens / wall seconds, per sample, p50.
    pub client_tokens_per_s: Option<f64>,
    /// Sum of `predicted_n` / sum of `predicted_ms`, as the server timed it.
    pub server_tokens_per_s: Option<f64>,
    /// Samples whose prompt was (partly) served from cache.
    pub cache_hits: usize,
    /// The prompt's size as the server counted it (image tokens included), p50 over successful
    /// samples that report it: `prompt_n + cache_n` (Ollama: `prompt_eval_count`). Absent in
    /// results written before it existed.
    #[serde(default)]
    pub prompt_tokens_p50: Option<u64>,
    /// Prompt tokens the server evaluated (`prompt_n`), p50: below [`Self::prompt_tokens_p50`]
    /// when its prompt cache served the rest.
    #[serde(default)]
    pub prompt_evaluated_p50: Option<u64>,
    /// Samples per schema strategy (nav configs).
    pub schema: BTreeMap<String, usize>,
    /// (strategy 1 + 2) / successful samples.
    pub schema_pass_rate: Option<f64>,
    /// Share of samples slower than the open-loop period.
    pub deadline_miss_pct: Option<f64>,
    /// Open loop: the plan's rate, requests per second (Poisson: its mean).
    #[serde(default)]
    pub offered_hz: Option<f64>,
    /// Open loop: successful completions per second, (n - 1) over the time from the first
    /// successful completion to the last. Shown instead of [`Self::effective_hz`], which
    /// open loop leaves empty: 1000 / p50 is a closed loop's rate, not an open loop's.
    #[serde(default)]
    pub achieved_hz: Option<f64>,
    /// Open loop: [`Sample::queue_ms`] of all samples.
    #[serde(default)]
    pub queue_ms: Option<Summary>,
    /// Streamed: inter-token latency, every gap of every successful sample pooled.
    #[serde(default)]
    pub itl_ms: Option<Summary>,
    /// Time per output token as the server timed it, `predicted_ms / predicted_n` per
    /// successful sample that reports them.
    #[serde(default)]
    pub tpot_ms: Option<Summary>,
    /// The plan's SLO checked ([`crate::slo::evaluate`]); `None` without an `[slo]`.
    #[serde(default)]
    pub slo: Option<SloReport>,
}

/// One config's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigResult {
    /// Letter.
    pub name: String,
    /// What it sends.
    pub description: String,
    /// Summary of `samples`.
    pub summary: ConfigSummary,
    /// Warm-up samples (not in the summary).
    pub warmup: Vec<Sample>,
    /// Measured samples.
    pub samples: Vec<Sample>,
}

/// One target's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    /// Plan label.
    pub name: String,
    /// Protocol.
    pub backend: Backend,
    /// Base URL, as [`Self::host`] sees it (never a local forward's port).
    pub url: String,
    /// The host the server runs on (`--host`'s or the plan's name for it; this machine's host
    /// name for this machine). Absent in results written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The vlmctl deployment measured: the one the plan named, or the managed container found
    /// serving the URL. Absent when none is known, and in results written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// `/props` (llama-server) or `/api/show` (Ollama), as returned.
    pub server_info: Value,
    /// `/v1/models` (or `/api/tags`), as returned.
    pub models: Value,
    /// The first `describe` answer, for a human to read.
    pub describe_answer: Option<String>,
    /// Why the `describe` request failed (`timeout: ...`), when the plan asked for one and it
    /// did. Absent when it succeeded or was not asked, and in results written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub describe_error: Option<String>,
    /// Per config.
    pub configs: Vec<ConfigResult>,
}

/// Where and with what the run happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// `std::env::consts::ARCH`.
    pub arch: String,
    /// CPU model from /proc/cpuinfo.
    pub cpu: Option<String>,
    /// nvidia-smi's GPU line (name, driver, memory), when present.
    pub gpu: Option<String>,
    /// vlmctl version.
    pub vlmctl: String,
}

/// A results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`FORMAT`].
    pub format: String,
    /// Seconds since the epoch.
    pub started_unix: u64,
    /// The plan as run.
    pub plan: Plan,
    /// sha256 of the plan file.
    pub plan_sha256: String,
    /// sha256 of each prompt.
    pub prompt_sha256: BTreeMap<String, String>,
    /// sha256 of the image.
    pub image_sha256: String,
    /// Environment.
    pub environment: Environment,
    /// Per target.
    pub targets: Vec<TargetResult>,
    /// Rate sweeps ([`crate::sweep`]), one per target; empty for an ordinary run and in
    /// results written before sweeps existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<crate::sweep::SweepResult>,
}

impl Results {
    /// Whether any request of any config of any target succeeded: a run with none measured
    /// nothing (its error counts say why).
    #[must_use]
    pub fn any_succeeded(&self) -> bool {
        self.targets
            .iter()
            .flat_map(|t| &t.configs)
            .any(|c| c.summary.ok > 0)
    }
}

/// The longest latency a results file may hold, ms (about 31 years): longer than any run can
/// last (100 000 runs at the slowest open-loop rate, one every 1000 s, take 3.2 years), and far
/// inside what a chart's axis or a mean can hold.
pub const MAX_LATENCY_MS: f64 = 1e12;

/// Largest plausible rate (Hz, tokens/s): no server answers or generates 1e9 a second.
pub const MAX_PER_SECOND: f64 = 1e9;

/// What a figure of a results file measures, and so which values it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Figure {
    /// Milliseconds: `0..=`[`MAX_LATENCY_MS`].
    Latency,
    /// Seconds: `0..=`[`MAX_LATENCY_MS`] / 1000.
    Seconds,
    /// Per second (Hz, tokens/s): `0..=`[`MAX_PER_SECOND`].
    PerSecond,
    /// A share: `0..=1`.
    Rate,
    /// A percentage: `0..=100`.
    Percent,
}

impl Figure {
    /// Why `v` cannot be this figure, if it cannot.
    pub(crate) fn problem(self, v: f64) -> Option<&'static str> {
        let (max, too_big) = match self {
            Self::Latency => (MAX_LATENCY_MS, "longer than any run can last (1e12 ms)"),
            Self::Seconds => (
                MAX_LATENCY_MS / 1000.0,
                "longer than any run can last (1e9 s)",
            ),
            Self::PerSecond => (MAX_PER_SECOND, "faster than any server (1e9 per second)"),
            Self::Rate => (1.0, "a share above 1"),
            Self::Percent => (100.0, "a percentage above 100"),
        };
        if !v.is_finite() {
            Some("not a finite number")
        } else if v < 0.0 {
            Some(match self {
                Self::Latency | Self::Seconds => "a negative time",
                Self::PerSecond => "a negative rate",
                Self::Rate | Self::Percent => "a negative share",
            })
        } else if v > max {
            Some(too_big)
        } else {
            None
        }
    }
}

/// One bound, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloCheck {
    /// The plan's key: `p50_ms`, `p95_ms`, `p99_ms`, `ttft_ms` (at p95) or `schema_pass`.
    pub name: String,
    /// The bound.
    pub bound: f64,
    /// The measured figure (ms, or the pass share); `None` when the percentile falls on a
    /// failed request or there was no measured request.
    pub actual: Option<f64>,
    /// Within the bound (a latency at most, a pass share at least).
    pub met: bool,
}

/// A config against the plan's SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloReport {
    /// Every bound that applies to the config, in the plan's order.
    pub checks: Vec<SloCheck>,
    /// Every check met (and at least one request measured).
    pub met: bool,
    /// Good requests.
    pub good: usize,
    /// Measured requests.
    pub total: usize,
    /// `good / total` (`None` without requests).
    pub goodput: Option<f64>,
}

impl SloReport {
    /// The checks not met, as `p95 41.2 ms > 30.0 ms`, for a line under a table.
    #[must_use]
    pub fn describe(&self) -> String {
        self.checks
            .iter()
            .map(SloCheck::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl SloCheck {
    /// `p95 25.1 ms <= 30.0 ms`, `schema pass 90% < 95%`, `p99 failed requests > 50.0 ms`.
    #[must_use]
    pub fn describe(&self) -> String {
        let (label, pct) = match self.name.as_str() {
            "schema_pass" => ("schema pass", true),
            "ttft_ms" => ("TTFT p95", false),
            other => (other.trim_end_matches("_ms"), false),
        };
        let show = |v: f64| {
            if pct {
                format!("{:.0}%", v * 100.0)
            } else {
                format!("{v:.1} ms")
            }
        };
        let op = match (pct, self.met) {
            (false, true) => "<=",
            (false, false) => ">",
            (true, true) => ">=",
            (true, false) => "<",
        };
        let actual = self
            .actual
            .map_or_else(|| "on a failed request".to_owned(), &show);
        format!("{label} {actual} {op} {}", show(self.bound))
    }
}

/// The sweep's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SweepVerdict {
    /// The highest passing rate, with the lowest failing one above it.
    Sustains {
        /// Highest rate that met the SLO.
        hz: f64,
        /// Lowest rate above it that did not.
        failed_hz: f64,
        /// Whether the two are within the precision (false: the step limit stopped it).
        precise: bool,
    },
    /// The lowest rate already failed.
    BelowRange {
        /// `min_hz`.
        hz: f64,
    },
    /// The highest rate passed: the capacity may be higher.
    TopOfRange {
        /// `max_hz`.
        hz: f64,
    },
}

/// One step of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepStep {
    /// Rate offered, requests per second (Poisson: its mean).
    pub offered_hz: f64,
    /// Successful completions per second over the measured requests.
    pub achieved_hz: Option<f64>,
    /// Requests planned, warm-up included.
    pub requests: usize,
    /// Warm-up requests discarded.
    pub warmup: usize,
    /// Wall time of the successful measured requests.
    pub wall_ms: Option<Summary>,
    /// The SLO over the measured requests.
    pub slo: SloReport,
    /// Whether the step passed (the deciding bound, or every bound).
    pub met: bool,
    /// Cut short by the early stop (then `met` is false).
    pub stopped_early: bool,
    /// `keeps_up`: below `KEEPS_UP` the step fails whatever its percentiles say.
    #[serde(default)]
    pub keeps_up: Option<f64>,
    /// Seconds the step took, from its first scheduled request to its end.
    pub elapsed_s: f64,
    /// Measured samples (warm-up excluded; for an early stop, those done or overdue).
    pub samples: Vec<Sample>,
}

/// A sweep of one config against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// Target name.
    pub target: String,
    /// Config letter.
    pub config: String,
    /// The arrivals used.
    pub arrivals: Arrivals,
    /// The sweep's settings (range overridden by `--sweep-rate`).
    pub spec: SweepSpec,
    /// What decided each step, as `p95 <= 500.0 ms`.
    pub criterion: String,
    /// Steps in the order run.
    pub steps: Vec<SweepStep>,
    /// The answer.
    pub verdict: SweepVerdict,
    /// Seconds the whole sweep took.
    pub elapsed_s: f64,
}

/// One point of the latency-versus-rate curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatePoint {
    /// Offered rate.
    pub offered_hz: f64,
    /// Achieved rate.
    pub achieved_hz: Option<f64>,
    /// p50 wall time.
    pub p50_ms: Option<f64>,
    /// p95 wall time.
    pub p95_ms: Option<f64>,
    /// Step passed.
    pub met: bool,
}

impl SweepResult {
    /// The steps sorted by offered rate: the data of a latency-versus-rate chart.
    #[must_use]
    pub fn series(&self) -> Vec<RatePoint> {
        let mut v: Vec<RatePoint> = self
            .steps
            .iter()
            .map(|s| RatePoint {
                offered_hz: s.offered_hz,
                achieved_hz: s.achieved_hz,
                p50_ms: s.wall_ms.map(|w| w.p50),
                p95_ms: s.wall_ms.map(|w| w.p95),
                met: s.met,
            })
            .collect();
        v.sort_by(|a, b| a.offered_hz.total_cmp(&b.offered_hz));
        v
    }
}
