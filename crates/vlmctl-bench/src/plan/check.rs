//! [`Plan::parse`]: every value against its range, each error naming the offending key's line
//! (through the `Raw*` twins' spans), then the checks that need the whole plan (targets,
//! configs, the sweep against the SLO).

use std::ops::{Range, RangeInclusive};
use std::path::Path;

use serde::de::IgnoredAny;
use toml::Spanned;

use super::num::Num;
use super::{
    Backend, MAX_TOKENS, Plan, RATE_HZ, RUNS, RawLoad, RawPlan, RawSlo, RawSweep, RawTarget, SEED,
    SLO_MAX_MS, SWEEP_REQUESTS, SWEEP_STEPS, Slo, TIMEOUT_MAX_S, Target, TargetLines, WARMUP,
    config_def,
};
use crate::BenchError;

impl Plan {
    /// Parses and checks plan text; `path` is used in messages only. Every error names the line
    /// of the offending key and, for numbers, the allowed range.
    pub fn parse(text: &str, path: &Path) -> Result<Self, BenchError> {
        Self::parse_with_lines(text, path).map(|(plan, _)| plan)
    }

    /// [`Self::parse`], with where each target's keys are (for checks made later, where hosts
    /// are known).
    pub(super) fn parse_with_lines(
        text: &str,
        path: &Path,
    ) -> Result<(Self, Vec<TargetLines>), BenchError> {
        let invalid = |span: Option<Range<usize>>, message: String| BenchError::PlanInvalid {
            path: path.to_owned(),
            line: span.map_or(1, |s| line_of(text, s.start)),
            message,
        };
        let toml_error = |e: toml::de::Error| invalid(e.span(), e.message().to_owned());
        // Numbers are checked on a lenient, spanned parse first, so that `runs = -5` or
        // `timeout_s = "x"` read like `runs = 0` (field, line, range) instead of serde's words.
        let raw: RawPlan = toml::from_str(text).map_err(toml_error)?;
        raw.check_numbers()
            .map_err(|(span, message)| invalid(Some(span), message))?;
        let plan: Self = toml::from_str(text).map_err(toml_error)?;
        // After the strict parse, so that a misspelt bound is named as unknown, not missing.
        if plan.slo.is_some_and(|s| s == Slo::default()) {
            return Err(invalid(
                raw.slo.as_ref().map(Spanned::span),
                "slo: an [slo] table needs at least one of p50_ms, p95_ms, p99_ms, ttft_ms, \
                 schema_pass"
                    .to_owned(),
            ));
        }
        let targets_span = raw.target.as_ref().map(Spanned::span);
        if plan.targets.is_empty() {
            return Err(invalid(
                targets_span,
                "target: a plan needs at least one [[target]]".to_owned(),
            ));
        }
        for (i, c) in plan.configs.iter().enumerate() {
            if config_def(c).is_none() {
                let span = raw
                    .configs
                    .as_ref()
                    .and_then(|v| v.get(i))
                    .map(Spanned::span);
                return Err(invalid(
                    span,
                    format!("configs: unknown config {c:?}, expected one of A, B, C, D, E, T"),
                ));
            }
        }
        let raw_targets = raw
            .target
            .as_ref()
            .map_or(&[][..], |t| t.get_ref().as_slice());
        for (i, t) in plan.targets.iter().enumerate() {
            let raw_t = raw_targets.get(i);
            let span_of = |key: fn(&RawTarget) -> &Option<Spanned<IgnoredAny>>| {
                raw_t
                    .and_then(|r| key(r.get_ref()).as_ref().map(Spanned::span))
                    .or_else(|| raw_t.map(Spanned::span))
                    .or_else(|| targets_span.clone())
            };
            if let Some((key, message)) =
                t.place_problem(raw_t.is_some_and(|r| r.get_ref().url.is_some()))
            {
                let span = match key {
                    "url" => span_of(|r| &r.url),
                    "host" => span_of(|r| &r.host),
                    "deployment" => span_of(|r| &r.deployment),
                    "backend" => span_of(|r| &r.backend),
                    // The table itself: its `[[target]]`.
                    _ => raw_t.map(Spanned::span).or_else(|| targets_span.clone()),
                };
                return Err(invalid(span, message));
            }
            if t.backend == Backend::Ollama && t.model.is_none() {
                return Err(invalid(
                    span_of(|r| &r.backend),
                    format!(
                        "target.model: target {:?} uses the ollama backend, which needs `model`",
                        t.name
                    ),
                ));
            }
        }
        if let Some((span, message)) = plan.sweep_problem(&raw) {
            return Err(invalid(span, message));
        }
        let lines = (0..plan.targets.len())
            .map(|i| {
                let raw_t = raw_targets.get(i);
                let line = |key: fn(&RawTarget) -> &Option<Spanned<IgnoredAny>>| {
                    raw_t
                        .and_then(|r| key(r.get_ref()).as_ref().map(Spanned::span))
                        .or_else(|| raw_t.map(Spanned::span))
                        .map_or(1, |s| line_of(text, s.start))
                };
                TargetLines {
                    table: raw_t.map_or(1, |r| line_of(text, r.span().start)),
                    host: line(|r| &r.host),
                    deployment: line(|r| &r.deployment),
                }
            })
            .collect();
        Ok((plan, lines))
    }

