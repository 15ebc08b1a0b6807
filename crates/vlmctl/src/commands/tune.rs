//! `vlmctl tune`: the library's sweep, rendered: progress on stderr (per variant, its settings,
//! and its bench's config and requests: a bar on a terminal, a line per step otherwise), then
//! the table (sorted by p50), the winner and the spec change that adopts it on stdout. Signals
//! cancel the sweep, which then puts the original deployment back; what was measured by then
//! is shown, written and recorded. Each measured variant's bench run goes into the history.

use std::fmt::Write as _;
use std::path::Path;

use vlmctl_bench::plan::LoadedPlan;
use vlmctl_deploy::events::{Cancel, Event, NoOne, Sink};
use vlmctl_deploy::provision::Ctx;
use vlmctl_deploy::tune::{
    self, Back, MemorySource, Outcome, Row, Step, TuneFile, TuneOptions, Tuned, VariantVerdict,
};
use vlmctl_store::{NewRun, Source, State, TargetLink};

use crate::cli::TuneArgs;
use crate::commands::provision::Progress;
use crate::failure::Failure;
use crate::history::Recorder;
use crate::signals::cancel_on_signals;
use crate::{Output, exit_codes};

/// `vlmctl tune`.
pub async fn tune(
    args: &TuneArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    let d = &args.deploy;
    // Every input read and checked before the deployment is touched.
    let file = TuneFile::load(&args.variants)?;
    let bench = LoadedPlan::load(&args.plan)?;
    let (file, bench) = shorten(file, bench, args)?;
    let hub = super::hub_client(&d.hub)?;
    let plan = d.pinned_plan(&hub, out).await?;
    let cancel = Cancel::new();
    let listener = cancel_on_signals(&cancel)?;
    let opts = TuneOptions {
        wait: d.state.wait,
        max_memory_mib: args.max_memory_mib,
    };
    let bars = crate::render::BenchProgress::new();
    let on_step = |s: &Step<'_>| {
        bars.update(
            &format!("variant {}/{} {}:", s.index + 1, s.total, s.variant),
            &format!("config {}", s.config),
            s.done,
            s.requests,
        );
    };
    let mut progress = Progress::new(out);
    let done = tune::tune(
        &plan,
        &bench,
        &file,
        &opts,
        &hub,
        &on_step,
        Ctx {
            engine,
            sink: &mut OneLineGates(&mut progress),
            confirm: &mut NoOne,
            cancel: &cancel,
        },
    )
    .await;
    listener.abort();
    progress.finish();
    let tuned = done?;
    record(&args.record, engine, &args.plan, &bench, &tuned, out);
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
    outcome(&tuned)
}

/// The exit: the original not back first (it is the production deployment), then a signal,
/// then nothing measured.
fn outcome(tuned: &Tuned) -> Result<u8, Failure> {
    if let Back::NotBack { why } = &tuned.back {
        return Err(Failure::new(
            anyhow::anyhow!(
                "{} is NOT back as it was after the tune: {why}",
                tuned.deployment
            ),
            Some(format!(
                "look at it now (`vlmctl status`, `docker ps -a --filter name={}`); `vlmctl \
                 provision` with its spec brings a deployment up again",
                tuned.deployment
            )),
            exit_codes::ORIGINAL_NOT_BACK,
        ));
    }
    if let Some(why) = &tuned.interrupted {
        let measured = tuned
            .rows
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Measured(_)))
            .count();
        return Err(Failure::new(
            anyhow::anyhow!(
                "tune stopped by {why} after {measured} measured variant(s) (the table above); {} \
                 was put back",
                tuned.deployment
            ),
            Some("`--only VARIANT,...` runs the rest later; `--runs N` shortens each".to_owned()),
            exit_codes::INTERRUPTED,
        ));
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

/// `--only`, `--configs` and `--runs` applied, each name checked against the files (a usage
/// error naming what there is, before anything else is read or touched).
fn shorten(
    mut file: TuneFile,
    mut bench: LoadedPlan,
    args: &TuneArgs,
) -> Result<(TuneFile, LoadedPlan), Failure> {
    let usage = |what: String, hint: String| {
        Failure::new(anyhow::anyhow!(what), Some(hint), exit_codes::USAGE)
    };
    if !args.only.is_empty() {
        let names: Vec<String> = file.all().into_iter().map(|v| v.name).collect();
        if let Some(bad) = args.only.iter().find(|n| !names.contains(n)) {
            return Err(usage(
                format!(
                    "--only {bad}: {} has no variant named {bad:?}",
                    file.path.display()
                ),
                format!("its variants: {}", names.join(", ")),
            ));
        }
        file.baseline = file.baseline && args.only.iter().any(|n| n == tune::BASELINE);
        file.variants.retain(|v| args.only.contains(&v.name));
    }
    if !args.configs.is_empty() {
        let have = &bench.plan.configs;
        if let Some(bad) = args.configs.iter().find(|c| !have.contains(c)) {
            return Err(usage(
                format!(
                    "--configs {bad}: the plan {} has no config {bad:?}",
                    args.plan.display()
                ),
                format!("its configs: {}", have.join(", ")),
            ));
        }
        let keep: Vec<String> = have
            .iter()
            .filter(|c| args.configs.contains(c))
            .cloned()
            .collect();
        bench.plan.configs = keep;
    }
    if let Some(n) = args.runs {
        bench.plan.runs = n as usize;
    }
    Ok((file, bench))
}

