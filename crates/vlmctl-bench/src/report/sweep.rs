//! A rate sweep rendered: its verdict line ([`SweepResult::verdict_line`]) and its table of
//! steps for the terminal ([`table`]), Markdown ([`markdown`]) and HTML ([`html`]).

use std::fmt::Write as _;

use super::html_escape as esc;
use crate::plan::Arrivals;
use crate::results::{SweepResult, SweepVerdict};
use crate::sweep::KEEPS_UP;

impl SweepResult {
    /// `sustains 47.6 Hz at p95 <= 40.0 ms (constant arrivals)`, and the like.
    #[must_use]
    pub fn verdict_line(&self) -> String {
        let arrivals = match self.arrivals {
            Arrivals::Constant => "constant",
            Arrivals::Poisson => "Poisson",
        };
        let head = format!("{} {}", self.target, self.config);
        match self.verdict {
            SweepVerdict::Sustains {
                hz,
                failed_hz,
                precise,
            } => format!(
                "{head}: sustains {} Hz at {} ({arrivals} arrivals); fails at {} Hz{}",
                hz_text(hz),
                self.criterion,
                hz_text(failed_hz),
                if precise {
                    format!(" (within {:.0} %)", self.spec.precision * 100.0)
                } else {
                    format!(" (step limit {} reached first)", self.spec.max_steps)
                }
            ),
            SweepVerdict::BelowRange { hz } => format!(
                "{head}: does not sustain {} Hz at {} ({arrivals} arrivals), the bottom of the range: lower LO",
                hz_text(hz),
                self.criterion
            ),
            SweepVerdict::TopOfRange { hz } if hz < self.spec.max_hz => format!(
                "{head}: sustains {} Hz at {} ({arrivals} arrivals), the highest rate tried before the step limit ({}): raise max_steps",
                hz_text(hz),
                self.criterion,
                self.spec.max_steps
            ),
            SweepVerdict::TopOfRange { hz } => format!(
                "{head}: sustains {} Hz at {} ({arrivals} arrivals), the top of the range tried: raise HI",
                hz_text(hz),
                self.criterion
            ),
        }
    }
}

/// A rate as the tables show it: `47.6`, `2.83`, `0.25`.
#[must_use]
pub fn hz_text(hz: f64) -> String {
    if hz >= 10.0 {
        format!("{hz:.1}")
    } else {
        format!("{hz:.2}")
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.1}"))
}

/// Rows of the steps table, in the order run.
fn rows(s: &SweepResult) -> Vec<[String; 7]> {
    s.steps
        .iter()
        .map(|st| {
            [
                hz_text(st.offered_hz),
                st.achieved_hz.map_or("-".to_owned(), hz_text),
                ms(st.wall_ms.map(|w| w.p50)),
                ms(st.wall_ms.map(|w| w.p95)),
                st.slo
                    .goodput
                    .map_or("-".to_owned(), |g| format!("{:.0}%", g * 100.0)),
                if st.met { "yes" } else { "no" }.to_owned(),
                format!(
                    "{} req, {} warm-up, {:.1} s{}{}",
                    st.requests,
                    st.warmup,
                    st.elapsed_s,
                    if st.stopped_early {
                        ", stopped early"
                    } else {
                        ""
                    },
                    match st.keeps_up {
                        Some(k) if k < KEEPS_UP && !st.stopped_early => {
                            format!(", fell behind ({:.0}%)", k * 100.0)
                        }
                        _ => String::new(),
                    }
                ),
            ]
        })
        .collect()
}

const HEAD: [&str; 7] = [
    "offered Hz",
    "achieved Hz",
    "p50 ms",
    "p95 ms",
    "goodput",
    "met",
    "step",
];

/// The terminal text: per sweep, its verdict line and a table of the steps.
#[must_use]
pub fn table(sweeps: &[SweepResult]) -> String {
    let mut out = String::new();
    for s in sweeps {
        let rows = rows(s);
        let mut widths: Vec<usize> = HEAD.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        let _ = writeln!(out, "{}", line(&HEAD.map(str::to_owned)));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r));
        }
        let _ = writeln!(
            out,
            "{}; {} steps in {:.1} s",
            s.verdict_line(),
            s.steps.len(),
            s.elapsed_s
        );
    }
    out
}

