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
    /// `--host` (or `DOCKER_HOST`, or a context's endpoint) is not an address we can use.
    #[error("{value:?} is not a host: {why}")]
    HostInvalid {
        /// What was given.
        value: String,
        /// Why not.
        why: String,
    },
    /// `--host NAME` names no Docker context.
    #[error("no host {name:?}: it is neither `local`, an ssh:// address, nor a Docker context")]
    HostUnknown {
        /// The name.
        name: String,
        /// The contexts there are.
        known: Vec<String>,
    },
    /// `ssh` could not be started (or its folder made).
    #[error("cannot start ssh to {host}")]
    SshStart {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `ssh` ended, or did not set its forward up in time.
    #[error("ssh to {host} failed: {said}")]
    SshFailed {
        /// The host.
        host: String,
        /// What ssh said.
        said: String,
    },
    /// A forward's `ssh` ended while vlmctl ran and could not be started again.
    #[error(
        "lost the SSH connection to {host}: its forward ended and {tries} tries to open it again failed ({said})"
    )]
    HostLost {
        /// The host.
        host: String,
        /// How many tries.
        tries: u32,
        /// What the last try said.
        said: String,
    },
    /// A file on the engine's host could not be placed or did not verify there.
    #[error("on the host, {file}: {said}")]
    RemoteFile {
        /// The file.
        file: String,
        /// What the host's shell said (or the size and sha256 it found).
        said: String,
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
    /// A state file (a deployment lock) could not be created or locked.
    #[error("state file {}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Another vlmctl command holds the deployment's lock.
    #[error("deployment {deployment} is busy: {holder} holds {}", lock.display())]
    Busy {
        /// The deployment.
        deployment: String,
        /// Who holds it (pid, command, since), as it wrote it.
        holder: String,
        /// The lock file.
        lock: PathBuf,
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
            Self::HostInvalid { .. } => "write a host as ssh://[user@]host[:port], or name a Docker \
                 context (`docker context ls`), or `local`"
                .to_owned(),
            Self::HostUnknown { known, .. } => format!(
                "{}; add one with `docker context create NAME --docker host=ssh://user@host`, or \
                 pass --host ssh://user@host",
                if known.is_empty() {
                    "there are no Docker contexts".to_owned()
                } else {
                    format!("the Docker contexts are: {}", known.join(", "))
                }
            ),
            Self::RemoteFile { .. } => "push again: whole pieces are kept, the rest is sent \
                 again and the file verified on the host before it gets its name"
                .to_owned(),
            Self::SshStart { .. } => {
                "vlmctl uses OpenSSH's `ssh` from PATH: install it (Debian: openssh-client)"
                    .to_owned()
            }
            Self::SshFailed { host, said } => {
                // `host` may come from a plan, a Docker context or an engine: quoted, so that
                // the command is safe to paste whatever it holds.
                let login = format!(
                    "`ssh -o BatchMode=yes {} true` must work without a prompt",
                    crate::shell::sh_word(host)
                );
                if said.contains("Permission denied") {
                    format!(
                        "the host refused every key ssh offered: add your public key to its \
                         ~/.ssh/authorized_keys, load it into ssh-agent, or name it in \
                         ~/.ssh/config (VLMCTL_SSH_CONFIG for another file); {login}"
                    )
                } else if said.contains("Host key verification failed") {
                    format!("ssh does not know the host's key yet: connect once by hand to check and accept it; {login}")
                } else {
                    format!("check the address, port and network; {login}")
                }
            }
            Self::HostLost { host, said, .. } => format!(
                "the connection dropped and could not be made again: {}; what was done is kept \
                 (a push resumes from its whole pieces), so run the command again once it works",
                Self::SshFailed {
                    host: host.clone(),
                    said: said.clone()
                }
                .hint()
            ),
            Self::DaemonUnreachable { source, .. } | Self::Docker { source, .. }
                if crate::transport::answer_too_large(source) =>
            {
                crate::transport::too_large_hint()
            }
            Self::Docker { source, .. } if lost_link(source).is_some() => {
                lost_link(source).map(Self::hint).unwrap_or_default()
            }
            Self::DaemonUnreachable { host, .. } if host.starts_with("ssh://") => format!(
                "ssh reached the host, but no Docker daemon answered on its /var/run/docker.sock: \
                 is Docker installed and running there, and may that user use its socket \
                 (the `docker` group)? `ssh {} docker info` should answer",
                crate::shell::sh_word(host)
            ),
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
            Self::Journal { source, path } | Self::State { source, path } => io_hint(source, path),
            Self::Busy { .. } => "wait for that command to finish (pass --wait to queue behind it); \
                 if its process is gone the lock is free already, since the kernel drops it"
                .to_owned(),
            Self::NameTaken { .. } => "rename the deployment (`name` in the spec) or remove that container yourself if it is yours to remove".to_owned(),
            Self::NoGpuRuntime { .. } => "install the NVIDIA Container Toolkit (nvidia-ctk runtime configure --runtime=docker, then restart dockerd), or set gpus = \"none\" for a CPU-only run".to_owned(),
            Self::PortTaken { .. } => "pick another `server.port`, or stop what holds it (`vlmctl gates` names it)".to_owned(),
            Self::ExitedDuringLoad { .. } => "read the log lines: a wrong model path, an unsupported model architecture for this llama.cpp, or too little memory are the usual causes".to_owned(),
            Self::NotReady { .. } => "a large model may need longer: raise `health.timeout_s`; `docker logs` shows where loading stands".to_owned(),
        }
    }
}