/// Each variant's bench run in the history, as a run of its own: the plan is named
/// `tune DEPLOYMENT: variant NAME (PLAN)`, its target linked to the deployment and the
/// variant's spec hash, so the service lists it (with its page) and trends tell variants apart.
/// Recorded once the tune is over (measured rows only); a history that cannot be written is a
/// warning.
fn record(
    args: &crate::cli::RecordArgs,
    engine: &vlmctl_lifecycle::Engine,
    plan_path: &Path,
    bench: &LoadedPlan,
    tuned: &Tuned,
    out: &mut Output,
) {
    let rows: Vec<&Row> = tuned.rows.iter().filter(|r| r.results.is_some()).collect();
    if rows.is_empty() {
        return;
    }
    let mut rec = Recorder::open(
        args,
        engine.state_dir(),
        vlmctl_deploy::history::host_name(engine),
        out,
    );
    let mut ids = Vec::new();
    for r in rows {
        let Some(results) = r.results.as_deref() else {
            continue;
        };
        let links = results
            .targets
            .iter()
            .map(|t| TargetLink {
                target: t.name.clone(),
                url: t.url.clone(),
                host: None,
                deployment: Some(tuned.deployment.clone()),
                spec_sha256: Some(r.spec_sha256.clone()),
                lock_sha256: None,
                model: None,
            })
            .collect();
        let run = NewRun {
            source: Source::Cli,
            host: vlmctl_deploy::history::host_name(engine),
            plan: format!(
                "tune {}: variant {} ({})",
                tuned.deployment,
                r.variant.name,
                plan_path.display()
            ),
            plan_json: serde_json::to_value(&bench.plan).unwrap_or_default(),
            targets: links,
            state: State::Running,
        };
        if let Some(id) = rec.record_finished(run, results, out) {
            ids.push(id.to_string());
        }
    }
    if !ids.is_empty() {
        out.progress(&format!(
            "recorded in the history as run(s) {} (`vlmctl runs list`, the service's Runs page)",
            ids.join(", ")
        ));
    }
}

/// Forwards to the provision progress, with each variant's gates on one line (the whole
/// table, 8 lines, only when one fails).
struct OneLineGates<'a, 'b>(&'a mut Progress<'b>);

impl Sink for OneLineGates<'_, '_> {
    fn event(&mut self, event: Event) {
        match event {
            Event::Gates { results }
                if results
                    .iter()
                    .all(|r| r.status != vlmctl_lifecycle::gates::GateStatus::Fail) =>
            {
                self.0.note(&format!("gates: {} passed", results.len()));
            }
            Event::GatesStarted { .. } => {}
            other => self.0.event(other),
        }
    }

