//! `weights update`: the branch or tag each entry tracks, resolved again; the entries whose
//! commit or files changed are rewritten in one write (refused under `--locked`).

use std::path::Path;

use vlmctl_weights::{HubClient, ModelEntry, PinRequest, WeightsLock};

use crate::DeployError;
use crate::events::{Event, Sink};

/// What resolving an entry again found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateResult {
    /// Pinned to a commit, not a branch or tag: nothing to resolve.
    NotTracking,
    /// The same commit and files.
    Unchanged,
    /// Another commit, the same files.
    NewCommitSameFiles,
    /// Another commit, and this many files differ (size or sha256).
    NewCommit {
        /// How many.
        files: usize,
    },
}

impl UpdateResult {
    /// The word for `--json`'s `result` (the text, except `not_tracking`).
    #[must_use]
    pub fn json_word(self) -> String {
        match self {
            Self::NotTracking => "not_tracking".to_owned(),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for UpdateResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotTracking => {
                f.write_str("pinned to a commit, not a branch or tag: nothing to resolve")
            }
            Self::Unchanged => f.write_str("unchanged"),
            Self::NewCommitSameFiles => f.write_str("new commit, same files"),
            Self::NewCommit { files } => write!(f, "new commit, {files} file(s) changed"),
        }
    }
}

/// Pure: how the entry resolved now (`new`) differs from the one in the lock (`old`).
#[must_use]
pub fn classify(old: &ModelEntry, new: &ModelEntry) -> UpdateResult {
    if new == old {
        return UpdateResult::Unchanged;
    }
    let files = new
        .files
        .iter()
        .zip(&old.files)
        .filter(|(a, b)| a != b)
        .count();
    if files == 0 {
        UpdateResult::NewCommitSameFiles
    } else {
        UpdateResult::NewCommit { files }
    }
}

/// One entry of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRow {
    /// The entry.
    pub name: String,
    /// The branch or tag it tracks (`None`: a commit).
    pub tracks: Option<String>,
    /// Its commit before.
    pub from: String,
    /// Its commit now.
    pub to: String,
    /// What changed.
    pub result: UpdateResult,
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    /// One per entry looked at, in the lock's order (none: the lock has no entries).
    pub rows: Vec<UpdateRow>,
    /// The entries rewritten.
    pub changed: Vec<ModelEntry>,
}

/// Resolves again the branch or tag of each entry of `names` (every entry when empty) in the
/// lock at `lock` ([`Event::Resolving`] before each) and writes the entries that changed. With
/// `locked`, a change is refused instead and nothing is written.
pub async fn update(
    hub: &HubClient,
    lock: &Path,
    names: &[String],
    locked: bool,
    sink: &mut dyn Sink,
) -> Result<Updated, DeployError> {
    let data = WeightsLock::load(lock)?;
    let models = vlmctl_weights::select_models(&data, lock, names)?;
    let mut rows = Vec::new();
    let mut changed = Vec::new();
    for m in models {
        let Some(tracks) = &m.tracks else {
            rows.push(UpdateRow {
                name: m.name.clone(),
                tracks: None,
                from: m.revision.clone(),
                to: m.revision.clone(),
                result: UpdateResult::NotTracking,
            });
            continue;
        };
        sink.event(Event::Resolving {
            repo: m.repo.clone(),
            revision: tracks.clone(),
            endpoint: hub.endpoint().to_owned(),
        });
        let entry = hub
            .resolve(&PinRequest {
                name: m.name.clone(),
                repo: m.repo.clone(),
                revision: tracks.clone(),
                files: m.files.iter().map(|f| (f.path.clone(), f.role)).collect(),
                dir: m.dir.clone(),
                tracks: None,
            })
            .await?;
        rows.push(UpdateRow {
            name: m.name.clone(),
            tracks: Some(tracks.clone()),
            from: m.revision.clone(),
            to: entry.revision.clone(),
            result: classify(m, &entry),
        });
        if entry != *m {
            changed.push(entry);
        }
    }
    if locked && !changed.is_empty() {
        let names: Vec<&str> = changed.iter().map(|e| e.name.as_str()).collect();
        return Err(DeployError::LockedRefusal {
            lock: lock.to_owned(),
            what: format!("upstream moved: {} would be updated", names.join(", ")),
        });
    }
    crate::pin::write_entries(lock, &changed)?;
    Ok(Updated { rows, changed })
}

/// `weights lock`: the entry `request` names, resolved on the hub ([`Event::Resolving`] first):
/// the commit its revision points at, each file's size and sha256.
pub async fn resolve(
    hub: &HubClient,
    request: &PinRequest,
    sink: &mut dyn Sink,
) -> Result<ModelEntry, DeployError> {
    sink.event(Event::Resolving {
        repo: request.repo.clone(),
        revision: request.revision.clone(),
        endpoint: hub.endpoint().to_owned(),
    });
    Ok(hub.resolve(request).await?)
}

#[cfg(test)]
mod tests {
    use vlmctl_weights::{LockedFile, Role, Sha256Digest};

    use super::*;

    fn entry(revision: char, shas: &[u8]) -> ModelEntry {
        ModelEntry {
            name: "m".into(),
            repo: "org/repo".into(),
            revision: revision.to_string().repeat(40),
            tracks: Some("main".into()),
            dir: None,
            pinned_from: None,
            files: shas
                .iter()
                .enumerate()
                .map(|(i, sha)| LockedFile {
                    path: format!("f{i}.gguf"),
                    role: Role::Model,
                    size: 1,
                    sha256: Sha256Digest([*sha; 32]),
                })
                .collect(),
        }
    }

    #[test]
    fn an_update_says_whether_the_commit_and_how_many_files_changed() {
        let old = entry('a', &[1, 2]);
        assert_eq!(classify(&old, &old.clone()), UpdateResult::Unchanged);
        assert_eq!(
            classify(&old, &entry('b', &[1, 2])),
            UpdateResult::NewCommitSameFiles
        );
        let moved = classify(&old, &entry('b', &[1, 3]));
        assert_eq!(moved, UpdateResult::NewCommit { files: 1 });
        assert_eq!(moved.to_string(), "new commit, 1 file(s) changed");
        assert_eq!(
            classify(&old, &entry('b', &[3, 4])).json_word(),
            "new commit, 2 file(s) changed"
        );
        assert_eq!(UpdateResult::NotTracking.json_word(), "not_tracking");
    }
}
