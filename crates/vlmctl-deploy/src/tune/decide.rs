//! The pure decisions of a tune: each variant's [`VariantVerdict`] against the gates, the winner
//! ([`choose`]), the table's order, the line that adopts a winner into the spec, whether the
//! original is back ([`judge`]); and the rows they decide over. No I/O; imports nothing of the
//! tune job.

use std::fmt::Write as _;

use serde::Serialize;
use vlmctl_bench::run::Results;
use vlmctl_lifecycle::journal::Restored;
use vlmctl_lifecycle::spec::Spec;

use super::file::Variant;
use super::journal;
use crate::types::{MemorySource, Outcome};

/// Where a variant stands against the gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum VariantVerdict {
    /// The fastest that meets every gate.
    Winner,
    /// Meets every gate, slower than the winner.
    Eligible,
    /// Some requests failed.
    Errors {
        /// How many.
        errors: usize,
    },
    /// The plan's `[slo]` was missed.
    SloMissed,
    /// Above the memory gate.
    OverMemory {
        /// Measured.
        used_mib: u64,
        /// The gate.
        max_mib: u64,
    },
    /// A memory gate is set, and the figure could not be read.
    MemoryUnknown,
    /// Not benchmarked.
    Failed,
}

/// One row of the result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The variant.
    pub variant: Variant,
    /// The spec hash it ran as.
    pub spec_sha256: String,
    /// What happened.
    pub outcome: Outcome,
    /// Against the gates.
    pub verdict: VariantVerdict,
    /// The bench results, when it was benchmarked.
    #[serde(skip)]
    pub results: Option<Box<Results>>,
}

/// How a tune ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tuned {
    /// The deployment.
    pub deployment: String,
    /// One row per variant, in the order measured.
    pub rows: Vec<Row>,
    /// The index of the winner in `rows`.
    pub winner: Option<usize>,
    /// The memory gate applied (MiB).
    pub memory_gate_mib: Option<u64>,
    /// Where the memory figures come from.
    pub memory_source: MemorySource,
    /// The spec change that adopts the winner (`None`: no winner, or the baseline won).
    pub adopt: Option<String>,
    /// What putting the original deployment back did.
    pub restored: Restored,
    /// The original container's id (the same before and after), if there was one.
    pub original_id: Option<String>,
    /// Whether the original is back as it was, checked after putting it back.
    pub back: Back,
    /// The sweep was stopped (a signal) before every variant was measured: why. `rows` has the
    /// variants measured until then.
    pub interrupted: Option<String>,
}

/// The deployment after the tune, as checked (not as intended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Back {
    /// The same container (same id), running if it ran, healthy.
    AsItWas,
    /// There was no container before the tune, and none is left.
    NoneBefore,
    /// It is not back as it was.
    NotBack {
        /// What is wrong, in words.
        why: String,
    },
}

/// Pure: the original against what is found under its name after putting it back
/// (`(id, running)`), and why it is not ready (a sentence) when the readiness wait failed.
#[must_use]
pub fn judge(
    original: &journal::Original,
    name: &str,
    found: Option<(&str, bool)>,
    not_ready: Option<&str>,
) -> Back {
    let short = |id: &str| id.get(..12).unwrap_or(id).to_owned();
    let why = match found {
        None => format!(
            "no container is named {name} any more: the original ({}) was removed during the tune",
            short(&original.id)
        ),
        Some((id, _)) if id != original.id => format!(
            "{name} is container {}, not the original {}",
            short(id),
            short(&original.id)
        ),
        Some((_, running)) if running != original.running => {
            if original.running {
                format!("{name} is back but not running")
            } else {
                format!("{name} is back and running; it was stopped before the tune")
            }
        }
        _ => match not_ready {
            Some(why) if original.running => why.to_owned(),
            _ => return Back::AsItWas,
        },
    };
    Back::NotBack { why }
}

/// Pure: a measured variant against the gates (never [`VariantVerdict::Winner`]: see [`choose`]).
#[must_use]
pub fn verdict(outcome: &Outcome, gate_mib: Option<u64>) -> VariantVerdict {
    let Outcome::Measured(m) = outcome else {
        return VariantVerdict::Failed;
    };
    if m.errors > 0 {
        return VariantVerdict::Errors { errors: m.errors };
    }
    if m.slo_met == Some(false) {
        return VariantVerdict::SloMissed;
    }
    match (gate_mib, m.memory_mib) {
        (Some(max), Some(used)) if used > max => VariantVerdict::OverMemory {
            used_mib: used,
            max_mib: max,
        },
        (Some(_), None) => VariantVerdict::MemoryUnknown,
        _ => VariantVerdict::Eligible,
    }
}

/// Pure: the fastest (lowest p50; the earlier on a tie) of the rows that meet every gate.
#[must_use]
pub fn choose(rows: &[(Outcome, VariantVerdict)]) -> Option<usize> {
    rows.iter()
        .enumerate()
        .filter(|(_, (_, v))| matches!(v, VariantVerdict::Eligible | VariantVerdict::Winner))
        .filter_map(|(i, (o, _))| match o {
            Outcome::Measured(m) => Some((i, m.p50_ms)),
            Outcome::Failed { .. } => None,
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(i, _)| i)
}

/// Pure: the table's order: measured rows by p50, then the failed ones as measured.
#[must_use]
pub fn order(rows: &[Row]) -> Vec<usize> {
    let p50 = |r: &Row| match &r.outcome {
        Outcome::Measured(m) => Some(m.p50_ms),
        Outcome::Failed { .. } => None,
    };
    let mut idx: Vec<usize> = (0..rows.len()).collect();
    idx.sort_by(|&a, &b| match (p50(&rows[a]), p50(&rows[b])) {
        (Some(x), Some(y)) => x.total_cmp(&y).then(a.cmp(&b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(&b),
    });
    idx
}

/// Pure: the `[server]` lines that adopt `v` in `spec` (`None` for the baseline).
#[must_use]
pub fn adopt(spec: &Spec, v: &Variant) -> Option<String> {
    if v.is_baseline() {
        return None;
    }
    let s = v.apply(spec);
    let mut out = format!(
        "# adopt \"{}\": in the spec's [server] table\n[server]\n",
        v.name
    );
    if let Some(c) = v.ctx_size {
        let _ = writeln!(out, "ctx_size = {c}");
    }
    if let Some(t) = v.threads {
        let _ = writeln!(out, "threads = {t}");
    }
    if let Some(n) = v.n_gpu_layers {
        let _ = writeln!(out, "n_gpu_layers = {n}");
    }
    if !v.extra_args.is_empty() {
        let args: Vec<String> = s.server.extra_args.iter().map(|a| toml_string(a)).collect();
        let _ = writeln!(out, "extra_args = [{}]", args.join(", "));
    }
    Some(out)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}
