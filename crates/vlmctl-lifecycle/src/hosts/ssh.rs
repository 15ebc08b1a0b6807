//! One supervised `ssh -L` forward ([`Forward`]): started with our own options whatever the
//! user's `~/.ssh/config` says, watched, and started again on the same local socket path or port
//! when it ends under us ([`REOPEN_TRIES`] times), the front-end told through [`LinkNotice`]s.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncReadExt as _;

use super::host::SshHost;
use crate::LifecycleError;

/// How long `ssh` gets to log in and set a forward up.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an `ssh` must stay up for its forward to count as steady again.
const STABLE: Duration = Duration::from_secs(10);

/// The `ssh` arguments that reach `target` (the user's `ssh` decides everything else: keys,
/// agent, known hosts, `~/.ssh/config`; `VLMCTL_SSH_CONFIG` names another config file).
fn ssh_args(target: &SshHost) -> Vec<String> {
    // Ours, whatever ~/.ssh/config says: a ControlMaster would keep the forwards after we end,
    // a RemoteCommand or a TTY would replace or disturb our `cat`, and at the default log level
    // every refused forwarded connection (a server still loading) is a line on a pipe nobody
    // reads once the forward is up.
    let mut a: Vec<String> = [
        "BatchMode=yes",
        "ExitOnForwardFailure=yes",
        "ServerAliveInterval=15",
        "ControlMaster=no",
        "ControlPath=none",
        "RemoteCommand=none",
        "RequestTTY=no",
        "LogLevel=ERROR",
    ]
    .iter()
    .flat_map(|o| ["-o".to_owned(), (*o).to_owned()])
    .collect();
    if let Some(cfg) =
        std::env::var_os(vlmctl_base::env::VLMCTL_SSH_CONFIG).filter(|v| !v.is_empty())
    {
        a.push("-F".to_owned());
        a.push(cfg.to_string_lossy().into_owned());
    }
    if let Some(p) = target.port {
        a.push("-p".to_owned());
        a.push(p.to_string());
    }
    if let Some(u) = &target.user {
        a.push("-l".to_owned());
        a.push(u.clone());
    }
    a
}

/// How many times a forward whose `ssh` ended is started again before the host counts as
/// lost, and the pause before each try (doubled each time: 0.25 s, 0.5 s, 1 s, 2 s).
pub const REOPEN_TRIES: u32 = 4;
const REOPEN_FIRST_PAUSE: Duration = Duration::from_millis(250);
/// How often a forward's `ssh` is looked at between uses (a Docker request looks at it itself,
/// before it is sent).
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// How vlmctl's end of a forward is seen to be up.
#[derive(Debug, Clone)]
pub(super) enum Probe {
    /// A local Unix socket that accepts a connection.
    Unix(PathBuf),
    /// A local TCP port that accepts a connection.
    Tcp(u16),
}

impl Probe {
    fn ready(&self) -> bool {
        match self {
            Self::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
            Self::Tcp(port) => std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
        }
    }
}

/// Where a forward stands.
#[derive(Debug)]
enum Phase {
    /// Its `ssh` was started and set the forward up.
    Up,
    /// Its `ssh` ended and one caller is starting it again; the others wait.
    Reopening,
    /// It could not be started again: what the last try said.
    Lost(String),
    /// Ended on purpose ([`super::Sessions::close`]): never started again.
    Closed,
}

/// One `ssh -L` process, alive while we are, started again (same local socket path, same local
/// port) when it ends under us.
pub(super) struct Forward {
    target: SshHost,
    notices: Notices,
    /// `ssh -L`'s argument.
    spec: String,
    probe: Probe,
    state: Mutex<ForwardState>,
    /// Bumped at every change of phase, so that waiters wake.
    pub(super) changed: tokio::sync::watch::Sender<u64>,
}

struct ForwardState {
    phase: Phase,
    /// When its current `ssh` came up.
    up_since: Instant,
    /// How many `ssh` in a row ended within [`STABLE`] of coming up (a forced command, a
    /// `nologin` shell, another process on the port): past [`REOPEN_TRIES`] the host is lost,
    /// however many single reopens succeed.
    flaps: u32,
    /// The `ssh` and our end of its remote `cat`'s stdin (dropping it, or us, ends them).
    ssh: Option<(tokio::process::Child, tokio::process::ChildStdin)>,
}

/// What happened to a forward while vlmctl ran: for the front-end to show (a library never
/// prints): sent on the channel of [`super::Sessions::with_notices`], else logged at warn level.
/// Its line is its `Display`; a job's events carry it as `Event::Link` (vlmctl-deploy), so that
/// a front-end shows it as it shows any event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LinkNotice {
    /// The forward's `ssh` ended while vlmctl still needed it; it is being started again.
    Ended {
        /// The host.
        host: String,
        /// `ssh -L`'s argument (local end, remote end).
        forward: String,
        /// How it ended, and its last words.
        said: String,
    },
    /// Started again, on the same local socket or port.
    Reopened {
        /// The host.
        host: String,
        /// `ssh -L`'s argument.
        forward: String,
        /// The try that worked.
        tries: u32,
    },
    /// Every try failed: the jobs through it fail with [`LifecycleError::HostLost`].
    Lost {
        /// The host.
        host: String,
        /// `ssh -L`'s argument.
        forward: String,
        /// How many tries.
        tries: u32,
        /// What the last try said.
        said: String,
    },
}

