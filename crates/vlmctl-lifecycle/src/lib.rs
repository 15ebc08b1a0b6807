//! The Docker side of vlmctl, through the Engine API with [`bollard`] (never the docker CLI).
//!
//! Today this crate holds the connection to the daemon: [`connect`] returns a version-negotiated
//! [`bollard::Docker`] or a [`LifecycleError`] whose hint tells a not-running daemon from a
//! permission problem. The gates (platform, ports, GPU memory, conflicts), the stop/restore
//! journal, launch, readiness and teardown build on it (DESIGN.md, "The flow of provision").
//!
//! Every container vlmctl creates carries the label [`MANAGED_LABEL`]`=true`, so that it can be
//! found, and removed, by label.

mod error;

pub use error::LifecycleError;

/// Label put on every container and image vlmctl (or its tests) creates.
pub const MANAGED_LABEL: &str = "org.vlmctl.managed";

/// Connects to the Docker daemon the way the docker CLI does (`DOCKER_HOST`, else the local
/// socket) and negotiates the API version.
///
/// bollard sends requests unversioned unless told otherwise, so negotiating is what keeps us
/// from relying on fields newer than the daemon (Debian's dockerd 20.10 speaks API 1.41).
pub async fn connect() -> Result<bollard::Docker, LifecycleError> {
    let docker = bollard::Docker::connect_with_defaults().map_err(|source| {
        LifecycleError::DaemonUnreachable {
            host: docker_host(),
            source,
        }
    })?;
    docker
        .negotiate_version()
        .await
        .map_err(|source| LifecycleError::DaemonUnreachable {
            host: docker_host(),
            source,
        })
}

/// Where the daemon is expected, for messages: `DOCKER_HOST` or the default socket.
#[must_use]
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}
