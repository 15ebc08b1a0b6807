//! `weights fetch` and `weights adopt`: get the locked files into the model directory, verified.
//!
//! The invariant: a file appears under its final name in the model directory only after its
//! size, sha256 and GGUF structure matched the lock. Downloads go to the hub cache
//! (`blobs/<sha256>`, resumable), are hashed while they arrive, and are then hard-linked (or
//! copied) to a hidden temporary name in the model directory, fsync'd and renamed into place.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hf_hub::api::tokio::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use sha2::{Digest, Sha256};

use crate::error::{DigestMismatch, UpstreamChange};
use crate::hub::{HubClient, repo_cache_dir, status_error};
use crate::{LockedFile, ModelEntry, Sha256Digest, VerifyJob, WeightsError, gguf, verify_one};

/// Progress of a download, reported to whoever draws it (the CLI). Calls come from async tasks.
pub trait FetchProgress: Send + Sync {
    /// A download of `total` bytes starts; `resumed` bytes were already there.
    fn start(&self, file: &str, total: u64, resumed: u64);
    /// `bytes` more arrived.
    fn advance(&self, bytes: u64);
    /// The download ended (successfully or not).
    fn finish(&self, file: &str);
}

/// No progress output.
pub struct NoProgress;
impl FetchProgress for NoProgress {
    fn start(&self, _: &str, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self, _: &str) {}
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FetchOutcome {
    /// Already in the model directory and verified: nothing transferred.
    AlreadyPresent,
    /// Found verified in the hub cache and placed.
    FromCache,
    /// Downloaded (`resumed_from` bytes were kept from an interrupted run) and placed.
    Downloaded {
        /// Bytes that did not have to be transferred again.
        resumed_from: u64,
    },
    /// Taken from a copy the user supplied (`weights adopt`).
    Adopted {
        /// Whether a hard link was possible (no extra disk space used).
        linked: bool,
    },
}

/// The size of hf-hub's ranged requests (its own default, set here so that the bound below
/// knows it).
const CHUNK_BYTES: usize = 10_000_000;

/// Passes hf-hub's progress on, and bounds what one ranged request may deliver: hf-hub 0.4 reads
/// each chunk's whole body into memory before writing it (`download_chunk`), whatever the
/// server sends, so a hub that does not stop would fill the memory. hf-hub clones its progress
/// once per chunk request: each clone counts that request's bytes; past `limit` it tells
/// `over` and stops that request where it is (its `update` never returns), and the download is
/// abandoned with an error. (The original, never used for a request, counts nothing: hf-hub
/// reports the resumed prefix through it.)
struct ProgressAdapter {
    progress: Arc<dyn FetchProgress>,
    file: String,
    resumed: u64,
    /// This request's bytes; `None` for the original.
    received: Option<u64>,
    /// The most one request may deliver: the chunk size, or the locked size if smaller.
    limit: u64,
    over: Arc<tokio::sync::Notify>,
}

impl Clone for ProgressAdapter {
    fn clone(&self) -> Self {
        Self {
            progress: self.progress.clone(),
            file: self.file.clone(),
            resumed: self.resumed,
            received: Some(0),
            limit: self.limit,
            over: self.over.clone(),
        }
    }
}

impl hf_hub::api::tokio::Progress for ProgressAdapter {
    async fn init(&mut self, size: usize, _filename: &str) {
        self.progress.start(&self.file, size as u64, self.resumed);
    }
    async fn update(&mut self, size: usize) {
        if let Some(received) = &mut self.received {
            *received += size as u64;
            if *received > self.limit {
                self.over.notify_one();
                // Read no further: the download that waits on this request is dropped.
                std::future::pending::<()>().await;
            }
        }
        self.progress.advance(size as u64);
    }
    async fn finish(&mut self) {
        self.progress.finish(&self.file);
    }
}

impl HubClient {
    /// Gets one locked file of `model` into `dir`, verified.
    pub async fn fetch(
        &self,
        model: &ModelEntry,
        file: &LockedFile,
        dir: &Path,
        progress: Arc<dyn FetchProgress>,
    ) -> Result<FetchOutcome, WeightsError> {
        let dest = dir.join(&file.path);
        if let Some(outcome) = already_present(model, file, &dest)? {
            return Ok(outcome);
        }
        // Ask the hub first: if it serves other content for this commit, no download helps.
        let remote = self
            .file_meta(&model.repo, &model.revision, &file.path)
            .await?;
        if remote.sha256.is_some_and(|s| s != file.sha256) || remote.size != file.size {
            return Err(WeightsError::UpstreamChanged(Box::new(UpstreamChange {
                repo: model.repo.clone(),
                file: file.path.clone(),
                lock_sha256: file.sha256,
                lock_size: file.size,
                hub_sha256: remote.sha256,
                hub_size: remote.size,
            })));
        }
        let repo_dir = repo_cache_dir(&self.cache_dir, &model.repo);
        let blob = repo_dir.join("blobs").join(file.sha256.to_string());
        let cached =
            if blob.is_file() && fs::metadata(&blob).map(|m| m.len()).ok() == Some(file.size) {
                Some(hash_path(&blob)?).filter(|d| {
                    // A damaged cached copy is a miss: the models directory's file is a hard link to
                    // it, so that damage to one (a stray write in place) is damage to both.
                    let good = *d == file.sha256;
                    if !good {
                        remove_cached(&repo_dir, &model.revision, &file.path, &blob);
                    }
                    good
                })
            } else {
                None
            };
        let (digest, outcome) = match cached {
            Some(d) => (d, FetchOutcome::FromCache),
            None => self.download(model, file, &blob, progress).await?,
        };
        if digest != file.sha256 {
            // Never keep bad bytes in the cache, where the next run would trust them.
            remove_cached(&repo_dir, &model.revision, &file.path, &blob);
            let hub = self
                .file_meta(&model.repo, &model.revision, &file.path)
                .await
                .ok();
            return Err(WeightsError::DigestMismatch(Box::new(DigestMismatch {
                file: file.path.clone(),
                expected: file.sha256,
                actual: digest,
                hub_sha256: hub.and_then(|h| h.sha256),
            })));
        }
        let summary = gguf::check_file(&blob).map_err(|e| WeightsError::BadContent {
            file: file.path.clone(),
            reason: e.to_string(),
        })?;
        tracing::debug!(file = %file.path, tensors = summary.tensor_count, "structure ok");
        place(&blob, &dest)?;
        Ok(outcome)
    }

