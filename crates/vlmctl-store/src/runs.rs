//! Bench runs: recorded in two steps ([`Store::begin_run`], then [`Store::finish_run`] with the
//! results and their per-config points in one transaction), imported once by sha256
//! ([`Store::import`]), listed, read whole, and read as trends.

use rusqlite::{OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};
use vlmctl_bench::run::Results;

use crate::owner::{this_machine, this_process};
use crate::{
    Imported, NewRun, Point, RunDetail, RunFilter, RunRow, Source, State, Store, StoreError,
    TargetLink, TrendPoint, now_unix, sql_err,
};

impl Store {
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
