//! `vlmctl teardown`: the deployment's container removed, what it displaced restored.

use std::fmt::Write as _;

use vlmctl_deploy::events::Cancel;
use vlmctl_lifecycle::journal::Restored;

use vlmctl_store::JobKind;

use crate::cli::TeardownArgs;
use crate::commands::provision::Progress;
use crate::failure::Failure;
use crate::history::Recorder;
use crate::{Output, exit_codes};

/// `vlmctl teardown`.
pub async fn teardown(
    args: &TeardownArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    let defaulted = args.name.is_none() && args.spec.is_none();
    // The spec's hash is the deployment's only when the spec named it.
    let (name, spec_sha256) = if let Some(n) = &args.name {
        (n.clone(), None)
    } else {
        let spec = vlmctl_deploy::plan::load_spec(args.spec.as_deref())?;
        let sha = spec.sha256();
        (spec.name, Some(sha))
    };
    let mut rec = Recorder::open(
        &args.record,
        &super::base_state_dir(&args.state),
        vlmctl_deploy::history::host_name(engine),
        out,
    );
    let job = rec.begin_job(JobKind::Teardown, Some(&name), spec_sha256, out);
    let done = {
        let mut sink = Progress::new(out);
        let opts = vlmctl_deploy::undo::TeardownOptions {
            wait: args.state.wait,
            keep_stopped: args.keep_stopped.clone(),
            yes: args.yes,
        };
        vlmctl_deploy::undo::teardown_with(
            engine,
            &name,
            &opts,
            &mut AskAtTerminal,
            &mut sink,
            &Cancel::new(),
        )
        .await
        .map_err(Failure::from)
    };
    // Without a name or a spec, the embedded default is meant; when it has no container but
    // other vlmctl deployments are there, the user most likely forgot which one: saying
    // "already torn down" with success would hide that they still run.
    let done = match done {
        Ok(d) if defaulted && !d.removed && restored_names(&d.restored).is_empty() => {
            others_or(engine, d, &name).await
        }
        other => other,
    };
    let detail = done.as_ref().map(|d| {
        let mut what = if d.removed {
            format!("removed {name}")
        } else {
            format!("{name}: no such container (already torn down)")
        };
        let back = restored_names(&d.restored);
        if !back.is_empty() {
            let _ = write!(what, "; restored {}", back.join(", "));
        }
        if !d.restored.left_stopped.is_empty() {
            let _ = write!(
                what,
                "; left stopped {}",
                d.restored.left_stopped.join(", ")
            );
        }
        what
    });
    rec.finish_job(job, detail.as_deref().map_err(|f| *f), None, out);
    let done = done?;
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&done).unwrap_or_default());
        return Ok(exit_codes::SUCCESS);
    }
    out.stdout(&if done.removed {
        format!("removed {name}")
    } else {
        format!("{name}: no such container (already torn down)")
    });
    report_restored(&done.restored, out);
    Ok(exit_codes::SUCCESS)
}

/// `done` (the default deployment had nothing to tear down), unless other vlmctl deployments
/// are there: then an error naming them.
async fn others_or(
    engine: &vlmctl_lifecycle::Engine,
    done: vlmctl_deploy::undo::TornDown,
    default: &str,
) -> Result<vlmctl_deploy::undo::TornDown, Failure> {
    let Ok(managed) = vlmctl_deploy::status::managed(engine).await else {
        return Ok(done);
    };
    let others: Vec<&vlmctl_lifecycle::containers::Managed> =
        managed.iter().filter(|m| m.name != default).collect();
    if others.is_empty() {
        return Ok(done);
    }
    Err(Failure::from(
        vlmctl_deploy::DeployError::DefaultNotDeployed {
            name: default.to_owned(),
            others: others
                .iter()
                .map(|m| format!("{} ({})", m.name, m.state))
                .collect(),
            names: others.iter().map(|m| m.name.clone()).collect(),
        },
    ))
}

/// Asks at the terminal whether a `restore = "ask"` conflict starts again; without one the
/// answer is no (it is left stopped, recorded).
struct AskAtTerminal;

impl vlmctl_deploy::undo::AskRestart for AskAtTerminal {
    fn restart<'a>(
        &'a mut self,
        e: &'a vlmctl_lifecycle::journal::JournalEntry,
    ) -> vlmctl_deploy::events::Answer<'a> {
        Box::pin(super::ask_yes_no(format!(
            "start {} again (was it in production use)? [y/N] ",
            e.name
        )))
    }
}

/// The containers a restore brought back (started again or already running).
pub(crate) fn restored_names(r: &Restored) -> Vec<&str> {
    r.put_back
        .iter()
        .chain(&r.started)
        .chain(&r.already_running)
        .map(String::as_str)
        .collect()
}

/// What a restore did, a line per kind.
pub(crate) fn report_restored(r: &Restored, out: &mut Output) {
    let lines = [
        ("removed half-started", &r.removed),
        ("put back", &r.put_back),
        ("restored", &r.started),
        ("already running", &r.already_running),
        ("gone (removed by someone; cannot restore)", &r.missing),
        (
            "left stopped (`vlmctl restore --start NAME` brings it back)",
            &r.left_stopped,
        ),
    ];
    for (what, names) in lines {
        if !names.is_empty() {
            out.stdout(&format!("{what}: {}", names.join(", ")));
        }
    }
    for c in r.checks.iter().filter(|c| c.passed) {
        out.stdout(&format!(
            "alive: {} ({}, {:.1} s)",
            c.name,
            c.what,
            c.took_ms as f64 / 1000.0
        ));
    }
    if let Some(e) = &r.journal_error {
        out.stdout(&format!(
            "warning: the journal could not be updated ({e}); it still lists what was brought \
             back, and a later `vlmctl restore` finds it running"
        ));
    }
}
