//! The [`Sessions`] pool: what vlmctl holds open to other hosts while it runs (one [`Session`]
//! per host, its Docker socket and TCP forwards), and the helper containers handed out through
//! them that were dropped without being removed. The front-end creates one, gives it to every
//! [`crate::Engine`] it builds, and [`Sessions::close`]s it on its way out: the dropped helpers
//! are removed first, while the forwards still carry the requests, then every `ssh` ends. A
//! pool dropped without `close` still ends its `ssh` processes and removes their folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use vlmctl_base::owner::{Owner, this_machine};

use super::host::{Host, SshHost, short_sha256};
use super::ssh::LinkNotice;
use super::ssh::{Forward, Notices, Probe};
use crate::LifecycleError;

/// The start of a session folder's name: `vlmctl-ssh-PID-START-MACHINE-`, its owner (pid, start
/// time, and a short hash of where pids mean something, [`this_machine`]) for
/// [`remove_dead_folders`].
fn folder_prefix(owner: &Owner) -> String {
    format!(
        "vlmctl-ssh-{}-{}-{}-",
        owner.pid,
        owner.start.unwrap_or(0),
        machine_tag(owner.machine.as_deref())
    )
}

fn machine_tag(machine: Option<&str>) -> String {
    machine.map_or_else(|| "nomachine".to_owned(), |m| short_sha256(m, 8))
}

/// Removes the session folders in `temp` whose vlmctl is gone: a process killed with SIGKILL
/// cannot remove its own (the socket of a forward that ended with it). Only folders named
/// by [`folder_prefix`] for this machine, boot and pid namespace, owned by this user and not a
/// link, whose owner is dead by the one rule ([`Owner::is_dead`]: pid and start time); a
/// folder of a live vlmctl, of another user, or of a process this one cannot see (another
/// pid namespace sharing `/tmp`) is left alone.
pub(crate) fn remove_dead_folders(temp: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return;
    };
    let here = this_machine();
    let tag = machine_tag(here.as_deref());
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("vlmctl-ssh-")) else {
            continue;
        };
        let mut parts = rest.splitn(4, '-');
        let (Some(pid), Some(start), Some(machine)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<i64>()) else {
            continue;
        };
        let owner = Owner {
            pid,
            start: (start != 0).then_some(start),
            machine: here.clone(),
        };
        let ours = entry
            .path()
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir() && m.uid() == me);
        if machine == tag && ours && owner.is_dead() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
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

impl Session {
    /// The local socket that is the host's Docker socket.
    #[must_use]
    pub fn docker_socket(&self) -> &Path {
        &self.socket
    }

    /// Ok when the Docker socket's forward is up, after starting its `ssh` again if it ended
    /// under us; [`LifecycleError::HostLost`] when the host stayed unreachable. Every Docker
    /// request through the session asks first ([`crate::Engine::connect`]).
    pub async fn docker_usable(&self) -> Result<(), LifecycleError> {
        self.docker.usable().await
    }

