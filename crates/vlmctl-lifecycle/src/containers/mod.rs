//! Containers: conflicts (who to stop), launch from a spec, readiness, idempotent relaunch,
//! teardown. Creation options are derived from the spec by a pure function.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;

use crate::spec::{ModelMount, Spec};

mod plan;
use crate::{LifecycleError, MANAGED_LABEL, SPEC_LABEL};
pub use plan::{
    API_KEY_ENV, BindMount, ContainerPlan, EnvValue, EnvVar, GPU_LOG_VERBOSITY, HEALTH_INTERVAL_S,
    HEALTH_RETRIES, HEALTH_TIMEOUT_S, HealthCheck, LOG_DRIVER, LOG_OPTS, LOG_VERBOSITY_ENV,
    LogConfig, MODELS_TARGET, Published, shell_quote,
};

/// The image's own health check (Docker's `Healthcheck.Test`), which the plan aims at the
/// spec's port; `None` when it has none or cannot be inspected (it then keeps its own).
pub async fn image_health_test(docker: &Docker, image: &str) -> Option<Vec<String>> {
    let image = docker.inspect_image(image).await.ok()?;
    image
        .config
        .and_then(|c| c.healthcheck)
        .and_then(|h| h.test)
}

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
    /// (renamed to [`aside_name`] and stopped; the caller removes it once the new one passed its
    /// checks, or puts it back).
    Started {
        /// New id.
        id: String,
        /// Whether an existing container of that name was replaced.
        replaced: bool,
    },
}

/// Existing container of that name: id, spec and lock labels, what it mounts at `/models`,
/// running, managed.
struct Existing {
    id: String,
    deployment: Option<String>,
    spec_sha: Option<String>,
    lock_sha: Option<String>,
    models_source: Option<String>,
    running: bool,
    managed: bool,
}

impl Existing {
    /// Running exactly this spec, lock entry and models directory.
    fn serves(&self, spec: &Spec, mount: &ModelMount) -> bool {
        self.running
            && self.spec_sha.as_deref() == Some(spec.sha256().as_str())
            && self.lock_sha.as_deref() == Some(mount.lock_sha256.as_str())
            && self.models_source.as_deref() == Some(mount.dir.display().to_string().as_str())
    }
}

