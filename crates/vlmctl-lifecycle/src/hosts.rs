//! Which Docker engine the jobs talk to: this machine's, or another host's over SSH, named the
//! way the docker CLI names them (`--host ssh://user@host[:port]`, `DOCKER_HOST`, Docker
//! contexts in `~/.docker/contexts`, the current context).
//!
//! A remote host is reached through one `ssh` process per host that forwards a local Unix
//! socket to the host's Docker socket (`/var/run/docker.sock`), so bollard talks to it as to a
//! local daemon. (bollard 0.21.1's own `ssh` transport hands `user@host:port` to openssh as a
//! host name, so a custom port never reaches `ssh`; and it needs the docker CLI on the remote
//! for `docker system dial-stdio`. A forwarded socket needs neither, and uses the user's own
//! `ssh`, keys, agent and `~/.ssh/config`.) Servers bound to the host's loopback are reached
//! through local TCP forwards on the same terms ([`reach`]).
//!
//! The `ssh` processes run a remote `cat` that reads our end of a pipe: however vlmctl ends,
//! kill -9 included, the pipe closes, `cat` ends and `ssh` with it, and no forward outlives us.
//!
//! An `ssh` that ends while vlmctl still runs (a network blip, sshd restarted) is started again
//! on the same local socket path or port, [`REOPEN_TRIES`] times with a growing pause, and the
//! front-end is told ([`LinkNotice`]); bollard connects to the socket path for every request,
//! so the next request finds the new one. A Docker request checks its forward before it is
//! sent, and waits for it to be back. A forward closed on purpose ([`close_all`]) is never
//! started again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt as _;

use crate::LifecycleError;

/// `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshHost {
    /// Login name (`ssh`'s own default when absent).
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// Port (`ssh`'s own default when absent).
    pub port: Option<u16>,
}

impl std::fmt::Display for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ssh://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// A Docker engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Host {
    /// This machine's daemon (`DOCKER_HOST` when it is not `ssh://`, else the local socket).
    Local,
    /// Another host's daemon over SSH.
    Ssh {
        /// What the user called it (`beast`, or the URL).
        name: String,
        /// Where it is.
        target: SshHost,
    },
}

impl Host {
    /// The name runs, jobs and state are kept under: `local`, a context's name, or the URL.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Local => "local",
            Self::Ssh { name, .. } => name,
        }
    }

    /// Where this host's journals, records and deployment locks live: `state` itself for this
    /// machine (as before there were hosts), `state/hosts/<address>-<hash>` for another, named
    /// after its address (`ssh://root@10.0.0.2:2222` is `root-10.0.0.2-2222-…`), not after
    /// what the user called it: a context, its URL and `DOCKER_HOST` naming one host share one
    /// folder (one lock per deployment), and the hash of the exact address keeps two hosts
    /// whose made-safe names agree apart.
    #[must_use]
    pub fn state_dir(&self, state: &Path) -> PathBuf {
        match self {
            Self::Local => state.to_owned(),
            Self::Ssh { target, .. } => {
                let address = target.to_string();
                let bare = address.trim_start_matches("ssh://");
                state.join("hosts").join(format!(
                    "{}-{}",
                    path_safe(bare),
                    &hex::encode(Sha256::digest(address.as_bytes()))[..8]
                ))
            }
        }
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`), when it has one.
#[must_use]
pub fn machine_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// This machine's engine, as contexts name it.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Pure: `name` with everything but letters, digits, `.`, `_` and `-` made `-`, runs of them
/// squeezed, and never `.` or `..`.
#[must_use]
pub fn path_safe(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let c = if keep { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() || out == "." || out == ".." {
        format!(
            "host-{}",
            &hex::encode(Sha256::digest(name.as_bytes()))[..12]
        )
    } else {
        out
    }
}

/// Pure: parses `ssh://[user@]host[:port]` (IPv6 in brackets); anything after the authority
/// (a path) is refused, as the docker CLI does.
pub fn parse_ssh(url: &str) -> Result<SshHost, LifecycleError> {
    let bad = |why: &str| LifecycleError::HostInvalid {
        value: url.to_owned(),
        why: why.to_owned(),
    };
    let rest = url
        .strip_prefix("ssh://")
        .ok_or_else(|| bad("an SSH host is ssh://[user@]host[:port]"))?;
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(bad("nothing may follow host[:port] (no path)"));
    }
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    if let Some(u) = user
        && (u.is_empty() || u.contains(':') || u.starts_with('-'))
    {
        return Err(bad(
            "the user name is empty, has a password (user:pass), or starts with '-'",
        ));
    }
    // The address goes into ssh's command line and into hints a user copies into a shell:
    // letters, digits and `._-` (and `@+` in a user name) only, as OpenSSH >= 9.6 itself refuses
    // shell metacharacters in user and host names.
    if let Some(u) = user
        && !u
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
    {
        return Err(bad(
            "the user name may have only letters, digits and . _ - @ + (no shell \
             metacharacters, spaces or control characters)",
        ));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing ']'"))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.starts_with('-') || host.chars().any(char::is_whitespace) {
        return Err(bad(
            "no host name, or one that starts with '-' or has spaces",
        ));
    }
    let v6 = hostport.starts_with('[');
    if !host.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || (v6 && matches!(c, ':' | '%'))
    }) {
        return Err(bad(
            "a host name may have only letters, digits and . _ - (an IPv6 address goes in \
             [brackets]; no shell metacharacters)",
        ));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))
        })
        .transpose()?;
    Ok(SshHost {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
    })
}

