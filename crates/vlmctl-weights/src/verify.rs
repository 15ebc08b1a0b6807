//! Verification of files against the lock: presence, size, sha256, GGUF structure. Files are
//! hashed in parallel, one thread per file up to the number of cores.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use crate::gguf::{self, GgufError, GgufSummary};
use crate::lock::{LockedFile, ModelEntry, Role, Sha256Digest};

/// Block size for hashing reads: large enough that syscalls vanish next to hashing.
const READ_BLOCK: usize = 4 << 20;

/// One file to check: what the lock says and where it should be.
#[derive(Debug, Clone)]
pub struct VerifyJob {
    /// The lock entry's name.
    pub model: String,
    /// The locked file.
    pub file: LockedFile,
    /// Where it should be on disk.
    pub location: PathBuf,
}

impl VerifyJob {
    /// One job per file of `model`, located in `dir`.
    #[must_use]
    pub fn for_model(model: &ModelEntry, dir: &Path) -> Vec<Self> {
        model
            .files
            .iter()
            .map(|f| Self {
                model: model.name.clone(),
                file: f.clone(),
                location: dir.join(&f.path),
            })
            .collect()
    }
}

/// The outcome for one file. Serialises to the `--json` form.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileReport {
    /// The lock entry's name.
    pub model: String,
    /// Path inside the model directory.
    pub path: String,
    /// Model or projector.
    pub role: Role,
    /// Where it was looked for.
    pub location: PathBuf,
    /// OK, or the precise failure.
    pub status: FileStatus,
    /// GGUF summary when the structure check ran and passed.
    pub gguf: Option<GgufSummary>,
}

impl FileReport {
    /// True when the file is present, complete, hashes right and parses.
    #[must_use]
    pub fn ok(&self) -> bool {
        matches!(self.status, FileStatus::Ok)
    }
}

/// What is wrong with a file, if anything. Checked in order: presence, size, GGUF structure,
/// sha256 (so a truncated file reports the structural failure with the numbers that explain it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileStatus {
    /// All checks passed.
    Ok,
    /// No file at the location.
    Missing,
    /// The file could not be read.
    Unreadable {
        /// The I/O error.
        error: String,
    },
    /// The GGUF structure is invalid.
    BadGguf {
        /// What is wrong, with the numbers.
        error: String,
    },
    /// Wrong size.
    SizeMismatch {
        /// From the lock.
        expected: u64,
        /// On disk.
        actual: u64,
    },
    /// Wrong content.
    HashMismatch {
        /// From the lock.
        expected: Sha256Digest,
        /// Computed.
        actual: Sha256Digest,
    },
}

impl std::fmt::Display for FileStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ok => f.write_str("OK"),
            Self::Missing => f.write_str("missing"),
            Self::Unreadable { error } => write!(f, "unreadable: {error}"),
            Self::BadGguf { error } => write!(f, "bad GGUF: {error}"),
            Self::SizeMismatch { expected, actual } => {
                write!(f, "size {actual} bytes, lock says {expected}")
            }
            Self::HashMismatch { expected, actual } => {
                write!(f, "sha256 mismatch: expected {expected}, computed {actual}")
            }
        }
    }
}

/// Verifies every job, `threads` files at a time (0 = number of cores). Reports come back in
/// the order of `jobs`.
#[must_use]
pub fn verify_all(jobs: &[VerifyJob], threads: usize) -> Vec<FileReport> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        threads
    }
    .min(jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<FileReport>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let report = verify_one(job);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(report);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Verifies one file.
#[must_use]
pub fn verify_one(job: &VerifyJob) -> FileReport {
    let (status, gguf) = check(&job.file, &job.location);
    FileReport {
        model: job.model.clone(),
        path: job.file.path.clone(),
        role: job.file.role,
        location: job.location.clone(),
        status,
        gguf,
    }
}

fn check(file: &LockedFile, location: &Path) -> (FileStatus, Option<GgufSummary>) {
    let unreadable = |e: &io::Error| FileStatus::Unreadable {
        error: e.to_string(),
    };
    let actual = match std::fs::metadata(location) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => {
            return (
                FileStatus::Unreadable {
                    error: "not a regular file".to_owned(),
                },
                None,
            );
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (FileStatus::Missing, None),
        Err(e) => return (unreadable(&e), None),
    };
    let summary = match gguf::check_file(location) {
        Ok(s) => s,
        Err(GgufError::Io(e)) => return (FileStatus::Unreadable { error: e }, None),
        Err(e) => {
            return (
                FileStatus::BadGguf {
                    error: e.to_string(),
                },
                None,
            );
        }
    };
    if actual != file.size {
        return (
            FileStatus::SizeMismatch {
                expected: file.size,
                actual,
            },
            Some(summary),
        );
    }
    match sha256_file(location) {
        Ok(d) if d == file.sha256 => (FileStatus::Ok, Some(summary)),
        Ok(d) => (
            FileStatus::HashMismatch {
                expected: file.sha256,
                actual: d,
            },
            Some(summary),
        ),
        Err(e) => (unreadable(&e), None),
    }
}

/// sha256 of a file, read in large blocks.
pub fn sha256_file(path: &Path) -> io::Result<Sha256Digest> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BLOCK];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Digest(hasher.finalize().into()))
}

