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
    parallel(jobs, threads, verify_one)
}

/// `f` over every item, `threads` at a time (0 = number of cores), results in input order.
fn parallel<J: Sync, T: Send>(items: &[J], threads: usize, f: impl Fn(&J) -> T + Sync) -> Vec<T> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        threads
    }
    .min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(result);
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

/// Identity of a file on disk: if none of these changed, its content did not either. The mtime
/// alone would not do: whoever can write the file can also set its mtime back (`touch -r`,
/// utimensat(2)) after an edit in place. The ctime cannot be set back: every write, truncate,
/// chmod, rename or timestamp change moves it to the current time, and only changing the system
/// clock would make an old value come round again. `weights verify` (no cache) always hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status change time (ctime), ns since the epoch. `None` in a cache written before it was
    /// recorded: such an entry never equals a live stamp, so the file is hashed again.
    #[serde(default)]
    pub ctime_ns: Option<i128>,
    /// Inode.
    pub ino: u64,
    /// Device.
    pub dev: u64,
    /// The sha256 it verified against.
    pub sha256: String,
}

fn wall_clock_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Whether the file's timestamps were settled when the check started (not "racily clean"):
/// the rule [`vlmctl_base::stamp::settled`]. A stamp without a ctime never is.
fn settled_before(s: &FileStamp, started_ns: i128) -> bool {
    s.ctime_ns
        .is_some_and(|c| vlmctl_base::stamp::settled(s.mtime_ns, c, started_ns))
}

fn stamp(path: &Path, sha256: &Sha256Digest) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: m.len(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: Some(ns(m.ctime(), m.ctime_nsec())),
        ino: m.ino(),
        dev: m.dev(),
        sha256: sha256.to_string(),
    })
}

/// [`verify_all`] with a fast path: a file whose stamp (size, mtime, ctime, inode, device,
/// expected sha256) matches the one recorded in `cache` when it last verified is checked for
/// presence, size and GGUF structure but not hashed again. A stamp is recorded only for a file
/// that verified and whose stamp was the same just before and just after its check, so a file
/// changed while it was being hashed is hashed again next time; the cache (JSON) loses every
/// file that does not verify. Returns the reports and how many files took the fast path.
#[must_use]
pub fn verify_all_cached(
    jobs: &[VerifyJob],
    threads: usize,
    cache: &Path,
) -> (Vec<FileReport>, usize) {
    verify_all_cached_with(jobs, threads, cache, &verify_one)
}

/// One file's result in [`verify_all_cached`].
struct CachedOutcome {
    report: FileReport,
    /// What to record in the cache; `None` removes the file's entry.
    remember: Option<FileStamp>,
    /// Whether the hash was skipped.
    fast: bool,
}

