//! The rate sweep: the highest open-loop rate at which the plan's `[slo]` holds.
//!
//! - [`SweepSpec`]: the plan's `[sweep]` table (or `--sweep-rate LO:HI`, a [`RateRange`]).
//! - [`next`]: the pure search. Geometric steps from `min_hz` (× `factor`) up to `max_hz`
//!   until a step fails, then bisection (geometric mean) between the highest passing and the
//!   lowest failing rate until they are within `precision` of each other, or `max_steps` ran.
//! - [`run()`]: each step is an open-loop run of one config at that rate (the plan's arrivals
//!   and seed), its first requests discarded as warm-up, checked against the SLO; a step that
//!   fails badly is cut short ([`StopRule`]). It gives [`SweepResult`]s, stored in
//!   `results.json` under `sweep`.
//! - [`table`], [`markdown`], [`html`]: the verdict line and the table of steps;
//!   [`SweepResult::series`] is the latency-versus-rate curve for a chart.
//!
//! **Warm-up.** Before the first step, the plan's `warmup` requests (at least one) go one at a
//! time, unmeasured: a cold server's first answers cost seconds that no rate should be charged
//! for. Before every later step one such request waits out what the previous step left queued
//! in the server (seen on the CPU llama-server: after an early stop, the next two steps failed
//! without a single answer).
//!
//! **Step length.** A step sends `max(MIN_REQUESTS, rate × step_s)` requests (or
//! `requests_per_step`) and discards the first tenth (at least [`MIN_WARMUP`]). An overloaded
//! open loop shows itself as a queue that grows request after request, so a step must be long
//! enough for that growth to reach the bound: at a rate 1 % above a capacity of `c`, each
//! request waits `0.01 / c` longer than the one before, and over 100 requests that is a whole
//! service time. [`MIN_REQUESTS`] (40) keeps the nearest-rank p95 off the single slowest request
//! (36 measured: the p95 is the 35th), and 5 s keeps slow rates from ending before the server's
//! caches and batches settle.
//!
//! **Early stop.** A latency bound at percentile `p` over `n` requests fails for certain once
//! more than `n - ceil(p n / 100)` of them are slower than it. A step stops as soon as that many
//! measured requests have failed or taken more than three times the deciding bound — counting
//! requests still in flight past that age — instead of queueing for minutes behind a server
//! that cannot keep up. Requests still in flight are then dropped; those past the age are kept
//! as `timeout` samples (their wall time is their age when the step stopped), so the step's
//! percentiles do not forget them.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::client::{self, ErrorKind};
use crate::plan::{Arrivals, CONFIGS, ConfigDef, Load, LoadedPlan, RATE_HZ, Target};
use crate::run::{self, Results, Sample};
use crate::slo::{self, Slo, SloReport};

/// Fewest requests a step sends (see the module's "Step length").
pub const MIN_REQUESTS: usize = 40;
/// Most requests a step sends (the plan's bound on `requests_per_step`).
pub const MAX_REQUESTS: usize = 100_000;
/// Fewest warm-up requests a step discards.
pub const MIN_WARMUP: usize = 5;
/// Default seconds of load per step.
pub const DEFAULT_STEP_S: f64 = 5.0;
/// Default relative precision of the answer: bisection stops when the lowest failing rate is
/// within 5 % above the highest passing one.
pub const DEFAULT_PRECISION: f64 = 0.05;
/// Default growth between geometric steps.
pub const DEFAULT_FACTOR: f64 = 2.0;
/// Default most steps per sweep.
pub const DEFAULT_MAX_STEPS: usize = 16;
/// A step whose answers came over a span more than 1/0.95 times its sends' ([`keeps_up`])
/// fails: the server fell behind and a longer step would have queued past any bound. Seen on
/// the CPU test server: 30 requests at 19 Hz met p95 <= 500 ms at a capacity of 15.5 Hz.
pub const KEEPS_UP: f64 = 0.95;
/// Latency beyond this multiple of the deciding bound is a bad failure (early stop).
pub const BAD_FACTOR: f64 = 3.0;

/// The plan's `[sweep]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Lowest rate tried, requests per second (the first step).
    pub min_hz: f64,
    /// Highest rate tried.
    pub max_hz: f64,
    /// Seconds of load per step (default [`DEFAULT_STEP_S`]).
    #[serde(default)]
    pub step_s: Option<f64>,
    /// Requests per step, instead of `rate × step_s` (warm-up included).
    #[serde(default)]
    pub requests_per_step: Option<usize>,
    /// The config swept (default: the plan's first).
    #[serde(default)]
    pub config: Option<String>,
    /// The `[slo]` key that decides whether a step passes (`p50_ms`, `p95_ms`, `p99_ms`,
    /// `ttft_ms`, `schema_pass`); default: every bound in `[slo]`.
    #[serde(default)]
    pub decide: Option<String>,
    /// Relative precision of the answer (default [`DEFAULT_PRECISION`]).
    #[serde(default = "d_precision")]
    pub precision: f64,
    /// Growth between geometric steps (default [`DEFAULT_FACTOR`]).
    #[serde(default = "d_factor")]
    pub factor: f64,
    /// Most steps (default [`DEFAULT_MAX_STEPS`]).
    #[serde(default = "d_max_steps")]
    pub max_steps: usize,
}

