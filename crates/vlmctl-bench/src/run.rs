//! Running a plan: per target, per config, warm-up then measured runs, closed or open loop.
//! In open loop each request's latency counts from its *scheduled* send time, so queueing
//! behind a slow server shows up instead of being hidden (no coordinated omission).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{self, Answer, ErrorKind, ServerTimings};
use crate::plan::{Backend, ConfigDef, LoadedPlan, Plan, Target};
use crate::schema::Strategy;
use crate::slo::{self, SloReport};
use crate::stats::{self, Summary};

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
    /// ([`timings_problem`]: a time that is negative, or longer than the client waited), when
    /// they are. The figures themselves are kept as the server sent them. Absent when they are
    /// usable, and in results written before it existed (summaries recompute it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings_unusable: Option<String>,
}

/// How much longer than the client waited a server may say it worked on a request, ms: servers
/// time their own phases on their own clock, and round.
pub const TIMINGS_SLACK_MS: f64 = 1000.0;

/// Why `s`'s server timings cannot be used, or `None` when they can: `prompt_ms` and
/// `predicted_ms` must each be at least 0 and at most the request's wall time (plus
/// [`TIMINGS_SLACK_MS`]). A server that says it spent 1.7e308 ms on a request that took 40 ms
/// is wrong, and its figure would overflow every mean it went into.
#[must_use]
pub fn timings_problem(s: &Sample) -> Option<String> {
    let limit = s.wall_ms + TIMINGS_SLACK_MS;
    [
        ("prompt_ms", s.server.prompt_ms),
        ("predicted_ms", s.server.predicted_ms),
    ]
    .into_iter()
    .find_map(|(name, v)| {
        let v = v?;
        (!(0.0..=limit).contains(&v)).then(|| {
            format!(
                "the server's timings.{name} {v:e} is not a time this request could have taken                  (its wall time was {:.1} ms); left out of TPOT and server tokens/s",
                s.wall_ms
            )
        })
    })
}

/// Derived per-config figures; recomputable from the samples by [`summarize_for`].
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

impl Results {
    /// Recomputes the summary of each config whose stored summary holds a figure that is not a
    /// number: files written before means were computed without overflow hold `null` where a
    /// mean or standard deviation overflowed (read as NaN, see [`crate::stats::Summary`]).
    /// Their samples are intact, and summaries are recomputable from them. Returns how many
    /// configs were recomputed.
    pub fn repair_summaries(&mut self) -> usize {
        let mut repaired = 0;
        let plan = &self.plan;
        for c in self.targets.iter_mut().flat_map(|t| &mut t.configs) {
            let mut broken = false;
            summary_values(&c.summary, &mut |_, v, _| broken |= v.is_nan());
            if broken {
                let streamed = c.samples.iter().any(|s| s.ttft_ms.is_some());
                c.summary = summarize_for(plan, &c.samples, streamed);
                repaired += 1;
            }
        }
        repaired
    }

    /// Checks that every latency this file holds is one a request could have had: each
    /// sample's `wall_ms`, `ttft_ms`, `queue_ms`, `scheduled_ms` and `itl_ms`, and each
    /// latency summary (warm-ups, sweeps included), is finite and within `0..=`
    /// [`MAX_LATENCY_MS`], shares (`schema_pass_rate`, `slo.goodput`) within `0..=1`,
    /// `deadline_miss_pct` within `0..=100`, and rates (Hz, tokens/s) within `0..=`
    /// [`MAX_PER_SECOND`]. `path` names the file in the
    /// error, which names the first offending field (`targets[0].configs[1].samples[3].wall_ms`).
    ///
    /// [`crate::load_results`] calls it; so should anything else that takes results from
    /// outside (`vlmctl runs import`). A file `vlmctl bench` wrote always passes: a server's
    /// own timings are not checked here (they are kept as sent and left out of the summaries
    /// when implausible, see [`timings_problem`]).
    ///
    /// # Errors
    /// [`crate::BenchError::ImplausibleResults`] for the first value out of range.
    pub fn validate(&self, path: &std::path::Path) -> Result<(), crate::BenchError> {
        self.implausible().map_or(Ok(()), |(field, value, why)| {
            Err(crate::BenchError::ImplausibleResults {
                path: path.to_owned(),
                field,
                value,
                why,
            })
        })
    }

