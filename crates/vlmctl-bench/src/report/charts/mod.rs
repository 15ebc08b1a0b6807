//! Charts for the HTML reports, drawn by `plotters` into inline SVG strings (plain data in,
//! one `<svg>` out; nothing fetched, no fonts: the browser draws the `<text>` elements).
//!
//! - [`latency_cdf`]: latency CDF per config ([`CdfSeries`]) with p50/p95 markers.
//! - [`p50_bars`]: p50 per config ([`Bar`]) against the 27.8 ms (36 Hz) line, with a baseline
//!   run's p50 beside each bar.
//! - [`latency_vs_rate`]: p50 and p95 against the offered rate (a rate sweep), with the SLO.
//! - [`p50_vs_memory`]: one point per server-settings variant (`vlmctl tune`).
//! - [`trend`]: figures over time (the service's history), with events (relaunches) marked.
//!
//! Every chart has axes with tick labels and axis titles that name the unit.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The nav loop's target: 36 Hz, one answer every 27.8 ms.
pub const TARGET_MS: f64 = 27.8;

const WIDTH: u32 = 860;
const FONT: &str = "sans-serif";
// Point sizes as plotters takes them: its SVG backend writes size / 1.24 px.
const TICK: f64 = 16.0;
const TITLE: f64 = 17.0;
const NOTE: f64 = 15.0;
/// Okabe and Ito's colour-blind-safe palette ("Color Universal Design"), yellow last (it is
/// the hardest to see on white): the six configs of a plan get six colours that people with any
/// common colour-vision deficiency can tell apart.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xb2),
    RGBColor(0xe6, 0x9f, 0x00),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xcc, 0x79, 0xa7),
    RGBColor(0x56, 0xb4, 0xe9),
    RGBColor(0xd5, 0x5e, 0x00),
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0xf0, 0xe4, 0x42),
];
const TARGET_COLOR: RGBColor = RGBColor(0xc0, 0x10, 0x10);
const GUIDE: RGBColor = RGBColor(0x99, 0x99, 0x99);
const BASELINE: RGBColor = RGBColor(0xb0, 0xb0, 0xb0);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Text from outside (names, labels) as a chart writes it: control characters, which XML does
/// not allow and a terminal would obey, shown as escapes ([`crate::text::printable`]).
fn printable(s: &str) -> String {
    crate::text::printable(s).into_owned()
}
type XyChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Axis, RangedCoordf64>>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    Line,
    Dashed,
    Block,
    Dot,
    Ring,
}

/// One legend entry: text, colour, swatch.
type Entry = (String, RGBColor, Swatch);

const LEGEND_ROW: u32 = 22;

/// An x/y plot over `x` and `y` with the report's margins, axis titles (`desc`: x, y) and tick
/// labels (x by the axis's own format unless `x_fmt`, y by `y_fmt`): what the CDF, the rate,
/// the memory and the trend charts share.
fn xy_chart<'a, 'b>(
    root: &'a Area<'b>,
    x: Axis,
    y: std::ops::Range<f64>,
    (x_desc, y_desc): (&str, &str),
    y_fmt: &dyn Fn(&f64) -> String,
    x_fmt: Option<&dyn Fn(&f64) -> String>,
) -> Result<XyChart<'a, 'b>, DrawingAreaErrorKind<std::io::Error>> {
    let own = x;
    let mut chart = ChartBuilder::on(root)
        .margin(14)
        .margin_right(30)
        .x_label_area_size(46)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)?;
    let numeric = |v: &f64| own.label(*v);
    let x_fmt = x_fmt.unwrap_or(&numeric);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(6)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(y_fmt)
        .label_style((FONT, TICK))
        .axis_desc_style((FONT, TITLE))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    Ok(chart)
}

/// Draws on a `WIDTH` x (`height` + the legend) SVG: the plot on top, the legend in rows under
/// it (never over the data, however many series). A failure (none is expected from a string
/// backend) is reported in place of the chart rather than failing the whole report.
fn render(height: u32, legend: &[Entry], draw: impl FnOnce(&Area<'_>) -> Drawn) -> String {
    let columns = if legend.len() > 4 { 2 } else { 1 };
    let rows = u32::try_from(legend.len().div_ceil(columns)).unwrap_or(u32::MAX);
    let legend_height = if legend.is_empty() {
        0
    } else {
        rows.saturating_mul(LEGEND_ROW).saturating_add(12)
    };
    let mut buf = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, height.saturating_add(legend_height)))
            .into_drawing_area();
        let (plot, below) = root.split_vertically(height);
        root.fill(&WHITE)
            .and_then(|()| draw(&plot))
            .and_then(|()| draw_legend(&below, legend, columns))
            .and_then(|()| root.present())
    };
    match drawn {
        Ok(()) => buf,
        Err(e) => format!("<p class=\"chart-error\">chart not drawn: {e}</p>"),
    }
}

