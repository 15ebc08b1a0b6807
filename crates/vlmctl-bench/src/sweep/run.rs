//! The sweep runner: per target, the warm-up, then open-loop steps at the rates
//! [`super::next`] asks for, each cut short by its [`StopRule`] when it fails badly.

use std::time::Duration;

use futures::StreamExt as _;

use super::search::{KEEPS_UP, Next, StopRule, criterion, keeps_up, next, overdue};
use crate::client::{self, ErrorKind};
use crate::plan::{CONFIGS, ConfigDef, Load, LoadedPlan, RateRange, Slo, SweepSpec, Target};
use crate::results::{FORMAT, Results, Sample, SweepResult, SweepStep, SweepVerdict};
use crate::run;
use crate::slo;
use crate::summary;

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
        format: FORMAT.to_owned(),
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
) -> (Vec<SweepStep>, SweepVerdict) {
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
    let summary = summary::summarize(&measured, true, Some(period_ms));
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
