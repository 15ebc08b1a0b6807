//! `vlmctl weights ...`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vlmctl_weights::{FileReport, Lock, LockedFile, ModelEntry, Role, jobs_for, verify_all};

use crate::cli::{AdoptArgs, DirArgs, FetchArgs, LockCmdArgs, VerifyArgs};
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
    let mut lock = if path.exists() {
        Lock::load(path)?
    } else {
        Lock { models: Vec::new() }
    };
    let hub = super::hub_client(&args.hub)?;
    out.progress(&format!(
        "resolving {}@{} on {}",
        args.repo,
        args.revision,
        hub.endpoint()
    ));
    let commit = hub.commit_of(&args.repo, &args.revision).await?;
    let mut files = Vec::new();
    for file in &args.files {
        let meta = hub.file_meta(&args.repo, &commit, file).await?;
        let Some(sha256) = meta.sha256 else {
            return Err(Failure::new(
                anyhow::anyhow!(
                    "{}/{file} at {commit} is not stored with Git LFS: the hub's metadata has no sha256",
                    args.repo
                ),
                Some("GGUF weights are LFS files; check the file name".to_owned()),
                exit_codes::INVALID_INPUT,
            ));
        };
        files.push(LockedFile {
            path: file.clone(),
            role: if file.to_ascii_lowercase().contains("mmproj") {
                Role::Mmproj
            } else {
                Role::Model
            },
            size: meta.size,
            sha256,
        });
    }
    let name = args.name.clone().unwrap_or_else(|| default_name(&files));
    let previous = lock.models.iter().position(|m| m.name == name);
    let dir = args
        .dir
        .clone()
        .or_else(|| previous.and_then(|i| lock.models[i].dir.clone()));
    let entry = ModelEntry {
        name: name.clone(),
        repo: args.repo.clone(),
        revision: commit.clone(),
        dir,
        files,
    };
    match previous {
        Some(i) => lock.models[i] = entry,
        None => lock.models.push(entry),
    }
    // Round-trip through the parser: what we write must be a lock we accept.
    let text = lock.to_toml();
    Lock::parse(&text, path)?;
    write_atomically(path, &text)?;
    if args.json {
        let entry = lock.model(&name);
        let doc = serde_json::json!({"action": if previous.is_some() { "updated" } else { "added" }, "lock": path, "entry": entry});
        out.stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(exit_codes::SUCCESS);
    }
    out.stdout(&format!(
        "{} {name}: {}@{commit}, {} file(s) in {}",
        if previous.is_some() {
            "updated"
        } else {
            "added"
        },
        args.repo,
        args.files.len(),
        path.display()
    ));
    Ok(exit_codes::SUCCESS)
}

fn default_name(files: &[LockedFile]) -> String {
    let model = files
        .iter()
        .find(|f| f.role == Role::Model)
        .or(files.first());
    model
        .map(|f| {
            Path::new(&f.path)
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase().replace('_', "-"))
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn write_atomically(path: &Path, text: &str) -> Result<(), Failure> {
    vlmctl_deploy::write_atomically(path, text.as_bytes()).map_err(|e| {
        Failure::new(
            anyhow::Error::new(e).context(format!("cannot write {}", path.display())),
            Some("check the permissions of the lock's directory".to_owned()),
            exit_codes::ENVIRONMENT,
        )
    })
}

/// `vlmctl weights fetch`: every locked file of the named models, one after another.
pub async fn fetch(args: &FetchArgs, out: &mut Output) -> Result<u8, Failure> {
    let lock = Lock::load(&args.lock.lock)?;
    let root = args.dirs.models_root();
    // Validates the names before any network traffic.
    let models = vlmctl_weights::select_models(&lock, &args.lock.lock, &args.names)?;
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
            dir.join(&file.path).display().to_string(),
            crate::render::describe(&outcome, file.size),
        ]);
    }
    out.stdout(&crate::render::table(
        &["MODEL", "PLACED AT", "RESULT"],
        &rows,
    ));
    Ok(exit_codes::SUCCESS)
}

/// `$XDG_DATA_HOME/vlmctl/models`, else `~/.local/share/vlmctl/models`.
fn default_models_root() -> PathBuf {
    super::xdg_dir(env_vars::XDG_DATA_HOME, "~/.local/share").join("models")
}
