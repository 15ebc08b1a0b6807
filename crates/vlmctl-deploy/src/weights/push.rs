//! `weights push`: the locked files, verified here, onto another host's folder through its
//! Engine API (a helper container per folder, [`crate::push::to_host`]). Only the locked bytes
//! leave this machine; a cancel ends the push between two steps, and the whole pieces already
//! sent stay on the host for the next push.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use vlmctl_lifecycle::remote::Want;
use vlmctl_weights::{VerifyJob, WeightsLock, jobs_for, verify_all};

use crate::events::{Cancel, Event, Sink};
use crate::push::FileOnHost;
use crate::{DeployError, Dirs};

/// What to push, and where.
#[derive(Debug, Clone, Copy)]
pub struct PushRequest<'a> {
    /// The lock.
    pub lock: &'a Path,
    /// Its entries to push (every entry when empty).
    pub names: &'a [String],
    /// Where the files are here.
    pub dirs: &'a Dirs,
    /// The host's folder for every file (`--to`); `None`: the same absolute path as here.
    pub to: Option<&'a Path>,
    /// The helper's image; `None`: the embedded default spec's (already on most hosts).
    pub image: Option<&'a str>,
}

/// Pushes the request's files onto `host` (never this machine): verified here first (a file
/// that fails is [`DeployError::PushUnverified`], with every report, and nothing is sent), then
/// per host folder ([`Event::PushingTo`]) checked there and sent where missing or different.
pub async fn push(
    engine: &vlmctl_lifecycle::Engine,
    req: &PushRequest<'_>,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Vec<FileOnHost>, DeployError> {
    let host = engine.host();
    if !engine.is_remote() {
        return Err(DeployError::PushToLocal);
    }
    let lock = WeightsLock::load(req.lock)?;
    let jobs = jobs_for(
        &lock,
        req.lock,
        req.names,
        req.dirs.dir.as_deref(),
        &req.dirs.models_root,
    )?;
    if jobs.is_empty() {
        return Err(DeployError::LockHasNoFiles {
            lock: req.lock.to_owned(),
        });
    }
    let by_dir = by_dir(&jobs, req.to)?;
    // Only the locked bytes leave this machine.
    let reports = verify_all(&jobs, 0);
    if reports.iter().any(|r| !r.ok()) {
        return Err(DeployError::PushUnverified { reports });
    }
    let image = match req.image {
        Some(i) => i.to_owned(),
        None => crate::plan::load_spec(None)?.image,
    };
    let docker = engine.connect().await?;
    vlmctl_lifecycle::containers::ensure_image(&docker, &image, None, &mut |_| {}).await?;
    let keep = keep_set(&lock);
    let mut all = Vec::new();
    for (dir, files) in &by_dir {
        sink.event(Event::PushingTo {
            files: files.len(),
            host: host.name().to_owned(),
            dir: dir.clone(),
        });
        let done = tokio::select! {
            done = crate::push::to_host(engine, &docker, &image, dir, files, &keep, sink) => done,
            why = cancel.cancelled() => return Err(DeployError::PushInterrupted { why }),
        };
        all.extend(done?);
    }
    Ok(all)
}

/// Pure: the sha256 of every file the lock names. Staging folders for them are kept resumable,
/// whichever models this push is for; those of files no entry names any more may go.
#[must_use]
pub fn keep_set(lock: &WeightsLock) -> BTreeSet<String> {
    lock.models
        .iter()
        .flat_map(|m| m.files.iter().map(|f| f.sha256.to_string()))
        .collect()
}

/// Pure: the files to push by the host's folder they go to (one helper each): the same
/// absolute path as here, or `to`. A relative `to`, or one with a `:`, would be read by Docker
/// as a volume name or a bind's options: refused.
pub fn by_dir(
    jobs: &[VerifyJob],
    to: Option<&Path>,
) -> Result<BTreeMap<PathBuf, Vec<(Want, PathBuf)>>, DeployError> {
    if let Some(t) = to
        && (!t.is_absolute() || t.to_string_lossy().contains(':'))
    {
        return Err(DeployError::PushFolder { to: t.to_owned() });
    }
    let mut by_dir: BTreeMap<PathBuf, Vec<_>> = BTreeMap::new();
    for j in jobs {
        let here = j
            .location
            .to_string_lossy()
            .strip_suffix(&j.file.path)
            .map_or_else(|| j.location.clone(), PathBuf::from);
        let there = to.map_or(here, Path::to_path_buf);
        by_dir.entry(there).or_default().push((
            Want {
                name: j.file.path.clone(),
                size: j.file.size,
                sha256: j.file.sha256.to_string(),
            },
            j.location.clone(),
        ));
    }
    Ok(by_dir)
}

#[cfg(test)]
mod tests {
    use vlmctl_weights::{LockedFile, ModelEntry, Role, Sha256Digest};

    use super::*;

    fn model(name: &str, dir: &str, files: &[(&str, u8)]) -> ModelEntry {
        ModelEntry {
            name: name.into(),
            repo: "org/repo".into(),
            revision: "a".repeat(40),
            tracks: None,
            dir: Some(dir.into()),
            pinned_from: None,
            files: files
                .iter()
                .map(|(p, sha)| LockedFile {
                    path: (*p).into(),
                    role: Role::Model,
                    size: 1,
                    sha256: Sha256Digest([*sha; 32]),
                })
                .collect(),
        }
    }

    #[test]
    fn files_go_by_folder_and_the_whole_lock_is_kept() {
        let lock = WeightsLock {
            models: vec![
                model("a", "/m/a", &[("a.gguf", 1), ("mmproj.gguf", 2)]),
                model("b", "/m/b", &[("b.gguf", 3)]),
            ],
        };
        let jobs = jobs_for(&lock, Path::new("w.lock"), &[], None, Path::new("/r")).unwrap();
        let groups = by_dir(&jobs, None).unwrap();
        let folders: Vec<&Path> = groups.keys().map(PathBuf::as_path).collect();
        assert_eq!(folders, [Path::new("/m/a/"), Path::new("/m/b/")]);
        assert_eq!(groups[Path::new("/m/a/")].len(), 2);
        let to = by_dir(&jobs, Some(Path::new("/srv/models"))).unwrap();
        assert_eq!(to.len(), 1, "--to puts every file in one folder");
        assert_eq!(to[Path::new("/srv/models")].len(), 3);
        for bad in ["models", "/srv/m:ro"] {
            assert!(matches!(
                by_dir(&jobs, Some(Path::new(bad))),
                Err(DeployError::PushFolder { .. })
            ));
        }
        // Only `b` is pushed, but `a`'s staging folders stay resumable.
        assert_eq!(keep_set(&lock).len(), 3);
    }
}
