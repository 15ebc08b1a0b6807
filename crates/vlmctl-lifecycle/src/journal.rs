//! The restore journal: what vlmctl stopped and how to bring it back. Written (atomically,
//! fsync'd) before anything is stopped, cleared only once everything is back, so `vlmctl
//! restore` can finish the job after a crash or Ctrl-C.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::StopContainerOptionsBuilder;
use serde::{Deserialize, Serialize};

use crate::LifecycleError;

/// Journal format version.
pub const JOURNAL_VERSION: u32 = 1;

/// One journal file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// The deployment that stopped these containers.
    pub deployment: String,
    /// Seconds since the epoch when written.
    pub created_unix: u64,
    /// What was stopped.
    pub entries: Vec<JournalEntry>,
}

/// One stopped container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Container id (full).
    pub id: String,
    /// Name, for messages.
    pub name: String,
    /// State before we stopped it (`running`).
    pub prior_state: String,
    /// Its restart policy (unchanged by us; recorded to check and to warn).
    pub restart_policy: String,
}

/// Where journals live: `<state>/journals/<deployment>.json`.
#[must_use]
pub fn path(state_dir: &Path, deployment: &str) -> PathBuf {
    state_dir
        .join("journals")
        .join(format!("{deployment}.json"))
}

/// Every journal under the state dir.
#[must_use]
pub fn all(state_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(state_dir.join("journals"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Writes `journal` to `path`: temp file, fsync, rename, fsync the directory.
pub fn write(path: &Path, journal: &Journal) -> Result<(), LifecycleError> {
    let err = |source| LifecycleError::Journal {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(journal).unwrap_or_default();
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Reads a journal; `None` if there is none.
pub fn read(path: &Path) -> Result<Option<Journal>, LifecycleError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LifecycleError::Journal {
                    path: path.to_owned(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LifecycleError::Journal {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Journals `entries`, then stops each. The journal exists before the first stop.
pub async fn stop_journalled(
    docker: &Docker,
    journal_path: &Path,
    deployment: &str,
    entries: Vec<JournalEntry>,
) -> Result<(), LifecycleError> {
    let mut journal = read(journal_path)?.unwrap_or(Journal {
        version: JOURNAL_VERSION,
        deployment: deployment.to_owned(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        entries: Vec::new(),
    });
    for e in &entries {
        if !journal.entries.iter().any(|j| j.id == e.id) {
            journal.entries.push(e.clone());
        }
    }
    write(journal_path, &journal)?;
    for e in &entries {
        tracing::info!(container = %e.name, "stopping");
        docker
            .stop_container(
                &e.id,
                Some(StopContainerOptionsBuilder::default().t(30).build()),
            )
            .await
            .map_err(|source| LifecycleError::Docker {
                action: format!("stop container {}", e.name),
                source,
            })?;
    }
    Ok(())
}

/// Outcome of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// Started again by this call.
    pub started: Vec<String>,
    /// Already running (restored earlier, or came back by restart policy).
    pub already_running: Vec<String>,
    /// Gone (removed by someone): cannot be restored; reported, not fatal.
    pub missing: Vec<String>,
}

/// Starts whatever the journal says was running; idempotent. The journal is removed only when
/// every entry is running again (or gone).
pub async fn restore(docker: &Docker, journal_path: &Path) -> Result<Restored, LifecycleError> {
    let mut out = Restored {
        started: Vec::new(),
        already_running: Vec::new(),
        missing: Vec::new(),
    };
    let Some(journal) = read(journal_path)? else {
        return Ok(out);
    };
    for e in journal
        .entries
        .iter()
        .filter(|e| e.prior_state == "running")
    {
        let running = match docker.inspect_container(&e.id, None).await {
            Ok(i) => i.state.and_then(|s| s.running).unwrap_or(false),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                out.missing.push(e.name.clone());
                continue;
            }
            Err(source) => {
                return Err(LifecycleError::Docker {
                    action: format!("inspect container {}", e.name),
                    source,
                });
            }
        };
        if running {
            out.already_running.push(e.name.clone());
            continue;
        }
        docker
            .start_container(&e.id, None)
            .await
            .map_err(|source| LifecycleError::Docker {
                action: format!("start container {} again", e.name),
                source,
            })?;
        out.started.push(e.name.clone());
    }
    fs::remove_file(journal_path).map_err(|source| LifecycleError::Journal {
        path: journal_path.to_owned(),
        source,
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trips_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), "panda-llamacpp");
        assert_eq!(read(&p).unwrap(), None);
        let j = Journal {
            version: JOURNAL_VERSION,
            deployment: "panda-llamacpp".into(),
            created_unix: 1,
            entries: vec![JournalEntry {
                id: "abc".into(),
                name: "chatterbox".into(),
                prior_state: "running".into(),
                restart_policy: "always".into(),
            }],
        };
        write(&p, &j).unwrap();
        assert_eq!(read(&p).unwrap(), Some(j));
        assert_eq!(all(tmp.path()), vec![p.clone()]);
        assert!(!p.with_extension("json.tmp").exists());
        std::fs::write(&p, b"{not json").unwrap();
        assert!(read(&p).is_err());
    }
}
