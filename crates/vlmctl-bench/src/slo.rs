//! Service-level objectives: the plan's `[slo]` table ([`Slo`]), checked per config
//! ([`evaluate`] gives an [`SloReport`]), and **goodput**.
//!
//! Definitions (docs/bench.md repeats them):
//! - A latency bound `pN_ms` is met when the nearest-rank N-th percentile of the config's
//!   measured requests is within it, where a **failed request counts as slower than any bound**:
//!   percentiles over successful requests alone would let a server that times out on half its
//!   requests meet a p95 bound.
//! - `ttft_ms` applies to streamed configs only (the others measure no TTFT) and bounds the
//!   TTFT's p95, failures again counting as too slow.
//! - `schema_pass` is met when at least that share of the measured requests returned an answer
//!   that passes the nav schema (a failed request passes nothing).
//! - A request is **good** when it succeeded, its answer passes the schema (a nav answer the
//!   robot cannot parse is no output, with or without a `schema_pass` bound), its wall time is
//!   within the bound of the *highest* percentile given (p99, else p95, else p50), and, when
//!   streamed, its TTFT is within `ttft_ms`. Goodput is good requests / measured requests.
//!
//! Why the highest percentile's bound per request: a p50 bound says where the middle of the
//! distribution lies, not that every request must meet it (half of them may not), while the
//! highest percentile's bound is the latency the SLO allows any request it does not write off.
//! The plan refuses bounds that fall as the percentile rises, so it is also the loosest one. It
//! ties goodput to the checks: with nearest-rank percentiles (failures ranked last), a met
//! bound on the highest percentile N given means at least N % of the requests succeeded within
//! it, so goodput falls below N % only through schema misses or, streamed, TTFT misses.

use crate::results::Sample;
/// The report types, where they were before they moved to [`crate::results`].
pub use crate::results::{SloCheck, SloReport};
use crate::schema::Strategy;
use crate::stats;

/// The plan's `[slo]` table, defined with the plan (the report types are in [`crate::results`]).
pub use crate::plan::Slo;

impl Slo {
    /// The wall-time bound a single request must meet to be good: the highest percentile's.
    #[must_use]
    pub fn request_wall_ms(&self) -> Option<f64> {
        self.p99_ms.or(self.p95_ms).or(self.p50_ms)
    }

    /// The latency bounds with their percentile, lowest percentile first.
    fn latency_bounds(&self) -> impl Iterator<Item = (&'static str, f64, f64)> {
        [
            ("p50_ms", 50.0, self.p50_ms),
            ("p95_ms", 95.0, self.p95_ms),
            ("p99_ms", 99.0, self.p99_ms),
        ]
        .into_iter()
        .filter_map(|(name, p, b)| Some((name, p, b?)))
    }

    /// Whether one request is good (see the module's definition).
    #[must_use]
    pub fn good(&self, s: &Sample, streamed: bool) -> bool {
        s.error.is_none()
            && s.strategy.is_some_and(Strategy::passes)
            && self.request_wall_ms().is_none_or(|b| s.wall_ms <= b)
            && (!streamed
                || self
                    .ttft_ms
                    .is_none_or(|b| s.ttft_ms.is_some_and(|t| t <= b)))
    }
}