    /// The `[sweep]` checks that need the rest of the plan: an `[slo]` to decide by, a swept
    /// config the plan runs, a `decide` bound the `[slo]` has (TTFT on a streamed config).
    fn sweep_problem(&self, raw: &RawPlan) -> Option<(Option<Range<usize>>, String)> {
        let sw = self.sweep.as_ref()?;
        let raw_sw = raw.sweep.as_ref();
        let span = |key: fn(&RawSweep) -> Option<Range<usize>>| {
            raw_sw
                .and_then(|r| key(r.get_ref()))
                .or_else(|| raw_sw.map(Spanned::span))
        };
        let Some(slo) = &self.slo else {
            return Some((
                span(|_| None),
                "sweep: a rate sweep needs an [slo] table to decide which rates pass (e.g. \
                 p95_ms = 500)"
                    .to_owned(),
            ));
        };
        if let Some(c) = &sw.config
            && !self.configs.contains(c)
        {
            return Some((
                span(|r| r.config.as_ref().map(Spanned::span)),
                format!(
                    "sweep.config: {c:?} is not one of the plan's configs {:?}",
                    self.configs
                ),
            ));
        }
        if let Some(d) = &sw.decide {
            let given = match d.as_str() {
                "p50_ms" => slo.p50_ms.is_some(),
                "p95_ms" => slo.p95_ms.is_some(),
                "p99_ms" => slo.p99_ms.is_some(),
                "ttft_ms" => slo.ttft_ms.is_some(),
                "schema_pass" => slo.schema_pass.is_some(),
                _ => false,
            };
            if !given {
                return Some((
                    span(|r| r.decide.as_ref().map(Spanned::span)),
                    format!("sweep.decide: {d:?} is not a bound in the plan's [slo]"),
                ));
            }
            let swept = sw.config.as_ref().or(self.configs.first());
            if d == "ttft_ms" && swept.and_then(|c| config_def(c)).is_some_and(|c| !c.stream) {
                return Some((
                    span(|r| r.decide.as_ref().map(Spanned::span)),
                    format!(
                        "sweep.decide: \"ttft_ms\" needs a streamed config (C or E), and the sweep runs {:?}",
                        swept.map_or("", String::as_str)
                    ),
                ));
            }
        }
        None
    }
}

