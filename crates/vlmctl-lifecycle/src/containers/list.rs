//! What is there: a container of a name, the managed containers, labelled ones, memory use.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use futures::StreamExt;

use crate::spec::{ModelMount, Spec};
use crate::{LifecycleError, MANAGED_LABEL, SPEC_LABEL};

/// Existing container of that name: id, spec and lock labels, what it mounts at `/models`,
/// running, managed.
pub(super) struct Existing {
    pub(super) id: String,
    pub(super) deployment: Option<String>,
    pub(super) spec_sha: Option<String>,
    pub(super) lock_sha: Option<String>,
    pub(super) models_source: Option<String>,
    pub(super) running: bool,
    pub(super) managed: bool,
}

impl Existing {
    /// Running exactly this spec, lock entry and models directory.
    pub(super) fn serves(&self, spec: &Spec, mount: &ModelMount) -> bool {
        self.running
            && self.spec_sha.as_deref() == Some(spec.sha256().as_str())
            && self.lock_sha.as_deref() == Some(mount.lock_sha256.as_str())
            && self.models_source.as_deref() == Some(mount.dir.display().to_string().as_str())
    }
}

pub(super) async fn existing(
    docker: &Docker,
    name: &str,
) -> Result<Option<Existing>, LifecycleError> {
    match docker.inspect_container(name, None).await {
        Ok(i) => {
            let labels = i.config.and_then(|c| c.labels).unwrap_or_default();
            let models_source = i.mounts.unwrap_or_default().into_iter().find_map(|m| {
                (m.destination.as_deref() == Some("/models"))
                    .then_some(m.source)
                    .flatten()
            });
            Ok(Some(Existing {
                id: i.id.unwrap_or_default(),
                deployment: labels.get(crate::NAME_LABEL).cloned(),
                spec_sha: labels.get(SPEC_LABEL).cloned(),
                lock_sha: labels.get(crate::LOCK_LABEL).cloned(),
                models_source,
                running: i.state.and_then(|s| s.running).unwrap_or(false),
                managed: labels.get(MANAGED_LABEL).is_some_and(|v| v == "true"),
            }))
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(LifecycleError::Docker {
            action: format!("inspect container {name}"),
            source,
        }),
    }
}

/// The name of the container `name_or_id` names (Docker resolves a name, a full id or an id
/// prefix), without its leading `/`; `None` when there is none.
pub async fn name_of(docker: &Docker, name_or_id: &str) -> Result<Option<String>, LifecycleError> {
    match docker.inspect_container(name_or_id, None).await {
        Ok(i) => Ok(i.name.map(|n| n.trim_start_matches('/').to_owned())),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(LifecycleError::Docker {
            action: format!("inspect container {name_or_id}"),
            source,
        }),
    }
}

/// The memory a container uses as `docker stats` shows it (the cgroup's usage less its
/// inactive file cache), in MiB; `None` when the daemon reports no figure (not running).
pub async fn memory_mib(docker: &Docker, name: &str) -> Result<Option<u64>, LifecycleError> {
    let opts = bollard::query_parameters::StatsOptionsBuilder::default()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stream = docker.stats(name, Some(opts));
    let Some(stats) = stream.next().await else {
        return Ok(None);
    };
    let stats = stats.map_err(|source| LifecycleError::Docker {
        action: format!("read the memory use of {name}"),
        source,
    })?;
    let Some(mem) = stats.memory_stats else {
        return Ok(None);
    };
    let Some(usage) = mem.usage.filter(|u| *u > 0) else {
        return Ok(None);
    };
    // What the docker CLI subtracts: `inactive_file` on cgroup v2, `total_inactive_file` on v1.
    let inactive = mem
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("inactive_file")
                .or_else(|| s.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    Ok(Some(usage.saturating_sub(inactive) / (1024 * 1024)))
}

/// A container vlmctl created, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Managed {
    /// Name.
    pub name: String,
    /// e.g. `running`, `exited`.
    pub state: String,
    /// Docker's status line (`Up 3 hours`).
    pub status: String,
    /// Image.
    pub image: String,
    /// `org.vlmctl.spec-sha256`.
    pub spec_sha256: Option<String>,
    /// `org.vlmctl.lock-sha256`.
    pub lock_sha256: Option<String>,
    /// `--host` and `--port` from its command line.
    pub endpoint: Option<(String, u16)>,
    /// The model it serves: `--model` (`-m`) from its command line, the id clients name.
    pub model: Option<String>,
    /// Docker's own health check: `starting`, `healthy`, `unhealthy`; `None` without one.
    pub docker_health: Option<String>,
}

/// Every container carrying `label` (`key=value`), running or not.
pub async fn labelled(
    docker: &Docker,
    label: &str,
) -> Result<Vec<bollard::models::ContainerSummary>, LifecycleError> {
    let filters = HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|source| LifecycleError::Docker {
            action: format!("list the containers labelled {label}"),
            source,
        })
}

/// Every container labelled `org.vlmctl.managed=true`, running or not.
pub async fn managed(docker: &Docker) -> Result<Vec<Managed>, LifecycleError> {
    let list = labelled(docker, &format!("{MANAGED_LABEL}=true")).await?;
    let mut out = Vec::new();
    for c in list {
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        let (args, docker_health) = match docker.inspect_container(&name, None).await {
            Ok(i) => (
                i.args.unwrap_or_default(),
                i.state
                    .and_then(|s| s.health)
                    .and_then(|h| h.status)
                    .map(|s| s.to_string())
                    .filter(|s| !s.is_empty() && s != "none"),
            ),
            Err(_) => (Vec::new(), None),
        };
        let arg = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
        // A bridge-network server is reached through its published port, not its `--host`.
        let published = c.ports.as_ref().and_then(|ports| {
            ports
                .iter()
                .find_map(|p| Some((p.ip.clone()?, p.public_port?)))
        });
        let labels = c.labels.unwrap_or_default();
        out.push(Managed {
            name,
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            status: c.status.unwrap_or_default(),
            image: c.image.unwrap_or_default(),
            spec_sha256: labels.get(SPEC_LABEL).cloned(),
            lock_sha256: labels.get(crate::LOCK_LABEL).cloned(),
            endpoint: published
                .or_else(|| arg("--host").zip(arg("--port").and_then(|p| p.parse().ok()))),
            model: arg("--model").or_else(|| arg("-m")),
            docker_health,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