/// [`verify_all_cached`] with the full check as a parameter, so that a test can change a file
/// while it is being checked.
fn verify_all_cached_with(
    jobs: &[VerifyJob],
    threads: usize,
    cache: &Path,
    full_check: &(dyn Fn(&VerifyJob) -> FileReport + Sync),
) -> (Vec<FileReport>, usize) {
    use std::collections::BTreeMap;
    // An unreadable or outdated cache is an empty one: every file is hashed.
    let mut stamps: BTreeMap<String, FileStamp> = std::fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let key = |j: &VerifyJob| j.location.display().to_string();
    let outcomes = parallel(jobs, threads, |j| {
        let now = || stamp(&j.location, &j.file.sha256);
        // Size and structure are cheap; only the hash is skipped. The stamp is taken again after
        // the structure check so that an OK never describes a file that changed meanwhile.
        let fast = stamps
            .get(&key(j))
            .filter(|s| now().as_ref() == Some(*s))
            .and_then(|cached| {
                let summary = gguf::check_file(&j.location).ok()?;
                (now().as_ref() == Some(cached)).then(|| CachedOutcome {
                    report: FileReport {
                        model: j.model.clone(),
                        path: j.file.path.clone(),
                        role: j.file.role,
                        location: j.location.clone(),
                        status: FileStatus::Ok,
                        gguf: Some(summary),
                    },
                    remember: Some(cached.clone()),
                    fast: true,
                })
            });
        if let Some(outcome) = fast {
            return outcome;
        }
        // Remembered only if nothing moved while it was hashed, and only if its last change is
        // older than the clock's coarseness: timestamps come from a coarse clock (a few ms a
        // tick), so a same-size change within the tick of the file's previous change would
        // leave every timestamp as it was (git calls such entries "racily clean"). A file
        // changed just before the check is hashed again next time instead.
        let started_ns = wall_clock_ns();
        let before = now();
        let report = full_check(j);
        let after = now();
        CachedOutcome {
            remember: before.filter(|b| {
                report.ok() && after.as_ref() == Some(b) && settled_before(b, started_ns)
            }),
            report,
            fast: false,
        }
    });
    let mut fast_count = 0;
    let mut reports = Vec::with_capacity(outcomes.len());
    for (j, outcome) in jobs.iter().zip(outcomes) {
        fast_count += usize::from(outcome.fast);
        match outcome.remember {
            Some(s) => {
                stamps.insert(key(j), s);
            }
            None => {
                stamps.remove(&key(j));
            }
        }
        reports.push(outcome.report);
    }
    // Best effort: without the cache the next run hashes again, nothing worse.
    let text = serde_json::to_vec_pretty(&stamps).unwrap_or_default();
    let _ = vlmctl_files::write_atomic(cache, &text);
    (reports, fast_count)
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};
    use std::time::Duration;

    use super::*;
    use crate::lock::Role;

    /// A small valid GGUF at `dir/m.gguf` and its job, locked to the content written.
    fn locked_file(dir: &Path) -> (VerifyJob, Vec<u8>) {
        let data = crate::gguf::synthetic(&[("w", &[32], 0)]);
        let path = dir.join("m.gguf");
        std::fs::write(&path, &data).unwrap();
        let job = VerifyJob {
            model: "m".into(),
            file: LockedFile {
                path: "m.gguf".into(),
                role: Role::Model,
                size: data.len() as u64,
                sha256: Sha256Digest(Sha256::digest(&data).into()),
            },
            location: path,
        };
        (job, data)
    }

    /// What `dd conv=notrunc` then `touch -r` do: 4 bytes of tensor data changed in place, same
    /// length, then the mtime (and atime) put back to the nanosecond.
    fn edit_in_place_keeping_mtime(path: &Path) {
        let before = std::fs::metadata(path).unwrap();
        let times = std::fs::FileTimes::new()
            .set_modified(before.modified().unwrap())
            .set_accessed(before.accessed().unwrap());
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::End(-4)).unwrap();
        f.write_all(&[0xDE, 0xAD, 0xBE, 0xEF]).unwrap();
        f.set_times(times).unwrap();
        drop(f);
        let after = std::fs::metadata(path).unwrap();
        assert_eq!(after.len(), before.len());
        assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    }

    /// Timestamps come from a coarse clock (one tick is up to 10 ms): a pause makes the edit's
    /// ctime differ from the write's, and lets the file's last change fall out of the window in
    /// which a check is not remembered ([`vlmctl_base::stamp::RACY_WINDOW_NS`]). Not
    /// synchronisation.
    fn next_clock_tick() {
        std::thread::sleep(Duration::from_millis(150));
    }

    #[test]
    fn a_file_changed_just_before_the_check_is_not_remembered() {
        let tmp = tempfile::tempdir().unwrap();
        let (job, _) = locked_file(tmp.path());
        let cache = tmp.path().join("state/verified.json");
        // Written a moment ago: a same-tick edit could still hide behind its timestamps.
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 0);
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 0, "racily clean: hashed again");
        next_clock_tick();
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 0, "settled now: hashed and remembered");
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 1);
    }

    #[test]
    fn cached_verification_skips_hashing_only_while_the_file_is_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let (job, data) = locked_file(tmp.path());
        next_clock_tick();
        let cache = tmp.path().join("state/verified.json");
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 0, "first run hashes");
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 1, "unchanged: fast path");
        // Same size, different content, new mtime: hashed again and caught.
        let mut bad = data.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        next_clock_tick();
        std::fs::write(&job.location, &bad).unwrap();
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

    #[test]
    fn an_edit_in_place_with_the_mtime_put_back_is_hashed_and_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let (job, _) = locked_file(tmp.path());
        next_clock_tick();
        let cache = tmp.path().join("verified.json");
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 0, "first run hashes");
        next_clock_tick();
        edit_in_place_keeping_mtime(&job.location);
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert_eq!(fast, 0, "the ctime moved: no fast path");
        assert!(
            matches!(r[0].status, FileStatus::HashMismatch { .. }),
            "{:?}",
            r[0].status
        );
    }

    #[test]
    fn a_file_changed_while_it_is_hashed_is_not_remembered_as_verified() {
        let tmp = tempfile::tempdir().unwrap();
        let (job, _) = locked_file(tmp.path());
        next_clock_tick();
        let cache = tmp.path().join("verified.json");
        next_clock_tick();
        // The hash reads the old content; the edit lands before the check returns.
        let hash_then_edit = |j: &VerifyJob| {
            let report = verify_one(j);
            edit_in_place_keeping_mtime(&j.location);
            report
        };
        let (r, fast) =
            verify_all_cached_with(std::slice::from_ref(&job), 1, &cache, &hash_then_edit);
        assert!(r[0].ok() && fast == 0, "{:?}", r[0].status);
        let stamps: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
        assert_eq!(stamps, serde_json::json!({}), "nothing remembered");
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert_eq!(fast, 0);
        assert!(
            matches!(r[0].status, FileStatus::HashMismatch { .. }),
            "{:?}",
            r[0].status
        );
    }

    #[test]
    fn a_cache_without_ctimes_or_unreadable_is_hashed_again_never_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let (job, _) = locked_file(tmp.path());
        next_clock_tick();
        let cache = tmp.path().join("verified.json");
        let (r, _) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok());
        // The form written before ctime was recorded: same entry, no `ctime_ns`.
        let mut old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
        for entry in old.as_object_mut().unwrap().values_mut() {
            assert!(entry["ctime_ns"].is_i64() || entry["ctime_ns"].is_u64());
            entry.as_object_mut().unwrap().remove("ctime_ns");
        }
        std::fs::write(&cache, serde_json::to_vec(&old).unwrap()).unwrap();
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 0, "an old entry does not match");
        let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
        assert!(r[0].ok() && fast == 1, "rewritten with the ctime");
        for junk in ["not json", "{\"x\": 1}", ""] {
            std::fs::write(&cache, junk).unwrap();
            let (r, fast) = verify_all_cached(std::slice::from_ref(&job), 1, &cache);
            assert!(r[0].ok() && fast == 0, "{junk:?}");
        }
    }
}
