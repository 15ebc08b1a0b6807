//! `vlmctl bench` and `vlmctl bench compare`: the plan, host and folder chosen from the
//! arguments, the job ([`vlmctl_deploy::bench::bench`]) run, its progress and results rendered.

use std::path::PathBuf;

use vlmctl_bench::plan::LoadedPlan;
use vlmctl_bench::{compare, report, run, sweep};
use vlmctl_deploy::DeployError;
use vlmctl_deploy::bench::{self, BenchJob, Progress, Record};
use vlmctl_deploy::events::Cancel;

use crate::cli::{BenchArgs, BenchCommand};
use crate::failure::Failure;
use crate::signals::cancel_on_signals;
use crate::{Output, exit_codes};

/// Dispatches `bench` / `bench compare`.
pub async fn bench(
    args: &BenchArgs,
    sessions: &vlmctl_lifecycle::hosts::Sessions,
    out: &mut Output,
) -> Result<u8, Failure> {
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
    let plan = LoadedPlan::load(plan_path)?;
    // `--host` is the default host of the targets that name none (the run is recorded under
    // its name); without it, this machine.
    let engine = default_engine(args, sessions)?;
    let baseline = args
        .baseline
        .as_deref()
        .map(vlmctl_bench::load_results)
        .transpose()?;
    let keys = plan.api_keys()?;
    for k in keys.values() {
        crate::redact::api_key(k);
    }
    let dir = out_dir(args);
    let state = args.state.dir();
    let mut history = crate::history::open(
        &args.record,
        &state,
        vlmctl_deploy::history::host_name(&engine),
        out,
    );
    let steps = Steps::new();
    let progress = |p: Progress<'_>| match p {
        Progress::Run(e) => steps.event(e),
        Progress::Sweep(e) => sweep_line(e),
    };
    let job = BenchJob {
        plan: &plan,
        engine: &engine,
        docker_config: &vlmctl_lifecycle::hosts::docker_config_dir(),
        keys: &keys,
        sweep_rate: args.sweep_rate,
        out: Some(&dir),
        baseline: baseline.as_ref(),
        record: Record::Begin {
            plan_path,
            state: &state,
        },
    };
    // Stopped by SIGINT, SIGTERM, SIGHUP or SIGQUIT: the run is then recorded `interrupted`
    // (at once, rather than at the next open of the history) and nothing is written.
    let cancel = Cancel::new();
    let listener = cancel_on_signals(&cancel)?;
    let done = bench::bench(
        &job,
        &mut history,
        &progress,
        &mut crate::history::warnings(out),
        &cancel,
    )
    .await;
    listener.abort();
    let done = match done {
        Ok(d) => d,
        Err(DeployError::Interrupted { why }) => {
            return Err(Failure::new(
                anyhow::anyhow!("bench stopped by {why}; no results were written"),
                None,
                exit_codes::INTERRUPTED,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    out.stdout(&if done.sweep {
        sweep::table(&done.results.sweep)
    } else {
        report::table(&done.results)
    });
    out.progress(&format!(
        "results: {}/results.json, report.md, report.html",
        dir.display()
    ));
    if done.answered() {
        return Ok(exit_codes::SUCCESS);
    }
    Err(Failure::new(
        anyhow::anyhow!(if done.sweep {
            "no request of the sweep succeeded (see results.json)"
        } else {
            "no request succeeded (see the error counts above and in results.json)"
        }),
        Some("check that the target URLs answer (`vlmctl gates`, `curl URL/health`)".to_owned()),
        exit_codes::SERVER,
    ))
}

/// One line per sweep step on stderr: `cpu step 1: 2 Hz, 40 requests ... met`, its start
/// written when it starts (a step takes its time), its end when it ends.
fn sweep_line(e: sweep::SweepEvent<'_>) {
    match e {
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
        .any(|r| r.verdict == compare::ComparisonVerdict::Investigate);
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

/// The engine of the targets that name no host ([`vlmctl_deploy::targets::place`]): `--host`
/// (the run is recorded under its name); without it, this machine.
fn default_engine(
    args: &BenchArgs,
    sessions: &vlmctl_lifecycle::hosts::Sessions,
) -> Result<vlmctl_lifecycle::Engine, Failure> {
    let host = match args.host.as_deref() {
        Some(flag) => vlmctl_lifecycle::hosts::resolve(
            Some(flag),
            &vlmctl_lifecycle::hosts::docker_config_dir(),
        )?,
        None => vlmctl_lifecycle::hosts::Host::Local,
    };
    Ok(vlmctl_lifecycle::Engine::new(
        host,
        &args.state.dir(),
        sessions.clone(),
    ))
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
