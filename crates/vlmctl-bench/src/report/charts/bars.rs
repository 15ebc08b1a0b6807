//! p50 per config as bars against the 36 Hz line, a baseline run's p50 beside each.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    BASELINE, Drawn, FONT, NOTE, Swatch, TARGET_COLOR, TARGET_MS, TICK, TITLE, color, placeable,
    printable, render, tick,
};

/// A vertical axis of `n` rows, `0.0..n`, with one tick at the middle of each row (where its
/// label goes) rather than at round numbers.
struct Rows(usize);

impl Ranged for Rows {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = value / self.0 as f64;
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a pixel position within the chart"
        )]
        let px = (f64::from(limit.1 - limit.0) * share).round() as i32;
        limit.0 + px
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.0 as f64
    }
}

/// One config's bar for [`p50_bars`].
#[derive(Debug, Clone, Copy)]
pub struct Bar<'a> {
    /// Axis label, e.g. `llamacpp A full nav prompt + image`.
    pub label: &'a str,
    /// This run's p50, ms; `None` without a successful sample.
    pub p50_ms: Option<f64>,
    /// The baseline run's p50 for the same target and config, when there is one.
    pub baseline_ms: Option<f64>,
}

/// p50 per config as horizontal bars (value at the end of each), the 27.8 ms (36 Hz) target
/// as a labelled dashed line, and, when `baseline` names a run, its p50 as a grey bar under
/// each of this run's.
#[must_use]
pub fn p50_bars(bars: &[Bar<'_>], baseline: Option<&str>) -> String {
    let n = bars.len().max(1);
    // Values beyond AXIS_LIMIT are drawn at it (their labels say what they are).
    let top = bars
        .iter()
        .flat_map(|b| [b.p50_ms, b.baseline_ms])
        .flatten()
        .filter_map(placeable)
        .fold(TARGET_MS, f64::max)
        * 1.15;
    // Room for the longest label at ~7.5 px a character (13 px sans-serif), within reason.
    let longest = bars
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(0);
    let label_area = u32::try_from(longest * 15 / 2 + 16)
        .unwrap_or(u32::MAX)
        .clamp(60, 320);
    let row = if baseline.is_some() { 40 } else { 30 };
    let height = u32::try_from(n * row)
        .unwrap_or(u32::MAX)
        .saturating_add(110);
    let mut legend = vec![("this run".to_owned(), color(0), Swatch::Block)];
    if let Some(name) = baseline {
        legend.push((format!("baseline: {name}"), BASELINE, Swatch::Block));
    }
    legend.push((
        "27.8 ms target (36 Hz)".to_owned(),
        TARGET_COLOR,
        Swatch::Dashed,
    ));
    render(height, &legend, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .margin_right(40)
            .x_label_area_size(46)
            .y_label_area_size(label_area)
            .build_cartesian_2d(0.0..top, Rows(n))?;
        let y_fmt = |v: &f64| {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "key points are i + 0.5 for i in 0..n"
            )]
            let i = v.floor().max(0.0) as usize;
            n.checked_sub(i + 1)
                .and_then(|k| bars.get(k))
                .map_or_else(String::new, |b| printable(b.label))
        };
        let x_fmt = |v: &f64| tick(*v, top);
        chart
            .configure_mesh()
            .x_desc("p50 latency (ms)")
            .y_label_formatter(&y_fmt)
            .x_label_formatter(&x_fmt)
            .disable_y_mesh()
            .label_style((FONT, TICK))
            .axis_desc_style((FONT, TITLE))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let (this, base) = if baseline.is_some() {
            ((0.52, 0.85), (0.15, 0.48))
        } else {
            ((0.2, 0.8), (0.0, 0.0))
        };
        let layer = |v: fn(&Bar<'_>) -> Option<f64>| bars.iter().map(v).collect::<Vec<_>>();
        bar_layer(
            &mut chart,
            &layer(|b| b.p50_ms),
            this,
            color(0),
            Some("no successful sample"),
        )?;
        if baseline.is_some() {
            bar_layer(&mut chart, &layer(|b| b.baseline_ms), base, BASELINE, None)?;
        }
        chart.draw_series(DashedLineSeries::new(
            [(TARGET_MS, 0.0), (TARGET_MS, n as f64)],
            6,
            4,
            TARGET_COLOR.stroke_width(2),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            "27.8 ms (36 Hz)",
            (TARGET_MS, n as f64),
            (FONT, NOTE)
                .into_font()
                .color(&TARGET_COLOR)
                .pos(Pos::new(HPos::Center, VPos::Bottom)),
        )))?;
        Ok(())
    })
}

type BarChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Rows>>;

/// One layer of [`p50_bars`]: a bar per row (row `i` of `values` at the top is `values[0]`)
/// in the `band` (a share of the row's height), its value at its end, `missing` where a value
/// is `None`.
fn bar_layer(
    chart: &mut BarChart<'_, '_>,
    values: &[Option<f64>],
    band: (f64, f64),
    fill: RGBColor,
    missing: Option<&str>,
) -> Drawn {
    let n = values.len();
    let top = chart.x_range().end;
    for (i, v) in values.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let placed = v.and_then(placeable).map(|v| v.clamp(0.0, top));
        if let Some(v) = placed {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.0, y + band.0), (v, y + band.1)],
                fill.filled(),
            )))?;
        }
        let Some(text) = v
            .map(|v| format!("{v:.1} ms"))
            .or(missing.map(str::to_owned))
        else {
            continue;
        };
        chart.draw_series(std::iter::once(Text::new(
            text,
            (
                // The label of a bar as long as the axis ends inside it.
                placed.unwrap_or(0.0).min(top * 0.8) + top * 0.01,
                y + f64::midpoint(band.0, band.1),
            ),
            (FONT, NOTE)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        )))?;
    }
    Ok(())
}
