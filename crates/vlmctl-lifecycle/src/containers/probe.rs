//! The GPU probe: a one-shot container that loads the deployment's model with the same image,
//! GPU request, mount and arguments as the deployment, at the verbosity where llama-server says
//! which CUDA devices it found and how many layers it offloaded ([`PROBE_LOG_VERBOSITY`]), and
//! is removed once the load is over. The deployment itself then runs at
//! [`SERVER_LOG_VERBOSITY`], which logs a few lines per request and never a request's content.
//!
//! Why this proves what the deployment does: llama.cpp's verbosity filters what is printed and
//! decides nothing about devices or offload. In the llama.cpp the tests build (11434):
//! `common/log.h`'s `LOG_TMPL` compares each message's verbosity with the threshold before it
//! formats it, and `common/log.cpp`'s `common_log_default_callback` does the same for the
//! library's (ggml, llama) messages; `-lv` and `LLAMA_ARG_LOG_VERBOSITY` (`common/arg.cpp`) set
//! `params.verbosity` and that threshold, nothing else. The other readers of `params.verbosity`
//! act at 5 and above (`common/common.cpp`'s `common_fit_params` log level, the server's
//! `verbose` at > 9), except `common_params_print_info`, which at 4 and above lists the devices
//! with their free memory (a read; on CUDA it opens a context early). Device selection and
//! offload follow from the arguments and the devices the container sees
//! (`common_init_from_params`, `llama_model_load_from_file`). Same image, same GPU request, same
//! arguments: same devices, same layers offloaded. Free memory at each start does not change
//! the layers either: llama.cpp's automatic fit (`common/fit.cpp`, on by default) leaves
//! `n_gpu_layers` alone when the arguments set it (`n_gpu_layers already set by user ...,
//! abort`, logged as a warning, line 463), and every deployment passes `-ngl` (default 999)
//! and `--ctx-size`; a server that cannot then fit fails its load, loudly. What could still
//! differ (the GPU taken by someone else in between, a server that fails later) is checked on
//! the deployment itself after its smoke request: the failures llama.cpp logs at 3 (`no usable
//! GPU found`, `failed to initialize CUDA`, `CUDA error`) and its GPU memory against the floor.
//!
//! The probe cannot be reached by anyone and cannot collide with the deployment's port or an
//! old server still on it: it has no network (`none`; the bind address is loopback inside its
//! own namespace), no restart policy, no API key, no health check. It carries [`PROBE_LABEL`]
//! with the deployment's name (and the run's [`crate::RUN_LABEL`]): the run that made it
//! removes it on every path, and a probe left by a killed run is removed by the next
//! provision, relaunch, teardown or restore of that deployment ([`remove_probes`], or the
//! journal's undo of the dead run, by its run label).

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::StreamExt;

use super::aside::start_error;
use super::list::labelled;
use super::plan::{
    ContainerPlan, EnvValue, EnvVar, HealthCheck, LOG_VERBOSITY_ENV, PROBE_LOG_VERBOSITY,
    SERVER_LOG_VERBOSITY,
};
use crate::LifecycleError;
use crate::spec::RestartPolicy;

/// Label on a GPU probe: the name of the deployment it probes.
pub const PROBE_LABEL: &str = "org.vlmctl.probe-of";

/// The most of a probe's log that is kept (the lines read come while the model loads: a few
/// hundred lines for a large model).
const PROBE_LOG_BYTES: usize = 1 << 20;

/// The name of the GPU probe of the deployment `name`.
#[must_use]
pub fn probe_name(name: &str) -> String {
    format!("{name}-vlmctl-probe")
}

impl ContainerPlan {
    /// Pure: the GPU probe of this deployment: the same image, GPU request, mount, arguments,
    /// hardening and log limits; verbosity [`PROBE_LOG_VERBOSITY`]; its own name; no restart,
    /// no API key (nobody can call it), no health check, no published port; it binds loopback
    /// in its own (empty) network namespace ([`ContainerPlan::probe_body`] gives it no
    /// network). Labelled [`PROBE_LABEL`]`=<deployment>` only: it is no deployment, and
    /// `status` does not list it.
    #[must_use]
    pub fn probe(&self) -> Self {
        let mut p = self.clone();
        p.name = probe_name(&self.name);
        p.restart = RestartPolicy::No;
        p.port = None;
        p.health = Some(HealthCheck::Disabled);
        p.env = vec![EnvVar {
            name: LOG_VERBOSITY_ENV,
            value: EnvValue::Literal(PROBE_LOG_VERBOSITY.to_owned()),
        }];
        if let Some(i) = p.cmd.iter().position(|a| a == "--host")
            && let Some(host) = p.cmd.get_mut(i + 1)
        {
            "127.0.0.1".clone_into(host);
        }
        p.labels = [(PROBE_LABEL.to_owned(), self.name.clone())].into();
        p
    }