/// A Docker context: its name and its engine's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Context {
    /// `docker context ls`'s NAME.
    pub name: String,
    /// Its docker endpoint (`ssh://...`, `unix://...`, `tcp://...`).
    pub endpoint: String,
}

/// The docker CLI's configuration folder: `DOCKER_CONFIG`, else `~/.docker`.
#[must_use]
pub fn docker_config_dir() -> PathBuf {
    std::env::var_os(vlmctl_base::env::DOCKER_CONFIG)
        .filter(|v| !v.is_empty())
        .map_or_else(
            || {
                std::env::var_os(vlmctl_base::env::HOME)
                    .map_or_else(|| PathBuf::from("."), PathBuf::from)
                    .join(".docker")
            },
            PathBuf::from,
        )
}

/// Every context under `config/contexts/meta/*/meta.json` (those that do not parse are left
/// out), by name.
#[must_use]
pub fn contexts(config: &Path) -> Vec<Context> {
    let Ok(dirs) = std::fs::read_dir(config.join("contexts").join("meta")) else {
        return Vec::new();
    };
    let mut out: Vec<Context> = dirs
        .filter_map(Result::ok)
        .filter_map(|d| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.path().join("meta.json")).ok()?).ok()?;
            Some(Context {
                name: meta.get("Name")?.as_str()?.to_owned(),
                endpoint: meta
                    .get("Endpoints")?
                    .get("docker")?
                    .get("Host")?
                    .as_str()?
                    .to_owned(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The docker CLI's current context: `DOCKER_CONTEXT`, else `currentContext` in `config.json`.
#[must_use]
pub fn current_context(config: &Path) -> Option<String> {
    std::env::var(vlmctl_base::env::DOCKER_CONTEXT)
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(config.join("config.json")).ok()?).ok()?;
            v.get("currentContext")?.as_str().map(str::to_owned)
        })
        .filter(|c| c != "default")
}