/// Identity of a file on disk: if none of these changed, its content did not either (short of
/// deliberate tampering with timestamps, which `weights verify` without a cache still catches).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Inode.
    pub ino: u64,
    /// Device.
    pub dev: u64,
    /// The sha256 it verified against.
    pub sha256: String,
}

fn stamp(path: &Path, sha256: &Sha256Digest) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ino: m.ino(),
        dev: m.dev(),
        sha256: sha256.to_string(),
    })
}

/// [`verify_all`] with a fast path: a file whose stamp (size, mtime, inode, device, expected
/// sha256) matches the one recorded in `cache` when it last verified is checked for presence,
/// size and GGUF structure but not hashed again. The cache (JSON) is updated with every file
/// that verifies and loses every file that does not. Returns the reports and how many files
/// took the fast path.
#[must_use]
pub fn verify_all_cached(
    jobs: &[VerifyJob],
    threads: usize,
    cache: &Path,
) -> (Vec<FileReport>, usize) {
    use std::collections::BTreeMap;
    let mut stamps: BTreeMap<String, FileStamp> = std::fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let key = |j: &VerifyJob| j.location.display().to_string();
    let (fast, slow): (Vec<&VerifyJob>, Vec<&VerifyJob>) = jobs.iter().partition(|j| {
        stamps
            .get(&key(j))
            .is_some_and(|s| Some(s) == stamp(&j.location, &j.file.sha256).as_ref())
    });
    let slow_owned: Vec<VerifyJob> = slow.iter().map(|j| (*j).clone()).collect();
    let mut by_location: BTreeMap<String, FileReport> = verify_all(&slow_owned, threads)
        .into_iter()
        .map(|r| (r.location.display().to_string(), r))
        .collect();
    let mut fast_count = 0;
    for j in &fast {
        // Size and structure are cheap; only the hash is skipped.
        let summary = gguf::check_file(&j.location);
        let status = match &summary {
            Ok(_) => {
                fast_count += 1;
                FileStatus::Ok
            }
            Err(e) => FileStatus::BadGguf {
                error: e.to_string(),
            },
        };
        by_location.insert(
            key(j),
            FileReport {
                model: j.model.clone(),
                path: j.file.path.clone(),
                role: j.file.role,
                location: j.location.clone(),
                status,
                gguf: summary.ok(),
            },
        );
    }
    let reports: Vec<FileReport> = jobs
        .iter()
        .filter_map(|j| by_location.remove(&key(j)))
        .collect();
    for (j, r) in jobs.iter().zip(&reports) {
        match (r.ok(), stamp(&j.location, &j.file.sha256)) {
            (true, Some(s)) => {
                stamps.insert(key(j), s);
            }
            _ => {
                stamps.remove(&key(j));
            }
        }
    }
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = cache.with_extension("json.tmp");
    if std::fs::write(&tmp, serde_json::to_vec_pretty(&stamps).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, cache);
    }
    (reports, fast_count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::Role;

    #[test]
    fn cached_verification_skips_hashing_only_while_the_file_is_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let data = crate::gguf::synthetic(&[("w", &[32], 0)]);
        let path = tmp.path().join("m.gguf");
        std::fs::write(&path, &data).unwrap();
        let job = VerifyJob {
            model: "m".into(),
            file: LockedFile {
                path: "m.gguf".into(),
                role: Role::Model,
                size: data.len() as u64,
                sha256: Sha256Digest(Sha256::digest(&data).into()),
            },
            location: path.clone(),
        };
        let cache = tmp.path().join("state/verified.json");
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 0, "first run hashes");
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 1, "unchanged: fast path");
        // Same size, different content, new mtime: hashed again and caught.
        let mut bad = data.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::thread::sleep(std::time::Duration::from_millis(10)); // distinct mtime, not synchronisation
        std::fs::write(&path, &bad).unwrap();
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert_eq!(fast, 0);
        assert!(
            matches!(r[0].status, FileStatus::HashMismatch { .. }),
            "{:?}",
            r[0].status
        );
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(
            !r[0].ok() && fast == 0,
            "a failed file never takes the fast path"
        );
    }
}
