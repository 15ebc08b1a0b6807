//! Statistics over exact sorted samples. With at most a few thousand samples per config, an
//! exact sorted vector beats a histogram: exact, and easy to check by hand.
//!
//! Percentiles use the **nearest-rank** definition: the p-th percentile of n sorted values is the
//! value at rank `ceil(p/100 * n)` (1-based), clamped to `1..=n`. For n = 19 samples, p50 is the
//! 10th value, p95 the 19th, p99 the 19th.

use serde::{Deserialize, Serialize};

/// Summary of one series (milliseconds, or any unit). Every figure [`summarize`] computes is
/// finite; a figure stored as `null` (earlier vlmctl wrote an overflowed mean so) reads as
/// NaN, for [`crate::run::Results::repair_summaries`] to recompute, instead of making the
/// whole file unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples summarised.
    pub n: usize,
    /// Smallest.
    #[serde(deserialize_with = "nan_if_null")]
    pub min: f64,
    /// Nearest-rank 50th percentile.
    #[serde(deserialize_with = "nan_if_null")]
    pub p50: f64,
    /// Nearest-rank 95th percentile.
    #[serde(deserialize_with = "nan_if_null")]
    pub p95: f64,
    /// Nearest-rank 99th percentile.
    #[serde(deserialize_with = "nan_if_null")]
    pub p99: f64,
    /// Largest.
    #[serde(deserialize_with = "nan_if_null")]
    pub max: f64,
    /// Arithmetic mean.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for one sample.
    #[serde(deserialize_with = "nan_if_null")]
    pub stddev: f64,
}

/// A number, or NaN for `null` (how `serde_json` writes a figure that is not finite).
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Nearest-rank percentile of an ascending slice; `None` when empty.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "rank is in 1..=n by construction"
    )]
    let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as usize;
    Some(sorted[rank - 1])
}

/// Nearest-rank 50th percentile of counts (token counts), in any order; `None` when empty.
/// Integer on purpose: "759 prompt tokens", never "759.0".
#[must_use]
pub fn p50_count(values: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut v: Vec<u64> = values.into_iter().collect();
    v.sort_unstable();
    // Rank ceil(n / 2), 1-based: the same rank `percentile(.., 50.0)` picks.
    let rank = v.len().div_ceil(2);
    v.get(rank.checked_sub(1)?).copied()
}

/// Summarises `values` (any order); `None` when empty.
#[must_use]
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let (mean, stddev) = mean_stddev(&v);
    Some(Summary {
        n,
        min: v[0],
        p50: percentile(&v, 50.0)?,
        p95: percentile(&v, 95.0)?,
        p99: percentile(&v, 99.0)?,
        max: v[n - 1],
        mean,
        stddev,
    })
}

