//! The pure search: which rate to try next ([`next`]), how long a step is
//! ([`SweepSpec::requests_at`]), when a failing step is cut short ([`StopRule`]), whether the
//! server kept up ([`keeps_up`]), and what decides a step ([`criterion`]). No I/O: the runner
//! (`super::run`) feeds it the steps so far.

use std::time::Duration;

use crate::plan::{DEFAULT_STEP_S, Slo, SweepSpec};
use crate::results::{Sample, SweepVerdict};

/// Fewest requests a step sends (see the module's "Step length").
pub const MIN_REQUESTS: usize = 40;
/// Most requests a step sends (the plan's bound on `requests_per_step`).
pub const MAX_REQUESTS: usize = 100_000;
/// Fewest warm-up requests a step discards.
pub const MIN_WARMUP: usize = 5;
/// A step whose answers came over a span more than 1/0.95 times its sends' ([`keeps_up`])
/// fails: the server fell behind and a longer step would have queued past any bound. Seen on
/// the CPU test server: 30 requests at 19 Hz met p95 <= 500 ms at a capacity of 15.5 Hz.
pub const KEEPS_UP: f64 = 0.95;
/// Latency beyond this multiple of the deciding bound is a bad failure (early stop).
pub const BAD_FACTOR: f64 = 3.0;

impl SweepSpec {
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

/// What the search does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Run a step at this rate.
    Probe(f64),
    /// Done.
    Done(SweepVerdict),
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
        (None, Some(_)) => Next::Done(SweepVerdict::BelowRange { hz: lo }),
        (Some(p), None) if p >= hi => Next::Done(SweepVerdict::TopOfRange { hz: hi }),
        (Some(p), None) => Next::Probe((p * spec.factor).min(hi)),
        (Some(p), Some(f)) => {
            let precise = f <= p * (1.0 + spec.precision);
            if precise || steps.len() >= spec.max_steps {
                Next::Done(SweepVerdict::Sustains {
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
            (Self::Probe(_), Some(p)) if done >= max => {
                Self::Done(SweepVerdict::TopOfRange { hz: p })
            }
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

/// `p95 <= 500.0 ms, schema pass >= 95%`: the bounds that decide a step.
pub(super) fn criterion(slo: &Slo, decide: Option<&str>) -> String {
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
pub(super) fn overdue(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client;
    use crate::plan::{Arrivals, RateRange};
    use crate::results::SweepResult;

    fn spec(lo: f64, hi: f64) -> SweepSpec {
        SweepSpec::over(RateRange { lo, hi })
    }

    /// Runs the search against a server that passes every rate up to `capacity`.
    fn search(spec: &SweepSpec, capacity: f64) -> (SweepVerdict, Vec<(f64, bool)>) {
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
        let SweepVerdict::Sustains {
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
        assert_eq!(search(&s, 3.0).0, SweepVerdict::BelowRange { hz: 5.0 });
        let (v, steps) = search(&s, 500.0);
        assert_eq!(v, SweepVerdict::TopOfRange { hz: 200.0 });
        assert_eq!(steps.last(), Some(&(200.0, true)));
    }

    #[test]
    fn the_step_limit_ends_the_search_and_says_so() {
        let mut s = spec(5.0, 200.0);
        s.max_steps = 6;
        let (v, steps) = search(&s, 47.0);
        assert_eq!(steps.len(), 6);
        assert!(
            matches!(v, SweepVerdict::Sustains { precise: false, hz, .. } if (hz - 40.0).abs() < 1e-9),
            "{v:?}"
        );
        s.max_steps = 3;
        assert_eq!(search(&s, 47.0).0, SweepVerdict::TopOfRange { hz: 20.0 });
        let r = SweepResult {
            target: "t".into(),
            config: "T".into(),
            arrivals: Arrivals::Constant,
            spec: s,
            criterion: "p95 <= 1.0 ms".into(),
            steps: Vec::new(),
            verdict: SweepVerdict::TopOfRange { hz: 20.0 },
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