    /// The first implausible value: (its field, the value, why).
    fn implausible(&self) -> Option<(String, f64, &'static str)> {
        let mut found = None;
        let mut check = |field: &dyn Fn() -> String, v: f64, kind: Figure| {
            if found.is_some() {
                return;
            }
            if let Some(why) = kind.problem(v) {
                found = Some((field(), v, why));
            }
        };
        for (ti, t) in self.targets.iter().enumerate() {
            for (ci, c) in t.configs.iter().enumerate() {
                let at = format!("targets[{ti}].configs[{ci}]");
                for (kind, list) in [("warmup", &c.warmup), ("samples", &c.samples)] {
                    for (si, smp) in list.iter().enumerate() {
                        sample_values(smp, &mut |name, v| {
                            check(&|| format!("{at}.{kind}[{si}].{name}"), v, Figure::Latency);
                        });
                    }
                }
                summary_values(&c.summary, &mut |name, v, kind| {
                    check(&|| format!("{at}.summary.{name}"), v, kind);
                });
            }
        }
        for (wi, w) in self.sweep.iter().enumerate() {
            for (pi, step) in w.steps.iter().enumerate() {
                let at = format!("sweep[{wi}].steps[{pi}]");
                for (si, smp) in step.samples.iter().enumerate() {
                    sample_values(smp, &mut |name, v| {
                        check(&|| format!("{at}.samples[{si}].{name}"), v, Figure::Latency);
                    });
                }
                if let Some(w) = &step.wall_ms {
                    summary_fields(w, &mut |name, v| {
                        check(&|| format!("{at}.wall_ms.{name}"), v, Figure::Latency);
                    });
                }
                for (name, v, kind) in [
                    ("offered_hz", Some(step.offered_hz), Figure::PerSecond),
                    ("achieved_hz", step.achieved_hz, Figure::PerSecond),
                    ("elapsed_s", Some(step.elapsed_s), Figure::Seconds),
                ] {
                    if let Some(v) = v {
                        check(&|| format!("{at}.{name}"), v, kind);
                    }
                }
            }
        }
        found
    }
}

/// Each latency of a sample, named as in the file.
fn sample_values(s: &Sample, f: &mut dyn FnMut(&str, f64)) {
    f("wall_ms", s.wall_ms);
    for (name, v) in [
        ("ttft_ms", s.ttft_ms),
        ("queue_ms", s.queue_ms),
        ("scheduled_ms", s.scheduled_ms),
    ] {
        if let Some(v) = v {
            f(name, v);
        }
    }
    for (i, v) in s.itl_ms.iter().enumerate() {
        f(&format!("itl_ms[{i}]"), *v);
    }
}

/// Largest plausible rate (Hz, tokens/s): no server answers or generates 1e9 a second.
pub const MAX_PER_SECOND: f64 = 1e9;

/// What a figure of a results file measures, and so which values it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figure {
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
    fn problem(self, v: f64) -> Option<&'static str> {
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

/// Each figure of a summary, named as in the file, with what it measures.
fn summary_values(s: &ConfigSummary, f: &mut dyn FnMut(&str, f64, Figure)) {
    // TPOT is the server's figure, but a time per token all the same: bounded like a latency.
    for (name, v) in [
        ("wall_ms", s.wall_ms),
        ("ttft_ms", s.ttft_ms),
        ("queue_ms", s.queue_ms),
        ("itl_ms", s.itl_ms),
        ("tpot_ms", s.tpot_ms),
    ] {
        if let Some(v) = v {
            summary_fields(&v, &mut |field, x| {
                f(&format!("{name}.{field}"), x, Figure::Latency);
            });
        }
    }
    for (name, v, kind) in [
        ("effective_hz", s.effective_hz, Figure::PerSecond),
        (
            "client_tokens_per_s",
            s.client_tokens_per_s,
            Figure::PerSecond,
        ),
        (
            "server_tokens_per_s",
            s.server_tokens_per_s,
            Figure::PerSecond,
        ),
        ("schema_pass_rate", s.schema_pass_rate, Figure::Rate),
        ("deadline_miss_pct", s.deadline_miss_pct, Figure::Percent),
        ("offered_hz", s.offered_hz, Figure::PerSecond),
        ("achieved_hz", s.achieved_hz, Figure::PerSecond),
        (
            "slo.goodput",
            s.slo.as_ref().and_then(|o| o.goodput),
            Figure::Rate,
        ),
    ] {
        if let Some(v) = v {
            f(name, v, kind);
        }
    }
}

