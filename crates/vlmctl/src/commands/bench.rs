//! `vlmctl bench` and `vlmctl bench compare`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vlmctl_bench::plan::LoadedPlan;
use vlmctl_bench::{compare, report, run, sweep};
use vlmctl_deploy::events::Cancel;
use vlmctl_deploy::targets::{self, Placed};

use crate::cli::{BenchArgs, BenchCommand};
use crate::commands::provision::cancel_on_signals;
use crate::failure::Failure;
use crate::history::{Recorder, first_line};
use crate::{Output, exit_codes};

/// Dispatches `bench` / `bench compare`.
pub async fn bench(args: &BenchArgs, out: &mut Output) -> Result<u8, Failure> {
    if let Some(BenchCommand::Compare { base, new, json }) = &args.compare {
        return compare_cmd(base, new, *json, out);
    }
    let Some(plan_path) = &args.plan else {
        return Err(Failure::new(
            anyhow::anyhow!("no plan given"),
            Some("vlmctl bench --plan examples/nav-bench.toml".to_owned()),
            exit_codes::USAGE,
        ));
    };
    // Everything read and checked before the first request.
    let original = LoadedPlan::load(plan_path)?;
    // Each target on its host (the plan's, else --host, else this machine), by URL or by
    // deployment; another host's loopback servers through SSH forwards.
    let placed = place(args.host.as_deref(), &original).await?;
    let plan = &placed.aimed;
    let baseline = args
        .baseline
        .as_deref()
        .map(vlmctl_bench::load_results)
        .transpose()?;
    let keys = api_keys(plan)?;
    if args.sweep_rate.is_some() || plan.plan.sweep.is_some() {
        if plan.plan.slo.is_none() {
            return Err(vlmctl_bench::BenchError::SweepNeedsSlo {
                path: plan_path.clone(),
            }
            .into());
        }
        return sweep_cmd(args, (plan_path, &placed), &keys, baseline.as_ref(), out).await;
    }
    let dir = out_dir(args);
    // Each target answers within seconds, or nothing is run: an unreachable one would cost
    // every request a connect error or, on a host that drops packets, a whole timeout.
    vlmctl_bench::preflight::check_all(&plan.plan.targets, &keys)
        .await
        .map_err(|e| placed.explain(e))?;
    let state = args.state.dir();
    let mut rec = Recorder::open(&args.record, &state, out);
    let id = rec.begin_run(plan_path, &placed, &state, out);
    let steps = Steps::new();
    let events = |e: run::Event<'_>| steps.event(e);
    let mut results = measured(run::run_with(plan, &keys, &events), &mut rec, out).await?;
    placed.restore(&mut results);
    if let Err(f) = write_results(&dir, &results, baseline.as_ref()) {
        rec.fail_run(id, &first_line(&f), out);
        return Err(f);
    }
    out.stdout(&report::table(&results));
    out.progress(&format!(
        "results: {}/results.json, report.md, report.html",
        dir.display()
    ));
    if results.any_succeeded() {
        rec.finish_run(id, &results, out);
        Ok(exit_codes::SUCCESS)
    } else {
        let f = Failure::new(
            anyhow::anyhow!(
                "no request succeeded (see the error counts above and in results.json)"
            ),
            Some(
                "check that the target URLs answer (`vlmctl gates`, `curl URL/health`)".to_owned(),
            ),
            exit_codes::SERVER,
        );
        rec.fail_run(id, &first_line(&f), out);
        Err(f)
    }
}

/// Bench progress on stderr, per step: the `describe` request (a spinner with its elapsed time
/// on a terminal, then how it ended; anywhere else a line when it starts; a failure is a
/// warning either way), then each config's requests ([`crate::render::BenchProgress`]).
struct Steps {
    bars: crate::render::BenchProgress,
    spinner: std::sync::Mutex<Option<indicatif::ProgressBar>>,
    terminal: bool,
}

