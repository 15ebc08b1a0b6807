//! The bench job: what `vlmctl bench`, the service's queue and `tune` (each variant) run, in one
//! place: the targets placed on their hosts ([`crate::targets::place`]), each checked to answer
//! (preflight), the plan measured as it says (a rate sweep when it has `[sweep]` or the caller
//! asks for one, else its closed- or open-loop configs), the results made to name what the
//! hosts see, written to files when the caller wants them, and recorded in the [`History`].
//!
//! The front-ends only choose the plan, the host and the folder, and render [`Progress`] and
//! [`Benched`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vlmctl_bench::plan::LoadedPlan;
use vlmctl_bench::run::{self, Results};
use vlmctl_bench::sweep::{self, RateRange, SweepEvent};
use vlmctl_bench::{preflight, report};
use vlmctl_lifecycle::Engine;
use vlmctl_store::{NewRun, Source, State};

use crate::DeployError;
use crate::events::{Cancel, Sink};
use crate::history::History;
use crate::targets;

/// What the bench job is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct BenchJob<'a> {
    /// The plan as loaded (and checked: a `[sweep]` has its `[slo]`).
    pub plan: &'a LoadedPlan,
    /// The engine of the targets that name no host (`--host`, the service's host, the tuned
    /// deployment's); other hosts' engines are derived from it.
    pub engine: &'a Engine,
    /// Where the Docker contexts are (a target's `host` may name one).
    pub docker_config: &'a Path,
    /// Each target's API key (registered as secrets by the caller).
    pub keys: &'a BTreeMap<String, String>,
    /// A rate sweep over this range even if the plan has no `[sweep]` (`--sweep-rate`).
    pub sweep_rate: Option<RateRange>,
    /// Where results.json, report.md and report.html go; `None`: not written.
    pub out: Option<&'a Path>,
    /// The run report.html compares against.
    pub baseline: Option<&'a Results>,
    /// Where the run is in the history.
    pub record: Record<'a>,
}

/// How a bench run is recorded.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    /// Not at all (each tune variant, recorded by the caller with its variant).
    No,
    /// Begun by the job once the targets answer: the plan file as given, and the state folder
    /// the hosts' provision records are under (for each target's deployment and model).
    Begin {
        /// The plan file, as the user named it.
        plan_path: &'a Path,
        /// The base state folder.
        state: &'a Path,
    },
    /// Recorded `queued` before (the service's queue): the job starts it, or fails it.
    Queued(i64),
}