/// Which engine, as the docker CLI would pick it: `--host` (`local`, `ssh://...`, or a
/// context's name), else `DOCKER_HOST`, else the current context, else this machine.
pub fn resolve(flag: Option<&str>, config: &Path) -> Result<Host, LifecycleError> {
    let from_endpoint = |name: &str, endpoint: &str| -> Result<Host, LifecycleError> {
        if endpoint.starts_with("ssh://") {
            Ok(Host::Ssh {
                name: name.to_owned(),
                target: parse_ssh(endpoint)?,
            })
        } else if endpoint == DEFAULT_SOCKET {
            Ok(Host::Local)
        } else {
            // Never this machine's engine in its place: a teardown or restore would act on
            // the wrong daemon.
            Err(LifecycleError::HostInvalid {
                value: format!("{name} ({endpoint})"),
                why: "only ssh:// hosts and this machine's engine can be named; for another \
                      engine set DOCKER_HOST to it and leave --host out"
                    .to_owned(),
            })
        }
    };
    if let Some(f) = flag.filter(|f| !f.is_empty()) {
        if f == "local" || f == "default" {
            return Ok(Host::Local);
        }
        if f.contains("://") {
            return from_endpoint(f, f);
        }
        let all = contexts(config);
        return match all.iter().find(|c| c.name == f) {
            Some(c) => from_endpoint(&c.name, &c.endpoint),
            None => Err(LifecycleError::HostUnknown {
                name: f.to_owned(),
                known: all.into_iter().map(|c| c.name).collect(),
            }),
        };
    }
    if let Some(h) = std::env::var(vlmctl_base::env::DOCKER_HOST)
        .ok()
        .filter(|h| !h.is_empty())
    {
        // Any other DOCKER_HOST (tcp://, another socket) is bollard's own to follow.
        return if h.starts_with("ssh://") {
            from_endpoint(&h, &h)
        } else {
            Ok(Host::Local)
        };
    }
    match current_context(config) {
        Some(name) => resolve(Some(&name), config),
        None => Ok(Host::Local),
    }
}

static SELECTED: OnceLock<Host> = OnceLock::new();

/// Chooses the engine every [`crate::connect`] of this process talks to (once; the front-end
/// does it before any job). Without it, this machine's.
pub fn select(host: Host) {
    let _ = SELECTED.set(host);
}

/// The engine chosen by [`select`].
#[must_use]
pub fn selected() -> &'static Host {
    SELECTED.get().unwrap_or(&Host::Local)
}

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
enum Probe {
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
    /// Ended on purpose ([`close_all`]): never started again.
    Closed,
}

