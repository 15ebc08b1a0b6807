//! `vlmctl weights ...`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vlmctl_deploy::pin::{Change, Pinned};
use vlmctl_weights::{FileReport, Lock, PinRequest, Role, jobs_for, verify_all};

use crate::cli::{AdoptArgs, DirArgs, FetchArgs, LockCmdArgs, UpdateArgs, VerifyArgs};
use crate::failure::Failure;
use crate::{Output, env_vars, exit_codes};

/// `vlmctl weights verify`: a table (or JSON), exit 4 if any file fails.
pub fn verify(args: &VerifyArgs, out: &mut Output) -> Result<u8, Failure> {
    let lock = Lock::load(&args.lock.lock)?;
    let root = args.dirs.models_root();
    let jobs = jobs_for(
        &lock,
        &args.lock.lock,
        &args.names,
        args.dirs.dir.as_deref(),
        &root,
    )?;
    if jobs.is_empty() {
        return Err(Failure::new(
            anyhow::anyhow!("{} locks no files", args.lock.lock.display()),
            Some(
                "add a [[model]] entry with its [[model.file]] tables (docs/weights.md, \"weights.lock\")"
                    .to_owned(),
            ),
            exit_codes::INVALID_INPUT,
        ));
    }
    let total: u64 = jobs.iter().map(|j| j.file.size).sum();
    out.progress(&format!(
        "verifying {} file(s), {}, on up to {} thread(s)",
        jobs.len(),
        crate::render::human_bytes(total),
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
}

/// `vlmctl weights lock REPO FILE...`: pins files from hub metadata, without downloading.
pub async fn lock(args: &LockCmdArgs, out: &mut Output) -> Result<u8, Failure> {
    let path = &args.lock.lock;
    if args.pin.locked {
        return Err(locked_refusal(path, "`weights lock` writes an entry"));
    }
    // Validated before any network traffic; a missing lock is created.
    let existing = if path.exists() {
        Some(Lock::load(path)?)
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
        out.progress(&format!(
            "resolving {}@{} on {}",
            args.repo,
            args.revision,
            hub.endpoint()
        ));
        hub.resolve(&request).await?
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
    let lock = Lock::load(path)?;
    let models = vlmctl_weights::select_models(&lock, path, &args.names)?;
    if models.is_empty() {
        out.stdout(&format!(
            "{} has no entries: nothing to update",
            path.display()
        ));
        return Ok(exit_codes::SUCCESS);
    }
    let hub = super::hub_client(&args.hub)?;
    let mut rows = Vec::new();
    let mut report = Vec::new();
    let mut changed = Vec::new();
    for m in models {
        let Some(tracks) = &m.tracks else {
            rows.push([
                m.name.clone(),
                "-".to_owned(),
                m.revision.clone(),
                "pinned to a commit, not a branch or tag: nothing to resolve".to_owned(),
            ]);
            report.push(serde_json::json!({"name": m.name, "result": "not_tracking"}));
            continue;
        };
        out.progress(&format!(
            "resolving {}@{tracks} on {}",
            m.repo,
            hub.endpoint()
        ));
        let entry = hub
            .resolve(&PinRequest {
                name: m.name.clone(),
                repo: m.repo.clone(),
                revision: tracks.clone(),
                files: m.files.iter().map(|f| (f.path.clone(), f.role)).collect(),
                dir: m.dir.clone(),
                tracks: None,
            })
            .await?;
        let result = if entry == *m {
            "unchanged".to_owned()
        } else {
            let files = entry
                .files
                .iter()
                .zip(&m.files)
                .filter(|(a, b)| a != b)
                .count();
            if files == 0 {
                "new commit, same files".to_owned()
            } else {
                format!("new commit, {files} file(s) changed")
            }
        };
        rows.push([
            m.name.clone(),
            tracks.clone(),
            if entry.revision == m.revision {
                m.revision.clone()
            } else {
                format!("{} -> {}", m.revision, entry.revision)
            },
            result.clone(),
        ]);
        report.push(serde_json::json!({"name": m.name, "result": result, "from": m.revision, "to": entry.revision}));
        if entry != *m {
            changed.push(entry);
        }
    }
    if args.pin.locked && !changed.is_empty() {
        let names: Vec<&str> = changed.iter().map(|e| e.name.as_str()).collect();
        return Err(locked_refusal(
            path,
            &format!("upstream moved: {} would be updated", names.join(", ")),
        ));
    }
    vlmctl_deploy::pin::write_entries(path, &changed)?;
    if args.json {
        let doc = serde_json::json!({"lock": path, "updated": changed.len(), "entries": report});
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        let mut text = crate::render::table(&["MODEL", "TRACKS", "COMMIT", "RESULT"], &rows);
        if !changed.is_empty() {
            let _ = write!(
                text,
                "\n{} entr{} updated in {}: fetch and verify the new files (`vlmctl weights fetch`), then commit the lock",
                changed.len(),
                if changed.len() == 1 { "y" } else { "ies" },
                path.display()
            );
        }
        out.stdout(&text);
    }
    Ok(exit_codes::SUCCESS)
}

/// Exit 3: `--locked` (or `VLMCTL_LOCKED`) and the command would change the lock.
fn locked_refusal(path: &Path, what: &str) -> Failure {
    Failure::new(
        anyhow::anyhow!(
            "{what}, and --locked (VLMCTL_LOCKED) forbids changing {}",
            path.display()
        ),
        Some("run without --locked (and unset VLMCTL_LOCKED) to change the lock".to_owned()),
        exit_codes::INVALID_INPUT,
    )
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
    let mut names = args.names.clone();
    if let Some(spec) = &args.spec {
        let plan = super::pinned_plan(
            Some(spec),
            &args.lock.lock,
            &args.dirs,
            &args.hub,
            args.pin.locked,
            out,
        )
        .await?;
        names = vec![plan.model.name];
    }
    let lock = Lock::load(&args.lock.lock)?;
    let root = args.dirs.models_root();
    // Validates the names before any network traffic.
    let models = vlmctl_weights::select_models(&lock, &args.lock.lock, &names)?;
    let hub = super::hub_client(&args.hub)?;
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for model in models {
        let dir = vlmctl_weights::model_dir(model, args.dirs.dir.as_deref(), &root);
        for file in &model.files {
            let bar = Arc::new(crate::render::Bar::default());
            let outcome = hub.fetch(model, file, &dir, bar.clone()).await;
            bar.clear();
            let outcome = outcome?;
            rows.push([
                model.name.clone(),
                file.path.clone(),
                crate::render::describe(&outcome, file.size),
            ]);
            results.push(serde_json::json!({
                "model": model.name, "path": file.path, "location": dir.join(&file.path),
                "result": outcome,
            }));
        }
    }
    if args.json {
        let doc = serde_json::json!({ "ok": true, "files": results });
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        out.stdout(&crate::render::table(&["MODEL", "FILE", "RESULT"], &rows));
    }
    Ok(exit_codes::SUCCESS)
}

/// `vlmctl weights adopt PATH...`.
pub fn adopt(args: &AdoptArgs, out: &mut Output) -> Result<u8, Failure> {
    let lock = Lock::load(&args.lock.lock)?;
    if let Some(n) = &args.name {
        vlmctl_weights::select_models(&lock, &args.lock.lock, std::slice::from_ref(n))?;
    }
    let root = args.dirs.models_root();
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for src in &args.paths {
        let (model, file) = vlmctl_weights::match_adoptee(&lock, args.name.as_deref(), src)?;
        let dir = vlmctl_weights::model_dir(model, args.dirs.dir.as_deref(), &root);
        out.progress(&format!(
            "verifying {} ({})",
            src.display(),
            crate::render::human_bytes(file.size)
        ));
        let outcome = vlmctl_weights::adopt(model, file, src, &dir)?;
        results.push(serde_json::json!({"model": model.name, "source": src, "location": dir.join(&file.path), "result": outcome}));
        rows.push([
            model.name.clone(),
            file.role.to_string(),
            dir.join(&file.path).display().to_string(),
            crate::render::describe(&outcome, file.size),
        ]);
    }
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
fn push_line(e: &vlmctl_deploy::events::Event) -> Option<String> {
    use vlmctl_deploy::events::Event;
    match e {
        Event::Warning { message } => Some(format!("warning: {message}")),
        Event::VerifiedOnHost { .. } => None,
        e => crate::render::on_host(e),
    }
}

/// What a push shows as it goes: a bar per file being sent, a line per outcome.
#[derive(Default)]
struct PushProgress {
    bar: Option<std::sync::Arc<crate::render::Bar>>,
}

impl PushProgress {
    /// Clears a bar still drawn.
    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.clear();
        }
    }
}

impl vlmctl_deploy::events::Sink for PushProgress {
    fn download(&mut self, _file: &str) -> std::sync::Arc<dyn vlmctl_weights::FetchProgress> {
        let bar = std::sync::Arc::new(crate::render::Bar::default());
        self.bar = Some(bar.clone());
        bar
    }

    fn event(&mut self, e: vlmctl_deploy::events::Event) {
        if let Some(b) = self.bar.take() {
            b.clear();
        }
        if let Some(line) = push_line(&e) {
            crate::redact::write_line(true, &line);
        }
    }
}

/// The files to push, by the host's directory they go to (one helper each): the same absolute
/// path as here, or `to`. A relative `to`, or one with a `:`, would be read by Docker as a
/// volume name or a bind's options: refused.
fn by_dir(
    jobs: &[vlmctl_weights::VerifyJob],
    to: Option<&std::path::Path>,
) -> Result<
    std::collections::BTreeMap<
        std::path::PathBuf,
        Vec<(vlmctl_lifecycle::remote::Want, std::path::PathBuf)>,
    >,
    Failure,
> {
    if let Some(t) = to
        && (!t.is_absolute() || t.to_string_lossy().contains(':'))
    {
        return Err(Failure::new(
            anyhow::anyhow!(
                "--to {}: the host's folder must be an absolute path without ':'",
                t.display()
            ),
            Some("--to /var/lib/models/gemma, say".to_owned()),
            exit_codes::USAGE,
        ));
    }
    let mut by_dir: std::collections::BTreeMap<std::path::PathBuf, Vec<_>> =
        std::collections::BTreeMap::new();
    for j in jobs {
        let here = j
            .location
            .to_string_lossy()
            .strip_suffix(&j.file.path)
            .map_or_else(|| j.location.clone(), std::path::PathBuf::from);
        let there = to.map_or(here, std::path::Path::to_path_buf);
        by_dir.entry(there).or_default().push((
            vlmctl_lifecycle::remote::Want {
                name: j.file.path.clone(),
                size: j.file.size,
                sha256: j.file.sha256.to_string(),
            },
            j.location.clone(),
        ));
    }
    Ok(by_dir)
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
pub async fn push(args: &crate::cli::PushArgs, out: &mut Output) -> Result<u8, Failure> {
    let host = vlmctl_lifecycle::hosts::selected();
    if matches!(host, vlmctl_lifecycle::hosts::Host::Local) {
        return Err(Failure::new(
            anyhow::anyhow!("weights push needs another host: this one is where the files are"),
            Some("name it: --host beast, or --host ssh://user@host[:port]".to_owned()),
            exit_codes::USAGE,
        ));
    }
    let lock = Lock::load(&args.lock.lock)?;
    let jobs = jobs_for(
        &lock,
        &args.lock.lock,
        &args.names,
        args.dirs.dir.as_deref(),
        &args.dirs.models_root(),
    )?;
    if jobs.is_empty() {
        return Err(Failure::new(
            anyhow::anyhow!("{} locks no files", args.lock.lock.display()),
            None,
            exit_codes::INVALID_INPUT,
        ));
    }
    // Only the locked bytes leave this machine.
    let reports = verify_all(&jobs, 0);
    if reports.iter().any(|r| !r.ok()) {
        out.stdout(&verify_table(&reports));
        return Err(Failure::new(
            anyhow::anyhow!("the files here do not verify: nothing was pushed"),
            Some("`vlmctl weights fetch` puts the locked files here first".to_owned()),
            exit_codes::VERIFY_FAILED,
        ));
    }
    let image = match &args.image {
        Some(i) => i.clone(),
        None => vlmctl_deploy::plan::load_spec(None)?.image,
    };
    let docker = vlmctl_lifecycle::connect().await?;
    vlmctl_lifecycle::containers::ensure_image(&docker, &image, None, &mut |_| {}).await?;
    let by_dir = by_dir(&jobs, args.to.as_deref())?;
    let mut all = Vec::new();
    // Staging folders no lock entry names any more may go; every file the lock names is kept
    // resumable, whichever models this push is for.
    let keep: std::collections::BTreeSet<String> = lock
        .models
        .iter()
        .flat_map(|m| m.files.iter().map(|f| f.sha256.to_string()))
        .collect();
    let mut sink = PushProgress::default();
    // A signal ends the push between two awaits: its helper is removed on the way out
    // (`remove_dropped`), and the whole pieces stay on the host for the next push.
    let cancel = vlmctl_deploy::events::Cancel::new();
    let listener = crate::commands::provision::cancel_on_signals(&cancel)?;
    for (dir, files) in &by_dir {
        out.progress(&format!(
            "{} file(s) to {}:{}",
            files.len(),
            host.name(),
            dir.display()
        ));
        let done = tokio::select! {
            done = vlmctl_deploy::push::to_host(&docker, &image, dir, files, &keep, &mut sink) => done,
            why = cancel.cancelled() => {
                sink.finish();
                listener.abort();
                return Err(Failure::new(
                    anyhow::anyhow!("weights push stopped by {why}"),
                    Some("push again: the whole pieces already on the host are kept".to_owned()),
                    exit_codes::INTERRUPTED,
                ));
            }
        };
        all.extend(done.inspect_err(|_| sink.finish())?);
    }
    sink.finish();
    listener.abort();
    print_pushed(&all, args.json, out);
    Ok(exit_codes::SUCCESS)
}
