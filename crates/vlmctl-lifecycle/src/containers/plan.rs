//! The container a deployment is, as one pure value ([`ContainerPlan`]), built once from the
//! spec, the model mount and the image's own health check; and two of its three renderings:
//! the Engine API create body ([`ContainerPlan::to_bollard`], what `launch` sends) and the
//! `docker run` line ([`ContainerPlan::docker_run_line`], what `provision --dry-run` and
//! `export --format docker-run` print). The compose rendering lives in `vlmctl-deploy`'s
//! `export` and reads the same value.
//!
//! Every setting (the hardening included: no capabilities, no privilege escalation, the
//! read-only `/models`, the log limits, the GPU request, the health check aimed at the spec's
//! port) is decided here, once; the renderers only spell it. A setting added to the plan and
//! left out of a renderer fails the test that renders all three (`vlmctl-deploy`'s
//! `export::tests::one_plan_three_renderings_agree_field_by_field`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HealthConfig, HostConfig, HostConfigLogConfig, Mount,
    MountType, PortBinding, RestartPolicyNameEnum,
};

use crate::spec::{
    ApiKeySource, Gpus, HealthProbe, ModelMount, Network, RestartPolicy, Spec, host_port,
};

/// Environment variable llama-server reads its API key from (kept out of its arguments).
pub const API_KEY_ENV: &str = "LLAMA_API_KEY";

/// Environment variable setting llama-server's log verbosity.
pub const LOG_VERBOSITY_ENV: &str = "LLAMA_ARG_LOG_VERBOSITY";

/// The verbosity every deployment's server runs at: llama-server's default (3, `info`), set
/// explicitly so that the `--dry-run` line and the exports say it and an image whose default
/// differs cannot change it. Above it the server logs per request: at 4 (`trace`) about 35
/// lines of slot, sampler and prompt-cache trace (3.4 KB per request with the test frame, 1.05
/// KB at 3: the README has the figures); at 5 (`debug`, `-v`) every prompt token
/// (`SLT_DBG` in `tools/server/server-context.cpp`) and, in a build that installs its request
/// logger (`log_server_request`, switched off in build 11434), each request and response body
/// with its base64 camera frame. At 3 the server still logs what goes wrong
/// with the GPU (`warning: no usable GPU found`, `failed to initialize CUDA`, `CUDA error`),
/// which the GPU check after the smoke request reads; what it found and offloaded is logged
/// only at 4, and comes from the one-shot probe ([`PROBE_LOG_VERBOSITY`]). Set through the
/// environment, not an argument: llama.cpp reads the environment before the arguments, so it
/// applies before `-ngl` makes it look for GPUs (the spec check refuses `-lv` and its kin in
/// `server.extra_args`, which would win).
pub const SERVER_LOG_VERBOSITY: &str = "3";

/// The verbosity of the GPU probe ([`ContainerPlan::probe`]): at 4 llama-server logs the CUDA
/// devices it found (`ggml_cuda_init: found N CUDA devices`), the offloaded layers
/// (`load_tensors: offloaded N/M layers to GPU`) and where the weights went (`model buffer
/// size`). In the llama.cpp the tests run (build 11434) these are library INFO messages, which
/// the server's log maps to its level 4 and hides at 3. The probe loads the model and is
/// removed; no request ever reaches it, so it logs no body.
pub const PROBE_LOG_VERBOSITY: &str = "4";

/// Docker's log driver for a deployment.
pub const LOG_DRIVER: &str = "json-file";

/// Docker's log options for a deployment: `json-file`, at most 3 files of 10 MB. A server that
/// answers tens of requests a second, at the verbosity above, would otherwise fill the disk of
/// a host that also carries production services (Docker's default keeps every line).
pub const LOG_OPTS: [(&str, &str); 2] = [("max-size", "10m"), ("max-file", "3")];

/// Where the model directory is mounted, read-only, in the container.
pub const MODELS_TARGET: &str = "/models";

/// Seconds between Docker's health checks of a deployment (the image's 30 s default leaves a
/// fresh server "starting" for half a minute).
pub const HEALTH_INTERVAL_S: u64 = 5;
/// Seconds one health check may take.
pub const HEALTH_TIMEOUT_S: u64 = 5;
/// Failed checks in a row (after the start period) before Docker calls it unhealthy.
pub const HEALTH_RETRIES: u32 = 3;