fn draw_legend(area: &Area<'_>, legend: &[Entry], columns: usize) -> Drawn {
    let left = 70;
    let column_width = (i32::try_from(WIDTH).unwrap_or(i32::MAX) - left) / 2;
    let row = i32::try_from(LEGEND_ROW).unwrap_or(i32::MAX);
    let rows = legend.len().div_ceil(columns);
    for (i, (text, c, swatch)) in legend.iter().enumerate() {
        let (col, r) = (i / rows, i % rows);
        let x = left + i32::try_from(col).unwrap_or(0) * column_width;
        let y = 10 + i32::try_from(r).unwrap_or(0) * row;
        match swatch {
            Swatch::Line => {
                area.draw(&PathElement::new([(x, y), (x + 22, y)], c.stroke_width(2)))?;
            }
            Swatch::Dashed => {
                for d in [0, 9, 18] {
                    area.draw(&PathElement::new(
                        [(x + d, y), (x + d + 5, y)],
                        c.stroke_width(2),
                    ))?;
                }
            }
            Swatch::Block => {
                area.draw(&Rectangle::new([(x, y - 6), (x + 22, y + 6)], c.filled()))?;
            }
            Swatch::Dot => area.draw(&Circle::new((x + 11, y), 5, c.filled()))?,
            Swatch::Ring => area.draw(&Circle::new((x + 11, y), 7, c.stroke_width(3)))?,
        }
        area.draw(&Text::new(
            printable(text),
            (x + 30, y),
            (FONT, TICK)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// The largest magnitude a chart places: values beyond it are drawn at it (clamped), so that
/// an axis and its padding stay finite (plotters' tick search never ends on an infinite range,
/// and `1.7e308 + 10 %` is infinite) with room to spare.
pub const AXIS_LIMIT: f64 = 1e300;

/// `v` as a chart places it: clamped to [`AXIS_LIMIT`]; `None` when it is not a number.
fn placeable(v: f64) -> Option<f64> {
    (!v.is_nan()).then(|| v.clamp(-AXIS_LIMIT, AXIS_LIMIT))
}

/// `(lo, hi)` around `values` with a margin: always finite and wider than rounding (a lone
/// value, equal values or none get a range around them; a value that is not a number is left
/// out, one beyond [`AXIS_LIMIT`] is placed at it), and from 0 when `from_zero`.
fn span(values: impl IntoIterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .into_iter()
        .filter_map(placeable)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    // At least a millionth of the values' size wide: an axis narrower than that has no room
    // for distinct ticks (and finding them would take for ever).
    let least = hi.abs().max(lo.abs()).max(1.0) * 1e-6;
    let pad = if hi - lo > least {
        (hi - lo) * 0.06
    } else {
        hi.abs().max(1.0) * 0.1
    };
    let lo = if from_zero && lo >= 0.0 {
        0.0
    } else {
        lo - pad
    };
    (lo, hi + pad)
}

/// An x axis: linear (round ticks), logarithmic (ticks at 1, 2 and 5 of each decade) or time
/// (seconds since the epoch; ticks at round minutes, hours or days). Its ends are finite and
/// apart ([`span`], [`time_span`]); a value beyond an end is drawn at that end, so that nothing
/// lands outside the plot.
#[derive(Debug, Clone, Copy)]
enum Axis {
    Linear(f64, f64),
    Log(f64, f64),
    Time(f64, f64),
}

/// Tick steps of a time axis, seconds: whole minutes at least (the labels show minutes).
const TIME_STEPS: [f64; 16] = [
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    10800.0,
    21600.0,
    43200.0,
    86400.0,
    172_800.0,
    604_800.0,
    2_592_000.0,
    31_536_000.0,
];

impl Axis {
    fn ends(self) -> (f64, f64) {
        match self {
            Self::Linear(lo, hi) | Self::Log(lo, hi) | Self::Time(lo, hi) => (lo, hi),
        }
    }

    /// A tick's label: as few decimals as the axis needs.
    fn label(self, v: f64) -> String {
        match self {
            Self::Log(..) if v > 0.0 && v < 1.0 => {
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "decimals of a tick below 1: a small positive count"
                )]
                let d = (-v.log10().floor()).clamp(0.0, 20.0) as usize;
                format!("{v:.d$}")
            }
            Self::Log(..) => format!("{v:.0}"),
            Self::Linear(lo, hi) | Self::Time(lo, hi) => tick(v, hi - lo),
        }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (lo, hi) = self.ends();
        let share = match self {
            Self::Log(..) => {
                let v = value.clamp(lo, hi);
                (v.log10() - lo.log10()) / (hi.log10() - lo.log10())
            }
            _ => (value.clamp(lo, hi) - lo) / (hi - lo),
        };
        let share = if share.is_finite() { share } else { 0.0 };
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a pixel position within the chart"
        )]
        let px = (f64::from(limit.1 - limit.0) * share).round() as i32;
        limit.0 + px
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let max = hint.max_num_points().max(2);
        match *self {
            Self::Linear(lo, hi) => RangedCoordf64::from(lo..hi).key_points(hint),
            Self::Log(lo, hi) => log_ticks(lo, hi, max),
            Self::Time(lo, hi) => {
                let step = TIME_STEPS
                    .iter()
                    .copied()
                    .find(|s| (hi - lo) / s <= max as f64)
                    .unwrap_or_else(|| (hi - lo) / max as f64);
                let mut v = (lo / step).ceil() * step;
                let mut ticks = Vec::new();
                while v <= hi && ticks.len() <= max {
                    ticks.push(v);
                    v += step;
                }
                ticks
            }
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        let (lo, hi) = self.ends();
        lo..hi
    }
}

/// Ticks of a log axis from `lo` to `hi` (both above 0): 1, 2 and 5 of each decade, or only
/// the decades (then every other one, and so on) when those would be more than `max`.
fn log_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "decades of a finite positive range: within -330..=310"
    )]
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |v: &f64| (lo..=hi).contains(v);
    for mantissas in [&[1.0, 2.0, 5.0][..], &[1.0][..]] {
        let ticks: Vec<f64> = (first..=last)
            .flat_map(|d| mantissas.iter().map(move |m| m * 10f64.powi(d)))
            .filter(within)
            .collect();
        if ticks.len() <= max {
            return ticks;
        }
    }
    let every = usize::try_from(last - first)
        .unwrap_or(1)
        .div_ceil(max)
        .max(1);
    (first..=last)
        .step_by(every)
        .map(|d| 10f64.powi(d))
        .filter(within)
        .collect()
}

