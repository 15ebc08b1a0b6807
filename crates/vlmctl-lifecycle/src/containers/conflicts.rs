//! Conflicts: the containers a deployment stops before it starts (named in the spec, or holding
//! the GPU memory it needs), with their stop timeouts.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;

use super::ready::log_tail;
use crate::LifecycleError;
use crate::spec::Spec;

/// Stop timeout when the container sets none of its own (`docker stop` would use 10 s; the
/// services on these hosts unload models, which takes longer).
pub const DEFAULT_STOP_TIMEOUT_S: u64 = 30;

/// A container that holds what the deployment needs (named in the spec, or holding GPU memory).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConflictInfo {
    /// Full id.
    pub id: String,
    /// Name.
    pub name: String,
    /// e.g. `running`.
    pub state: String,
    /// Docker's status line, e.g. `Up 9 days`.
    pub status: String,
    /// Image.
    pub image: String,
    /// Command line.
    pub command: String,
    /// Restart policy name.
    pub restart_policy: String,
    /// Seconds dockerd gives it between SIGTERM and SIGKILL: its own `StopTimeout`, else
    /// [`DEFAULT_STOP_TIMEOUT_S`].
    pub stop_timeout_s: u64,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// GPU memory held, MiB, if known.
    pub gpu_mib: Option<u64>,
    /// Named in the spec's `[[conflict]]` (may be stopped with confirmation), or found holding
    /// GPU memory (needs `--stop NAME`).
    pub named_in_spec: bool,
    /// Last 20 log lines.
    pub logs: String,
}

/// Running containers named in the spec's conflicts or holding GPU memory (by container id).
pub async fn conflicts(
    docker: &Docker,
    spec: &Spec,
    gpu_holders: &HashMap<String, u64>,
) -> Result<Vec<ConflictInfo>, LifecycleError> {
    let list = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().build()))
        .await
        .map_err(|source| LifecycleError::Docker {
            action: "list containers".to_owned(),
            source,
        })?;
    let mut out = Vec::new();
    for c in list {
        let id = c.id.clone().unwrap_or_default();
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        if name == spec.name {
            continue;
        }
        let named = spec.conflicts.contains(&name);
        let gpu = gpu_holders.get(&id).copied();
        if !named && gpu.is_none() {
            continue;
        }
        let inspect = docker
            .inspect_container(&id, None)
            .await
            .map_err(|source| LifecycleError::Docker {
                action: format!("inspect container {name}"),
                source,
            })?;
        let stop_timeout_s = inspect
            .config
            .as_ref()
            .and_then(|c| c.stop_timeout)
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(DEFAULT_STOP_TIMEOUT_S);
        let restart_policy = inspect
            .host_config
            .and_then(|h| h.restart_policy)
            .and_then(|r| r.name)
            .map_or_else(|| "no".to_owned(), |n| n.to_string());
        out.push(ConflictInfo {
            id,
            name: name.clone(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            status: c.status.unwrap_or_default(),
            image: c.image.unwrap_or_default(),
            command: c.command.unwrap_or_default(),
            restart_policy,
            stop_timeout_s,
            labels: c.labels.unwrap_or_default(),
            gpu_mib: gpu,
            named_in_spec: named,
            logs: log_tail(docker, &name, 20).await,
        });
    }
    Ok(out)
}
