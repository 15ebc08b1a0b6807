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

mod error;
pub mod migrations;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vlmctl_bench::run::Results;

pub use error::StoreError;
pub use migrations::SCHEMA_VERSION;

/// The database's file name under the state dir.
pub const FILE_NAME: &str = "history.sqlite";

/// How long a writer waits for another process's write transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// `<state>/history.sqlite`.
#[must_use]
pub fn default_path(state: &Path) -> PathBuf {
    state.join(FILE_NAME)
}

/// Who recorded a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `vlmctl bench`.
    Cli,
    /// A run started from `vlmctl serve`.
    Serve,
    /// `vlmctl runs import`.
    Import,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Serve => "serve",
            Self::Import => "import",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "serve" => Self::Serve,
            "import" => Self::Import,
            _ => Self::Cli,
        }
    }
}

/// A run's or job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Queued in `vlmctl serve`, not started.
    Queued,
    /// Going on (its owner process is alive).
    Running,
    /// Finished; a run has its results.
    Done,
    /// Finished with an error (`error` says which).
    Failed,
    /// Its owner went away before it finished (kill -9, crash, restart, shutdown).
    Interrupted,
}

impl State {
    /// The word stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => Self::Interrupted,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Which deployment a plan's target measured, as far as the recorder could tell (the managed
/// container listening on the target's port, and its labels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetLink {
    /// The plan's target name.
    pub target: String,
    /// Its URL, as its host sees it.
    pub url: String,
    /// The host its server runs on (a plan's targets may be on several); `None` in runs
    /// recorded before hosts were recorded per target: the run's host.
    #[serde(default)]
    pub host: Option<String>,
    /// The container's name, when one managed by vlmctl serves that URL on that host.
    pub deployment: Option<String>,
    /// Its `org.vlmctl.spec-sha256` label.
    pub spec_sha256: Option<String>,
    /// Its `org.vlmctl.lock-sha256` label (the lock entry's hash).
    pub lock_sha256: Option<String>,
    /// The lock entry's name, from the deployment's provision record.
    pub model: Option<String>,
}

/// What is known of a run when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// Who runs it.
    pub source: Source,
    /// The host it measures (`local` or a host name).
    pub host: String,
    /// The plan file, as given.
    pub plan: String,
    /// The plan as JSON (the results carry it again once done).
    pub plan_json: serde_json::Value,
    /// Per target, which deployment it is.
    pub targets: Vec<TargetLink>,
    /// `Queued` (serve's queue) or `Running`.
    pub state: State,
}

/// One config of one target of a finished run: the figures the list, filters and trends use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Target name.
    pub target: String,
    /// Config letter.
    pub config: String,
    /// What the config sends.
    pub description: String,
    /// Successful samples.
    pub ok: u64,
    /// Failed samples.
    pub errors: u64,
    /// Wall time p50, ms.
    pub p50_ms: Option<f64>,
    /// p95, ms.
    pub p95_ms: Option<f64>,
    /// p99, ms.
    pub p99_ms: Option<f64>,
    /// TTFT p50, ms.
    pub ttft_p50_ms: Option<f64>,
    /// Server tokens/s.
    pub server_tokens_per_s: Option<f64>,
    /// Schema pass rate, 0..1.
    pub schema_pass: Option<f64>,
}

/// A run as the list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// Id.
    pub id: i64,
    /// Seconds since the epoch when it started (an import: when the bench started).
    pub started_unix: i64,
    /// When it ended.
    pub finished_unix: Option<i64>,
    /// State.
    pub state: State,
    /// Who recorded it.
    pub source: Source,
    /// Host.
    pub host: String,
    /// Plan file.
    pub plan: String,
    /// Why it failed or was interrupted.
    pub error: Option<String>,
    /// Per target.
    pub targets: Vec<TargetLink>,
    /// Per config (finished runs).
    pub points: Vec<Point>,
}