async fn existing(docker: &Docker, name: &str) -> Result<Option<Existing>, LifecycleError> {
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

/// What `launch` is about to do or has just done, for the caller to record before the next
/// await point (the restore journal), so that a run that dies there can be undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchStep<'a> {
    /// About to set the deployment's current container aside (renamed to [`aside_name`],
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

async fn launch_inner(
    docker: &Docker,
    spec: &Spec,
    mount: &ModelMount,
    api_key: Option<&str>,
    (run_id, extra_labels): (&str, &HashMap<String, String>),
    replace_same: bool,
    record: &mut dyn FnMut(LaunchStep<'_>) -> Result<(), LifecycleError>,
) -> Result<Launch, LifecycleError> {
    let mut replaced = false;
    if let Some(e) = existing(docker, &spec.name).await? {
        if !e.managed {
            return Err(LifecycleError::NameTaken {
                container: spec.name.clone(),
            });
        }
        // A changed lock entry or models directory is a change too, not only the spec.
        if e.serves(spec, mount) && !replace_same {
            return Ok(Launch::Unchanged { id: e.id });
        }
        // Kept, not removed, until the new one proves itself: a failing relaunch puts it back.
        record(LaunchStep::SettingAside {
            id: &e.id,
            running: e.running,
        })?;
        set_aside(docker, &e.id, &spec.name, e.running).await?;
        replaced = true;
    }
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

/// The name a replaced container waits under until its successor passed its checks.
#[must_use]
pub fn aside_name(name: &str) -> String {
    format!("{name}-vlmctl-previous")
}

async fn rename(docker: &Docker, id: &str, to: &str) -> Result<(), bollard::errors::Error> {
    let opts = bollard::query_parameters::RenameContainerOptionsBuilder::default()
        .name(to)
        .build();
    docker.rename_container(id, opts).await
}

/// Renames the deployment's container aside and stops it (freeing its port and memory).
async fn set_aside(
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

/// Seconds a set-aside container gets between SIGTERM and SIGKILL.
const ASIDE_STOP_TIMEOUT_S: u64 = 10;

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

/// Polls `/health` on `base_url` until 200 (llama-server answers 503 "Loading model" while
/// loading; `/v1/models` answers 200 too early, so it is not a signal), watching the
/// container: if it exits, fail with its exit code and log tail. Returns the startup time.
pub async fn wait_ready(
    docker: &Docker,
    name: &str,
    base_url: &str,
    timeout: Duration,
) -> Result<Duration, LifecycleError> {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| LifecycleError::NotReady {
            container: name.to_owned(),
            waited_s: 0,
            last: e.to_string(),
        })?;
    loop {
        let state = docker
            .inspect_container(name, None)
            .await
            .map_err(|source| LifecycleError::Docker {
                action: format!("inspect container {name}"),
                source,
            })?
            .state;
        if !state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Err(LifecycleError::ExitedDuringLoad {
                container: name.to_owned(),
                exit_code: state.and_then(|s| s.exit_code).unwrap_or(-1),
                logs: log_tail(docker, name, 20).await,
            });
        }
        let last = match http.get(format!("{base_url}/health")).send().await {
            Ok(r) if r.status() == 200 => return Ok(started.elapsed()),
            Ok(r) => format!("/health answered {}", r.status()),
            Err(e) => format!("/health: {e}"),
        };
        if started.elapsed() >= timeout {
            return Err(LifecycleError::NotReady {
                container: name.to_owned(),
                waited_s: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `n` log lines (stdout and stderr) of a container.
pub async fn log_tail(docker: &Docker, name: &str, n: usize) -> String {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&n.to_string())
        .build();
    let mut out = String::new();
    let mut logs = docker.logs(name, Some(opts));
    while let Some(Ok(chunk)) = logs.next().await {
        out.push_str(&chunk.to_string());
    }
    out
}

/// The first `max_lines` log lines (stdout and stderr, in order) of a container, read from its
/// start: what llama-server says about its devices and the model's layers comes early, and a
/// tail would lose it once requests are logged. Read up to `max_bytes` at most.
pub async fn log_head(docker: &Docker, name: &str, max_lines: usize, max_bytes: usize) -> String {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut out = String::new();
    let mut lines = 0;
    let mut logs = docker.logs(name, Some(opts));
    while let Some(Ok(chunk)) = logs.next().await {
        let chunk = chunk.to_string();
        lines += chunk.matches('\n').count();
        out.push_str(&chunk);
        if out.len() >= max_bytes || lines >= max_lines {
            break;
        }
    }
    // Whole lines only, at most `max_lines` of them.
    let mut head: String = out.split_inclusive('\n').take(max_lines).collect();
    if head.len() > max_bytes {
        let mut cut = max_bytes;
        while !head.is_char_boundary(cut) {
            cut -= 1;
        }
        head.truncate(cut);
    }
    head
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
    /// [`crate::journal::DEFAULT_STOP_TIMEOUT_S`].
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
            .unwrap_or(crate::journal::DEFAULT_STOP_TIMEOUT_S);
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

/// `/health` in a word: `ok`, `loading (503)`, `HTTP <code>`, or `down`.
pub async fn probe_health(host: &str, port: u16) -> String {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return "down".to_owned();
    };
    match http
        .get(format!("{}/health", crate::spec::http_base(host, port)))
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => "ok".to_owned(),
        Ok(r) if r.status() == 503 => "loading (503)".to_owned(),
        Ok(r) => format!("HTTP {}", r.status().as_u16()),
        Err(_) => "down".to_owned(),
    }
}

/// One step of an image pull, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PullStep {
    /// Layer id, if the step is about a layer.
    pub layer: Option<String>,
    /// The daemon's status ("Downloading", "Pull complete", ...).
    pub status: String,
    /// Bytes done and total for the layer, when known.
    pub bytes: Option<(u64, u64)>,
}

/// Pulls `image` when it is not present locally (for `platform` when given, e.g.
/// `linux/arm64`); reports each step to `progress`. Returns whether it pulled.
pub async fn ensure_image(
    docker: &Docker,
    image: &str,
    platform: Option<&str>,
    progress: &mut dyn FnMut(&PullStep),
) -> Result<bool, LifecycleError> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(false);
    }
    let mut opts =
        bollard::query_parameters::CreateImageOptionsBuilder::default().from_image(image);
    if let Some(p) = platform {
        opts = opts.platform(p);
    }
    let mut pull = docker.create_image(Some(opts.build()), None, None);
    while let Some(step) = pull.next().await {
        let info = step.map_err(|source| LifecycleError::Pull {
            image: image.to_owned(),
            source,
        })?;
        let bytes = info.progress_detail.and_then(|d| {
            Some((
                u64::try_from(d.current?).ok()?,
                u64::try_from(d.total?).ok()?,
            ))
        });
        progress(&PullStep {
            layer: info.id,
            status: info.status.unwrap_or_default(),
            bytes,
        });
    }
    // The stream can end without an error item when the daemon gave up: check the result.
    docker
        .inspect_image(image)
        .await
        .map(|_| true)
        .map_err(|source| LifecycleError::Pull {
            image: image.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    /// dockerd 20.10's answer to a GPU request on a host without the NVIDIA container toolkit
    /// (daemon/devices.go: `could not select device driver %q with capabilities: %v`, status
    /// 500 on the start call), as the test daemon no longer gives it (it has a no-op hook).
    #[test]
    fn a_start_refused_for_want_of_a_gpu_driver_says_install_the_toolkit() {
        let refused = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "could not select device driver \"\" with capabilities: [[gpu]]".to_owned(),
        };
        let e = super::start_error("panda-llamacpp", refused);
        assert!(
            matches!(e, crate::LifecycleError::NoGpuRuntime { .. }),
            "{e:?}"
        );
        assert!(
            e.hint().contains("NVIDIA Container Toolkit"),
            "{}",
            e.hint()
        );
        let other = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "something else".to_owned(),
        };
        assert!(matches!(
            super::start_error("x", other),
            crate::LifecycleError::Docker { .. }
        ));
    }

    use super::*;

    fn spec(gpus: &str, key: bool) -> Spec {
        let key = if key { "api_key_env = \"K\"\n" } else { "" };
        let text = format!(
            "name = \"x\"\nimage = \"i:1\"\nmodel = \"m\"\ngpus = {gpus}\n[server]\nhost = \"127.0.0.1\"\nport = 8080\n{key}"
        );
        Spec::parse(&text, std::path::Path::new("x.toml")).unwrap()
    }

    #[test]
    fn a_gpu_server_logs_its_devices_and_layers_a_cpu_one_as_before() {
        let mount = ModelMount {
            dir: "/m".into(),
            model_file: "m.gguf".into(),
            mmproj_file: None,
            lock_sha256: String::new(),
        };
        let env =
            |s: &Spec, key: Option<&str>| ContainerPlan::of(s, &mount, None).to_bollard(key).env;
        assert_eq!(
            env(&spec("\"all\"", true), Some("k")),
            Some(vec![
                "LLAMA_API_KEY=k".to_owned(),
                "LLAMA_ARG_LOG_VERBOSITY=4".to_owned()
            ])
        );
        assert_eq!(
            env(&spec("\"all\"", false), None),
            Some(vec!["LLAMA_ARG_LOG_VERBOSITY=4".to_owned()])
        );
        assert_eq!(env(&spec("\"none\"", false), None), None);
        // A key named but not set in the starter's environment: no empty value.
        assert_eq!(env(&spec("\"none\"", true), None), None);
        assert_eq!(
            env(&spec("\"none\"", true), Some("k")),
            Some(vec!["LLAMA_API_KEY=k".to_owned()])
        );
    }
}
