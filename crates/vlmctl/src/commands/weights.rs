//! `vlmctl weights ...`.

use std::fmt::Write as _;
use std::path::PathBuf;

use vlmctl_weights::{FileReport, Lock, jobs_for, verify_all};

use crate::cli::VerifyArgs;
use crate::failure::Failure;
use crate::{Output, env_vars, exit_codes};

/// `vlmctl weights verify`: a table (or JSON), exit 4 if any file fails.
pub fn verify(args: &VerifyArgs, out: &mut Output) -> Result<u8, Failure> {
    let lock = Lock::load(&args.lock.lock)?;
    let root = args.models_dir.clone().unwrap_or_else(default_models_root);
    let jobs = jobs_for(
        &lock,
        &args.lock.lock,
        &args.names,
        args.dir.as_deref(),
        &root,
    )?;
    if jobs.is_empty() {
        return Err(Failure::new(
            anyhow::anyhow!("{} locks no files", args.lock.lock.display()),
            Some(
                "add a [[model]] entry with its [[model.file]] tables (README, \"weights.lock\")"
                    .to_owned(),
            ),
            exit_codes::INVALID_INPUT,
        ));
    }
    let total: u64 = jobs.iter().map(|j| j.file.size).sum();
    out.progress(&format!(
        "verifying {} file(s), {}, on up to {} thread(s)",
        jobs.len(),
        human_bytes(total),
        if args.jobs == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            args.jobs
        }
    ));
    let started = std::time::Instant::now();
    let reports = verify_all(&jobs, args.jobs);
    tracing::debug!(elapsed = ?started.elapsed(), "verified");
    let failed = reports.iter().filter(|r| !r.ok()).count();
    if args.json {
        let doc = serde_json::json!({ "ok": failed == 0, "files": reports });
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        out.stdout(&verify_table(&reports));
    }
    Ok(if failed == 0 {
        exit_codes::SUCCESS
    } else {
        exit_codes::VERIFY_FAILED
    })
}

/// The human table: one row per file, OK or the precise failure.
#[must_use]
pub fn verify_table(reports: &[FileReport]) -> String {
    let rows: Vec<[String; 4]> = reports
        .iter()
        .map(|r| {
            let detail = match (&r.gguf, r.ok()) {
                (Some(g), true) => format!(
                    "OK (GGUF v{}, {} tensors{})",
                    g.version,
                    g.tensor_count,
                    g.architecture
                        .as_deref()
                        .map(|a| format!(", {a}"))
                        .unwrap_or_default()
                ),
                _ => format!("FAIL: {}", r.status),
            };
            [r.model.clone(), r.path.clone(), r.role.to_string(), detail]
        })
        .collect();
    let mut out = crate::table::render(&["MODEL", "FILE", "ROLE", "RESULT"], &rows);
    let failed: Vec<&FileReport> = reports.iter().filter(|r| !r.ok()).collect();
    if failed.is_empty() {
        let _ = write!(out, "\nall {} file(s) verified", reports.len());
    } else {
        let _ = write!(
            out,
            "\n{} of {} file(s) failed:",
            failed.len(),
            reports.len()
        );
        for r in failed {
            let _ = write!(out, "\n  {}: {}", r.location.display(), hint_for(r));
        }
    }
    out
}

fn hint_for(r: &FileReport) -> &'static str {
    use vlmctl_weights::FileStatus as S;
    match r.status {
        S::Ok => "",
        S::Missing => {
            "put the locked file there (download the locked revision, or copy it from another host), or pass --dir DIR"
        }
        S::SizeMismatch { .. } | S::BadGguf { .. } => {
            "incomplete or damaged copy: delete it and download or copy it again"
        }
        S::HashMismatch { .. } => {
            "the content differs from the locked file: delete it and download or copy it again (if upstream changed on purpose, re-pin the lock)"
        }
        S::Unreadable { .. } => "check the file's permissions and the disk",
    }
}

/// `$XDG_DATA_HOME/vlmctl/models`, else `~/.local/share/vlmctl/models`.
fn default_models_root() -> PathBuf {
    std::env::var_os(env_vars::XDG_DATA_HOME)
        .filter(|v| !v.is_empty())
        .map_or_else(
            || vlmctl_weights::expand_home("~/.local/share"),
            PathBuf::from,
        )
        .join("vlmctl/models")
}

/// `253.1 MB` style sizes (decimal units, as disks and the hub count).
#[must_use]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
