//! The restore journal: what a deployment's runs stopped and created, and how to undo it.
//! Written (atomically, fsync'd) before each side effect, so `vlmctl restore` can finish the job
//! after a crash, a `kill -9` or a signal:
//!
//! - a stop is recorded as issued *before* it is issued ([`JournalEntry::stop_issued_unix`]):
//!   dockerd finishes a stop whose client died, so a restore that finds such a container still
//!   running waits the stop out (bounded by its stop timeout) before deciding;
//! - a launch is recorded before the container is created ([`LaunchRecord`], found again by
//!   the run's label) and again with the id once it exists, so a half-started server is
//!   removed, not left running beside the containers it displaced;
//! - every entry carries the run that wrote it: a failing run undoes its own work
//!   ([`Scope::Run`]) and never what an earlier, successful run of the deployment stopped.
//!
//! A journal is per deployment (`<state>/journals/<deployment>.json`) and only ever changed by
//! the holder of that deployment's lock ([`crate::lockfile`]).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::StopContainerOptionsBuilder;
use serde::{Deserialize, Serialize};

use crate::LifecycleError;
use crate::spec::{ConflictCheck, DEFAULT_CHECK_TIMEOUT_S, RestoreWhen};

/// Journal format version written. Version 1 journals (no run ids, no stop marks, no launch
/// record) still read: their missing fields take the defaults below.
pub const JOURNAL_VERSION: u32 = 2;

/// Stop timeout when the container sets none of its own (owned by [`crate::containers`]).
pub use crate::containers::DEFAULT_STOP_TIMEOUT_S;

/// Slack on top of a stop timeout before a container still running after a stop was issued
/// counts as running (dockerd's SIGKILL after the timeout and the exit take a moment).
const STOP_GRACE_S: u64 = 10;

/// One journal file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// The deployment that stopped these containers.
    pub deployment: String,
    /// Seconds since the epoch when written.
    pub created_unix: u64,
    /// What was stopped (and not yet restored).
    pub entries: Vec<JournalEntry>,
    /// The deployment's container as the last run that created one left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<LaunchRecord>,
    /// Containers started again whose check did not pass: kept (and shown by `status`) until a
    /// restore finds them alive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<FailedCheck>,
}

/// A restored container whose check failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedCheck {
    /// What to check again.
    #[serde(flatten)]
    pub target: ToCheck,
    /// What the check saw, last.
    pub why: String,
    /// When it failed (seconds since the epoch).
    pub at_unix: u64,
}

/// A container brought back, and what proves it alive: its Docker health check when it has
/// one, and the spec's check when it named one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToCheck {
    /// Container id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The spec's check, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<ConflictCheck>,
    /// Seconds the checks may take.
    #[serde(default = "default_check_timeout")]
    pub check_timeout_s: u64,
}

/// A check's outcome, as a restore reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    /// The container.
    pub name: String,
    /// What was checked (e.g. "running", "Docker health check", "GET URL answers 200").
    pub what: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Milliseconds it took.
    pub took_ms: u64,
}

/// One stopped container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Container id (full).
    pub id: String,
    /// Name, for messages.
    pub name: String,
    /// State before we stopped it.
    pub prior_state: PriorState,
    /// Its restart policy (unchanged by us; recorded to check and to warn).
    pub restart_policy: String,
    /// The run that stopped it (empty in version 1 journals).
    #[serde(default)]
    pub run_id: String,
    /// Seconds dockerd waits after SIGTERM before SIGKILL for this container.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_s: u64,
    /// When the stop was issued (seconds since the epoch); `None`: journalled, not yet issued.
    /// Version 1 journals were written just before the stop: treated as issued.
    #[serde(default)]
    pub stop_issued_unix: Option<u64>,
    /// The spec's check for it after it is started again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<ConflictCheck>,
    /// Seconds its checks may take.
    #[serde(default = "default_check_timeout")]
    pub check_timeout_s: u64,
    /// Whether a teardown starts it again (the spec's `restore`).
    #[serde(default)]
    pub restore: RestoreWhen,
    /// Left stopped by a teardown: a restore starts it only when asked to by name
    /// ([`RestoreOptions::start`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left_stopped: bool,
}