impl Steps {
    fn new() -> Self {
        use std::io::IsTerminal as _;
        Self {
            bars: crate::render::BenchProgress::new(),
            spinner: std::sync::Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn event(&self, e: run::Event<'_>) {
        match e {
            run::Event::Requests {
                target,
                config,
                done,
                total,
            } => self.bars.update(target, config, done, total),
            run::Event::DescribeStarted { .. } if self.terminal => {
                let bar = crate::render::spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_message(describe_line(e).unwrap_or_default());
                if let Ok(mut slot) = self.spinner.lock() {
                    *slot = Some(bar);
                }
            }
            run::Event::DescribeStarted { .. } | run::Event::DescribeDone { .. } => {
                if let Some(bar) = self.spinner.lock().ok().and_then(|mut s| s.take()) {
                    bar.finish_and_clear();
                }
                // Off a terminal one line a step: its start (what the log is waiting on), and
                // its end only when it failed.
                let quiet =
                    !self.terminal && matches!(e, run::Event::DescribeDone { error: None, .. });
                if let Some(line) = describe_line(e).filter(|_| !quiet) {
                    crate::redact::write_line(true, &line);
                }
            }
        }
    }
}

/// What the terminal says of a `describe` step: `cpu: describe request… (up to 30 s)` when it
/// starts, `cpu: describe answered in 2.1 s`, or a warning when it failed.
fn describe_line(e: run::Event<'_>) -> Option<String> {
    let name = |t: &str| vlmctl_bench::text::printable(t).into_owned();
    match e {
        run::Event::DescribeStarted { target, timeout } => Some(format!(
            "{}: describe request… (up to {:.0} s)",
            name(target),
            timeout.as_secs_f64()
        )),
        run::Event::DescribeDone {
            target,
            elapsed,
            error: None,
        } => Some(format!(
            "{}: describe answered in {:.1} s",
            name(target),
            elapsed.as_secs_f64()
        )),
        run::Event::DescribeDone {
            target,
            elapsed,
            error: Some(why),
        } => Some(format!(
            "warning: {}: the describe request failed after {:.1} s ({}); measuring goes on \
             without its answer (recorded as describe_error in results.json and in the reports)",
            name(target),
            elapsed.as_secs_f64(),
            vlmctl_bench::text::printable(why)
        )),
        run::Event::Requests { .. } => None,
    }
}

/// The measurement, stopped by SIGINT, SIGTERM, SIGHUP or SIGQUIT: the run is then recorded
/// `interrupted` (at once, rather than at the next open of the history) and nothing is written.
async fn measured<T>(
    work: impl std::future::Future<Output = T>,
    rec: &mut Recorder,
    out: &mut Output,
) -> Result<T, Failure> {
    let cancel = Cancel::new();
    let listener = cancel_on_signals(&cancel)?;
    let why = tokio::select! {
        done = work => {
            listener.abort();
            return Ok(done);
        }
        why = cancel.cancelled() => why,
    };
    listener.abort();
    rec.interrupted(&format!("stopped by {why}"), out);
    Err(Failure::new(
        anyhow::anyhow!("bench stopped by {why}; no results were written"),
        None,
        exit_codes::INTERRUPTED,
    ))
}

/// `vlmctl bench --sweep-rate LO:HI` (or a plan with `[sweep]`): one line per step on stderr,
/// the steps table and the verdict on stdout, results.json / report.md / report.html.
async fn sweep_cmd(
    args: &BenchArgs,
    (plan_path, placed): (&Path, &Placed),
    keys: &BTreeMap<String, String>,
    baseline: Option<&run::Results>,
    out: &mut Output,
) -> Result<u8, Failure> {
    let dir = out_dir(args);
    // Through the redactor like every other line (a step's target name comes from the plan).
    let mut log = |e: sweep::SweepEvent<'_>| match e {
        sweep::SweepEvent::Step {
            target,
            index,
            hz,
            requests,
        } => crate::redact::write_unfinished(&format!(
            "{target} step {index}: {} Hz, {requests} requests ... ",
            sweep::hz_text(hz)
        )),
        sweep::SweepEvent::Done(s) => crate::redact::write_line(
            true,
            &format!(
                "{}{}",
                if s.met { "met" } else { "not met" },
                if s.stopped_early {
                    " (stopped early)"
                } else {
                    ""
                }
            ),
        ),
    };
    let state = args.state.dir();
    let mut rec = Recorder::open(&args.record, &state, out);
    let id = rec.begin_run(plan_path, placed, &state, out);
    let mut results = measured(
        sweep::run(&placed.aimed, args.sweep_rate, keys, &mut log),
        &mut rec,
        out,
    )
    .await?;
    placed.restore(&mut results);
    if let Err(f) = write_results(&dir, &results, baseline) {
        rec.fail_run(id, &first_line(&f), out);
        return Err(f);
    }
    out.stdout(&sweep::table(&results.sweep));
    out.progress(&format!(
        "results: {}/results.json, report.md, report.html",
        dir.display()
    ));
    // A server too slow for the lowest rate still answers the question (the verdict says so);
    // one that never answered does not.
    let answered = results
        .sweep
        .iter()
        .flat_map(|s| &s.steps)
        .any(|s| s.wall_ms.is_some() || s.stopped_early);
    if answered {
        rec.finish_run(id, &results, out);
        Ok(exit_codes::SUCCESS)
    } else {
        let f = Failure::new(
            anyhow::anyhow!("no request of the sweep succeeded (see results.json)"),
            Some(
                "check that the target URLs answer (`vlmctl gates`, `curl URL/health`)".to_owned(),
            ),
            exit_codes::SERVER,
        );
        rec.fail_run(id, &first_line(&f), out);
        Err(f)
    }
}

/// `vlmctl bench compare BASE NEW`.
fn compare_cmd(
    base: &std::path::Path,
    new: &std::path::Path,
    json: bool,
    out: &mut Output,
) -> Result<u8, Failure> {
    let c = compare::compare(
        &vlmctl_bench::load_results(base)?,
        &vlmctl_bench::load_results(new)?,
    );
    if json {
        out.stdout(&serde_json::to_string_pretty(&c).unwrap_or_default());
    } else {
        out.stdout(&compare::render(&c));
    }
    let investigate = c
        .rows
        .iter()
        .any(|r| r.verdict == compare::Verdict::Investigate);
    Ok(if investigate {
        exit_codes::INVESTIGATE
    } else {
        exit_codes::SUCCESS
    })
}

/// `--out`, else bench-results/<unix time>.
fn out_dir(args: &BenchArgs) -> PathBuf {
    args.out.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("bench-results/{now}"))
    })
}