/// Each field of a [`Summary`] but `n`.
fn summary_fields(s: &Summary, f: &mut dyn FnMut(&str, f64)) {
    for (name, v) in [
        ("min", s.min),
        ("p50", s.p50),
        ("p95", s.p95),
        ("p99", s.p99),
        ("max", s.max),
        ("mean", s.mean),
        ("stddev", s.stddev),
    ] {
        f(name, v);
    }
}

/// Pure: the summary of measured samples (`period_ms` for deadline misses in open loop).
#[must_use]
pub fn summarize(samples: &[Sample], nav: bool, period_ms: Option<f64>) -> ConfigSummary {
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
    let mut errors = BTreeMap::new();
    for s in samples {
        if let Some(k) = s.error {
            *errors
                .entry(
                    serde_json::to_value(k)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                )
                .or_insert(0) += 1;
        }
    }
    let wall = stats::summarize(&ok.iter().map(|s| s.wall_ms).collect::<Vec<_>>());
    let ttft = stats::summarize(&ok.iter().filter_map(|s| s.ttft_ms).collect::<Vec<_>>());
    let client_tps = stats::summarize(
        &ok.iter()
            .filter_map(|s| Some(s.completion_tokens? as f64 / (s.wall_ms / 1000.0)))
            .collect::<Vec<_>>(),
    )
    .and_then(|s| per_second(s.p50));
    let (server_tokens_per_s, tpot_ms) = server_figures(&ok);
    let mut schema = BTreeMap::new();
    if nav {
        for s in &ok {
            if let Some(st) = s.strategy {
                let key = serde_json::to_value(st)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                *schema.entry(key).or_insert(0) += 1;
            }
        }
    }
    let pass = ok
        .iter()
        .filter(|s| s.strategy.is_some_and(Strategy::passes))
        .count();
    let open = period_ms.is_some();
    ConfigSummary {
        ok: ok.len(),
        errors,
        effective_hz: wall
            .filter(|_| !open)
            .and_then(|w| per_second(1000.0 / w.p50)),
        wall_ms: wall,
        ttft_ms: ttft,
        client_tokens_per_s: client_tps,
        server_tokens_per_s,
        cache_hits: ok
            .iter()
            .filter(|s| s.server.cache_n.is_some_and(|c| c > 0))
            .count(),
        // A sample without `prompt_n` says nothing about its prompt: left out, not counted as 0.
        prompt_tokens_p50: stats::p50_count(ok.iter().filter_map(|s| {
            Some(
                s.server
                    .prompt_n?
                    .saturating_add(s.server.cache_n.unwrap_or(0)),
            )
        })),
        prompt_evaluated_p50: stats::p50_count(ok.iter().filter_map(|s| s.server.prompt_n)),
        schema,
        schema_pass_rate: (nav && !ok.is_empty()).then(|| pass as f64 / ok.len() as f64),
        deadline_miss_pct: period_ms.filter(|_| !samples.is_empty()).map(|p| {
            100.0
                * samples
                    .iter()
                    .filter(|s| s.error.is_some() || s.wall_ms > p)
                    .count() as f64
                / samples.len() as f64
        }),
        offered_hz: period_ms
            .filter(|p| *p > 0.0)
            .and_then(|p| per_second(1000.0 / p)),
        achieved_hz: period_ms.and_then(|_| achieved_hz(&ok)),
        queue_ms: stats::summarize(
            &samples
                .iter()
                .filter_map(|s| s.queue_ms)
                .collect::<Vec<_>>(),
        ),
        itl_ms: stats::summarize(
            &ok.iter()
                .flat_map(|s| s.itl_ms.iter().copied())
                .collect::<Vec<_>>(),
        ),
        tpot_ms,
        slo: None,
    }
}

