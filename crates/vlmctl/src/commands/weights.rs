//! `vlmctl weights ...`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use vlmctl_weights::{
    FetchOutcome, FetchProgress, FileReport, HubClient, Lock, LockedFile, ModelEntry, Role,
    jobs_for, verify_all,
};

use crate::cli::{AdoptArgs, DirArgs, FetchArgs, HubArgs, LockCmdArgs, VerifyArgs};
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

impl DirArgs {
    /// `--models-dir`, else the default root.
    pub(crate) fn models_root(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_root)
    }
}

pub(crate) fn hub_client(args: &HubArgs) -> Result<HubClient, Failure> {
    let env_path = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let hf_home = env_path(env_vars::HF_HOME);
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| vlmctl_weights::default_cache_dir(None, hf_home.clone()));
    let token = std::env::var(env_vars::HF_TOKEN)
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| vlmctl_weights::stored_token(hf_home.as_deref()))
        .inspect(|t| crate::redact::secret(t));
    Ok(HubClient::new(&args.endpoint, token, cache)?)
}

/// `vlmctl weights lock REPO FILE...`: pins files from hub metadata, without downloading.
pub async fn lock(args: &LockCmdArgs, out: &mut Output) -> Result<u8, Failure> {
    let path = &args.lock.lock;
    let mut lock = if path.exists() {
        Lock::load(path)?
    } else {
        Lock { models: Vec::new() }
    };
    let hub = hub_client(&args.hub)?;
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
    let fail = |e: std::io::Error| {
        Failure::new(
            anyhow::Error::new(e).context(format!("cannot write {}", path.display())),
            Some("check the permissions of the lock's directory".to_owned()),
            exit_codes::ENVIRONMENT,
        )
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, text).map_err(fail)?;
    let done = std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

/// `vlmctl weights fetch`: every locked file of the named models, one after another.
pub async fn fetch(args: &FetchArgs, out: &mut Output) -> Result<u8, Failure> {
    let lock = Lock::load(&args.lock.lock)?;
    let root = args.dirs.models_root();
    // Validates the names before any network traffic.
    let models = vlmctl_weights::select_models(&lock, &args.lock.lock, &args.names)?;
    let hub = hub_client(&args.hub)?;
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for model in models {
        let dir = vlmctl_weights::model_dir(model, args.dirs.dir.as_deref(), &root);
        for file in &model.files {
            let bar = Arc::new(Bar::default());
            let outcome = hub.fetch(model, file, &dir, bar.clone()).await;
            bar.clear();
            let outcome = outcome?;
            rows.push([
                model.name.clone(),
                file.path.clone(),
                describe(&outcome, file.size),
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
        out.stdout(&crate::table::render(&["MODEL", "FILE", "RESULT"], &rows));
    }
    Ok(exit_codes::SUCCESS)
}

pub(crate) fn describe(outcome: &FetchOutcome, size: u64) -> String {
    match outcome {
        FetchOutcome::AlreadyPresent => "already present, verified".to_owned(),
        FetchOutcome::FromCache => format!("verified from the hub cache ({})", human_bytes(size)),
        FetchOutcome::Downloaded { resumed_from: 0 } => {
            format!("downloaded and verified ({})", human_bytes(size))
        }
        FetchOutcome::Downloaded { resumed_from } => format!(
            "downloaded and verified ({}, resumed after {})",
            human_bytes(size),
            human_bytes(*resumed_from)
        ),
        FetchOutcome::Adopted { linked: true } => "adopted (hard link), verified".to_owned(),
        FetchOutcome::Adopted { linked: false } => "adopted (copied), verified".to_owned(),
    }
}

/// A progress bar per download on stderr (hidden when stderr is not a terminal).
#[derive(Default)]
pub(crate) struct Bar(Mutex<Option<ProgressBar>>);

impl Bar {
    pub(crate) fn clear(&self) {
        if let Some(b) = self.0.lock().ok().and_then(|mut b| b.take()) {
            b.finish_and_clear();
        }
    }
}

impl FetchProgress for Bar {
    fn start(&self, file: &str, total: u64, resumed: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(file.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        if resumed > 0 {
            bar.println(format!("{file}: resuming after {}", human_bytes(resumed)));
        }
        if let Ok(mut b) = self.0.lock() {
            *b = Some(bar);
        }
    }
    fn advance(&self, bytes: u64) {
        if let Some(b) = self.0.lock().ok().as_ref().and_then(|b| b.as_ref()) {
            b.inc(bytes);
        }
    }
    fn finish(&self, _file: &str) {}
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
            human_bytes(file.size)
        ));
        let outcome = vlmctl_weights::adopt(model, file, src, &dir)?;
        results.push(serde_json::json!({"model": model.name, "source": src, "location": dir.join(&file.path), "result": outcome}));
        rows.push([
            model.name.clone(),
            dir.join(&file.path).display().to_string(),
            describe(&outcome, file.size),
        ]);
    }
    out.stdout(&crate::table::render(
        &["MODEL", "PLACED AT", "RESULT"],
        &rows,
    ));
    Ok(exit_codes::SUCCESS)
}

/// `$XDG_DATA_HOME/vlmctl/models`, else `~/.local/share/vlmctl/models`.
fn default_models_root() -> PathBuf {
    super::xdg_dir(env_vars::XDG_DATA_HOME, "~/.local/share").join("models")
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