fn default_stop_timeout() -> u64 {
    DEFAULT_STOP_TIMEOUT_S
}

fn default_check_timeout() -> u64 {
    DEFAULT_CHECK_TIMEOUT_S
}

impl JournalEntry {
    /// What to check once it is back.
    #[must_use]
    pub fn to_check(&self) -> ToCheck {
        ToCheck {
            id: self.id.clone(),
            name: self.name.clone(),
            check: self.check.clone(),
            check_timeout_s: self.check_timeout_s,
        }
    }
}

/// What a restore does beyond the journal's entries in its scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Start these even though a teardown left them stopped (`vlmctl restore --start NAME`).
    pub start: Vec<String>,
}

/// What a journalled container was doing before vlmctl stopped it (only running ones are
/// stopped, so only one state so far; a journal naming another is refused as unreadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorState {
    /// Running: started again on restore.
    Running,
}

/// The container a run creates for the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchRecord {
    /// The run (also the container's [`crate::RUN_LABEL`]).
    pub run_id: String,
    /// Container name.
    pub container: String,
    /// Container id, once the create call returned it.
    pub id: Option<String>,
    /// The run finished (the server passed its checks): the container stays.
    pub completed: bool,
    /// The deployment's earlier container, set aside (renamed, stopped) to make room: put back
    /// when the run is undone, removed when it completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
}

/// A container set aside by a run that replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// Its id.
    pub id: String,
    /// Whether it was running.
    pub running: bool,
    /// When it was set aside (its stop may still be in flight after a crash).
    #[serde(default)]
    pub since_unix: u64,
}

/// Which part of a journal a restore undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Everything (`vlmctl restore`, `vlmctl teardown`).
    All,
    /// Only what this run did (a run cleaning up after its own failure).
    Run(&'a str),
}

impl Scope<'_> {
    fn covers(self, run_id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Run(r) => r == run_id,
        }
    }
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
    json_files(&state_dir.join("journals"))
}

/// The `*.json` files in `dir`, sorted (none when it does not exist): journals of any kind.
#[must_use]
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
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