impl RunRow {
    /// The deployments its targets measured (each once), `-` when none is known.
    #[must_use]
    pub fn deployments(&self) -> String {
        let mut names: Vec<&str> = self
            .targets
            .iter()
            .filter_map(|t| t.deployment.as_deref())
            .collect();
        names.dedup();
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// A run with everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The row.
    #[serde(flatten)]
    pub row: RunRow,
    /// The plan, as JSON.
    pub plan_json: serde_json::Value,
    /// The results document (finished runs).
    pub results: Option<Results>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    /// Only runs that measured this deployment.
    pub deployment: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Only runs with this config (letter or description).
    pub config: Option<String>,
    /// At most this many, newest first (default 200).
    pub limit: Option<u32>,
}

/// A job kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// `vlmctl provision`.
    Provision,
    /// `vlmctl relaunch`.
    Relaunch,
    /// `vlmctl teardown`.
    Teardown,
    /// `vlmctl restore`.
    Restore,
}

impl JobKind {
    /// The word stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Relaunch => "relaunch",
            Self::Teardown => "teardown",
            Self::Restore => "restore",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "relaunch" => Self::Relaunch,
            "teardown" => Self::Teardown,
            "restore" => Self::Restore,
            _ => Self::Provision,
        }
    }
}

/// A job as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: JobKind,
    /// Host.
    pub host: String,
    /// The deployment (container), when the job has one (`restore` may not).
    pub deployment: Option<String>,
    /// The spec's hash.
    pub spec_sha256: Option<String>,
    /// The lock entry's hash.
    pub lock_sha256: Option<String>,
    /// Started.
    pub started_unix: i64,
    /// Ended.
    pub finished_unix: Option<i64>,
    /// `running`, `done`, `failed`, `interrupted`.
    pub state: State,
    /// What it did (`done`) or why it failed.
    pub detail: Option<String>,
}

/// What a job is when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Kind.
    pub kind: JobKind,
    /// Host.
    pub host: String,
    /// Deployment.
    pub deployment: Option<String>,
    /// Spec hash.
    pub spec_sha256: Option<String>,
    /// Lock entry hash.
    pub lock_sha256: Option<String>,
}

/// One point of a trend: one config of one finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    /// The run.
    pub run_id: i64,
    /// When it started.
    pub unix: i64,
    /// Host.
    pub host: String,
    /// The deployment its target measured, when known.
    pub deployment: Option<String>,
    /// The figures.
    #[serde(flatten)]
    pub point: Point,
}

/// What [`Store::import`] did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Imported {
    /// Stored as this run.
    New(i64),
    /// The same document (by sha256) is already there as this run.
    Already(i64),
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

/// This process, as the owner of the rows it writes: its pid and its start time in clock ticks
/// since boot (Linux `/proc/self/stat` field 22), so that a reused pid is not taken for it.
#[must_use]
pub fn this_process() -> (i64, Option<i64>) {
    let pid = std::process::id();
    (i64::from(pid), process_start(pid))
}

/// Where this process's pids mean something: the boot (`/proc/sys/kernel/random/boot_id`) and
/// the pid namespace (`/proc/self/ns/pid`). Rows are judged orphaned only by a process of the
/// same machine, boot and namespace: a `vlmctl serve` in a container sharing the state dir with
/// the host, another machine sharing the file, or a host without `/proc` cannot tell whether a
/// pid of theirs is alive, and leaves their rows alone. `None` without `/proc`.
#[must_use]
pub fn this_machine() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), ns.display()))
}

