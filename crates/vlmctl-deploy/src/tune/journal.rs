//! The tune journal, `<state>/tunes/<deployment>.json`: which container to put back (and how
//! to tell it is ready) when a tune ends, written before the tune moves anything. It outlives a
//! `kill -9`; `vlmctl restore` ([`crate::undo::restore_all`]) reads it and finishes the job.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DeployError;

/// Format version written.
pub const VERSION: u32 = 1;

/// One tune in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuneJournal {
    /// Format version.
    pub version: u32,
    /// The deployment.
    pub deployment: String,
    /// Its container before the tune; `None`: there was none (nothing to put back, only the
    /// variants to remove).
    pub original: Option<Original>,
    /// `http://host:port` of the deployment, for the readiness wait after putting it back.
    pub base_url: String,
    /// Seconds that wait may take (the spec's `health.timeout_s`).
    pub health_timeout_s: u64,
    /// When the tune began.
    pub created_unix: u64,
}

/// The deployment's container as the tune found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// Its id: the same container is put back.
    pub id: String,
    /// Whether it ran (then it runs again).
    pub running: bool,
    /// When it was moved aside (its stop may still be in flight after a crash).
    pub since_unix: u64,
}

/// `<state>/tunes/<deployment>.json`.
#[must_use]
pub fn path(state: &Path, deployment: &str) -> PathBuf {
    state.join("tunes").join(format!("{deployment}.json"))
}

/// Every tune journal under `state`.
#[must_use]
pub fn all(state: &Path) -> Vec<PathBuf> {
    vlmctl_lifecycle::journal::json_files(&state.join("tunes"))
}

/// Writes it atomically (fsync'd).
pub fn write(path: &Path, j: &TuneJournal) -> Result<(), DeployError> {
    let bytes = serde_json::to_vec_pretty(j).unwrap_or_default();
    crate::write_atomically(path, &bytes).map_err(|source| DeployError::TuneJournal {
        path: path.to_owned(),
        source,
    })
}

/// Reads it; `None` when there is none. One that is there and cannot be read is a read
/// error ([`DeployError::TuneJournalRead`]), `damaged` when its bytes are not a journal.
pub fn read(path: &Path) -> Result<Option<TuneJournal>, DeployError> {
    let bad = |damaged, source| DeployError::TuneJournalRead {
        path: path.to_owned(),
        deployment: vlmctl_lifecycle::journal::deployment_of(path),
        damaged,
        source,
    };
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            bad(
                true,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad(false, e)),
    }
}

/// Removes it (done); one already gone is fine.
pub fn remove(path: &Path) -> Result<(), DeployError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DeployError::TuneJournal {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_removes_idempotently() {
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), "d");
        assert_eq!(read(&p).unwrap(), None);
        let j = TuneJournal {
            version: VERSION,
            deployment: "d".into(),
            original: Some(Original {
                id: "abc".into(),
                running: true,
                since_unix: 5,
            }),
            base_url: "http://127.0.0.1:9".into(),
            health_timeout_s: 60,
            created_unix: 4,
        };
        write(&p, &j).unwrap();
        assert_eq!(read(&p).unwrap(), Some(j));
        assert_eq!(all(tmp.path()), vec![p.clone()]);
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert!(all(tmp.path()).is_empty());
    }

    #[test]
    fn a_damaged_journal_is_a_read_error_that_says_so_not_a_write_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), "d");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"{\"version\": 1, \"deploym").unwrap();
        let e = read(&p).unwrap_err();
        assert!(
            matches!(&e, DeployError::TuneJournalRead { damaged: true, deployment, .. } if deployment == "d"),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("cannot read the tune journal ") && text.ends_with(": it is damaged"),
            "{text}"
        );
        let hint = e.hint().unwrap();
        assert!(
            hint.contains("d-vlmctl-tune") && hint.contains("vlmctl restore"),
            "{hint}"
        );
        assert!(!hint.contains("writable"), "{hint}");
        // Writing is still the write error: its parent is a file here.
        std::fs::write(tmp.path().join("file-not-dir"), b"").unwrap();
        let j = TuneJournal {
            version: VERSION,
            deployment: "d".into(),
            original: None,
            base_url: String::new(),
            health_timeout_s: 1,
            created_unix: 0,
        };
        let w = write(&tmp.path().join("file-not-dir").join("x.json"), &j).unwrap_err();
        assert!(
            w.to_string().starts_with("cannot write the tune journal"),
            "{w}"
        );
    }
}