/// One `ssh -L` process, alive while we are, started again (same local socket path, same local
/// port) when it ends under us.
struct Forward {
    target: SshHost,
    /// `ssh -L`'s argument.
    spec: String,
    probe: Probe,
    state: Mutex<ForwardState>,
    /// Bumped at every change of phase, so that waiters wake.
    changed: tokio::sync::watch::Sender<u64>,
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
/// prints); without a listener ([`on_link_notice`]) it is logged at warn level.
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

type NoticeSink = Box<dyn Fn(&LinkNotice) + Send + Sync>;
static NOTICES: OnceLock<NoticeSink> = OnceLock::new();

/// Who is told about a forward that ended and was reopened (or lost): the front-end, once,
/// before any job.
pub fn on_link_notice(f: impl Fn(&LinkNotice) + Send + Sync + 'static) {
    let _ = NOTICES.set(Box::new(f));
}

fn notice(n: &LinkNotice) {
    if let Some(f) = NOTICES.get() {
        f(n);
    } else {
        tracing::warn!(?n, "ssh forward");
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
    async fn open(
        target: &SshHost,
        spec: String,
        probe: Probe,
    ) -> Result<Arc<Self>, LifecycleError> {
        let ssh = start_ssh(target, &spec, &probe).await?;
        let f = Arc::new(Self {
            target: target.clone(),
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
    async fn usable(self: &Arc<Self>) -> Result<(), LifecycleError> {
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
        notice(&LinkNotice::Ended {
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
                    notice(&LinkNotice::Reopened {
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
        notice(&LinkNotice::Lost {
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
    fn is_lost(&self) -> bool {
        matches!(self.lock().phase, Phase::Lost(_))
    }

    /// Ends it on purpose: its `ssh` is killed and never started again.
    fn close(&self) {
        let ssh = {
            let mut st = self.lock();
            st.phase = Phase::Closed;
            st.ssh.take()
        };
        drop(ssh);
        self.bump();
    }

    /// Whether it was closed on purpose.
    fn closed(&self) -> bool {
        matches!(self.lock().phase, Phase::Closed)
    }

    /// The running `ssh`'s process id.
    fn pid(&self) -> Option<u32> {
        self.lock().ssh.as_ref().and_then(|(c, _)| c.id())
    }
}

/// What vlmctl holds open to one host.
pub struct Session {
    dir: PathBuf,
    socket: PathBuf,
    docker: Arc<Forward>,
    /// `(host, port)` there to the local port and its forward.
    forwards: Mutex<BTreeMap<(String, u16), TcpForward>>,
}

/// A local port and the forward behind it.
type TcpForward = (u16, Arc<Forward>);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How long `ssh` gets to log in and set a forward up.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(30);

impl Session {
    /// The local socket that is the host's Docker socket.
    #[must_use]
    pub fn docker_socket(&self) -> &Path {
        &self.socket
    }

    /// Ok when the Docker socket's forward is up, after starting its `ssh` again if it ended
    /// under us; [`LifecycleError::HostLost`] when the host stayed unreachable. Every Docker
    /// request through the session asks first ([`crate::connect`]).
    pub async fn docker_usable(&self) -> Result<(), LifecycleError> {
        self.docker.usable().await
    }

    /// The process ids of the `ssh` processes carrying this session's forwards (the Docker
    /// socket's first).
    #[must_use]
    pub fn ssh_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.docker.pid().into_iter().collect();
        pids.extend(
            self.forwards
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .filter_map(|(_, f)| f.pid()),
        );
        pids
    }

    fn close(&self) {
        self.docker.close();
        for (_, f) in self
            .forwards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            f.close();
        }
    }
}

static SESSIONS: OnceLock<Mutex<BTreeMap<String, Arc<Session>>>> = OnceLock::new();

/// Ends every session: their `ssh` processes (never started again after this) and their
/// folders. The front-end calls it on its way out (a kill -9 leaves the folder, an empty one
/// with a dead socket, in the temp dir).
pub fn close_all() {
    if let Some(all) = SESSIONS.get() {
        let drained: Vec<Arc<Session>> = std::mem::take(
            &mut *all
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_values()
        .collect();
        for s in drained {
            s.close();
            let _ = std::fs::remove_dir_all(&s.dir);
        }
    }
}

/// The session to `target`, opened (the Docker socket forwarded) on first use.
pub async fn session(target: &SshHost) -> Result<Arc<Session>, LifecycleError> {
    type Gates = Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>;
    static OPENING: OnceLock<Gates> = OnceLock::new();
    static FOLDERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let key = target.to_string();
    let all = SESSIONS.get_or_init(|| Mutex::new(BTreeMap::new()));
    let known = || {
        let mut all = all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A session whose forward was lost is not kept: a later job (a long-running service)
        // opens the host afresh.
        if all.get(&key).is_some_and(|s| s.docker.is_lost()) {
            all.remove(&key);
        }
        all.get(&key).map(Arc::clone)
    };
    if let Some(s) = known() {
        return Ok(s);
    }
    // One opening at a time per address: two jobs asking for one address at once (two contexts
    // naming it in `status --all-hosts`) share one session instead of racing for one socket.
    let gate = Arc::clone(
        OPENING
            .get_or_init(|| Mutex::new(BTreeMap::new()))
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.clone())
            .or_default(),
    );
    let _opening = gate.lock().await;
    if let Some(s) = known() {
        return Ok(s);
    }
    let dir = std::env::temp_dir().join(format!(
        "vlmctl-ssh-{}-{}-{}-{}",
        std::process::id(),
        &hex::encode(Sha256::digest(key.as_bytes()))[..8],
        crate::now_unix(),
        FOLDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    // A fresh folder only we may enter: one that exists already (left over, or put there by
    // someone else to catch what we send the engine) is refused, not reused.
    let _ = std::fs::remove_dir(&dir);
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| LifecycleError::SshStart {
                host: key.clone(),
                source,
            })?;
    }
    let socket = dir.join("docker.sock");
    let forward = format!("{}:/var/run/docker.sock", socket.display());
    let docker = match Forward::open(target, forward, Probe::Unix(socket.clone())).await {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let s = Arc::new(Session {
        dir,
        socket,
        docker,
        forwards: Mutex::new(BTreeMap::new()),
    });
    all.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, Arc::clone(&s));
    Ok(s)
}

/// Where this process reaches `host:port` as the selected engine's host sees it: itself for
/// this machine; for a remote host, a local port forwarded there over SSH (opened on first
/// use, kept while we run; a connection to it made while its `ssh` is being started again waits
/// for it).
pub async fn reach(host: &str, port: u16) -> Result<(String, u16), LifecycleError> {
    reach_on(selected(), host, port).await
}

/// [`reach`] through a given engine's host.
pub async fn reach_on(
    engine: &Host,
    host: &str,
    port: u16,
) -> Result<(String, u16), LifecycleError> {
    let Host::Ssh { target, .. } = engine else {
        return Ok((host.to_owned(), port));
    };
    let s = session(target).await?;
    let key = (host.to_owned(), port);
    let known = s
        .forwards
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
        .map(|(local, f)| (*local, Arc::clone(f)));
    if let Some((local, f)) = known {
        f.usable().await?;
        return Ok(("127.0.0.1".to_owned(), local));
    }
    let io = |source| LifecycleError::SshStart {
        host: target.to_string(),
        source,
    };
    // Ours: the port the caller is given, open for as long as we run, whatever happens to the
    // `ssh` behind it.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io)?;
    let local = front.local_addr().map_err(io)?.port();
    // ssh's, behind it.
    let behind = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io)?
        .port();
    let remote_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let forward = format!("127.0.0.1:{behind}:{remote_host}:{port}");
    let f = Forward::open(target, forward, Probe::Tcp(behind)).await?;
    tokio::spawn(relay(front, behind, Arc::downgrade(&f)));
    s.forwards
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, (local, f));
    Ok(("127.0.0.1".to_owned(), local))
}

/// How long an `ssh` must stay up for its forward to count as steady again.
const STABLE: Duration = Duration::from_secs(10);

/// How long a connection to a TCP forward waits for an `ssh` that is being started again.
const RELAY_PATIENCE: Duration = Duration::from_secs(60);

/// Accepts the caller's connections on `front` and carries each to `ssh`'s port `behind` once
/// the forward is up: a connection made while the `ssh` is being started again waits for it
/// (as a Docker request does) instead of being refused, so a bench request is not lost to a
/// blip. Ends when the forward is closed or gone.
async fn relay(front: tokio::net::TcpListener, behind: u16, f: std::sync::Weak<Forward>) {
    let Some(mut changed) = f.upgrade().map(|f| f.changed.subscribe()) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            a = front.accept() => a,
            c = changed.changed() => {
                if c.is_err() || f.upgrade().is_none_or(|f| f.closed()) {
                    return;
                }
                continue;
            }
        };
        let Ok((mut inbound, _)) = accepted else {
            // Out of file descriptors, say: not a reason to spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let f = f.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + RELAY_PATIENCE;
            let mut outbound = loop {
                let Some(fwd) = f.upgrade() else { return };
                if fwd.usable().await.is_err() {
                    return;
                }
                drop(fwd);
                match tokio::net::TcpStream::connect(("127.0.0.1", behind)).await {
                    Ok(s) => break s,
                    // Its ssh may have ended a moment ago, before anyone saw it: look again.
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => return,
                }
            };
            // No Nagle on either leg, as the bench client and ssh's own forwards have it: a
            // streamed token must not wait for the ACK of the one before (up to 40 ms).
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_parse_as_the_docker_cli_takes_them() {
        let p = |s: &str| parse_ssh(s);
        assert_eq!(
            p("ssh://root@127.0.0.1:2222").expect("ok"),
            SshHost {
                user: Some("root".into()),
                host: "127.0.0.1".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            p("ssh://beast").expect("ok"),
            SshHost {
                user: None,
                host: "beast".into(),
                port: None
            }
        );
        assert_eq!(
            p("ssh://me@[::1]:22").expect("ok").to_string(),
            "ssh://me@[::1]:22"
        );
        for bad in [
            "ssh://",
            "beast",
            "ssh://root@",
            "ssh://:22",
            "ssh://root@host:0",
            "ssh://root@host:70000",
            "ssh://root@host:x",
            "ssh://root:pw@host",
            "ssh://-oProxyCommand=x",
            "ssh://host/path",
            "ssh://[::1",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    /// F14 of the adversarial pass: a user or host name that a shell would run is refused at
    /// parse time (it would reach ssh's command line and the hints a user pastes).
    #[test]
    fn shell_metacharacters_in_user_and_host_names_are_refused() {
        for bad in [
            "ssh://$(touch${IFS}x)@127.0.0.1:22",
            "ssh://`id`@127.0.0.1",
            "ssh://a;b@127.0.0.1",
            "ssh://a'b@127.0.0.1",
            "ssh://a\"b@host",
            "ssh://a|b@host",
            "ssh://a&b@host",
            "ssh://a\nb@host",
            "ssh://me@$(id)",
            "ssh://me@ho;st:22",
            "ssh://me@host$x",
            "ssh://me@[::1;id]:22",
        ] {
            let err = parse_ssh(bad).expect_err(bad);
            assert!(
                matches!(err, LifecycleError::HostInvalid { .. }),
                "{bad}: {err:?}"
            );
        }
        for good in [
            "ssh://first.last@beast-01.lan",
            "ssh://me@[fe80::1%eth0]:22",
            "ssh://ci_user+x@host_1",
            "ssh://a@b@host",
        ] {
            parse_ssh(good).expect(good);
        }
    }

    #[test]
    fn host_names_are_safe_state_folders() {
        assert_eq!(path_safe("beast"), "beast");
        assert_eq!(
            path_safe("ssh://root@10.0.0.2:2222"),
            "ssh-root-10.0.0.2-2222"
        );
        assert!(path_safe("..").starts_with("host-"));
        assert!(path_safe("/").starts_with("host-"));
        let l = Host::Local;
        assert_eq!(l.state_dir(Path::new("/s")), Path::new("/s"));
        let by = |name: &str, url: &str| Host::Ssh {
            name: name.into(),
            target: parse_ssh(url).expect("ok"),
        };
        let b = by("beast", "ssh://me@beast:2200");
        let dir = b.state_dir(Path::new("/s"));
        assert!(dir.starts_with("/s/hosts"), "{dir:?}");
        assert!(
            dir.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("me-beast-2200-")),
            "{dir:?}"
        );
        assert_eq!(
            by("ssh://me@beast:2200", "ssh://me@beast:2200").state_dir(Path::new("/s")),
            dir,
            "a context and its URL are one host, one folder"
        );
        assert_ne!(
            by("x", "ssh://a-b@h").state_dir(Path::new("/s")),
            by("y", "ssh://a@b-h").state_dir(Path::new("/s")),
            "made-safe names that agree are still two hosts"
        );
    }

    #[test]
    fn contexts_are_read_from_the_docker_cli_folder() {
        let dir = std::env::temp_dir().join(format!("vlmctl-ctx-test-{}", std::process::id()));
        let meta = dir.join("contexts/meta/abc");
        std::fs::create_dir_all(&meta).expect("dir");
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"beast","Metadata":{},"Endpoints":{"docker":{"Host":"ssh://me@beast:2200","SkipTLSVerify":false}}}"#,
        )
        .expect("meta");
        std::fs::create_dir_all(dir.join("contexts/meta/broken")).expect("dir");
        std::fs::write(dir.join("contexts/meta/broken/meta.json"), "{").expect("meta");
        assert_eq!(
            contexts(&dir),
            vec![Context {
                name: "beast".into(),
                endpoint: "ssh://me@beast:2200".into()
            }]
        );
        assert_eq!(
            resolve(Some("beast"), &dir).expect("a context"),
            Host::Ssh {
                name: "beast".into(),
                target: SshHost {
                    user: Some("me".into()),
                    host: "beast".into(),
                    port: Some(2200)
                }
            }
        );
        assert_eq!(resolve(Some("local"), &dir).expect("local"), Host::Local);
        // Another engine than this machine's or an ssh:// one is refused, never taken for
        // this machine's.
        let desk = dir.join("contexts/meta/def");
        std::fs::create_dir_all(&desk).expect("dir");
        std::fs::write(
            desk.join("meta.json"),
            r#"{"Name":"desk","Endpoints":{"docker":{"Host":"unix:///run/user/1000/docker.sock"}}}"#,
        )
        .expect("meta");
        assert!(matches!(
            resolve(Some("desk"), &dir),
            Err(LifecycleError::HostInvalid { .. })
        ));
        assert!(matches!(
            resolve(Some("tcp://beast:2375"), &dir),
            Err(LifecycleError::HostInvalid { .. })
        ));
        match resolve(Some("titan"), &dir) {
            Err(LifecycleError::HostUnknown { known, .. }) => {
                assert_eq!(known, vec!["beast", "desk"]);
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
