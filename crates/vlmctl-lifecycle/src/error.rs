use std::io;

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
