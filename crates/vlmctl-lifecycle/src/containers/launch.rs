//! Launch from a spec (idempotent by spec hash, the old container set aside until the new one
//! passed its checks) and teardown.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{CreateContainerOptionsBuilder, StopContainerOptionsBuilder};

use super::aside::{remove, set_aside, start_error};
use super::image::image_health_test;
use super::list::existing;
use super::plan::ContainerPlan;
use crate::LifecycleError;
use crate::spec::{ModelMount, Spec};

/// What `launch` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Launch {
    /// A container with the same spec hash is running: nothing was done.
    Unchanged {
        /// Its id.
        id: String,
    },
    /// Created and started; `replaced` when an older managed container was set aside first
    /// (renamed to `aside_name` and stopped; the caller removes it once the new one passed its
    /// checks, or puts it back).
    Started {
        /// New id.
        id: String,
        /// Whether an existing container of that name was replaced.
        replaced: bool,
    },
}

/// What `launch` is about to do or has just done, for the caller to record before the next
/// await point (the restore journal), so that a run that dies there can be undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchStep<'a> {
    /// About to set the deployment's current container aside (renamed to `aside_name`,
    /// stopped) to make room for the new one; it is put back if the new one fails.
    SettingAside {
        /// Its id.
        id: &'a str,
        /// Whether it was running.
        running: bool,
    },
    /// About to send the create call.
    Creating,
    /// Created (not yet started) with this id.
    Created {
        /// Container id.
        id: &'a str,
    },
}

