//! The schema, as versioned migrations over `PRAGMA user_version` (`rusqlite_migration`).
//! Each migration runs in one transaction; a database from a newer vlmctl is refused, not
//! migrated down. Never edit a released migration: append one.

use std::path::Path;
use std::sync::LazyLock;

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use crate::StoreError;

/// Version 1: runs (one row per bench run, the results document whole), their targets (which
/// deployment each measured), their per-config points (what lists, filters and trends read),
/// and jobs.
const V1: &str = "
CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    started_unix   INTEGER NOT NULL,
    finished_unix  INTEGER,
    state          TEXT NOT NULL
                   CHECK (state IN ('queued', 'running', 'done', 'failed', 'interrupted')),
    source         TEXT NOT NULL CHECK (source IN ('cli', 'serve', 'import')),
    host           TEXT NOT NULL,
    plan           TEXT NOT NULL,
    plan_json      TEXT NOT NULL,
    results        TEXT,
    results_sha256 TEXT UNIQUE,
    error          TEXT,
    owner_pid      INTEGER NOT NULL,
    owner_start    INTEGER,
    -- a finished run has its results; nothing else does
    CHECK ((state = 'done') = (results IS NOT NULL))
);
CREATE INDEX runs_started ON runs (started_unix);
CREATE TABLE run_targets (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    target      TEXT NOT NULL,
    url         TEXT NOT NULL,
    deployment  TEXT,
    spec_sha256 TEXT,
    lock_sha256 TEXT,
    model       TEXT
);
CREATE INDEX run_targets_run ON run_targets (run_id);
CREATE INDEX run_targets_deployment ON run_targets (deployment);
CREATE TABLE points (
    run_id              INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    target              TEXT NOT NULL,
    config              TEXT NOT NULL,
    description         TEXT NOT NULL,
    ok                  INTEGER NOT NULL,
    errors              INTEGER NOT NULL,
    p50_ms              REAL,
    p95_ms              REAL,
    p99_ms              REAL,
    ttft_p50_ms         REAL,
    server_tokens_per_s REAL,
    schema_pass         REAL
);
CREATE INDEX points_run ON points (run_id);
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('provision', 'relaunch', 'teardown', 'restore')),
    host          TEXT NOT NULL,
    deployment    TEXT,
    spec_sha256   TEXT,
    lock_sha256   TEXT,
    started_unix  INTEGER NOT NULL,
    finished_unix INTEGER,
    state         TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'interrupted')),
    detail        TEXT,
    owner_pid     INTEGER NOT NULL,
    owner_start   INTEGER
);
CREATE INDEX jobs_deployment ON jobs (deployment, started_unix);
";

/// Version 2: the boot and pid namespace of a row's owner ([`crate::this_machine`]), so that
/// only a process that can see that owner judges whether it is gone. Rows from version 1 have
/// none: they are judged by nobody (mark them by hand if their process is gone).
const V2: &str = "
ALTER TABLE runs ADD COLUMN owner_machine TEXT;
ALTER TABLE jobs ADD COLUMN owner_machine TEXT;
";

/// Version 3: the host each target's server runs on (a plan's targets may be on several
/// hosts). Rows from before have none: their target was on the run's host.
const V3: &str = "
ALTER TABLE run_targets ADD COLUMN host TEXT;
";

static MIGRATIONS: LazyLock<Migrations<'static>> =
    LazyLock::new(|| Migrations::new(vec![M::up(V1), M::up(V2), M::up(V3)]));

/// The schema version this vlmctl writes.
pub const SCHEMA_VERSION: usize = 3;

fn user_version(conn: &Connection, path: &Path) -> Result<usize, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })
}