/// A tick label: as few decimals as the axis's step needs.
fn tick(v: f64, range: f64) -> String {
    if range >= 20.0 {
        format!("{v:.0}")
    } else if range >= 2.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

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
fn cdf_axis(values: impl Iterator<Item = f64> + Clone) -> Axis {
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

/// Latency against offered rate (a rate sweep): `p50` and `p95` as `(offered Hz, ms)` points,
/// in any order, and the SLO's latency bound as a labelled dashed line when given.
#[must_use]
pub fn latency_vs_rate(p50: &[(f64, f64)], p95: &[(f64, f64)], slo_ms: Option<f64>) -> String {
    let all = || p50.iter().chain(p95);
    let (x_lo, x_hi) = span(all().map(|p| p.0), true);
    let (_, y_hi) = span(all().map(|p| p.1).chain(slo_ms), true);
    let sorted = |s: &[(f64, f64)]| {
        let mut v = s.to_vec();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let mut legend = vec![
        ("p50 latency".to_owned(), color(0), Swatch::Line),
        ("p95 latency".to_owned(), color(1), Swatch::Line),
    ];
    if let Some(b) = slo_ms {
        legend.push((format!("SLO bound: {b} ms"), TARGET_COLOR, Swatch::Dashed));
    }
    render(420, &legend, |root| {
        let y_fmt = |v: &f64| tick(*v, y_hi);
        let mut chart = xy_chart(
            root,
            Axis::Linear(x_lo, x_hi),
            0.0..y_hi,
            ("offered rate (Hz)", "latency (ms)"),
            &y_fmt,
            None,
        )?;
        for (i, points) in [sorted(p50), sorted(p95)].into_iter().enumerate() {
            let c = color(i);
            let points: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|&(x, y)| Some((placeable(x)?, placeable(y)?.clamp(0.0, y_hi))))
                .collect();
            chart.draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        }
        if let Some(b) = slo_ms {
            chart.draw_series(DashedLineSeries::new(
                [(x_lo, b), (x_hi, b)],
                6,
                4,
                TARGET_COLOR.stroke_width(2),
            ))?;
        }
        Ok(())
    })
}

/// p50 against the server's memory, one labelled point per variant (`vlmctl tune`): `points`
/// are `(variant, memory MiB, p50 ms)`; `chosen` (an index into them) is drawn larger and
/// named in the legend. The 27.8 ms (36 Hz) target is a dashed line.
#[must_use]
pub fn p50_vs_memory(points: &[(&str, f64, f64)], chosen: Option<usize>) -> String {
    let (x_lo, x_hi) = span(points.iter().map(|p| p.1), true);
    let (_, y_hi) = span(points.iter().map(|p| p.2).chain([TARGET_MS]), true);
    // Each point where it is drawn: inside the plot; one that is not a number is left out.
    let placed: Vec<(&str, f64, f64)> = points
        .iter()
        .filter_map(|&(name, x, y)| {
            Some((
                name,
                placeable(x)?.clamp(x_lo, x_hi),
                placeable(y)?.clamp(0.0, y_hi),
            ))
        })
        .collect();
    let chosen_at = chosen
        .and_then(|i| points.get(i))
        .and_then(|&(name, ..)| placed.iter().find(|p| p.0 == name).copied());
    let mut legend = vec![("variant (labelled)".to_owned(), color(0), Swatch::Dot)];
    if let Some(&(name, _, _)) = chosen.and_then(|i| points.get(i)) {
        legend.push((format!("chosen: {name}"), color(2), Swatch::Ring));
    }
    legend.push((
        "27.8 ms target (36 Hz)".to_owned(),
        TARGET_COLOR,
        Swatch::Dashed,
    ));
    render(420, &legend, |root| {
        let y_fmt = |v: &f64| tick(*v, y_hi);
        let mut chart = xy_chart(
            root,
            Axis::Linear(x_lo, x_hi),
            0.0..y_hi,
            ("server memory (MiB)", "p50 latency (ms)"),
            &y_fmt,
            None,
        )?;
        let blue = color(0);
        chart.draw_series(
            placed
                .iter()
                .map(|&(_, x, y)| Circle::new((x, y), 5, blue.filled())),
        )?;
        for &(name, x, y) in &placed {
            // The name beside its point, a few pixels off it.
            chart.draw_series(std::iter::once(
                EmptyElement::at((x, y))
                    + Text::new(
                        printable(name),
                        (10, -4),
                        (FONT, NOTE)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Left, VPos::Bottom)),
                    ),
            ))?;
        }
        if let Some((_, x, y)) = chosen_at {
            let green = color(2);
            chart.draw_series(std::iter::once(Circle::new(
                (x, y),
                9,
                green.stroke_width(3),
            )))?;
        }
        chart.draw_series(DashedLineSeries::new(
            [(x_lo, TARGET_MS), (x_hi, TARGET_MS)],
            6,
            4,
            TARGET_COLOR.stroke_width(2),
        ))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of every `<text>` element in `svg`.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                Some(
                    t.split_once('>')?
                        .1
                        .split_once("</text>")?
                        .0
                        .trim()
                        .to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn every_chart_is_one_svg_with_axis_titles_and_ticks() {
        let sorted = [18.0, 19.0, 21.0, 22.0, 30.0];
        let cases = [
            (
                latency_cdf(&[CdfSeries {
                    name: "cpu A",
                    sorted_ms: &sorted,
                }]),
                ["latency (ms)", "requests at or below (%)"],
            ),
            (
                p50_bars(
                    &[Bar {
                        label: "cpu A",
                        p50_ms: Some(21.0),
                        baseline_ms: Some(19.0),
                    }],
                    Some("before"),
                ),
                ["p50 latency (ms)", "27.8 ms (36 Hz)"],
            ),
            (
                latency_vs_rate(
                    &[(10.0, 20.0), (20.0, 24.0)],
                    &[(10.0, 25.0), (20.0, 40.0)],
                    Some(30.0),
                ),
                ["offered rate (Hz)", "latency (ms)"],
            ),
            (
                p50_vs_memory(&[("fa on", 900.0, 20.0), ("fa off", 800.0, 25.0)], Some(0)),
                ["server memory (MiB)", "p50 latency (ms)"],
            ),
        ];
        // For a look in a browser (all four, as the sweep and tune will show them).
        let page: String = cases.iter().map(|(svg, _)| svg.as_str()).collect();
        std::fs::write(
            std::env::temp_dir().join("vlmctl-charts-test.html"),
            format!("<!doctype html><meta charset=utf-8><body>{page}"),
        )
        .unwrap();
        for (svg, titles) in cases {
            assert!(svg.starts_with("<svg"), "{svg}");
            assert_eq!(svg.matches("<svg").count(), 1);
            let texts = texts(&svg);
            for t in titles {
                assert!(texts.iter().any(|x| x == t), "{t:?} not in {texts:?}");
            }
            // Numeric tick labels on both axes: at least four numbers.
            let numbers = texts
                .iter()
                .filter(|t| t.trim_end_matches('%').parse::<f64>().is_ok())
                .count();
            assert!(numbers >= 4, "{texts:?}");
        }
    }

    #[test]
    fn the_cdf_names_each_series_p50_and_p95_and_survives_an_empty_one() {
        let a = [10.0, 11.0, 12.0, 13.0, 40.0];
        let svg = latency_cdf(&[
            CdfSeries {
                name: "t A",
                sorted_ms: &a,
            },
            CdfSeries {
                name: "t B",
                sorted_ms: &[],
            },
        ]);
        let texts = texts(&svg);
        assert!(
            texts.contains(&"t A (p50 12.0 ms, p95 40.0 ms)".to_owned()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"t B (no successful sample)".to_owned()),
            "{texts:?}"
        );
        // Nothing at all still draws axes.
        assert!(texts_of_empty_have_axes());
    }

    fn texts_of_empty_have_axes() -> bool {
        let t = texts(&latency_cdf(&[]));
        t.contains(&"latency (ms)".to_owned()) && texts(&p50_bars(&[], None)).len() > 2
    }

    #[test]
    fn labels_are_escaped() {
        let svg = p50_bars(
            &[Bar {
                label: "<b>&",
                p50_ms: Some(1.0),
                baseline_ms: None,
            }],
            None,
        );
        assert!(
            svg.contains("&lt;b&gt;&amp;") && !svg.contains("<b>"),
            "{svg}"
        );
    }

    /// Runs `draw` on a thread of its own and waits for it for at most 20 s: a chart whose
    /// axis search never ends fails the test instead of hanging it (the thread is left
    /// behind; the test process ends with the test).
    fn within_deadline(name: &str, draw: impl FnOnce() -> String + Send + 'static) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(draw());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{name}: the chart did not return within 20 s"))
    }

    /// Every value set the adversarial pass and the reviews tried, and the degenerate ones.
    fn extreme_sets() -> Vec<(&'static str, Vec<f64>)> {
        vec![
            ("1.7e308", vec![1.7e308, 1.7e308, 1.7e308]),
            ("f64::MAX", vec![f64::MAX]),
            ("-1e308..1e308", vec![-1e308, 1e308]),
            ("-MAX..MAX", vec![-f64::MAX, 0.0, f64::MAX]),
            ("NaN", vec![f64::NAN, 5.0]),
            ("only NaN", vec![f64::NAN]),
            ("inf", vec![f64::INFINITY, f64::NEG_INFINITY, 3.0]),
            ("single", vec![42.0]),
            ("all equal", vec![7.0, 7.0, 7.0, 7.0]),
            ("all zero", vec![0.0, 0.0]),
            ("one ulp apart", vec![1.0, 1.0 + f64::EPSILON]),
            (
                "huge, one ulp apart",
                vec![1e300, 1e300 * (1.0 + f64::EPSILON)],
            ),
            ("tiny", vec![5e-324, 1e-300]),
            ("negative", vec![-5.0, -1.0]),
            ("empty", vec![]),
        ]
    }

    #[test]
    fn every_chart_returns_for_values_it_cannot_place() {
        for (name, values) in extreme_sets() {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let v = values.clone();
            let svg = within_deadline(name, move || {
                latency_cdf(&[
                    CdfSeries {
                        name: "x",
                        sorted_ms: &sorted,
                    },
                    CdfSeries {
                        name: "y",
                        sorted_ms: &[20.0, 30.0],
                    },
                ])
            });
            assert!(svg.starts_with("<svg"), "{name}: {svg}");
            let svg = within_deadline(name, move || {
                let bars: Vec<Bar<'_>> = v
                    .iter()
                    .map(|&x| Bar {
                        label: "A",
                        p50_ms: Some(x),
                        baseline_ms: Some(-x),
                    })
                    .collect();
                p50_bars(&bars, Some("base"))
            });
            assert!(svg.starts_with("<svg"), "{name}: {svg}");
            let v = values.clone();
            let svg = within_deadline(name, move || {
                let pts: Vec<(f64, f64)> = v.iter().map(|&x| (x, x)).collect();
                latency_vs_rate(&pts, &pts, Some(f64::MAX))
            });
            assert!(svg.starts_with("<svg"), "{name}: {svg}");
            let v = values.clone();
            let svg = within_deadline(name, move || {
                let pts: Vec<(&str, f64, f64)> = v.iter().map(|&x| ("v", x, x)).collect();
                p50_vs_memory(&pts, Some(0))
            });
            assert!(svg.starts_with("<svg"), "{name}: {svg}");
            let v = values.clone();
            let svg = within_deadline(name, move || {
                // As values and as times: a run imported with a start time of 1e300 s.
                let points: Vec<TrendPoint> =
                    v.iter().map(|&x| TrendPoint { x, y: x, run: 1 }).collect();
                let times: Vec<TrendPoint> = v
                    .iter()
                    .map(|&x| TrendPoint {
                        x: 1.8e9,
                        y: x,
                        run: 2,
                    })
                    .collect();
                let markers: Vec<Marker> = v
                    .iter()
                    .map(|&x| Marker {
                        x,
                        label: "relaunch".into(),
                    })
                    .collect();
                let series = |points| TrendSeries {
                    label: "A p50".into(),
                    points,
                    color: 0,
                    dashed: false,
                };
                trend(
                    &[series(points), series(times)],
                    &markers,
                    "latency (ms)",
                    &|x| format!("{x}"),
                )
            });
            assert!(svg.starts_with("<svg"), "{name}: {svg}");
        }
    }

    /// The new-user review's trend: three jobs within a minute, and points three minutes apart.
    #[test]
    fn a_trend_fits_its_data_and_its_event_labels_do_not_collide() {
        let t0 = 1_796_643_378.0;
        let (lo, hi) = time_span([t0, t0 + 180.0]);
        assert!(
            hi - lo <= 300.0 && lo <= t0 && hi >= t0 + 180.0,
            "{lo}..{hi}"
        );
        let ticks = Axis::Time(lo, hi).key_points(6);
        assert!(ticks.len() >= 3, "{ticks:?}");
        assert!(
            ticks
                .iter()
                .all(|t| t % 60.0 == 0.0 && (lo..=hi).contains(t)),
            "{ticks:?}"
        );
        // A day of runs: hour ticks.
        let (lo, hi) = time_span([t0, t0 + 86_400.0]);
        let ticks = Axis::Time(lo, hi).key_points(6);
        assert!(
            ticks.iter().all(|t| t % 3600.0 == 0.0) && ticks.len() >= 3,
            "{ticks:?}"
        );

        // Three labels at (nearly) one place: three rows; one far off: back on the first.
        assert_eq!(
            marker_rows([(100, 9), (102, 8), (101, 9), (600, 9)]),
            [0, 2, 1, 0]
        );

        let markers: Vec<Marker> = [0.0, 5.0, 12.0]
            .iter()
            .zip(["provision", "relaunch", "provision"])
            .map(|(dx, label)| Marker {
                x: t0 - 60.0 + dx,
                label: label.into(),
            })
            .collect();
        let points = |y: f64| {
            vec![
                TrendPoint { x: t0, y, run: 1 },
                TrendPoint {
                    x: t0 + 180.0,
                    y: y + 3.0,
                    run: 2,
                },
            ]
        };
        let series = [
            TrendSeries {
                label: "cpu p50".into(),
                points: points(20.0),
                color: 0,
                dashed: false,
            },
            TrendSeries {
                label: "cpu p95".into(),
                points: points(30.0),
                color: 0,
                dashed: true,
            },
        ];
        #[expect(clippy::cast_possible_truncation, reason = "test times")]
        let hh_mm = |x: f64| {
            let m = (x / 60.0).floor() as i64;
            format!("{:02}:{:02}", (m / 60) % 24, m % 60)
        };
        let svg = trend(&series, &markers, "latency (ms)", &hh_mm);
        std::fs::write(
            std::env::temp_dir().join("vlmctl-trend-test.html"),
            format!("<!doctype html><meta charset=utf-8><body>{svg}"),
        )
        .unwrap();
        let labels: Vec<String> = texts(&svg)
            .into_iter()
            .filter(|t| t.len() == 5 && t.as_bytes()[2] == b':')
            .collect();
        let mut unique = labels.clone();
        unique.dedup();
        assert!(labels.len() >= 3 && unique == labels, "{labels:?}");
        // The three event labels at three heights.
        let ys: Vec<&str> = svg
            .split("<text")
            .filter(|t| {
                let text = t.split_once('>').map_or("", |(_, rest)| rest);
                let text = text.split("</text>").next().unwrap_or("").trim();
                text == "provision" || text == "relaunch"
            })
            .filter_map(|t| t.split("y=\"").nth(1)?.split('"').next())
            .collect();
        let mut distinct = ys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!((ys.len(), distinct.len()), (3, 3), "{ys:?}");
    }

    #[test]
    fn one_outlier_puts_the_cdf_on_a_log_axis() {
        let fast = [300.0, 310.0, 320.0, 330.0, 340.0];
        let slow = [600.0, 610.0, 620.0, 630.0, 6800.0];
        let svg = latency_cdf(&[
            CdfSeries {
                name: "A",
                sorted_ms: &fast,
            },
            CdfSeries {
                name: "D",
                sorted_ms: &slow,
            },
        ]);
        let texts = texts(&svg);
        assert!(
            texts.contains(&"latency (ms, log scale)".to_owned()),
            "{texts:?}"
        );
        for tick in ["500", "1000", "2000", "5000"] {
            assert!(texts.contains(&tick.to_owned()), "{tick} in {texts:?}");
        }
        // Within a decade: linear, as before.
        let svg = latency_cdf(&[CdfSeries {
            name: "A",
            sorted_ms: &fast,
        }]);
        assert!(texts_of(&svg).contains(&"latency (ms)".to_owned()));
        assert_eq!(
            PALETTE[0],
            RGBColor(0x00, 0x72, 0xb2),
            "Okabe-Ito blue first"
        );
    }

    fn texts_of(svg: &str) -> Vec<String> {
        texts(svg)
    }

    #[test]
    fn axes_are_finite_and_wider_than_rounding() {
        for (name, values) in extreme_sets() {
            for from_zero in [false, true] {
                let (lo, hi) = span(values.iter().copied(), from_zero);
                assert!(
                    lo.is_finite() && hi.is_finite() && hi - lo > hi.abs().max(lo.abs()) * 1e-7,
                    "{name}: {lo}..{hi}"
                );
            }
            let (lo, hi) = time_span(values.iter().copied());
            assert!(
                lo.is_finite() && hi.is_finite() && hi > lo,
                "{name}: {lo}..{hi}"
            );
            let (lo, hi) = cdf_axis(values.iter().copied()).ends();
            assert!(
                lo.is_finite() && hi.is_finite() && hi > lo,
                "{name}: cdf {lo}..{hi}"
            );
        }
    }
}

/// One point of a [`trend`]: when (seconds since the epoch), the value, and the run it is from.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
    /// Seconds since the epoch.
    pub x: f64,
    /// The value (ms, or a pass rate in %).
    pub y: f64,
    /// The run's id, written on the point's hit target (`data-run`).
    pub run: i64,
}

/// One line of a [`trend`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrendSeries {
    /// Legend text (`A p50`).
    pub label: String,
    /// Oldest first.
    pub points: Vec<TrendPoint>,
    /// Palette index: a config's p50 and p95 share a colour.
    pub color: usize,
    /// Dashed (the p95 of a config whose p50 is solid).
    pub dashed: bool,
}

/// An event on the time axis (a relaunch): a vertical dotted line with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Seconds since the epoch.
    pub x: f64,
    /// Short text (`relaunch`).
    pub label: String,
}

