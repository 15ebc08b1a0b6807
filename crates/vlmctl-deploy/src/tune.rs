//! `tune`: the deployment relaunched with each variant of its server settings ([`TuneFile`]),
//! benchmarked with a plan, measured for memory, and put back as it was.
//!
//! - [`tune`] runs it. The deployment's own container is moved aside (renamed to
//!   [`parked_name`], stopped) for the sweep, each variant is provisioned as the deployment
//!   through [`crate::provision::provision`] (relaunch: nothing else is stopped), benchmarked and
//!   torn down, and the original container (the same id) is put back and waited for, also on an
//!   error or a cancel; then it is checked ([`Back`]): the same id, running if it ran, healthy.
//!   The tune is journalled before the first move ([`journal`]), so that
//!   [`crate::undo::restore_all`] (`vlmctl restore`) finishes it after a `kill -9`.
//! - The tune holds the deployment's own lock (the one `provision`, `relaunch`, `teardown` and
//!   `restore` take) for its whole run, its variants' provisions run under it; so no other
//!   command, from the CLI or the service, acts on the deployment meanwhile. The parked
//!   original is never a deployment of its own ([`parked_of`]).
//! - [`verdict`], [`choose`] and [`order`] are the pure decisions: which variants meet the plan's
//!   SLO and the memory gate, the fastest of those, the table's order; [`adopt`] writes the spec
//!   change that adopts the winner.

mod decide;
pub mod file;
pub mod journal;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use vlmctl_bench::plan::LoadedPlan;
use vlmctl_bench::run::Results;
use vlmctl_lifecycle::journal::Restored;
use vlmctl_lifecycle::spec::{Gpus, Spec};
use vlmctl_lifecycle::{Docker, LifecycleError, containers};
use vlmctl_weights::HubClient;

pub use decide::{Back, Row, Tuned, VariantVerdict, adopt, choose, judge, order, verdict};
pub use file::{BASELINE, TuneFile, Variant};

use crate::DeployError;
use crate::events::{Cancel, Event, NoOne, Sink};
use crate::history::History;
use crate::plan::DeploymentPlan;
use crate::provision::{self, Ctx, Options, Provisioned};
pub use crate::types::{Measured, MemorySource, Outcome, Stage, lock_name, parked_name, parked_of};

/// Where a variant's bench stands: for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<'a> {
    /// The variant, 0-based.
    pub index: usize,
    /// How many variants.
    pub total: usize,
    /// Its name.
    pub variant: &'a str,
    /// The bench config being run.
    pub config: &'a str,
    /// Requests of that config done (warm-up included).
    pub done: usize,
    /// Of how many.
    pub requests: usize,
}

