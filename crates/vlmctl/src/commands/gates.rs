//! `vlmctl gates`: every read-only gate, one table; exit 7 if any fails.

use serde_json::json;

use crate::cli::DeployArgs;
use crate::failure::Failure;
use crate::{Output, exit_codes, render};

/// `vlmctl gates`.
pub async fn gates(
    args: &DeployArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    let plan = super::plan(args.spec.as_deref(), &args.lock.lock, &args.dirs)?;
    // `gates` always hashes: it is the thorough check.
    let (_, report) = vlmctl_deploy::gates::run(engine, &plan, false).await;
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&json!({"ok": report.passed(), "gates": report.results, "conflicts": report.conflicts})).unwrap_or_default());
    } else {
        out.stdout(&render::gates_table(&report.results));
    }
    Ok(if report.passed() {
        exit_codes::SUCCESS
    } else {
        exit_codes::GATE_FAILED
    })
}