    /// Pure: the Engine API create body of [`ContainerPlan::probe`]: its network is `none`.
    #[must_use]
    pub fn probe_body(&self) -> ContainerCreateBody {
        let mut body = self.probe().to_bollard(None);
        body.exposed_ports = None;
        if let Some(h) = body.host_config.as_mut() {
            h.network_mode = Some("none".to_owned());
            h.port_bindings = None;
        }
        body
    }
}

/// Whether the deployment's server runs at the quiet verbosity: its plan's
/// verbosity is [`SERVER_LOG_VERBOSITY`].
#[must_use]
pub fn quiet(plan: &ContainerPlan) -> bool {
    plan.env.iter().any(|e| {
        e.name == LOG_VERBOSITY_ENV && e.value == EnvValue::Literal(SERVER_LOG_VERBOSITY.to_owned())
    })
}

/// Pure: whether a line of llama-server's log says the model load is over (`llama_server: model
/// loaded`, then `listening on http://...`; older builds: `main: model loaded`, `main: server is
/// listening on http://...`). Nothing about devices or layers is logged after it.
#[must_use]
pub fn load_finished(line: &str) -> bool {
    line.contains("model loaded") || line.contains("listening on http")
}

/// How a probe's load ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEnd {
    /// The log says the model is loaded.
    Loaded {
        /// How long it took from the start.
        after: Duration,
    },
    /// The container exited before that.
    Exited {
        /// Its exit code.
        exit_code: i64,
    },
    /// Neither within the time given.
    TimedOut {
        /// Seconds waited.
        waited_s: u64,
    },
}

/// A probe's log (from its start to the end of the load) and how the load ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLog {
    /// The log, stdout and stderr in order.
    pub log: String,
    /// How it ended.
    pub end: ProbeEnd,
}

/// Creates and starts the probe `body` (from [`ContainerPlan::probe_body`]) as
/// [`probe_name`]`(deployment)`, labelled with `run_id` ([`crate::RUN_LABEL`]) too. A probe that
/// was created but would not start is removed again.
pub async fn start_probe(
    docker: &Docker,
    deployment: &str,
    mut body: ContainerCreateBody,
    run_id: &str,
) -> Result<String, LifecycleError> {
    let name = probe_name(deployment);
    if let Some(labels) = body.labels.as_mut() {
        labels.insert(crate::RUN_LABEL.to_owned(), run_id.to_owned());
    }
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|source| LifecycleError::Docker {
            action: format!("create the GPU probe {name}"),
            source,
        })?;
    if let Err(source) = docker.start_container(&created.id, None).await {
        let _ = remove_probes(docker, deployment).await;
        return Err(start_error(&name, source));
    }
    Ok(created.id)
}

/// Follows the probe's log from its start until the load is over ([`load_finished`]), the
/// container exits, or `timeout` passes. Leaves the container as it is: the caller removes it
/// ([`remove_probes`]) whatever this returns, also when it drops this future.
pub async fn follow_probe(
    docker: &Docker,
    id: &str,
    timeout: Duration,
) -> Result<ProbeLog, LifecycleError> {
    let started = Instant::now();
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(true)
        .build();
    let mut log = String::new();
    let mut partial = String::new();
    let mut stream = docker.logs(id, Some(opts));
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            partial.push_str(&chunk.to_string());
            while let Some(n) = partial.find('\n') {
                let line: String = partial.drain(..=n).collect();
                if log.len() + line.len() <= PROBE_LOG_BYTES {
                    log.push_str(&line);
                }
                if load_finished(&line) {
                    return true;
                }
            }
        }
        false
    };
    let loaded = tokio::time::timeout(timeout, read).await;
    let end = match loaded {
        Ok(true) => ProbeEnd::Loaded {
            after: started.elapsed(),
        },
        Err(_) => ProbeEnd::TimedOut {
            waited_s: timeout.as_secs(),
        },
        // The stream ended: the container exited (or the daemon went away: inspect says).
        Ok(false) => {
            let state = docker
                .inspect_container(id, None)
                .await
                .map_err(|source| LifecycleError::Docker {
                    action: format!("inspect the GPU probe {id}"),
                    source,
                })?
                .state;
            ProbeEnd::Exited {
                exit_code: state.and_then(|s| s.exit_code).unwrap_or(-1),
            }
        }
    };
    if !partial.is_empty() && log.len() + partial.len() <= PROBE_LOG_BYTES {
        log.push_str(&partial);
    }
    Ok(ProbeLog { log, end })
}

