//! The history of vlmctl: every bench run and every job (provision, relaunch, teardown, restore)
//! in one SQLite database, shared by the CLI and `vlmctl serve`.
//!
//! - [`Store`] opens (or creates) the database: WAL, a busy timeout so that several vlmctl
//!   processes take turns at the one write lock, and the schema brought to [`SCHEMA_VERSION`] by
//!   versioned migrations ([`migrations`]), each in one transaction.
//! - A run is recorded in two steps: [`Store::begin_run`] writes a `running` row that names its
//!   owner process, and [`Store::finish_run`] writes the results, their per-config points and the
//!   `done` state in one transaction, so a run is either running or complete, never half-written.
//!   A row whose owner died (kill -9, a crash, a restart) is marked `interrupted` the next time
//!   any vlmctl opens the database ([`Store::mark_orphans`]).
//! - Jobs go the same way: [`Store::begin_job`], [`Store::finish_job`].
//! - Reads: [`Store::runs`] (filtered by deployment, host, config), [`Store::run`],
//!   [`Store::trend`] (p50/p95/schema pass per config over time), [`Store::jobs`].
//! - [`Store::import`] loads a `results.json` written by `vlmctl bench`, once (by its sha256).
//!
//! Files: the row types in `model.rs`, opening in `open.rs`, runs in `runs.rs`, jobs in
//! `jobs.rs`, owner processes in `owner.rs`, the schema in [`migrations`].

mod error;
mod jobs;
pub mod migrations;
mod model;
mod open;
mod owner;
mod runs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use error::StoreError;
pub use migrations::SCHEMA_VERSION;
pub use model::{
    Imported, Job, JobKind, NewJob, NewRun, Point, RunDetail, RunFilter, RunRow, Source, State,
    TargetLink, TrendPoint,
};
pub use owner::{process_start, this_machine, this_process};
pub use runs::points;

/// The database's file name under the state dir.
pub const FILE_NAME: &str = "history.sqlite";

/// How long a writer waits for another process's write transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// `<state>/history.sqlite`.
#[must_use]
pub fn default_path(state: &Path) -> PathBuf {
    state.join(FILE_NAME)
}

/// The history database, open.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// Seconds since the epoch.
#[must_use]
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `YYYY-MM-DD HH:MM` in UTC: a recorded time as the CLI and the service print it (the bare
/// number for one outside the calendar, years -9999 to 9999).
#[must_use]
pub fn utc_minute(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(
        |_| unix.to_string(),
        |t| t.strftime("%Y-%m-%d %H:%M").to_string(),
    )
}

impl Store {
    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn write_tx(&mut self, what: &'static str) -> Result<Transaction<'_>, StoreError> {
        let path = self.path.clone();
        // IMMEDIATE: take the write lock up front, so a busy database is waited for here
        // (busy_timeout) instead of failing at the first write inside the transaction.
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sql { path, what, source })
    }

    /// `PRAGMA integrity_check`: `ok`, or what SQLite found.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let err = self.sql("checking integrity");
        let mut q = self.conn.prepare("PRAGMA integrity_check").map_err(&err)?;
        let lines: Vec<String> = q
            .query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(&err)?;
        Ok(lines.join("\n"))
    }
}

fn sql_err(path: &Path, what: &'static str, source: rusqlite::Error) -> StoreError {
    StoreError::Sql {
        path: path.to_owned(),
        what,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_minute_is_the_civil_date() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_minute(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(utc_minute(-60), "1969-12-31 23:59");
        assert_eq!(utc_minute(i64::MAX), i64::MAX.to_string());
    }
}
