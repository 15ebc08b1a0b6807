//! The Docker side of vlmctl, through the Engine API with [`bollard`] (never the docker CLI).
//!
//! - [`Engine`]: which engine a job changes (this machine's, or another host's over SSH,
//!   [`hosts`]), built once by the front-end; [`Engine::connect`] gives a version-negotiated
//!   [`bollard::Docker`], or a [`LifecycleError`] whose hint tells a not-running daemon from a
//!   permission problem.
//! - [`spec::Spec`]: a deployment spec, validated before any I/O; llama-server arguments and
//!   labels derive from it.
//! - [`gates`]: daemon, platform ([`platform`]), port ([`ports`]), GPU memory ([`gpu`]),
//!   weights (supplied by the caller) and conflicts, concurrently, read-only.
//! - [`journal`]: the restore journal, written before anything is stopped; [`journal::restore`]
//!   brings stopped containers back, idempotently, and removes a half-started server.
//! - [`lockfile`]: one command at a time per deployment.
//! - [`containers`]: the [`containers::ContainerPlan`] built once from a spec (the bollard body
//!   `launch` sends, the `docker run` line and compose are its renderings), launch (idempotent by
//!   spec hash), readiness on `/health`, teardown, conflict discovery.
//!
//! This crate does not depend on the weights crate (so not on the hub client): the weights gate
//! result and the model's files arrive as plain data ([`spec::ModelMount`]).
//!
//! Every container vlmctl creates carries the label [`MANAGED_LABEL`]`=true`, so that it can be
//! found, and removed, by label.

pub mod containers;
mod engine;
mod error;
pub mod gates;
pub mod gpu;
pub mod hosts;
pub mod journal;
pub mod lockfile;
pub mod platform;
pub mod ports;
pub mod remote;
mod shell;
pub mod spec;
mod transport;

pub use bollard::Docker;
pub use engine::Engine;
pub use error::LifecycleError;
pub use transport::{AnswerTooLarge, MAX_ENGINE_ANSWER};

/// Label put on every container and image vlmctl (or its tests) creates.
pub const MANAGED_LABEL: &str = "org.vlmctl.managed";
/// Label with the sha256 of the spec a container was created from.
pub const SPEC_LABEL: &str = "org.vlmctl.spec-sha256";
/// Label with the sha256 of the lock entry of the model it serves.
pub const LOCK_LABEL: &str = "org.vlmctl.lock-sha256";
/// Label with the id of the run that created the container (found and removed by it when the
/// run dies before it recorded the container's id).
pub const RUN_LABEL: &str = "org.vlmctl.run-id";
/// Label with the deployment name.
pub const NAME_LABEL: &str = "org.vlmctl.deployment";

/// Seconds since the epoch, for journal and lock timestamps (0 if the clock is before 1970).
#[must_use]
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A client for the engine at `address` (`unix://PATH`, `tcp://HOST:PORT`, `http://...`),
/// reading at most `limit` bytes of each answer.
pub(crate) fn engine_at(
    address: &str,
    limit: u64,
) -> Result<bollard::Docker, bollard::errors::Error> {
    match address.strip_prefix("unix://") {
        Some(path) => {
            transport::unix_engine(transport::fixed(std::path::PathBuf::from(path)), limit)
        }
        // bollard is built without TLS: tcp:// is plain HTTP, as in its own transport.
        None if address.starts_with("tcp://") || address.starts_with("http://") => {
            transport::tcp_engine(address, limit)
        }
        // Whatever else: bollard's answer (an unsupported scheme).
        None => bollard::Docker::connect_with_host(address),
    }
}

/// A client for the engine at `address` (as `DOCKER_HOST` names one), reading at most `limit`
/// bytes of each answer (tests give a small one).
pub async fn connect_address(address: &str, limit: u64) -> Result<bollard::Docker, LifecycleError> {
    engine_at(address, limit)
        .map_err(|source| LifecycleError::DaemonUnreachable {
            host: address.to_owned(),
            source,
        })?
        .negotiate_version()
        .await
        .map_err(|source| LifecycleError::DaemonUnreachable {
            host: address.to_owned(),
            source,
        })
}