fn d_precision() -> f64 {
    DEFAULT_PRECISION
}
fn d_factor() -> f64 {
    DEFAULT_FACTOR
}
fn d_max_steps() -> usize {
    DEFAULT_MAX_STEPS
}

impl SweepSpec {
    /// A sweep over `range` with every other setting at its default.
    #[must_use]
    pub fn over(range: RateRange) -> Self {
        Self {
            min_hz: range.lo,
            max_hz: range.hi,
            step_s: None,
            requests_per_step: None,
            config: None,
            decide: None,
            precision: DEFAULT_PRECISION,
            factor: DEFAULT_FACTOR,
            max_steps: DEFAULT_MAX_STEPS,
        }
    }

    /// Requests a step at `rate_hz` sends, warm-up included, and how many of them are warm-up.
    #[must_use]
    pub fn requests_at(&self, rate_hz: f64) -> (usize, usize) {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "rates and step lengths are bounded by the plan's checks; saturates"
        )]
        let by_time = (rate_hz * self.step_s.unwrap_or(DEFAULT_STEP_S)).ceil() as usize;
        let n = self
            .requests_per_step
            // Capped as `requests_per_step` is: 10000 Hz for an hour is not a step.
            .unwrap_or_else(|| by_time.clamp(MIN_REQUESTS, MAX_REQUESTS))
            .max(MIN_WARMUP + 1);
        let warm = (n / 10).max(MIN_WARMUP).min(n - 1);
        (n, warm)
    }
}

/// `LO:HI`, requests per second (`--sweep-rate 5:80`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRange {
    /// Lowest rate.
    pub lo: f64,
    /// Highest rate.
    pub hi: f64,
}

impl FromStr for RateRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected LO:HI in requests per second, e.g. 5:80"))?;
        let rate = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|r| RATE_HZ.contains(r))
                .ok_or_else(|| {
                    format!(
                        "{v:?}: expected a rate from {} to {} requests per second",
                        RATE_HZ.start(),
                        RATE_HZ.end()
                    )
                })
        };
        let (lo, hi) = (rate(lo)?, rate(hi)?);
        if lo >= hi {
            return Err(format!("{s:?}: LO must be below HI"));
        }
        Ok(Self { lo, hi })
    }
}

/// What the search does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Run a step at this rate.
    Probe(f64),
    /// Done.
    Done(Verdict),
}

/// The sweep's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
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

/// Pure: the next step of the search given the `(rate, met)` of the steps so far.
#[must_use]
pub fn next(spec: &SweepSpec, steps: &[(f64, bool)]) -> Next {
    let (lo, hi) = (spec.min_hz, spec.max_hz);
    let passed = steps
        .iter()
        .filter(|s| s.1)
        .map(|s| s.0)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    // The lowest failing rate above the highest passing one: a noisy pass above a failure is
    // not trusted over the failure below it.
    let failed = steps
        .iter()
        .filter(|s| !s.1)
        .map(|s| s.0)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))));
    let passed = match (passed, failed) {
        (Some(p), Some(f)) if p >= f => steps
            .iter()
            .filter(|s| s.1 && s.0 < f)
            .map(|s| s.0)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r)))),
        (p, _) => p,
    };
    let n = match (passed, failed) {
        (None, None) => Next::Probe(lo),
        (None, Some(_)) => Next::Done(Verdict::BelowRange { hz: lo }),
        (Some(p), None) if p >= hi => Next::Done(Verdict::TopOfRange { hz: hi }),
        (Some(p), None) => Next::Probe((p * spec.factor).min(hi)),
        (Some(p), Some(f)) => {
            let precise = f <= p * (1.0 + spec.precision);
            if precise || steps.len() >= spec.max_steps {
                Next::Done(Verdict::Sustains {
                    hz: p,
                    failed_hz: f,
                    precise,
                })
            } else {
                Next::Probe((p * f).sqrt())
            }
        }
    };
    n.limit(steps.len(), spec.max_steps, passed)
}

impl Next {
    /// Past the step limit without a failing step: the highest passing rate is the answer so
    /// far, reported as the top of what was tried.
    fn limit(self, done: usize, max: usize, passed: Option<f64>) -> Self {
        match (self, passed) {
            (Self::Probe(_), Some(p)) if done >= max => Self::Done(Verdict::TopOfRange { hz: p }),
            _ => self,
        }
    }
}

/// When a step fails badly enough to stop it (see the module's "Early stop").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRule {
    /// A measured request slower than this (or failed) counts against the step.
    pub over_ms: f64,
    /// Stop once more than this many measured requests count against it.
    pub allowed: usize,
}