/// What the container is: everything `launch` creates, `--dry-run` prints and `export` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    /// Image reference.
    pub image: String,
    /// Container name.
    pub name: String,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// `host` (no port binding) or `bridge`.
    pub network: Network,
    /// On a bridge network, the port published on the host (same number inside).
    pub port: Option<Published>,
    /// The model directory, bound read-only at [`MODELS_TARGET`].
    pub models: BindMount,
    /// Capabilities dropped (all of them).
    pub cap_drop: Vec<&'static str>,
    /// Security options (no privilege escalation).
    pub security_opt: Vec<&'static str>,
    /// Environment: values, or references to a variable of whoever starts the container (the
    /// API key: never its value).
    pub env: Vec<EnvVar>,
    /// Labels ([`Spec::labels`]).
    pub labels: BTreeMap<String, String>,
    /// Log driver and its options.
    pub log: LogConfig,
    /// GPU request ([`Gpus::None`]: none).
    pub gpus: Gpus,
    /// llama-server's arguments ([`Spec::server_args`]).
    pub cmd: Vec<String>,
    /// Docker's health check; `None` keeps the image's own (it has none, or it could not be
    /// inspected).
    pub health: Option<HealthCheck>,
}

/// A port published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Host address it is bound to (`server.host`).
    pub host_ip: String,
    /// Port, on the host and in the container.
    pub port: u16,
}

/// A bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host directory, as given (a relative one stays a bind mount, never a named volume).
    pub source: String,
    /// Path in the container.
    pub target: &'static str,
    /// Read-only.
    pub read_only: bool,
}

/// One environment variable of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Its name in the container.
    pub name: &'static str,
    /// Its value.
    pub value: EnvValue,
}

/// An environment value: written as is, or a reference resolved when the container starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// This text.
    Literal(String),
    /// The value of this variable in the environment of whoever starts the container (`launch`
    /// is handed it; the exports write a reference, never the value).
    FromEnv(String),
    /// The content of this file (the spec's `api_key_file`), read by vlmctl when it starts the
    /// container (`launch` is handed it); the `docker run` line reads it with `$(cat ...)`,
    /// the compose file asks for it in `LLAMA_API_KEY`. Never the value.
    FromFile(String),
}

/// Docker's log configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Log driver.
    pub driver: &'static str,
    /// Its options, in order.
    pub options: Vec<(&'static str, &'static str)>,
}

/// Docker's health check of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// Run `test` (Docker's form: `CMD ...` or `CMD-SHELL ...`).
    Probe {
        /// The command, aimed at the spec's port.
        test: Vec<String>,
        /// Seconds between checks.
        interval_s: u64,
        /// Seconds one check may take.
        timeout_s: u64,
        /// Failures in a row that make it unhealthy.
        retries: u32,
        /// Seconds after the start whose failures do not count (`health.timeout_s`: the model
        /// load).
        start_period_s: u64,
    },
    /// The image's check is switched off ([`HealthProbe::Disabled`]).
    Disabled,
}

impl HealthCheck {
    /// The check as `docker run --health-cmd` takes it: one shell command (the docker CLI
    /// always makes it `CMD-SHELL`, run by the image's `/bin/sh`); a `CMD` form's words are
    /// quoted so that the shell hands the program the same arguments. `None` for
    /// [`HealthCheck::Disabled`].
    #[must_use]
    pub fn shell_command(&self) -> Option<String> {
        let Self::Probe { test, .. } = self else {
            return None;
        };
        match test.split_first() {
            Some((kind, rest)) if kind == "CMD-SHELL" => Some(rest.join(" ")),
            Some((_, rest)) => Some(
                rest.iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            None => None,
        }
    }
}

impl ContainerPlan {
    /// The plan for `spec` with `mount` at `/models`; `image_test` is the image's own health
    /// check (Docker's `Healthcheck.Test`; `None`: it has none, or it was not inspected), which
    /// the plan aims at the spec's port ([`Spec::health_probe`]).
    #[must_use]
    pub fn of(spec: &Spec, mount: &ModelMount, image_test: Option<&[String]>) -> Self {
        let mut env = Vec::new();
        match spec.server.api_key_source() {
            Some(ApiKeySource::Env(var)) => env.push(EnvVar {
                name: API_KEY_ENV,
                value: EnvValue::FromEnv(var),
            }),
            Some(ApiKeySource::File(path)) => env.push(EnvVar {
                name: API_KEY_ENV,
                value: EnvValue::FromFile(path.to_string_lossy().into_owned()),
            }),
            None => {}
        }
        env.push(EnvVar {
            name: LOG_VERBOSITY_ENV,
            value: EnvValue::Literal(SERVER_LOG_VERBOSITY.to_owned()),
        });
        let health = match spec.health_probe(image_test) {
            HealthProbe::Probe(test) => Some(HealthCheck::Probe {
                test,
                interval_s: HEALTH_INTERVAL_S,
                timeout_s: HEALTH_TIMEOUT_S,
                retries: HEALTH_RETRIES,
                start_period_s: spec.health.timeout_s,
            }),
            HealthProbe::Disabled => Some(HealthCheck::Disabled),
            HealthProbe::None => None,
        };
        Self {
            image: spec.image.clone(),
            name: spec.name.clone(),
            restart: spec.restart,
            network: spec.network,
            port: (spec.network == Network::Bridge).then(|| Published {
                host_ip: spec.server.host.clone(),
                port: spec.server.port,
            }),
            models: BindMount {
                source: mount.dir.display().to_string(),
                target: MODELS_TARGET,
                read_only: true,
            },
            cap_drop: vec!["ALL"],
            security_opt: vec!["no-new-privileges"],
            env,
            labels: spec.labels(mount),
            log: LogConfig {
                driver: LOG_DRIVER,
                options: LOG_OPTS.to_vec(),
            },
            gpus: spec.gpus.clone(),
            cmd: spec.server_args(mount),
            health,
        }
    }