/// One line of text per notice (a warning): what the terminal and the service's pages show of
/// it, as the line of the job event that carries it (`vlmctl_deploy::events::Event::Link`).
impl std::fmt::Display for LinkNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ended {
                host,
                forward,
                said,
            } => write!(
                f,
                "warning: the SSH forward to {host} ({forward}) ended: {said}; opening it again"
            ),
            Self::Reopened { host, tries, .. } => write!(
                f,
                "warning: the SSH forward to {host} is open again (try {tries} of {REOPEN_TRIES})"
            ),
            Self::Lost {
                host, tries, said, ..
            } => write!(
                f,
                "warning: the SSH forward to {host} could not be opened again in {tries} tries: {said}"
            ),
        }
    }
}

/// Where a forward's [`LinkNotice`]s go: the front-end's channel ([`super::Sessions::with_notices`]),
/// else the log at warn level (a library never prints).
#[derive(Debug, Clone, Default)]
pub(super) struct Notices(Option<tokio::sync::mpsc::UnboundedSender<LinkNotice>>);

impl Notices {
    /// Notices sent to `tx`.
    pub(super) fn to(tx: tokio::sync::mpsc::UnboundedSender<LinkNotice>) -> Self {
        Self(Some(tx))
    }

    fn send(&self, n: LinkNotice) {
        if let Some(tx) = &self.0 {
            // A front-end that stopped listening loses nothing it still wants.
            let _ = tx.send(n);
        } else {
            tracing::warn!(?n, "ssh forward");
        }
    }
}

