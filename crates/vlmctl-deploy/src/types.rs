//! Plain values several jobs and the error type name: what a pin needs and did, why a target
//! or a server is not measurable, how a tune variant did, the names a tune parks and locks
//! under. Types at the bottom of the crate: this module imports none of its siblings, so that
//! `error`, `events` and the jobs can all use them without a circle.

use std::path::PathBuf;

use serde::Serialize;
use vlmctl_weights::{ModelEntry, PinRequest};

/// Why a deployment a target names cannot be measured on its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentProblem {
    /// No container vlmctl manages has that name there.
    Missing {
        /// The deployments there are.
        known: Vec<String>,
    },
    /// It is there, but not running.
    NotRunning {
        /// Docker's state (`exited`, `created`).
        state: String,
        /// Docker's status line (`Exited (0) 3 hours ago`).
        status: String,
    },
    /// It runs, but its container does not say where it listens.
    NoEndpoint,
}

impl DeploymentProblem {
    /// The message, after `target.deployment: target "NAME": `.
    #[must_use]
    pub fn text(&self, deployment: &str, host: &str) -> String {
        match self {
            Self::Missing { known } => format!(
                "no deployment {deployment:?} on host {host} ({})",
                if known.is_empty() {
                    "vlmctl manages none there".to_owned()
                } else {
                    format!("vlmctl manages {} there", known.join(", "))
                }
            ),
            Self::NotRunning { state, status } => format!(
                "deployment {deployment:?} on host {host} is {state} ({status}): nothing to measure"
            ),
            Self::NoEndpoint => format!(
                "deployment {deployment:?} on host {host} runs, but its container does not say \
                 where it listens (no --host/--port, no published port)"
            ),
        }
    }

    /// What to do next.
    #[must_use]
    pub fn hint(&self, host: &str) -> String {
        // A plan's host or a context's name, in commands to paste: quoted when a shell would
        // act on it.
        let host = vlmctl_lifecycle::remote::sh_word(host);
        match self {
            Self::Missing { .. } => format!(
                "correct the name (`vlmctl status --host {host}` lists the deployments there), \
                 or provision it there first: `vlmctl provision --host {host} --spec SPEC`"
            ),
            Self::NotRunning { .. } => {
                format!("start it again: `vlmctl relaunch --host {host} --spec SPEC`, then bench")
            }
            Self::NoEndpoint => format!(
                "relaunch it with vlmctl (`vlmctl relaunch --host {host} --spec SPEC`), or give \
                 the target's url instead of its deployment"
            ),
        }
    }

    /// Whether the plan is at fault (it names what is not there), rather than the host's
    /// state.
    #[must_use]
    pub fn is_plan_error(&self) -> bool {
        matches!(self, Self::Missing { .. })
    }
}

/// A deployment a plan's target names that cannot be measured on its host
/// (`DeployError::TargetDeployment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmeasurable {
    /// The plan.
    pub plan: PathBuf,
    /// The line of the target's `deployment`.
    pub line: usize,
    /// The target's name.
    pub target: String,
    /// The deployment, as named.
    pub deployment: String,
    /// Its host, as named.
    pub host: String,
    /// What is wrong with it there.
    pub problem: DeploymentProblem,
}

impl std::fmt::Display for Unmeasurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: target.deployment: target {:?}: {}",
            self.plan.display(),
            self.line,
            self.target,
            self.problem.text(&self.deployment, &self.host)
        )
    }
}

/// A spec whose model is not pinned (yet, or any more) in the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinNeed {
    /// What to resolve.
    pub request: PinRequest,
    /// The lock file that gets the entry.
    pub lock: PathBuf,
    /// Why.
    pub reason: Reason,
}

impl std::fmt::Display for PinNeed {
    /// "gemma-4-e2b-it-q4km: unsloth/gemma-4-E2B-it-GGUF@main (a.gguf, mmproj-F16.gguf)",
    /// with what changed when the entry exists.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.request;
        let files: Vec<&str> = r.files.iter().map(|(p, _)| p.as_str()).collect();
        write!(
            f,
            "{}: {}@{} ({})",
            r.name,
            r.repo,
            r.revision,
            files.join(", ")
        )?;
        match &self.reason {
            Reason::NoEntry if !self.lock.exists() => write!(
                f,
                "; {} does not exist and will be created (run from the repository root, or pass \
                 --lock, to use the committed one)",
                self.lock.display()
            ),
            Reason::NoEntry => write!(f, "; {} has no entry for it", self.lock.display()),
            Reason::Changed(what) => write!(
                f,
                "; the entry in {} differs: {}",
                self.lock.display(),
                what.join("; ")
            ),
        }
    }
}

