//! Setting a deployment's container aside, putting it back, parking it for a tune, removing
//! it: the container half of the restore journal ([`crate::journal`]).

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{RemoveContainerOptionsBuilder, StopContainerOptionsBuilder};

use super::list::existing;
use crate::LifecycleError;

/// The name a replaced container waits under until its successor passed its checks.
#[must_use]
pub fn aside_name(name: &str) -> String {
    format!("{name}-vlmctl-previous")
}

pub(super) async fn rename(
    docker: &Docker,
    id: &str,
    to: &str,
) -> Result<(), bollard::errors::Error> {
    let opts = bollard::query_parameters::RenameContainerOptionsBuilder::default()
        .name(to)
        .build();
    docker.rename_container(id, opts).await
}

/// Renames the deployment's container aside and stops it (freeing its port and memory).
pub(super) async fn set_aside(
    docker: &Docker,
    id: &str,
    name: &str,
    running: bool,
) -> Result<(), LifecycleError> {
    let aside = aside_name(name);
    if let Some(other) = existing(docker, &aside).await? {
        // This deployment's leftover of an earlier replacement whose removal failed (nothing
        // refers to it: a run that died with one set aside is undone before a new run starts).
        // Anything else of that name, another deployment's or someone's, is never touched.
        if !other.managed || other.deployment.as_deref() != Some(name) {
            return Err(LifecycleError::NameTaken { container: aside });
        }
        remove(docker, &other.id, &aside).await?;
    }
    let fail = |action: String| move |source| LifecycleError::Docker { action, source };
    rename(docker, id, &aside)
        .await
        .map_err(fail(format!("rename {name} to {aside}")))?;
    if running {
        docker
            .stop_container(
                id,
                Some(StopContainerOptionsBuilder::default().t(10).build()),
            )
            .await
            .map_err(fail(format!("stop {aside}")))?;
    }
    Ok(())
}

/// What [`put_back`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutBack {
    /// Renamed back and, if it had been running, running again.
    Done,
    /// It was in place already (the run died before setting it aside).
    InPlace,
    /// It is gone (removed by someone).
    Missing,
}

/// Puts a container that was set aside (at `since_unix`) back under `name`, started again if it
/// was running. A stop of it may still be in flight (the run that set it aside died during
/// it, and dockerd finishes the stop): that is waited out (its 10 s timeout and a margin)
/// before it is started, or it would go down again right after. Idempotent.
pub async fn put_back(
    docker: &Docker,
    id: &str,
    name: &str,
    was_running: bool,
    since_unix: u64,
) -> Result<PutBack, LifecycleError> {
    let fail = |action: String| move |source| LifecycleError::Docker { action, source };
    let info = match docker.inspect_container(id, None).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(PutBack::Missing),
        Err(source) => {
            return Err(fail(format!("inspect the container set aside for {name}"))(
                source,
            ));
        }
    };
    let in_place = info.name.as_deref().map(|n| n.trim_start_matches('/')) == Some(name);
    if !in_place {
        rename(docker, id, name).await.map_err(fail(format!(
            "rename the container set aside back to {name}"
        )))?;
    }
    let deadline = since_unix.saturating_add(ASIDE_STOP_TIMEOUT_S + 10);
    let mut running = info.state.and_then(|s| s.running).unwrap_or(false);
    while was_running && running && !in_place && crate::now_unix() <= deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        running = docker
            .inspect_container(id, None)
            .await
            .map_err(fail(format!("inspect {name}")))?
            .state
            .and_then(|s| s.running)
            .unwrap_or(false);
    }
    if was_running && !running {
        match docker.start_container(id, None).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(source) => return Err(fail(format!("start {name} again"))(source)),
        }
    }
    Ok(if in_place && running == was_running {
        PutBack::InPlace
    } else {
        PutBack::Done
    })
}

