//! Jobs (provision, relaunch, teardown, restore): [`Store::begin_job`] writes a `running` row
//! owned by this process, [`Store::finish_job`] its outcome, [`Store::jobs`] lists them.

use rusqlite::params;

use crate::owner::{this_machine, this_process};
use crate::{Job, JobKind, NewJob, State, Store, StoreError, now_unix};

impl Store {
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
}
