//! `teardown` and `restore`: undoing a deployment, or whatever the journals (and the tune
//! journals) say is still to undo, each under its deployment's lock.

use std::path::{Path, PathBuf};

use serde::Serialize;
use vlmctl_lifecycle::journal::{self, RestoreOptions, Restored, Scope};
use vlmctl_lifecycle::{Docker, LifecycleError, containers};

use crate::DeployError;
use crate::events::{Cancel, Sink};

/// What `teardown` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TornDown {
    /// The deployment.
    pub container: String,
    /// Whether a container was removed (false: already torn down).
    pub removed: bool,
    /// What its journal brought back.
    pub restored: Restored,
}

/// What a teardown leaves stopped, beyond what the journal's entries say.
#[derive(Debug, Clone, Default)]
pub struct TeardownOptions {
    /// Wait for another command that holds the deployment.
    pub wait: bool,
    /// Leave these stopped (`--keep-stopped NAME`), whatever their `restore` says.
    pub keep_stopped: Vec<String>,
    /// Answer yes to every `restore = "ask"` question (`--yes`): restart them.
    pub yes: bool,
}

/// "Start this stopped conflict again?", asked at teardown for a conflict whose spec says
/// `restore = "ask"` (the Beast runbook: restart nemotron only if the user confirms it was
/// production).
pub trait AskRestart {
    /// The answer: yes restarts it, no leaves it stopped (recorded).
    fn restart<'a>(&'a mut self, entry: &'a journal::JournalEntry) -> crate::events::Answer<'a>;
}

/// Nobody to ask: a `restore = "ask"` conflict is left stopped (recorded, shown by `status`,
/// `vlmctl restore --start NAME` brings it back).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOneToAsk;

impl AskRestart for NoOneToAsk {
    fn restart<'a>(&'a mut self, _entry: &'a journal::JournalEntry) -> crate::events::Answer<'a> {
        Box::pin(std::future::ready(false))
    }
}

/// Pure: which of the journal's entries a teardown leaves stopped: those named with
/// `--keep-stopped`, those whose spec says `restore = "never"`, and those that say "ask" when
/// the answer is no (`--yes` answers yes without asking). Entries left stopped before stay so.
#[must_use]
pub fn to_leave_stopped(
    entries: &[journal::JournalEntry],
    keep: &[String],
    yes: bool,
    answers: &dyn Fn(&journal::JournalEntry) -> bool,
) -> Vec<String> {
    use vlmctl_lifecycle::spec::RestoreWhen;
    entries
        .iter()
        .filter(|e| {
            e.left_stopped
                || keep.contains(&e.name)
                || match e.restore {
                    RestoreWhen::Always => false,
                    RestoreWhen::Never => true,
                    RestoreWhen::Ask => !yes && !answers(e),
                }
        })
        .map(|e| e.name.clone())
        .collect()
}

