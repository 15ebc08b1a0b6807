//! Latency against offered rate (a sweep, with its SLO) and p50 against memory (`vlmctl tune`,
//! the chosen variant ringed).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    Axis, FONT, NOTE, Swatch, TARGET_COLOR, TARGET_MS, color, placeable, printable, render, span,
    tick, xy_chart,
};

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