/// What a bench run reports as it goes: a config's requests and the `describe` step, or a
/// sweep's steps.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// From a closed- or open-loop run.
    Run(run::Event<'a>),
    /// From a rate sweep.
    Sweep(SweepEvent<'a>),
}

/// How a bench run ended (it was measured: errors before or during it are [`DeployError`]s).
#[derive(Debug, Clone)]
pub struct Benched {
    /// The results, naming what the hosts see.
    pub results: Results,
    /// It was a rate sweep (`results.sweep`), not configs (`results.targets`).
    pub sweep: bool,
    /// Its id in the history.
    pub run: Option<i64>,
    /// Where its files are, when written.
    pub dir: Option<PathBuf>,
    /// The history's warning when the finished run could not be recorded.
    pub unrecorded: Option<String>,
}

impl Benched {
    /// Did the server answer the question? Configs: a request succeeded. A sweep: a step was
    /// measured or stopped early (a server too slow for the lowest rate still answers it).
    #[must_use]
    pub fn answered(&self) -> bool {
        answered(&self.results, self.sweep)
    }

    /// Why a run that did not answer failed ([`Self::answered`]), as recorded in the history.
    #[must_use]
    pub fn why_not(&self) -> String {
        why_not(&self.results, self.sweep)
    }
}

fn answered(r: &Results, sweep: bool) -> bool {
    if sweep {
        r.sweep
            .iter()
            .flat_map(|s| &s.steps)
            .any(|s| s.wall_ms.is_some() || s.stopped_early)
    } else {
        r.any_succeeded()
    }
}

/// Pure: why a run without one successful request failed: its error counts and the first
/// error's detail.
fn why_not(r: &Results, sweep: bool) -> String {
    if sweep {
        return "no request of the sweep succeeded (see results.json)".to_owned();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut first = None;
    for c in r.targets.iter().flat_map(|t| &t.configs) {
        for (k, n) in &c.summary.errors {
            *counts.entry(k.as_str()).or_default() += n;
        }
        first = first.or_else(|| c.samples.iter().find_map(|s| s.error_detail.clone()));
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} x {k}")).collect();
    format!(
        "no request succeeded: {}{}",
        if counts.is_empty() {
            "nothing was sent".to_owned()
        } else {
            counts.join(", ")
        },
        first
            .map(|d| format!("; first error: {d}"))
            .unwrap_or_default()
    )
}

/// Pure: `plan` with its first target aimed at `deployment` (reached at `url` as its host sees
/// it) and only that target: what the service measures when asked for a deployment, and what
/// `tune` measures for each variant. The target's name is kept, so that runs of the same plan
/// compare across the front-ends. `None`: the plan has no target.
#[must_use]
pub fn aim_at(plan: &LoadedPlan, deployment: &str, url: String) -> Option<LoadedPlan> {
    let mut target = plan.plan.targets.first()?.clone();
    target.url = url;
    target.host = None;
    target.deployment = Some(deployment.to_owned());
    let mut aimed = plan.clone();
    aimed.plan.targets = vec![target];
    aimed.target_lines.truncate(1);
    Some(aimed)
}

/// Runs the bench job. A cancel stops the measurement: the run is recorded `interrupted` and
/// nothing is written (`DeployError::Interrupted`). Errors before the measurement fail a queued
/// run with the error; a begun run that measured nothing is failed with [`Benched::why_not`].
pub async fn bench(
    job: &BenchJob<'_>,
    history: &mut History,
    progress: &(dyn Fn(Progress<'_>) + Send + Sync),
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Benched, DeployError> {
    let queued = match job.record {
        Record::Queued(id) => Some(id),
        _ => None,
    };
    let measured = measure(job, history, progress, sink, cancel).await;
    let (placed, id, mut results, sweep) = match measured {
        Ok(m) => m,
        Err(Stop::Before(e)) => {
            history.fail_run(queued, &e.line_with_hint(), sink);
            return Err(e);
        }
        Err(Stop::Cancelled(why)) => {
            history.interrupted(&format!("stopped by {why}"), sink);
            return Err(DeployError::Interrupted { why });
        }
    };
    placed.restore(&mut results);
    let dir = job.out.map(Path::to_owned);
    if let Some(dir) = &dir
        && let Err(source) = write_results(dir, &results, job.baseline)
    {
        let e = DeployError::ResultsNotWritten {
            dir: dir.clone(),
            source,
        };
        history.fail_run(id, &e.line_with_hint(), sink);
        return Err(e);
    }
    let mut done = Benched {
        results,
        sweep,
        run: id,
        dir,
        unrecorded: None,
    };
    if done.answered() {
        done.unrecorded = history.finish_run(id, &done.results, sink).err();
    } else {
        history.fail_run(id, &done.why_not(), sink);
    }
    Ok(done)
}

/// What stopped a run before its results.
enum Stop {
    Before(DeployError),
    Cancelled(String),
}

/// Place, preflight, record, measure.
async fn measure(
    job: &BenchJob<'_>,
    history: &mut History,
    progress: &(dyn Fn(Progress<'_>) + Send + Sync),
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<(targets::Placed, Option<i64>, Results, bool), Stop> {
    // A queued run starts now, as the service's page shows it.
    let queued = match job.record {
        Record::Queued(id) => Some(id),
        _ => None,
    };
    history.start_run(queued, sink);
    let sweep = job
        .plan
        .is_sweep(job.sweep_rate)
        .map_err(|e| Stop::Before(e.into()))?;
    // Each target on its host (by URL or by deployment); another host's loopback servers
    // through SSH forwards.
    let placed = targets::place(job.plan, job.engine, job.docker_config)
        .await
        .map_err(Stop::Before)?;
    let plan = &placed.aimed;
    // Each target answers within seconds, or nothing is run: an unreachable one would cost
    // every request a connect error or, on a host that drops packets, a whole timeout.
    preflight::check_all(&plan.plan.targets, job.keys)
        .await
        .map_err(|e| Stop::Before(placed.explain(e).into()))?;
    let id = match job.record {
        Record::No | Record::Queued(_) => queued,
        Record::Begin { plan_path, state } => history.begin_run(
            NewRun {
                source: Source::Cli,
                host: String::new(),
                plan: plan_path.display().to_string(),
                plan_json: serde_json::to_value(&placed.seen.plan).unwrap_or_default(),
                targets: placed.links(state),
                state: State::Running,
            },
            sink,
        ),
    };
    let results = if sweep {
        let mut log = |e: SweepEvent<'_>| progress(Progress::Sweep(e));
        tokio::select! {
            r = sweep::run(plan, job.sweep_rate, job.keys, &mut log) => r,
            why = cancel.cancelled() => return Err(Stop::Cancelled(why)),
        }
    } else {
        let events = |e: run::Event<'_>| progress(Progress::Run(e));
        tokio::select! {
            r = run::run_with(plan, job.keys, &events) => r,
            why = cancel.cancelled() => return Err(Stop::Cancelled(why)),
        }
    };
    Ok((placed, id, results, sweep))
}

/// results.json, report.md and report.html in `dir` (a sweep's tables are in the reports).
fn write_results(dir: &Path, results: &Results, baseline: Option<&Results>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(results).unwrap_or_default(),
    )?;
    std::fs::write(dir.join("report.md"), report::markdown(results))?;
    std::fs::write(dir.join("report.html"), report::html(results, baseline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    fn results() -> Results {
        serde_json::from_value(serde_json::json!({
            "format": run::FORMAT, "started_unix": 0, "plan": {"version": 1, "target": []},
            "plan_sha256": "", "prompt_sha256": {}, "image_sha256": "",
            "environment": {"arch": "x86_64", "vlmctl": "0"}, "targets": []
        }))
        .unwrap_or_else(|e| panic!("results: {e}"))
    }

    #[test]
    fn a_run_without_answers_says_so_and_is_not_answered() {
        let r = results();
        assert_eq!(why_not(&r, false), "no request succeeded: nothing was sent");
        assert!(!answered(&r, false));
        assert!(!answered(&r, true));
        assert_eq!(
            why_not(&r, true),
            "no request of the sweep succeeded (see results.json)"
        );
    }

    /// "A write that fails is one warning, never the job's outcome": three writes after the
    /// first failure make no second warning, and the results go to the spill folder.
    #[test]
    fn a_failed_history_write_is_one_warning_and_the_results_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let mut events: Vec<Event> = Vec::new();
        let mut h = History::open(
            &tmp.path().join("history.sqlite"),
            Source::Serve,
            "local".to_owned(),
            {
                let secrets = vlmctl_base::redact::Secrets::new();
                secrets.add("sekrit");
                secrets
            },
            &mut events,
        )
        .spill_to(tmp.path().join("unrecorded"));
        assert!(h.on() && events.is_empty());
        // No run 999: the write fails.
        let why = h
            .finish_run(Some(999), &results(), &mut events)
            .unwrap_err();
        assert!(why.contains("run-999.json"), "{why}");
        assert!(tmp.path().join("unrecorded/run-999.json").is_file());
        assert!(!h.on());
        h.fail_run(Some(1), "sekrit", &mut events);
        h.interrupted("why", &mut events);
        assert_eq!(
            h.begin_job(
                vlmctl_store::JobKind::Teardown,
                None,
                None,
                None,
                &mut events
            ),
            None
        );
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0]
                .to_string()
                .starts_with("warning: not recorded in the history: "),
            "{}",
            events[0]
        );
    }

    #[test]
    fn a_plan_is_aimed_at_a_deployment_by_its_first_target_only() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let plan = LoadedPlan::load(&examples.join("cpu-bench.toml")).unwrap();
        let aimed = aim_at(&plan, "vlmctl-cpu", "http://127.0.0.1:1".to_owned()).unwrap();
        let [t] = aimed.plan.targets.as_slice() else {
            panic!("{:?}", aimed.plan.targets)
        };
        assert_eq!(t.name, plan.plan.targets[0].name, "its name kept");
        assert_eq!(
            (t.url.as_str(), t.host.as_deref(), t.deployment.as_deref()),
            ("http://127.0.0.1:1", None, Some("vlmctl-cpu"))
        );
        assert_eq!(aimed.plan_sha256, plan.plan_sha256, "where, not what");
    }

    /// A plan in `dir` whose first lines are `head` and last `tail`, beside the repository's
    /// prompts.
    fn plan_with(dir: &Path, head: &str, tail: &str) -> LoadedPlan {
        let e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let path = dir.join("plan.toml");
        std::fs::write(
            &path,
            format!(
                "{head}\nconfigs = [\"T\"]\ndescribe = false\n[prompts]\n\
                 nav = \"{e}/prompts/nav.txt\"\nnav_short = \"{e}/prompts/nav-short.txt\"\n\
                 [[target]]\nname = \"t\"\nurl = \"http://127.0.0.1:9\"\n{tail}",
                e = e.display()
            ),
        )
        .unwrap();
        LoadedPlan::load(&path).unwrap()
    }

    /// One rule for `plan_sha256` (it was the file's bytes in the CLI and the serialized plan
    /// when the service overrode `runs`): the plan as JSON. A comment does not change it, the
    /// service's `runs` gives the hash of a file that says the same.
    #[test]
    fn a_plans_hash_is_what_it_measures_whoever_sets_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let five = plan_with(tmp.path(), "version = 1\nruns = 5", "");
        let commented = plan_with(tmp.path(), "# the same plan\nversion = 1\nruns = 5", "");
        assert_eq!(five.plan_sha256, commented.plan_sha256);
        let seven = plan_with(tmp.path(), "version = 1\nruns = 7", "");
        assert_ne!(five.plan_sha256, seven.plan_sha256);
        let mut served = five.clone();
        served.set_runs(7);
        assert_eq!(served.plan_sha256, seven.plan_sha256);
    }

    /// "A sweep needs an SLO" holds for a sweep asked for (`--sweep-rate`) as for `[sweep]`
    /// (refused when the plan is parsed).
    #[test]
    fn a_sweep_asked_of_a_plan_without_an_slo_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = plan_with(tmp.path(), "version = 1", "");
        let range = Some(RateRange { lo: 1.0, hi: 10.0 });
        assert!(matches!(
            plan.is_sweep(range),
            Err(vlmctl_bench::BenchError::SweepNeedsSlo { .. })
        ));
        assert!(!plan.is_sweep(None).unwrap());
        let with_slo = plan_with(tmp.path(), "version = 1", "[slo]\np95_ms = 500\n");
        assert!(with_slo.is_sweep(range).unwrap());
    }
}
