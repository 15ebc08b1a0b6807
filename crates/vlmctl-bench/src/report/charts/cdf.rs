//! The latency CDF per config, p50 and p95 marked; a log axis when the spread asks for one.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Axis, Entry, FONT, GUIDE, NOTE, Swatch, color, placeable, render, span, xy_chart};

/// One config's successful latencies for [`latency_cdf`].
#[derive(Debug, Clone, Copy)]
pub struct CdfSeries<'a> {
    /// Legend text, e.g. `llamacpp A`.
    pub name: &'a str,
    /// Successful samples' wall time, ms, ascending.
    pub sorted_ms: &'a [f64],
}

/// The smallest spread (largest / smallest latency) that gets a CDF a log x axis: below it, a
/// linear axis reads better; above it, one slow outlier would squeeze every other config into
/// a sliver at the left of a linear axis.
pub const CDF_LOG_SPREAD: f64 = 10.0;

/// The CDF's x axis for latencies `values`: log ([`CDF_LOG_SPREAD`]) or linear.
pub(super) fn cdf_axis(values: impl Iterator<Item = f64> + Clone) -> Axis {
    let positive = values.clone().filter_map(placeable).filter(|v| *v > 0.0);
    let (min, max) = positive.fold((f64::MAX, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if max > 0.0 && max / min >= CDF_LOG_SPREAD {
        // A twentieth of a decade of margin on each side.
        let pad = 10f64.powf(0.05);
        Axis::Log(min / pad, max * pad)
    } else {
        // From 0 at the least (a latency below it is drawn at 0), and never inverted.
        let (lo, hi) = span(values, false);
        let lo = lo.max(0.0);
        Axis::Linear(lo, if hi > lo { hi } else { lo + 1.0 })
    }
}

/// Latency CDF per config: x latency (ms), y share of requests at or below it, with each
/// series' nearest-rank p50 (circle) and p95 (triangle) on dashed guides at 50 % and 95 %. A
/// series without samples is left out of the plot and named as such in the legend. When the
/// latencies span a decade or more ([`CDF_LOG_SPREAD`]), the x axis is logarithmic and says so
/// in its title, so that one slow outlier does not squeeze the others into a sliver.
#[must_use]
pub fn latency_cdf(series: &[CdfSeries<'_>]) -> String {
    let axis = cdf_axis(series.iter().flat_map(|s| s.sorted_ms.iter().copied()));
    let (lo, hi) = axis.ends();
    let x_desc = if matches!(axis, Axis::Log(..)) {
        "latency (ms, log scale)"
    } else {
        "latency (ms)"
    };
    let quantiles: Vec<Option<(f64, f64)>> = series
        .iter()
        .map(|s| {
            crate::stats::percentile(s.sorted_ms, 50.0)
                .zip(crate::stats::percentile(s.sorted_ms, 95.0))
        })
        .collect();
    let legend: Vec<Entry> = series
        .iter()
        .zip(&quantiles)
        .enumerate()
        .map(|(i, (s, q))| {
            let text = q.map_or_else(
                || format!("{} (no successful sample)", s.name),
                |(p50, p95)| format!("{} (p50 {p50:.1} ms, p95 {p95:.1} ms)", s.name),
            );
            (text, color(i), Swatch::Line)
        })
        .collect();
    render(420, &legend, |root| {
        let y_fmt = |v: &f64| format!("{:.0}%", v * 100.0);
        let mut chart = xy_chart(
            root,
            axis,
            0.0..1.0,
            (x_desc, "requests at or below (%)"),
            &y_fmt,
            None,
        )?;
        for (q, label) in [(0.5, "p50"), (0.95, "p95")] {
            chart.draw_series(DashedLineSeries::new(
                [(lo, q), (hi, q)],
                4,
                4,
                GUIDE.stroke_width(1),
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                label,
                (lo, q),
                (FONT, NOTE)
                    .into_font()
                    .color(&GUIDE)
                    .pos(Pos::new(HPos::Left, VPos::Bottom)),
            )))?;
        }
        for (i, (s, q)) in series.iter().zip(&quantiles).enumerate() {
            let Some((p50, p95)) = *q else { continue };
            let c = color(i);
            let n = s.sorted_ms.len() as f64;
            // A step: each sample lifts the curve by 1/n at its latency.
            let steps = s
                .sorted_ms
                .iter()
                .enumerate()
                .flat_map(|(k, &x)| [(x, k as f64 / n), (x, (k + 1) as f64 / n)]);
            chart.draw_series(LineSeries::new(steps, c.stroke_width(2)))?;
            chart.draw_series(std::iter::once(Circle::new((p50, 0.5), 5, c.filled())))?;
            chart.draw_series(std::iter::once(TriangleMarker::new(
                (p95, 0.95),
                6,
                c.filled(),
            )))?;
        }
        Ok(())
    })
}
