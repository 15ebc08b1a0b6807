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
    std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || {
                std::env::var_os("HOME")
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
    std::env::var("DOCKER_CONTEXT")
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
    if let Some(h) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
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
    if let Some(cfg) = std::env::var_os("VLMCTL_SSH_CONFIG").filter(|v| !v.is_empty()) {
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

/// One `ssh` process carrying forwards to a host, alive while we are.
struct Tunnel {
    _child: tokio::process::Child,
    /// Our end of the remote `cat`'s stdin: dropped with us, which ends it.
    _stdin: tokio::process::ChildStdin,
}

/// What vlmctl holds open to one host.
pub struct Session {
    target: SshHost,
    dir: PathBuf,
    socket: PathBuf,
    tunnels: Mutex<Vec<Tunnel>>,
    forwards: Mutex<BTreeMap<(String, u16), u16>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How long `ssh` gets to log in and set a forward up.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(30);

impl Session {
    /// Starts `ssh -L ... host cat` and waits until the forward answers; `ssh`'s own words
    /// when it cannot (a refused key, an unknown host, no route).
    async fn tunnel(&self, forward: &str, ready: impl Fn() -> bool) -> Result<(), LifecycleError> {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(ssh_args(&self.target))
            .args(["-o", "StreamLocalBindUnlink=yes", "-L", forward])
            .arg(&self.target.host)
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
            host: self.target.to_string(),
            source,
        })?;
        let stdin = child.stdin.take();
        let deadline = Instant::now() + SSH_TIMEOUT;
        loop {
            if ready() {
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                let mut said = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut said).await;
                }
                return Err(LifecycleError::SshFailed {
                    host: self.target.to_string(),
                    said: said.trim().to_owned(),
                });
            }
            if Instant::now() > deadline {
                return Err(LifecycleError::SshFailed {
                    host: self.target.to_string(),
                    said: format!("no forward within {} s", SSH_TIMEOUT.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Its stderr is not read any more: ssh writes little after the login, and a full pipe
        // would only stall its diagnostics, not the forward.
        if let Some(stdin) = stdin {
            self.tunnels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Tunnel {
                    _child: child,
                    _stdin: stdin,
                });
        }
        Ok(())
    }

    /// The local socket that is the host's Docker socket.
    #[must_use]
    pub fn docker_socket(&self) -> &Path {
        &self.socket
    }
}

static SESSIONS: OnceLock<Mutex<BTreeMap<String, Arc<Session>>>> = OnceLock::new();

/// Ends every session: their `ssh` processes and their folders. The front-end calls it on its
/// way out (a kill -9 leaves the folder, an empty one with a dead socket, in the temp dir).
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
            s.tunnels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
            let _ = std::fs::remove_dir_all(&s.dir);
        }
    }
}

/// The session to `target`, opened (the Docker socket forwarded) on first use.
pub async fn session(target: &SshHost) -> Result<Arc<Session>, LifecycleError> {
    let key = target.to_string();
    let all = SESSIONS.get_or_init(|| Mutex::new(BTreeMap::new()));
    if let Some(s) = all
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return Ok(Arc::clone(s));
    }
    let dir = std::env::temp_dir().join(format!(
        "vlmctl-ssh-{}-{}-{}",
        std::process::id(),
        &hex::encode(Sha256::digest(key.as_bytes()))[..8],
        crate::now_unix()
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
    let s = Session {
        target: target.clone(),
        dir,
        socket: socket.clone(),
        tunnels: Mutex::new(Vec::new()),
        forwards: Mutex::new(BTreeMap::new()),
    };
    let forward = format!("{}:/var/run/docker.sock", socket.display());
    s.tunnel(&forward, || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    })
    .await?;
    let s = Arc::new(s);
    all.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, Arc::clone(&s));
    Ok(s)
}

/// Where this process reaches `host:port` as the selected engine's host sees it: itself for
/// this machine; for a remote host, a local port forwarded there over SSH (opened on first
/// use, kept while we run).
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
    if let Some(&local) = s
        .forwards
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return Ok(("127.0.0.1".to_owned(), local));
    }
    let local = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|source| LifecycleError::SshStart {
            host: target.to_string(),
            source,
        })?
        .port();
    let remote_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let forward = format!("127.0.0.1:{local}:{remote_host}:{port}");
    s.tunnel(&forward, || {
        std::net::TcpStream::connect(("127.0.0.1", local)).is_ok()
    })
    .await?;
    s.forwards
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, local);
    Ok(("127.0.0.1".to_owned(), local))
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