/// Figures over time: one line per series, events as labelled vertical lines, time labels by
/// `x_fmt` (the caller knows the time zone and format; this crate has no calendar).
///
/// Every point also gets an invisible hit target after the drawing, a `<circle
/// class="trend-point">` with `data-series`, `data-run`, `data-x` and `data-y` and a `<title>`
/// tooltip: plotters' SVG backend writes no attributes of ours, and without them a reader (a
/// person hovering, a browser test) could not tell which run a point is.
#[must_use]
pub fn trend(
    series: &[TrendSeries],
    markers: &[Marker],
    y_desc: &str,
    x_fmt: &dyn Fn(f64) -> String,
) -> String {
    let all = || series.iter().flat_map(|s| &s.points);
    let (x_lo, x_hi) = time_span(all().map(|p| p.x).chain(markers.iter().map(|m| m.x)));
    let (y_lo, y_hi) = span(all().map(|p| p.y), true);
    // A point as drawn: inside the plot (a value beyond the axis at its end), or left out when
    // it is not a number.
    let at = |p: &TrendPoint| Some((placeable(p.x)?, placeable(p.y)?.clamp(y_lo, y_hi)));
    let legend: Vec<Entry> = series
        .iter()
        .map(|s| {
            let swatch = if s.dashed {
                Swatch::Dashed
            } else {
                Swatch::Line
            };
            (s.label.clone(), color(s.color), swatch)
        })
        .chain(
            (!markers.is_empty())
                .then(|| ("relaunch / provision".to_owned(), GUIDE, Swatch::Dashed)),
        )
        .collect();
    let mut hits: Vec<(String, i32, i32, &TrendPoint)> = Vec::new();
    let mut svg = render(420, &legend, |root| {
        let y_fmt = |v: &f64| tick(*v, y_hi);
        let x_text = |v: &f64| x_fmt(*v);
        let mut chart = xy_chart(
            root,
            Axis::Time(x_lo, x_hi),
            y_lo..y_hi,
            ("time (UTC)", y_desc),
            &y_fmt,
            Some(&x_text),
        )?;
        let rows = marker_rows(markers.iter().map(|m| {
            let (px, _) = chart.backend_coord(&(m.x.clamp(x_lo, x_hi), y_hi));
            (px, m.label.chars().count())
        }));
        for (m, row) in markers.iter().zip(rows) {
            let x = m.x.clamp(x_lo, x_hi);
            chart.draw_series(DashedLineSeries::new(
                [(x, y_lo), (x, y_hi)],
                3,
                4,
                GUIDE.stroke_width(2),
            ))?;
            chart.draw_series(std::iter::once(
                EmptyElement::at((x, y_hi))
                    + Text::new(
                        printable(&m.label),
                        (4, 2 + MARKER_ROW * i32::try_from(row).unwrap_or(0)),
                        (FONT, NOTE)
                            .into_font()
                            .color(&MARKER_TEXT)
                            .pos(Pos::new(HPos::Left, VPos::Top)),
                    ),
            ))?;
        }
        for s in series {
            let c = color(s.color);
            let line = s.points.iter().filter_map(at);
            if s.dashed {
                chart.draw_series(DashedLineSeries::new(line, 6, 4, c.stroke_width(2)))?;
            } else {
                chart.draw_series(LineSeries::new(line, c.stroke_width(2)))?;
            }
            chart.draw_series(
                s.points
                    .iter()
                    .filter_map(at)
                    .map(|p| Circle::new(p, 4, c.filled())),
            )?;
            for p in &s.points {
                let Some(xy) = at(p) else { continue };
                let (px, py) = chart.backend_coord(&xy);
                hits.push((s.label.clone(), px, py, p));
            }
        }
        Ok(())
    });
    if let Some(end) = svg.rfind("</svg>") {
        let mut overlay = String::new();
        for (label, px, py, p) in hits {
            let label = xml_escape(&label);
            let _ = write!(
                overlay,
                "<circle class=\"trend-point\" cx=\"{px}\" cy=\"{py}\" r=\"8\" \
                 fill=\"transparent\" data-series=\"{label}\" data-run=\"{}\" data-x=\"{}\" \
                 data-y=\"{}\"><title>{label}: {} (run {}, {})</title></circle>",
                p.run,
                p.x,
                p.y,
                tick(p.y, y_hi),
                p.run,
                xml_escape(&x_fmt(p.x)),
            );
        }
        svg.insert_str(end, &overlay);
    }
    svg
}