    /// The Engine API create body. `api_key` is the value of the API key the spec names (an
    /// [`EnvValue::FromEnv`] or [`EnvValue::FromFile`] entry with no value is left out).
    #[must_use]
    pub fn to_bollard(&self, api_key: Option<&str>) -> ContainerCreateBody {
        let (network_mode, port_bindings, exposed) = match &self.port {
            None => ("host".to_owned(), None, None),
            Some(p) => {
                let key = format!("{}/tcp", p.port);
                (
                    "bridge".to_owned(),
                    Some(HashMap::from([(
                        key.clone(),
                        Some(vec![PortBinding {
                            host_ip: Some(p.host_ip.clone()),
                            host_port: Some(p.port.to_string()),
                        }]),
                    )])),
                    Some(vec![key]),
                )
            }
        };
        let device_requests = device_requests(&self.gpus);
        let restart = match self.restart {
            RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
            RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
            RestartPolicy::No => RestartPolicyNameEnum::NO,
        };
        let env: Vec<String> = self
            .env
            .iter()
            .filter_map(|e| match &e.value {
                EnvValue::Literal(v) => Some(format!("{}={v}", e.name)),
                EnvValue::FromEnv(_) | EnvValue::FromFile(_) => {
                    api_key.map(|k| format!("{}={k}", e.name))
                }
            })
            .collect();
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(self.cmd.clone()),
            env: (!env.is_empty()).then_some(env),
            labels: Some(self.labels.clone().into_iter().collect()),
            exposed_ports: exposed,
            healthcheck: self.health.as_ref().map(health_config),
            host_config: Some(HostConfig {
                // A bind mount of exactly the directory that was verified: unlike `Binds`
                // ("dir:/models:ro"), a relative or missing source is an error here, never a
                // named volume that happens to have that name.
                mounts: Some(vec![Mount {
                    target: Some(self.models.target.to_owned()),
                    source: Some(self.models.source.clone()),
                    typ: Some(MountType::BIND),
                    read_only: Some(self.models.read_only),
                    ..Mount::default()
                }]),
                network_mode: Some(network_mode),
                port_bindings,
                device_requests,
                restart_policy: Some(bollard::models::RestartPolicy {
                    name: Some(restart),
                    maximum_retry_count: None,
                }),
                cap_drop: Some(owned(&self.cap_drop)),
                security_opt: Some(owned(&self.security_opt)),
                log_config: Some(HostConfigLogConfig {
                    typ: Some(self.log.driver.to_owned()),
                    config: Some(
                        self.log
                            .options
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                    ),
                }),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        }
    }

    /// The `docker run` line that creates this container (for `--dry-run` and for people who
    /// keep deployments elsewhere). The API key is a reference (`"$VAR"`), never its value.
    #[must_use]
    pub fn docker_run_line(&self) -> String {
        let mut parts = vec!["docker run -d".to_owned(), format!("--name {}", self.name)];
        parts.push(format!("--restart {}", self.restart));
        match &self.gpus {
            Gpus::All => parts.push("--gpus all".to_owned()),
            Gpus::None => {}
            Gpus::Count(n) => parts.push(format!("--gpus {n}")),
            Gpus::Devices(d) => parts.push(format!(
                "--gpus {}",
                shell_quote(&format!("\"device={}\"", d.join(",")))
            )),
        }
        match &self.port {
            None => parts.push("--network host".to_owned()),
            Some(p) => parts.push(format!("-p {}:{}", host_port(&p.host_ip, p.port), p.port)),
        }
        let ro = if self.models.read_only {
            ",readonly"
        } else {
            ""
        };
        parts.push(format!(
            "--mount {}",
            shell_quote(&format!(
                "type=bind,source={},target={}{ro}",
                self.models.source, self.models.target
            ))
        ));
        for c in &self.cap_drop {
            parts.push(format!("--cap-drop {c}"));
        }
        for o in &self.security_opt {
            parts.push(format!("--security-opt {o}"));
        }
        parts.push(format!("--log-driver {}", self.log.driver));
        for (k, v) in &self.log.options {
            parts.push(format!("--log-opt {k}={v}"));
        }
        match &self.health {
            None => {}
            Some(HealthCheck::Disabled) => parts.push("--no-healthcheck".to_owned()),
            Some(
                h @ HealthCheck::Probe {
                    interval_s,
                    timeout_s,
                    retries,
                    start_period_s,
                    ..
                },
            ) => {
                if let Some(cmd) = h.shell_command() {
                    parts.push(format!("--health-cmd {}", shell_quote(&cmd)));
                }
                parts.push(format!("--health-interval {interval_s}s"));
                parts.push(format!("--health-timeout {timeout_s}s"));
                parts.push(format!("--health-retries {retries}"));
                parts.push(format!("--health-start-period {start_period_s}s"));
            }
        }
        // A value from a variable or a file (the API key) is given to the docker CLI in its
        // environment (an assignment before the command: `-e NAME` alone passes it on), never
        // in its arguments, which every local user can read in /proc/PID/cmdline (`ps`).
        let mut assign = Vec::new();
        for e in &self.env {
            match &e.value {
                EnvValue::Literal(v) => {
                    parts.push(format!("-e {}", shell_quote(&format!("{}={v}", e.name))));
                }
                // Double quotes: the shell expands the reference when the line runs.
                EnvValue::FromEnv(var) => {
                    assign.push(format!("{}=\"${var}\"", e.name));
                    parts.push(format!("-e {}", e.name));
                }
                // The shell reads the file when the line runs.
                EnvValue::FromFile(path) => {
                    assign.push(format!("{}=\"$(cat {})\"", e.name, shell_quote(path)));
                    parts.push(format!("-e {}", e.name));
                }
            }
        }
        for (k, v) in &self.labels {
            parts.push(format!("--label {}", shell_quote(&format!("{k}={v}"))));
        }
        parts.push(shell_quote(&self.image));
        let mut line = String::new();
        for a in &assign {
            let _ = write!(line, "{a} ");
        }
        line.push_str(&parts.join(" \\\n  "));
        for a in &self.cmd {
            let _ = write!(line, " {}", shell_quote(a));
        }
        line
    }
}

/// Docker's GPU request: every GPU, a count, or device ids; the `gpu` capability.
fn device_requests(gpus: &Gpus) -> Option<Vec<DeviceRequest>> {
    match gpus {
        Gpus::None => None,
        gpus => Some(vec![DeviceRequest {
            driver: Some(String::new()),
            count: match gpus {
                Gpus::All => Some(-1),
                Gpus::Count(n) => Some(i64::from(*n)),
                _ => None,
            },
            device_ids: match gpus {
                Gpus::Devices(d) => Some(d.clone()),
                _ => None,
            },
            capabilities: Some(vec![vec!["gpu".to_owned()]]),
            options: None,
        }]),
    }
}

/// The health check as the Engine API takes it (nanoseconds; `NONE` switches it off).
fn health_config(h: &HealthCheck) -> HealthConfig {
    let secs = |s: u64| i64::try_from(s).map_or(i64::MAX, |s| s.saturating_mul(1_000_000_000));
    match h {
        HealthCheck::Probe {
            test,
            interval_s,
            timeout_s,
            retries,
            start_period_s,
        } => HealthConfig {
            test: Some(test.clone()),
            interval: Some(secs(*interval_s)),
            timeout: Some(secs(*timeout_s)),
            retries: Some(i64::from(*retries)),
            start_period: Some(secs(*start_period_s)),
            ..HealthConfig::default()
        },
        HealthCheck::Disabled => HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..HealthConfig::default()
        },
    }
}

/// `s` as one POSIX shell word: as is when it holds only safe characters, else single-quoted.
#[must_use]
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=,@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