impl StopRule {
    /// The rule for `measured` requests under `slo` (decided by `decide`, or all bounds):
    /// the deciding latency bound (the named one, else the highest percentile's) × [`BAD_FACTOR`],
    /// and as many requests beyond it as the percentile leaves room for. `None` without a
    /// latency bound to decide by (then only the plan's timeout ends a slow step).
    #[must_use]
    pub fn new(slo: &Slo, decide: Option<&str>, measured: usize) -> Option<Self> {
        let (p, bound) = match decide {
            Some("p50_ms") => (50.0, slo.p50_ms?),
            Some("p95_ms") => (95.0, slo.p95_ms?),
            Some("p99_ms") => (99.0, slo.p99_ms?),
            Some(_) => return None,
            None => slo
                .p99_ms
                .map(|b| (99.0, b))
                .or(slo.p95_ms.map(|b| (95.0, b)))
                .or(slo.p50_ms.map(|b| (50.0, b)))?,
        };
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a rank in 1..=measured"
        )]
        let rank = ((p / 100.0) * measured as f64)
            .ceil()
            .clamp(1.0, measured.max(1) as f64) as usize;
        Some(Self {
            over_ms: bound * BAD_FACTOR,
            allowed: measured.saturating_sub(rank),
        })
    }
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
    pub wall_ms: Option<crate::stats::Summary>,
    /// The SLO over the measured requests.
    pub slo: SloReport,
    /// Whether the step passed (the deciding bound, or every bound).
    pub met: bool,
    /// Cut short by the early stop (then `met` is false).
    pub stopped_early: bool,
    /// [`keeps_up`]: below [`KEEPS_UP`] the step fails whatever its percentiles say.
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
    pub verdict: Verdict,
    /// Seconds the whole sweep took.
    pub elapsed_s: f64,
}

