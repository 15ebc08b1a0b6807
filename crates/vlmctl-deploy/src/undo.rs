//! `teardown` and `restore`: undoing a deployment, or whatever the journals (and the tune
//! journals) say is still to undo, each under its deployment's lock.

use std::path::{Path, PathBuf};

use serde::Serialize;
use vlmctl_lifecycle::journal::{self, Restored, Scope};
use vlmctl_lifecycle::{Docker, LifecycleError, containers};

use crate::DeployError;
use crate::events::{Cancel, Sink};

/// What `teardown` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TornDown {
    /// The deployment.
    pub container: String,
    /// Whether a container was removed (false: already torn down).
    pub removed: bool,
    /// What its journal brought back.
    pub restored: Restored,
}

/// Stops and removes the deployment's container (only one vlmctl created) and restores what
/// its journal says was stopped.
pub async fn teardown(
    engine: &vlmctl_lifecycle::Engine,
    name: &str,
    wait: bool,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<TornDown, DeployError> {
    if !vlmctl_lifecycle::spec::is_container_name(name) {
        return Err(DeployError::NotADeploymentName {
            name: name.to_owned(),
        });
    }
    // A tune's parked original is the deployment itself, set aside: never torn down as one.
    refuse_parked(name)?;
    let state = engine.state_dir();
    // Not in the middle of a tune of it (its container is parked aside then).
    let _tune = crate::lock::tune_guard(state, name, "teardown", wait, sink, cancel).await?;
    let _lock = crate::lock::acquire(state, name, "teardown", wait, sink, cancel).await?;
    let docker = engine.connect().await?;
    // Docker also takes an id (or an id prefix) for a name: what the argument names is the
    // container's own name, and that is what is checked, locked and torn down.
    let resolved = containers::name_of(&docker, name).await?;
    let (name, _tune, _lock) = match resolved {
        Some(actual) if actual != name => {
            refuse_parked(&actual)?;
            let tune =
                crate::lock::tune_guard(state, &actual, "teardown", wait, sink, cancel).await?;
            let lock = crate::lock::acquire(state, &actual, "teardown", wait, sink, cancel).await?;
            (actual, Some(tune), Some(lock))
        }
        _ => (name.to_owned(), None, None),
    };
    let name = name.as_str();
    let removed = match containers::teardown(&docker, name).await {
        Err(LifecycleError::NameTaken { container }) => {
            return Err(DeployError::NotOurs { container });
        }
        other => other?,
    };
    // A GPU probe that a killed provision of it left behind.
    crate::provision::sweep_probes(&docker, name, sink).await?;
    let jpath = journal::path(state, name);
    // A run that died while replacing the deployment's container had set the old one aside: a
    // teardown ends the deployment, so that one goes too, never started again first.
    journal::drop_previous(&docker, &jpath).await?;
    let restored = journal::restore(&docker, &jpath, Scope::All)
        .await
        .map_err(|e| incomplete(e, &jpath))?;
    containers::remove_aside_of(&docker, name).await?;
    Ok(TornDown {
        container: name.to_owned(),
        removed,
        restored,
    })
}

/// [`DeployError::ParkedByTune`] when `name` is a tune's parked original.
fn refuse_parked(name: &str) -> Result<(), DeployError> {
    match crate::tune::parked_of(name) {
        Some(deployment) => Err(DeployError::ParkedByTune {
            name: name.to_owned(),
            deployment: deployment.to_owned(),
        }),
        None => Ok(()),
    }
}

/// One journal's restore.
#[derive(Debug)]
pub struct JournalRestore {
    /// The journal.
    pub journal: PathBuf,
    /// What it did, or why it could not.
    pub outcome: Result<Restored, DeployError>,
}

/// Replays every journal in `engine`'s state folder, each under its deployment's lock; one that
/// cannot be read or restored does not stop the others.
pub async fn restore_all(
    engine: &vlmctl_lifecycle::Engine,
    wait: bool,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Vec<JournalRestore>, DeployError> {
    let state = engine.state_dir();
    let paths = journal::all(state);
    let tunes = crate::tune::journal::all(state);
    let docker = if paths.is_empty() && tunes.is_empty() {
        // Nothing journalled: only GPU probes left by killed runs may be there, and a daemon
        // that cannot be reached has none to remove.
        match engine.connect().await {
            Ok(d) => d,
            Err(_) => return Ok(Vec::new()),
        }
    } else {
        engine.connect().await?
    };
    sweep_all_probes(&docker, state, sink, cancel).await;
    let mut out = Vec::new();
    for j in paths {
        let outcome = restore_one(&docker, state, &j, wait, sink, cancel).await;
        out.push(JournalRestore {
            journal: j,
            outcome,
        });
    }
    // A tune that died: its variant goes and the deployment's original comes back, under the
    // tune's lock (a tune still running is not disturbed).
    for j in tunes {
        let deployment = journal::deployment_of(&j);
        let outcome = async {
            let _lock = crate::lock::acquire(
                state,
                &crate::tune::lock_name(&deployment),
                "restore",
                wait,
                sink,
                cancel,
            )
            .await?;
            crate::tune::restore(
                engine,
                &docker,
                &j,
                crate::tune::Held::No { wait },
                sink,
                cancel,
            )
            .await
        }
        .await;
        out.push(JournalRestore {
            journal: j,
            outcome,
        });
    }
    Ok(out)
}

/// Removes the GPU probes that killed runs left, each under its deployment's lock, taken
/// without waiting: a deployment whose lock is held is being provisioned, and its probe is that
/// run's (it removes it itself).
async fn sweep_all_probes(docker: &Docker, state: &Path, sink: &mut dyn Sink, cancel: &Cancel) {
    let Ok(deployments) = containers::probed_deployments(docker).await else {
        return;
    };
    for d in deployments {
        if let Ok(_lock) = crate::lock::acquire(state, &d, "restore", false, sink, cancel).await
            && let Err(e) = crate::provision::sweep_probes(docker, &d, sink).await
        {
            sink.event(crate::events::Event::Warning {
                message: format!(
                    "{} could not be removed ({e}): remove it yourself (`docker rm -f {}`)",
                    containers::probe_name(&d),
                    containers::probe_name(&d)
                ),
            });
        }
    }
}

async fn restore_one(
    docker: &Docker,
    state: &Path,
    j: &Path,
    wait: bool,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Restored, DeployError> {
    let deployment = journal::deployment_of(j);
    let _lock = crate::lock::acquire(state, &deployment, "restore", wait, sink, cancel).await?;
    journal::read(j)?;
    journal::restore(docker, j, Scope::All)
        .await
        .map_err(|e| incomplete(e, j))
}

/// A journal restore that stopped part-way: what it still lists.
fn incomplete(source: LifecycleError, j: &Path) -> DeployError {
    DeployError::RestoreIncomplete {
        source: Box::new(source),
        still_stopped: journal::still_stopped(j),
        journal: j.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tunes_parked_original_is_refused_before_anything_is_touched() {
        let tmp = tempfile::tempdir().unwrap();
        let mut events = Vec::new();
        let e = teardown(
            &vlmctl_lifecycle::Engine::local(tmp.path()),
            &crate::tune::parked_name("web"),
            false,
            &mut events,
            &Cancel::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, DeployError::ParkedByTune { name, deployment } if name == "web-vlmctl-tune" && deployment == "web"),
            "{e:?}"
        );
        assert!(e.hint().unwrap().contains("vlmctl teardown web"), "{e}");
        // Refused before any lock was taken (nor the daemon reached).
        assert!(!tmp.path().join("locks").exists());
    }
}
