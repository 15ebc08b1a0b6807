//! `bench compare BASE NEW`: per-config p50 changes with a bootstrap interval of that change, the
//! runbook's rule ([`verdict`]: p50 change > [`MAX_P50_CHANGE_PCT`] or schema pass <
//! [`MIN_SCHEMA_PASS`] -> investigate, else within noise) with its [`Reason`]s, and the 36 Hz
//! target band of each p50. Warns when the runs are not apples-to-apples.
//!
//! The rule judges the *measured* p50 change against a tolerance; the interval says how far
//! that measurement could move on a rerun. Both are in the same unit (percent of the base p50),
//! and a row whose interval reaches across the tolerance says so: its verdict rests on the
//! point estimate and more runs would settle it. (An interval of the difference in ms beside a
//! rule on the change in percent read as a contradiction: `[-101.1, +432.4] ms`, containing 0,
//! next to "investigate" for a run against its own x1.5 copy, whose p50 is 50 % higher.)

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::run::Results;
use crate::stats;

/// One compared config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonRow {
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
    /// 95 % bootstrap interval of `change_pct` (same resamples as `ci_ms`), percent.
    pub change_ci_pct: (f64, f64),
    /// New schema pass rate.
    pub schema_pass: Option<f64>,
    /// The runbook's rule applied to `change_pct` and `schema_pass`.
    pub verdict: ComparisonVerdict,
    /// Why the verdict is "investigate" (empty when within noise).
    pub reasons: Vec<Reason>,
    /// Target band of the new p50.
    pub band: &'static str,
}

/// The largest p50 change, in percent either way, that is still within noise.
pub const MAX_P50_CHANGE_PCT: f64 = 20.0;

/// The lowest schema pass rate (0..=1) that is still within noise.
pub const MIN_SCHEMA_PASS: f64 = 0.95;

/// Whether a compared config needs a look. Serialised as the words the reports print
/// (`"within noise"`, `"investigate"`), which results consumers already read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComparisonVerdict {
    /// The p50 moved by at most [`MAX_P50_CHANGE_PCT`] and the schema pass rate is at least
    /// [`MIN_SCHEMA_PASS`].
    #[serde(rename = "within noise")]
    WithinNoise,
    /// Anything else.
    #[serde(rename = "investigate")]
    Investigate,
}

impl ComparisonVerdict {
    /// The word reports print.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WithinNoise => "within noise",
            Self::Investigate => "investigate",
        }
    }
}

impl std::fmt::Display for ComparisonVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so table columns (`{:<13}`) line up.
        f.pad(self.as_str())
    }
}

/// What made a config "investigate".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The p50 changed by more than [`MAX_P50_CHANGE_PCT`] either way.
    Latency,
    /// The schema pass rate is below [`MIN_SCHEMA_PASS`].
    Schema,
}

impl Reason {
    /// The word reports print.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Schema => "schema",
        }
    }
}

/// The runbook's rule, with its reasons: investigate when the p50 changed by more than
/// [`MAX_P50_CHANGE_PCT`] either way ([`Reason::Latency`]) or the schema pass rate (`None`: not
/// a nav config) is below [`MIN_SCHEMA_PASS`] ([`Reason::Schema`]). A change or rate that is not
/// a number (a zero baseline p50) cannot be called noise.
#[must_use]
pub fn reasons(change_pct: f64, schema_pass: Option<f64>) -> Vec<Reason> {
    // Written as "ok" tests, so that NaN is not ok.
    let change_ok = change_pct.abs() <= MAX_P50_CHANGE_PCT;
    let schema_ok = schema_pass.is_none_or(|p| p >= MIN_SCHEMA_PASS);
    let mut why = Vec::new();
    if !change_ok {
        why.push(Reason::Latency);
    }
    if !schema_ok {
        why.push(Reason::Schema);
    }
    why
}

/// The runbook's rule ([`reasons`]): within noise when there is no reason to investigate.
#[must_use]
pub fn verdict(change_pct: f64, schema_pass: Option<f64>) -> ComparisonVerdict {
    if reasons(change_pct, schema_pass).is_empty() {
        ComparisonVerdict::WithinNoise
    } else {
        ComparisonVerdict::Investigate
    }
}

impl ComparisonRow {
    /// `investigate (latency, schema)`, or `within noise`.
    #[must_use]
    pub fn verdict_text(&self) -> String {
        if self.reasons.is_empty() {
            self.verdict.as_str().to_owned()
        } else {
            let why: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
            format!("{} ({})", self.verdict, why.join(", "))
        }
    }