/// Stops and removes the deployment's container (only one vlmctl created) and restores what
/// its journal says was stopped.
pub async fn teardown(
    engine: &vlmctl_lifecycle::Engine,
    name: &str,
    wait: bool,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<TornDown, DeployError> {
    let opts = TeardownOptions {
        wait,
        ..TeardownOptions::default()
    };
    teardown_with(engine, name, &opts, &mut NoOneToAsk, sink, cancel).await
}

/// [`teardown`], leaving stopped what `opts` and the answers of `ask` say
/// ([`to_leave_stopped`]); every container brought back is checked ([`crate::liveness`]):
/// one not proven alive fails the teardown ([`DeployError::ConflictCheckFailed`]) after
/// everything else was done.
pub async fn teardown_with(
    engine: &vlmctl_lifecycle::Engine,
    name: &str,
    opts: &TeardownOptions,
    ask: &mut dyn AskRestart,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<TornDown, DeployError> {
    let wait = opts.wait;
    if !vlmctl_lifecycle::spec::is_container_name(name) {
        return Err(DeployError::NotADeploymentName {
            name: name.to_owned(),
        });
    }
    // A tune's parked original is the deployment itself, set aside: never torn down as one.
    refuse_parked(name)?;
    let state = engine.state_dir();
    // Not in the middle of a tune of it (its container is parked aside then).
    let _tune = crate::lock::tune_guard(state, name, "teardown", wait, sink, cancel).await?;
    let _lock = crate::lock::acquire(state, name, "teardown", wait, sink, cancel).await?;
    let docker = engine.connect().await?;
    // Docker also takes an id (or an id prefix) for a name: what the argument names is the
    // container's own name, and that is what is checked, locked and torn down.
    let resolved = containers::name_of(&docker, name).await?;
    let (name, _tune, _lock) = match resolved {
        Some(actual) if actual != name => {
            refuse_parked(&actual)?;
            let tune =
                crate::lock::tune_guard(state, &actual, "teardown", wait, sink, cancel).await?;
            let lock = crate::lock::acquire(state, &actual, "teardown", wait, sink, cancel).await?;
            (actual, Some(tune), Some(lock))
        }
        _ => (name.to_owned(), None, None),
    };
    let name = name.as_str();
    let leave = choose_left_stopped(&journal::path(state, name), opts, ask, sink).await?;
    let removed = match containers::teardown(&docker, name).await {
        Err(LifecycleError::NameTaken { container }) => {
            return Err(DeployError::NotOurs { container });
        }
        other => other?,
    };
    // From here on the server is gone: whatever fails, the conflicts are started again before
    // the teardown returns, and a failure says what is still stopped.
    // A GPU probe that a killed provision of it left behind (a failure is a warning, after the
    // restore).
    let swept = crate::provision::sweep_probes(&docker, name, sink).await;
    let jpath = journal::path(state, name);
    // A run that died while replacing the deployment's container had set the old one aside: a
    // teardown ends the deployment, so that one goes too, never started again first.
    let before = async {
        journal::drop_previous(&docker, &jpath).await?;
        journal::leave_stopped(&jpath, &leave)
    }
    .await;
    let restore = journal::restore(&docker, &jpath, Scope::All).await;
    if let Err(e) = swept {
        sink.event(crate::events::Event::Warning {
            message: format!(
                "{probe} could not be removed ({}): remove it yourself (`docker rm -f {probe}`)",
                vlmctl_base::chain::one_line(&e),
                probe = containers::probe_name(name)
            ),
        });
    }
    // The first failure is the cause; the journal says what is still stopped.
    let mut restored = match restore {
        Ok(r) => r,
        Err(e) => return Err(incomplete(before.err().unwrap_or(e), &jpath)),
    };
    let aside = containers::remove_aside_of(&docker, name).await;
    // What came back is checked also when an earlier step failed (the outcome is kept in the
    // journal, shown by `status`).
    crate::liveness::check_restored(engine, &docker, &jpath, &mut restored).await;
    if let Err(e) = before {
        // What the journal lists, less what the restore did bring back (its writes may have
        // failed too).
        let back: Vec<&String> = restored
            .started
            .iter()
            .chain(&restored.already_running)
            .collect();
        return Err(DeployError::RestoreIncomplete {
            source: Box::new(e),
            still_stopped: journal::still_stopped(&jpath)
                .into_iter()
                .filter(|n| !back.contains(&n))
                .collect(),
            journal: jpath,
        });
    }
    aside?;
    let done = TornDown {
        container: name.to_owned(),
        removed,
        restored,
    };
    match crate::liveness::failure(&done.restored, torn_down_line(&done), &jpath) {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// "removed NAME; restored A, B; left stopped C", for a message.
fn torn_down_line(d: &TornDown) -> String {
    use std::fmt::Write as _;
    let mut line = if d.removed {
        format!("removed {}", d.container)
    } else {
        format!("{}: no such container (already torn down)", d.container)
    };
    let r = &d.restored;
    let back: Vec<&str> = r
        .put_back
        .iter()
        .chain(&r.started)
        .chain(&r.already_running)
        .map(String::as_str)
        .collect();
    if !back.is_empty() {
        let _ = write!(line, "; restored {}", back.join(", "));
    }
    if !r.left_stopped.is_empty() {
        let _ = write!(line, "; left stopped {}", r.left_stopped.join(", "));
    }
    line
}

/// The entries a teardown of the deployment leaves stopped, asking `ask` about those that say
/// "ask" (before anything is changed, so that an interrupted question changes nothing).
async fn choose_left_stopped(
    jpath: &Path,
    opts: &TeardownOptions,
    ask: &mut dyn AskRestart,
    sink: &mut dyn Sink,
) -> Result<Vec<String>, DeployError> {
    let entries = journal::read(jpath)?.map(|j| j.entries).unwrap_or_default();
    for k in &opts.keep_stopped {
        if !entries.iter().any(|e| &e.name == k) {
            sink.event(crate::events::Event::Warning {
                message: format!(
                    "--keep-stopped {k}: the deployment's journal lists no stopped container of \
                     that name; ignored"
                ),
            });
        }
    }
    let mut yes = Vec::new();
    for e in entries.iter().filter(|e| {
        e.restore == vlmctl_lifecycle::spec::RestoreWhen::Ask
            && !e.left_stopped
            && !opts.yes
            && !opts.keep_stopped.contains(&e.name)
    }) {
        if ask.restart(e).await {
            yes.push(e.id.clone());
        }
    }
    Ok(to_leave_stopped(
        &entries,
        &opts.keep_stopped,
        opts.yes,
        &|e| yes.contains(&e.id),
    ))
}

/// [`DeployError::ParkedByTune`] when `name` is a tune's parked original.
fn refuse_parked(name: &str) -> Result<(), DeployError> {
    match crate::tune::parked_of(name) {
        Some(deployment) => Err(DeployError::ParkedByTune {
            name: name.to_owned(),
            deployment: deployment.to_owned(),
        }),
        None => Ok(()),
    }
}

/// One journal's restore.
#[derive(Debug)]
pub struct JournalRestore {
    /// The journal.
    pub journal: PathBuf,
    /// What it did, or why it could not.
    pub outcome: Result<Restored, DeployError>,
}

/// Replays every journal in `engine`'s state folder, each under its deployment's lock; one that
/// cannot be read or restored does not stop the others.
pub async fn restore_all(
    engine: &vlmctl_lifecycle::Engine,
    wait: bool,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Vec<JournalRestore>, DeployError> {
    restore_all_with(engine, &RestoreOptions::default(), wait, sink, cancel).await
}

/// [`restore_all`], starting also the containers a teardown left stopped that `opts` names
/// (`vlmctl restore --start NAME`); every container brought back, and every one an earlier
/// check found not alive, is checked ([`crate::liveness`]): a journal whose checks fail is an
/// error of its own ([`DeployError::ConflictCheckFailed`]), the others go on.
pub async fn restore_all_with(
    engine: &vlmctl_lifecycle::Engine,
    opts: &RestoreOptions,
    wait: bool,
    sink: &mut dyn Sink,
    cancel: &Cancel,
) -> Result<Vec<JournalRestore>, DeployError> {
    let state = engine.state_dir();
    for name in &opts.start {
        let listed = journal::all(state).iter().any(|j| {
            journal::read(j)
                .ok()
                .flatten()
                .is_some_and(|j| j.entries.iter().any(|e| &e.name == name && e.left_stopped))
        });
        if !listed {
            sink.event(crate::events::Event::Warning {
                message: format!(
                    "--start {name}: no journal lists {name} as left stopped; ignored"
                ),
            });
        }
    }
    let paths = journal::all(state);
    let tunes = crate::tune::journal::all(state);
    let docker = if paths.is_empty() && tunes.is_empty() {
        // Nothing journalled: only GPU probes left by killed runs may be there, and a daemon
        // that cannot be reached has none to remove.
        match engine.connect().await {
            Ok(d) => d,
            Err(_) => return Ok(Vec::new()),
        }
    } else {
        engine.connect().await?
    };
    sweep_all_probes(&docker, state, sink, cancel).await;
    let mut out = Vec::new();
    for j in paths {
        let outcome = restore_one(engine, &docker, &j, opts, (wait, sink, cancel)).await;
        out.push(JournalRestore {
            journal: j,
            outcome,
        });
    }
    // A tune that died: its variant goes and the deployment's original comes back, under the
    // tune's lock (a tune still running is not disturbed).
    for j in tunes {
        let deployment = journal::deployment_of(&j);
        let outcome = async {
            let _lock = crate::lock::acquire(
                state,
                &crate::tune::lock_name(&deployment),
                "restore",
                wait,
                sink,
                cancel,
            )
            .await?;
            crate::tune::restore(
                engine,
                &docker,
                &j,
                crate::tune::Held::No { wait },
                sink,
                cancel,
            )
            .await
        }
        .await;
        out.push(JournalRestore {
            journal: j,
            outcome,
        });
    }
    Ok(out)
}

/// Removes the GPU probes that killed runs left, each under its deployment's lock, taken
/// without waiting: a deployment whose lock is held is being provisioned, and its probe is that
/// run's (it removes it itself).
async fn sweep_all_probes(docker: &Docker, state: &Path, sink: &mut dyn Sink, cancel: &Cancel) {
    let Ok(deployments) = containers::probed_deployments(docker).await else {
        return;
    };
    for d in deployments {
        if let Ok(_lock) = crate::lock::acquire(state, &d, "restore", false, sink, cancel).await
            && let Err(e) = crate::provision::sweep_probes(docker, &d, sink).await
        {
            sink.event(crate::events::Event::Warning {
                message: format!(
                    "{} could not be removed ({e}): remove it yourself (`docker rm -f {}`)",
                    containers::probe_name(&d),
                    containers::probe_name(&d)
                ),
            });
        }
    }
}

async fn restore_one(
    engine: &vlmctl_lifecycle::Engine,
    docker: &Docker,
    j: &Path,
    opts: &RestoreOptions,
    (wait, sink, cancel): (bool, &mut dyn Sink, &Cancel),
) -> Result<Restored, DeployError> {
    let state = engine.state_dir();
    let deployment = journal::deployment_of(j);
    let _lock = crate::lock::acquire(state, &deployment, "restore", wait, sink, cancel).await?;
    journal::read(j)?;
    let mut restored = journal::restore_with(docker, j, Scope::All, opts)
        .await
        .map_err(|e| incomplete(e, j))?;
    crate::liveness::check_restored(engine, docker, j, &mut restored).await;
    let back: Vec<String> = restored
        .put_back
        .iter()
        .chain(&restored.started)
        .chain(&restored.already_running)
        .cloned()
        .collect();
    let done = if back.is_empty() {
        format!("journal {}: nothing started", j.display())
    } else {
        format!("journal {}: restored {}", j.display(), back.join(", "))
    };
    match crate::liveness::failure(&restored, done, j) {
        Some(e) => Err(e),
        None => Ok(restored),
    }
}

/// A journal restore that stopped part-way: what it still lists.
fn incomplete(source: LifecycleError, j: &Path) -> DeployError {
    DeployError::RestoreIncomplete {
        source: Box::new(source),
        still_stopped: journal::still_stopped(j),
        journal: j.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teardown_leaves_stopped_what_it_is_told_to_and_asks_only_about_ask() {
        use vlmctl_lifecycle::spec::RestoreWhen;
        let entry = |name: &str, restore, left_stopped| journal::JournalEntry {
            id: format!("id-{name}"),
            name: name.into(),
            prior_state: journal::PriorState::Running,
            restart_policy: "no".into(),
            run_id: "r".into(),
            stop_timeout_s: 1,
            stop_issued_unix: Some(1),
            check: None,
            check_timeout_s: 60,
            restore,
            left_stopped,
        };
        let entries = [
            entry("always", RestoreWhen::Always, false),
            entry("never", RestoreWhen::Never, false),
            entry("ask", RestoreWhen::Ask, false),
            entry("kept-before", RestoreWhen::Always, true),
        ];
        let no = |_: &journal::JournalEntry| false;
        let yes = |_: &journal::JournalEntry| true;
        assert_eq!(
            to_leave_stopped(&entries, &[], false, &no),
            ["never", "ask", "kept-before"]
        );
        assert_eq!(
            to_leave_stopped(&entries, &[], false, &yes),
            ["never", "kept-before"]
        );
        assert_eq!(
            to_leave_stopped(&entries, &[], true, &no),
            ["never", "kept-before"],
            "--yes answers yes"
        );
        assert_eq!(
            to_leave_stopped(&entries, &["always".into()], true, &yes),
            ["always", "never", "kept-before"],
            "--keep-stopped wins over everything"
        );
    }

    #[tokio::test]
    async fn a_tunes_parked_original_is_refused_before_anything_is_touched() {
        let tmp = tempfile::tempdir().unwrap();
        let mut events = Vec::new();
        let e = teardown(
            &vlmctl_lifecycle::Engine::local(tmp.path()),
            &crate::tune::parked_name("web"),
            false,
            &mut events,
            &Cancel::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, DeployError::ParkedByTune { name, deployment } if name == "web-vlmctl-tune" && deployment == "web"),
            "{e:?}"
        );
        assert!(e.hint().unwrap().contains("vlmctl teardown web"), "{e}");
        // Refused before any lock was taken (nor the daemon reached).
        assert!(!tmp.path().join("locks").exists());
    }
}