/// What a write did to the lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A new entry.
    Added,
    /// An entry replaced; the one it replaced.
    Updated {
        /// The entry before.
        previous: Box<ModelEntry>,
    },
    /// The lock already held exactly this entry (another command pinned it meanwhile, or the
    /// hub resolved to what was pinned): nothing was written.
    Unchanged,
}

/// A pinned entry, as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pinned {
    /// The entry.
    pub entry: ModelEntry,
    /// What happened to the lock.
    #[serde(flatten)]
    pub change: Change,
    /// The lock file.
    pub lock: PathBuf,
}

/// A server that does not (provably) run the model on the GPU the spec asks for: what is
/// missing, and the log lines that say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOnGpu {
    /// Deployment container.
    pub container: String,
    /// What is missing.
    pub shortfall: Shortfall,
    /// The server's log lines about CUDA and offloading, verbatim.
    pub evidence: Vec<String>,
    /// The image (for the hint).
    pub image: String,
    /// The GPU's compute capability, from the log, else `nvidia-smi`.
    pub compute_cap: Option<String>,
}

impl std::fmt::Display for NotOnGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A few lines at most: the record keeps them all.
        const SHOWN: usize = 4;
        write!(
            f,
            "{} does not run the model on the GPU: {}; ",
            self.container, self.shortfall
        )?;
        if self.evidence.is_empty() {
            return write!(
                f,
                "its log has no line about CUDA devices or offloaded layers"
            );
        }
        let mut quoted: Vec<String> = self
            .evidence
            .iter()
            .take(SHOWN)
            .map(|l| format!("{l:?}"))
            .collect();
        if self.evidence.len() > SHOWN {
            quoted.push(format!("and {} more", self.evidence.len() - SHOWN));
        }
        write!(f, "its log says: {}", quoted.join(", "))
    }
}

impl NotOnGpu {
    /// What to do next.
    #[must_use]
    pub fn hint(&self) -> String {
        self.shortfall
            .hint(&self.image, self.compute_cap.as_deref())
    }
}

/// Where a variant's memory figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// The server's processes in `nvidia-smi --query-compute-apps`.
    Gpu,
    /// The container's memory as `docker stats` shows it (a CPU deployment).
    Container,
}

/// One variant's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// The config the row shows (the plan's first).
    pub config: String,
    /// Its p50 (ms).
    pub p50_ms: f64,
    /// Its p95 (ms).
    pub p95_ms: f64,
    /// Requests that succeeded, over every config.
    pub ok: usize,
    /// Requests that failed, over every config.
    pub errors: usize,
    /// Whether every config met the plan's `[slo]`; `None` without one.
    pub slo_met: Option<bool>,
    /// The server's memory after the run (MiB); `None` when it could not be read.
    pub memory_mib: Option<u64>,
    /// Seconds from start to `/health` 200.
    pub startup_s: Option<f64>,
}

/// What stopped a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// It did not come up (exited, not ready, smoke request failed).
    Launch,
    /// It came up, but no request succeeded.
    Bench,
}

/// How one variant did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Benchmarked.
    Measured(Measured),
    /// Not benchmarked.
    Failed {
        /// Where it stopped.
        stage: Stage,
        /// Why (the error and its causes).
        why: String,
    },
}

/// The name the deployment's container waits under while a tune runs.
#[must_use]
pub fn parked_name(name: &str) -> String {
    format!("{name}{}", vlmctl_lifecycle::spec::TUNE_PARKED_SUFFIX)
}

/// The deployment whose tune parked `name` ([`parked_name`]), if `name` is such a name.
#[must_use]
pub fn parked_of(name: &str) -> Option<&str> {
    name.strip_suffix(vlmctl_lifecycle::spec::TUNE_PARKED_SUFFIX)
        .filter(|d| !d.is_empty())
}

/// The lock a tune holds for its whole run besides the deployment's own (which it takes
/// second; `provision`, `relaunch` and `teardown` take both in that order, see
/// [`crate::lock::tune_guard`]; a tune's variants take neither: they run under the tune's).
#[must_use]
pub fn lock_name(name: &str) -> String {
    format!("{name}.tune")
}

/// The shortest API key accepted.
pub const MIN_API_KEY_LEN: usize = 16;

/// Why the lock must change for a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The lock has no entry of that name.
    NoEntry,
    /// The entry no longer matches the intent: what differs, e.g. `files: [a] -> [a, b]`.
    Changed(Vec<String>),
}