/// Pure read: is the database at `conn` a vlmctl history this vlmctl may use? Returns its
/// schema version (0: a new, empty file). A newer version is refused, and so is a file with
/// version 0 that already has tables (another program's SQLite database): nothing is written
/// to either. Called before anything that writes (the switch to WAL, the migrations).
pub(crate) fn check(conn: &Connection, path: &Path) -> Result<usize, StoreError> {
    // One read transaction, so that the version and the tables are of the same moment (another
    // vlmctl may be creating the schema right now: version 0 and its tables must not be seen
    // together). Ended without writing anything when dropped.
    let tx = conn
        .unchecked_transaction()
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
    let conn: &Connection = &tx;
    let found = user_version(conn, path)?;
    refuse_newer(found, path)?;
    if found == 0 {
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .and_then(|mut st| {
                st.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<_, _>>()
            })
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        if !tables.is_empty() {
            return Err(StoreError::NotOurs {
                path: path.to_owned(),
                tables,
            });
        }
    }
    Ok(found)
}

/// A history written by a newer vlmctl (schema `found` above ours) is refused, untouched.
fn refuse_newer(found: usize, path: &Path) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            want: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Brings `conn` to [`SCHEMA_VERSION`]; refuses a newer one.
pub(crate) fn apply(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found = user_version(conn, path)?;
    refuse_newer(found, path)?;
    match MIGRATIONS.to_latest(conn) {
        Ok(()) => Ok(()),
        // Another process (a bench starting while `vlmctl runs list` or the service opens the
        // file) read the same old version and migrated first: `rusqlite_migration` reads the
        // version before its transaction, so ours then fails on tables that exist now, and
        // rolls back. The schema is there all the same.
        Err(_) if user_version(conn, path)? == SCHEMA_VERSION => Ok(()),
        Err(source) => Err(StoreError::Migrate {
            path: path.to_owned(),
            want: SCHEMA_VERSION,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid_and_match_the_version() {
        assert!(MIGRATIONS.validate().is_ok());
        let mut c = Connection::open_in_memory().expect("in memory");
        MIGRATIONS.to_latest(&mut c).expect("migrate");
        let v: usize = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_version_1_database_moves_to_the_latest_with_its_rows() {
        let mut c = Connection::open_in_memory().expect("in memory");
        Migrations::new(vec![M::up(V1)])
            .to_latest(&mut c)
            .expect("version 1");
        c.execute(
            "INSERT INTO runs (started_unix, state, source, host, plan, plan_json, owner_pid) \
             VALUES (1, 'running', 'cli', 'h', 'p', '{}', 7)",
            [],
        )
        .expect("a v1 row");
        apply(&mut c, Path::new(":memory:")).expect("migrate");
        let (n, machine): (i64, Option<String>) = c
            .query_row("SELECT count(*), max(owner_machine) FROM runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("read");
        assert_eq!((n, machine), (1, None), "kept, with no owner machine");
    }

    #[test]
    fn a_version_2_database_moves_to_the_latest_with_its_targets() {
        let mut c = Connection::open_in_memory().expect("in memory");
        Migrations::new(vec![M::up(V1), M::up(V2)])
            .to_latest(&mut c)
            .expect("version 2");
        c.execute(
            "INSERT INTO runs (started_unix, state, source, host, plan, plan_json, owner_pid) \
             VALUES (1, 'running', 'cli', 'panda', 'p', '{}', 7)",
            [],
        )
        .expect("a v2 run");
        c.execute(
            "INSERT INTO run_targets (run_id, target, url, deployment) \
             VALUES (1, 'cpu', 'http://127.0.0.1:18435', 'vlmctl-cpu-test')",
            [],
        )
        .expect("a v2 target");
        apply(&mut c, Path::new(":memory:")).expect("migrate");
        let row: (String, Option<String>, Option<String>) = c
            .query_row(
                "SELECT target, deployment, host FROM run_targets WHERE run_id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("read");
        assert_eq!(
            row,
            ("cpu".to_owned(), Some("vlmctl-cpu-test".to_owned()), None),
            "kept, with no host of its own (the run's)"
        );
        c.execute(
            "INSERT INTO run_targets (run_id, target, url, deployment, host) \
             VALUES (1, 'beast', 'http://127.0.0.1:11435', 'beast-e4b', 'beast')",
            [],
        )
        .expect("a v3 target");
    }
}
