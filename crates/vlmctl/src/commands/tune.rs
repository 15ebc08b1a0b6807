//! `vlmctl tune`: the library's sweep, rendered: progress on stderr, then the table (sorted by
//! p50), the winner and the spec change that adopts it on stdout. Signals cancel the sweep,
//! which then puts the original deployment back.

use std::fmt::Write as _;

use vlmctl_bench::plan::LoadedPlan;
use vlmctl_deploy::events::{Cancel, Event, NoOne};
use vlmctl_deploy::provision::Ctx;
use vlmctl_deploy::tune::{
    self, MemorySource, Outcome, Row, TuneFile, TuneOptions, Tuned, Verdict,
};

use crate::cli::TuneArgs;
use crate::commands::provision::{Progress, cancel_on_signals};
use crate::failure::Failure;
use crate::{Output, exit_codes};

/// `vlmctl tune`.
pub async fn tune(args: &TuneArgs, out: &mut Output) -> Result<u8, Failure> {
    let d = &args.deploy;
    // Every input read and checked before the deployment is touched.
    let file = TuneFile::load(&args.variants)?;
    let bench = LoadedPlan::load(&args.plan)?;
    let plan = d.pinned_plan(out).await?;
    let state = super::state_dir(&d.state);
    let hub = super::hub_client(&d.hub)?;
    let cancel = Cancel::new();
    let listener = cancel_on_signals(&cancel)?;
    let opts = TuneOptions {
        wait: d.state.wait,
        max_memory_mib: args.max_memory_mib,
    };
    let mut sink = Progress::new(out, &plan.spec.name);
    let done = tune::tune(
        &plan,
        &bench,
        &file,
        &opts,
        &hub,
        Ctx {
            state: &state,
            sink: &mut sink,
            confirm: &mut NoOne,
            cancel: &cancel,
        },
    )
    .await;
    listener.abort();
    sink.finish();
    let tuned = done?;
    if let Some(dir) = &args.out {
        write_results(dir, &tuned)?;
        out.progress(&format!(
            "results: {}/tune.json, tune.html and <variant>/results.json",
            dir.display()
        ));
    }
    if d.json {
        out.stdout(&serde_json::to_string_pretty(&tuned).unwrap_or_default());
    } else {
        out.stdout(&render(&tuned));
    }
    let measured = tuned
        .rows
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Measured(_)));
    if measured {
        Ok(exit_codes::SUCCESS)
    } else {
        Err(Failure::new(
            anyhow::anyhow!(
                "no variant could be measured (each one's reason is in the table above); {} was \
                 put back",
                tuned.deployment
            ),
            Some("check the variants' arguments against `llama-server --help`".to_owned()),
            exit_codes::SERVER,
        ))
    }
}

fn write_results(dir: &std::path::Path, tuned: &Tuned) -> Result<(), Failure> {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("tune.json"),
            serde_json::to_vec_pretty(tuned).unwrap_or_default(),
        )?;
        std::fs::write(dir.join("tune.html"), html(tuned))?;
        for r in &tuned.rows {
            if let Some(res) = &r.results {
                let sub = dir.join(&r.variant.name);
                std::fs::create_dir_all(&sub)?;
                std::fs::write(
                    sub.join("results.json"),
                    serde_json::to_vec_pretty(res).unwrap_or_default(),
                )?;
            }
        }
        Ok(())
    };
    write().map_err(|e| {
        Failure::new(
            anyhow::Error::new(e).context(format!("cannot write results to {}", dir.display())),
            None,
            exit_codes::ENVIRONMENT,
        )
    })
}

/// A self-contained page: the table as [`render`] prints it, and each measured variant's p50
/// against its memory, the winner ringed (plotters' SVG, through the bench crate's charts).
#[must_use]
pub fn html(t: &Tuned) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let measured: Vec<(usize, &str, f64, f64)> = t
        .rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.outcome {
            Outcome::Measured(m) => {
                Some((i, r.variant.name.as_str(), m.memory_mib? as f64, m.p50_ms))
            }
            Outcome::Failed { .. } => None,
        })
        .collect();
    let points: Vec<(&str, f64, f64)> = measured.iter().map(|&(_, n, m, p)| (n, m, p)).collect();
    let chosen = t
        .winner
        .and_then(|w| measured.iter().position(|&(i, ..)| i == w));
    let chart = if points.is_empty() {
        "<p>no variant has a memory figure: nothing to draw</p>".to_owned()
    } else {
        vlmctl_bench::charts::p50_vs_memory(&points, chosen)
    };
    format!(
        "<!doctype html><meta charset=utf-8><title>vlmctl tune {name}</title>\
         <style>body{{font:14px sans-serif;margin:2em}}</style><h1>vlmctl tune {name}</h1>\
         <pre>{table}</pre><figure id=chart-p50-memory>{chart}\
         <figcaption>p50 against memory, per variant</figcaption></figure>",
        name = esc(&t.deployment),
        table = esc(&render(t)),
    )
}

