//! `vlmctl restore`: every journal replayed; one that cannot be does not stop the others.

use serde_json::json;
use vlmctl_deploy::events::Cancel;
use vlmctl_store::JobKind;

use crate::cli::RestoreArgs;
use crate::commands::provision::Progress;
use crate::commands::teardown::{report_restored, restored_names};
use crate::failure::Failure;
use crate::history::Recorder;
use crate::{Output, exit_codes};

/// `vlmctl restore`.
pub async fn restore(
    args: &RestoreArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    let mut rec = Recorder::open(
        &args.record,
        &super::base_state_dir(&args.state),
        vlmctl_deploy::history::host_name(engine),
        out,
    );
    let job = rec.begin_job(JobKind::Restore, None, None, out);
    let done = restore_journals(args, engine, out).await;
    rec.finish_job(job, done.as_ref().map(|(_, d)| d.as_str()), None, out);
    done.map(|(code, _)| code)
}

/// Every journal replayed; returns the exit code and what was done, in one line.
async fn restore_journals(
    args: &RestoreArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<(u8, String), Failure> {
    let state = engine.state_dir();
    let results = {
        let mut sink = Progress::new(out);
        let opts = vlmctl_lifecycle::journal::RestoreOptions {
            start: args.start.clone(),
        };
        vlmctl_deploy::undo::restore_all_with(
            engine,
            &opts,
            args.state.wait,
            &mut sink,
            &Cancel::new(),
        )
        .await?
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
        return Ok((exit_codes::SUCCESS, "nothing to restore".to_owned()));
    }
    let mut done = Vec::new();
    let mut back = Vec::new();
    let mut failed: Vec<Failure> = Vec::new();
    for r in results {
        let j = &r.journal;
        match r.outcome {
            Ok(restored) => {
                back.extend(restored_names(&restored).into_iter().map(str::to_owned));
                if !args.json {
                    out.stdout(&format!("journal {}", j.display()));
                    report_restored(&restored, out);
                }
                done.push(json!({"journal": j, "restored": restored}));
            }
            Err(e) => {
                let f = Failure::from(e);
                if !args.json {
                    let what = if f.code == exit_codes::CONFLICT_NOT_ALIVE {
                        "restored, NOT proven alive"
                    } else {
                        "NOT restored"
                    };
                    out.stdout(&format!(
                        "journal {}: {what}\n  {}",
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
    let message = crate::failure::some_failed(failed.len(), done.len(), "journal", "restored");
    if let Some(f) = Failure::of_many(failed, message) {
        return Err(f);
    }
    let detail = format!(
        "replayed {} journal(s){}",
        done.len(),
        if back.is_empty() {
            String::new()
        } else {
            format!("; restored {}", back.join(", "))
        }
    );
    Ok((exit_codes::SUCCESS, detail))
}
