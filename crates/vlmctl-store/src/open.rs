//! Opening the database: created and migrated for writing ([`Store::open`]), or checked and
//! opened read-only where it cannot be written ([`Store::open_read`]); a newer history or
//! another program's database is refused before anything writes.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::{BUSY_TIMEOUT, Store, StoreError, migrations};

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
}
