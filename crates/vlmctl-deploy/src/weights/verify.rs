//! `weights verify`: every locked file of the named entries (all when none is named), checked
//! where it is (size, sha256, GGUF structure), on several threads.

use std::path::Path;

use vlmctl_weights::{FileReport, WeightsLock, jobs_for, verify_all};

use crate::events::{Event, Sink};
use crate::{DeployError, Dirs};

/// Verifies the locked files of `names` (every entry when empty) in the lock at `lock`, on up to
/// `threads` threads (0: one per core). Announced with [`Event::Verifying`]; a failed file is a
/// report, not an error. A lock (or a selection) without files is an error.
pub fn verify(
    lock: &Path,
    names: &[String],
    dirs: &Dirs,
    threads: usize,
    sink: &mut dyn Sink,
) -> Result<Vec<FileReport>, DeployError> {
    let data = WeightsLock::load(lock)?;
    let jobs = jobs_for(&data, lock, names, dirs.dir.as_deref(), &dirs.models_root)?;
    if jobs.is_empty() {
        return Err(DeployError::LockHasNoFiles {
            lock: lock.to_owned(),
        });
    }
    sink.event(Event::Verifying {
        files: jobs.len(),
        bytes: jobs.iter().map(|j| j.file.size).sum(),
        threads: if threads == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            threads
        },
    });
    Ok(verify_all(&jobs, threads))
}