impl LifecycleError {
    /// The daemon stopped answering (socket gone, connection refused or reset): what is still
    /// to be done must then be said, and the exit code is the unreachable-daemon one.
    #[must_use]
    pub fn daemon_gone(&self) -> bool {
        match self {
            Self::DaemonUnreachable { .. } | Self::HostLost { .. } => true,
            Self::Docker { source, .. } | Self::Pull { source, .. } => is_connection_error(source),
            _ => false,
        }
    }
}

impl LifecycleError {
    /// The host stayed unreachable over SSH ([`LifecycleError::HostLost`], itself or as the
    /// cause of a Docker request's failure): trying again at once is pointless.
    #[must_use]
    pub fn host_lost(&self) -> bool {
        match self {
            Self::HostLost { .. } => true,
            Self::Docker { source, .. } | Self::Pull { source, .. } => lost_link(source).is_some(),
            _ => false,
        }
    }
}

/// The [`LifecycleError::HostLost`] a Docker request failed with, when its SSH forward could not
/// be started again.
fn lost_link(err: &bollard::errors::Error) -> Option<&LifecycleError> {
    match err {
        bollard::errors::Error::IOError { err } => err
            .get_ref()
            .and_then(|e| e.downcast_ref::<LifecycleError>())
            .filter(|e| matches!(e, LifecycleError::HostLost { .. })),
        _ => None,
    }
}

/// A transport failure (no daemon at the other end), as opposed to the daemon answering with an
/// error status.
fn is_connection_error(err: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as B;
    if matches!(
        err,
        B::DockerResponseServerError { .. } | B::JsonDataError { .. } | B::JsonSerdeError { .. }
    ) {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            );
        }
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_closed() || h.is_canceled())
        {
            return true;
        }
        cause = e.source();
    }
    matches!(err, B::HyperResponseError { .. } | B::IOError { .. })
}

