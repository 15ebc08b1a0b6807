//! `provision` and `relaunch`: gates, fetch, pull, conflicts, the journalled stop, the GPU
//! probe and launch (`probe`), readiness, smoke request, memory ceiling, the proof that the
//! model runs on the GPU, record. Every side effect is journalled before it happens and undone,
//! for this run only, when the run fails or is cancelled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vlmctl_lifecycle::Docker;
use vlmctl_lifecycle::containers::{self, ConflictInfo, Launch, LaunchStep};
use vlmctl_lifecycle::gates::{GateReport, GateResult, GateStatus};
use vlmctl_lifecycle::journal::{self, LaunchRecord, Scope};
use vlmctl_weights::HubClient;

use crate::events::{Cancel, Confirm, Event, Sink};
use crate::offload::GpuProof;
use crate::plan::DeploymentPlan;
use crate::record::{ProvisionRecord, RECORD_VERSION};
use crate::server_checks::{checked_smoke, cuda_failure_at_load, prove};
use crate::smoke::{self, Smoke};
use crate::{DeployError, memory};

mod decide;
mod probe;
pub use decide::{blocking_gates, choose_conflicts};
use decide::{cancelled, interrupted_if_cancelled, journal_entries, new_run_id, still_to_undo};
pub(crate) use probe::sweep as sweep_probes;

/// What the caller asks for beyond the plan.
#[derive(Debug, Clone, Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches of one job, as the command line gives them"
)]
pub struct Options {
    /// Relaunch: never stop anything.
    pub relaunch: bool,
    /// Stop these containers (`--stop NAME`), named in the spec or not.
    pub stop: Vec<String>,
    /// Stop the conflicts the spec names without asking (`--yes`).
    pub yes: bool,
    /// Wait for another command that holds the deployment instead of failing.
    pub wait: bool,
    /// Set by `tune` for its variants, which run under the tune's locks (the tune's own and
    /// the deployment's, held for the whole sweep): neither is taken again. Any other provision
    /// or relaunch takes both, so that it cannot run in the middle of a tune (which has the
    /// deployment's container parked aside).
    pub within_tune: bool,
}

/// Who the job talks to while it runs.
pub struct Ctx<'a> {
    /// The engine the job changes; its state directory holds the journals, locks, records and
    /// the verified-files cache.
    pub engine: &'a vlmctl_lifecycle::Engine,
    /// Events go here.
    pub sink: &'a mut dyn Sink,
    /// Asked before a conflict the spec names is stopped (unless `yes`).
    pub confirm: &'a mut dyn Confirm,
    /// Asks the job to stop.
    pub cancel: &'a Cancel,
}

/// How a provision ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum Provisioned {
    /// Launched (or replaced), ready, checked and recorded.
    Ready {
        /// The record.
        record: Box<ProvisionRecord>,
        /// Where it was written.
        record_path: PathBuf,
        /// `http://host:port`.
        base_url: String,
    },
    /// The same spec was running and healthy: nothing was done (relaunch fast path).
    Unchanged {
        /// Its container id.
        container_id: String,
        /// `http://host:port`.
        base_url: String,
        /// The model id clients must use.
        model: String,
    },
}