/// Why the model is not (known to be) on the GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Shortfall {
    /// CUDA failed in the server (e.g. no kernels for the GPU).
    CudaError {
        /// CUDA's message.
        message: String,
    },
    /// The server found no CUDA device.
    NoDevice {
        /// Why CUDA said it could not initialize, if it did.
        cuda_says: Option<String>,
    },
    /// A device was found, but the log does not say how many layers went to it.
    NoOffloadLine,
    /// Fewer layers on the GPU than asked for.
    Partial {
        /// Offloaded.
        layers: u32,
        /// Of.
        of: u32,
        /// Asked for.
        expected: u32,
    },
    /// The server holds less GPU memory than the floor.
    BelowFloor {
        /// Measured.
        used_mib: u64,
        /// Floor.
        floor_mib: u64,
    },
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CudaError { message } => write!(f, "CUDA failed in the server: {message}"),
            Self::NoDevice {
                cuda_says: Some(why),
            } => {
                write!(f, "the server found no CUDA device (CUDA: {why})")
            }
            Self::NoDevice { cuda_says: None } => write!(f, "the server found no CUDA device"),
            Self::NoOffloadLine => write!(
                f,
                "the server found a CUDA device, but its log does not say how many layers went to it"
            ),
            Self::Partial {
                layers,
                of,
                expected,
            } => write!(
                f,
                "only {layers}/{of} layers were offloaded to the GPU ({expected} asked for)"
            ),
            Self::BelowFloor {
                used_mib,
                floor_mib,
            } => write!(
                f,
                "the server holds {used_mib} MiB of GPU memory, below the floor of {floor_mib} MiB"
            ),
        }
    }
}

impl Shortfall {
    /// What to do next. `compute_cap`: the GPU's (from the log, else `nvidia-smi`).
    #[must_use]
    pub fn hint(&self, image: &str, compute_cap: Option<&str>) -> String {
        let toolkit = format!(
            "check the NVIDIA container toolkit: `docker run --rm --gpus all {image} nvidia-smi` \
             must list the GPU"
        );
        let no_kernels = |cc: &str| {
            if needs_cuda13(cc) && !image.contains("cuda13") {
                format!(
                    "the image has no kernels for compute capability {cc}: use server-cuda13 or \
                     build from source"
                )
            } else {
                format!(
                    "the image has no kernels for compute capability {cc}: use an image built \
                     for it, or build llama.cpp from source with CMAKE_CUDA_ARCHITECTURES={}",
                    cc.replace('.', "")
                )
            }
        };
        match self {
            Self::CudaError { message } => match compute_cap {
                Some(cc) if message.contains("no kernel image") => no_kernels(cc),
                _ => format!(
                    "CUDA failed inside the container ({message}); a host driver older than the \
                     image's CUDA runtime is a common cause (`nvidia-smi` shows the driver's \
                     CUDA version)"
                ),
            },
            Self::NoDevice { cuda_says } => {
                if cuda_says
                    .as_deref()
                    .is_some_and(|w| w.contains("driver version is insufficient"))
                {
                    "the host's NVIDIA driver is older than the image's CUDA runtime: update the \
                     driver, or use an image built for an older CUDA"
                        .to_owned()
                } else if let Some(cc) = compute_cap.filter(|cc| needs_cuda13(cc))
                    && !image.contains("cuda13")
                {
                    format!(
                        "{}; or the container sees no GPU: {toolkit}",
                        no_kernels(cc)
                    )
                } else if cuda_says.is_some() {
                    format!("the container sees no GPU: {toolkit}")
                } else {
                    format!(
                        "the container sees no GPU, or the image has no CUDA backend: {toolkit}, \
                         and use a CUDA build of llama-server (e.g. \
                         ghcr.io/ggml-org/llama.cpp:server-cuda)"
                    )
                }
            }
            Self::NoOffloadLine => format!(
                "llama-server logs its offloaded layers at verbosity 4 (vlmctl's GPU probe runs \
                 with {}=4): an image whose llama-server does not log `offloaded N/M layers to \
                 GPU` there cannot be proven to run on the GPU; read the probe's log lines above",
                vlmctl_lifecycle::containers::LOG_VERBOSITY_ENV
            ),
            Self::Partial { .. } => "the model does not fit in the GPU memory left to it: free \
                                     GPU memory (see the gpu gate), lower server.ctx_size, or \
                                     raise server.n_gpu_layers"
                .to_owned(),
            Self::BelowFloor { .. } => "a server that holds less GPU memory than its model runs \
                                        part of it on the CPU (see the log's model buffer lines); \
                                        if the figure is right for this model, lower \
                                        memory.min_process_mib (0: the log alone decides)"
                .to_owned(),
        }
    }
}

/// Compute capabilities from `12.1` up have kernels only in CUDA >= 12.9 builds, which
/// llama.cpp publishes as `server-cuda13`; `server-cuda` has `12.0` (panda's RTX 5070 Ti runs
/// it), so that one is not sent to cuda13.
pub(crate) fn needs_cuda13(cc: &str) -> bool {
    let mut parts = cc.split('.');
    let major: u32 = parts
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    let minor: u32 = parts
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    (major, minor) >= (12, 1)
}