/// Receives [`Step`]s while a variant is benchmarked (from the bench's tasks: shared).
pub type OnStep<'a> = &'a (dyn Fn(&Step<'_>) + Send + Sync);

/// What the caller asks for beyond the plan and the tune file.
#[derive(Debug, Clone, Default)]
pub struct TuneOptions {
    /// Wait for another command that holds the deployment instead of failing.
    pub wait: bool,
    /// The memory gate in MiB (`--max-memory-mib`); else the tune file's, else the spec's
    /// `memory.max_process_mib`.
    pub max_memory_mib: Option<u64>,
}

/// Whether the deployment's own lock is held by the caller already (a tune), or is to be
/// taken (`vlmctl restore`), waiting for it or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The caller holds it.
    Yes,
    /// To be taken.
    No {
        /// Wait for another holder.
        wait: bool,
    },
}

/// Runs the sweep: see the module documentation. `bench`'s first target is pointed at the
/// deployment (its URL and API key replaced); the others are left out.
pub async fn tune(
    plan: &DeploymentPlan,
    bench: &LoadedPlan,
    file: &TuneFile,
    opts: &TuneOptions,
    hub: &HubClient,
    on_step: OnStep<'_>,
    ctx: Ctx<'_>,
) -> Result<Tuned, DeployError> {
    let Ctx {
        engine,
        sink,
        cancel,
        ..
    } = ctx;
    let state = engine.state_dir();
    plan.require_pinned()?;
    plan.require_api_key()?;
    plan.check_interface_on(engine)?;
    let name = plan.spec.name.clone();
    let _tune_lock =
        crate::lock::acquire(state, &lock_name(&name), "tune", opts.wait, sink, cancel).await?;
    // The deployment's own lock for the whole run: no provision, relaunch, teardown or restore
    // of it (from the CLI or the service) in the middle of the sweep.
    let _lock = crate::lock::acquire(state, &name, "tune", opts.wait, sink, cancel).await?;
    let docker = engine.connect().await?;
    let jpath = journal::path(state, &name);
    // A tune of this deployment that died: its original comes back first.
    if journal::read(&jpath)?.is_some() {
        let restored = restore(engine, &docker, &jpath, Held::Yes, sink, cancel).await?;
        sink.event(Event::Warning {
            message: format!(
                "a tune of {name} died before it finished; put its deployment back first ({})",
                crate::error::undone_summary(&restored)
            ),
        });
    }
    let found = containers::find(&docker, &name).await?;
    if found.as_ref().is_some_and(|f| !f.managed) {
        return Err(LifecycleError::NameTaken { container: name }.into());
    }
    let original = found.map(|f| journal::Original {
        id: f.id,
        running: f.running,
        since_unix: vlmctl_lifecycle::now_unix(),
    });
    journal::write(
        &jpath,
        &journal::TuneJournal {
            version: journal::VERSION,
            deployment: name.clone(),
            original: original.clone(),
            base_url: plan.base_url(),
            health_timeout_s: plan.spec.health.timeout_s,
            created_unix: vlmctl_lifecycle::now_unix(),
        },
    )?;
    let swept = async {
        if let Some(o) = &original {
            containers::park(&docker, &o.id, &name, &parked_name(&name)).await?;
        }
        let sweep = Sweep {
            engine,
            docker: &docker,
            plan,
            bench,
            hub,
            on_step,
        };
        sweep.run(file, &mut *sink, cancel).await
    }
    .await;
    sink.event(Event::RestoringOriginal {
        deployment: name.clone(),
        container: original.as_ref().map(|o| o.id.clone()),
    });
    // Put back whatever happened; a cancel does not cut this short.
    let restored = put_back(engine, &docker, &jpath, Held::Yes, sink, &Cancel::new()).await;
    let (rows, stop) = swept.unwrap_or_else(|e| (Vec::new(), Some(e)));
    let (restored, not_ready, interrupted) = match (restored, stop) {
        // Putting the original back failing is the error that matters most.
        (Err(e), _) => return Err(e),
        // A signal: what was measured until then is the result (and the caller's exit code
        // says it was cut short).
        (Ok((r, n)), Some(e)) => match e.root() {
            DeployError::Interrupted { why } => (r, n, Some(why.clone())),
            _ => return Err(e),
        },
        (Ok((r, n)), None) => (r, n, None),
    };
    // Checked, not assumed: someone may have removed or replaced it meanwhile.
    let back = check_back(&docker, original.as_ref(), &name, not_ready.as_deref()).await?;
    let gate = opts
        .max_memory_mib
        .or(file.max_memory_mib)
        .or(plan.spec.memory.max_process_mib);
    let mut rows = rows;
    let winner = judge_rows(&mut rows, gate);
    Ok(Tuned {
        deployment: name,
        adopt: winner.and_then(|w| adopt(&plan.spec, &rows[w].variant)),
        rows,
        winner,
        memory_gate_mib: gate,
        memory_source: if plan.spec.gpus == Gpus::None {
            MemorySource::Container
        } else {
            MemorySource::Gpu
        },
        restored,
        original_id: original.map(|o| o.id),
        back,
        interrupted,
    })
}

/// Pure: every row's verdict against the gates, the winner marked; its index.
fn judge_rows(rows: &mut [Row], gate: Option<u64>) -> Option<usize> {
    for r in rows.iter_mut() {
        r.verdict = verdict(&r.outcome, gate);
    }
    let pairs: Vec<(Outcome, VariantVerdict)> = rows
        .iter()
        .map(|r| (r.outcome.clone(), r.verdict))
        .collect();
    let winner = choose(&pairs);
    if let Some(w) = winner {
        rows[w].verdict = VariantVerdict::Winner;
    }
    winner
}

/// [`judge`] of what is under the deployment's name now.
async fn check_back(
    docker: &Docker,
    original: Option<&journal::Original>,
    name: &str,
    not_ready: Option<&str>,
) -> Result<Back, DeployError> {
    let Some(o) = original else {
        return Ok(Back::NoneBefore);
    };
    let found = containers::find(docker, name).await?;
    Ok(judge(
        o,
        name,
        found.as_ref().map(|f| (f.id.as_str(), f.running)),
        not_ready,
    ))
}

/// What every variant's run shares.
struct Sweep<'a> {
    engine: &'a vlmctl_lifecycle::Engine,
    docker: &'a Docker,
    plan: &'a DeploymentPlan,
    bench: &'a LoadedPlan,
    hub: &'a HubClient,
    on_step: OnStep<'a>,
}

