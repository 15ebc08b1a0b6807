//! Who owns a `running` row: the process that wrote it, as [`vlmctl_base::owner`] identifies
//! processes (pid + start time + boot id + pid namespace, the one rule the push helpers use
//! too). A row whose owner died is marked `interrupted` ([`Store::mark_orphans`]); a clean
//! shutdown marks its own rows ([`Store::interrupt_own`]).

use rusqlite::params;
use vlmctl_base::owner::Owner;

use crate::{Store, StoreError, now_unix, sql_err};

pub use vlmctl_base::owner::{process_start, this_machine};

/// This process, as the owner of the rows it writes: its pid and its start time in clock ticks
/// since boot (Linux `/proc/self/stat` field 22), so that a reused pid is not taken for it.
#[must_use]
pub fn this_process() -> (i64, Option<i64>) {
    let me = Owner::this_process();
    (i64::from(me.pid), me.start)
}

/// Whether the owner of a row of this machine (its `owner_machine` is [`this_machine`]) is
/// alive: [`Owner::is_alive`].
fn alive(pid: i64, start: Option<i64>) -> bool {
    u32::try_from(pid).is_ok_and(|pid| {
        Owner {
            pid,
            start,
            machine: this_machine(),
        }
        .is_alive()
    })
}

impl Store {
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
}