    /// Whether the interval of the change reaches across the tolerance (or is not a number):
    /// a rerun could then give the other latency verdict.
    #[must_use]
    pub fn interval_crosses_tolerance(&self) -> bool {
        let (lo, hi) = self.change_ci_pct;
        let inside = |x: f64| x.abs() <= MAX_P50_CHANGE_PCT;
        let finite = lo.is_finite() && hi.is_finite();
        // One end inside and one outside, or from below -20 % to above +20 %.
        !finite || inside(lo) != inside(hi) || (lo < -MAX_P50_CHANGE_PCT && hi > MAX_P50_CHANGE_PCT)
    }
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Not apples-to-apples because...
    pub warnings: Vec<String>,
    /// Matched configs.
    pub rows: Vec<ComparisonRow>,
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
            let (base_ok, new_ok) = (ok(bc), ok(c));
            let ci = stats::bootstrap_p50_diff(&base_ok, &new_ok, 2000, 0x5eed)
                .unwrap_or((f64::NAN, f64::NAN));
            let change_ci_pct = stats::bootstrap_p50_change_pct(&base_ok, &new_ok, 2000, 0x5eed)
                .unwrap_or((f64::NAN, f64::NAN));
            let change_pct = (nw.p50 - bw.p50) / bw.p50 * 100.0;
            let schema_pass = c.summary.schema_pass_rate;
            rows.push(ComparisonRow {
                target: t.name.clone(),
                config: c.name.clone(),
                base_p50: bw.p50,
                new_p50: nw.p50,
                change_pct,
                ci_ms: ci,
                change_ci_pct,
                schema_pass,
                verdict: verdict(change_pct, schema_pass),
                reasons: reasons(change_pct, schema_pass),
                band: stats::target_band(nw.p50),
            });
        }
    }
    Comparison { warnings, rows }
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// Text rendering: per config the p50 change with its 95 % interval (both in percent of the base
/// p50, the unit the verdict judges), the verdict with its reasons, and a note under the table
/// for each row whose interval reaches across the tolerance.
#[must_use]
///
/// Names and warnings come from the two files: control characters are shown, not sent to the
/// terminal ([`crate::text::printable`]).
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    for w in &c.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let verdicts: Vec<String> = c.rows.iter().map(ComparisonRow::verdict_text).collect();
    let vw = verdicts.iter().map(String::len).max().unwrap_or(0).max(7);
    let _ = writeln!(
        out,
        "{:<10} {:<6} {:>9} {:>9} {:>8} {:>18} {:>7}  {:<vw$}  BAND",
        "TARGET",
        "CONFIG",
        "BASE p50",
        "NEW p50",
        "CHANGE",
        "95% CI of change",
        "SCHEMA",
        "VERDICT"
    );
    for (r, v) in c.rows.iter().zip(&verdicts) {
        let _ = writeln!(
            out,
            "{:<10} {:<6} {:>9.1} {:>9.1} {:>+7.1}% {:>18} {:>7}  {v:<vw$}  {}",
            r.target,
            r.config,
            r.base_p50,
            r.new_p50,
            r.change_pct,
            format!("[{:+.1}, {:+.1}]%", r.change_ci_pct.0, r.change_ci_pct.1),
            r.schema_pass
                .map_or("-".to_owned(), |p| format!("{:.0}%", p * 100.0)),
            r.band
        );
    }
    for r in c.rows.iter().filter(|r| r.interval_crosses_tolerance()) {
        let _ = writeln!(
            out,
            "note: {} {}: the p50 change's 95 % interval [{:+.1}, {:+.1}] % reaches across the \
             ±{MAX_P50_CHANGE_PCT:.0} % tolerance: the latency verdict rests on the measured \
             {:+.1} %, and a rerun could land on the other side (more runs narrow the interval)",
            r.target, r.config, r.change_ci_pct.0, r.change_ci_pct.1, r.change_pct
        );
    }
    crate::text::printable(out.trim_end()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{ComparisonVerdict, MAX_P50_CHANGE_PCT, MIN_SCHEMA_PASS, verdict};

    #[test]
    fn the_rule_at_its_boundaries() {
        use ComparisonVerdict::{Investigate, WithinNoise};
        for (change, pass, want) in [
            (0.0, Some(1.0), WithinNoise),
            (20.0, Some(1.0), WithinNoise),
            (-20.0, Some(1.0), WithinNoise),
            (20.01, Some(1.0), Investigate),
            (-20.01, Some(1.0), Investigate),
            (0.0, Some(0.95), WithinNoise),
            (0.0, Some(19.0 / 20.0), WithinNoise),
            (0.0, Some(0.9499), Investigate),
            (20.0, Some(0.95), WithinNoise),
            (20.01, Some(0.9499), Investigate),
            // Not a nav config: only the p50 counts.
            (5.0, None, WithinNoise),
            (25.0, None, Investigate),
            // A zero baseline: NaN or infinite change, never noise.
            (f64::NAN, Some(1.0), Investigate),
            (f64::INFINITY, None, Investigate),
            (0.0, Some(f64::NAN), Investigate),
        ] {
            assert_eq!(
                verdict(change, pass),
                want,
                "change {change} %, pass {pass:?}"
            );
        }
        assert_eq!(
            (MAX_P50_CHANGE_PCT, MIN_SCHEMA_PASS),
            (20.0, 0.95),
            "the runbook's numbers; docs/bench.md and `bench compare --help` quote them"
        );
    }

    #[test]
    fn verdicts_serialise_as_the_words_reports_print() {
        for (v, word) in [
            (ComparisonVerdict::WithinNoise, "within noise"),
            (ComparisonVerdict::Investigate, "investigate"),
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(word));
            assert_eq!(
                serde_json::from_value::<ComparisonVerdict>(serde_json::json!(word)).unwrap(),
                v
            );
            assert_eq!(v.to_string(), word);
            assert_eq!(format!("[{v:<13}]"), format!("[{word:<13}]"));
        }
    }
}
