//! Weights that are exact and checkable: nothing unverified ever reaches a container.
//!
//! - [`WeightsLock`] is `weights.lock`: per model, the hub repository, the pinned commit, and each
//!   file's path, [`Role`], size and [`Sha256Digest`]. Parsing rejects malformed input with file,
//!   line and field ([`WeightsError::LockInvalid`]).
//! - [`gguf::check_file`] checks GGUF structure (magic, version, metadata, tensor infos,
//!   alignment, tensor data inside the file) with bounded reads, so a truncated download or a
//!   header that claims more tensors than the file holds (the runbook's Ollama blob: 2012 claimed,
//!   601 present) is caught before llama-server tries to load it.
//! - [`verify_all`] checks presence, size, structure and sha256 of many files in parallel and
//!   returns one [`FileReport`] per file; the lifecycle gate and `vlmctl weights verify` use it.
//! - [`HubClient`] reads file metadata from the hub (`x-repo-commit`, `x-linked-etag`,
//!   `x-linked-size`) for `weights lock`, and fetches locked files through `hf-hub` 0.4
//!   (resumable; see the `hub` module for why that line), hashing while bytes arrive and placing a
//!   file under its final name only once it verified ([`HubClient::fetch`], [`adopt`]).
//! - `fake_hub` (feature `fake-hub`) is an in-process hub for tests.

mod digest;
mod error;
#[cfg(feature = "fake-hub")]
pub mod fake_hub;
mod fetch;
pub mod gguf;
mod hub;
mod lock;
mod verify;

pub use error::{DigestMismatch, UpstreamChange, WeightsError};
pub use fetch::{
    FetchOutcome, FetchProgress, NoProgress, adopt, default_cache_dir, match_adoptee, model_dir,
    stored_token,
};
pub use hub::{
    DEFAULT_ENDPOINT, HubClient, PinRequest, RemoteFile, endpoint_password, repo_cache_dir,
};
pub use lock::{
    LOCK_VERSION, LockedFile, ModelEntry, PINNED_FROM_LOCAL, Role, Sha256Digest, UNKNOWN_REVISION,
    WeightsLock, expand_home, leading_comments,
};
pub use verify::{
    FileReport, FileStamp, FileStatus, VerifyJob, sha256_file, verify_all, verify_all_cached,
    verify_one,
};

/// The lock file's conventional name, at the repository root.
pub const LOCK_FILE: &str = "weights.lock";

/// Verification jobs for the named models (all models when `names` is empty), with the model
/// directory resolved per [`ModelEntry::resolve_dir`].
pub fn jobs_for(
    lock: &WeightsLock,
    lock_path: &std::path::Path,
    names: &[String],
    override_dir: Option<&std::path::Path>,
    default_root: &std::path::Path,
) -> Result<Vec<VerifyJob>, WeightsError> {
    Ok(select_models(lock, lock_path, names)?
        .into_iter()
        .flat_map(|m| VerifyJob::for_model(m, &m.resolve_dir(override_dir, default_root)))
        .collect())
}

/// The named models (all when `names` is empty), in the order named; an unknown name is an
/// error listing the names the lock has.
pub fn select_models<'a>(
    lock: &'a WeightsLock,
    lock_path: &std::path::Path,
    names: &[String],
) -> Result<Vec<&'a ModelEntry>, WeightsError> {
    if names.is_empty() {
        return Ok(lock.models.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            lock.model(n).ok_or_else(|| WeightsError::UnknownModel {
                name: n.clone(),
                lock: lock_path.to_owned(),
                known: lock.models.iter().map(|m| m.name.clone()).collect(),
            })
        })
        .collect()
}