/// Creates and starts the container, or does nothing when the same spec, lock entry and
/// models directory are already running
/// (the caller probes `/health`). A container of that name that vlmctl did not create is
/// never touched. `run_id` becomes the container's [`crate::RUN_LABEL`] (beside
/// `extra_labels`); `record` is told
/// before the create and after it, and an error from it stops the launch (a created container
/// is then removed again).
pub async fn launch(
    docker: &Docker,
    spec: &Spec,
    mount: &ModelMount,
    api_key: Option<&str>,
    run_id: &str,
    extra_labels: &HashMap<String, String>,
    record: &mut dyn FnMut(LaunchStep<'_>) -> Result<(), LifecycleError>,
) -> Result<Launch, LifecycleError> {
    launch_inner(
        docker,
        spec,
        mount,
        api_key,
        (run_id, extra_labels),
        false,
        record,
    )
    .await
}

/// [`launch`], except that a running container serving the same spec, lock entry and models
/// directory is replaced as well (set aside, then put back if the new one fails): the caller
/// found that the files under it changed since it started (damaged, repaired or replaced), so
/// that the running server may map other bytes than the verified ones.
pub async fn launch_replacing(
    docker: &Docker,
    spec: &Spec,
    mount: &ModelMount,
    api_key: Option<&str>,
    run_id: &str,
    extra_labels: &HashMap<String, String>,
    record: &mut dyn FnMut(LaunchStep<'_>) -> Result<(), LifecycleError>,
) -> Result<Launch, LifecycleError> {
    launch_inner(
        docker,
        spec,
        mount,
        api_key,
        (run_id, extra_labels),
        true,
        record,
    )
    .await
}

pub(super) async fn launch_inner(
    docker: &Docker,
    spec: &Spec,
    mount: &ModelMount,
    api_key: Option<&str>,
    labels: (&str, &HashMap<String, String>),
    replace_same: bool,
    record: &mut dyn FnMut(LaunchStep<'_>) -> Result<(), LifecycleError>,
) -> Result<Launch, LifecycleError> {
    match make_room(docker, spec, mount, replace_same, record).await? {
        Room::Unchanged { id } => Ok(Launch::Unchanged { id }),
        Room::Free { replaced } => {
            create_and_start(docker, spec, mount, api_key, labels, replaced, record).await
        }
    }
}

/// What [`make_room`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    /// A container with the same spec hash, lock entry and models directory is running:
    /// nothing was done (nothing is to be created).
    Unchanged {
        /// Its id.
        id: String,
    },
    /// The name is free now; `replaced` when the deployment's earlier container was set aside
    /// (stopped: its port and memory are free) to make room.
    Free {
        /// Whether a container was set aside.
        replaced: bool,
    },
}

/// The first half of [`launch`]: finds the deployment's container and, unless it runs this
/// spec already (and `replace_same` is false), sets it aside (recorded first). What may run
/// between the two halves needs the deployment's port and memory free (the GPU probe).
pub async fn make_room(
    docker: &Docker,
    spec: &Spec,
    mount: &ModelMount,
    replace_same: bool,
    record: &mut dyn FnMut(LaunchStep<'_>) -> Result<(), LifecycleError>,
) -> Result<Room, LifecycleError> {
    let Some(e) = existing(docker, &spec.name).await? else {
        return Ok(Room::Free { replaced: false });
    };
    if !e.managed {
        return Err(LifecycleError::NameTaken {
            container: spec.name.clone(),
        });
    }
    // A changed lock entry or models directory is a change too, not only the spec.
    if e.serves(spec, mount) && !replace_same {
        return Ok(Room::Unchanged { id: e.id });
    }
    // Kept, not removed, until the new one proves itself: a failing relaunch puts it back.
    record(LaunchStep::SettingAside {
        id: &e.id,
        running: e.running,
    })?;
    set_aside(docker, &e.id, &spec.name, e.running).await?;
    Ok(Room::Free { replaced: true })
}

/// The second half of [`launch`], after [`make_room`] said [`Room::Free`]: creates and starts
/// the container (recorded before the create and after it; a created container that cannot be
/// recorded or started is removed again). `labels` are the run id ([`crate::RUN_LABEL`]) and
/// the extra labels.
pub async fn create_and_start(
    docker: &Docker,
    spec: &Spec,
    mount: &ModelMount,
    api_key: Option<&str>,
    (run_id, extra_labels): (&str, &HashMap<String, String>),
    replaced: bool,
    record: &mut dyn FnMut(LaunchStep<'_>) -> Result<(), LifecycleError>,
) -> Result<Launch, LifecycleError> {
    let image_test = image_health_test(docker, &spec.image).await;
    let mut body = ContainerPlan::of(spec, mount, image_test.as_deref()).to_bollard(api_key);
    if let Some(labels) = body.labels.as_mut() {
        labels.extend(extra_labels.clone());
        labels.insert(crate::RUN_LABEL.to_owned(), run_id.to_owned());
    }
    let opts = CreateContainerOptionsBuilder::default()
        .name(&spec.name)
        .build();
    record(LaunchStep::Creating)?;
    let created = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|source| LifecycleError::Docker {
            action: format!("create container {} from {}", spec.name, spec.image),
            source,
        })?;
    if let Err(e) = record(LaunchStep::Created { id: &created.id }) {
        let _ = remove(docker, &created.id, &spec.name).await;
        return Err(e);
    }
    if let Err(source) = docker.start_container(&created.id, None).await {
        // Nothing half-done: a container that never started is removed again.
        let _ = remove(docker, &created.id, &spec.name).await;
        return Err(start_error(&spec.name, source));
    }
    Ok(Launch::Started {
        id: created.id,
        replaced,
    })
}

/// Stops and removes the deployment's container; idempotent (absent is fine). Refuses a
/// container vlmctl did not create.
pub async fn teardown(docker: &Docker, name: &str) -> Result<bool, LifecycleError> {
    let Some(e) = existing(docker, name).await? else {
        return Ok(false);
    };
    if !e.managed {
        return Err(LifecycleError::NameTaken {
            container: name.to_owned(),
        });
    }
    if e.running {
        let _ = docker
            .stop_container(
                &e.id,
                Some(StopContainerOptionsBuilder::default().t(10).build()),
            )
            .await;
    }
    remove(docker, &e.id, name).await?;
    Ok(true)
}