/// Provisions (or, with `opts.relaunch`, relaunches) the plan's deployment.
pub async fn provision(
    plan: &DeploymentPlan,
    opts: &Options,
    hub: &HubClient,
    ctx: Ctx<'_>,
) -> Result<Provisioned, DeployError> {
    let Ctx {
        engine,
        sink,
        confirm,
        cancel,
    } = ctx;
    let state = engine.state_dir();
    let started = Instant::now();
    let spec = &plan.spec;
    plan.require_pinned()?;
    plan.require_api_key()?;
    plan.check_interface_on(engine)?;
    let command = if opts.relaunch {
        "relaunch"
    } else {
        "provision"
    };
    // One command per deployment, for the whole job; the kernel drops it however we end. Not
    // in the middle of a tune of it either (a tune's variant runs under the tune's locks).
    let _locks = if opts.within_tune {
        None
    } else {
        let tune =
            crate::lock::tune_guard(state, &spec.name, command, opts.wait, sink, cancel).await?;
        let own = crate::lock::acquire(state, &spec.name, command, opts.wait, sink, cancel).await?;
        Some((tune, own))
    };

    // A run that died part-way (we hold the lock, so it is not running) left its work to undo:
    // that comes first, or this run's journal would overwrite what the undo needs. Only that
    // run's work: what an earlier successful run stopped stays stopped.
    let jpath = journal::path(state, &spec.name);
    undo_dead_run(engine, &jpath, sink).await?;

    // Read-only until the first stop: a cancel simply ends the job.
    let prepared = prepare(engine, plan, opts, hub, sink);
    let (docker, report, repaired) = tokio::select! {
        r = prepared => r?,
        why = cancel.cancelled() => return Err(DeployError::Interrupted { why }),
    };
    // A GPU probe that a killed run of this deployment left behind.
    probe::sweep(&docker, &spec.name, sink).await?;

    let to_stop = conflicts_to_stop(&report.conflicts, opts, sink, confirm, cancel).await?;
    let run = Run {
        engine,
        docker: &docker,
        plan,
        jpath,
        id: new_run_id(),
        started,
    };
    let result = match stop_conflicts(&run, &to_stop, sink, cancel).await {
        Ok(()) => launch_and_check(&run, report.results, &repaired, sink, cancel).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(done) => {
            settle(&run, sink).await;
            Ok(done)
        }
        Err(e) => Err(undo_run(&run, interrupted_if_cancelled(e, cancel), sink).await),
    }
}

/// The conflicts shown, chosen (asking `confirm`, which a cancel interrupts with nothing
/// changed) and said about. A relaunch stops nothing and shows nothing.
async fn conflicts_to_stop(
    conflicts: &[ConflictInfo],
    opts: &Options,
    sink: &mut dyn Sink,
    confirm: &mut dyn Confirm,
    cancel: &Cancel,
) -> Result<Vec<ConflictInfo>, DeployError> {
    if opts.relaunch {
        return Ok(Vec::new());
    }
    let mut yes_to = Vec::new();
    for c in conflicts {
        sink.event(Event::ConflictFound {
            conflict: c.clone(),
        });
        // Asked only where the answer decides (the pure rule below asks the same way).
        if c.named_in_spec && !opts.yes && !opts.stop.contains(&c.name) {
            let answer = tokio::select! {
                a = confirm.stop(c) => a,
                why = cancel.cancelled() => return Err(DeployError::Interrupted { why }),
            };
            if !answer {
                // A "no" cancels the provision, as Ctrl-C at the prompt does: nothing was
                // stopped or started yet (the runbook's Gate 1: stop it, or cancel).
                return Err(DeployError::Declined {
                    name: c.name.clone(),
                });
            }
            yes_to.push(c.id.clone());
        }
    }
    let to_stop: Vec<ConflictInfo> = choose_conflicts(conflicts, &opts.stop, opts.yes, &mut |c| {
        yes_to.contains(&c.id)
    })
    .into_iter()
    .cloned()
    .collect();
    for c in conflicts
        .iter()
        .filter(|c| !to_stop.iter().any(|x| x.id == c.id))
    {
        sink.event(Event::NotStopping {
            name: c.name.clone(),
        });
    }
    for name in &opts.stop {
        if !conflicts.iter().any(|c| &c.name == name) {
            sink.event(Event::StopIgnored { name: name.clone() });
        }
    }
    Ok(to_stop)
}

