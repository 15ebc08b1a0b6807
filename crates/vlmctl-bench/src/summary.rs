//! Pure: a config's measured samples summarized ([`summarize`], [`summarize_for`]): the
//! percentiles, rates and counts a results file stores, recomputable from its samples; and
//! which server timings are plausible enough to use ([`timings_problem`]).

use std::collections::BTreeMap;

use crate::plan::Plan;
use crate::results::{ConfigSummary, Figure, Sample, TIMINGS_SLACK_MS};
use crate::schema::Strategy;
use crate::slo;
use crate::stats::{self, Summary};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ErrorKind, ServerTimings};
    use crate::results::MAX_LATENCY_MS;

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