/// The table sorted by p50 (failures last), the winner, the spec change and what was put back.
#[must_use]
pub fn render(t: &Tuned) -> String {
    let mem_head = match t.memory_source {
        MemorySource::Gpu => "GPU MiB",
        MemorySource::Container => "mem MiB",
    };
    let mut rows: Vec<[String; 8]> = vec![[
        String::new(),
        "variant".into(),
        "p50 ms".into(),
        "p95 ms".into(),
        "ok/err".into(),
        "SLO".into(),
        mem_head.into(),
        "verdict".into(),
    ]];
    for i in tune::order(&t.rows) {
        rows.push(cells(&t.rows[i]));
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    let config = t.rows.iter().find_map(|r| match &r.outcome {
        Outcome::Measured(m) => Some(m.config.clone()),
        Outcome::Failed { .. } => None,
    });
    let _ = writeln!(
        s,
        "tune of {} (p50 of config {}; memory: {})",
        t.deployment,
        config.as_deref().unwrap_or("-"),
        match t.memory_source {
            MemorySource::Gpu => "the server's GPU memory (nvidia-smi)",
            MemorySource::Container => "the container's memory (docker stats)",
        }
    );
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if (2..=6).contains(&c) {
                    format!("{v:>w$}", w = widths[c])
                } else {
                    format!("{v:<w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(s, "{}", line.join("  ").trim_end());
    }
    let gate = t
        .memory_gate_mib
        .map_or_else(|| "none".to_owned(), |g| format!("{g} MiB"));
    let _ = writeln!(s, "\nmemory gate: {gate}");
    match t.winner.map(|w| &t.rows[w]) {
        Some(w) => {
            let _ = writeln!(s, "winner: {}", w.variant.name);
            match &t.adopt {
                Some(snippet) => {
                    let _ = write!(s, "\n{snippet}");
                }
                None => {
                    let _ = writeln!(
                        s,
                        "the spec as it is is the fastest within the gates: nothing to change"
                    );
                }
            }
        }
        None => {
            let _ = writeln!(
                s,
                "no variant meets the plan's [slo] and the memory gate without errors"
            );
        }
    }
    let _ = write!(
        s,
        "\n{}",
        match &t.original_id {
            Some(id) => format!(
                "{} is back as it was (container {})",
                t.deployment,
                id.get(..12).unwrap_or(id)
            ),
            None => format!(
                "{} had no container before the tune; none is left",
                t.deployment
            ),
        }
    );
    s
}

/// One row's cells.
fn cells(r: &Row) -> [String; 8] {
    let mark = if r.verdict == Verdict::Winner {
        "*"
    } else {
        ""
    };
    let verdict = match r.verdict {
        Verdict::Winner => "fastest within the gates".to_owned(),
        Verdict::Eligible => "within the gates".to_owned(),
        Verdict::Errors { errors } => format!("{errors} request(s) failed"),
        Verdict::SloMissed => "SLO missed".to_owned(),
        Verdict::OverMemory { used_mib, max_mib } => {
            format!("over the memory gate ({used_mib} > {max_mib} MiB)")
        }
        Verdict::MemoryUnknown => "memory not measured".to_owned(),
        Verdict::Failed => String::new(),
    };
    match &r.outcome {
        Outcome::Measured(m) => [
            mark.into(),
            r.variant.name.clone(),
            format!("{:.1}", m.p50_ms),
            format!("{:.1}", m.p95_ms),
            format!("{}/{}", m.ok, m.errors),
            match m.slo_met {
                Some(true) => "met".into(),
                Some(false) => "MISSED".into(),
                None => "-".into(),
            },
            m.memory_mib.map_or_else(|| "?".into(), |v| v.to_string()),
            verdict,
        ],
        Outcome::Failed { stage, why } => [
            mark.into(),
            r.variant.name.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            format!(
                "FAILED {}: {}",
                match stage {
                    tune::Stage::Launch => "to start",
                    tune::Stage::Bench => "in the bench",
                },
                first_line(why, 100)
            ),
        ],
    }
}

/// A tune's progress event as a line on stderr.
pub(crate) fn event_text(e: Event, deployment: &str) -> String {
    match e {
        Event::VariantStarting { name, index, total } => format!(
            "variant {}/{total}: {name}: relaunching {deployment}",
            index + 1
        ),
        Event::VariantDone { name, outcome } => match outcome {
            Outcome::Measured(m) => format!(
                "variant {name}: p50 {:.1} ms ({}), {} ok, {} errors{}",
                m.p50_ms,
                m.config,
                m.ok,
                m.errors,
                m.memory_mib
                    .map(|v| format!(", {v} MiB"))
                    .unwrap_or_default()
            ),
            Outcome::Failed { why, .. } => format!("variant {name}: FAILED: {why}"),
        },
        Event::RestoringOriginal {
            deployment,
            container,
        } => match container {
            Some(id) => format!(
                "putting {deployment} back (container {})",
                id.get(..12).unwrap_or(&id)
            ),
            None => format!("removing the last variant ({deployment} had no container)"),
        },
        other => format!("{other:?}"),
    }
}

fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use vlmctl_deploy::tune::{Measured, Stage, Variant};
    use vlmctl_lifecycle::journal::Restored;

    use super::*;

    fn row(name: &str, outcome: Outcome, verdict: Verdict) -> Row {
        Row {
            variant: Variant {
                name: name.into(),
                ..Variant::default()
            },
            spec_sha256: String::new(),
            outcome,
            verdict,
            results: None,
        }
    }

    fn m(p50: f64, mem: u64, slo: bool) -> Outcome {
        Outcome::Measured(Measured {
            config: "T".into(),
            p50_ms: p50,
            p95_ms: p50 + 1.0,
            ok: 3,
            errors: 0,
            slo_met: Some(slo),
            memory_mib: Some(mem),
            startup_s: Some(1.0),
        })
    }

    #[test]
    fn the_table_is_sorted_by_p50_and_marks_the_winner() {
        let t = Tuned {
            deployment: "d".into(),
            rows: vec![
                row("baseline", m(30.0, 400, true), Verdict::Eligible),
                row(
                    "bad",
                    Outcome::Failed {
                        stage: Stage::Launch,
                        why: "container d exited (code 1) while loading\nlog".into(),
                    },
                    Verdict::Failed,
                ),
                row("fa-on", m(20.0, 410, true), Verdict::Winner),
                row("p4", m(10.0, 900, false), Verdict::SloMissed),
            ],
            winner: Some(2),
            memory_gate_mib: Some(800),
            memory_source: MemorySource::Container,
            adopt: Some("# adopt \"fa-on\": in the spec's [server] table\n[server]\nextra_args = [\"--flash-attn\", \"on\"]\n".into()),
            restored: Restored::default(),
            original_id: Some("0123456789abcdef".into()),
        };
        let text = render(&t);
        let expected = "\
tune of d (p50 of config T; memory: the container's memory (docker stats))
   variant   p50 ms  p95 ms  ok/err  SLO  mem MiB  verdict
   p4          10.0    11.0     3/0  MISSED    900  SLO missed
*  fa-on       20.0    21.0     3/0  met       410  fastest within the gates
";
        assert!(text.starts_with(&expected[..60]), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[2].starts_with("   p4") && lines[2].ends_with("SLO missed"),
            "{text}"
        );
        assert!(lines[3].starts_with("*  fa-on"), "{text}");
        assert!(
            lines[4].contains("baseline") && lines[4].ends_with("within the gates"),
            "{text}"
        );
        assert!(
            lines[5].contains("bad")
                && lines[5].ends_with("FAILED to start: container d exited (code 1) while loading"),
            "{text}"
        );
        assert!(
            text.contains("memory gate: 800 MiB\nwinner: fa-on\n\n# adopt \"fa-on\""),
            "{text}"
        );
        assert!(
            text.ends_with("d is back as it was (container 0123456789ab)"),
            "{text}"
        );
    }
}
