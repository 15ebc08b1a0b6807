//! `bench compare BASE NEW`: per-config p50 deltas with a bootstrap interval, the runbook's rule
//! (p50 change > 20 % or schema pass < 95 % -> investigate, else within noise), and the 36 Hz
//! target band of each p50. Warns when the runs are not apples-to-apples.

use std::fmt::Write as _;

use serde::Serialize;

use crate::run::Results;
use crate::stats;

/// One compared config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Target name.
    pub target: String,
    /// Config letter.
    pub config: String,
    /// Baseline p50 ms.
    pub base_p50: f64,
    /// New p50 ms.
    pub new_p50: f64,
    /// (new - base) / base, percent.
    pub change_pct: f64,
    /// 95 % bootstrap interval of new p50 - base p50, ms.
    pub ci_ms: (f64, f64),
    /// New schema pass rate.
    pub schema_pass: Option<f64>,
    /// "investigate" or "within noise".
    pub verdict: &'static str,
    /// Target band of the new p50.
    pub band: &'static str,
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Not apples-to-apples because...
    pub warnings: Vec<String>,
    /// Matched configs.
    pub rows: Vec<Row>,
}

/// Pure comparison of two results files.
#[must_use]
pub fn compare(base: &Results, new: &Results) -> Comparison {
    let mut warnings = Vec::new();
    if base.image_sha256 != new.image_sha256 {
        warnings.push(format!(
            "different camera image (sha256 {} vs {}): not apples-to-apples",
            short(&base.image_sha256),
            short(&new.image_sha256)
        ));
    }
    if base.prompt_sha256 != new.prompt_sha256 {
        warnings.push("different prompts: not apples-to-apples".to_owned());
    }
    if base.plan_sha256 != new.plan_sha256 {
        warnings.push("different plan files (runs, max_tokens, configs may differ)".to_owned());
    }
    let mut rows = Vec::new();
    for t in &new.targets {
        // Same target name, else the only target on each side (Panda vs Beast runs).
        let bt = base.targets.iter().find(|b| b.name == t.name).or(
            if base.targets.len() == 1 && new.targets.len() == 1 {
                base.targets.first()
            } else {
                None
            },
        );
        let Some(bt) = bt else {
            warnings.push(format!("target {} is not in the baseline", t.name));
            continue;
        };
        for c in &t.configs {
            let Some(bc) = bt.configs.iter().find(|b| b.name == c.name) else {
                continue;
            };
            let (Some(bw), Some(nw)) = (bc.summary.wall_ms, c.summary.wall_ms) else {
                continue;
            };
            let ok = |cr: &crate::run::ConfigResult| {
                cr.samples
                    .iter()
                    .filter(|s| s.error.is_none())
                    .map(|s| s.wall_ms)
                    .collect::<Vec<_>>()
            };
            let ci = stats::bootstrap_p50_diff(&ok(bc), &ok(c), 2000, 0x5eed)
                .unwrap_or((f64::NAN, f64::NAN));
            let change_pct = (nw.p50 - bw.p50) / bw.p50 * 100.0;
            let schema_pass = c.summary.schema_pass_rate;
            let investigate = change_pct.abs() > 20.0 || schema_pass.is_some_and(|p| p < 0.95);
            rows.push(Row {
                target: t.name.clone(),
                config: c.name.clone(),
                base_p50: bw.p50,
                new_p50: nw.p50,
                change_pct,
                ci_ms: ci,
                schema_pass,
                verdict: if investigate {
                    "investigate"
                } else {
                    "within noise"
                },
                band: stats::target_band(nw.p50),
            });
        }
    }
    Comparison { warnings, rows }
}

fn short(s: &str) -> &str {
    &s[..12.min(s.len())]
}

/// Text rendering.
#[must_use]
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    for w in &c.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(
        out,
        "{:<10} {:<6} {:>9} {:>9} {:>8} {:>20} {:>7}  {:<13} BAND",
        "TARGET",
        "CONFIG",
        "BASE p50",
        "NEW p50",
        "CHANGE",
        "95% CI of diff (ms)",
        "SCHEMA",
        "VERDICT"
    );
    for r in &c.rows {
        let _ = writeln!(
            out,
            "{:<10} {:<6} {:>9.1} {:>9.1} {:>+7.1}% {:>20} {:>7}  {:<13} {}",
            r.target,
            r.config,
            r.base_p50,
            r.new_p50,
            r.change_pct,
            format!("[{:+.1}, {:+.1}]", r.ci_ms.0, r.ci_ms.1),
            r.schema_pass
                .map_or("-".to_owned(), |p| format!("{:.0}%", p * 100.0)),
            r.verdict,
            r.band
        );
    }
    out.trim_end().to_owned()
}