/// A live process's start time (field 22 of `/proc/PID/stat`); `None` when it does not exist
/// or has ended: a killed process stays a zombie (state `Z`) until its parent reaps it, and
/// must not pass for its live self in that window.
#[must_use]
pub fn process_start(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// `path` as the path part of a SQLite `file:` URI (RFC 3986: `%`, `?` and `#` escaped, the
/// rest as is).
fn uri_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

fn alive(pid: i64, start: Option<i64>) -> bool {
    let Ok(pid) = u32::try_from(pid) else {
        return false;
    };
    match (process_start(pid), start) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl Store {
    /// Opens (creating it and its folder when missing) and migrates the database, then marks
    /// the rows of owners that died `interrupted`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // A database being created by another process at the same moment can answer "locked"
        // without waiting (SQLite does not call the busy handler while a connection switches
        // the file to WAL, to avoid a deadlock): such an open is tried again, within the
        // same bound as any other wait for the lock.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match Self::open_once(path) {
                Err(e) if e.is_busy() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                done => return done,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: path.to_owned(),
                source,
            })?;
        }
        // SQLite would say "unable to open database file" (or fail at the first write):
        // said plainly, with what to do, instead.
        if path.exists() {
            Self::check_untouched(path)?;
            if !Self::writable(path) {
                return Err(StoreError::ReadOnly {
                    path: path.to_owned(),
                });
            }
        }
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Checked before anything writes: a newer history, or another program's database, is
        // left byte for byte as it was.
        migrations::check(&conn, path)?;
        // WAL: readers (the service's pages) never wait for the writer (a run being recorded),
        // and a write cut off by kill -9 is rolled back from the log at the next open.
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "normal")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "on")
            .map_err(open_err)?;
        migrations::apply(&mut conn, path)?;
        let mut store = Self {
            conn,
            path: path.to_owned(),
        };
        store.mark_orphans()?;
        Ok(store)
    }

    /// Whether `path` holds no history: no file, or an empty one (0 bytes, and no
    /// write-ahead log beside it with anything in it). The read commands treat it as "no runs
    /// yet" and leave it as it is, rather than make a history of it.
    #[must_use]
    pub fn is_absent_or_empty(path: &Path) -> bool {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        matches!(len(path), None | Some(0)) && matches!(len(Path::new(&wal)), None | Some(0))
    }

    /// Opens an existing history for reading (`vlmctl runs list`, `runs show`). It is checked
    /// first, read-only: a newer one or another program's database is refused and left as it
    /// is. A history of ours that can be written is opened as [`Store::open`] does (brought
    /// up to date, runs of dead processes marked). One that cannot (a read-only file, folder
    /// or mount: a backup, a copy) is opened read-only, and with `immutable=1` where SQLite
    /// cannot create its shared-memory file beside it; nothing is marked then. Reading it
    /// needs the current schema.
    pub fn open_read(path: &Path) -> Result<Self, StoreError> {
        let (conn, found) = Self::read_only(path)?;
        if Self::writable(path) {
            drop(conn);
            return Self::open(path);
        }
        if found != migrations::SCHEMA_VERSION {
            return Err(StoreError::ReadOnlyOld {
                path: path.to_owned(),
                found,
                want: migrations::SCHEMA_VERSION,
            });
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Can this process write the file and create files in its folder (SQLite's journal, WAL
    /// and shared memory)? `access(2)`, which also answers no on a read-only mount.
    fn writable(path: &Path) -> bool {
        use rustix::fs::{Access, access};
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        access(path, Access::WRITE_OK).is_ok()
            && access(dir, Access::WRITE_OK | Access::EXEC_OK).is_ok()
    }

    /// A newer history or another program's database refused from the file alone
    /// (`immutable=1`: SQLite creates no `-shm` or `-wal` beside it, even for a WAL database),
    /// so that nothing is created beside it. Only those two refusals count here: anything else
    /// this look meets (a file that is no database, a page read while another process
    /// checkpoints) is left to the check on the real connection, as is a version still in
    /// another process's uncheckpointed log.
    fn check_untouched(path: &Path) -> Result<(), StoreError> {
        use rusqlite::OpenFlags;
        let uri = format!("file:{}?immutable=1", uri_path(path));
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let Ok(c) = Connection::open_with_flags(uri, flags) else {
            return Ok(());
        };
        match migrations::check(&c, path) {
            Err(e @ (StoreError::TooNew { .. } | StoreError::NotOurs { .. })) => Err(e),
            _ => Ok(()),
        }
    }

    /// A connection that cannot write, and the checked schema version.
    fn read_only(path: &Path) -> Result<(Connection, usize), StoreError> {
        use rusqlite::OpenFlags;
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Self::check_untouched(path)?;
        let uri = format!("file:{}?immutable=1", uri_path(path));
        let plain = Connection::open_with_flags(path, flags).and_then(|c| {
            c.busy_timeout(BUSY_TIMEOUT)?;
            // Reading something makes SQLite find (or fail to create) the WAL index.
            c.pragma_query_value(None, "schema_version", |r| r.get::<_, i64>(0))?;
            Ok(c)
        });
        // A WAL database in a folder this process cannot write: SQLite cannot create the
        // shared-memory file (CANTOPEN, or READONLY_CANTINIT), so it is read as an immutable
        // file (nobody can be writing it through this folder either). Any other error (busy,
        // not a database) is said as it is.
        let cannot_share = |e: &rusqlite::Error| {
            matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
            )
        };
        let conn = if let Err(e) = &plain
            && cannot_share(e)
        {
            let c = Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
                .map_err(open_err)?;
            c.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
            c
        } else {
            plain.map_err(open_err)?
        };
        let found = migrations::check(&conn, path)?;
        Ok((conn, found))
    }

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

    /// Marks `running` and `queued` runs and jobs whose owner process is gone `interrupted`.
    /// Returns how many.
    pub fn mark_orphans(&mut self) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let now = now_unix();
        let tx = self.write_tx("marking interrupted runs")?;
        let mut n = 0;
        for table in ["runs", "jobs"] {
            let Some(machine) = this_machine() else {
                break;
            };
            let owners: Vec<(i64, i64, Option<i64>)> = {
                let mut q = tx
                    .prepare(&format!(
                        "SELECT id, owner_pid, owner_start FROM {table} \
                         WHERE state IN ('running', 'queued') AND owner_machine = ?1"
                    ))
                    .map_err(|source| sql_err(&path, "marking interrupted runs", source))?;
                q.query_map([&machine], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .and_then(Iterator::collect)
                    .map_err(|source| sql_err(&path, "marking interrupted runs", source))?
            };
            for (id, pid, start) in owners {
                if !alive(pid, start) {
                    n += tx
                        .execute(
                            &format!(
                                "UPDATE {table} SET state = 'interrupted', finished_unix = ?2, \
                                 error_or_detail = COALESCE(error_or_detail, ?3) WHERE id = ?1"
                            )
                            .replace(
                                "error_or_detail",
                                if table == "runs" { "error" } else { "detail" },
                            ),
                            params![
                                id,
                                now,
                                format!(
                                    "its process (pid {pid}) ended before it finished \
                                     (killed, crashed or restarted)"
                                )
                            ],
                        )
                        .map_err(|source| sql_err(&path, "marking interrupted runs", source))?;
                }
            }
        }
        tx.commit()
            .map_err(|source| sql_err(&path, "marking interrupted runs", source))?;
        Ok(n)
    }

    /// Marks this process's own unfinished runs and jobs `interrupted` with `why` (a clean
    /// shutdown in the middle of a run).
    pub fn interrupt_own(&mut self, why: &str) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let (pid, start) = this_process();
        let now = now_unix();
        let tx = self.write_tx("marking this process's runs interrupted")?;
        let mut n = 0;
        for (table, col) in [("runs", "error"), ("jobs", "detail")] {
            n += tx
                .execute(
                    &format!(
                        "UPDATE {table} SET state = 'interrupted', finished_unix = ?3, {col} = ?4 \
                         WHERE state IN ('running', 'queued') AND owner_pid = ?1 \
                         AND owner_start IS ?2 AND owner_machine IS ?5"
                    ),
                    params![pid, start, now, why, this_machine()],
                )
                .map_err(|source| sql_err(&path, "marking runs interrupted", source))?;
        }
        tx.commit()
            .map_err(|source| sql_err(&path, "marking runs interrupted", source))?;
        Ok(n)
    }

    /// Records a run that is starting (or queued), owned by this process. Returns its id.
    pub fn begin_run(&mut self, run: &NewRun) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let (pid, start) = this_process();
        let tx = self.write_tx("recording a run")?;
        tx.execute(
            "INSERT INTO runs (started_unix, state, source, host, plan, plan_json, owner_pid, \
             owner_start, owner_machine) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                now_unix(),
                run.state.as_str(),
                run.source.as_str(),
                run.host,
                run.plan,
                run.plan_json.to_string(),
                pid,
                start,
                this_machine()
            ],
        )
        .map_err(|source| sql_err(&path, "recording a run", source))?;
        let id = tx.last_insert_rowid();
        insert_targets(&tx, id, &run.targets)
            .map_err(|source| sql_err(&path, "recording a run", source))?;
        tx.commit()
            .map_err(|source| sql_err(&path, "recording a run", source))?;
        Ok(id)
    }

    /// A queued run starts: `running`, started now.
    pub fn start_run(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET state = 'running', started_unix = ?2 WHERE id = ?1",
                params![id, now_unix()],
            )
            .map_err(self.sql("starting a run"))?;
        Ok(())
    }

    /// Writes a run's results, its points and `done`, in one transaction.
    pub fn finish_run(&mut self, id: i64, results: &Results) -> Result<(), StoreError> {
        let doc = serde_json::to_string(results).unwrap_or_default();
        let sha = hex::encode(Sha256::digest(doc.as_bytes()));
        let path = self.path.clone();
        let err = |source| sql_err(&path, "recording a run's results", source);
        let tx = self.write_tx("recording a run's results")?;
        let row: Option<(String, i64, Option<i64>, Option<String>)> = tx
            .query_row(
                "SELECT state, owner_pid, owner_start, owner_machine FROM runs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(err)?;
        // Marked interrupted by a process that could not see this one alive (another pid
        // namespace sharing the file, say): its owner still finishes it, results and all.
        let mine = row.as_ref().is_some_and(|(_, pid, start, machine)| {
            let (p, s) = this_process();
            (*pid, *start, machine.clone()) == (p, s, this_machine())
        });
        match row.as_ref().map(|r| State::parse(&r.0)) {
            Some(State::Interrupted) if mine => {}
            None => {
                return Err(StoreError::NotFound {
                    path,
                    what: "run",
                    id,
                });
            }
            Some(State::Running | State::Queued) => {}
            Some(s) => {
                return Err(StoreError::NotRunning {
                    id,
                    state: s.as_str().to_owned(),
                });
            }
        }
        tx.execute(
            "UPDATE runs SET state = 'done', finished_unix = ?2, results = ?3, \
             results_sha256 = ?4, plan_json = ?5, error = NULL WHERE id = ?1",
            params![
                id,
                now_unix(),
                doc,
                sha,
                serde_json::to_string(&results.plan).unwrap_or_default()
            ],
        )
        .map_err(err)?;
        insert_points(&tx, id, results).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// A run that ended without results: `failed` with why.
    pub fn fail_run(&mut self, id: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET state = 'failed', finished_unix = ?2, error = ?3 \
                 WHERE id = ?1 AND state IN ('running', 'queued')",
                params![id, now_unix(), error],
            )
            .map_err(self.sql("recording a failed run"))?;
        Ok(())
    }

    /// Loads a `results.json` document once: a document already there (same sha256 of its
    /// canonical JSON) is not stored twice.
    pub fn import(
        &mut self,
        results: &Results,
        host: &str,
        plan: &str,
        targets: &[TargetLink],
    ) -> Result<Imported, StoreError> {
        let doc = serde_json::to_string(results).unwrap_or_default();
        let sha = hex::encode(Sha256::digest(doc.as_bytes()));
        let path = self.path.clone();
        let err = |source| sql_err(&path, "importing a run", source);
        let tx = self.write_tx("importing a run")?;
        if let Some(id) = tx
            .query_row(
                "SELECT id FROM runs WHERE results_sha256 = ?1",
                [&sha],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?
        {
            return Ok(Imported::Already(id));
        }
        let started = i64::try_from(results.started_unix).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO runs (started_unix, finished_unix, state, source, host, plan, plan_json, \
             results, results_sha256, owner_pid) \
             VALUES (?1, ?1, 'done', 'import', ?2, ?3, ?4, ?5, ?6, 0)",
            params![
                started,
                host,
                plan,
                serde_json::to_string(&results.plan).unwrap_or_default(),
                doc,
                sha
            ],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        insert_targets(&tx, id, targets).map_err(err)?;
        insert_points(&tx, id, results).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Imported::New(id))
    }

    /// Runs, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let err = self.sql("listing runs");
        let mut q = self
            .conn
            .prepare(
                "SELECT id, started_unix, finished_unix, state, source, host, plan, error FROM runs r \
                 WHERE (?1 IS NULL OR EXISTS (SELECT 1 FROM run_targets t \
                        WHERE t.run_id = r.id AND t.deployment = ?1 \
                          AND (?2 IS NULL OR COALESCE(t.host, r.host) = ?2))) \
                   AND (?2 IS NULL OR r.host = ?2 OR EXISTS (SELECT 1 FROM run_targets t \
                        WHERE t.run_id = r.id AND t.host = ?2)) \
                   AND (?3 IS NULL OR EXISTS (SELECT 1 FROM points p \
                        WHERE p.run_id = r.id AND (p.config = ?3 OR p.description = ?3))) \
                 ORDER BY started_unix DESC, id DESC LIMIT ?4",
            )
            .map_err(&err)?;
        let rows: Vec<RunRow> = q
            .query_map(
                params![
                    filter.deployment,
                    filter.host,
                    filter.config,
                    filter.limit.unwrap_or(200)
                ],
                run_row,
            )
            .and_then(Iterator::collect)
            .map_err(&err)?;
        rows.into_iter()
            .map(|mut r| {
                r.targets = self.targets_of(r.id)?;
                r.points = self.points_of(r.id)?;
                Ok(r)
            })
            .collect()
    }

    fn targets_of(&self, id: i64) -> Result<Vec<TargetLink>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT target, url, deployment, spec_sha256, lock_sha256, model, host \
                 FROM run_targets WHERE run_id = ?1 ORDER BY rowid",
            )
            .map_err(self.sql("reading a run's targets"))?;
        q.query_map([id], |r| {
            Ok(TargetLink {
                target: r.get(0)?,
                url: r.get(1)?,
                deployment: r.get(2)?,
                spec_sha256: r.get(3)?,
                lock_sha256: r.get(4)?,
                model: r.get(5)?,
                host: r.get(6)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(self.sql("reading a run's targets"))
    }

    fn points_of(&self, id: i64) -> Result<Vec<Point>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached(&format!(
                "SELECT {POINT_COLUMNS} FROM points WHERE run_id = ?1 ORDER BY rowid"
            ))
            .map_err(self.sql("reading a run's figures"))?;
        q.query_map([id], |r| point(r, 0))
            .and_then(Iterator::collect)
            .map_err(self.sql("reading a run's figures"))
    }

    /// One run, whole.
    pub fn run(&self, id: i64) -> Result<RunDetail, StoreError> {
        let err = self.sql("reading a run");
        let found = self
            .conn
            .query_row(
                "SELECT id, started_unix, finished_unix, state, source, host, plan, error, \
                 plan_json, results FROM runs WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        run_row(r)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, Option<String>>(9)?,
                    ))
                },
            )
            .optional()
            .map_err(err)?;
        let Some((mut row, plan_json, results)) = found else {
            return Err(StoreError::NotFound {
                path: self.path.clone(),
                what: "run",
                id,
            });
        };
        row.targets = self.targets_of(id)?;
        row.points = self.points_of(id)?;
        let corrupt = |source| StoreError::Corrupt {
            path: self.path.clone(),
            id,
            source,
        };
        Ok(RunDetail {
            row,
            plan_json: serde_json::from_str(&plan_json).map_err(corrupt)?,
            results: results
                .map(|d| serde_json::from_str(&d))
                .transpose()
                .map_err(corrupt)?,
        })
    }

    /// Every finished run's points, oldest first (for trends), filtered as [`Store::runs`].
    pub fn trend(&self, filter: &RunFilter) -> Result<Vec<TrendPoint>, StoreError> {
        // A point's host is its target's (a plan may measure several hosts), else the run's.
        const HOST: &str = "COALESCE((SELECT t.host FROM run_targets t \
             WHERE t.run_id = r.id AND t.target = p.target), r.host)";
        let err = self.sql("reading the trend");
        let mut q = self
            .conn
            .prepare(&format!(
                "SELECT r.id, r.started_unix, {HOST}, \
                   (SELECT t.deployment FROM run_targets t \
                    WHERE t.run_id = r.id AND t.target = p.target), {} \
                 FROM points p JOIN runs r ON r.id = p.run_id \
                 WHERE r.state = 'done' \
                   AND (?1 IS NULL OR EXISTS (SELECT 1 FROM run_targets t \
                        WHERE t.run_id = r.id AND t.target = p.target AND t.deployment = ?1)) \
                   AND (?2 IS NULL OR {HOST} = ?2) \
                   AND (?3 IS NULL OR p.config = ?3 OR p.description = ?3) \
                 ORDER BY r.started_unix, r.id, p.rowid",
                POINT_COLUMNS
                    .split(", ")
                    .map(|c| format!("p.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .map_err(&err)?;
        q.query_map(
            params![filter.deployment, filter.host, filter.config],
            |r| {
                Ok(TrendPoint {
                    run_id: r.get(0)?,
                    unix: r.get(1)?,
                    host: r.get(2)?,
                    deployment: r.get(3)?,
                    point: point(r, 4)?,
                })
            },
        )
        .and_then(Iterator::collect)
        .map_err(&err)
    }

    /// Records a job that is starting, owned by this process.
    pub fn begin_job(&mut self, job: &NewJob) -> Result<i64, StoreError> {
        let (pid, start) = this_process();
        self.conn
            .execute(
                "INSERT INTO jobs (kind, host, deployment, spec_sha256, lock_sha256, started_unix, \
                 state, owner_pid, owner_start, owner_machine) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?9)",
                params![
                    job.kind.as_str(),
                    job.host,
                    job.deployment,
                    job.spec_sha256,
                    job.lock_sha256,
                    now_unix(),
                    pid,
                    start,
                    this_machine()
                ],
            )
            .map_err(self.sql("recording a job"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A job ended: `Done` or `Failed`, with what it did or why it failed. The spec and lock
    /// hashes are updated when the job learned them only on the way (a relaunch that pinned).
    pub fn finish_job(
        &mut self,
        id: i64,
        state: State,
        detail: &str,
        hashes: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE jobs SET state = ?2, finished_unix = ?3, detail = ?4, \
                 spec_sha256 = COALESCE(?5, spec_sha256), lock_sha256 = COALESCE(?6, lock_sha256) \
                 WHERE id = ?1",
                params![
                    id,
                    state.as_str(),
                    now_unix(),
                    detail,
                    hashes.map(|h| h.0),
                    hashes.map(|h| h.1)
                ],
            )
            .map_err(self.sql("recording a job's outcome"))?;
        Ok(())
    }

    /// Jobs, oldest first, for one deployment or all.
    pub fn jobs(&self, deployment: Option<&str>) -> Result<Vec<Job>, StoreError> {
        let err = self.sql("listing jobs");
        let mut q = self
            .conn
            .prepare(
                "SELECT id, kind, host, deployment, spec_sha256, lock_sha256, started_unix, \
                 finished_unix, state, detail FROM jobs \
                 WHERE ?1 IS NULL OR deployment = ?1 ORDER BY started_unix, id",
            )
            .map_err(&err)?;
        q.query_map([deployment], |r| {
            Ok(Job {
                id: r.get(0)?,
                kind: JobKind::parse(&r.get::<_, String>(1)?),
                host: r.get(2)?,
                deployment: r.get(3)?,
                spec_sha256: r.get(4)?,
                lock_sha256: r.get(5)?,
                started_unix: r.get(6)?,
                finished_unix: r.get(7)?,
                state: State::parse(&r.get::<_, String>(8)?),
                detail: r.get(9)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(&err)
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

const POINT_COLUMNS: &str = "target, config, description, ok, errors, p50_ms, p95_ms, p99_ms, \
                             ttft_p50_ms, server_tokens_per_s, schema_pass";

fn point(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Point> {
    Ok(Point {
        target: r.get(at)?,
        config: r.get(at + 1)?,
        description: r.get(at + 2)?,
        ok: r.get(at + 3)?,
        errors: r.get(at + 4)?,
        p50_ms: r.get(at + 5)?,
        p95_ms: r.get(at + 6)?,
        p99_ms: r.get(at + 7)?,
        ttft_p50_ms: r.get(at + 8)?,
        server_tokens_per_s: r.get(at + 9)?,
        schema_pass: r.get(at + 10)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        started_unix: r.get(1)?,
        finished_unix: r.get(2)?,
        state: State::parse(&r.get::<_, String>(3)?),
        source: Source::parse(&r.get::<_, String>(4)?),
        host: r.get(5)?,
        plan: r.get(6)?,
        error: r.get(7)?,
        targets: Vec::new(),
        points: Vec::new(),
    })
}

fn sql_err(path: &Path, what: &'static str, source: rusqlite::Error) -> StoreError {
    StoreError::Sql {
        path: path.to_owned(),
        what,
        source,
    }
}

fn insert_targets(tx: &Transaction<'_>, id: i64, targets: &[TargetLink]) -> rusqlite::Result<()> {
    let mut q = tx.prepare_cached(
        "INSERT INTO run_targets (run_id, target, url, deployment, spec_sha256, lock_sha256, model, host) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for t in targets {
        q.execute(params![
            id,
            t.target,
            t.url,
            t.deployment,
            t.spec_sha256,
            t.lock_sha256,
            t.model,
            t.host
        ])?;
    }
    Ok(())
}

/// NaN and infinities are not numbers a chart or a filter can use: stored as NULL.
fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// The per-config figures of a results document, as [`Point`]s.
#[must_use]
pub fn points(results: &Results) -> Vec<Point> {
    results
        .targets
        .iter()
        .flat_map(|t| {
            t.configs.iter().map(|c| {
                let s = &c.summary;
                Point {
                    target: t.name.clone(),
                    config: c.name.clone(),
                    description: c.description.clone(),
                    ok: s.ok as u64,
                    errors: s.errors.values().map(|n| *n as u64).sum(),
                    p50_ms: finite(s.wall_ms.as_ref().map(|w| w.p50)),
                    p95_ms: finite(s.wall_ms.as_ref().map(|w| w.p95)),
                    p99_ms: finite(s.wall_ms.as_ref().map(|w| w.p99)),
                    ttft_p50_ms: finite(s.ttft_ms.as_ref().map(|w| w.p50)),
                    server_tokens_per_s: finite(s.server_tokens_per_s),
                    schema_pass: finite(s.schema_pass_rate),
                }
            })
        })
        .collect()
}

fn insert_points(tx: &Transaction<'_>, id: i64, results: &Results) -> rusqlite::Result<()> {
    let mut q = tx.prepare_cached(&format!(
        "INSERT INTO points (run_id, {POINT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?;
    for p in points(results) {
        q.execute(params![
            id,
            p.target,
            p.config,
            p.description,
            p.ok,
            p.errors,
            p.p50_ms,
            p.p95_ms,
            p.p99_ms,
            p.ttft_p50_ms,
            p.server_tokens_per_s,
            p.schema_pass
        ])?;
    }
    Ok(())
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