/// Pixels between the rows of event labels on a [`trend`].
const MARKER_ROW: i32 = 18;
/// Event labels: darker than the guide lines, to be read.
const MARKER_TEXT: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// The row (0 at the top) of each event label at pixel `x` with `chars` characters: the first
/// row where it does not overlap a label already placed, so that events close in time (three
/// jobs in a minute) are written under each other instead of over each other.
fn marker_rows(labels: impl IntoIterator<Item = (i32, usize)>) -> Vec<usize> {
    // About 7.5 px a character at the note size, and a gap.
    let width = |chars: usize| i32::try_from(chars * 15 / 2).unwrap_or(i32::MAX / 2) + 10;
    let labels: Vec<(i32, usize)> = labels.into_iter().collect();
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by_key(|&i| labels[i].0);
    let mut ends: Vec<i32> = Vec::new();
    let mut rows = vec![0; labels.len()];
    for i in order {
        let (x, chars) = labels[i];
        let row = ends.iter().position(|end| *end <= x).unwrap_or(ends.len());
        let end = x.saturating_add(width(chars));
        match ends.get_mut(row) {
            Some(e) => *e = end,
            None => ends.push(end),
        }
        rows[i] = row;
    }
    rows
}

/// A time axis around `xs` (seconds): the data's own range with a margin, at least five
/// minutes wide (one point, or points seconds apart, get a range with minute ticks around
/// them); values that are not numbers are left out, and it is always finite.
fn time_span(xs: impl IntoIterator<Item = f64>) -> (f64, f64) {
    const MIN_WIDTH: f64 = 300.0;
    let (lo, hi) = xs
        .into_iter()
        .filter_map(placeable)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, MIN_WIDTH);
    }
    // Wider than rounding, however far from the epoch (an imported run at 1e300 s).
    let least = hi.abs().max(lo.abs()) * 1e-12;
    let pad = ((hi - lo) * 0.06)
        .max((MIN_WIDTH - (hi - lo)).max(0.0) / 2.0)
        .max(least);
    (lo - pad, hi + pad)
}

fn xml_escape(s: &str) -> String {
    printable(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
