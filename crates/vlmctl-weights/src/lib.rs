//! Weights that are exact and checkable: nothing unverified ever reaches a container.
//!
//! - [`Lock`] is `weights.lock`: per model, the hub repository, the pinned commit, and each
//!   file's path, [`Role`], size and [`Sha256Digest`]. Parsing rejects malformed input with file,
//!   line and field ([`WeightsError::LockInvalid`]).
//! - [`gguf::check_file`] checks GGUF structure (magic, version, metadata, tensor infos,
//!   alignment, tensor data inside the file) with bounded reads, so a truncated download or a
//!   header that claims more tensors than the file holds (the runbook's Ollama blob: 2012 claimed,
//!   601 present) is caught before llama-server tries to load it.
//! - [`verify_all`] checks presence, size, structure and sha256 of many files in parallel and
//!   returns one [`FileReport`] per file; the lifecycle gate and `vlmctl weights verify` use it.

mod error;
pub mod gguf;
mod lock;
mod verify;

pub use error::WeightsError;
pub use lock::{LOCK_VERSION, Lock, LockedFile, ModelEntry, Role, Sha256Digest, expand_home};
pub use verify::{FileReport, FileStatus, VerifyJob, sha256_file, verify_all, verify_one};

/// The lock file's conventional name, at the repository root.
pub const LOCK_FILE: &str = "weights.lock";

/// Verification jobs for the named models (all models when `names` is empty), with the model
/// directory resolved per [`ModelEntry::resolve_dir`].
pub fn jobs_for(
    lock: &Lock,
    lock_path: &std::path::Path,
    names: &[String],
    override_dir: Option<&std::path::Path>,
    default_root: &std::path::Path,
) -> Result<Vec<VerifyJob>, WeightsError> {
    let models: Vec<&ModelEntry> = if names.is_empty() {
        lock.models.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                lock.model(n).ok_or_else(|| WeightsError::UnknownModel {
                    name: n.clone(),
                    lock: lock_path.to_owned(),
                    known: lock.models.iter().map(|m| m.name.clone()).collect(),
                })
            })
            .collect::<Result<_, _>>()?
    };
    Ok(models
        .into_iter()
        .flat_map(|m| VerifyJob::for_model(m, &m.resolve_dir(override_dir, default_root)))
        .collect())
}