/// results.json, report.md and report.html in `dir`.
fn write_results(
    dir: &std::path::Path,
    results: &run::Results,
    baseline: Option<&run::Results>,
) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            std::fs::write(
                dir.join("results.json"),
                serde_json::to_vec_pretty(results).unwrap_or_default(),
            )
        })
        .and_then(|()| std::fs::write(dir.join("report.md"), report::markdown(results)))
        .and_then(|()| std::fs::write(dir.join("report.html"), report::html(results, baseline)))
        .map_err(|e| {
            Failure::new(
                anyhow::Error::new(e).context(format!("cannot write results to {}", dir.display())),
                None,
                exit_codes::ENVIRONMENT,
            )
        })
}

/// API keys of the targets that name one, read before the first request and registered as
/// secrets.
fn api_keys(plan: &LoadedPlan) -> Result<BTreeMap<String, String>, Failure> {
    let keys = plan.api_keys()?;
    for k in keys.values() {
        crate::redact::api_key(k);
    }
    Ok(keys)
}

/// Every target placed on its host ([`targets::place`]): `--host` (selected for the whole
/// command, so that the run is recorded under its name) is the default host of the targets
/// that name none; without it, this machine.
async fn place(host: Option<&str>, plan: &LoadedPlan) -> Result<Placed, Failure> {
    if let Some(flag) = host {
        super::select_host(Some(flag))?;
    }
    Ok(targets::place(
        plan,
        vlmctl_lifecycle::hosts::selected(),
        &vlmctl_lifecycle::hosts::docker_config_dir(),
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_describe_step_is_said_and_its_failure_is_a_warning() {
        let started = run::Event::DescribeStarted {
            target: "cpu",
            timeout: Duration::from_secs(30),
        };
        assert_eq!(
            describe_line(started).as_deref(),
            Some("cpu: describe request… (up to 30 s)")
        );
        let ok = run::Event::DescribeDone {
            target: "cpu",
            elapsed: Duration::from_millis(2100),
            error: None,
        };
        assert_eq!(
            describe_line(ok).as_deref(),
            Some("cpu: describe answered in 2.1 s")
        );
        let failed = run::Event::DescribeDone {
            target: "cpu\u{1b}[2J",
            elapsed: Duration::from_secs(30),
            error: Some("timeout: operation timed out"),
        };
        let line = describe_line(failed).unwrap_or_default();
        assert!(
            line.starts_with(
                "warning: cpu\\u{1b}[2J: the describe request failed after 30.0 s \
                 (timeout: operation timed out)"
            ),
            "{line}"
        );
    }
}