/// A run that passed its checks: its launch is complete, the container it replaced goes.
/// Neither can fail the run any more: the server is up and checked, and saying so beats
/// tearing down a working deployment.
async fn settle(run: &Run<'_>, sink: &mut dyn Sink) {
    let spec = &run.plan.spec;
    let completed = journal::complete_launch(&run.jpath);
    if let Ok(Some(previous)) = &completed
        && let Err(e) = containers::remove_aside(run.docker, &previous.id, &spec.name).await
    {
        sink.event(Event::Warning {
            message: format!(
                "the container {spec} replaced could not be removed ({e}): remove \
                         {aside} yourself (`docker rm {aside}`)",
                spec = spec.name,
                aside = containers::aside_name(&spec.name)
            ),
        });
    }
    if let Err(e) = completed {
        sink.event(Event::Warning {
            message: format!(
                "{} is up, but its journal could not be updated ({e}); `vlmctl restore` \
                 would remove it as half-started: use `vlmctl teardown` to undo it instead",
                spec.name
            ),
        });
    }
}

/// Undoes the work of a run of this deployment that died before it finished (its half-started
/// container removed, the container it set aside put back, what it stopped started), and says
/// so.
async fn undo_dead_run(
    engine: &vlmctl_lifecycle::Engine,
    jpath: &Path,
    sink: &mut dyn Sink,
) -> Result<(), DeployError> {
    let Ok(Some(j)) = journal::read(jpath) else {
        return Ok(());
    };
    let Some(dead) = j.launch.filter(|l| !l.completed) else {
        return Ok(());
    };
    let docker = engine.connect().await?;
    let mut undone = journal::restore(&docker, jpath, Scope::Run(&dead.run_id))
        .await
        .map_err(|e| DeployError::RestoreIncomplete {
            still_stopped: vlmctl_lifecycle::journal::still_stopped(jpath),
            journal: jpath.to_owned(),
            source: Box::new(e),
        })?;
    crate::liveness::check_restored(engine, &docker, jpath, &mut undone).await;
    if let Some(e) = crate::liveness::failure(
        &undone,
        format!("undid the work of a run of {} that died", dead.container),
        jpath,
    ) {
        return Err(e);
    }
    sink.event(Event::Warning {
        message: format!(
            "a run of {} died before it finished; undid its work first ({})",
            dead.container,
            crate::error::undone_summary(&undone)
        ),
    });
    Ok(())
}

/// Gates (fetching missing weights), the blocking check, the image: nothing changes here but
/// the model files. Returns, beside the daemon and the gates, the files that were put in place
/// now (fetched here, or pushed to the host): a server already running on that directory maps
/// the earlier bytes, not these.
async fn prepare(
    engine: &vlmctl_lifecycle::Engine,
    plan: &DeploymentPlan,
    opts: &Options,
    hub: &HubClient,
    sink: &mut dyn Sink,
) -> Result<(Docker, GateReport, Vec<String>), DeployError> {
    let spec = &plan.spec;
    sink.event(Event::GatesStarted {
        deployment: spec.name.clone(),
        image: spec.image.clone(),
        port: spec.server.port,
    });
    let (docker, mut report) = crate::gates::run(engine, plan, true).await;
    let fetched = fetch_if_needed(plan, hub, &mut report, sink).await;
    // Shown also when the fetch failed (the hub unreachable): every other gate's result comes
    // with that error, not one problem per run.
    sink.event(Event::Gates {
        results: report.results.clone(),
    });
    let mut repaired = match fetched {
        Ok(r) => r,
        // The files under a running server are bad and stay so: say that it still serves them.
        Err(e) => return Err(bad_under_server(&docker, &spec.name, e).await),
    };
    let docker = docker?;
    let blocking = blocking_gates(&report, opts.relaunch);
    if !blocking.is_empty() {
        return Err(DeployError::GateFailed {
            names: blocking.iter().map(|r| r.name.clone()).collect(),
            hint: blocking.iter().find_map(|r| r.hint.clone()),
        });
    }
    let platform = (spec.platform != "host").then_some(spec.platform.as_str());
    let pulled = containers::ensure_image(&docker, &spec.image, platform, &mut |step| {
        sink.event(Event::Pulling {
            image: spec.image.clone(),
            step: step.clone(),
        });
    })
    .await?;
    sink.event(Event::Pulled {
        image: spec.image.clone(),
        pulled,
    });
    // On another host the weights must be there too: checked there, pushed where missing.
    if engine.is_remote() {
        let placed = crate::push::to_host(
            engine,
            &docker,
            &spec.image,
            &plan.mount.dir,
            &crate::push::wants(plan),
            &std::collections::BTreeSet::new(),
            sink,
        )
        .await?;
        repaired.extend(
            placed
                .into_iter()
                .filter(|f| !f.already)
                .map(|f| format!("{} pushed to the host", f.name)),
        );
    }
    Ok((docker, report, repaired))
}