/// One point of the latency-versus-rate curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
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
    pub fn series(&self) -> Vec<Point> {
        let mut v: Vec<Point> = self
            .steps
            .iter()
            .map(|s| Point {
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

    /// `sustains 47.6 Hz at p95 <= 40.0 ms (constant arrivals)`, and the like.
    #[must_use]
    pub fn verdict_line(&self) -> String {
        let arrivals = match self.arrivals {
            Arrivals::Constant => "constant",
            Arrivals::Poisson => "Poisson",
        };
        let head = format!("{} {}", self.target, self.config);
        match self.verdict {
            Verdict::Sustains {
                hz,
                failed_hz,
                precise,
            } => format!(
                "{head}: sustains {} Hz at {} ({arrivals} arrivals); fails at {} Hz{}",
                hz_text(hz),
                self.criterion,
                hz_text(failed_hz),
                if precise {
                    format!(" (within {:.0} %)", self.spec.precision * 100.0)
                } else {
                    format!(" (step limit {} reached first)", self.spec.max_steps)
                }
            ),
            Verdict::BelowRange { hz } => format!(
                "{head}: does not sustain {} Hz at {} ({arrivals} arrivals), the bottom of the range: lower LO",
                hz_text(hz),
                self.criterion
            ),
            Verdict::TopOfRange { hz } if hz < self.spec.max_hz => format!(
                "{head}: sustains {} Hz at {} ({arrivals} arrivals), the highest rate tried before the step limit ({}): raise max_steps",
                hz_text(hz),
                self.criterion,
                self.spec.max_steps
            ),
            Verdict::TopOfRange { hz } => format!(
                "{head}: sustains {} Hz at {} ({arrivals} arrivals), the top of the range tried: raise HI",
                hz_text(hz),
                self.criterion
            ),
        }
    }
}

/// Progress of a sweep, for the front-end to show.
#[derive(Debug, Clone, Copy)]
pub enum SweepEvent<'a> {
    /// A step starts.
    Step {
        /// Target.
        target: &'a str,
        /// 1-based step.
        index: usize,
        /// Rate.
        hz: f64,
        /// Requests it will send.
        requests: usize,
    },
    /// A step ended.
    Done(&'a SweepStep),
}

/// Runs the sweep for every target of `plan` (`range` overrides the `[sweep]` range; a plan
/// without `[sweep]` takes the defaults). The plan must have an `[slo]` (the caller checks
/// with [`LoadedPlan`]'s [`crate::BenchError::SweepNeedsSlo`]).
pub async fn run(
    plan: &LoadedPlan,
    range: Option<RateRange>,
    api_keys: &std::collections::BTreeMap<String, String>,
    progress: &mut (dyn FnMut(SweepEvent<'_>) + Send),
) -> Results {
    let mut spec = plan
        .plan
        .sweep
        .clone()
        .unwrap_or_else(|| SweepSpec::over(range.unwrap_or(RateRange { lo: 1.0, hi: 10.0 })));
    if let Some(r) = range {
        spec.min_hz = r.lo;
        spec.max_hz = r.hi;
    }
    let slo = plan.plan.slo.unwrap_or_default();
    let config = spec
        .config
        .clone()
        .or_else(|| plan.plan.configs.first().cloned())
        .unwrap_or_else(|| "A".to_owned());
    let def = CONFIGS
        .iter()
        .find(|d| d.name == config)
        .copied()
        .unwrap_or(CONFIGS[0]);
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(if def.stream { 0 } else { 64 })
        .build()
        .unwrap_or_default();
    let image_b64 = plan.image.as_deref().map(crate::base64);
    let mut sweeps = Vec::new();
    for t in &plan.plan.targets {
        let key = api_keys.get(&t.name).map(String::as_str);
        let prompt = if def.short {
            &plan.prompts["nav_short"]
        } else {
            &plan.prompts["nav"]
        };
        let body = client::request_body(
            t,
            prompt,
            image_b64.as_deref().filter(|_| def.image),
            def.stream,
            plan.plan.max_tokens,
        );
        let ctx = StepCtx {
            http: &http,
            plan,
            target: t,
            key,
            def,
            body: &body,
            slo: &slo,
            decide: spec.decide.as_deref(),
        };
        let started = std::time::Instant::now();
        let (steps, verdict) = sweep_target(&ctx, &spec, progress).await;
        sweeps.push(SweepResult {
            target: t.name.clone(),
            config: config.clone(),
            arrivals: plan.plan.load.arrivals,
            spec: spec.clone(),
            criterion: criterion(&slo, spec.decide.as_deref()),
            steps,
            verdict,
            elapsed_s: started.elapsed().as_secs_f64(),
        });
    }
    Results {
        format: run::FORMAT.to_owned(),
        started_unix,
        plan: plan.plan.clone(),
        plan_sha256: plan.plan_sha256.clone(),
        prompt_sha256: plan.prompt_sha256.clone(),
        image_sha256: plan.image_sha256.clone(),
        environment: run::environment(),
        targets: Vec::new(),
        sweep: sweeps,
    }
}

/// One target's sweep: the closed-loop warm-up, then steps until [`next`] is done.
async fn sweep_target(
    ctx: &StepCtx<'_>,
    spec: &SweepSpec,
    progress: &mut (dyn FnMut(SweepEvent<'_>) + Send),
) -> (Vec<SweepStep>, Verdict) {
    // A cold server's first request pays for loading and the whole prompt (7 s on the CPU
    // test server against 0.3 s after): paid one at a time here, not queued behind by the
    // first step's open loop.
    settle(ctx, ctx.plan.plan.warmup.max(1)).await;
    let mut steps: Vec<SweepStep> = Vec::new();
    loop {
        let history: Vec<(f64, bool)> = steps.iter().map(|s| (s.offered_hz, s.met)).collect();
        let hz = match next(spec, &history) {
            Next::Probe(hz) => hz,
            Next::Done(v) => return (steps, v),
        };
        let (requests, warmup) = spec.requests_at(hz);
        progress(SweepEvent::Step {
            target: &ctx.target.name,
            index: steps.len() + 1,
            hz,
            requests,
        });
        if !steps.is_empty() {
            // What an overloaded step left queued in the server (requests it dropped are
            // cancelled there, not at once) must not be charged to this one: one request
            // answered one at a time says the queue is empty.
            settle(ctx, 1).await;
        }
        let step = run_step(ctx, hz, requests, warmup).await;
        progress(SweepEvent::Done(&step));
        steps.push(step);
    }
}

/// `n` unmeasured requests, one at a time.
async fn settle(ctx: &StepCtx<'_>, n: usize) {
    for i in 0..n {
        let _ = run::one(
            ctx.http,
            None,
            ctx.plan,
            ctx.target,
            ctx.key,
            ctx.body,
            i,
            std::time::Instant::now(),
        )
        .await;
    }
}

/// `p95 <= 500.0 ms, schema pass >= 95%`: the bounds that decide a step.
fn criterion(slo: &Slo, decide: Option<&str>) -> String {
    let all = [
        ("p50_ms", "p50", slo.p50_ms),
        ("p95_ms", "p95", slo.p95_ms),
        ("p99_ms", "p99", slo.p99_ms),
        ("ttft_ms", "TTFT p95", slo.ttft_ms),
    ];
    let mut v: Vec<String> = all
        .iter()
        .filter(|(k, _, b)| b.is_some() && decide.is_none_or(|d| d == *k))
        .map(|(_, l, b)| format!("{l} <= {:.1} ms", b.unwrap_or_default()))
        .collect();
    if let Some(s) = slo.schema_pass
        && decide.is_none_or(|d| d == "schema_pass")
    {
        v.push(format!("schema pass >= {:.0}%", s * 100.0));
    }
    v.join(", ")
}

struct StepCtx<'a> {
    http: &'a reqwest::Client,
    plan: &'a LoadedPlan,
    target: &'a Target,
    key: Option<&'a str>,
    def: ConfigDef,
    body: &'a serde_json::Value,
    slo: &'a Slo,
    decide: Option<&'a str>,
}

async fn run_step(ctx: &StepCtx<'_>, hz: f64, requests: usize, warmup: usize) -> SweepStep {
    let load = Load {
        rate_hz: Some(hz),
        arrivals: ctx.plan.plan.load.arrivals,
        seed: ctx.plan.plan.load.seed,
    };
    let schedule = load.schedule(requests).unwrap_or_default();
    let rule = StopRule::new(ctx.slo, ctx.decide, requests - warmup);
    let t0 = tokio::time::Instant::now();
    let mut pending: futures::stream::FuturesUnordered<_> = schedule
        .iter()
        .enumerate()
        .map(|(i, offset)| {
            let scheduled = t0.checked_add(*offset).unwrap_or(t0);
            let offset = *offset;
            async move {
                tokio::time::sleep_until(scheduled).await;
                let late = scheduled.elapsed();
                let mut s = run::one(
                    ctx.http,
                    None,
                    ctx.plan,
                    ctx.target,
                    ctx.key,
                    ctx.body,
                    i,
                    scheduled.into_std(),
                )
                .await;
                s.scheduled_ms = Some(offset.as_secs_f64() * 1000.0);
                s.queue_ms = Some(late.as_secs_f64() * 1000.0);
                s
            }
        })
        .collect();
    let mut done: Vec<Option<Sample>> = vec![None; requests];
    let mut bad = 0usize;
    let mut stopped_early = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            s = pending.next() => match s {
                Some(s) => {
                    let i = s.index;
                    if i >= warmup && rule.is_some_and(|r| s.error.is_some() || s.wall_ms > r.over_ms) {
                        bad += 1;
                    }
                    done[i] = Some(s);
                }
                None => break,
            },
            _ = tick.tick() => {}
        }
        if let Some(r) = rule {
            let now_ms = t0.elapsed().as_secs_f64() * 1000.0;
            let overdue = overdue(&schedule, &done, warmup, now_ms, r.over_ms);
            if bad + overdue.len() > r.allowed {
                stopped_early = true;
                for i in overdue {
                    let age = now_ms - schedule[i].as_secs_f64() * 1000.0;
                    done[i] = Some(cut_off(i, schedule[i], age));
                }
                break;
            }
        }
    }
    drop(pending);
    let elapsed_s = t0.elapsed().as_secs_f64();
    let measured: Vec<Sample> = done.into_iter().skip(warmup).flatten().collect();
    let period_ms = 1000.0 / hz;
    let summary = run::summarize(&measured, true, Some(period_ms));
    let report = slo::evaluate(&measured, ctx.slo, ctx.def.stream);
    let keeps_up = keeps_up(&measured);
    let met = !stopped_early
        && report.total > 0
        && keeps_up.is_some_and(|k| k >= KEEPS_UP)
        && match ctx.decide {
            // The deciding bound must have been checked (TTFT is only on streamed configs).
            Some(d) => {
                report.checks.iter().any(|c| c.name == d)
                    && report.checks.iter().filter(|c| c.name == d).all(|c| c.met)
            }
            None => report.met,
        };
    SweepStep {
        offered_hz: hz,
        achieved_hz: summary.achieved_hz,
        requests,
        warmup,
        wall_ms: summary.wall_ms,
        slo: report,
        met,
        stopped_early,
        keeps_up,
        elapsed_s,
        samples: measured,
    }
}

/// Pure: how well the server kept up with the requests it answered: the time from the first
/// scheduled send to the last over the time from the first answer to the last (1: answers
/// came as fast as requests were sent; below 1: the backlog grew). Over the same requests,
/// so Poisson's own randomness cancels out. `None` with fewer than two answers.
#[must_use]
pub fn keeps_up(measured: &[Sample]) -> Option<f64> {
    let ok: Vec<(f64, f64)> = measured
        .iter()
        .filter(|s| s.error.is_none())
        .filter_map(|s| Some((s.scheduled_ms?, s.scheduled_ms? + s.wall_ms)))
        .collect();
    let span = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        hi - lo
    };
    let sent = span(&mut ok.iter().map(|p| p.0));
    let answered = span(&mut ok.iter().map(|p| p.1));
    (ok.len() >= 2 && answered > 0.0).then(|| sent / answered)
}

/// Measured requests sent but not done whose age exceeds `over_ms`.
fn overdue(
    schedule: &[Duration],
    done: &[Option<Sample>],
    warmup: usize,
    now_ms: f64,
    over_ms: f64,
) -> Vec<usize> {
    (warmup..schedule.len())
        .take_while(|&i| schedule[i].as_secs_f64() * 1000.0 + over_ms < now_ms)
        .filter(|&i| done[i].is_none())
        .collect()
}

fn cut_off(index: usize, scheduled: Duration, age_ms: f64) -> Sample {
    Sample {
        index,
        wall_ms: age_ms,
        ttft_ms: None,
        error: Some(ErrorKind::Timeout),
        error_detail: Some(format!(
            "still waiting after {age_ms:.0} ms when the sweep stopped the step early"
        )),
        strategy: None,
        server: client::ServerTimings::default(),
        completion_tokens: None,
        scheduled_ms: Some(scheduled.as_secs_f64() * 1000.0),
        queue_ms: None,
        itl_ms: Vec::new(),
        timings_unusable: None,
    }
}

/// A rate as the tables show it: `47.6`, `2.83`, `0.25`.
#[must_use]
pub fn hz_text(hz: f64) -> String {
    if hz >= 10.0 {
        format!("{hz:.1}")
    } else {
        format!("{hz:.2}")
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.1}"))
}

/// Rows of the steps table, in the order run.
fn rows(s: &SweepResult) -> Vec<[String; 7]> {
    s.steps
        .iter()
        .map(|st| {
            [
                hz_text(st.offered_hz),
                st.achieved_hz.map_or("-".to_owned(), hz_text),
                ms(st.wall_ms.map(|w| w.p50)),
                ms(st.wall_ms.map(|w| w.p95)),
                st.slo
                    .goodput
                    .map_or("-".to_owned(), |g| format!("{:.0}%", g * 100.0)),
                if st.met { "yes" } else { "no" }.to_owned(),
                format!(
                    "{} req, {} warm-up, {:.1} s{}{}",
                    st.requests,
                    st.warmup,
                    st.elapsed_s,
                    if st.stopped_early {
                        ", stopped early"
                    } else {
                        ""
                    },
                    match st.keeps_up {
                        Some(k) if k < KEEPS_UP && !st.stopped_early => {
                            format!(", fell behind ({:.0}%)", k * 100.0)
                        }
                        _ => String::new(),
                    }
                ),
            ]
        })
        .collect()
}

const HEAD: [&str; 7] = [
    "offered Hz",
    "achieved Hz",
    "p50 ms",
    "p95 ms",
    "goodput",
    "met",
    "step",
];

/// The terminal text: per sweep, its verdict line and a table of the steps.
#[must_use]
pub fn table(sweeps: &[SweepResult]) -> String {
    let mut out = String::new();
    for s in sweeps {
        let rows = rows(s);
        let mut widths: Vec<usize> = HEAD.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        let _ = writeln!(out, "{}", line(&HEAD.map(str::to_owned)));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r));
        }
        let _ = writeln!(
            out,
            "{}; {} steps in {:.1} s",
            s.verdict_line(),
            s.steps.len(),
            s.elapsed_s
        );
    }
    out
}

