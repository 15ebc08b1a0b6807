//! The launch of a provision or relaunch, with the GPU probe in it (issue #23): the deployment's
//! old container is set aside first (its port and GPU memory free), then a GPU spec's probe
//! loads the model once at the verbosity that logs devices and offloaded layers and is removed
//! ([`vlmctl_lifecycle::containers::ContainerPlan::probe`] says why its log proves what the
//! deployment does), then the deployment is created at the quiet verbosity (3). A probe whose log shows a CPU fallback fails the run before the deployment is
//! created; the run's undo puts back what it set aside and stopped.
//!
//! The probe never outlives its run: removed when its load ends, fails, times out or is
//! interrupted (a cancel from SIGINT or SIGTERM ends the wait at once). The launch is
//! journalled before the probe starts, so a run killed with SIGKILL meanwhile is a dead run,
//! which the next run undoes first (the journal's undo removes the containers carrying the
//! run's label, the probe included); [`sweep`] (at every provision and relaunch, teardown and
//! `restore`) removes any probe of the deployment still left.

use std::time::Duration;

use vlmctl_lifecycle::containers::{self, ContainerPlan, Launch, LaunchStep, ProbeEnd, Room};
use vlmctl_lifecycle::{Docker, LifecycleError};

use crate::DeployError;
use crate::events::{Cancel, Event, Sink};
use crate::offload::{self, LogEvidence};
use crate::plan::DeploymentPlan;
use crate::server_checks::{expect, not_on_gpu, stale_weights};

/// What a launch acts on: the engine and its client, the plan, the run's id (its containers'
/// label and journal entries).
#[derive(Clone, Copy)]
pub(super) struct Target<'a> {
    pub(super) engine: &'a vlmctl_lifecycle::Engine,
    pub(super) docker: &'a Docker,
    pub(super) plan: &'a DeploymentPlan,
    pub(super) run_id: &'a str,
}

/// The launch: a server already running this spec maps the files it opened when it started;
/// when they were damaged, repaired or replaced since, it serves other bytes than the verified
/// ones, and is replaced (set aside, put back if the new one fails) instead of kept. A fresh
/// container of a GPU spec is preceded by the GPU probe, whose evidence is returned (`None`:
/// no GPU asked for, or the running container kept).
pub(super) async fn launch_fresh(
    at: &Target<'_>,
    repaired: &[String],
    record: &mut dyn FnMut(LaunchStep<'_>) -> Result<(), LifecycleError>,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<(Launch, Option<LogEvidence>), DeployError> {
    let Target {
        engine,
        docker,
        plan,
        run_id,
    } = *at;
    let spec = &plan.spec;
    let replace_same = match stale_weights(engine, docker, plan, repaired).await {
        Some(why) => {
            sink.event(Event::WeightsChangedUnderServer {
                deployment: spec.name.clone(),
                why,
            });
            true
        }
        None => false,
    };
    let replaced =
        match containers::make_room(docker, spec, &plan.mount, replace_same, record).await? {
            Room::Unchanged { id } => return Ok((Launch::Unchanged { id }, None)),
            Room::Free { replaced } => replaced,
        };
    let evidence = if spec.gpus == vlmctl_lifecycle::spec::Gpus::None {
        None
    } else {
        // Journalled first, as the create is: a run killed while its probe loads is then a dead
        // run, which the next run undoes (the conflicts it stopped started again, its probe
        // found by the run's label and removed) before anything else.
        record(LaunchStep::Creating)?;
        Some(probe(docker, plan, run_id, sink, cancel).await?)
    };
    let labels = std::collections::HashMap::new();
    let launch = containers::create_and_start(
        docker,
        spec,
        &plan.mount,
        plan.api_key.as_deref(),
        (run_id, &labels),
        replaced,
        record,
    )
    .await?;
    Ok((launch, evidence))
}

/// Runs the GPU probe of `plan`'s deployment to the end of its load and removes it; its log's
/// evidence, already weighed without a memory figure ([`offload::decide`]): a CPU fallback
/// fails here, before the deployment is created.
async fn probe(
    docker: &Docker,
    plan: &DeploymentPlan,
    run_id: &str,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<LogEvidence, DeployError> {
    let spec = &plan.spec;
    sink.event(Event::Probing {
        deployment: spec.name.clone(),
        timeout_s: spec.health.timeout_s,
    });
    let body = ContainerPlan::of(spec, &plan.mount, None).probe_body();
    let id = containers::start_probe(docker, &spec.name, body, run_id).await?;
    let timeout = Duration::from_secs(spec.health.timeout_s);
    let followed = tokio::select! {
        r = containers::follow_probe(docker, &id, timeout) => r.map_err(DeployError::from),
        why = cancel.cancelled() => Err(DeployError::Interrupted { why }),
    };
    // Removed whatever happened; a removal that fails is the error only when nothing else is.
    let removed = containers::remove_probes(docker, &spec.name).await;
    let followed = followed?;
    removed?;
    let name = containers::probe_name(&spec.name);
    let evidence = offload::parse(&followed.log);
    match followed.end {
        ProbeEnd::Loaded { after } => sink.event(Event::Probed {
            deployment: spec.name.clone(),
            load_s: after.as_secs_f64(),
        }),
        ProbeEnd::Exited { exit_code } => {
            let lines: Vec<&str> = followed.log.lines().collect();
            let exited = LifecycleError::ExitedDuringLoad {
                container: name,
                exit_code,
                logs: lines[lines.len().saturating_sub(20)..].join("\n"),
            };
            return Err(match offload::cuda_failure_hint(&evidence, &spec.image) {
                Some(hint) => DeployError::CudaFailedAtLoad {
                    source: Box::new(exited),
                    hint,
                },
                None => exited.into(),
            });
        }
        ProbeEnd::TimedOut { waited_s } => {
            return Err(LifecycleError::NotReady {
                container: name,
                waited_s,
                last: "its log never said the model was loaded".to_owned(),
            }
            .into());
        }
    }
    if let Err(shortfall) = offload::decide(&evidence, &expect(plan), None) {
        let lines = evidence.lines.clone();
        return Err(not_on_gpu(
            plan,
            shortfall,
            &evidence,
            &crate::memory::Reading::default(),
            lines,
        ));
    }
    Ok(evidence)
}

/// Removes the GPU probes of `deployment` that a killed run left (a run holds the
/// deployment's lock while its probe exists, so under that lock any probe found is a
/// leftover), and says so.
pub(crate) async fn sweep(
    docker: &Docker,
    deployment: &str,
    sink: &mut dyn Sink,
) -> Result<(), DeployError> {
    let n = containers::remove_probes(docker, deployment).await?;
    if n > 0 {
        sink.event(Event::Warning {
            message: format!(
                "removed {} left by a run that was killed",
                containers::probe_name(deployment)
            ),
        });
    }
    Ok(())
}
