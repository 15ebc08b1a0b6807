//! Charts for the HTML reports, drawn by `plotters` into inline SVG strings (plain data in,
//! one `<svg>` out; nothing fetched, no fonts: the browser draws the `<text>` elements).
//!
//! - [`latency_cdf`] (`cdf`): latency CDF per config ([`CdfSeries`]) with p50/p95 markers.
//! - [`p50_bars`] (`bars`): p50 per config ([`Bar`]) against the 27.8 ms (36 Hz) line, with a baseline
//!   run's p50 beside each bar.
//! - [`latency_vs_rate`] (`xy`): p50 and p95 against the offered rate (a rate sweep), with the SLO.
//! - [`p50_vs_memory`] (`xy`): one point per server-settings variant (`vlmctl tune`).
//! - [`trend`] (`trend`): figures over time (the service's history), with events (relaunches) marked.
//!
//! Every chart has axes with tick labels and axis titles that name the unit.

//! What the charts share is here: the palette, the frame and legend, the axes and their ticks.

mod bars;
mod cdf;
mod trend;
mod xy;

pub use bars::{Bar, p50_bars};
pub use cdf::{CDF_LOG_SPREAD, CdfSeries, latency_cdf};
pub use trend::{Marker, TrendPoint, TrendSeries, trend};
pub use xy::{latency_vs_rate, p50_vs_memory};

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

#[cfg(test)]
mod tests {
    use super::cdf::cdf_axis;
    use super::trend::{marker_rows, time_span};
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
