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
