//! A results file read from outside checked for values no request could have had
//! ([`Results::validate`]), and summaries stored with `null` figures recomputed
//! ([`Results::repair_summaries`]).

use super::{ConfigSummary, Figure, Results, Sample};
use crate::stats::Summary;
use crate::summary::summarize_for;

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
    /// `MAX_LATENCY_MS`, shares (`schema_pass_rate`, `slo.goodput`) within `0..=1`,
    /// `deadline_miss_pct` within `0..=100`, and rates (Hz, tokens/s) within `0..=`
    /// `MAX_PER_SECOND`. `path` names the file in the
    /// error, which names the first offending field (`targets[0].configs[1].samples[3].wall_ms`).
    ///
    /// [`crate::load_results`] calls it; so should anything else that takes results from
    /// outside (`vlmctl runs import`). A file `vlmctl bench` wrote always passes: a server's
    /// own timings are not checked here (they are kept as sent and left out of the summaries
    /// when implausible, see `timings_problem`).
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