impl Sweep<'_> {
    /// Every variant in turn. Returns the rows, and the error that ended the sweep early (a
    /// cancel, the daemon gone) with the rows so far.
    async fn run(
        &self,
        file: &TuneFile,
        sink: &mut dyn Sink,
        cancel: &Cancel,
    ) -> Result<(Vec<Row>, Option<DeployError>), DeployError> {
        let variants = file.all();
        let total = variants.len();
        let mut rows = Vec::new();
        for (index, variant) in variants.into_iter().enumerate() {
            if let Some(why) = cancel.reason() {
                return Ok((rows, Some(DeployError::Interrupted { why })));
            }
            sink.event(Event::VariantStarting {
                deployment: self.plan.spec.name.clone(),
                name: variant.name.clone(),
                settings: variant.describe(),
                index,
                total,
            });
            let vplan = DeploymentPlan {
                spec: variant.apply(&self.plan.spec),
                ..self.plan.clone()
            };
            let at = (index, total, variant.name.as_str());
            let measured = self.one(&vplan, at, &mut *sink, cancel).await;
            let (outcome, results, stop) = match measured {
                Ok((o, r)) => (o, r, None),
                Err(e) if stops_the_sweep(&e) => {
                    return Ok((rows, Some(e)));
                }
                // Its own undo removed what it started: the reason is the cause, not the undo.
                Err(e) => (
                    Outcome::Failed {
                        stage: Stage::Launch,
                        why: vlmctl_base::chain::one_line(e.root()),
                    },
                    None,
                    None::<DeployError>,
                ),
            };
            sink.event(Event::VariantDone {
                name: variant.name.clone(),
                outcome: outcome.clone(),
            });
            rows.push(Row {
                spec_sha256: vplan.spec.sha256(),
                variant,
                outcome,
                verdict: VariantVerdict::Failed,
                results,
            });
            if let Some(e) = stop {
                return Ok((rows, Some(e)));
            }
        }
        Ok((rows, None))
    }
}

/// A cancel, or an undo that could not finish: the sweep ends (and the original is put back).
fn stops_the_sweep(e: &DeployError) -> bool {
    matches!(
        e.root(),
        DeployError::Interrupted { .. } | DeployError::UndoFailed { .. }
    ) || matches!(e, DeployError::Lifecycle(l) if l.daemon_gone())
}