/// What to do about a state file that cannot be written or read, by what went wrong.
fn io_hint(source: &io::Error, path: &std::path::Path) -> String {
    let dir = path.parent().unwrap_or(path).display();
    match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => format!(
            "the disk holding {dir} is full: free space there (or point --state-dir / \
             VLMCTL_STATE_DIR elsewhere) and run the command again"
        ),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            if path.starts_with(crate::shell::host_dir()) =>
        {
            format!(
                "{dir} holds every user's deployment locks: it must be a directory writable by \
                 all, like /tmp (`chmod 1777 {dir}`)"
            )
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            format!("{dir} is not writable by you: fix its permissions or pass --state-dir")
        }
        io::ErrorKind::InvalidData => format!(
            "the file is not a journal vlmctl can read (damaged or edited by hand): the \
             containers it names may still be stopped; start them with `docker start`, then \
             move {} aside",
            path.display()
        ),
        _ => format!("check {dir}: it must be a writable directory"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_error(source: io::Error) -> LifecycleError {
        LifecycleError::Journal {
            path: PathBuf::from("/state/journals/panda.json"),
            source,
        }
    }

    #[test]
    fn a_full_disk_is_not_called_a_permission_problem() {
        let full = journal_error(io::Error::from_raw_os_error(28)).hint();
        assert!(full.contains("/state/journals is full"), "{full}");
        assert!(!full.contains("permission"), "{full}");
        let denied = journal_error(io::Error::from_raw_os_error(13)).hint();
        assert!(denied.contains("not writable by you"), "{denied}");
        let corrupt = journal_error(io::Error::new(io::ErrorKind::InvalidData, "x")).hint();
        assert!(
            corrupt.contains("docker start") && corrupt.contains("aside"),
            "{corrupt}"
        );
    }

    #[test]
    fn a_request_through_a_forward_that_stayed_down_says_so_and_what_to_do() {
        let lost = LifecycleError::HostLost {
            host: "ssh://me@beast".into(),
            tries: 4,
            said: "ssh: connect to host beast port 22: Connection refused".into(),
        };
        let e = LifecycleError::Docker {
            action: "run a command in the helper container".into(),
            source: bollard::errors::Error::IOError {
                err: io::Error::new(io::ErrorKind::ConnectionAborted, lost),
            },
        };
        assert!(e.daemon_gone() && e.host_lost());
        let hint = e.hint();
        assert!(
            hint.contains("the connection dropped and could not be made again: check the address")
                && hint.contains("ssh -o BatchMode=yes ssh://me@beast true"),
            "{hint}"
        );
        let refused = LifecycleError::Docker {
            action: "x".into(),
            source: bollard::errors::Error::IOError {
                err: io::Error::from(io::ErrorKind::ConnectionRefused),
            },
        };
        assert!(refused.daemon_gone() && !refused.host_lost());
    }

    /// F14: a host that reached an error another way (a Docker context's endpoint, an engine's
    /// answer) is quoted in the commands a hint offers to paste.
    #[test]
    fn hints_quote_the_host_in_commands_to_paste() {
        let host = "ssh://$(touch${IFS}x)@127.0.0.1:22".to_owned();
        let failed = LifecycleError::SshFailed {
            host: host.clone(),
            said: "Permission denied".into(),
        }
        .hint();
        assert!(
            failed.contains("`ssh -o BatchMode=yes 'ssh://$(touch${IFS}x)@127.0.0.1:22' true`"),
            "{failed}"
        );
        let daemon = LifecycleError::DaemonUnreachable {
            host,
            source: bollard::errors::Error::IOError {
                err: io::Error::from(io::ErrorKind::ConnectionRefused),
            },
        }
        .hint();
        assert!(
            daemon.contains("`ssh 'ssh://$(touch${IFS}x)@127.0.0.1:22' docker info`"),
            "{daemon}"
        );
        // A plain address stays as it is.
        let plain = LifecycleError::SshFailed {
            host: "ssh://me@beast".into(),
            said: String::new(),
        }
        .hint();
        assert!(
            plain.contains("`ssh -o BatchMode=yes ssh://me@beast true`"),
            "{plain}"
        );
        assert_eq!(crate::shell::sh_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn only_a_transport_failure_counts_as_the_daemon_gone() {
        let docker = |source| LifecycleError::Docker {
            action: "start container x".into(),
            source,
        };
        let refused = bollard::errors::Error::IOError {
            err: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(docker(refused).daemon_gone());
        let no_socket = bollard::errors::Error::IOError {
            err: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(docker(no_socket).daemon_gone());
        let answered = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        };
        assert!(!docker(answered).daemon_gone());
        assert!(
            !LifecycleError::NameTaken {
                container: "x".into()
            }
            .daemon_gone()
        );
    }
}
