//! One vlmctl command at a time per deployment, for the whole job, through two exclusive locks:
//!
//! - `<state>/locks/<deployment>.lock`, beside the deployment's journal;
//! - a host-wide one, `/run/lock/vlmctl/<deployment>.lock` (else under the temp directory), so
//!   that two commands with different state directories (`sudo` and a user, another
//!   `XDG_STATE_HOME`) still cannot work on one container at the same time. A deployment on
//!   another host (whose state folder is `<state>/hosts/<key>`, [`crate::hosts::Host::state_dir`])
//!   has its own, `/run/lock/vlmctl/hosts/<key>/<deployment>.lock`: `vlmctl-cpu-test` here and
//!   `vlmctl-cpu-test` on beast are two deployments, which two commands may change at once.
//!   These directories are shared like `/tmp` (mode 1777) and their files are readable and
//!   writable by all: a lock is taken on a read-only descriptor too.
//!
//! The locks are `flock(2)` through the standard library's [`File::try_lock`]: the kernel drops
//! them when the holder dies in any way (`kill -9` included), so a crashed run never leaves a
//! stale lock behind. The files also say who holds them (pid, command, since), for the message
//! a second command shows. Lock files are never deleted (deleting one that another process is
//! waiting on would let two holders in, each on a different inode) and never opened through a
//! symbolic link.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::LifecycleError;
use crate::hosts::HOSTS_FOLDER;

/// Held deployment locks; released on drop (and by the kernel on any death).
#[derive(Debug)]
pub struct DeploymentLock {
    _host: File,
    _state: File,
    path: PathBuf,
}