/// The deployment a journal path belongs to (its file stem).
#[must_use]
pub fn deployment_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `journal` to `path`: temp file, fsync, rename, fsync the directory
/// (`vlmctl_files::write_atomic`).
pub fn write(path: &Path, journal: &Journal) -> Result<(), LifecycleError> {
    let text = serde_json::to_vec_pretty(journal).unwrap_or_default();
    vlmctl_files::write_atomic(path, &text).map_err(|source| LifecycleError::Journal {
        path: path.to_owned(),
        source,
    })
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

fn read_or_new(path: &Path, deployment: &str) -> Result<Journal, LifecycleError> {
    let mut j = read(path)?.unwrap_or(Journal {
        version: JOURNAL_VERSION,
        deployment: deployment.to_owned(),
        created_unix: crate::now_unix(),
        entries: Vec::new(),
        launch: None,
        failed_checks: Vec::new(),
    });
    j.version = JOURNAL_VERSION;
    Ok(j)
}

/// Writes the journal back, or removes it when nothing is left to undo.
fn write_or_remove(path: &Path, journal: &Journal) -> Result<(), LifecycleError> {
    let open_launch = journal.launch.as_ref().is_some_and(|l| !l.completed);
    if journal.entries.is_empty() && !open_launch && journal.failed_checks.is_empty() {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(LifecycleError::Journal {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        if let Some(dir) = path.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        return Ok(());
    }
    write(path, journal)
}

/// Journals that `entries` are about to be stopped (none issued yet). A container the journal
/// already lists (an earlier run stopped it, someone started it again since) is taken over by
/// this run: it was running when this run began, so this run is the one to bring it back.
pub fn add_stops(
    journal_path: &Path,
    deployment: &str,
    entries: &[JournalEntry],
) -> Result<(), LifecycleError> {
    let mut journal = read_or_new(journal_path, deployment)?;
    for e in entries {
        let mut e = e.clone();
        e.stop_issued_unix = None;
        match journal.entries.iter_mut().find(|j| j.id == e.id) {
            Some(j) => *j = e,
            None => journal.entries.push(e),
        }
    }
    write(journal_path, &journal)
}

/// Marks the stop of `e` as issued in the journal, then stops it, giving dockerd the
/// container's stop timeout (and the HTTP call that long plus a minute: bollard's default of
/// two minutes would give up on a container that takes longer to stop).
pub async fn stop_one(
    docker: &Docker,
    journal_path: &Path,
    e: &JournalEntry,
) -> Result<(), LifecycleError> {
    let mut journal = read(journal_path)?.unwrap_or(Journal {
        version: JOURNAL_VERSION,
        deployment: deployment_of(journal_path),
        created_unix: crate::now_unix(),
        entries: vec![e.clone()],
        launch: None,
        failed_checks: Vec::new(),
    });
    if let Some(j) = journal.entries.iter_mut().find(|j| j.id == e.id) {
        j.stop_issued_unix = Some(crate::now_unix());
    }
    write(journal_path, &journal)?;
    tracing::info!(container = %e.name, timeout_s = e.stop_timeout_s, "stopping");
    let t = i32::try_from(e.stop_timeout_s).unwrap_or(i32::MAX);
    docker
        .clone()
        .with_timeout(Duration::from_secs(e.stop_timeout_s.saturating_add(60)))
        .stop_container(
            &e.id,
            Some(StopContainerOptionsBuilder::default().t(t).build()),
        )
        .await
        .map_err(|source| LifecycleError::Docker {
            action: format!("stop container {}", e.name),
            source,
        })
}

/// Records, before the create call, that `launch.run_id` is about to create the deployment's
/// container (and, called again with the id, that it did). Creates the journal if needed.
pub fn record_launch(
    journal_path: &Path,
    deployment: &str,
    launch: LaunchRecord,
) -> Result<(), LifecycleError> {
    let mut journal = read_or_new(journal_path, deployment)?;
    journal.launch = Some(launch);
    write(journal_path, &journal)
}

/// For a teardown: the container an unfinished run set aside is removed rather than put back
/// (the deployment ends), and the journal forgets it. Returns whether one was removed.
pub async fn drop_previous(docker: &Docker, journal_path: &Path) -> Result<bool, LifecycleError> {
    let Some(mut journal) = read(journal_path)? else {
        return Ok(false);
    };
    let Some(p) = journal
        .launch
        .as_mut()
        .filter(|l| !l.completed)
        .and_then(|l| l.previous.take())
    else {
        return Ok(false);
    };
    let container = journal
        .launch
        .as_ref()
        .map(|l| crate::containers::aside_name(&l.container))
        .unwrap_or_default();
    let removed = crate::containers::remove(docker, &p.id, &container).await?;
    write(journal_path, &journal)?;
    Ok(removed)
}

/// A run finished well: the deployment's container is the one it checked, and stays. Returns
/// the container it set aside, for the caller to remove. The journal goes when nothing else
/// is open.
pub fn complete_launch(journal_path: &Path) -> Result<Option<Previous>, LifecycleError> {
    let Some(mut journal) = read(journal_path)? else {
        return Ok(None);
    };
    let previous = journal.launch.as_mut().and_then(|l| {
        l.completed = true;
        l.previous.take()
    });
    write_or_remove(journal_path, &journal)?;
    Ok(previous)
}

/// Outcome of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// Started again by this call.
    pub started: Vec<String>,
    /// Already running (restored earlier, or came back by restart policy).
    pub already_running: Vec<String>,
    /// Gone (removed by someone): cannot be restored; reported, not fatal.
    pub missing: Vec<String>,
    /// Half-started deployment containers removed (a run that died before it finished).
    pub removed: Vec<String>,
    /// The deployment's earlier container, put back in place of the removed one.
    pub put_back: Vec<String>,
    /// The journal could not be updated (a full disk, say): the containers were brought back
    /// all the same, and the journal still lists them (a later restore finds them running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_error: Option<String>,
    /// Left stopped, as a teardown chose (still in the journal: `vlmctl restore --start NAME`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_stopped: Vec<String>,
    /// The checks of what came back, once the caller ran them ([`record_checks`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckOutcome>,
    /// What is to be checked: what came back, and what an earlier check found not alive.
    #[serde(skip)]
    pub to_check: Vec<ToCheck>,
}

impl Restored {
    /// The checks that failed.
    pub fn failed_checks(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// Undoes what the journal records, within `scope`: removes a container whose launch did not
/// complete, then starts every stopped container that is not running, waiting out a stop that
/// may still be in flight. Idempotent; the journal is updated after each step, so a failure
/// part-way leaves exactly what is still to do, and removed when nothing is left.
pub async fn restore(
    docker: &Docker,
    journal_path: &Path,
    scope: Scope<'_>,
) -> Result<Restored, LifecycleError> {
    restore_with(docker, journal_path, scope, &RestoreOptions::default()).await
}

/// [`restore`], with entries a teardown left stopped skipped unless `opts` names them, and
/// [`Restored::to_check`] listing what came back and (for [`Scope::All`]) what an earlier
/// check found not alive. Running the checks is the caller's ([`record_checks`] keeps their
/// failures).
pub async fn restore_with(
    docker: &Docker,
    journal_path: &Path,
    scope: Scope<'_>,
    opts: &RestoreOptions,
) -> Result<Restored, LifecycleError> {
    let mut out = Restored::default();
    let Some(mut journal) = read(journal_path)? else {
        return Ok(out);
    };
    // Bringing containers back comes first: a journal that cannot be written (a full disk)
    // must not keep them down. Each step is written down as it is done, best effort.
    let note = |r: Result<(), LifecycleError>, out: &mut Restored| {
        if let Err(e) = r {
            out.journal_error
                .get_or_insert_with(|| vlmctl_base::chain::one_line(&e));
        }
    };
    // The half-started server first, so that what it displaced comes back to a free GPU.
    if let Some(l) = journal
        .launch
        .clone()
        .filter(|l| !l.completed && scope.covers(&l.run_id))
    {
        if remove_launched(docker, &l).await? {
            out.removed.push(l.container.clone());
        }
        if let Some(p) = &l.previous {
            match crate::containers::put_back(docker, &p.id, &l.container, p.running, p.since_unix)
                .await?
            {
                crate::containers::PutBack::Done => out.put_back.push(l.container.clone()),
                crate::containers::PutBack::InPlace => {}
                crate::containers::PutBack::Missing => {
                    out.missing
                        .push(format!("{} (the container it replaced)", l.container));
                }
            }
        }
        journal.launch = None;
        note(write_or_remove(journal_path, &journal), &mut out);
    }
    let todo: Vec<JournalEntry> = journal
        .entries
        .iter()
        .filter(|e| scope.covers(&e.run_id))
        .cloned()
        .collect();
    if scope == Scope::All {
        out.to_check
            .extend(journal.failed_checks.iter().map(|f| f.target.clone()));
    }
    for e in todo {
        if e.left_stopped && !opts.start.contains(&e.name) {
            out.left_stopped.push(e.name.clone());
            continue;
        }
        if e.prior_state == PriorState::Running {
            let back = bring_back(docker, &e, journal.created_unix).await?;
            if matches!(back, Back::Started | Back::AlreadyRunning) {
                out.to_check.retain(|t| t.id != e.id);
                out.to_check.push(e.to_check());
            }
            match back {
                Back::Started => out.started.push(e.name.clone()),
                Back::AlreadyRunning => out.already_running.push(e.name.clone()),
                Back::Missing => out.missing.push(e.name.clone()),
            }
        }
        journal.entries.retain(|j| j.id != e.id);
        note(write_or_remove(journal_path, &journal), &mut out);
    }
    note(write_or_remove(journal_path, &journal), &mut out);
    Ok(out)
}

enum Back {
    Started,
    AlreadyRunning,
    Missing,
}

/// Starts one journalled container unless it runs; a running one whose stop was issued is
/// watched until the stop can no longer be in flight.
async fn bring_back(
    docker: &Docker,
    e: &JournalEntry,
    journal_created_unix: u64,
) -> Result<Back, LifecycleError> {
    // Version 1 journals were written right before the stop: count the stop as issued then.
    let issued = e
        .stop_issued_unix
        .or(Some(journal_created_unix).filter(|_| e.run_id.is_empty()));
    let deadline = issued.map(|t| t + e.stop_timeout_s + STOP_GRACE_S);
    loop {
        let running = match docker.inspect_container(&e.id, None).await {
            Ok(i) => i.state.and_then(|s| s.running).unwrap_or(false),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(Back::Missing),
            Err(source) => {
                return Err(LifecycleError::Docker {
                    action: format!("inspect container {}", e.name),
                    source,
                });
            }
        };
        if !running {
            break;
        }
        // A stop that was issued may still be running its course (dockerd finishes it even
        // when the client that asked died): trusting "running" now would lose the container.
        if deadline.is_some_and(|d| crate::now_unix() <= d) {
            tracing::info!(container = %e.name, "a stop may be in flight; waiting it out");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        return Ok(Back::AlreadyRunning);
    }
    match docker.start_container(&e.id, None).await {
        Ok(())
        // 304: started meanwhile (by its restart policy or a person).
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(Back::Started),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(Back::Missing),
        Err(source) => Err(LifecycleError::Docker {
            action: format!("start container {} again", e.name),
            source,
        }),
    }
}

/// Removes the container of an unfinished launch: by id when the create call returned one,
/// else by the run's label (the create may have gone through without the id being recorded).
async fn remove_launched(docker: &Docker, l: &LaunchRecord) -> Result<bool, LifecycleError> {
    let mut ids: Vec<String> = l.id.iter().cloned().collect();
    let list =
        crate::containers::labelled(docker, &format!("{}={}", crate::RUN_LABEL, l.run_id)).await?;
    ids.extend(list.into_iter().filter_map(|c| c.id));
    ids.sort();
    ids.dedup();
    let mut removed = false;
    for id in ids {
        removed |= crate::containers::remove(docker, &id, &l.container).await?;
    }
    Ok(removed)
}

/// Marks the entries named in `names` as left stopped (a teardown's choice): restores skip
/// them until one is asked to start them by name. Returns the names marked.
pub fn leave_stopped(journal_path: &Path, names: &[String]) -> Result<Vec<String>, LifecycleError> {
    let Some(mut journal) = read(journal_path)? else {
        return Ok(Vec::new());
    };
    let mut marked = Vec::new();
    for e in journal
        .entries
        .iter_mut()
        .filter(|e| names.contains(&e.name))
    {
        e.left_stopped = true;
        marked.push(e.name.clone());
    }
    write(journal_path, &journal)?;
    Ok(marked)
}

/// Keeps the outcome of the checks in the journal: a failure is added (or replaces the one
/// before), a pass forgets an earlier failure. The journal is created for a failure when the
/// restore had removed it, and removed when nothing is left.
pub fn record_checks(
    journal_path: &Path,
    deployment: &str,
    checked: &[(ToCheck, CheckOutcome)],
) -> Result<(), LifecycleError> {
    let mut journal = read_or_new(journal_path, deployment)?;
    for (target, outcome) in checked {
        journal.failed_checks.retain(|f| f.target.id != target.id);
        if !outcome.passed {
            journal.failed_checks.push(FailedCheck {
                target: target.clone(),
                why: outcome.why.clone().unwrap_or_default(),
                at_unix: crate::now_unix(),
            });
        }
    }
    write_or_remove(journal_path, &journal)
}

/// The names a journal still lists as stopped (empty when it cannot be read).
#[must_use]
pub fn still_stopped(j: &Path) -> Vec<String> {
    read(j)
        .ok()
        .flatten()
        .map(|j| j.entries.iter().map(|e| e.name.clone()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, run: &str) -> JournalEntry {
        JournalEntry {
            id: id.into(),
            name: format!("name-{id}"),
            prior_state: PriorState::Running,
            restart_policy: "always".into(),
            run_id: run.into(),
            stop_timeout_s: 5,
            stop_issued_unix: Some(1),
            check: None,
            check_timeout_s: 60,
            restore: RestoreWhen::Always,
            left_stopped: false,
        }
    }

    #[test]
    fn a_failed_check_keeps_the_journal_until_a_check_passes_and_left_stopped_is_marked() {
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), "d");
        let target = entry("a", "r1").to_check();
        let outcome = |passed: bool| CheckOutcome {
            name: target.name.clone(),
            what: "running".into(),
            passed,
            why: (!passed).then(|| "exited (code 1)".to_owned()),
            took_ms: 100,
        };
        record_checks(&p, "d", &[(target.clone(), outcome(false))]).unwrap();
        let j = read(&p).unwrap().expect("kept for the failed check");
        assert_eq!(j.failed_checks.len(), 1);
        assert_eq!(j.failed_checks[0].why, "exited (code 1)");
        // Read back as it was written (the target flattened beside why and when).
        assert_eq!(j.failed_checks[0].target, target);
        record_checks(&p, "d", &[(target.clone(), outcome(true))]).unwrap();
        assert!(!p.exists(), "nothing left once it passed");

        let mut j = Journal {
            version: JOURNAL_VERSION,
            deployment: "d".into(),
            created_unix: 1,
            entries: vec![entry("a", "r1"), entry("b", "r1")],
            launch: None,
            failed_checks: Vec::new(),
        };
        write(&p, &j).unwrap();
        assert_eq!(leave_stopped(&p, &["name-b".into()]).unwrap(), ["name-b"]);
        j.entries[1].left_stopped = true;
        assert_eq!(read(&p).unwrap(), Some(j));
    }

    #[test]
    fn journal_round_trips_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), "panda-llamacpp");
        assert_eq!(read(&p).unwrap(), None);
        let j = Journal {
            version: JOURNAL_VERSION,
            deployment: "panda-llamacpp".into(),
            created_unix: 1,
            entries: vec![entry("abc", "r1")],
            launch: Some(LaunchRecord {
                run_id: "r1".into(),
                container: "panda-llamacpp".into(),
                id: None,
                completed: false,
                previous: None,
            }),
            failed_checks: Vec::new(),
        };
        write(&p, &j).unwrap();
        assert_eq!(read(&p).unwrap(), Some(j));
        assert_eq!(all(tmp.path()), vec![p.clone()]);
        assert_eq!(deployment_of(&p), "panda-llamacpp");
        assert_eq!(
            std::fs::read_dir(p.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left beside it"
        );
        std::fs::write(&p, b"{not json").unwrap();
        assert!(read(&p).is_err());
    }

    #[test]
    fn version_1_journals_still_read_with_their_stops_counted_as_issued() {
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), "d");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            r#"{"version":1,"deployment":"d","created_unix":1,"entries":[{"id":"x","name":"n","prior_state":"running","restart_policy":"no"}]}"#,
        )
        .unwrap();
        let j = read(&p).unwrap().unwrap();
        let e = &j.entries[0];
        assert_eq!((e.run_id.as_str(), e.stop_timeout_s), ("", 30));
        assert_eq!(j.launch, None);
    }

    #[test]
    fn completing_a_launch_keeps_other_runs_entries_and_drops_an_empty_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), "d");
        let launch = |run: &str| LaunchRecord {
            run_id: run.into(),
            container: "d".into(),
            id: Some("c".into()),
            completed: false,
            previous: None,
        };
        // A run that stopped nothing: its journal exists only while the launch is open.
        record_launch(&p, "d", launch("r1")).unwrap();
        assert!(p.exists());
        complete_launch(&p).unwrap();
        assert!(!p.exists(), "nothing left to undo");
        // A run that stopped something keeps its entries after completing.
        write(
            &p,
            &Journal {
                version: JOURNAL_VERSION,
                deployment: "d".into(),
                created_unix: 1,
                entries: vec![entry("a", "r1")],
                launch: None,
                failed_checks: Vec::new(),
            },
        )
        .unwrap();
        record_launch(&p, "d", launch("r2")).unwrap();
        complete_launch(&p).unwrap();
        let j = read(&p).unwrap().unwrap();
        assert_eq!(j.entries, vec![entry("a", "r1")]);
        assert!(j.launch.is_some_and(|l| l.completed));
        // Until a run completes, the launch stays open for `restore` to undo.
        record_launch(&p, "d", launch("r3")).unwrap();
        assert!(
            read(&p)
                .unwrap()
                .unwrap()
                .launch
                .is_some_and(|l| !l.completed)
        );
    }

    #[test]
    fn scope_covers_only_its_run() {
        assert!(Scope::All.covers("anything"));
        assert!(Scope::Run("r1").covers("r1"));
        assert!(!Scope::Run("r1").covers("r2"));
        assert!(!Scope::Run("r1").covers(""));
    }
}