/// The weights gate failing for missing files is what `provision` fixes: fetch, then verify.
/// Returns the files put in place (not those found already there).
async fn fetch_if_needed(
    plan: &DeploymentPlan,
    hub: &HubClient,
    report: &mut GateReport,
    sink: &mut dyn Sink,
) -> Result<Vec<String>, DeployError> {
    let mut placed = Vec::new();
    if !report
        .results
        .iter()
        .any(|r| r.name == "weights" && r.status == GateStatus::Fail)
    {
        return Ok(placed);
    }
    sink.event(Event::Fetching {
        model: plan.model.name.clone(),
    });
    for file in &plan.model.files {
        let progress = sink.download(&file.path);
        let outcome = hub
            .fetch(&plan.model, file, &plan.mount.dir, progress)
            .await?;
        if outcome != vlmctl_weights::FetchOutcome::AlreadyPresent {
            placed.push(format!("{} fetched again", file.path));
        }
        sink.event(Event::Fetched {
            file: file.path.clone(),
            size: file.size,
            outcome,
        });
    }
    let again = crate::gates::weights_gate(plan.jobs.clone(), None).await;
    if let Some(r) = report.results.iter_mut().find(|r| r.name == "weights") {
        *r = again;
    }
    Ok(placed)
}

/// `e` (the model files could not be put right), said of the deployment's running server when
/// one runs: it keeps serving what it mapped.
async fn bad_under_server(
    docker: &Result<Docker, vlmctl_lifecycle::LifecycleError>,
    name: &str,
    e: DeployError,
) -> DeployError {
    let Ok(docker) = docker else {
        return e;
    };
    let running = docker
        .inspect_container(name, None)
        .await
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.running)
        .unwrap_or(false);
    if running {
        DeployError::WeightsBadUnderServer {
            deployment: name.to_owned(),
            source: Box::new(e),
        }
    } else {
        e
    }
}

/// What one run works with.
struct Run<'a> {
    engine: &'a vlmctl_lifecycle::Engine,
    docker: &'a Docker,
    plan: &'a DeploymentPlan,
    /// The deployment's journal.
    jpath: PathBuf,
    /// This run's id (container label, journal entries).
    id: String,
    started: Instant,
}