impl DeploymentLock {
    /// The state directory's lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where a deployment's lock lives in the state directory.
#[must_use]
pub fn path(state_dir: &Path, deployment: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{deployment}.lock"))
}

pub use crate::shell::host_dir;

fn invalid(path: &Path, why: String) -> LifecycleError {
    LifecycleError::State {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
    }
}

/// Opens (creating) one lock file; `shared`: in the host-wide directory, for every user.
fn open(p: &Path, shared: bool) -> Result<File, LifecycleError> {
    let err = |source| LifecycleError::State {
        path: p.to_owned(),
        source,
    };
    if let Some(dir) = p.parent() {
        if shared {
            // Every level shared like /tmp (`hosts/<key>/` too), for whichever user comes first.
            let mut levels: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
            levels.reverse();
            for level in levels {
                let _ = fs::DirBuilder::new().mode(0o1777).create(level);
                // The umask took bits off: put them back, as on /tmp.
                let _ = fs::set_permissions(level, fs::Permissions::from_mode(0o1777));
            }
        }
        fs::create_dir_all(dir).map_err(err)?;
    }
    // The holder's note is written into it: never through a link to some other file.
    if fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(invalid(
            p,
            "the lock file is a symbolic link; remove it".to_owned(),
        ));
    }
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(if shared { 0o666 } else { 0o644 })
        .open(p);
    match rw {
        Ok(f) => {
            if shared {
                let _ = f.set_permissions(fs::Permissions::from_mode(0o666));
            }
            Ok(f)
        }
        // Another user's file in the shared directory: a read-only descriptor locks as well.
        Err(e) if shared && e.kind() == std::io::ErrorKind::PermissionDenied => {
            File::open(p).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Who holds the lock, as its holder wrote it (best effort: empty while it is being written).
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    let fields: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if fields.is_empty() {
        "another vlmctl process".to_owned()
    } else {
        fields
            .iter()
            .map(|f| {
                f.strip_prefix("since unix ")
                    .and_then(|t| t.parse::<u64>().ok())
                    .map_or_else(|| (*f).to_owned(), |t| since(t, crate::now_unix()))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `since 11:36 UTC, 2 min ago` for a holder that wrote `since unix T` (the date too when it
/// is not today's).
fn since(t: u64, now: u64) -> String {
    const DAY: u64 = 86_400;
    let age = now.saturating_sub(t);
    let ago = match age {
        0..60 => format!("{age} s ago"),
        60..3600 => format!("{} min ago", age / 60),
        3600..DAY => format!("{} h {} min ago", age / 3600, (age % 3600) / 60),
        _ => format!("{} days ago", age / DAY),
    };
    let format = if t / DAY == now / DAY {
        "%H:%M UTC"
    } else {
        "%Y-%m-%d %H:%M UTC"
    };
    match i64::try_from(t)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
    {
        Some(ts) => format!("since {}, {ago}", ts.strftime(format)),
        None => format!("since unix {t}"),
    }
}

/// Writes who holds it. Best effort: it is for messages only, and a full disk or another
/// user's read-only file must not stop a restore from taking the lock.
fn note(file: &mut File, command: &str) {
    let since = crate::now_unix();
    let text = format!(
        "pid {}\ncommand vlmctl {command}\nsince unix {since}\n",
        std::process::id()
    );
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()));
}

/// Both locks taken: says who holds them.
fn held(mut host: File, mut state: File, path: PathBuf, command: &str) -> DeploymentLock {
    note(&mut host, command);
    note(&mut state, command);
    DeploymentLock {
        _host: host,
        _state: state,
        path,
    }
}

/// Both lock files of a deployment, opened (not locked).
fn open_both(state_dir: &Path, deployment: &str) -> Result<[(File, PathBuf); 2], LifecycleError> {
    let p = path(state_dir, deployment);
    if !crate::spec::is_container_name(deployment) {
        return Err(invalid(
            &p,
            format!("{deployment:?} is not a deployment (container) name"),
        ));
    }
    let host = host_wide(state_dir).join(format!("{deployment}.lock"));
    Ok([(open(&host, true)?, host), (open(&p, false)?, p)])
}

/// The host-wide lock folder for the host whose state folder is `state_dir`: [`host_dir`] for
/// this machine, `host_dir()/hosts/<key>` for another host (its state folder is
/// `<state>/hosts/<key>`, the key made of its address: the same host from two state folders
/// meets the same lock).
fn host_wide(state_dir: &Path) -> PathBuf {
    let parent = state_dir.parent();
    match (
        parent.and_then(Path::file_name),
        state_dir.file_name().and_then(|k| k.to_str()),
    ) {
        (Some(hosts), Some(key)) if hosts == HOSTS_FOLDER => {
            host_dir().join(HOSTS_FOLDER).join(key)
        }
        _ => host_dir(),
    }
}

/// Takes the deployment's locks, or fails at once with [`LifecycleError::Busy`] naming the
/// holder.
pub fn try_acquire(
    state_dir: &Path,
    deployment: &str,
    command: &str,
) -> Result<DeploymentLock, LifecycleError> {
    let [(mut host, host_path), (mut state, state_path)] = open_both(state_dir, deployment)?;
    for (file, p) in [(&mut host, &host_path), (&mut state, &state_path)] {
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LifecycleError::Busy {
                    deployment: deployment.to_owned(),
                    holder: holder(file),
                    lock: p.clone(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(LifecycleError::State {
                    path: p.clone(),
                    source,
                });
            }
        }
    }
    Ok(held(host, state, state_path, command))
}

/// Takes the deployment's locks, waiting as long as another command holds them (the caller
/// has already said whom it waits for, from [`try_acquire`]'s [`LifecycleError::Busy`]).
/// Blocks the thread.
pub fn acquire_blocking(
    state_dir: &Path,
    deployment: &str,
    command: &str,
) -> Result<DeploymentLock, LifecycleError> {
    let [(host, host_path), (state, state_path)] = open_both(state_dir, deployment)?;
    for (file, p) in [(&host, &host_path), (&state, &state_path)] {
        file.lock().map_err(|source| LifecycleError::State {
            path: p.clone(),
            source,
        })?;
    }
    Ok(held(host, state, state_path, command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holders_since_reads_as_a_time_and_an_age() {
        // 2026-12-07 11:36:18 UTC.
        let t = 1_796_643_378;
        assert_eq!(since(t, t + 130), "since 11:36 UTC, 2 min ago");
        assert_eq!(since(t, t + 5), "since 11:36 UTC, 5 s ago");
        assert_eq!(
            since(t, t + 86_400 * 2),
            "since 2026-12-07 11:36 UTC, 2 days ago"
        );
    }

    /// A deployment name no other test (nor a real deployment) uses: the host-wide lock is
    /// shared by everything on this machine.
    fn unique(what: &str) -> String {
        format!("test-{what}-{}", std::process::id())
    }

    #[test]
    fn second_holder_is_refused_with_the_first_ones_name_until_it_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let (panda, beast) = (unique("panda"), unique("beast"));
        let first = try_acquire(tmp.path(), &panda, "provision").unwrap();
        assert!(first.path().ends_with(format!("locks/{panda}.lock")));
        let err = try_acquire(tmp.path(), &panda, "teardown").unwrap_err();
        let LifecycleError::Busy { holder, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(
            holder.contains(&format!("pid {}", std::process::id()))
                && holder.contains("vlmctl provision"),
            "{holder}"
        );
        // Another deployment is independent.
        let _other = try_acquire(tmp.path(), &beast, "provision").unwrap();
        drop(first);
        let again = try_acquire(tmp.path(), &panda, "teardown").unwrap();
        drop(again);
        assert!(path(tmp.path(), &panda).exists(), "lock files stay");
    }

    #[test]
    fn the_lock_never_writes_through_a_link_nor_outside_the_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let precious = tmp.path().join("precious.txt");
        std::fs::write(&precious, "keep me").unwrap();
        std::fs::create_dir_all(tmp.path().join("locks")).unwrap();
        let d = unique("link");
        std::os::unix::fs::symlink(&precious, path(tmp.path(), &d)).unwrap();
        let e = try_acquire(tmp.path(), &d, "provision").unwrap_err();
        assert!(e.to_string().contains("state file"), "{e}");
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
        for name in ["../../victim", "a/b", ".hidden", ""] {
            assert!(
                try_acquire(tmp.path(), name, "teardown").is_err(),
                "{name:?}"
            );
        }
        assert!(!tmp.path().join("victim.lock").exists());
    }

    #[test]
    fn two_state_directories_still_share_one_lock_per_deployment() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let d = unique("host");
        let first = try_acquire(a.path(), &d, "provision").unwrap();
        let e = try_acquire(b.path(), &d, "provision").unwrap_err();
        assert!(matches!(e, LifecycleError::Busy { .. }), "{e}");
        drop(first);
        try_acquire(b.path(), &d, "provision").unwrap();
    }

    /// A deployment of one name on this machine and on another host (its state folder is
    /// `<state>/hosts/<key>`) are two deployments: both locks at once. The same other host seen
    /// from two state folders is one.
    #[test]
    fn the_same_name_on_two_hosts_is_two_locks_and_one_host_from_two_state_dirs_is_one() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let d = unique("hosts");
        let key = unique("root-127.0.0.1-22");
        let here = try_acquire(a.path(), &d, "provision").unwrap();
        let there = a.path().join("hosts").join(&key);
        let remote = try_acquire(&there, &d, "provision").unwrap();
        assert_eq!(
            host_wide(&there),
            host_dir().join("hosts").join(&key),
            "{}",
            there.display()
        );
        let again = b.path().join("hosts").join(&key);
        let e = try_acquire(&again, &d, "teardown").unwrap_err();
        assert!(
            matches!(&e, LifecycleError::Busy { lock, .. } if lock.starts_with(host_dir().join("hosts"))),
            "{e}"
        );
        drop((here, remote));
        try_acquire(&again, &d, "teardown").unwrap();
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let d = unique("wait");
        let first = try_acquire(tmp.path(), &d, "provision").unwrap();
        let dir = tmp.path().to_owned();
        let name = d.clone();
        let waiter =
            std::thread::spawn(move || acquire_blocking(&dir, &name, "teardown").map(|_| ()));
        drop(first);
        waiter.join().unwrap().unwrap();
        assert!(
            try_acquire(tmp.path(), &d, "restore").is_ok(),
            "the waiter let go when it ended"
        );
    }
}
