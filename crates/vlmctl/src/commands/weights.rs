//! `vlmctl weights ...`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vlmctl_deploy::events::{Event, Sink};
use vlmctl_deploy::pin::{Change, Pinned};
use vlmctl_deploy::weights::UpdateResult;
use vlmctl_weights::{FileReport, PinRequest, Role, WeightsLock};

use crate::cli::{AdoptArgs, DirArgs, FetchArgs, LockCmdArgs, UpdateArgs, VerifyArgs};
use crate::failure::Failure;
use crate::{Output, exit_codes};
use vlmctl_base::env as env_vars;

/// `vlmctl weights verify`: a table (or JSON), exit 4 if any file fails.
pub fn verify(args: &VerifyArgs, out: &mut Output) -> Result<u8, Failure> {
    let started = std::time::Instant::now();
    let reports = vlmctl_deploy::weights::verify(
        &args.lock.lock,
        &args.names,
        &args.dirs.dirs(),
        args.jobs,
        &mut |e: Event| progress_line(&e).iter().for_each(|l| out.progress(l)),
    )?;
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

/// The progress line of a weights job's event (the table comes at the end).
fn progress_line(e: &Event) -> Option<String> {
    crate::render::job_line(e)
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
    let mut out = crate::render::table(&["MODEL", "FILE", "ROLE", "RESULT"], &rows);
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

impl DirArgs {
    /// `--models-dir`, else the default root.
    pub(crate) fn models_root(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_root)
    }

    /// Where the model files go, as the jobs take it.
    pub(crate) fn dirs(&self) -> vlmctl_deploy::Dirs {
        vlmctl_deploy::Dirs {
            dir: self.dir.clone(),
            models_root: self.models_root(),
        }
    }
}

/// `vlmctl weights lock REPO FILE...`: pins files from hub metadata, without downloading.
pub async fn lock(args: &LockCmdArgs, out: &mut Output) -> Result<u8, Failure> {
    let path = &args.lock.lock;
    if args.pin.locked {
        return Err(locked_refusal(path, "`weights lock` writes an entry"));
    }
    // Validated before any network traffic; a missing lock is created.
    let existing = if path.exists() {
        Some(WeightsLock::load(path)?)
    } else {
        None
    };
    let files: Vec<(String, Role)> = args
        .files
        .iter()
        .map(|f| {
            let role = if f.to_ascii_lowercase().contains("mmproj") {
                Role::Mmproj
            } else {
                Role::Model
            };
            (f.clone(), role)
        })
        .collect();
    let name = args.name.clone().unwrap_or_else(|| default_name(&files));
    let dir = args.dir.clone().or_else(|| {
        existing
            .as_ref()
            .and_then(|l| l.model(&name))
            .and_then(|m| m.dir.clone())
    });
    let request = PinRequest {
        name,
        repo: args.repo.clone(),
        revision: args.revision.clone(),
        files,
        dir,
        tracks: None,
    };
    // What goes into the hub's URLs (and into the lock) is checked before any request.
    request.check()?;
    let entry = if let Some(local) = &args.local {
        local_entry(request, local, out)?
    } else {
        let hub = super::hub_client(&args.hub)?;
        vlmctl_deploy::weights::resolve(&hub, &request, &mut |e: Event| {
            out.progress(&e.to_string());
        })
        .await?
    };
    let change = vlmctl_deploy::pin::write_entries(path, std::slice::from_ref(&entry))?
        .pop()
        .unwrap_or(Change::Unchanged);
    let pinned = Pinned {
        entry,
        change,
        lock: path.clone(),
    };
    if args.json {
        out.stdout(&serde_json::to_string_pretty(&pinned).unwrap_or_default());
    } else {
        out.stdout(&crate::render::pinned(&pinned));
    }
    Ok(exit_codes::SUCCESS)
}

/// The entry for `request` from the files in `local` (no hub): each file's size and sha256
/// computed here, its GGUF structure checked; the revision as given when it is a commit, else
/// unknown (all zeros) tracking it; `dir` defaults to `local`; marked
/// [`vlmctl_weights::PINNED_FROM_LOCAL`].
fn local_entry(
    request: PinRequest,
    local: &Path,
    out: &mut Output,
) -> Result<vlmctl_weights::ModelEntry, Failure> {
    let mut files = Vec::new();
    for (name, role) in &request.files {
        let at = local.join(name);
        let io = |source| vlmctl_weights::WeightsError::Io {
            path: at.clone(),
            source,
        };
        let size = std::fs::metadata(&at).map_err(io)?.len();
        out.progress(&format!(
            "hashing {} ({})",
            at.display(),
            crate::render::human_bytes(size)
        ));
        vlmctl_weights::gguf::check_file(&at).map_err(|e| {
            vlmctl_weights::WeightsError::BadContent {
                file: at.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let sha256 = vlmctl_weights::sha256_file(&at).map_err(io)?;
        files.push(vlmctl_weights::LockedFile {
            path: name.clone(),
            role: *role,
            size,
            sha256,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let r = &request.revision;
    let is_commit = r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit());
    let (revision, tracks) = if is_commit {
        (r.to_ascii_lowercase(), None)
    } else {
        (vlmctl_weights::UNKNOWN_REVISION.to_owned(), Some(r.clone()))
    };
    Ok(vlmctl_weights::ModelEntry {
        name: request.name,
        repo: request.repo,
        revision,
        tracks,
        dir: request.dir.or_else(|| Some(local.display().to_string())),
        pinned_from: Some(vlmctl_weights::PINNED_FROM_LOCAL.to_owned()),
        files,
    })
}

/// `vlmctl weights update [NAME...]`: the branch or tag each entry tracks, resolved again; the
/// entries whose commit or files changed are rewritten (in one write).
pub async fn update(args: &UpdateArgs, out: &mut Output) -> Result<u8, Failure> {
    let path = &args.lock.lock;
    let hub = super::hub_client(&args.hub)?;
    let updated = vlmctl_deploy::weights::update(
        &hub,
        path,
        &args.names,
        args.pin.locked,
        &mut |e: Event| progress_line(&e).iter().for_each(|l| out.progress(l)),
    )
    .await?;
    if updated.rows.is_empty() {
        out.stdout(&format!(
            "{} has no entries: nothing to update",
            path.display()
        ));
        return Ok(exit_codes::SUCCESS);
    }
    let changed = updated.changed.len();
    if args.json {
        let report: Vec<serde_json::Value> = updated
            .rows
            .iter()
            .map(|r| match r.result {
                UpdateResult::NotTracking => {
                    serde_json::json!({"name": r.name, "result": r.result.json_word()})
                }
                _ => serde_json::json!({"name": r.name, "result": r.result.json_word(), "from": r.from, "to": r.to}),
            })
            .collect();
        let doc = serde_json::json!({"lock": path, "updated": changed, "entries": report});
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        let rows: Vec<[String; 4]> = updated
            .rows
            .iter()
            .map(|r| {
                [
                    r.name.clone(),
                    r.tracks.clone().unwrap_or_else(|| "-".to_owned()),
                    if r.from == r.to {
                        r.from.clone()
                    } else {
                        format!("{} -> {}", r.from, r.to)
                    },
                    r.result.to_string(),
                ]
            })
            .collect();
        let mut text = crate::render::table(&["MODEL", "TRACKS", "COMMIT", "RESULT"], &rows);
        if changed > 0 {
            let _ = write!(
                text,
                "\n{} entr{} updated in {}: fetch and verify the new files (`vlmctl weights fetch`), then commit the lock",
                changed,
                if changed == 1 { "y" } else { "ies" },
                path.display()
            );
        }
        out.stdout(&text);
    }
    Ok(exit_codes::SUCCESS)
}

/// Exit 3: `--locked` (or `VLMCTL_LOCKED`) and the command would change the lock.
fn locked_refusal(path: &Path, what: &str) -> Failure {
    vlmctl_deploy::DeployError::LockedRefusal {
        lock: path.to_owned(),
        what: what.to_owned(),
    }
    .into()
}

fn default_name(files: &[(String, Role)]) -> String {
    let model = files
        .iter()
        .find(|(_, r)| *r == Role::Model)
        .or(files.first());
    model
        .map(|(p, _)| {
            Path::new(p)
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase().replace('_', "-"))
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// `vlmctl weights fetch`: every locked file of the named models, one after another.
pub async fn fetch(args: &FetchArgs, out: &mut Output) -> Result<u8, Failure> {
    let hub = super::hub_client(&args.hub)?;
    let mut names = args.names.clone();
    if let Some(spec) = &args.spec {
        let plan = super::pinned_plan(
            Some(spec),
            &args.lock.lock,
            &args.dirs,
            &hub,
            args.pin.locked,
            out,
        )
        .await?;
        names = vec![plan.model.name];
    }
    let mut sink = Bars::default();
    let fetched =
        vlmctl_deploy::weights::fetch(&hub, &args.lock.lock, &names, &args.dirs.dirs(), &mut sink)
            .await;
    sink.finish();
    let fetched = fetched?;
    if args.json {
        let results: Vec<serde_json::Value> = fetched
            .iter()
            .map(|f| {
                serde_json::json!({
                    "model": f.model, "path": f.path, "location": f.location,
                    "result": f.outcome,
                })
            })
            .collect();
        let doc = serde_json::json!({ "ok": true, "files": results });
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        let rows: Vec<[String; 3]> = fetched
            .iter()
            .map(|f| {
                [
                    f.model.clone(),
                    f.path.clone(),
                    crate::render::describe(&f.outcome, f.size),
                ]
            })
            .collect();
        out.stdout(&crate::render::table(&["MODEL", "FILE", "RESULT"], &rows));
    }
    Ok(exit_codes::SUCCESS)
}

/// `vlmctl weights adopt PATH...`.
pub fn adopt(args: &AdoptArgs, out: &mut Output) -> Result<u8, Failure> {
    let adopted = vlmctl_deploy::weights::adopt(
        &args.lock.lock,
        args.name.as_deref(),
        &args.paths,
        &args.dirs.dirs(),
        &mut |e: Event| progress_line(&e).iter().for_each(|l| out.progress(l)),
    )?;
    let rows: Vec<[String; 4]> = adopted
        .iter()
        .map(|a| {
            [
                a.model.clone(),
                a.role.to_string(),
                a.location.display().to_string(),
                crate::render::describe(&a.outcome, a.size),
            ]
        })
        .collect();
    out.stdout(&crate::render::table(
        &["MODEL", "ROLE", "PLACED AT", "RESULT"],
        &rows,
    ));
    Ok(exit_codes::SUCCESS)
}

/// `$XDG_DATA_HOME/vlmctl/models`, else `~/.local/share/vlmctl/models`.
fn default_models_root() -> PathBuf {
    super::xdg_dir(env_vars::XDG_DATA_HOME, "~/.local/share").join("models")
}

/// What a push says on stderr as it goes (files already there are listed at the end).
fn push_line(e: &Event) -> Option<String> {
    match e {
        Event::Warning { message } => Some(format!("warning: {message}")),
        Event::VerifiedOnHost { .. } => None,
        e => crate::render::on_host(e).or_else(|| crate::render::job_line(e)),
    }
}

/// What a fetch or a push shows as it goes: a bar per file being sent, and (a push) a line per
/// outcome; a fetch's outcomes are the table at the end.
#[derive(Default)]
struct Bars {
    bar: Option<Arc<crate::render::Bar>>,
    /// Lines for the events (a push), or none (a fetch).
    lines: bool,
}

impl Bars {
    /// Clears a bar still drawn.
    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.clear();
        }
    }
}

impl Sink for Bars {
    fn download(&mut self, _file: &str) -> Arc<dyn vlmctl_weights::FetchProgress> {
        let bar = Arc::new(crate::render::Bar::default());
        self.bar = Some(bar.clone());
        bar
    }

    fn event(&mut self, e: Event) {
        self.finish();
        if self.lines
            && let Some(line) = push_line(&e)
        {
            crate::redact::write_line(true, &line);
        }
    }
}

/// What a push did, per file (JSON with `--json`).
fn print_pushed(all: &[vlmctl_deploy::push::FileOnHost], json: bool, out: &mut Output) {
    if json {
        out.stdout(&serde_json::to_string_pretty(all).unwrap_or_default());
        return;
    }
    for f in all {
        if f.already {
            out.stdout(&format!(
                "{}: already on the host, verified there {}",
                f.name,
                crate::render::how_verified(f.stamped)
            ));
        } else {
            out.stdout(&format!(
                "{}: pushed, verified there ({} piece(s) sent, {} kept from an earlier push)",
                f.name, f.sent, f.kept
            ));
        }
    }
}

/// `vlmctl weights push`: the locked files, verified here, onto the selected host.
pub async fn push(
    args: &crate::cli::PushArgs,
    engine: &vlmctl_lifecycle::Engine,
    out: &mut Output,
) -> Result<u8, Failure> {
    let dirs = args.dirs.dirs();
    let request = vlmctl_deploy::weights::PushRequest {
        lock: &args.lock.lock,
        names: &args.names,
        dirs: &dirs,
        to: args.to.as_deref(),
        image: args.image.as_deref(),
    };
    let mut sink = Bars {
        bar: None,
        lines: true,
    };
    // A signal ends the push between two awaits: its helper is removed on the way out
    // (the command's `Sessions::close`), and the whole pieces stay on the host for the next push.
    let cancel = vlmctl_deploy::events::Cancel::new();
    let listener = crate::signals::cancel_on_signals(&cancel)?;
    let done = vlmctl_deploy::weights::push(engine, &request, &mut sink, &cancel).await;
    sink.finish();
    listener.abort();
    match done {
        Ok(all) => {
            print_pushed(&all, args.json, out);
            Ok(exit_codes::SUCCESS)
        }
        Err(e) => {
            if let vlmctl_deploy::DeployError::PushUnverified { reports } = &e {
                out.stdout(&verify_table(reports));
            }
            Err(e.into())
        }
    }
}