/// The Markdown section (empty without sweeps).
#[must_use]
pub fn markdown(sweeps: &[SweepResult]) -> String {
    let mut out = String::new();
    for s in sweeps {
        let _ = writeln!(
            out,
            "\n## Rate sweep: {} {}\n\n{}; {} steps in {:.1} s.\n",
            crate::text::markdown(&s.target),
            crate::text::markdown(&s.config),
            crate::text::markdown(&s.verdict_line()),
            s.steps.len(),
            s.elapsed_s
        );
        let _ = writeln!(out, "| {} |", HEAD.join(" | "));
        let _ = writeln!(out, "|{}", "---:|".repeat(HEAD.len()));
        for r in rows(s) {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
    }
    out
}

/// The HTML section: the verdict and a table of the steps (the latency-versus-rate chart is
/// drawn from [`SweepResult::series`]).
pub fn html(out: &mut String, sweeps: &[SweepResult]) {
    for s in sweeps {
        let _ = write!(
            out,
            "<h2>Rate sweep: {} {}</h2><p>{}</p><table><tr>",
            esc(&s.target),
            esc(&s.config),
            esc(&s.verdict_line())
        );
        for h in HEAD {
            let _ = write!(out, "<th>{h}</th>");
        }
        out.push_str("</tr>");
        for r in rows(s) {
            out.push_str("<tr>");
            for c in r {
                let _ = write!(out, "<td>{}</td>", esc(&c));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(lo: f64, hi: f64) -> SweepSpec {
        SweepSpec::over(RateRange { lo, hi })
    }

    /// Runs the search against a server that passes every rate up to `capacity`.
    fn search(spec: &SweepSpec, capacity: f64) -> (Verdict, Vec<(f64, bool)>) {
        let mut steps = Vec::new();
        loop {
            match next(spec, &steps) {
                Next::Probe(hz) => steps.push((hz, hz <= capacity)),
                Next::Done(v) => return (v, steps),
            }
        }
    }

    #[test]
    fn geometric_then_bisection_to_the_precision() {
        let s = spec(5.0, 200.0);
        let (v, steps) = search(&s, 47.0);
        let Verdict::Sustains {
            hz,
            failed_hz,
            precise,
        } = v
        else {
            panic!("{v:?}")
        };
        assert!(precise && hz <= 47.0 && failed_hz > 47.0, "{v:?}");
        assert!(hz >= 47.0 / 1.05, "{v:?} {steps:?}");
        // Geometric from 5: 5, 10, 20, 40, 80, then 4 bisections halve the log ratio 2 down
        // to below 1.05.
        assert_eq!(
            steps.iter().take(5).map(|s| s.0).collect::<Vec<_>>(),
            [5.0, 10.0, 20.0, 40.0, 80.0]
        );
        assert_eq!(steps.len(), 9, "{steps:?}");
    }

    #[test]
    fn the_ends_of_the_range() {
        let s = spec(5.0, 200.0);
        assert_eq!(search(&s, 3.0).0, Verdict::BelowRange { hz: 5.0 });
        let (v, steps) = search(&s, 500.0);
        assert_eq!(v, Verdict::TopOfRange { hz: 200.0 });
        assert_eq!(steps.last(), Some(&(200.0, true)));
    }

    #[test]
    fn the_step_limit_ends_the_search_and_says_so() {
        let mut s = spec(5.0, 200.0);
        s.max_steps = 6;
        let (v, steps) = search(&s, 47.0);
        assert_eq!(steps.len(), 6);
        assert!(
            matches!(v, Verdict::Sustains { precise: false, hz, .. } if (hz - 40.0).abs() < 1e-9),
            "{v:?}"
        );
        s.max_steps = 3;
        assert_eq!(search(&s, 47.0).0, Verdict::TopOfRange { hz: 20.0 });
        let r = SweepResult {
            target: "t".into(),
            config: "T".into(),
            arrivals: Arrivals::Constant,
            spec: s,
            criterion: "p95 <= 1.0 ms".into(),
            steps: Vec::new(),
            verdict: Verdict::TopOfRange { hz: 20.0 },
            elapsed_s: 0.0,
        };
        assert!(
            r.verdict_line()
                .contains("before the step limit (3): raise max_steps")
        );
    }

    #[test]
    fn a_noisy_pass_above_a_failure_is_not_trusted() {
        let s = spec(5.0, 200.0);
        let n = next(&s, &[(10.0, true), (20.0, false), (40.0, true)]);
        assert_eq!(n, Next::Probe((10.0f64 * 20.0).sqrt()));
    }

    #[test]
    fn step_length_and_warmup() {
        let s = spec(1.0, 100.0);
        assert_eq!(s.requests_at(1.0), (40, 5));
        assert_eq!(s.requests_at(50.0), (250, 25));
        assert_eq!(s.requests_at(10_000.0), (50_000, 5000));
        let mut s = s;
        s.step_s = Some(3600.0);
        assert_eq!(s.requests_at(10_000.0).0, MAX_REQUESTS);
        s.requests_per_step = Some(60);
        assert_eq!(s.requests_at(50.0), (60, 6));
    }

    #[test]
    fn the_early_stop_waits_for_a_certain_failure() {
        let slo = Slo {
            p95_ms: Some(100.0),
            ..Slo::default()
        };
        // p95 of 100 requests is the 95th: 5 may be slower, the 6th fails the bound.
        assert_eq!(
            StopRule::new(&slo, None, 100),
            Some(StopRule {
                over_ms: 300.0,
                allowed: 5
            })
        );
        assert_eq!(StopRule::new(&slo, Some("schema_pass"), 100), None);
        assert_eq!(StopRule::new(&Slo::default(), None, 100), None);
    }

    #[test]
    fn rate_ranges_parse() {
        assert_eq!(
            "5:80".parse::<RateRange>(),
            Ok(RateRange { lo: 5.0, hi: 80.0 })
        );
        for bad in ["80:5", "5", "0:5", "x:5", "5:1e9"] {
            assert!(bad.parse::<RateRange>().is_err(), "{bad}");
        }
    }

    fn parse(sweep: &str, slo: &str) -> Result<crate::plan::Plan, String> {
        let text = format!(
            "version = 1\nconfigs = [\"T\", \"A\"]\n{slo}\n{sweep}\n[[target]]\nname = \"t\"\nurl = \"http://x\"\n"
        );
        crate::plan::Plan::parse(&text, std::path::Path::new("p.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_sweep_table_parses_with_defaults() {
        let p = parse("[sweep]\nmin_hz = 2\nmax_hz = 40", "[slo]\np95_ms = 50").unwrap();
        let s = p.sweep.unwrap();
        assert_eq!(s, spec(2.0, 40.0));
        let p = parse(
            "[sweep]\nmin_hz = 2\nmax_hz = 40\nstep_s = 2.5\nrequests_per_step = 80\nconfig = \"A\"\n\
             decide = \"p95_ms\"\nprecision = 0.02\nfactor = 1.5\nmax_steps = 20",
            "[slo]\np50_ms = 20\np95_ms = 50",
        )
        .unwrap();
        let s = p.sweep.unwrap();
        assert_eq!(
            (
                s.step_s,
                s.requests_per_step,
                s.config.as_deref(),
                s.decide.as_deref()
            ),
            (Some(2.5), Some(80), Some("A"), Some("p95_ms"))
        );
        assert_eq!((s.precision, s.factor, s.max_steps), (0.02, 1.5, 20));
    }

    #[test]
    fn bad_sweep_tables_name_line_and_field() {
        let slo = "[slo]\np95_ms = 50";
        for (sweep, slo, want) in [
            (
                "[sweep]\nmin_hz = 2\nmax_hz = 40",
                "",
                "p.toml:4: sweep: a rate sweep needs an [slo]",
            ),
            (
                "[sweep]\nmin_hz = 0\nmax_hz = 40",
                slo,
                "p.toml:6: sweep.min_hz: got 0, expected a finite rate",
            ),
            (
                "[sweep]\nmin_hz = 40\nmax_hz = 4",
                slo,
                "p.toml:7: sweep.max_hz: got 4, expected a rate above sweep.min_hz = 40",
            ),
            (
                "[sweep]\nmin_hz = 4\nmax_hz = 4",
                slo,
                "p.toml:7: sweep.max_hz: got 4, expected a rate above sweep.min_hz = 4",
            ),
            (
                "[sweep]\nmin_hz = 1\nmax_hz = 4\nprecision = 1",
                slo,
                "p.toml:8: sweep.precision: got 1",
            ),
            (
                "[sweep]\nmin_hz = 1\nmax_hz = 4\nfactor = 1",
                slo,
                "p.toml:8: sweep.factor: got 1",
            ),
            (
                "[sweep]\nmin_hz = 1\nmax_hz = 4\nrequests_per_step = 5",
                slo,
                "p.toml:8: sweep.requests_per_step: got 5, expected a whole number from 10",
            ),
            (
                "[sweep]\nmin_hz = 1\nmax_hz = 4\nconfig = \"C\"",
                slo,
                "p.toml:8: sweep.config: \"C\" is not one of the plan's configs",
            ),
            (
                "[sweep]\nmin_hz = 1\nmax_hz = 4\ndecide = \"p99_ms\"",
                slo,
                "p.toml:8: sweep.decide: \"p99_ms\" is not a bound in the plan's [slo]",
            ),
            ("[sweep]\nmin_hz = 1", slo, "missing field `max_hz`"),
            (
                "[sweep]\nmin_hz = 1\nmax_hz = 4\ndecide = \"ttft_ms\"",
                "[slo]\nttft_ms = 50",
                "p.toml:8: sweep.decide: \"ttft_ms\" needs a streamed config (C or E), and the sweep runs \"T\"",
            ),
        ] {
            let e = parse(sweep, slo).unwrap_err();
            assert!(e.contains(want), "{sweep:?}: {e}");
        }
    }

    fn step(offered_hz: f64, p50: f64, p95: f64, met: bool, stopped_early: bool) -> SweepStep {
        let wall = crate::stats::summarize(&[p50, p95]).map(|mut w| {
            (w.p50, w.p95) = (p50, p95);
            w
        });
        SweepStep {
            offered_hz,
            achieved_hz: Some(offered_hz.min(46.0)),
            requests: 60,
            warmup: 6,
            wall_ms: wall,
            slo: SloReport {
                checks: Vec::new(),
                met,
                good: if met { 54 } else { 3 },
                total: 54,
                goodput: Some(if met { 1.0 } else { 3.0 / 54.0 }),
            },
            met,
            stopped_early,
            keeps_up: Some(if offered_hz > 50.0 && !stopped_early {
                0.8
            } else {
                1.0
            }),
            elapsed_s: 60.0 / offered_hz,
            samples: Vec::new(),
        }
    }

    #[test]
    fn the_steps_table_markdown_and_html() {
        let r = SweepResult {
            target: "panda".into(),
            config: "A".into(),
            arrivals: Arrivals::Poisson,
            spec: spec(20.0, 200.0),
            criterion: "p95 <= 40.0 ms".into(),
            steps: vec![
                step(20.0, 21.0, 24.5, true, false),
                step(40.0, 22.0, 30.1, true, false),
                step(80.0, 104.5, 131.8, false, true),
                step(56.6, 93.6, 127.6, false, false),
                step(51.0, 25.0, 38.0, false, false),
                step(47.6, 23.0, 35.2, true, false),
            ],
            verdict: Verdict::Sustains {
                hz: 47.6,
                failed_hz: 49.7,
                precise: true,
            },
            elapsed_s: 12.3,
        };
        insta::assert_snapshot!("sweep-table", table(std::slice::from_ref(&r)));
        insta::assert_snapshot!("sweep-markdown", markdown(std::slice::from_ref(&r)));
        let mut html_out = String::new();
        html(&mut html_out, std::slice::from_ref(&r));
        insta::assert_snapshot!("sweep-html", html_out);
        let series = r.series();
        assert_eq!(
            series.iter().map(|p| p.offered_hz).collect::<Vec<_>>(),
            [20.0, 40.0, 47.6, 51.0, 56.6, 80.0]
        );
    }

    #[test]
    fn keeping_up_compares_the_answers_span_with_the_sends() {
        let sample = |i: u32, wall_ms: f64| Sample {
            index: i as usize,
            wall_ms,
            ttft_ms: None,
            error: None,
            error_detail: None,
            strategy: None,
            server: client::ServerTimings::default(),
            completion_tokens: None,
            scheduled_ms: Some(20.0 * f64::from(i)),
            queue_ms: None,
            itl_ms: Vec::new(),
            timings_unusable: None,
        };
        // Every answer 20 ms after its send: the server keeps up.
        let flat: Vec<Sample> = (0..10).map(|i| sample(i, 20.0)).collect();
        assert_eq!(keeps_up(&flat), Some(1.0));
        // Each answer 10 ms later than the one before: sends span 180 ms, answers 270 ms.
        let growing: Vec<Sample> = (0..10)
            .map(|i| sample(i, 20.0 + 10.0 * f64::from(i)))
            .collect();
        assert_eq!(keeps_up(&growing), Some(180.0 / 270.0));
        assert_eq!(keeps_up(&flat[..1]), None);
    }
}