/// Pure: `samples` (a config's measured requests; `streamed` when the config streams) against
/// `slo`.
#[must_use]
pub fn evaluate(samples: &[Sample], slo: &Slo, streamed: bool) -> SloReport {
    let total = samples.len();
    let mut checks = Vec::new();
    let ranked = |value: fn(&Sample) -> Option<f64>| {
        let mut v: Vec<f64> = samples
            .iter()
            .map(|s| {
                s.error
                    .is_none()
                    .then(|| value(s))
                    .flatten()
                    .filter(|x| x.is_finite())
                    .unwrap_or(f64::INFINITY)
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let wall = ranked(|s| Some(s.wall_ms));
    let latency = |name: &str, sorted: &[f64], p: f64, bound: f64| {
        let actual = stats::percentile(sorted, p).filter(|x| x.is_finite());
        SloCheck {
            name: name.to_owned(),
            bound,
            actual,
            met: actual.is_some_and(|a| a <= bound),
        }
    };
    for (name, p, bound) in slo.latency_bounds() {
        checks.push(latency(name, &wall, p, bound));
    }
    if streamed && let Some(bound) = slo.ttft_ms {
        checks.push(latency("ttft_ms", &ranked(|s| s.ttft_ms), 95.0, bound));
    }
    if let Some(bound) = slo.schema_pass {
        let pass = samples
            .iter()
            .filter(|s| s.error.is_none() && s.strategy.is_some_and(Strategy::passes))
            .count();
        let actual = (total > 0).then(|| pass as f64 / total as f64);
        checks.push(SloCheck {
            name: "schema_pass".to_owned(),
            bound,
            actual,
            met: actual.is_some_and(|a| a >= bound),
        });
    }
    let good = samples.iter().filter(|s| slo.good(s, streamed)).count();
    SloReport {
        met: total > 0 && checks.iter().all(|c| c.met),
        checks,
        good,
        total,
        goodput: (total > 0).then(|| good as f64 / total as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ErrorKind, ServerTimings};

    fn s(wall_ms: f64, ttft_ms: Option<f64>, strategy: Strategy) -> Sample {
        Sample {
            index: 0,
            wall_ms,
            ttft_ms,
            error: None,
            error_detail: None,
            strategy: Some(strategy),
            server: ServerTimings::default(),
            completion_tokens: None,
            scheduled_ms: None,
            queue_ms: None,
            itl_ms: Vec::new(),
            timings_unusable: None,
        }
    }

    fn failed(wall_ms: f64) -> Sample {
        Sample {
            error: Some(ErrorKind::Timeout),
            strategy: None,
            ..s(wall_ms, None, Strategy::WholeJson)
        }
    }

    /// 20 requests of 1..=20 ms, all schema-valid.
    fn ramp() -> Vec<Sample> {
        (1..=20)
            .map(|i| s(f64::from(i), None, Strategy::WholeJson))
            .collect()
    }

    fn check<'a>(r: &'a SloReport, name: &str) -> &'a SloCheck {
        r.checks.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn a_slow_request_is_not_good_and_the_highest_percentile_bounds_each_request() {
        // p50 10 ms, p95 19 ms: both bounds met; a request is good up to the p95 bound (19 ms),
        // so 19 of 20 are good (the 20 ms one is not), although 9 of them exceed the p50 bound.
        let slo = Slo {
            p50_ms: Some(10.0),
            p95_ms: Some(19.0),
            ..Slo::default()
        };
        let r = evaluate(&ramp(), &slo, false);
        assert!(r.met, "{r:?}");
        assert_eq!(check(&r, "p50_ms").actual, Some(10.0));
        assert_eq!(check(&r, "p95_ms").actual, Some(19.0));
        assert_eq!((r.good, r.total, r.goodput), (19, 20, Some(0.95)));
        // A bound just below the p95: not met, and the 19 ms request is no longer good.
        let tight = Slo {
            p95_ms: Some(18.5),
            ..slo
        };
        let r = evaluate(&ramp(), &tight, false);
        assert!(!r.met && !check(&r, "p95_ms").met);
        assert_eq!(r.good, 18);
        assert_eq!(
            r.describe(),
            "p50 10.0 ms <= 10.0 ms, p95 19.0 ms > 18.5 ms"
        );
    }

    #[test]
    fn failures_count_as_too_slow_and_never_good() {
        // 18 fast successes and 2 timeouts: over the successes alone the p95 would be 18 ms and
        // met; with the failures ranked last it falls on a failed request.
        let mut v: Vec<Sample> = ramp().into_iter().take(18).collect();
        v.push(failed(500.0));
        v.push(failed(500.0));
        let slo = Slo {
            p95_ms: Some(100.0),
            p50_ms: Some(10.0),
            ..Slo::default()
        };
        let r = evaluate(&v, &slo, false);
        let p95 = check(&r, "p95_ms");
        assert_eq!((p95.actual, p95.met), (None, false));
        assert_eq!(check(&r, "p50_ms").actual, Some(10.0));
        assert!(!r.met);
        assert_eq!(r.good, 18, "the failures are not good, however fast");
        assert_eq!(
            p95.describe(),
            "p95 on a failed request > 100.0 ms",
            "said, not shown as a number"
        );
        // No requests at all: nothing is met.
        let r = evaluate(&[], &slo, false);
        assert!(!r.met && r.goodput.is_none());
    }

    #[test]
    fn schema_misses_are_never_good_and_ttft_applies_to_streams_only() {
        let mut v = ramp();
        v[0].strategy = Some(Strategy::Keyword);
        let slo = Slo {
            p99_ms: Some(50.0),
            schema_pass: Some(0.95),
            ttft_ms: Some(5.0),
            ..Slo::default()
        };
        // Not streamed: no TTFT check; the keyword answer is fast but not good.
        let r = evaluate(&v, &slo, false);
        assert_eq!(
            r.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["p99_ms", "schema_pass"]
        );
        assert_eq!(check(&r, "schema_pass").actual, Some(0.95));
        assert!(r.met);
        assert_eq!(r.good, 19);
        // Without a schema bound the miss is still not good.
        let r = evaluate(
            &v,
            &Slo {
                schema_pass: None,
                ..slo
            },
            false,
        );
        assert_eq!(r.good, 19);
        // Streamed: TTFT i ms for request i; p95 is 19 ms > 5 ms, and only requests 2..=5 (the
        // first being the keyword answer) are good.
        for (i, x) in v.iter_mut().enumerate() {
            x.ttft_ms = Some(i as f64 + 1.0);
        }
        let r = evaluate(&v, &slo, true);
        let ttft = check(&r, "ttft_ms");
        assert_eq!((ttft.actual, ttft.met), (Some(19.0), false));
        assert_eq!(r.good, 4);
        assert_eq!(ttft.describe(), "TTFT p95 19.0 ms > 5.0 ms");
        assert_eq!(
            check(&r, "schema_pass").describe(),
            "schema pass 95% >= 95%"
        );
    }
}