/// Journals and stops the chosen conflicts.
async fn stop_conflicts(
    run: &Run<'_>,
    to_stop: &[ConflictInfo],
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<(), DeployError> {
    if to_stop.is_empty() {
        return Ok(());
    }
    for c in to_stop.iter().filter(|c| c.restart_policy == "always") {
        sink.event(Event::Warning {
            message: format!(
                "{} has restart policy `always`: a daemon restart brings it back and it takes its memory back",
                c.name
            ),
        });
    }
    let entries = journal_entries(&run.plan.spec, to_stop, &run.id);
    let names: Vec<String> = to_stop.iter().map(|c| c.name.clone()).collect();
    sink.event(Event::Stopping {
        names: names.clone(),
        journal: run.jpath.clone(),
    });
    journal::add_stops(&run.jpath, &run.plan.spec.name, &entries)?;
    // One at a time, and a cancel ends it between two stops or during one: a stop already
    // issued is marked so in the journal, and the undo waits it out before starting the
    // container again (dockerd finishes a stop whose caller went away).
    for e in &entries {
        cancelled(cancel)?;
        tokio::select! {
            r = journal::stop_one(run.docker, &run.jpath, e) => r?,
            why = cancel.cancelled() => {
                // Said at once: the undo waits for dockerd to finish this stop (up to the
                // container's stop timeout) before it can start it again.
                sink.event(Event::InterruptedDuringStop {
                    name: e.name.clone(),
                    stop_timeout_s: e.stop_timeout_s,
                });
                return Err(DeployError::Interrupted { why });
            }
        }
    }
    sink.event(Event::Stopped { names });
    Ok(())
}

/// What the launch tells the journal, step by step. Not raced against a cancel: the journal
/// learns of the container before the create call and again with its id before the start, and
/// the launch runs to its end so that what it did is known; a cancel meanwhile is acted on
/// right after.
fn launch_recorder<'a>(
    run: &'a Run<'_>,
) -> impl FnMut(LaunchStep<'_>) -> Result<(), vlmctl_lifecycle::LifecycleError> + 'a {
    let name = &run.plan.spec.name;
    let mut rec = LaunchRecord {
        run_id: run.id.clone(),
        container: name.clone(),
        id: None,
        completed: false,
        previous: None,
    };
    move |step: LaunchStep<'_>| {
        match step {
            LaunchStep::SettingAside { id, running } => {
                rec.previous = Some(journal::Previous {
                    id: id.to_owned(),
                    running,
                    since_unix: vlmctl_lifecycle::now_unix(),
                });
            }
            LaunchStep::Creating => {}
            LaunchStep::Created { id } => rec.id = Some(id.to_owned()),
        }
        journal::record_launch(&run.jpath, name, rec.clone())
    }
}