/// Starts `ssh -L forward ... host cat` and waits until the forward answers; `ssh`'s own words
/// when it cannot (a refused key, an unknown host, no route).
async fn start_ssh(
    target: &SshHost,
    forward: &str,
    probe: &Probe,
) -> Result<(tokio::process::Child, tokio::process::ChildStdin), LifecycleError> {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(ssh_args(target))
        .args(["-o", "StreamLocalBindUnlink=yes", "-L", forward])
        .arg(&target.host)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a Ctrl-C or SIGHUP meant for vlmctl (which then undoes
        // its run through this very forward) must not end ssh first. The pipe to its
        // `cat` still ends it when vlmctl ends.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| LifecycleError::SshStart {
        host: target.to_string(),
        source,
    })?;
    let Some(stdin) = child.stdin.take() else {
        return Err(LifecycleError::SshFailed {
            host: target.to_string(),
            said: "ssh was started without its stdin pipe".to_owned(),
        });
    };
    let deadline = Instant::now() + SSH_TIMEOUT;
    loop {
        // Whether it ended first: a port someone else took answers the probe, but our ssh
        // exits on it (ExitOnForwardFailure).
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LifecycleError::SshFailed {
                host: target.to_string(),
                said: last_words(&mut child, status).await,
            });
        }
        if probe.ready() {
            break;
        }
        if Instant::now() > deadline {
            return Err(LifecycleError::SshFailed {
                host: target.to_string(),
                said: format!("no forward within {} s", SSH_TIMEOUT.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its stderr is not read any more: ssh writes little after the login, and a full pipe
    // would only stall its diagnostics, not the forward.
    Ok((child, stdin))
}

/// What an ended `ssh` wrote on stderr, else how it ended.
async fn last_words(child: &mut tokio::process::Child, status: std::process::ExitStatus) -> String {
    let mut said = String::new();
    if let Some(mut e) = child.stderr.take() {
        // Bounded: a forwarded connection still open could hold the pipe.
        let _ = tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut said)).await;
    }
    let said = said.trim();
    if said.is_empty() {
        format!("ssh ended ({status})")
    } else {
        format!("ssh ended ({status}): {said}")
    }
}

impl Forward {
    pub(super) async fn open(
        target: &SshHost,
        spec: String,
        probe: Probe,
        notices: Notices,
    ) -> Result<Arc<Self>, LifecycleError> {
        let ssh = start_ssh(target, &spec, &probe).await?;
        let f = Arc::new(Self {
            target: target.clone(),
            notices,
            spec,
            probe,
            state: Mutex::new(ForwardState {
                phase: Phase::Up,
                up_since: Instant::now(),
                flaps: 0,
                ssh: Some(ssh),
            }),
            changed: tokio::sync::watch::Sender::new(0),
        });
        // Watched between uses too, so that a forward nobody asks for in the meantime (a bench
        // target between two requests) is back before it is used. Holds only a weak reference:
        // it ends with the forward, and with the runtime.
        let weak = Arc::downgrade(&f);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Some(f) = weak.upgrade() else { return };
                if f.usable().await.is_err() {
                    return;
                }
            }
        });
        Ok(f)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ForwardState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Ok once the forward is up: at once when its `ssh` runs; after it was started again when
    /// it ended under us; an error when it was closed on purpose or could not be started again.
    /// The first caller that sees it ended starts the reopening as a task of its own, so that
    /// no caller given up on (a request timed out, a job cancelled) leaves it half done; every
    /// caller waits for the outcome.
    pub(super) async fn usable(self: &Arc<Self>) -> Result<(), LifecycleError> {
        loop {
            let mut changed = self.changed.subscribe();
            let ended = {
                let mut st = self.lock();
                match &st.phase {
                    Phase::Closed => {
                        return Err(LifecycleError::SshFailed {
                            host: self.target.to_string(),
                            said: "the forward was closed".to_owned(),
                        });
                    }
                    Phase::Lost(said) => {
                        return Err(LifecycleError::HostLost {
                            host: self.target.to_string(),
                            tries: REOPEN_TRIES,
                            said: said.clone(),
                        });
                    }
                    Phase::Reopening => None,
                    Phase::Up => {
                        let exited = st
                            .ssh
                            .as_mut()
                            .map_or(Some(None), |(c, _)| c.try_wait().ok().flatten().map(Some));
                        match exited {
                            None => return Ok(()),
                            Some(status) => {
                                st.flaps = if st.up_since.elapsed() < STABLE {
                                    st.flaps + 1
                                } else {
                                    0
                                };
                                if st.flaps >= REOPEN_TRIES {
                                    let said = format!(
                                        "ssh ended within {} s of coming up {} times in a row \
                                         (a forced command or a nologin shell for this key, or \
                                         another process on the forward's port?)",
                                        STABLE.as_secs(),
                                        st.flaps
                                    );
                                    st.phase = Phase::Lost(said);
                                    st.ssh = None;
                                    drop(st);
                                    self.bump();
                                    continue;
                                }
                                st.phase = Phase::Reopening;
                                Some((st.ssh.take(), status))
                            }
                        }
                    }
                }
            };
            if let Some((ssh, status)) = ended {
                self.bump();
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    let _ = me.reopen(ssh, status).await;
                });
            }
            let _ = changed.changed().await;
        }
    }

    async fn reopen(
        &self,
        ssh: Option<(tokio::process::Child, tokio::process::ChildStdin)>,
        status: Option<std::process::ExitStatus>,
    ) -> Result<(), LifecycleError> {
        let host = self.target.to_string();
        let said = match (ssh, status) {
            (Some((mut child, _stdin)), Some(status)) => last_words(&mut child, status).await,
            _ => "ssh ended".to_owned(),
        };
        self.notices.send(LinkNotice::Ended {
            host: host.clone(),
            forward: self.spec.clone(),
            said,
        });
        let mut pause = REOPEN_FIRST_PAUSE;
        let mut last = String::new();
        for tries in 1..=REOPEN_TRIES {
            tokio::time::sleep(pause).await;
            pause *= 2;
            if matches!(self.lock().phase, Phase::Closed) {
                return Err(LifecycleError::SshFailed {
                    host,
                    said: "the forward was closed".to_owned(),
                });
            }
            match start_ssh(&self.target, &self.spec, &self.probe).await {
                Ok(ssh) => {
                    {
                        let mut st = self.lock();
                        // Closed while it was being started: it is not ours to keep (dropped,
                        // so killed).
                        if matches!(st.phase, Phase::Closed) {
                            drop(ssh);
                            return Err(LifecycleError::SshFailed {
                                host,
                                said: "the forward was closed".to_owned(),
                            });
                        }
                        st.ssh = Some(ssh);
                        st.phase = Phase::Up;
                        st.up_since = Instant::now();
                    }
                    self.bump();
                    self.notices.send(LinkNotice::Reopened {
                        host,
                        forward: self.spec.clone(),
                        tries,
                    });
                    return Ok(());
                }
                Err(e) => last = vlmctl_base::chain::one_line(&e),
            }
        }
        {
            let mut st = self.lock();
            if !matches!(st.phase, Phase::Closed) {
                st.phase = Phase::Lost(last.clone());
            }
        }
        self.bump();
        self.notices.send(LinkNotice::Lost {
            host: host.clone(),
            forward: self.spec.clone(),
            tries: REOPEN_TRIES,
            said: last.clone(),
        });
        Err(LifecycleError::HostLost {
            host,
            tries: REOPEN_TRIES,
            said: last,
        })
    }

    /// Whether it was given up on ([`Phase::Lost`]).
    pub(super) fn is_lost(&self) -> bool {
        matches!(self.lock().phase, Phase::Lost(_))
    }

    /// Ends it on purpose: its `ssh` is killed and never started again.
    pub(super) fn close(&self) {
        let ssh = {
            let mut st = self.lock();
            st.phase = Phase::Closed;
            st.ssh.take()
        };
        drop(ssh);
        self.bump();
    }

    /// Whether it was closed on purpose.
    pub(super) fn closed(&self) -> bool {
        matches!(self.lock().phase, Phase::Closed)
    }
}