    async fn download(
        &self,
        model: &ModelEntry,
        file: &LockedFile,
        blob: &Path,
        progress: Arc<dyn FetchProgress>,
    ) -> Result<(Sha256Digest, FetchOutcome), WeightsError> {
        let part = blob.with_extension("sync.part");
        let resumed_from = committed(&part, file.size).unwrap_or(0);
        let api = ApiBuilder::from_cache(Cache::new(self.cache_dir.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(false)
            // One chunk at a time, so the committed prefix grows steadily; resume keeps that
            // prefix. hf-hub spawns a task per chunk: on a current-thread runtime (the CLI's)
            // they run in order; on a multi-threaded one they race and fewer bytes are kept.
            .with_max_files(1)
            .with_chunk_size(Some(CHUNK_BYTES))
            .build()
            .map_err(|e| self.api_error(model, file, e))?;
        let repo = api.repo(Repo::with_revision(
            model.repo.clone(),
            RepoType::Model,
            model.revision.clone(),
        ));
        let done = Arc::new(AtomicBool::new(false));
        let follower = {
            let (part, done, size) = (part.clone(), done.clone(), file.size);
            tokio::task::spawn_blocking(move || follow_hash(&part, size, &done))
        };
        let over = Arc::new(tokio::sync::Notify::new());
        let limit = file.size.min(CHUNK_BYTES as u64);
        let adapter = ProgressAdapter {
            progress,
            file: file.path.clone(),
            resumed: resumed_from,
            received: None,
            limit,
            over: over.clone(),
        };
        let result = tokio::select! {
            r = repo.download_with_progress(&file.path, adapter) => {
                r.map_err(|e| self.api_error(model, file, e))
            }
            () = over.notified() => Err(WeightsError::HubProtocol {
                url: format!(
                    "{}/{}/resolve/{}/{}",
                    self.endpoint, model.repo, model.revision, file.path
                ),
                what: format!(
                    "one ranged request of the download sent more than the {limit} bytes it asked \
                     for (the lock pins {} bytes): the download was stopped there",
                    file.size
                ),
            }),
        };
        done.store(true, Ordering::SeqCst);
        let follower_digest = follower.await.ok().and_then(Result::ok).flatten();
        result?;
        let digest = match follower_digest {
            Some(d) => d,
            // The follower could not keep up with a rename race: hash the finished blob.
            None => hash_path(blob)?,
        };
        Ok((digest, FetchOutcome::Downloaded { resumed_from }))
    }

    fn api_error(&self, model: &ModelEntry, file: &LockedFile, e: ApiError) -> WeightsError {
        if let ApiError::RequestError(r) = &e
            && let Some(status) = r.status()
        {
            return status_error(
                status,
                &reqwest::header::HeaderMap::new(),
                &model.repo,
                Some(&file.path),
                self.token.is_some(),
            );
        }
        WeightsError::Transfer {
            repo: model.repo.clone(),
            file: file.path.clone(),
            source: Box::new(e),
        }
    }
}

/// `Some(AlreadyPresent)` if `dest` verifies; an error if something else sits there (never
/// overwritten: it may be the user's); `None` if absent.
fn already_present(
    model: &ModelEntry,
    file: &LockedFile,
    dest: &Path,
) -> Result<Option<FetchOutcome>, WeightsError> {
    if !dest.exists() {
        return Ok(None);
    }
    let report = verify_one(&VerifyJob {
        model: model.name.clone(),
        file: file.clone(),
        location: dest.to_owned(),
    });
    if report.ok() {
        Ok(Some(FetchOutcome::AlreadyPresent))
    } else {
        Err(WeightsError::ExistingFileBad {
            path: dest.to_owned(),
            reason: report.status.to_string(),
        })
    }
}

/// Bytes hf-hub has committed to a `.sync.part` file: it keeps the file at `size + 8` bytes with
/// the committed prefix length in the last 8, and truncates to `size` when complete.
fn committed(part: &Path, size: u64) -> Option<u64> {
    let f = File::open(part).ok()?;
    committed_of(&f, size).ok()
}

fn committed_of(f: &File, size: u64) -> io::Result<u64> {
    let len = f.metadata()?.len();
    if len == size {
        return Ok(size);
    }
    if len != size + 8 {
        return Ok(0);
    }
    let mut buf = [0u8; 8];
    f.read_exact_at(&mut buf, size)?;
    Ok(u64::from_le_bytes(buf).min(size))
}

/// Hashes the `.sync.part` file while hf-hub writes it, following the committed prefix, so the
/// digest is ready when the last byte lands. `None` if the download ended before all bytes were
/// committed (failed, or the part vanished before we opened it).
fn follow_hash(part: &Path, size: u64, done: &AtomicBool) -> io::Result<Option<Sha256Digest>> {
    const TICK: Duration = Duration::from_millis(20);
    let f = loop {
        match File::open(part) {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if done.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                std::thread::sleep(TICK);
            }
            Err(e) => return Err(e),
        }
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut pos = 0u64;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let target = committed_of(&f, size)?;
        while pos < target {
            let want = usize::try_from((target - pos).min(buf.len() as u64)).unwrap_or(buf.len());
            let n = f.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        if pos == size {
            return Ok(Some(Sha256Digest(hasher.finalize().into())));
        }
        if finished {
            return Ok(None);
        }
        std::thread::sleep(TICK);
    }
}

fn hash_path(p: &Path) -> Result<Sha256Digest, WeightsError> {
    crate::sha256_file(p).map_err(|source| WeightsError::Io {
        path: p.to_owned(),
        source,
    })
}

fn remove_cached(repo_dir: &Path, revision: &str, file: &str, blob: &Path) {
    let _ = fs::remove_file(blob);
    let _ = fs::remove_file(repo_dir.join("snapshots").join(revision).join(file));
}

/// Puts `src` at `dest` atomically: hard link (or copy) to a hidden temporary name in the
/// destination directory, fsync, rename, fsync the directory. Returns whether it linked.
pub(crate) fn place(src: &Path, dest: &Path) -> Result<bool, WeightsError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| WeightsError::Io { path, source }
    };
    let dir = dest.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.vlmctl-partial"));
    let _ = fs::remove_file(&tmp);
    let src_real = fs::canonicalize(src).map_err(io_err(src))?;
    let linked = fs::hard_link(&src_real, &tmp).is_ok();
    let result = (|| {
        if !linked {
            copy_file(&src_real, &tmp)?;
        }
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, dest)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(WeightsError::Io {
            path: dest.to_owned(),
            source,
        });
    }
    Ok(linked)
}

fn copy_file(src: &Path, dst: &Path) -> io::Result<()> {
    let mut from = File::open(src)?;
    let mut to = File::create(dst)?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        io::Write::write_all(&mut to, &buf[..n])?;
    }
}