async fn launch_and_check(
    run: &Run<'_>,
    gates: Vec<GateResult>,
    repaired: &[String],
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Provisioned, DeployError> {
    // A cancel that came during the stops is acted on now.
    cancelled(cancel)?;
    let Run {
        engine,
        docker,
        plan,
        ..
    } = *run;
    let spec = &plan.spec;
    let base = plan.base_url();
    // The server as this process reaches it (through SSH on a remote host); `base` is what
    // clients on that host use, and what the record says.
    let here = plan.reach_url(engine).await?;
    let mut record = launch_recorder(run);
    // A server already running this spec maps the files it opened when it started: when they
    // were damaged, repaired or replaced since, it serves other bytes than the verified ones,
    // and is replaced (set aside, put back if the new one fails) instead of kept.
    let at = probe::Target {
        engine,
        docker,
        plan,
        run_id: &run.id,
    };
    let (launch, probed) = probe::launch_fresh(&at, repaired, &mut record, sink, cancel).await?;
    sink.event(Event::Launched {
        deployment: spec.name.clone(),
        launch: launch.clone(),
    });
    cancelled(cancel)?;
    let id = match &launch {
        Launch::Unchanged { id } | Launch::Started { id, .. } => id.clone(),
    };
    // Waiting and checking may be cut short by a cancel at any point: the container is known.
    let check = async {
        let ready = match containers::wait_ready(
            docker,
            &spec.name,
            &here,
            Duration::from_secs(spec.health.timeout_s),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return Err(cuda_failure_at_load(docker, spec, e).await),
        };
        if matches!(launch, Launch::Unchanged { .. }) {
            let model = smoke::served_model(&here, plan.api_key.as_deref()).await?;
            return Ok(Err(model));
        }
        let smoke = checked_smoke(docker, plan, &here).await?;
        let reading = memory::measure(engine, spec, &id).await?;
        let proof = prove(docker, plan, &reading, probed.as_ref()).await?;
        // After the proof: a server on the CPU holds no GPU memory, and the proof says more.
        memory::require_measured(spec, &reading)?;
        Ok::<_, DeployError>(Ok((ready, smoke, reading, proof)))
    };
    let checked = tokio::select! {
        r = check => r?,
        why = cancel.cancelled() => return Err(DeployError::Interrupted { why }),
    };
    let (ready, smoke, reading, proof) = match checked {
        Ok(c) => c,
        Err(model) => {
            return Ok(Provisioned::Unchanged {
                container_id: id,
                base_url: base,
                model,
            });
        }
    };
    sink.event(Event::Ready {
        startup_s: ready.as_secs_f64(),
    });
    if let Some(message) = memory::unmeasured_warning(spec, &reading) {
        sink.event(Event::Warning { message });
    }
    sink.event(Event::SmokeDone {
        smoke: smoke.clone(),
    });
    let memory = reading.process_mib;
    let record = record_of(run, launch, id, gates, ready, smoke, (memory, proof)).await;
    let record_path = record.write(run.engine.state_dir())?;
    Ok(Provisioned::Ready {
        record: Box::new(record),
        record_path,
        base_url: base,
    })
}

async fn record_of(
    run: &Run<'_>,
    launch: Launch,
    container_id: String,
    gates: Vec<GateResult>,
    ready: Duration,
    smoke: Smoke,
    (server_gpu_mib, gpu_proof): (Option<u64>, GpuProof),
) -> ProvisionRecord {
    let spec = &run.plan.spec;
    let image = run.docker.inspect_image(&spec.image).await.ok();
    ProvisionRecord {
        version: RECORD_VERSION,
        deployment: spec.name.clone(),
        spec: spec.clone(),
        spec_sha256: spec.sha256(),
        image: spec.image.clone(),
        image_id: image.as_ref().and_then(|i| i.id.clone()),
        image_digests: image.and_then(|i| i.repo_digests),
        lock_sha256: run.plan.mount.lock_sha256.clone(),
        model: run.plan.model.name.clone(),
        container_id,
        launch,
        gates,
        startup_s: ready.as_secs_f64(),
        provision_s: run.started.elapsed().as_secs_f64(),
        smoke,
        server_gpu_mib,
        gpu_proof,
        vlmctl: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Undoes what this run did (its half-started container, the containers it stopped; never what
/// an earlier run of the deployment did). When that is not possible (the daemon went away),
/// the error says exactly what is still to undo.
async fn undo_run(run: &Run<'_>, cause: DeployError, sink: &mut dyn Sink) -> DeployError {
    match journal::restore(run.docker, &run.jpath, Scope::Run(&run.id)).await {
        Ok(mut undone) => {
            crate::liveness::check_restored(run.engine, run.docker, &run.jpath, &mut undone).await;
            let nothing = undone.started.is_empty()
                && undone.already_running.is_empty()
                && undone.missing.is_empty()
                && undone.removed.is_empty()
                && undone.put_back.is_empty();
            if nothing {
                return cause;
            }
            if let Some(e) = &undone.journal_error {
                sink.event(Event::Warning {
                    message: format!(
                        "everything this run did was undone, but its journal {} could not be \
                         updated ({e}); it still lists them, and `vlmctl restore` will find them \
                         back already",
                        run.jpath.display()
                    ),
                });
            }
            sink.event(Event::Undone {
                restored: undone.clone(),
            });
            DeployError::Undone {
                cause: Box::new(cause),
                undone: Box::new(undone),
            }
        }
        Err(undo_error) => DeployError::UndoFailed {
            cause: Box::new(cause),
            undo_error: Box::new(undo_error),
            left: still_to_undo(&run.jpath, &run.id),
            deployment: run.plan.spec.name.clone(),
            journal: run.jpath.clone(),
        },
    }
}
