use std::path::PathBuf;

/// Everything that can go wrong with the history database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open the history database {}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// Its folder could not be created.
    #[error("cannot create the folder of the history database {}", path.display())]
    Folder {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The schema could not be brought to this version.
    #[error("cannot bring the history database {} to schema version {want}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The schema version this vlmctl writes.
        want: usize,
        /// Why.
        #[source]
        source: rusqlite_migration::Error,
    },
    /// The database was written by a newer vlmctl.
    #[error(
        "the history database {} has schema version {found}, newer than this vlmctl's {want}",
        path.display()
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: usize,
        /// This vlmctl's.
        want: usize,
    },
    /// A SQLite file that is not a vlmctl history (version 0, with tables of its own).
    #[error(
        "{} is not a vlmctl history: it is another program's SQLite database (tables {})",
        path.display(),
        tables.iter().take(5).map(String::as_str).collect::<Vec<_>>().join(", ")
    )]
    NotOurs {
        /// The database file.
        path: PathBuf,
        /// Its tables.
        tables: Vec<String>,
    },
    /// A history that cannot be written has an older schema, which only a writable open brings
    /// up to date.
    #[error(
        "the history database {} is read-only and has schema version {found}, older than this \
         vlmctl's {want}",
        path.display()
    )]
    ReadOnlyOld {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: usize,
        /// This vlmctl's.
        want: usize,
    },
    /// The database file, or its folder, cannot be written (a read-only file, folder or
    /// mount), where a command must record in it (`vlmctl serve`, `bench`, `runs import`).
    #[error(
        "the history database {} cannot be written (a read-only file, folder or mount)",
        path.display()
    )]
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },
    /// A query or write failed.
    #[error("history database {}: {what}", path.display())]
    Sql {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored results document does not read back.
    #[error("history database {}: run {id}: stored results do not parse", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The run.
        id: i64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A run or job id that is not in the database.
    #[error("no {what} {id} in the history database {}", path.display())]
    NotFound {
        /// The database file.
        path: PathBuf,
        /// `run` or `job`.
        what: &'static str,
        /// The id asked for.
        id: i64,
    },
    /// A run that is already finished cannot be finished again.
    #[error("run {id} is {state}, not running: its outcome is already recorded")]
    NotRunning {
        /// The run.
        id: i64,
        /// Its state.
        state: String,
    },
}

impl StoreError {
    /// What to do next.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Open { .. } | Self::Folder { .. } => {
                "check that the state dir is writable, or point --store (VLMCTL_STORE) elsewhere; \
                 --no-record skips the history"
                    .to_owned()
            }
            Self::Migrate { .. } => {
                "the database is unchanged (migrations run in one transaction); move it aside to \
                 start a new history"
                    .to_owned()
            }
            Self::TooNew { .. } => {
                "use the newer vlmctl, or point --store (VLMCTL_STORE) at another file".to_owned()
            }
            Self::Sql { source, .. } if is_busy(source) => {
                "another vlmctl held the database's write lock for longer than the busy timeout; \
                 try again"
                    .to_owned()
            }
            Self::Sql { .. } | Self::Corrupt { .. } => {
                "check it with `sqlite3 FILE 'PRAGMA integrity_check'`".to_owned()
            }
            Self::NotOurs { .. } => {
                "it was left as it is; point --store (VLMCTL_STORE) at a vlmctl history, or at a \
                 new file to start one"
                    .to_owned()
            }
            Self::ReadOnlyOld { .. } => {
                "open it once where it is writable (any vlmctl command that records brings it \
                 up to date), or read it with the vlmctl that wrote it"
                    .to_owned()
            }
            Self::ReadOnly { path } => format!(
                "point --store (VLMCTL_STORE) at a writable file (a copy of it: `cp {0} ~/history.sqlite`), \
                 or make it writable; `vlmctl runs list --store {0}` reads it as it is",
                path.display()
            ),
            Self::NotFound { .. } => "`vlmctl runs list` shows the runs there are".to_owned(),
            Self::NotRunning { .. } => return None,
        })
    }
}

impl StoreError {
    /// Another connection held a lock this one could not wait for.
    #[must_use]
    pub fn is_busy(&self) -> bool {
        match self {
            Self::Open { source, .. } | Self::Sql { source, .. } => is_busy(source),
            Self::Migrate {
                source: rusqlite_migration::Error::RusqliteError { err, .. },
                ..
            } => is_busy(err),
            _ => false,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