    fn close(&self) {
        self.docker.close();
        for (_, f) in lock(&self.forwards).values() {
            f.close();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long [`Sessions::close`] waits for the dropped helpers to be gone (a host that went away
/// is not waited for).
pub const HELPERS_PATIENCE: Duration = Duration::from_secs(20);

/// The sessions to other hosts and the helper containers dropped on them, owned by the
/// front-end (cheap to clone: every clone is the same pool).
#[derive(Clone, Default)]
pub struct Sessions {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("open", &lock(&self.pool.open).keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Pool {
    /// By address (`ssh://user@host:port`).
    open: Mutex<BTreeMap<String, Arc<Session>>>,
    /// One opening at a time per address.
    opening: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Numbers this pool's session folders.
    folders: AtomicU64,
    notices: Notices,
    /// Helpers dropped without being stopped: their background removal may not get to run (a
    /// signal ends the job and the front-end closes the forward right after), so
    /// [`Sessions::close`] removes them before the forwards end.
    dropped: Mutex<Vec<(bollard::Docker, String)>>,
}

impl Pool {
    fn close_sessions(&self) {
        let drained = std::mem::take(&mut *lock(&self.open));
        for s in drained.into_values() {
            s.close();
            let _ = std::fs::remove_dir_all(&s.dir);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close_sessions();
    }
}

impl Sessions {
    /// A pool whose [`LinkNotice`]s are logged at warn level.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A pool whose [`LinkNotice`]s (a forward that ended, was reopened or lost) arrive on the
    /// returned channel, for the front-end to show.
    #[must_use]
    pub fn with_notices() -> (Self, tokio::sync::mpsc::UnboundedReceiver<LinkNotice>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut pool = Pool::default();
        pool.notices = Notices::to(tx);
        (
            Self {
                pool: Arc::new(pool),
            },
            rx,
        )
    }

    /// Ends what the pool handed out: first the helper containers dropped without being
    /// stopped (waited for until gone, at most [`HELPERS_PATIENCE`]), while the forwards that
    /// reach their host are still open; then every session: its `ssh` processes (never started
    /// again after this) and its folder (a kill -9 leaves the folder, an empty one with a dead
    /// socket, in the temp dir).
    pub async fn close(&self) {
        let dropped = std::mem::take(&mut *lock(&self.pool.dropped));
        let _ = tokio::time::timeout(HELPERS_PATIENCE, async {
            for (docker, id) in dropped {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(
                            bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                                .force(true)
                                .build(),
                        ),
                    )
                    .await;
                // The drop's own background removal may be the one the daemon is carrying
                // out (ours then gets "removal already in progress" at once): gone means
                // gone, so wait for it.
                while docker.inspect_container(&id, None).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .await;
        self.pool.close_sessions();
    }

    /// Whether `other` is this very pool (a clone of it), not another one.
    #[must_use]
    pub fn is(&self, other: &Sessions) -> bool {
        Arc::ptr_eq(&self.pool, &other.pool)
    }

    /// Remembers a helper container dropped without being stopped, for [`Sessions::close`].
    pub(crate) fn dropped_helper(&self, docker: bollard::Docker, id: String) {
        lock(&self.pool.dropped).push((docker, id));
    }

    /// The session to `target`, opened (the Docker socket forwarded) on first use.
    pub async fn session(&self, target: &SshHost) -> Result<Arc<Session>, LifecycleError> {
        let key = target.to_string();
        let known = || {
            let mut all = lock(&self.pool.open);
            // A session whose forward was lost is not kept: a later job (a long-running
            // service) opens the host afresh.
            if all.get(&key).is_some_and(|s| s.docker.is_lost()) {
                all.remove(&key);
            }
            all.get(&key).map(Arc::clone)
        };
        if let Some(s) = known() {
            return Ok(s);
        }
        // One opening at a time per address: two jobs asking for one address at once (two
        // contexts naming it in `status --all-hosts`) share one session instead of racing for
        // one socket.
        let gate = Arc::clone(lock(&self.pool.opening).entry(key.clone()).or_default());
        let _opening = gate.lock().await;
        if let Some(s) = known() {
            return Ok(s);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let temp = std::env::temp_dir();
        remove_dead_folders(&temp);
        let dir = temp.join(format!(
            "{}-{}-{now:x}-{:x}-{}",
            folder_prefix(&Owner::this_process()),
            short_sha256(&key, 8),
            // Two pools alive at once in one process (tests) never share a folder.
            Arc::as_ptr(&self.pool) as usize,
            self.pool.folders.fetch_add(1, Ordering::Relaxed)
        ));
        // A fresh folder only we may enter: one that exists already (left over, or put there
        // by someone else to catch what we send the engine) is refused, not reused.
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
        let docker = match Forward::open(
            target,
            forward,
            Probe::Unix(socket.clone()),
            self.pool.notices.clone(),
        )
        .await
        {
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
        lock(&self.pool.open).insert(key, Arc::clone(&s));
        Ok(s)
    }

    /// Where this process reaches `host:port` as `engine`'s host sees it: itself for this
    /// machine; for a remote host, a local port forwarded there over SSH (opened on first use,
    /// kept while the pool is open; a connection to it made while its `ssh` is being started
    /// again waits for it).
    pub async fn reach(
        &self,
        engine: &Host,
        host: &str,
        port: u16,
    ) -> Result<(String, u16), LifecycleError> {
        let Host::Ssh { target, .. } = engine else {
            return Ok((host.to_owned(), port));
        };
        let s = self.session(target).await?;
        let key = (host.to_owned(), port);
        let known = lock(&s.forwards)
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
        // Ours: the port the caller is given, open for as long as we run, whatever happens to
        // the `ssh` behind it.
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
        let f = Forward::open(
            target,
            forward,
            Probe::Tcp(behind),
            self.pool.notices.clone(),
        )
        .await?;
        tokio::spawn(super::relay::relay(front, behind, Arc::downgrade(&f)));
        lock(&s.forwards).insert(key, (local, f));
        Ok(("127.0.0.1".to_owned(), local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owner that was alive and is gone: a child, seen running, then killed and reaped.
    fn dead_owner() -> Owner {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let owner = Owner {
            pid: child.id(),
            start: vlmctl_base::owner::process_start(child.id()),
            machine: this_machine(),
        };
        assert!(owner.start.is_some(), "read while it ran");
        child.kill().expect("kill");
        child.wait().expect("reaped");
        owner
    }

    #[test]
    fn only_the_folders_of_dead_owners_of_this_machine_are_removed() {
        let temp = tempfile::tempdir().expect("temp");
        let dead = dead_owner();
        let folder =
            |owner: &Owner, rest: &str| temp.path().join(format!("{}{rest}", folder_prefix(owner)));
        let gone = folder(&dead, "aa-1-2-0");
        let live = folder(&Owner::this_process(), "bb-1-2-0");
        let elsewhere = temp.path().join(format!(
            "vlmctl-ssh-{}-{}-{}-cc-1-2-0",
            dead.pid,
            dead.start.unwrap_or(0),
            machine_tag(Some("another-boot/pid:[1]"))
        ));
        let not_a_folder = folder(&dead, "dd-1-2-0");
        let unrelated = temp.path().join("vlmctl-ssh-notapid-x");
        for d in [&gone, &live, &elsewhere, &unrelated] {
            std::fs::create_dir(d).expect("folder");
            std::fs::write(d.join("docker.sock"), b"").expect("a file in it");
        }
        std::fs::write(&not_a_folder, b"").expect("file");
        remove_dead_folders(temp.path());
        assert!(!gone.exists(), "a dead vlmctl's folder is removed");
        for kept in [&live, &elsewhere, &not_a_folder, &unrelated] {
            assert!(kept.exists(), "{} is kept", kept.display());
        }
    }
}