impl Target {
    /// Pure: what is wrong with where the target is (its `url`, `host`, `deployment`), as the
    /// key to blame and the message. `url_written`: the plan wrote a `url` (an empty one
    /// included). A host's own syntax (`ssh://...`, a context's name) and a deployment's name
    /// are checked where hosts are known (`vlmctl_deploy::targets`).
    fn place_problem(&self, url_written: bool) -> Option<(&'static str, String)> {
        let name = &self.name;
        if let Some(h) = &self.host
            && h.trim().is_empty()
        {
            return Some((
                "host",
                format!(
                    "target.host: empty (target {name:?}); leave it out for the default host \
                     (bench --host, else this machine), or write local, a Docker context's name \
                     or ssh://[user@]host[:port]"
                ),
            ));
        }
        match &self.deployment {
            Some(d) if url_written => Some((
                "deployment",
                format!(
                    "target.deployment: target {name:?} names deployment {d:?} and a url too; \
                     keep one (a deployment's URL is found from its container on its host)"
                ),
            )),
            Some(d) if d.trim().is_empty() => Some((
                "deployment",
                format!(
                    "target.deployment: empty (target {name:?}); name a deployment vlmctl \
                     manages (its container's name, as `vlmctl status` lists it), or give a url"
                ),
            )),
            Some(d) if self.backend == Backend::Ollama => Some((
                "backend",
                format!(
                    "target.backend: target {name:?} names deployment {d:?}, a llama-server that \
                     vlmctl manages, which speaks backend = \"openai\"; leave backend out, or \
                     give an Ollama server by its url"
                ),
            )),
            None if !url_written => Some((
                "target",
                format!(
                    "target.url: target {name:?} has neither a url nor a deployment; give url = \
                     \"http://127.0.0.1:11435\" (the server as its host sees it) or deployment = \
                     \"NAME\" (a vlmctl deployment: its URL is found from its container)"
                ),
            )),
            None if !(self.url.starts_with("http://") || self.url.starts_with("https://")) => {
                Some((
                    "url",
                    format!(
                        "target.url: {:?} (target {name:?}) must start with http:// or https://",
                        self.url
                    ),
                ))
            }
            Some(_) | None => None,
        }
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

type Problem = (Range<usize>, String);

impl RawPlan {
    fn check_numbers(&self) -> Result<(), Problem> {
        if let Some(v) = &self.version
            && !matches!(v.get_ref(), Num::Int(1))
        {
            return Err(problem(
                v,
                "version",
                "1 (the only plan format this vlmctl reads)",
            ));
        }
        whole(self.runs.as_ref(), "runs", &RUNS)?;
        whole(self.warmup.as_ref(), "warmup", &WARMUP)?;
        whole(self.max_tokens.as_ref(), "max_tokens", &MAX_TOKENS)?;
        if let Some(v) = &self.timeout_s
            && !v
                .get_ref()
                .as_f64()
                .is_some_and(|t| t > 0.0 && t <= TIMEOUT_MAX_S)
        {
            return Err(problem(
                v,
                "timeout_s",
                &format!("a finite number of seconds above 0 and at most {TIMEOUT_MAX_S}"),
            ));
        }
        if let Some(v) = self.load.as_ref().and_then(|l| l.rate_hz.as_ref())
            && !v.get_ref().as_f64().is_some_and(|r| RATE_HZ.contains(&r))
        {
            return Err(problem(
                v,
                "load.rate_hz",
                &format!(
                    "a finite rate from {} to {} requests per second (leave it out for closed loop)",
                    RATE_HZ.start(),
                    RATE_HZ.end()
                ),
            ));
        }
        if let Some(load) = &self.load {
            load.check_arrivals()?;
        }
        if let Some(slo) = &self.slo {
            check_slo(slo)?;
        }
        if let Some(sweep) = &self.sweep {
            check_sweep(sweep.get_ref())?;
        }
        Ok(())
    }
}

/// The `[sweep]` numbers, each in its range (the rest is checked against the parsed plan).
fn check_sweep(r: &RawSweep) -> Result<(), Problem> {
    let real =
        |v: &Option<Spanned<Num>>, field: &str, ok: &dyn Fn(f64) -> bool, expected: &str| match v {
            Some(v) if !v.get_ref().as_f64().is_some_and(ok) => Err(problem(v, field, expected)),
            _ => Ok(()),
        };
    let rate = format!(
        "a finite rate from {} to {} requests per second",
        RATE_HZ.start(),
        RATE_HZ.end()
    );
    real(&r.min_hz, "sweep.min_hz", &|x| RATE_HZ.contains(&x), &rate)?;
    real(&r.max_hz, "sweep.max_hz", &|x| RATE_HZ.contains(&x), &rate)?;
    real(
        &r.step_s,
        "sweep.step_s",
        &|x| x > 0.0 && x <= 3600.0,
        "a finite number of seconds above 0 and at most 3600",
    )?;
    real(
        &r.precision,
        "sweep.precision",
        &|x| (0.001..1.0).contains(&x),
        "a relative precision from 0.001 to below 1 (0.05: within 5 %)",
    )?;
    real(
        &r.factor,
        "sweep.factor",
        &|x| (1.1..=10.0).contains(&x),
        "a growth factor from 1.1 to 10",
    )?;
    whole(
        r.requests_per_step.as_ref(),
        "sweep.requests_per_step",
        &SWEEP_REQUESTS,
    )?;
    whole(r.max_steps.as_ref(), "sweep.max_steps", &SWEEP_STEPS)?;
    if let (Some(lo), Some(hi)) = (&r.min_hz, &r.max_hz)
        && lo.get_ref().as_f64() >= hi.get_ref().as_f64()
    {
        return Err(problem(
            hi,
            "sweep.max_hz",
            &format!("a rate above sweep.min_hz = {}", lo.get_ref()),
        ));
    }
    Ok(())
}

impl RawLoad {
    fn check_arrivals(&self) -> Result<(), Problem> {
        whole(self.seed.as_ref(), "load.seed", &SEED)?;
        let Some(a) = &self.arrivals else {
            return Ok(());
        };
        match a.get_ref().as_str() {
            Some("constant") => Ok(()),
            Some("poisson") if self.rate_hz.is_some() => Ok(()),
            Some("poisson") => Err((
                a.span(),
                "load.arrivals: \"poisson\" needs load.rate_hz (its mean rate); without a rate \
                 the load is closed loop"
                    .to_owned(),
            )),
            _ => Err((
                a.span(),
                format!(
                    "load.arrivals: got {}, expected \"constant\" or \"poisson\"",
                    a.get_ref()
                ),
            )),
        }
    }
}

/// The `[slo]` bounds: each in range, and no percentile's bound below a lower
/// percentile's (p50 <= p95 <= p99: a distribution cannot have it otherwise).
fn check_slo(slo: &Spanned<RawSlo>) -> Result<(), Problem> {
    let r = slo.get_ref();
    let latency = [
        (&r.p50_ms, "slo.p50_ms"),
        (&r.p95_ms, "slo.p95_ms"),
        (&r.p99_ms, "slo.p99_ms"),
        (&r.ttft_ms, "slo.ttft_ms"),
    ];
    for (v, field) in latency {
        if let Some(v) = v
            && !v
                .get_ref()
                .as_f64()
                .is_some_and(|x| x > 0.0 && x <= SLO_MAX_MS)
        {
            return Err(problem(
                v,
                field,
                &format!("a finite number of milliseconds above 0 and at most {SLO_MAX_MS}"),
            ));
        }
    }
    if let Some(v) = &r.schema_pass
        && !v
            .get_ref()
            .as_f64()
            .is_some_and(|x| (0.0..=1.0).contains(&x))
    {
        return Err(problem(
            v,
            "slo.schema_pass",
            "a share from 0 to 1 (0.95: at least 95 % of the answers pass)",
        ));
    }
    let given: Vec<_> = latency[..3]
        .iter()
        .filter_map(|(v, field)| {
            let v = v.as_ref()?;
            Some(((v, v.get_ref().as_f64()?), *field))
        })
        .collect();
    for pair in given.windows(2) {
        let (((low_v, low), low_field), ((v, high), field)) = (pair[0], pair[1]);
        if high < low {
            return Err((
                v.span(),
                format!(
                    "{field}: got {}, below {low_field} = {}; a higher percentile cannot be \
                     faster",
                    v.get_ref(),
                    low_v.get_ref()
                ),
            ));
        }
    }
    Ok(())
}

/// `v` must be a whole number in `range` (absent: the default, which is).
fn whole(
    v: Option<&Spanned<Num>>,
    field: &str,
    range: &RangeInclusive<u64>,
) -> Result<(), Problem> {
    match v {
        Some(v)
            if !matches!(v.get_ref(), Num::Int(i)
                if u64::try_from(*i).is_ok_and(|i| range.contains(&i))) =>
        {
            Err(problem(
                v,
                field,
                &format!("a whole number from {} to {}", range.start(), range.end()),
            ))
        }
        _ => Ok(()),
    }
}

fn problem(v: &Spanned<Num>, field: &str, expected: &str) -> Problem {
    (
        v.span(),
        format!("{field}: got {}, expected {expected}", v.get_ref()),
    )
}
