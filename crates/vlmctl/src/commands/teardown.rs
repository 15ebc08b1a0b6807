//! `vlmctl teardown`: the deployment's container removed, what it displaced restored.

use vlmctl_deploy::events::Cancel;
use vlmctl_lifecycle::journal::Restored;

use crate::cli::TeardownArgs;
use crate::commands::provision::Progress;
use crate::failure::Failure;
use crate::{Output, exit_codes};

/// `vlmctl teardown`.
pub async fn teardown(args: &TeardownArgs, out: &mut Output) -> Result<u8, Failure> {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => vlmctl_deploy::plan::load_spec(args.spec.as_deref())?.name,
    };
    let state = super::state_dir(&args.state);
    let done = {
        let mut sink = Progress::new(out, &name);
        vlmctl_deploy::undo::teardown(&state, &name, args.state.wait, &mut sink, &Cancel::new())
            .await?
    };
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

/// What a restore did, a line per kind.
pub(crate) fn report_restored(r: &Restored, out: &mut Output) {
    let lines = [
        ("removed half-started", &r.removed),
        ("put back", &r.put_back),
        ("restored", &r.started),
        ("already running", &r.already_running),
        ("gone (removed by someone; cannot restore)", &r.missing),
    ];
    for (what, names) in lines {
        if !names.is_empty() {
            out.stdout(&format!("{what}: {}", names.join(", ")));
        }
    }
    if let Some(e) = &r.journal_error {
        out.stdout(&format!(
            "warning: the journal could not be updated ({e}); it still lists what was brought \
             back, and a later `vlmctl restore` finds it running"
        ));
    }
}