/// Server tokens/s (sum of `predicted_n` over sum of `predicted_ms`) and TPOT (`predicted_ms /
/// predicted_n` per sample) from the timings a request could have taken ([`timings_problem`]):
/// bounded by wall times, whose sum is finite for any sample count a run holds.
fn server_figures(ok: &[&Sample]) -> (Option<f64>, Option<Summary>) {
    let timed: Vec<&&Sample> = ok.iter().filter(|s| timings_problem(s).is_none()).collect();
    let (pn, pms) = timed.iter().fold((0u64, 0f64), |(n, ms), s| {
        (
            n.saturating_add(s.server.predicted_n.unwrap_or(0)),
            ms + s.server.predicted_ms.unwrap_or(0.0),
        )
    });
    let tokens_per_s = (pms > 0.0)
        .then(|| pn as f64 / (pms / 1000.0))
        .and_then(per_second);
    let tpot = stats::summarize(
        &timed
            .iter()
            .filter_map(|s| {
                let n = s.server.predicted_n.filter(|n| *n > 0)?;
                Some(s.server.predicted_ms? / n as f64)
            })
            .collect::<Vec<_>>(),
    );
    (tokens_per_s, tpot)
}

/// Successful completions per second between the first and the last successful completion
/// (`None` with fewer than two, or samples without a schedule: results from before it).
fn achieved_hz(ok: &[&Sample]) -> Option<f64> {
    let done: Vec<f64> = ok
        .iter()
        .map(|s| Some(s.scheduled_ms? + s.wall_ms))
        .collect::<Option<_>>()?;
    let first = done.iter().copied().fold(f64::INFINITY, f64::min);
    let last = done.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (done.len() >= 2 && last > first)
        .then(|| (done.len() - 1) as f64 * 1000.0 / (last - first))
        .and_then(per_second)
}

/// `v` when it is a rate [`Results::validate`] takes back (finite, `0..=`[`MAX_PER_SECOND`]):
/// a server that claims `u64::MAX` tokens, or a wall time of 1e-300 ms, gives no rate rather
/// than one no server has.
fn per_second(v: f64) -> Option<f64> {
    Figure::PerSecond.problem(v).is_none().then_some(v)
}

/// Pure: the summary of a config's measured samples under `plan`: [`summarize`] with the
/// plan's open-loop period, and its SLO checked. What a run stores, so recomputable from the
/// samples.
#[must_use]
pub fn summarize_for(plan: &Plan, samples: &[Sample], streamed: bool) -> ConfigSummary {
    let period_ms = plan.load.period().map(|p| p.as_secs_f64() * 1000.0);
    let mut s = summarize(samples, true, period_ms);
    s.slo = plan
        .slo
        .as_ref()
        .map(|o| slo::evaluate(samples, o, streamed));
    s
}

/// Progress callback: (target, config, done, total).
pub type Progress<'a> = &'a (dyn Fn(&str, &str, usize, usize) + Send + Sync);

/// What a run reports as it goes ([`run_with`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// The `describe` request to `target` was sent; it may take up to `timeout`.
    DescribeStarted {
        /// The target's name in the plan.
        target: &'a str,
        /// The plan's per-request timeout.
        timeout: Duration,
    },
    /// The `describe` request to `target` ended after `elapsed`; `error` says why it failed
    /// (what [`TargetResult::describe_error`] records), `None` when it answered.
    DescribeDone {
        /// The target's name in the plan.
        target: &'a str,
        /// How long it took.
        elapsed: Duration,
        /// Why it failed.
        error: Option<&'a str>,
    },
    /// `done` of `total` requests (warm-up included) of `config` on `target`.
    Requests {
        /// The target's name in the plan.
        target: &'a str,
        /// The config's letter.
        config: &'a str,
        /// Requests done.
        done: usize,
        /// Requests in all.
        total: usize,
    },
}

