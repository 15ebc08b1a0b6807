//! `vlmctl restore`: every journal replayed; one that cannot be does not stop the others.

use serde_json::json;
use vlmctl_deploy::events::Cancel;

use crate::cli::RestoreArgs;
use crate::commands::provision::Progress;
use crate::commands::teardown::report_restored;
use crate::failure::Failure;
use crate::{Output, exit_codes};

/// `vlmctl restore`.
pub async fn restore(args: &RestoreArgs, out: &mut Output) -> Result<u8, Failure> {
    let state = super::state_dir(&args.state);
    let results = {
        let mut sink = Progress::new(out, "the deployment");
        vlmctl_deploy::undo::restore_all(&state, args.state.wait, &mut sink, &Cancel::new()).await?
    };
    if results.is_empty() {
        if args.json {
            out.stdout(&json!({"journals": []}).to_string());
        } else {
            out.stdout(&format!(
                "nothing to restore (no journal under {})",
                state.display()
            ));
        }
        return Ok(exit_codes::SUCCESS);
    }
    let mut done = Vec::new();
    let mut failed: Vec<Failure> = Vec::new();
    for r in results {
        let j = &r.journal;
        match r.outcome {
            Ok(restored) => {
                if !args.json {
                    out.stdout(&format!("journal {}", j.display()));
                    report_restored(&restored, out);
                }
                done.push(json!({"journal": j, "restored": restored}));
            }
            Err(e) => {
                let f = Failure::from(e);
                if !args.json {
                    out.stdout(&format!(
                        "journal {}: NOT restored\n  {}",
                        j.display(),
                        f.render().replace('\n', "\n  ")
                    ));
                }
                done.push(json!({"journal": j, "error": format!("{:#}", f.error), "hint": f.hint}));
                failed.push(f);
            }
        }
    }
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&json!({"journals": done})).unwrap_or_default());
    }
    if failed.is_empty() {
        return Ok(exit_codes::SUCCESS);
    }
    let code = failed
        .iter()
        .map(|f| f.code)
        .max()
        .unwrap_or(exit_codes::FAILURE);
    Err(Failure::new(
        anyhow::anyhow!(
            "{} of {} journal(s) could not be restored (each is named above); the others were",
            failed.len(),
            done.len()
        ),
        failed.into_iter().find_map(|f| f.hint),
        code,
    ))
}