/// `weights adopt`: verifies a copy taken from elsewhere against the locked `file` and places it
/// in `dir` (hard link when on the same filesystem, else a copy). Nothing is placed if it fails.
pub fn adopt(
    model: &ModelEntry,
    file: &LockedFile,
    src: &Path,
    dir: &Path,
) -> Result<FetchOutcome, WeightsError> {
    let dest = dir.join(&file.path);
    if let Some(outcome) = already_present(model, file, &dest)? {
        return Ok(outcome);
    }
    let report = verify_one(&VerifyJob {
        model: model.name.clone(),
        file: file.clone(),
        location: src.to_owned(),
    });
    if !report.ok() {
        return Err(WeightsError::AdoptRejected {
            path: src.to_owned(),
            reason: report.status.to_string(),
        });
    }
    let linked = place(src, &dest)?;
    Ok(FetchOutcome::Adopted { linked })
}

/// The locked file that `src` is a copy of, matched by file name, within `model` if given.
pub fn match_adoptee<'a>(
    lock: &'a crate::WeightsLock,
    model: Option<&str>,
    src: &Path,
) -> Result<(&'a ModelEntry, &'a LockedFile), WeightsError> {
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hits: Vec<_> = lock
        .models
        .iter()
        .filter(|m| model.is_none_or(|n| m.name == n))
        .flat_map(|m| m.files.iter().map(move |f| (m, f)))
        .filter(|(_, f)| {
            Path::new(&f.path)
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == name)
        })
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(WeightsError::AdoptRejected {
            path: src.to_owned(),
            reason: format!(
                "no locked file is named {name:?}{}",
                model
                    .map(|m| format!(" in model {m:?}"))
                    .unwrap_or_default()
            ),
        }),
        many => Err(WeightsError::AdoptRejected {
            path: src.to_owned(),
            reason: format!(
                "{name:?} is locked in several models ({}): pass --name",
                many.iter()
                    .map(|(m, _)| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Default hub cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`
/// (the official client's order). Values are passed in so the CLI owns the environment.
#[must_use]
pub fn default_cache_dir(hf_hub_cache: Option<PathBuf>, hf_home: Option<PathBuf>) -> PathBuf {
    hf_hub_cache.unwrap_or_else(|| {
        hf_home.map_or_else(
            || crate::expand_home("~/.cache/huggingface/hub"),
            |h| h.join("hub"),
        )
    })
}

/// The token the official client would use when `HF_TOKEN` is unset: the file `HF_HOME/token`
/// (default `~/.cache/huggingface/token`).
#[must_use]
pub fn stored_token(hf_home: Option<&Path>) -> Option<String> {
    let path = hf_home.map_or_else(
        || crate::expand_home("~/.cache/huggingface/token"),
        |h| h.join("token"),
    );
    // Bounded and regular only, like every file vlmctl reads: a token is under 100 bytes.
    vlmctl_files::read_regular_text(&path, 64 << 10, "a token file")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Directory for one model's files: the place `fetch` and `adopt` write to.
#[must_use]
pub fn model_dir(model: &ModelEntry, override_dir: Option<&Path>, default_root: &Path) -> PathBuf {
    model.resolve_dir(override_dir, default_root)
}
