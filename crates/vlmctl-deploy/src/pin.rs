//! Pin on first use, as cargo, uv and npm do with their locks: a spec's `[model]` table says
//! where the model comes from (repository, revision, files); the first job that needs the files
//! resolves the revision to a commit and reads each file's size and sha256 from the hub (nothing
//! is downloaded for that), writes the entry into `weights.lock`, and says so. Afterwards the
//! lock decides: a later run reads the entry, and only a changed intent (or `weights update`)
//! resolves again. `--locked` turns any change into an error.

use std::path::{Path, PathBuf};

use vlmctl_lifecycle::spec::{FileRole, Spec};
use vlmctl_weights::{HubClient, ModelEntry, PinRequest, Role, WeightsError, WeightsLock};

use crate::DeployError;
pub use crate::types::{Change, PinNeed, Pinned, Reason};

/// The lock at `path` for `spec`: a missing file is an empty lock when the spec says where its
/// model comes from (a fresh checkout pins into a new lock); else it is the error it always was.
pub fn load_lock(spec: &Spec, path: &Path) -> Result<WeightsLock, DeployError> {
    match WeightsLock::load(path) {
        Err(WeightsError::LockRead { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound && spec.model_intent.is_some() =>
        {
            Ok(WeightsLock { models: Vec::new() })
        }
        other => Ok(other?),
    }
}

/// Pure: whether `spec`'s model must be pinned into `lock` (at `lock_path`). `None` when the
/// spec has no intent (it names an entry) or the entry matches the intent.
#[must_use]
pub fn need(spec: &Spec, lock: &WeightsLock, lock_path: &Path) -> Option<PinNeed> {
    let intent = spec.model_intent.as_ref()?;
    let mut request = PinRequest {
        name: spec.model.clone(),
        repo: intent.repo.clone(),
        revision: intent.revision.clone(),
        files: intent
            .files
            .iter()
            .map(|f| {
                let role = match f.role {
                    FileRole::Model => Role::Model,
                    FileRole::Mmproj => Role::Mmproj,
                };
                (f.path.clone(), role)
            })
            .collect(),
        dir: intent.dir.clone(),
        tracks: None,
    };
    request.files.sort();
    let reason = match lock.model(&spec.model) {
        None => Reason::NoEntry,
        Some(entry) => {
            let what = differences(&request, entry);
            if what.is_empty() {
                return None;
            }
            // A re-pin keeps where the files live unless the spec says otherwise, and the
            // commit unless the repository or the revision changed: a projector added to the
            // files does not move the model file to whatever the branch points at today.
            if request.dir.is_none() {
                request.dir.clone_from(&entry.dir);
            }
            let source_changed = what
                .iter()
                .any(|w| w.starts_with("repo:") || w.starts_with("revision:"));
            if !source_changed {
                request.tracks = Some(
                    entry
                        .tracks
                        .clone()
                        .unwrap_or_else(|| request.revision.clone()),
                );
                request.revision.clone_from(&entry.revision);
            }
            Reason::Changed(what)
        }
    };
    Some(PinNeed {
        request,
        lock: lock_path.to_owned(),
        reason,
    })
}

/// Pure: how a lock entry differs from the intent, one item per field. A branch or tag is not
/// resolved again here (that is `weights update`): an entry resolved from the same name, or
/// one that does not say what it was resolved from, matches it.
fn differences(r: &PinRequest, e: &ModelEntry) -> Vec<String> {
    let mut what = Vec::new();
    if r.repo != e.repo {
        what.push(format!("repo: {} -> {}", e.repo, r.repo));
    }
    let locked: Vec<(String, Role)> = e.files.iter().map(|f| (f.path.clone(), f.role)).collect();
    if r.files != locked {
        let show = |files: &[(String, Role)]| {
            files
                .iter()
                .map(|(p, role)| format!("{p} ({role})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        what.push(format!(
            "files: [{}] -> [{}]",
            show(&locked),
            show(&r.files)
        ));
    }
    let is_commit = r.revision.len() == 40 && r.revision.chars().all(|c| c.is_ascii_hexdigit());
    if is_commit && !r.revision.eq_ignore_ascii_case(&e.revision) {
        what.push(format!("revision: {} -> {}", e.revision, r.revision));
    } else if !is_commit && e.tracks.as_deref().unwrap_or("main") != r.revision {
        // An entry that does not say what it was resolved from was resolved from `main`, the
        // default of `weights lock` before entries said so.
        what.push(format!(
            "revision: {} -> {}",
            e.tracks.as_deref().unwrap_or("main (presumed)"),
            r.revision
        ));
    }
    if r.dir.is_some() && r.dir != e.dir {
        what.push(format!(
            "dir: {} -> {}",
            e.dir.as_deref().unwrap_or("(default)"),
            r.dir.as_deref().unwrap_or_default()
        ));
    }
    what
}

/// Resolves `need` against the hub and writes the entry. Nothing is written when the hub fails.
pub async fn pin(hub: &HubClient, need: &PinNeed) -> Result<Pinned, DeployError> {
    let entry = hub.resolve(&need.request).await?;
    let change = write_entries(&need.lock, std::slice::from_ref(&entry))?
        .pop()
        .unwrap_or(Change::Unchanged);
    Ok(Pinned {
        entry,
        change,
        lock: need.lock.clone(),
    })
}

/// Adds or replaces `entries` in the lock at `path` (created when missing), atomically, keeping
/// the comment lines at its top. Commands that write the same lock at once are serialized by a
/// lock on its directory (the file itself is replaced by a rename, so it cannot carry the
/// lock), and the file is read again under it, so that no command's entry is lost.
pub fn write_entries(path: &Path, entries: &[ModelEntry]) -> Result<Vec<Change>, DeployError> {
    let io = |source: std::io::Error| {
        DeployError::Weights(WeightsError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let guard = std::fs::File::open(&dir).map_err(io)?;
    guard.lock().map_err(io)?;
    let old =
        match vlmctl_files::read_regular_text(path, vlmctl_files::MAX_TEXT_BYTES, "a weights.lock")
        {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
    let mut lock = match &old {
        Some(text) => WeightsLock::parse(text, path)?,
        None => WeightsLock { models: Vec::new() },
    };
    let mut changes = Vec::new();
    for entry in entries {
        let change = match lock.models.iter().position(|m| m.name == entry.name) {
            Some(i) if lock.models[i] == *entry => Change::Unchanged,
            Some(i) => Change::Updated {
                previous: Box::new(std::mem::replace(&mut lock.models[i], entry.clone())),
            },
            None => {
                lock.models.push(entry.clone());
                Change::Added
            }
        };
        changes.push(change);
    }
    lock.models.sort_by(|a, b| a.name.cmp(&b.name));
    let text = match &old {
        Some(old) => lock.to_toml_with_header(vlmctl_weights::leading_comments(old)),
        None => lock.to_toml(),
    };
    if old.as_deref() != Some(text.as_str()) {
        // What we write must be a lock we accept.
        WeightsLock::parse(&text, path)?;
        crate::write_atomically(path, text.as_bytes()).map_err(io)?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTENT: &str = r#"
name = "d"
image = "img"
[model]
name = "m"
repo = "org/repo"
files = ["m.gguf", "mmproj-F16.gguf"]
[server]
host = "127.0.0.1"
port = 1
"#;

    fn spec(text: &str) -> Spec {
        Spec::parse(text, Path::new("d.toml")).unwrap()
    }

    fn entry(files: &[(&str, Role)]) -> ModelEntry {
        ModelEntry {
            name: "m".into(),
            repo: "org/repo".into(),
            revision: "a".repeat(40),
            tracks: Some("main".into()),
            dir: Some("~/models/m".into()),
            pinned_from: None,
            files: files
                .iter()
                .map(|(p, role)| vlmctl_weights::LockedFile {
                    path: (*p).to_owned(),
                    role: *role,
                    size: 1,
                    sha256: vlmctl_weights::Sha256Digest([0; 32]),
                })
                .collect(),
        }
    }

    fn lock_with(e: ModelEntry) -> WeightsLock {
        WeightsLock { models: vec![e] }
    }

    #[test]
    fn an_entry_that_matches_the_intent_needs_nothing() {
        let s = spec(INTENT);
        let e = entry(&[("m.gguf", Role::Model), ("mmproj-F16.gguf", Role::Mmproj)]);
        assert_eq!(need(&s, &lock_with(e), Path::new("w.lock")), None);
        let mut untracked = entry(&[("m.gguf", Role::Model), ("mmproj-F16.gguf", Role::Mmproj)]);
        untracked.tracks = None;
        assert_eq!(
            need(&s, &lock_with(untracked), Path::new("w.lock")),
            None,
            "an entry pinned without saying from what matches a branch"
        );
        let named = spec(&INTENT.replace(
            "[model]\nname = \"m\"\nrepo = \"org/repo\"\nfiles = [\"m.gguf\", \"mmproj-F16.gguf\"]\n",
            "model = \"m\"\n",
        ));
        assert_eq!(
            need(&named, &WeightsLock { models: vec![] }, Path::new("w.lock")),
            None,
            "model = \"name\" never pins"
        );
    }

    #[test]
    fn a_missing_or_different_entry_needs_a_pin_saying_what_differs() {
        let s = spec(INTENT);
        let n = need(&s, &WeightsLock { models: vec![] }, Path::new("w.lock")).unwrap();
        assert_eq!(n.reason, Reason::NoEntry);
        assert_eq!(n.request.revision, "main");
        assert_eq!(
            n.to_string(),
            "m: org/repo@main (m.gguf, mmproj-F16.gguf); w.lock does not exist and will be \
             created (run from the repository root, or pass --lock, to use the committed one)"
        );

        let text_only = lock_with(entry(&[("m.gguf", Role::Model)]));
        let n = need(&s, &text_only, Path::new("w.lock")).unwrap();
        assert_eq!(
            n.reason,
            Reason::Changed(vec![
                "files: [m.gguf (model)] -> [m.gguf (model), mmproj-F16.gguf (mmproj)]".into()
            ])
        );
        assert_eq!(
            n.request.dir.as_deref(),
            Some("~/models/m"),
            "a re-pin keeps the entry's dir"
        );
        assert_eq!(
            (n.request.revision.as_str(), n.request.tracks.as_deref()),
            ("a".repeat(40).as_str(), Some("main")),
            "and, when only the files changed, the entry's commit (still tracking main)"
        );

        let both = [("m.gguf", Role::Model), ("mmproj-F16.gguf", Role::Mmproj)];
        let other_repo = spec(&INTENT.replace("org/repo", "org/other"));
        let tag = spec(&INTENT.replace("files =", "revision = \"v2\"\nfiles ="));
        let commit = spec(&INTENT.replace(
            "files =",
            &format!("revision = \"{}\"\nfiles =", "b".repeat(40)),
        ));
        let same_commit = spec(&INTENT.replace(
            "files =",
            &format!("revision = \"{}\"\nfiles =", "a".repeat(40)),
        ));
        let dir = spec(&INTENT.replace("files =", "dir = \"/srv/m\"\nfiles ="));
        for (s, want) in [
            (other_repo, "repo: org/repo -> org/other"),
            (tag, "revision: main -> v2"),
            (commit, "revision: aaaa"),
            (dir, "dir: ~/models/m -> /srv/m"),
        ] {
            let n = need(&s, &lock_with(entry(&both)), Path::new("w.lock")).unwrap();
            let Reason::Changed(what) = &n.reason else {
                panic!("{n}")
            };
            assert!(what[0].starts_with(want), "{what:?}");
        }
        assert_eq!(
            need(&same_commit, &lock_with(entry(&both)), Path::new("w.lock")),
            None
        );
        // An entry that does not say what it was resolved from counts as `main`'s.
        let mut untracked = entry(&both);
        untracked.tracks = None;
        let tag = spec(&INTENT.replace("files =", "revision = \"v2\"\nfiles ="));
        let n = need(&tag, &lock_with(untracked), Path::new("w.lock")).unwrap();
        assert_eq!(
            n.reason,
            Reason::Changed(vec!["revision: main (presumed) -> v2".into()])
        );
    }

    #[test]
    fn writing_adds_replaces_keeps_the_header_and_writes_nothing_when_nothing_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("weights.lock");
        let a = entry(&[("m.gguf", Role::Model)]);
        assert_eq!(
            write_entries(&path, std::slice::from_ref(&a)).unwrap(),
            [Change::Added]
        );
        let first = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("# ours\n{first}")).unwrap();
        // A write replaces the file (a new inode): the same inode means nothing was written.
        let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        let before = inode();
        assert_eq!(
            write_entries(&path, std::slice::from_ref(&a)).unwrap(),
            [Change::Unchanged]
        );
        assert_eq!(inode(), before, "an unchanged lock is not rewritten");
        let mut b = a.clone();
        b.revision = "c".repeat(40);
        let changes = write_entries(&path, std::slice::from_ref(&b)).unwrap();
        assert!(
            matches!(&changes[0], Change::Updated { previous } if **previous == a),
            "{changes:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# ours\n"), "{text}");
        assert_eq!(WeightsLock::parse(&text, &path).unwrap().models, [b]);
    }

    #[test]
    fn commands_pinning_into_one_lock_at_once_lose_no_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("weights.lock");
        std::fs::write(&path, "# shared\nversion = 1\n").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut e = entry(&[("m.gguf", Role::Model)]);
                    e.name = format!("m{i}");
                    write_entries(&path, &[e]).unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), [Change::Added]);
        }
        let lock = WeightsLock::load(&path).unwrap();
        assert_eq!(lock.models.len(), 8, "every entry is there: {lock:?}");
    }

    #[test]
    fn a_missing_lock_is_empty_only_for_a_spec_with_intent() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("weights.lock");
        assert!(
            load_lock(&spec(INTENT), &missing)
                .unwrap()
                .models
                .is_empty()
        );
        let named = spec(&INTENT.replace(
            "[model]\nname = \"m\"\nrepo = \"org/repo\"\nfiles = [\"m.gguf\", \"mmproj-F16.gguf\"]\n",
            "model = \"m\"\n",
        ));
        assert!(matches!(
            load_lock(&named, &missing),
            Err(DeployError::Weights(WeightsError::LockRead { .. }))
        ));
    }
}
