//! [`Engine`]: which Docker engine a job changes, as one value the front-end builds once and
//! hands to every job: the host (this machine's daemon, or another's over SSH), where that
//! host's state lives, and the [`Sessions`] pool through which another host is reached. A
//! function's parameters say which machine it affects; two engines live side by side in one
//! process (`status --all-hosts`, a bench plan naming several hosts, the service, tests).

use std::path::{Path, PathBuf};

use crate::hosts::{self, Host, Sessions};
use crate::{LifecycleError, MAX_ENGINE_ANSWER, transport};

/// A Docker engine and what belongs to it (see the module's documentation).
#[derive(Debug, Clone)]
pub struct Engine {
    host: Host,
    base_state: PathBuf,
    state_dir: PathBuf,
    sessions: Sessions,
}

impl Engine {
    /// `host`'s engine, its state under `base_state` ([`Host::state_dir`]), reached through
    /// `sessions`.
    #[must_use]
    pub fn new(host: Host, base_state: &Path, sessions: Sessions) -> Self {
        Self {
            state_dir: host.state_dir(base_state),
            base_state: base_state.to_owned(),
            host,
            sessions,
        }
    }

    /// The engine the user named, as the docker CLI would pick it ([`hosts::resolve()`]: `flag`,
    /// else `DOCKER_HOST`, else the current context in `docker_config`, else this machine's).
    pub fn resolve(
        flag: Option<&str>,
        docker_config: &Path,
        base_state: &Path,
        sessions: Sessions,
    ) -> Result<Self, LifecycleError> {
        Ok(Self::new(
            hosts::resolve(flag, docker_config)?,
            base_state,
            sessions,
        ))
    }

    /// This machine's engine with its state in `state`, and a pool of its own.
    #[must_use]
    pub fn local(state: &Path) -> Self {
        Self::new(Host::Local, state, Sessions::new())
    }

    /// Another host's engine, sharing this one's base state folder and pool.
    #[must_use]
    pub fn on(&self, host: Host) -> Self {
        Self::new(host, &self.base_state, self.sessions.clone())
    }

    /// Which host.
    #[must_use]
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Whether it is another host's engine (reached over SSH).
    #[must_use]
    pub fn is_remote(&self) -> bool {
        matches!(self.host, Host::Ssh { .. })
    }

    /// The name its state and records are kept under ([`Host::name`]).
    #[must_use]
    pub fn name(&self) -> &str {
        self.host.name()
    }

    /// Where this host's journals, records and deployment locks live.
    #[must_use]
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The state folder of this machine, whatever the host (the history lives there).
    #[must_use]
    pub fn base_state_dir(&self) -> &Path {
        &self.base_state
    }

    /// The pool its sessions and helpers belong to.
    #[must_use]
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// A Docker client for this engine, its API version negotiated: this machine's daemon the
    /// way the docker CLI finds it (`DOCKER_HOST`, else the local socket), or another host's
    /// Docker socket forwarded over SSH (a session of the pool, opened on first use).
    ///
    /// bollard sends requests unversioned unless told otherwise, so negotiating is what keeps
    /// us from relying on fields newer than the daemon (Debian's dockerd 20.10 speaks API 1.41).
    pub async fn connect(&self) -> Result<bollard::Docker, LifecycleError> {
        let docker = match &self.host {
            // `--host local` while DOCKER_HOST names an SSH host: this machine's socket.
            Host::Local => crate::engine_at(&local_address(), MAX_ENGINE_ANSWER),
            Host::Ssh { target, .. } => {
                let session = self.sessions.session(target).await?;
                through_forward(session)
            }
        }
        .map_err(|source| LifecycleError::DaemonUnreachable {
            host: self.docker_host(),
            source,
        })?;
        docker
            .negotiate_version()
            .await
            .map_err(|source| LifecycleError::DaemonUnreachable {
                host: self.docker_host(),
                source,
            })
    }

    /// Where this process reaches `host:port` as the engine's host sees it
    /// ([`Sessions::reach`]).
    pub async fn reach(&self, host: &str, port: u16) -> Result<(String, u16), LifecycleError> {
        self.sessions.reach(&self.host, host, port).await
    }

    /// Where the daemon is, for messages: the SSH host, `DOCKER_HOST`, or the default socket.
    #[must_use]
    pub fn docker_host(&self) -> String {
        match &self.host {
            Host::Ssh { target, .. } => target.to_string(),
            Host::Local => local_address(),
        }
    }
}

/// This machine's engine: `DOCKER_HOST` unless it names an SSH host, else the local socket.
fn local_address() -> String {
    std::env::var(vlmctl_base::env::DOCKER_HOST)
        .ok()
        .filter(|h| !h.starts_with("ssh://"))
        .unwrap_or_else(|| hosts::DEFAULT_SOCKET.to_owned())
}

/// A client for the engine behind a session's forwarded socket: every request first makes sure
/// the forward is up ([`hosts::Session::docker_usable`]): one whose `ssh` ended is started again
/// on the same socket path before the request goes, and a host that stays unreachable fails the
/// request with [`LifecycleError::HostLost`] inside.
fn through_forward(
    session: std::sync::Arc<hosts::Session>,
) -> Result<bollard::Docker, bollard::errors::Error> {
    transport::unix_engine(
        std::sync::Arc::new(move || {
            let session = std::sync::Arc::clone(&session);
            Box::pin(async move {
                session
                    .docker_usable()
                    .await
                    .map_err(|e| bollard::errors::Error::IOError {
                        err: std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e),
                    })?;
                Ok(session.docker_socket().to_owned())
            })
        }),
        MAX_ENGINE_ANSWER,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two engines live side by side in one process: each says its own host, state folder and
    /// daemon, and one built beside another shares its pool and base state folder.
    #[test]
    fn engines_side_by_side_keep_their_own_host_and_state() {
        let base = Path::new("/s");
        let here = Engine::local(base);
        let beast = here.on(Host::Ssh {
            name: "beast".into(),
            target: hosts::parse_ssh("ssh://me@beast:2200").expect("an ssh URL"),
        });
        assert!(!here.is_remote());
        assert!(beast.is_remote());
        assert_eq!(here.state_dir(), base);
        assert_eq!(beast.state_dir(), beast.host().state_dir(base));
        assert_ne!(beast.state_dir(), here.state_dir());
        assert_eq!(beast.base_state_dir(), base);
        assert_eq!((here.name(), beast.name()), ("local", "beast"));
        assert_eq!(beast.docker_host(), "ssh://me@beast:2200");
        assert!(here.sessions().is(beast.sessions()));
        assert!(!here.sessions().is(Engine::local(base).sessions()));
    }
}