/// Event callback of [`run_with`].
pub type Events<'a> = &'a (dyn Fn(Event<'_>) + Send + Sync);

/// Runs the whole plan, reporting request progress only ([`run_with`] reports every step).
pub async fn run(
    plan: &LoadedPlan,
    api_keys: &BTreeMap<String, String>,
    progress: Progress<'_>,
) -> Results {
    let events = |e: Event<'_>| {
        if let Event::Requests {
            target,
            config,
            done,
            total,
        } = e
        {
            progress(target, config, done, total);
        }
    };
    run_with(plan, api_keys, &events).await
}

/// Runs the whole plan, reporting each step through `events`: the `describe` request (which
/// may take up to the plan's timeout) and each config's requests.
pub async fn run_with(
    plan: &LoadedPlan,
    api_keys: &BTreeMap<String, String>,
    events: Events<'_>,
) -> Results {
    let progress = |target: &str, config: &str, done: usize, total: usize| {
        events(Event::Requests {
            target,
            config,
            done,
            total,
        });
    };
    let progress: Progress<'_> = &progress;
    let clients = Clients::new();
    let http = &clients.pooled;
    let image_b64 = plan.image.as_deref().map(crate::base64);
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut targets = Vec::new();
    for t in &plan.plan.targets {
        let key = api_keys.get(&t.name).map(String::as_str);
        let (server_info, models) = server_info(http, t, key).await;
        let (describe_answer, describe_error) = if plan.plan.describe {
            describe(http, plan, t, key, image_b64.as_deref(), events).await
        } else {
            (None, None)
        };
        let mut configs = Vec::new();
        for c in &plan.configs {
            let http = if c.stream {
                &clients.fresh
            } else {
                &clients.pooled
            };
            configs.push(run_config(http, plan, t, key, c, image_b64.as_deref(), progress).await);
        }
        targets.push(TargetResult {
            name: t.name.clone(),
            backend: t.backend,
            url: t.url.clone(),
            host: t.host.clone(),
            deployment: t.deployment.clone(),
            server_info,
            models,
            describe_answer,
            describe_error,
            configs,
        });
    }
    Results {
        format: FORMAT.to_owned(),
        started_unix,
        plan: plan.plan.clone(),
        plan_sha256: plan.plan_sha256.clone(),
        prompt_sha256: plan.prompt_sha256.clone(),
        image_sha256: plan.image_sha256.clone(),
        environment: environment(),
        targets,
        sweep: Vec::new(),
    }
}

/// The `describe` request to `t`, as a step of its own (it may take the plan's whole timeout):
/// its answer, or why it failed.
async fn describe(
    http: &reqwest::Client,
    plan: &LoadedPlan,
    t: &Target,
    key: Option<&str>,
    image_b64: Option<&str>,
    events: Events<'_>,
) -> (Option<String>, Option<String>) {
    let body = client::request_body(
        t,
        &plan.prompts["describe"],
        image_b64,
        false,
        plan.plan.max_tokens.max(128),
    );
    events(Event::DescribeStarted {
        target: &t.name,
        timeout: plan.plan.timeout(),
    });
    let start = Instant::now();
    let answer = client::send(http, t, key, &body, plan.plan.timeout(), start).await;
    let error = answer.as_ref().err().map(|(kind, detail)| {
        let kind = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!("{kind}: {detail}")
    });
    events(Event::DescribeDone {
        target: &t.name,
        elapsed: start.elapsed(),
        error: error.as_deref(),
    });
    (answer.ok().map(|a| a.content), error)
}

/// Non-streamed requests reuse one kept-alive connection (what a production client does).
/// Streamed requests get a fresh connection each: llama-server closes the connection after an
/// SSE stream, and reusing it would fail the next request at once for a reason that is the
/// client's, not the server's.
struct Clients {
    pooled: reqwest::Client,
    fresh: reqwest::Client,
}

impl Clients {
    fn new() -> Self {
        Self {
            pooled: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default(),
            fresh: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_default(),
        }
    }
}

async fn run_config(
    http: &reqwest::Client,
    plan: &LoadedPlan,
    t: &Target,
    key: Option<&str>,
    c: &ConfigDef,
    image_b64: Option<&str>,
    progress: Progress<'_>,
) -> ConfigResult {
    let prompt = if c.short {
        &plan.prompts["nav_short"]
    } else {
        &plan.prompts["nav"]
    };
    let body = client::request_body(
        t,
        prompt,
        image_b64.filter(|_| c.image),
        c.stream,
        plan.plan.max_tokens,
    );
    let total = plan.plan.warmup.saturating_add(plan.plan.runs);
    // Closed loop, not streamed: one kept-alive connection (see `client::Conn`).
    let mut conn = if c.stream {
        None
    } else {
        client::Conn::for_url(&t.url)
    };
    let mut warmup = Vec::new();
    for i in 0..plan.plan.warmup {
        warmup.push(one(http, conn.as_mut(), plan, t, key, &body, i, Instant::now()).await);
        progress(&t.name, c.name, i + 1, total);
    }
    let samples = match plan.plan.load.schedule(plan.plan.runs) {
        None => {
            let mut v = Vec::new();
            for i in 0..plan.plan.runs {
                v.push(one(http, conn.as_mut(), plan, t, key, &body, i, Instant::now()).await);
                progress(
                    &t.name,
                    c.name,
                    plan.plan.warmup.saturating_add(i + 1),
                    total,
                );
            }
            v
        }
        Some(schedule) => {
            let t0 = tokio::time::Instant::now();
            let futs = schedule.into_iter().enumerate().map(|(i, offset)| {
                let scheduled = t0.checked_add(offset).unwrap_or(t0);
                let body = &body;
                async move {
                    tokio::time::sleep_until(scheduled).await;
                    let late = scheduled.elapsed();
                    let mut s = one(http, None, plan, t, key, body, i, scheduled.into_std()).await;
                    s.scheduled_ms = Some(offset.as_secs_f64() * 1000.0);
                    s.queue_ms = Some(late.as_secs_f64() * 1000.0);
                    s
                }
            });
            let v = futures::future::join_all(futs).await;
            progress(&t.name, c.name, total, total);
            v
        }
    };
    let summary = summarize_for(&plan.plan, &samples, c.stream);
    let description = if image_b64.is_none() && c.image {
        c.description.replace(" + image", " (text-only run)")
    } else {
        c.description.to_owned()
    };
    ConfigResult {
        name: c.name.to_owned(),
        description,
        summary,
        warmup,
        samples,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one request's whole context, passed through"
)]
pub(crate) async fn one(
    http: &reqwest::Client,
    conn: Option<&mut client::Conn>,
    plan: &LoadedPlan,
    t: &Target,
    key: Option<&str>,
    body: &Value,
    index: usize,
    start: Instant,
) -> Sample {
    let result = match conn {
        Some(c) => client::send_on(c, t, key, body, plan.plan.timeout()).await,
        None => client::send(http, t, key, body, plan.plan.timeout(), start).await,
    };
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut sample = match result {
        Ok(Answer {
            content,
            ttft_ms,
            server,
            completion_tokens,
            itl_ms,
            ..
        }) => Sample {
            index,
            wall_ms,
            ttft_ms,
            error: None,
            error_detail: None,
            strategy: Some(plan.plan.schema.check(&content)),
            server,
            completion_tokens,
            scheduled_ms: None,
            queue_ms: None,
            itl_ms,
            timings_unusable: None,
        },
        Err((kind, detail)) => Sample {
            index,
            wall_ms,
            ttft_ms: None,
            error: Some(kind),
            error_detail: Some(detail),
            strategy: None,
            server: ServerTimings::default(),
            completion_tokens: None,
            scheduled_ms: None,
            queue_ms: None,
            itl_ms: Vec::new(),
            timings_unusable: None,
        },
    };
    sample.timings_unusable = timings_problem(&sample);
    sample
}

async fn server_info(http: &reqwest::Client, t: &Target, key: Option<&str>) -> (Value, Value) {
    let get = |path: &str| {
        let mut r = http
            .get(format!("{}{path}", t.url.trim_end_matches('/')))
            .timeout(Duration::from_secs(10));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r
    };
    let json = |r: reqwest::RequestBuilder| async move {
        match r.send().await {
            Ok(resp) if resp.status().is_success() => {
                resp.json::<Value>().await.unwrap_or(Value::Null)
            }
            _ => Value::Null,
        }
    };
    match t.backend {
        Backend::Openai => (json(get("/props")).await, json(get("/v1/models")).await),
        Backend::Ollama => {
            let show = http
                .post(format!("{}/api/show", t.url.trim_end_matches('/')))
                .json(&serde_json::json!({"model": t.model}))
                .timeout(Duration::from_secs(10));
            (json(show).await, json(get("/api/tags")).await)
        }
    }
}

pub(crate) fn environment() -> Environment {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines().find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
    });
    let gpu = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total,memory.used",
            "--format=csv,noheader",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    Environment {
        arch: std::env::consts::ARCH.to_owned(),
        cpu,
        gpu,
        vlmctl: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(prompt_n: Option<u64>, cache_n: Option<u64>, error: Option<ErrorKind>) -> Sample {
        Sample {
            index: 0,
            wall_ms: 10.0,
            ttft_ms: None,
            error,
            error_detail: None,
            strategy: Some(Strategy::WholeJson),
            server: ServerTimings {
                prompt_n,
                cache_n,
                ..ServerTimings::default()
            },
            completion_tokens: None,
            scheduled_ms: None,
            queue_ms: None,
            itl_ms: Vec::new(),
            timings_unusable: None,
        }
    }

    #[test]
    fn prompt_tokens_are_prompt_n_plus_cache_n_and_evaluated_is_prompt_n() {
        // The first request evaluates the whole prompt, the repeats 1 token of it (the real
        // server's figures for the nav prompt with the frame).
        let s = summarize(
            &[
                sample(Some(759), Some(0), None),
                sample(Some(1), Some(758), None),
                sample(Some(1), Some(758), None),
            ],
            true,
            None,
        );
        assert_eq!(s.prompt_tokens_p50, Some(759));
        assert_eq!(s.prompt_evaluated_p50, Some(1));
        assert_eq!(s.cache_hits, 2);
    }

    #[test]
    fn ollama_counts_without_cache_n_and_missing_timings_are_left_out() {
        // Ollama reports `prompt_eval_count` (as `prompt_n`) and no `cache_n`.
        let s = summarize(
            &[sample(Some(554), None, None), sample(Some(560), None, None)],
            true,
            None,
        );
        assert_eq!(
            (s.prompt_tokens_p50, s.prompt_evaluated_p50),
            (Some(554), Some(554))
        );
        // Samples without timings (a server that sends none, failed requests) are neither
        // counted as 0 nor invent a figure.
        let s = summarize(
            &[
                sample(None, None, None),
                sample(None, Some(90), None),
                sample(Some(99), Some(0), None),
                sample(Some(5), Some(94), Some(ErrorKind::Timeout)),
            ],
            true,
            None,
        );
        assert_eq!(
            (s.prompt_tokens_p50, s.prompt_evaluated_p50),
            (Some(99), Some(99))
        );
        let s = summarize(&[sample(None, None, None)], true, None);
        assert_eq!((s.prompt_tokens_p50, s.prompt_evaluated_p50), (None, None));
        let s = summarize(&[], true, None);
        assert_eq!((s.prompt_tokens_p50, s.prompt_evaluated_p50), (None, None));
    }

    /// Values a server (or a hand-edited file) may send, and the degenerate ones.
    const EXTREMES: [f64; 12] = [
        1.7e308,
        f64::MAX,
        -f64::MAX,
        1e300,
        1e-300,
        5e-324,
        0.0,
        -0.0,
        -1.0,
        1.0,
        40.0,
        1e12,
    ];
    const COUNTS: [u64; 5] = [0, 1, 3, 1 << 53, u64::MAX];

    /// Every figure of `s` (and so every summary of it) written as JSON reads back as it was.
    fn round_trips(s: &ConfigSummary, what: &str) {
        let json = serde_json::to_string(s).unwrap();
        let back: ConfigSummary =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{what}: {e}: {json}"));
        assert_eq!(&back, s, "{what}");
    }

    #[test]
    fn every_summary_of_extreme_figures_reads_back() {
        // Property-style: every pair of extreme values as server timings and latencies, with
        // every count, in runs of 1 and of 5 samples.
        for &a in &EXTREMES {
            for &b in &EXTREMES {
                for &n in &COUNTS {
                    let mk = |i: usize, v: f64| Sample {
                        index: i,
                        wall_ms: v.abs().min(MAX_LATENCY_MS),
                        ttft_ms: Some(v.abs().min(MAX_LATENCY_MS)),
                        server: ServerTimings {
                            prompt_n: Some(n),
                            prompt_ms: Some(v),
                            predicted_n: Some(n),
                            predicted_ms: Some(if i.is_multiple_of(2) { a } else { b }),
                            cache_n: Some(n),
                            load_ms: Some(v),
                        },
                        completion_tokens: Some(n),
                        scheduled_ms: Some(v.abs().min(MAX_LATENCY_MS)),
                        queue_ms: Some(v.abs().min(MAX_LATENCY_MS)),
                        itl_ms: vec![a.abs().min(MAX_LATENCY_MS), b.abs().min(MAX_LATENCY_MS)],
                        ..sample(None, None, None)
                    };
                    for len in [1, 5] {
                        let samples: Vec<Sample> = (0..len)
                            .map(|i| mk(i, if i.is_multiple_of(2) { a } else { b }))
                            .collect();
                        for period in [None, Some(1e-300), Some(40.0)] {
                            let s = summarize(&samples, true, period);
                            round_trips(&s, &format!("{a:e} {b:e} n={n} len={len}"));
                        }
                    }
                }
            }
            // The statistics themselves, on the raw values (none is refused here).
            for &b in &EXTREMES {
                let v = [a, b, a, b, a];
                let s = stats::summarize(&v).unwrap();
                for x in [s.min, s.p50, s.p95, s.p99, s.max, s.mean, s.stddev] {
                    assert!(x.is_finite(), "{v:?}: {s:?}");
                }
                assert!(s.min <= s.mean && s.mean <= s.max, "{v:?}: {s:?}");
            }
        }
    }

    #[test]
    fn huge_server_timings_are_left_out_with_a_reason() {
        // The adversarial pass's server: predicted_ms 1.7e308 for 3 tokens on every request.
        let huge = |i| {
            let mut s = sample(Some(5), Some(0), None);
            s.index = i;
            s.server.predicted_n = Some(3);
            s.server.predicted_ms = Some(1.7e308);
            s.timings_unusable = timings_problem(&s);
            s
        };
        let samples: Vec<Sample> = (0..5).map(huge).collect();
        assert!(
            samples[0]
                .timings_unusable
                .as_deref()
                .is_some_and(|w| w.contains("timings.predicted_ms 1.7e308")),
            "{:?}",
            samples[0].timings_unusable
        );
        let s = summarize(&samples, true, None);
        assert_eq!((s.tpot_ms, s.server_tokens_per_s), (None, None));
        // A plausible one beside them still counts.
        let mut fine = sample(Some(5), Some(0), None);
        fine.server.predicted_n = Some(4);
        fine.server.predicted_ms = Some(8.0);
        assert_eq!(timings_problem(&fine), None);
        let mut all = samples;
        all.push(fine);
        let s = summarize(&all, true, None);
        assert_eq!(s.tpot_ms.map(|t| (t.n, t.p50)), Some((1, 2.0)));
        assert_eq!(s.server_tokens_per_s, Some(500.0));
        // Negative times are as impossible.
        let mut neg = sample(None, None, None);
        neg.server.prompt_ms = Some(-1.0);
        assert!(timings_problem(&neg).is_some());
    }

    #[test]
    fn a_summary_written_before_the_prompt_fields_still_loads() {
        // A `ConfigSummary` exactly as results.json held it before `prompt_tokens_p50`.
        let old = r#"{"ok": 1, "errors": {}, "wall_ms": null, "effective_hz": null,
            "ttft_ms": null, "client_tokens_per_s": null, "server_tokens_per_s": null,
            "cache_hits": 0, "schema": {}, "schema_pass_rate": null, "deadline_miss_pct": null}"#;
        let s: ConfigSummary = serde_json::from_str(old).unwrap();
        assert_eq!(
            (s.ok, s.prompt_tokens_p50, s.prompt_evaluated_p50),
            (1, None, None)
        );
    }
}
