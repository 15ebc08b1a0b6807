use std::io;
use std::path::PathBuf;

/// Everything that can go wrong on the Docker side.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The daemon did not answer (not running, wrong `DOCKER_HOST`, or no permission).
    #[error("cannot reach the Docker daemon at {host}")]
    DaemonUnreachable {
        /// `DOCKER_HOST` or the default socket.
        host: String,
        /// What bollard reported.
        #[source]
        source: bollard::errors::Error,
    },
    /// The spec file could not be read.
    #[error("cannot read {}", path.display())]
    SpecRead {
        /// The spec.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The spec is malformed; `line` is 1-based.
    #[error("{}:{line}: {}{message}", path.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    SpecInvalid {
        /// The spec.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The registry could not tell the image's platforms.
    #[error("cannot read the manifest of {image} from its registry")]
    RegistryInspect {
        /// Image reference.
        image: String,
        /// What the daemon said.
        #[source]
        source: bollard::errors::Error,
    },
    /// The image could not be pulled.
    #[error("cannot pull {image}")]
    Pull {
        /// Image reference.
        image: String,
        /// What the daemon said.
        #[source]
        source: bollard::errors::Error,
    },
    /// A Docker API call failed.
    #[error("failed to {action}")]
    Docker {
        /// What we were doing.
        action: String,
        /// What the daemon said.
        #[source]
        source: bollard::errors::Error,
    },
    /// The restore journal could not be read or written.
    #[error("restore journal {}", path.display())]
    Journal {
        /// The journal.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A container of the deployment's name exists and vlmctl did not create it.
    #[error("a container named {container} exists and was not created by vlmctl")]
    NameTaken {
        /// The name.
        container: String,
    },
    /// `--gpus` without the NVIDIA container runtime.
    #[error(
        "container {container} asks for GPUs but Docker has no GPU runtime (could not select device driver \"\" with capabilities: [[gpu]])"
    )]
    NoGpuRuntime {
        /// Container.
        container: String,
    },
    /// The port was taken when the container started.
    #[error("container {container} could not bind its port: {detail}")]
    PortTaken {
        /// Container.
        container: String,
        /// Daemon message.
        detail: String,
    },
    /// The server exited while loading.
    #[error(
        "container {container} exited with code {exit_code} while loading the model; last log lines:\n{logs}"
    )]
    ExitedDuringLoad {
        /// Container.
        container: String,
        /// Exit code.
        exit_code: i64,
        /// Log tail.
        logs: String,
    },
    /// The smoke request failed.
    #[error("smoke request to {url} failed: {why}")]
    SmokeFailed {
        /// Server.
        url: String,
        /// What happened.
        why: String,
    },
    /// Empty `content` with non-empty `reasoning_content`.
    #[error("thinking mode leaked on {url}: the answer is all reasoning_content and no content")]
    ThinkingLeaked {
        /// Server.
        url: String,
    },
    /// `/health` never answered 200.
    #[error("container {container} was not ready after {waited_s} s ({last})")]
    NotReady {
        /// Container.
        container: String,
        /// Seconds waited.
        waited_s: u64,
        /// Last observation.
        last: String,
    },
}

impl LifecycleError {
    /// What the user should do next.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::DaemonUnreachable { source, .. } => {
                if is_permission_denied(source) {
                    "the socket exists but you may not use it: add yourself to the `docker` group \
                     (then log in again) or point DOCKER_HOST at a daemon you may use"
                        .to_owned()
                } else {
                    "start the daemon (`dockerd`, or `systemctl start docker`) or point \
                     DOCKER_HOST at a running one; `docker info` should answer"
                        .to_owned()
                }
            }
            Self::SpecRead { .. } => "pass --spec PATH to an existing deployment spec (see docker/)".to_owned(),
            Self::SpecInvalid { .. } => "fix that line; the fields are documented in docker/panda-llamacpp.toml".to_owned(),
            Self::RegistryInspect { source, .. } => {
                let m = source.to_string();
                if m.contains("manifest unknown") || m.contains("not found") || m.contains("404") {
                    "the image or tag does not exist in that registry: check `image` in the spec".to_owned()
                } else if m.contains("unauthorized") || m.contains("denied") {
                    "the registry wants credentials: `docker login` to it".to_owned()
                } else {
                    "check that the registry is reachable from the Docker daemon".to_owned()
                }
            }
            Self::Pull { .. } => "check the image name and tag, that the daemon can reach the registry, and credentials (`docker login REGISTRY`)".to_owned(),
            Self::Docker { .. } => "see the daemon's message above; `docker ps -a` and `docker logs` show more".to_owned(),
            Self::Journal { .. } => "check the state directory's permissions; do not edit journals by hand".to_owned(),
            Self::NameTaken { .. } => "rename the deployment (`name` in the spec) or remove that container yourself if it is yours to remove".to_owned(),
            Self::NoGpuRuntime { .. } => "install the NVIDIA Container Toolkit (nvidia-ctk runtime configure --runtime=docker, then restart dockerd), or set gpus = \"none\" for a CPU-only run".to_owned(),
            Self::PortTaken { .. } => "pick another `server.port`, or stop what holds it (`vlmctl gates` names it)".to_owned(),
            Self::ExitedDuringLoad { .. } => "read the log lines: a wrong model path, an unsupported model architecture for this llama.cpp, or too little memory are the usual causes".to_owned(),
            Self::SmokeFailed { .. } => "the server is up but does not answer chat requests: `docker logs` shows why".to_owned(),
            Self::ThinkingLeaked { .. } => "start llama-server with --jinja (spec: server.jinja = true) so chat_template_kwargs {\"enable_thinking\": false} takes effect".to_owned(),
            Self::NotReady { .. } => "a large model may need longer: raise `health.timeout_s`; `docker logs` shows where loading stands".to_owned(),
        }
    }
}

fn is_permission_denied(err: &bollard::errors::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return io.kind() == io::ErrorKind::PermissionDenied;
        }
        cause = e.source();
    }
    false
}
