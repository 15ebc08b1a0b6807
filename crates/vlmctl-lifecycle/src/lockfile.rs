//! One vlmctl command at a time per deployment: an exclusive lock on
//! `<state>/locks/<deployment>.lock`, held for the whole job.
//!
//! The lock is `flock(2)` through the standard library's [`File::try_lock`]: the kernel drops it
//! when the holder dies in any way (`kill -9` included), so a crashed run never leaves a stale
//! lock behind. The file also says who holds it (pid, command, since), for the message a second
//! command shows. Lock files are never deleted: deleting one that another process is waiting on
//! would let two holders in (each would lock a different inode).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use crate::LifecycleError;

/// A held deployment lock; released on drop (and by the kernel on any death).
#[derive(Debug)]
pub struct DeploymentLock {
    _file: File,
    path: PathBuf,
}

impl DeploymentLock {
    /// The lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where a deployment's lock lives.
#[must_use]
pub fn path(state_dir: &Path, deployment: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{deployment}.lock"))
}

fn open(state_dir: &Path, deployment: &str) -> Result<(File, PathBuf), LifecycleError> {
    let p = path(state_dir, deployment);
    let err = |source| LifecycleError::State {
        path: p.clone(),
        source,
    };
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .map_err(err)?;
    Ok((f, p))
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
        fields.join(", ")
    }
}

fn claim(mut file: File, path: PathBuf, command: &str) -> Result<DeploymentLock, LifecycleError> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let text = format!(
        "pid {}\ncommand vlmctl {command}\nsince unix {since}\n",
        std::process::id()
    );
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()));
    written.map_err(|source| LifecycleError::State {
        path: path.clone(),
        source,
    })?;
    Ok(DeploymentLock { _file: file, path })
}

/// Takes the deployment's lock, or fails at once with [`LifecycleError::Busy`] naming the
/// holder.
pub fn try_acquire(
    state_dir: &Path,
    deployment: &str,
    command: &str,
) -> Result<DeploymentLock, LifecycleError> {
    let (mut file, p) = open(state_dir, deployment)?;
    match file.try_lock() {
        Ok(()) => claim(file, p, command),
        Err(TryLockError::WouldBlock) => Err(LifecycleError::Busy {
            deployment: deployment.to_owned(),
            holder: holder(&mut file),
            lock: p,
        }),
        Err(TryLockError::Error(source)) => Err(LifecycleError::State { path: p, source }),
    }
}

/// Takes the deployment's lock, waiting for the holder to finish; `waiting` is called once
/// with the holder's description when there is one to wait for. Blocks the thread.
pub fn acquire_waiting(
    state_dir: &Path,
    deployment: &str,
    command: &str,
    waiting: &mut dyn FnMut(&str),
) -> Result<DeploymentLock, LifecycleError> {
    match try_acquire(state_dir, deployment, command) {
        Err(LifecycleError::Busy { holder, .. }) => {
            waiting(&holder);
            let (file, p) = open(state_dir, deployment)?;
            file.lock().map_err(|source| LifecycleError::State {
                path: p.clone(),
                source,
            })?;
            claim(file, p, command)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_ones_name_until_it_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let first = try_acquire(tmp.path(), "panda", "provision").unwrap();
        assert!(first.path().ends_with("locks/panda.lock"));
        let err = try_acquire(tmp.path(), "panda", "teardown").unwrap_err();
        let LifecycleError::Busy { holder, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(
            holder.contains(&format!("pid {}", std::process::id()))
                && holder.contains("vlmctl provision"),
            "{holder}"
        );
        // Another deployment is independent.
        let _other = try_acquire(tmp.path(), "beast", "provision").unwrap();
        drop(first);
        let again = try_acquire(tmp.path(), "panda", "teardown").unwrap();
        drop(again);
        assert!(path(tmp.path(), "panda").exists(), "lock files stay");
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let first = try_acquire(tmp.path(), "d", "provision").unwrap();
        let dir = tmp.path().to_owned();
        let (told_tx, told_rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            acquire_waiting(&dir, "d", "teardown", &mut |h| {
                let _ = told_tx.send(h.to_owned());
            })
            .map(|_| ())
        });
        // The waiter says whom it waits for before the holder lets go.
        let told = told_rx.recv().unwrap();
        assert!(told.contains("vlmctl provision"), "{told}");
        drop(first);
        waiter.join().unwrap().unwrap();
    }
}