impl Sweep<'_> {
    /// One variant (`at`: its index, how many, its name): provisioned, benchmarked, measured,
    /// torn down.
    async fn one(
        &self,
        vplan: &DeploymentPlan,
        at: (usize, usize, &str),
        sink: &mut dyn Sink,
        cancel: &Cancel,
    ) -> Result<(Outcome, Option<Box<Results>>), DeployError> {
        let Self {
            engine,
            docker,
            bench,
            hub,
            on_step,
            ..
        } = *self;
        let spec = &vplan.spec;
        let opts = Options {
            relaunch: true,
            wait: true,
            within_tune: true,
            ..Options::default()
        };
        let done = provision::provision(
            vplan,
            &opts,
            hub,
            Ctx {
                engine,
                sink,
                confirm: &mut NoOne,
                cancel,
            },
        )
        .await?;
        let (id, startup_s) = match &done {
            Provisioned::Ready { record, .. } => {
                (record.container_id.clone(), Some(record.startup_s))
            }
            Provisioned::Unchanged { container_id, .. } => (container_id.clone(), None),
        };
        // The deployment under tune, whatever server the plan's target named; measured
        // through a forward on another host (its server listens on that host's loopback).
        let url = vplan.reach_url(engine).await?;
        let mut lp = crate::bench::aim_at(bench, &spec.name, url).ok_or_else(|| {
            DeployError::Bench(bench.invalid(1, "the plan has no [[target]]".to_owned()))
        })?;
        // Variants are compared on the plan's configs (a `[sweep]` is `vlmctl bench`'s).
        lp.plan.sweep = None;
        let mut keys = BTreeMap::new();
        if let (Some(t), Some(k)) = (lp.plan.targets.first(), &vplan.api_key) {
            keys.insert(t.name.clone(), k.clone());
        }
        let (index, total, variant) = at;
        let progress = |p: crate::bench::Progress<'_>| {
            if let crate::bench::Progress::Run(vlmctl_bench::run::Event::Requests {
                config,
                done,
                total: requests,
                ..
            }) = p
            {
                on_step(&Step {
                    index,
                    total,
                    variant,
                    config,
                    done,
                    requests,
                });
            }
        };
        let job = crate::bench::BenchJob {
            plan: &lp,
            engine,
            docker_config: &vlmctl_lifecycle::hosts::docker_config_dir(),
            keys: &keys,
            sweep_rate: None,
            out: None,
            baseline: None,
            record: crate::bench::Record::No,
        };
        let ran = crate::bench::bench(&job, &mut History::off(), &progress, sink, cancel)
            .await
            .map(|b| b.results);
        let memory = match ran {
            Ok(_) => memory_mib(engine, docker, spec, &id).await,
            Err(_) => None,
        };
        containers::teardown(docker, &spec.name).await?;
        let results = ran?;
        Ok(outcome_of(&results, &lp, memory, startup_s))
    }
}

/// The server's memory: the GPU figure on a GPU deployment, the container's on a CPU one.
async fn memory_mib(
    engine: &vlmctl_lifecycle::Engine,
    docker: &Docker,
    spec: &Spec,
    id: &str,
) -> Option<u64> {
    if spec.gpus == Gpus::None {
        containers::memory_mib(docker, &spec.name)
            .await
            .ok()
            .flatten()
    } else {
        crate::memory::measure(engine, spec, id)
            .await
            .ok()
            .and_then(|r| r.process_mib)
    }
}

/// Pure: a bench run as a row's figures.
fn outcome_of(
    results: &Results,
    plan: &LoadedPlan,
    memory_mib: Option<u64>,
    startup_s: Option<f64>,
) -> (Outcome, Option<Box<Results>>) {
    let configs = results
        .targets
        .first()
        .map(|t| t.configs.as_slice())
        .unwrap_or_default();
    let ok: usize = configs.iter().map(|c| c.summary.ok).sum();
    let errors: usize = configs.iter().flat_map(|c| c.summary.errors.values()).sum();
    let first = configs.first();
    let Some((c, wall)) = first.and_then(|c| c.summary.wall_ms.as_ref().map(|w| (c, w))) else {
        let kinds: Vec<String> = configs
            .iter()
            .flat_map(|c| c.summary.errors.iter().map(|(k, n)| format!("{n} × {k}")))
            .collect();
        return (
            Outcome::Failed {
                stage: Stage::Bench,
                why: format!("no request succeeded ({})", kinds.join(", ")),
            },
            Some(Box::new(results.clone())),
        );
    };
    let slo_met = plan.plan.slo.as_ref().map(|_| {
        configs
            .iter()
            .all(|c| c.summary.slo.as_ref().is_some_and(|s| s.met))
    });
    (
        Outcome::Measured(Measured {
            config: c.name.clone(),
            p50_ms: wall.p50,
            p95_ms: wall.p95,
            ok,
            errors,
            slo_met,
            memory_mib,
            startup_s,
        }),
        Some(Box::new(results.clone())),
    )
}