    fn download(&mut self, file: &str) -> std::sync::Arc<dyn vlmctl_weights::FetchProgress> {
        self.0.download(file)
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

/// A self-contained page: the table (an HTML table, in [`render`]'s order, with the figures,
/// the verdicts and what is put back, as checked) beside each measured variant's p50 against
/// its memory, the winner ringed (plotters' SVG, through the bench crate's charts). Every text
/// that comes from a file or a server is escaped (maud).
#[must_use]
pub fn html(t: &Tuned) -> String {
    use maud::{DOCTYPE, html};
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
        None
    } else {
        Some(vlmctl_bench::charts::p50_vs_memory(&points, chosen))
    };
    let head = header(t);
    let rows: Vec<[String; 8]> = tune::order(&t.rows)
        .into_iter()
        .map(|i| cells(&t.rows[i]))
        .collect();
    let numeric = |c: usize| (2..=6).contains(&c);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "vlmctl tune " (t.deployment) }
                style { (maud::PreEscaped(
                    "body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}\
                     th,td{border:1px solid #ccc;padding:.3em .6em}td.n{text-align:right}\
                     tr.winner{font-weight:bold;background:#eef8ee}.bad{color:#a00}\
                     .layout{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}"
                )) }
            }
            body {
                h1 { "vlmctl tune " (t.deployment) }
                p { (summary_line(t)) }
                @if let Some(why) = &t.interrupted {
                    p.bad { "Stopped by " (why) " before every variant was measured: the table \
                             has the variants measured until then." }
                }
                div.layout {
                    table #tune {
                        thead { tr {
                            th { "winner" }
                            @for h in &head[1..] { th { (h) } }
                        } }
                        tbody {
                            @for r in &rows {
                                tr class=(if r[0] == "*" { "winner" } else { "" }) {
                                    @for (c, v) in r.iter().enumerate() {
                                        @if numeric(c) { td.n { (v) } } @else { td { (v) } }
                                    }
                                }
                            }
                        }
                    }
                    figure #chart-p50-memory {
                        @match &chart {
                            Some(svg) => (maud::PreEscaped(svg)),
                            None => p { "no variant has a memory figure: nothing to draw" },
                        }
                        figcaption { "p50 against memory, per variant" }
                    }
                }
                p { "memory gate: " (gate_text(t)) }
                @if let Some(w) = t.winner.map(|w| &t.rows[w]) {
                    p { "winner: " strong { (w.variant.name) } }
                    @if let Some(snippet) = &t.adopt { pre { (snippet) } }
                }
                p class=(if matches!(t.back, Back::NotBack { .. }) { "bad" } else { "" }) {
                    (back_line(t))
                }
            }
        }
    }
    .into_string()
}

/// `tune of D (p50 of config C; memory: ...)`.
fn summary_line(t: &Tuned) -> String {
    let config = t.rows.iter().find_map(|r| match &r.outcome {
        Outcome::Measured(m) => Some(m.config.clone()),
        Outcome::Failed { .. } => None,
    });
    format!(
        "tune of {} (p50 of config {}; memory: {})",
        t.deployment,
        config.as_deref().unwrap_or("-"),
        match t.memory_source {
            MemorySource::Gpu => "the server's GPU memory (nvidia-smi)",
            MemorySource::Container => "the container's memory (docker stats)",
        }
    )
}

fn gate_text(t: &Tuned) -> String {
    t.memory_gate_mib
        .map_or_else(|| "none".to_owned(), |g| format!("{g} MiB"))
}

/// The table's header row.
fn header(t: &Tuned) -> [String; 8] {
    let mem_head = match t.memory_source {
        MemorySource::Gpu => "GPU MiB",
        MemorySource::Container => "mem MiB",
    };
    [
        String::new(),
        "variant".into(),
        "p50 ms".into(),
        "p95 ms".into(),
        "ok/err".into(),
        "SLO".into(),
        mem_head.into(),
        "verdict".into(),
    ]
}

/// What became of the deployment, as checked after putting it back: "back as it was" only
/// when it is.
fn back_line(t: &Tuned) -> String {
    let short = |id: &str| id.get(..12).unwrap_or(id).to_owned();
    match (&t.back, &t.original_id) {
        (Back::AsItWas, Some(id)) => format!(
            "{} is back as it was (container {}, checked: the same id, running if it ran, \
             healthy)",
            t.deployment,
            short(id)
        ),
        (Back::NotBack { why }, _) => {
            format!("{} is NOT back as it was: {why}", t.deployment)
        }
        (Back::AsItWas | Back::NoneBefore, _) => format!(
            "{} had no container before the tune; none is left",
            t.deployment
        ),
    }
}