/// The deployment's container as it stands: what a job that replaces it for a while (a
/// settings sweep) records before it moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Full id.
    pub id: String,
    /// Whether it runs.
    pub running: bool,
    /// Whether vlmctl created it.
    pub managed: bool,
    /// Its spec-hash label.
    pub spec_sha: Option<String>,
}

/// The container named `name`, if there is one.
pub async fn find(docker: &Docker, name: &str) -> Result<Option<Found>, LifecycleError> {
    Ok(existing(docker, name).await?.map(|e| Found {
        id: e.id,
        running: e.running,
        managed: e.managed,
        spec_sha: e.spec_sha,
    }))
}

/// Renames container `id` to `to` and stops it (within 10 s, the wait
/// [`put_back`] allows for), so that `name` and its port are free until [`put_back`] undoes
/// it. A container already under `to` is only stopped (the move is idempotent).
pub async fn park(docker: &Docker, id: &str, name: &str, to: &str) -> Result<(), LifecycleError> {
    let fail = |action: String| move |source| LifecycleError::Docker { action, source };
    let info = docker
        .inspect_container(id, None)
        .await
        .map_err(fail(format!("inspect {name}")))?;
    if info.name.as_deref().map(|n| n.trim_start_matches('/')) != Some(to) {
        rename(docker, id, to)
            .await
            .map_err(fail(format!("rename {name} to {to}")))?;
    }
    if info.state.and_then(|s| s.running).unwrap_or(false) {
        let t = i32::try_from(ASIDE_STOP_TIMEOUT_S).unwrap_or(10);
        docker
            .stop_container(
                id,
                Some(StopContainerOptionsBuilder::default().t(t).build()),
            )
            .await
            .map_err(fail(format!("stop {to}")))?;
    }
    Ok(())
}

/// Seconds a set-aside container gets between SIGTERM and SIGKILL.
pub(super) const ASIDE_STOP_TIMEOUT_S: u64 = 10;

/// Removes `name`'s set-aside container, if there is one of this deployment's (another
/// deployment's or someone's container of that name is left alone). Returns whether it did.
pub async fn remove_aside_of(docker: &Docker, name: &str) -> Result<bool, LifecycleError> {
    let aside = aside_name(name);
    match existing(docker, &aside).await? {
        Some(e) if e.managed && e.deployment.as_deref() == Some(name) => {
            remove(docker, &e.id, &aside).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Removes a container that was set aside, once its successor passed its checks.
pub async fn remove_aside(docker: &Docker, id: &str, name: &str) -> Result<(), LifecycleError> {
    remove(docker, id, &aside_name(name)).await.map(|_| ())
}

pub(crate) fn start_error(name: &str, source: bollard::errors::Error) -> LifecycleError {
    let msg = source.to_string();
    if msg.contains("could not select device driver") && msg.contains("gpu") {
        return LifecycleError::NoGpuRuntime {
            container: name.to_owned(),
        };
    }
    if msg.contains("address already in use") {
        return LifecycleError::PortTaken {
            container: name.to_owned(),
            detail: msg,
        };
    }
    LifecycleError::Docker {
        action: format!("start container {name}"),
        source,
    }
}

/// Force-removes a container; one already gone is fine. Returns whether it removed one.
pub(crate) async fn remove(docker: &Docker, id: &str, name: &str) -> Result<bool, LifecycleError> {
    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(source) => Err(LifecycleError::Docker {
            action: format!("remove container {name}"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    /// vlmctl-test removes a test deployment's other containers by these names without
    /// depending on this crate (it is below every crate's tests): its copy must follow ours.
    #[test]
    fn the_test_cleanup_knows_every_name_a_deployment_leaves() {
        let name = "srv";
        assert_eq!(
            vlmctl_test::deployment_containers(name),
            [
                name.to_owned(),
                super::aside_name(name),
                format!("{name}{}", crate::spec::TUNE_PARKED_SUFFIX),
                super::super::probe_name(name),
            ]
        );
    }
}