/// Puts a tune's deployment back as its journal says: the variant running under the
/// deployment's name (one vlmctl created, not the original) removed, the original renamed back
/// and started again if it ran, and waited for (a warning when it does not get ready); then the
/// journal goes. Idempotent. Holds the deployment's lock meanwhile (taking it unless `held`).
pub async fn restore(
    engine: &vlmctl_lifecycle::Engine,
    docker: &Docker,
    jpath: &Path,
    held: Held,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Restored, DeployError> {
    let (restored, not_ready) = put_back(engine, docker, jpath, held, sink, cancel).await?;
    if let Some(why) = not_ready {
        sink.event(Event::Warning { message: why });
    }
    Ok(restored)
}

/// [`restore`], saying why the original did not get ready (`None`: ready, or not to run).
async fn put_back(
    engine: &vlmctl_lifecycle::Engine,
    docker: &Docker,
    jpath: &Path,
    held: Held,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<(Restored, Option<String>), DeployError> {
    let mut out = Restored::default();
    let Some(j) = journal::read(jpath)? else {
        return Ok((out, None));
    };
    let name = &j.deployment;
    let _lock = match held {
        Held::Yes => None,
        Held::No { wait } => {
            Some(crate::lock::acquire(engine.state_dir(), name, "tune", wait, sink, cancel).await?)
        }
    };
    let mut not_ready = None;
    // A variant's launch that died half-way is in the deployment's own journal: undone first.
    // Only that launch: what an earlier provision stopped for the deployment stays stopped.
    let lj = vlmctl_lifecycle::journal::path(engine.state_dir(), name);
    if let Some(open) = vlmctl_lifecycle::journal::read(&lj)?
        .and_then(|l| l.launch)
        .filter(|l| !l.completed)
    {
        let undone = vlmctl_lifecycle::journal::restore(
            docker,
            &lj,
            vlmctl_lifecycle::journal::Scope::Run(&open.run_id),
        )
        .await?;
        out.removed.extend(undone.removed);
    }
    if let Some(now) = containers::find(docker, name).await?
        && j.original.as_ref().is_none_or(|o| o.id != now.id)
    {
        if !now.managed {
            return Err(LifecycleError::NameTaken {
                container: name.clone(),
            }
            .into());
        }
        containers::teardown(docker, name).await?;
        out.removed.push(name.clone());
    }
    if let Some(o) = &j.original {
        match containers::put_back(docker, &o.id, name, o.running, o.since_unix).await? {
            containers::PutBack::Done => out.put_back.push(name.clone()),
            containers::PutBack::InPlace => {}
            containers::PutBack::Missing => out.missing.push(format!("{name} (its original)")),
        }
        if o.running
            && let Err(e) = containers::wait_ready(
                docker,
                name,
                &reach_base(engine, &j.base_url).await,
                Duration::from_secs(j.health_timeout_s),
            )
            .await
        {
            not_ready = Some(format!(
                "{name} is back, but not ready: {}",
                vlmctl_base::chain::one_line(&e)
            ));
        }
    }
    journal::remove(jpath)?;
    Ok((out, not_ready))
}

/// Where this process reaches the server a journal names by its host's own URL: through a
/// forward when the engine is another host's; the URL itself when it cannot be parsed or
/// reached (then the readiness wait that follows says why).
async fn reach_base(engine: &vlmctl_lifecycle::Engine, base: &str) -> String {
    let Ok(u) = reqwest::Url::parse(base) else {
        return base.to_owned();
    };
    let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
        return base.to_owned();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match engine.reach(host, port).await {
        Ok((h, p)) => vlmctl_lifecycle::spec::http_base(&h, p),
        Err(_) => base.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p50: f64, errors: usize, slo: Option<bool>, mem: Option<u64>) -> Outcome {
        Outcome::Measured(Measured {
            config: "T".into(),
            p50_ms: p50,
            p95_ms: p50 * 1.2,
            ok: 3,
            errors,
            slo_met: slo,
            memory_mib: mem,
            startup_s: Some(1.0),
        })
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            stage: Stage::Launch,
            why: "exited".into(),
        }
    }

    #[test]
    fn the_winner_is_the_fastest_that_meets_the_slo_and_the_memory_gate() {
        let gate = Some(500);
        let outcomes = [
            m(30.0, 0, Some(true), Some(400)),  // eligible
            m(10.0, 0, Some(false), Some(100)), // fastest, misses the SLO
            m(12.0, 0, Some(true), Some(900)),  // over memory
            m(14.0, 2, Some(true), Some(100)),  // errors
            m(20.0, 0, Some(true), Some(450)),  // the winner
            m(20.0, 0, Some(true), Some(100)),  // as fast, later
            failed(),
            m(5.0, 0, Some(true), None), // memory unknown under a gate
        ];
        let v: Vec<(Outcome, VariantVerdict)> = outcomes
            .iter()
            .map(|o| (o.clone(), verdict(o, gate)))
            .collect();
        assert_eq!(v[1].1, VariantVerdict::SloMissed);
        assert_eq!(
            v[2].1,
            VariantVerdict::OverMemory {
                used_mib: 900,
                max_mib: 500
            }
        );
        assert_eq!(v[3].1, VariantVerdict::Errors { errors: 2 });
        assert_eq!(v[6].1, VariantVerdict::Failed);
        assert_eq!(v[7].1, VariantVerdict::MemoryUnknown);
        assert_eq!(choose(&v), Some(4));
        // Without a gate or an SLO, the fastest without errors wins, memory unknown or not.
        let v: Vec<_> = [m(9.0, 0, None, None), m(8.0, 1, None, None)]
            .into_iter()
            .map(|o| {
                let verdict = verdict(&o, None);
                (o, verdict)
            })
            .collect();
        assert_eq!(choose(&v), Some(0));
        // None eligible: no winner.
        assert_eq!(choose(&[(failed(), VariantVerdict::Failed)]), None);
    }

    #[test]
    fn the_original_is_back_only_when_the_same_container_runs_as_before_and_is_ready() {
        let o = journal::Original {
            id: "0123456789abcdef".into(),
            running: true,
            since_unix: 1,
        };
        assert_eq!(judge(&o, "d", Some((&o.id, true)), None), Back::AsItWas);
        let not_back = |b: Back| match b {
            Back::NotBack { why } => why,
            other => panic!("{other:?}"),
        };
        let why = not_back(judge(&o, "d", None, Some("d is back, but not ready: 404")));
        assert!(
            why.contains("no container is named d") && why.contains("0123456789ab"),
            "{why}"
        );
        let why = not_back(judge(&o, "d", Some(("ffffffffffff0000", true)), None));
        assert!(why.contains("not the original 0123456789ab"), "{why}");
        let why = not_back(judge(&o, "d", Some((&o.id, false)), None));
        assert!(why.contains("not running"), "{why}");
        let why = not_back(judge(
            &o,
            "d",
            Some((&o.id, true)),
            Some("d is back, but not ready: x"),
        ));
        assert_eq!(why, "d is back, but not ready: x");
        // One that was stopped before stays stopped, and is not waited for.
        let stopped = journal::Original {
            running: false,
            ..o.clone()
        };
        assert_eq!(
            judge(&stopped, "d", Some((&o.id, false)), None),
            Back::AsItWas
        );
        assert!(matches!(
            judge(&stopped, "d", Some((&o.id, true)), None),
            Back::NotBack { .. }
        ));
    }

    #[test]
    fn a_parked_name_names_its_deployment() {
        assert_eq!(parked_of(&parked_name("web")), Some("web"));
        assert_eq!(parked_of("web"), None);
        assert_eq!(parked_of("-vlmctl-tune"), None);
    }

    #[test]
    fn the_table_is_ordered_by_p50_with_failures_last() {
        let row = |o: Outcome| Row {
            variant: Variant::baseline(),
            spec_sha256: String::new(),
            outcome: o,
            verdict: VariantVerdict::Failed,
            results: None,
        };
        let rows = [
            row(failed()),
            row(m(30.0, 0, None, None)),
            row(m(10.0, 0, None, None)),
            row(failed()),
        ];
        assert_eq!(order(&rows), [2, 1, 0, 3]);
    }

    #[test]
    fn the_adopting_change_is_the_servers_fields_and_whole_extra_args() {
        let spec = Spec::parse(
            "name = \"d\"\nimage = \"i:1\"\nmodel = \"m\"\n[server]\nhost = \"127.0.0.1\"\nport = 9\nextra_args = [\"--no-warmup\"]\n",
            Path::new("s.toml"),
        )
        .unwrap();
        let v = Variant {
            name: "fa".into(),
            extra_args: vec!["--flash-attn".into(), "on".into()],
            ctx_size: Some(2048),
            ..Variant::default()
        };
        assert_eq!(
            adopt(&spec, &v).unwrap(),
            "# adopt \"fa\": in the spec's [server] table\n[server]\nctx_size = 2048\n\
             extra_args = [\"--no-warmup\", \"--flash-attn\", \"on\"]\n"
        );
        assert_eq!(adopt(&spec, &Variant::baseline()), None);
        // What it prints parses back as the change it names.
        let text = adopt(&spec, &v).unwrap();
        let back: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(back["server"]["ctx_size"].as_integer(), Some(2048));
    }
}