/// The table sorted by p50 (failures last), the winner, the spec change and what was put back.
#[must_use]
pub fn render(t: &Tuned) -> String {
    let mut rows: Vec<[String; 8]> = vec![header(t)];
    for i in tune::order(&t.rows) {
        rows.push(cells(&t.rows[i]));
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    if let Some(why) = &t.interrupted {
        let _ = writeln!(
            s,
            "stopped by {why}: only the variants measured until then are in the table"
        );
    }
    let _ = writeln!(s, "{}", summary_line(t));
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
    let _ = writeln!(s, "\nmemory gate: {}", gate_text(t));
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
    let _ = write!(s, "\n{}", back_line(t));
    s
}

/// One row's cells.
fn cells(r: &Row) -> [String; 8] {
    let mark = if r.verdict == VariantVerdict::Winner {
        "*"
    } else {
        ""
    };
    let verdict = match r.verdict {
        VariantVerdict::Winner => "fastest within the gates".to_owned(),
        VariantVerdict::Eligible => "within the gates".to_owned(),
        VariantVerdict::Errors { errors } => format!("{errors} request(s) failed"),
        VariantVerdict::SloMissed => "SLO missed".to_owned(),
        VariantVerdict::OverMemory { used_mib, max_mib } => {
            format!("over the memory gate ({used_mib} > {max_mib} MiB)")
        }
        VariantVerdict::MemoryUnknown => "memory not measured".to_owned(),
        VariantVerdict::Failed => String::new(),
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

    fn row(name: &str, outcome: Outcome, verdict: VariantVerdict) -> Row {
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
                row("baseline", m(30.0, 400, true), VariantVerdict::Eligible),
                row(
                    "bad",
                    Outcome::Failed {
                        stage: Stage::Launch,
                        why: "container d exited (code 1) while loading\nlog".into(),
                    },
                    VariantVerdict::Failed,
                ),
                row("fa-on", m(20.0, 410, true), VariantVerdict::Winner),
                row("p4", m(10.0, 900, false), VariantVerdict::SloMissed),
            ],
            winner: Some(2),
            memory_gate_mib: Some(800),
            memory_source: MemorySource::Container,
            adopt: Some("# adopt \"fa-on\": in the spec's [server] table\n[server]\nextra_args = [\"--flash-attn\", \"on\"]\n".into()),
            restored: Restored::default(),
            original_id: Some("0123456789abcdef".into()),
            back: Back::AsItWas,
            interrupted: None,
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
            text.ends_with(
                "d is back as it was (container 0123456789ab, checked: the same id, running if \
                 it ran, healthy)"
            ),
            "{text}"
        );
    }

    fn tuned(back: Back, interrupted: Option<&str>) -> Tuned {
        Tuned {
            deployment: "d".into(),
            rows: vec![
                row("baseline", m(30.0, 400, true), VariantVerdict::Winner),
                row(
                    "odd",
                    Outcome::Failed {
                        stage: Stage::Launch,
                        why: "error: <script>alert(1)</script> & more".into(),
                    },
                    VariantVerdict::Failed,
                ),
            ],
            winner: Some(0),
            memory_gate_mib: None,
            memory_source: MemorySource::Container,
            adopt: None,
            restored: Restored::default(),
            original_id: Some("0123456789abcdef".into()),
            back,
            interrupted: interrupted.map(str::to_owned),
        }
    }

    #[test]
    fn an_original_that_is_not_back_is_never_called_back_and_exits_11() {
        let t = tuned(
            Back::NotBack {
                why: "no container is named d any more".into(),
            },
            None,
        );
        for text in [render(&t), html(&t)] {
            assert!(!text.contains("back as it was ("), "{text}");
            assert!(
                text.contains("d is NOT back as it was: no container is named d any more"),
                "{text}"
            );
        }
        let f = outcome(&t).unwrap_err();
        assert_eq!(f.code, exit_codes::ORIGINAL_NOT_BACK);
        assert_eq!(exit_codes::ORIGINAL_NOT_BACK, 11);
        // Even when a signal also stopped it: the deployment matters most.
        let f = outcome(&tuned(t.back.clone(), Some("SIGINT"))).unwrap_err();
        assert_eq!(f.code, exit_codes::ORIGINAL_NOT_BACK);
        assert_eq!(outcome(&tuned(Back::AsItWas, None)).unwrap(), 0);
    }

    #[test]
    fn a_tune_stopped_by_a_signal_shows_what_it_measured_and_exits_130() {
        let t = tuned(Back::AsItWas, Some("Ctrl-C (SIGINT)"));
        let f = outcome(&t).unwrap_err();
        assert_eq!(f.code, exit_codes::INTERRUPTED);
        assert!(format!("{:#}", f.error).contains("after 1 measured variant(s)"));
        let text = render(&t);
        assert!(text.starts_with("stopped by Ctrl-C (SIGINT): only the variants measured"));
        assert!(text.contains("baseline"), "{text}");
        assert!(html(&t).contains("Stopped by Ctrl-C (SIGINT)"));
    }

    #[test]
    fn the_page_is_an_html_table_beside_the_chart_with_text_escaped() {
        let page = html(&tuned(Back::AsItWas, None));
        assert!(!page.contains("<pre>tune of"), "no terminal text: {page}");
        assert!(page.contains("<table id=\"tune\">"), "{page}");
        assert!(page.contains("<th>p50 ms</th>"), "{page}");
        assert!(page.contains("<tr class=\"winner\">"), "{page}");
        assert!(page.contains("<td class=\"n\">30.0</td>"), "{page}");
        assert!(page.contains("<figure id=\"chart-p50-memory\">"), "{page}");
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
            "{page}"
        );
    }
}