/// The Markdown section (empty without sweeps).
#[must_use]
pub fn markdown(sweeps: &[SweepResult]) -> String {
    let mut out = String::new();
    for s in sweeps {
        let _ = writeln!(
            out,
            "\n## Rate sweep: {} {}\n\n{}; {} steps in {:.1} s.\n",
            crate::text::markdown(&s.target),
            crate::text::markdown(&s.config),
            crate::text::markdown(&s.verdict_line()),
            s.steps.len(),
            s.elapsed_s
        );
        let _ = writeln!(out, "| {} |", HEAD.join(" | "));
        let _ = writeln!(out, "|{}", "---:|".repeat(HEAD.len()));
        for r in rows(s) {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
    }
    out
}

/// The HTML section: the verdict and a table of the steps (the latency-versus-rate chart is
/// drawn from [`SweepResult::series`]).
pub fn html(out: &mut String, sweeps: &[SweepResult]) {
    for s in sweeps {
        let _ = write!(
            out,
            "<h2>Rate sweep: {} {}</h2><p>{}</p><table><tr>",
            esc(&s.target),
            esc(&s.config),
            esc(&s.verdict_line())
        );
        for h in HEAD {
            let _ = write!(out, "<th>{h}</th>");
        }
        out.push_str("</tr>");
        for r in rows(s) {
            out.push_str("<tr>");
            for c in r {
                let _ = write!(out, "<td>{}</td>", esc(&c));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{RateRange, SweepSpec};
    use crate::results::SloReport;
    use crate::results::SweepStep;

    fn spec(lo: f64, hi: f64) -> SweepSpec {
        SweepSpec::over(RateRange { lo, hi })
    }

    fn step(offered_hz: f64, p50: f64, p95: f64, met: bool, stopped_early: bool) -> SweepStep {
        let wall = crate::stats::summarize(&[p50, p95]).map(|mut w| {
            (w.p50, w.p95) = (p50, p95);
            w
        });
        SweepStep {
            offered_hz,
            achieved_hz: Some(offered_hz.min(46.0)),
            requests: 60,
            warmup: 6,
            wall_ms: wall,
            slo: SloReport {
                checks: Vec::new(),
                met,
                good: if met { 54 } else { 3 },
                total: 54,
                goodput: Some(if met { 1.0 } else { 3.0 / 54.0 }),
            },
            met,
            stopped_early,
            keeps_up: Some(if offered_hz > 50.0 && !stopped_early {
                0.8
            } else {
                1.0
            }),
            elapsed_s: 60.0 / offered_hz,
            samples: Vec::new(),
        }
    }

    #[test]
    fn the_steps_table_markdown_and_html() {
        let r = SweepResult {
            target: "panda".into(),
            config: "A".into(),
            arrivals: Arrivals::Poisson,
            spec: spec(20.0, 200.0),
            criterion: "p95 <= 40.0 ms".into(),
            steps: vec![
                step(20.0, 21.0, 24.5, true, false),
                step(40.0, 22.0, 30.1, true, false),
                step(80.0, 104.5, 131.8, false, true),
                step(56.6, 93.6, 127.6, false, false),
                step(51.0, 25.0, 38.0, false, false),
                step(47.6, 23.0, 35.2, true, false),
            ],
            verdict: SweepVerdict::Sustains {
                hz: 47.6,
                failed_hz: 49.7,
                precise: true,
            },
            elapsed_s: 12.3,
        };
        insta::assert_snapshot!("sweep-table", table(std::slice::from_ref(&r)));
        insta::assert_snapshot!("sweep-markdown", markdown(std::slice::from_ref(&r)));
        let mut html_out = String::new();
        html(&mut html_out, std::slice::from_ref(&r));
        insta::assert_snapshot!("sweep-html", html_out);
        let series = r.series();
        assert_eq!(
            series.iter().map(|p| p.offered_hz).collect::<Vec<_>>(),
            [20.0, 40.0, 47.6, 51.0, 56.6, 80.0]
        );
    }
}