/// Removes (forced) every GPU probe of the deployment `deployment`, running or not: the one
/// this run made, or one a killed run left. Returns how many it removed.
pub async fn remove_probes(docker: &Docker, deployment: &str) -> Result<usize, LifecycleError> {
    let list = labelled(docker, &format!("{PROBE_LABEL}={deployment}")).await?;
    let mut removed = 0;
    for c in list {
        let Some(id) = c.id else { continue };
        match docker
            .remove_container(
                &id,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
        {
            Ok(()) => removed += 1,
            // Gone meanwhile (or being removed): what was asked.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => {}
            Err(source) => {
                return Err(LifecycleError::Docker {
                    action: format!("remove the GPU probe {}", probe_name(deployment)),
                    source,
                });
            }
        }
    }
    Ok(removed)
}

/// The names of the deployments that have a GPU probe on this engine (left by a killed run, or
/// made by a run going on now).
pub async fn probed_deployments(docker: &Docker) -> Result<Vec<String>, LifecycleError> {
    let mut out: Vec<String> = labelled(docker, PROBE_LABEL)
        .await?
        .into_iter()
        .filter_map(|c| c.labels.unwrap_or_default().get(PROBE_LABEL).cloned())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::spec::{ModelMount, Spec};

    fn plan(extra: &str) -> ContainerPlan {
        let text = format!(
            "name = \"panda\"\nimage = \"i:1\"\nmodel = \"m\"\ngpus = \"all\"\nrestart = \"unless-stopped\"\n\
             network = \"bridge\"\n[server]\nhost = \"127.0.0.1\"\nport = 11435\napi_key_env = \"K\"\n{extra}"
        );
        let spec = Spec::parse(&text, std::path::Path::new("x.toml")).unwrap();
        let mount = ModelMount {
            dir: "/m".into(),
            model_file: "m.gguf".into(),
            mmproj_file: None,
            lock_sha256: String::new(),
        };
        ContainerPlan::of(&spec, &mount, Some(&["CMD".to_owned(), "true".to_owned()]))
    }

    #[test]
    fn the_probe_is_the_deployment_at_verbosity_4_with_no_network_key_or_restart() {
        let deployment = plan("");
        assert!(quiet(&deployment));
        let p = deployment.probe();
        assert!(!quiet(&p));
        assert_eq!(p.name, "panda-vlmctl-probe");
        // The same image, GPUs, mount, arguments (bar the bind address) and hardening.
        assert_eq!(p.image, deployment.image);
        assert_eq!(p.gpus, deployment.gpus);
        assert_eq!(p.models, deployment.models);
        assert_eq!(p.cap_drop, deployment.cap_drop);
        assert_eq!(p.log, deployment.log);
        let host = |c: &[String]| c[c.iter().position(|a| a == "--host").unwrap() + 1].clone();
        assert_eq!(host(&deployment.cmd), "0.0.0.0");
        assert_eq!(host(&p.cmd), "127.0.0.1");
        let mut cmd = p.cmd.clone();
        let i = cmd.iter().position(|a| a == "--host").unwrap() + 1;
        cmd[i] = "0.0.0.0".to_owned();
        assert_eq!(cmd, deployment.cmd);
        let body = deployment.probe_body();
        assert_eq!(
            body.env,
            Some(vec!["LLAMA_ARG_LOG_VERBOSITY=4".to_owned()]),
            "verbosity 4 and no API key"
        );
        let h = body.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.port_bindings, None);
        assert_eq!(body.exposed_ports, None);
        assert_eq!(
            h.restart_policy.unwrap().name,
            Some(bollard::models::RestartPolicyNameEnum::NO)
        );
        assert_eq!(h.device_requests.unwrap()[0].count, Some(-1));
        assert_eq!(
            body.healthcheck.unwrap().test,
            Some(vec!["NONE".to_owned()])
        );
        assert_eq!(
            body.labels,
            Some(HashMap::from([(
                PROBE_LABEL.to_owned(),
                "panda".to_owned()
            )]))
        );
    }

    #[test]
    fn the_load_is_over_at_model_loaded_or_listening_never_before() {
        let lv3 = include_str!("../../../vlmctl-deploy/src/testdata/cpu-server-11434-lv3.log");
        let first = lv3.lines().position(load_finished).unwrap();
        assert!(
            lv3.lines()
                .nth(first)
                .unwrap()
                .ends_with("llama_server: model loaded")
        );
        let lv4 = include_str!("../../../vlmctl-deploy/src/testdata/cpu-server-11434-lv4.log");
        assert!(
            !lv4.lines().any(load_finished),
            "nothing in the load itself (meta data, tensors, buffers) ends it"
        );
        assert!(load_finished(
            "main: server is listening on http://127.0.0.1:8080 - starting the main loop"
        ));
    }
}
