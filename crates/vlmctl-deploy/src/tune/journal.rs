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

/// Reads it; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<TuneJournal>, DeployError> {
    let bad = |source| DeployError::TuneJournal {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| bad(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad(e)),
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
}
