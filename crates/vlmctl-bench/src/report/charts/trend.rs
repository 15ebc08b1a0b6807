//! Figures over time (the service's history), with events such as relaunches marked.

use std::fmt::Write as _;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    Axis, Entry, FONT, GUIDE, NOTE, Swatch, color, placeable, printable, render, span, tick,
    xy_chart,
};
use crate::report::html_escape as xml_escape;

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
pub(super) fn marker_rows(labels: impl IntoIterator<Item = (i32, usize)>) -> Vec<usize> {
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
pub(super) fn time_span(xs: impl IntoIterator<Item = f64>) -> (f64, f64) {
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