/// Mean and sample standard deviation of finite `v` (non-empty), both finite whatever the
/// values: computed on `v / scale` (`scale` the largest magnitude), so neither the sum nor the
/// squares can overflow (a plain sum of two values near `f64::MAX` is infinite, and `serde_json`
/// writes infinity as `null`, which no reader takes back). The mean lies within `min..=max`.
/// A spread wider than an f64 holds (values near `-f64::MAX` and `f64::MAX` together) gives
/// `f64::MAX`, the largest finite standard deviation.
fn mean_stddev(v: &[f64]) -> (f64, f64) {
    let scale = v.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    match v {
        [] => return (0.0, 0.0),
        [one] => return (*one, 0.0),
        _ if scale == 0.0 => return (0.0, 0.0),
        _ => {}
    }
    let n = v.len() as f64;
    // Each term is in -1..=1, so the sum is at most n in magnitude.
    let scaled_mean = v.iter().map(|x| x / scale).sum::<f64>() / n;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Rounding may step a hair outside the values; a mean never does.
    let mean = (scaled_mean * scale).clamp(lo, hi);
    // Each deviation is in -2..=2: x / scale and the scaled mean are both in -1..=1.
    let var = v
        .iter()
        .map(|x| (x / scale - scaled_mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    let stddev = var.sqrt() * scale;
    (mean, if stddev.is_finite() { stddev } else { f64::MAX })
}

/// The runbook's 36 Hz target bands for a p50 in ms.
#[must_use]
pub fn target_band(p50_ms: f64) -> &'static str {
    if p50_ms < 27.8 {
        "< 27.8 ms (36 Hz target hit)"
    } else if p50_ms < 50.0 {
        "27.8-50 ms (20-36 Hz)"
    } else if p50_ms < 100.0 {
        "50-100 ms (10-20 Hz)"
    } else {
        "> 100 ms (< 10 Hz)"
    }
}

/// A small deterministic PRNG (xorshift64*), so bootstrap intervals are reproducible.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (seed 0 is replaced).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }
    /// A generator for a seed a person chose (`load.seed`): the seed goes through splitmix64
    /// first, because xorshift's first outputs from small, similar seeds (1, 2, 3) are alike.
    /// This generator rather than a crate's: a recorded seed must give the same schedule in
    /// every later vlmctl, which `rand` and `fastrand` do not promise across their versions.
    #[must_use]
    pub fn seeded(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self::new(z ^ (z >> 31))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        let x = self.next_u64();
        #[expect(clippy::cast_possible_truncation, reason = "modulo n fits usize")]
        let r = (x % n as u64) as usize;
        r
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        // 53 bits: exact in an f64.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 95 % bootstrap confidence interval of `p50(b) - p50(a)` (percentile method, `iters`
/// resamples, fixed seed). `None` if either side is empty.
#[must_use]
pub fn bootstrap_p50_diff(a: &[f64], b: &[f64], iters: usize, seed: u64) -> Option<(f64, f64)> {
    bootstrap_p50(a, b, iters, seed, |pa, pb| pb - pa)
}

/// 95 % bootstrap confidence interval of the p50 change `(p50(b) - p50(a)) / p50(a)` in
/// percent: the statistic the compare verdict judges, so the interval is in the verdict's units.
/// Same resamples as [`bootstrap_p50_diff`] for the same seed.
#[must_use]
pub fn bootstrap_p50_change_pct(
    a: &[f64],
    b: &[f64],
    iters: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    bootstrap_p50(a, b, iters, seed, |pa, pb| (pb - pa) / pa * 100.0)
}

fn bootstrap_p50(
    a: &[f64],
    b: &[f64],
    iters: usize,
    seed: u64,
    stat: impl Fn(f64, f64) -> f64,
) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut rng = Rng::new(seed);
    let resample = |xs: &[f64], rng: &mut Rng| {
        let mut r: Vec<f64> = (0..xs.len()).map(|_| xs[rng.below(xs.len())]).collect();
        r.sort_by(f64::total_cmp);
        percentile(&r, 50.0).unwrap_or(f64::NAN)
    };
    let mut diffs: Vec<f64> = (0..iters)
        .map(|_| {
            let pb = resample(b, &mut rng);
            stat(resample(a, &mut rng), pb)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    Some((percentile(&diffs, 2.5)?, percentile(&diffs, 97.5)?))
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "nearest rank returns sample values exactly"
)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_by_hand() {
        let v: Vec<f64> = (1..=19).map(f64::from).collect();
        let s = summarize(&v).unwrap();
        assert_eq!(
            (s.p50, s.p95, s.p99, s.min, s.max),
            (10.0, 19.0, 19.0, 1.0, 19.0)
        );
        assert!((s.mean - 10.0).abs() < 1e-9);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&v).unwrap();
        assert_eq!((s.p50, s.p95, s.p99), (50.0, 95.0, 99.0));
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[4.0]).unwrap().stddev, 0.0);
        assert!(
            (summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
                .unwrap()
                .stddev
                - 2.138)
                .abs()
                < 1e-3
        );
    }

    #[test]
    fn p50_count_is_the_nearest_rank_p50() {
        assert_eq!(p50_count([]), None);
        assert_eq!(p50_count([7]), Some(7));
        // Even n: rank n/2, the lower middle (not an average of the two).
        assert_eq!(p50_count([40, 10, 30, 20]), Some(20));
        assert_eq!(p50_count([759, 1, 759]), Some(759));
        for n in 1..=25u32 {
            let v: Vec<u64> = (1..=u64::from(n)).rev().collect();
            let f: Vec<f64> = (1..=n).map(f64::from).collect();
            assert_eq!(
                p50_count(v).map(|x| x as f64),
                percentile(&f, 50.0),
                "n = {n}"
            );
        }
    }

    #[test]
    fn bands_match_the_runbook() {
        assert!(target_band(18.4).starts_with("< 27.8"));
        assert!(target_band(47.9).starts_with("27.8-50"));
        assert!(target_band(60.0).starts_with("50-100"));
        assert!(target_band(156.0).starts_with("> 100"));
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_shift() {
        let a: Vec<f64> = (0..40).map(|i| 20.0 + f64::from(i % 5)).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 10.0).collect();
        let ci = bootstrap_p50_diff(&a, &b, 2000, 7).unwrap();
        assert_eq!(ci, bootstrap_p50_diff(&a, &b, 2000, 7).unwrap());
        assert!(ci.0 <= 10.0 && 10.0 <= ci.1, "{ci:?}");
        let same = bootstrap_p50_diff(&a, &a, 2000, 7).unwrap();
        assert!(same.0 <= 0.0 && 0.0 <= same.1, "{same:?}");
    }
}
