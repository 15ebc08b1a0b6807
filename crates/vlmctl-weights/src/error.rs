use std::io;
use std::path::PathBuf;

use crate::digest::Sha256Digest;

/// Everything that can go wrong with weights, with the fields a message and a hint need.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The lock file could not be read.
    #[error("cannot read {}", path.display())]
    LockRead {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The lock file is malformed; `line` is 1-based.
    #[error("{}:{line}: {}{message}", path.display(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    LockInvalid {
        /// The lock file.
        path: PathBuf,
        /// Line of the offending value.
        line: usize,
        /// Dotted field path, e.g. `model[0].file[1].sha256` (empty for syntax errors).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A model name that the lock does not have.
    #[error("no model named {name:?} in {}", lock.display())]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The lock file.
        lock: PathBuf,
        /// Names the lock does have.
        known: Vec<String>,
    },
    /// The hub could not be reached at all.
    #[error("cannot reach the Hugging Face hub at {endpoint}")]
    HubUnreachable {
        /// `HF_ENDPOINT` or the default.
        endpoint: String,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// The hub answered with an error status.
    #[error("the hub answered {status}{} for {repo}{}", error_code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default(), file.as_ref().map(|f| format!(" file {f:?}")).unwrap_or_default())]
    HubStatus {
        /// Repository.
        repo: String,
        /// File, if the request was for one.
        file: Option<String>,
        /// HTTP status.
        status: u16,
        /// The hub's `X-Error-Code` (`RepoNotFound`, `GatedRepo`, `EntryNotFound`, ...).
        error_code: Option<String>,
        /// Whether a token was sent (a 401 without one may mean "does not exist").
        sent_token: bool,
    },
    /// A file to pin is not stored with Git LFS, so the hub's metadata has no sha256.
    #[error(
        "{repo} {file:?} at {commit} is not stored with Git LFS: the hub's metadata has no sha256 to pin"
    )]
    NotLfs {
        /// Repository.
        repo: String,
        /// File.
        file: String,
        /// The commit.
        commit: String,
    },
    /// A path in a repository that could change the hub URL it goes into.
    #[error("{file:?} is not a path vlmctl requests from the hub: {why}")]
    BadRepoPath {
        /// The path given.
        file: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A repository id or revision that could change the hub URL it goes into (from the command
    /// line: the spec and the lock check theirs when they are read).
    #[error("{field} {value} is not {what}; nothing was requested from the hub")]
    BadPinArgument {
        /// `repo` or `revision`.
        field: &'static str,
        /// What was given (shown escaped).
        value: String,
        /// What it must be.
        what: &'static str,
    },
    /// The hub's answer lacks what the protocol promises.
    #[error("unexpected answer from {url}: {what}")]
    HubProtocol {
        /// The request.
        url: String,
        /// What is missing.
        what: String,
    },
    /// The hub serves other content than the lock names, before anything was downloaded.
    #[error("{0}")]
    UpstreamChanged(Box<UpstreamChange>),
    /// Downloaded bytes do not hash to the lock's sha256; they were deleted.
    #[error("{0}")]
    DigestMismatch(Box<DigestMismatch>),
    /// The locked content itself fails the GGUF structure check.
    #[error("{file:?} matches the lock's sha256 but is not a valid GGUF file: {reason}")]
    BadContent {
        /// File.
        file: String,
        /// The structural failure.
        reason: String,
    },
    /// The transfer failed (connection dropped, timeout, disk).
    #[error("download of {file:?} from {repo} failed")]
    Transfer {
        /// Repository.
        repo: String,
        /// File.
        file: String,
        /// hf-hub's error.
        #[source]
        source: Box<hf_hub::api::tokio::ApiError>,
    },
    /// A file operation failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Something that fails verification already sits under a final name.
    #[error("{} exists but does not match the lock: {reason}", path.display())]
    ExistingFileBad {
        /// The file.
        path: PathBuf,
        /// Why it fails.
        reason: String,
    },
    /// A file given to `weights adopt` was not taken.
    #[error("not adopting {}: {reason}", path.display())]
    AdoptRejected {
        /// The file given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl WeightsError {
    /// What the user should do next.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::LockRead { .. } => {
                "run from the repository root or pass --lock PATH (env VLMCTL_LOCK)".to_owned()
            }
            Self::LockInvalid { .. } => {
                "fix that line; the format is described in docs/weights.md under \"weights.lock\""
                    .to_owned()
            }
            Self::UnknownModel { known, .. } => {
                if known.is_empty() {
                    "the lock has no models yet: add a [[model]] entry (docs/weights.md, \"weights.lock\")"
                        .to_owned()
                } else {
                    format!("the lock has: {}", known.join(", "))
                }
            }
            Self::HubUnreachable { .. } => "check the network, or point HF_ENDPOINT at a reachable hub (or mirror)".to_owned(),
            Self::HubStatus { status: 401 | 403, sent_token: false, .. } => "the hub wants a token: set HF_TOKEN (or log in with the official client); without one, a repository that does not exist also answers 401, so check the repository id (the spec's [model] repo, or the lock's)".to_owned(),
            Self::HubStatus { status: 401 | 403, .. } => "the token was refused: check HF_TOKEN, and for a gated model accept its license on the model page with the same account".to_owned(),
            Self::HubStatus { status: 404, error_code, .. } => match error_code.as_deref() {
                Some("RevisionNotFound") => "that revision does not exist in the repository: check `revision` in the spec's [model] table (or the lock)".to_owned(),
                Some("EntryNotFound") => "the file does not exist at that revision: check the file names (the spec's [model] files, or the lock's `path`)".to_owned(),
                _ => "check the repository id and revision (the spec's [model] table, or the lock)".to_owned(),
            },
            Self::HubStatus { status, .. } if *status >= 500 => "the hub is having trouble: try again later; completed chunks are kept and the next run resumes".to_owned(),
            Self::BadPinArgument { field: "repo", .. } => "give the hub repository id as `org/name` (letters, digits, '.', '_', '-'; neither part starting with '.')".to_owned(),
            Self::BadPinArgument { .. } => "give a branch, tag or commit name: letters, digits, '.', '_', '-' and '/', not starting with '-', '/' or '.', without '..' (e.g. `main`, `v1.2`, `refs/pr/1`)".to_owned(),
            Self::BadRepoPath { .. } => "give the file's path in the repository as the hub lists it (`org/name` tree), without `%`, `?`, `#` or `..`".to_owned(),
            Self::NotLfs { .. } => "GGUF weights are LFS files: check the file name (the spec's [model] files, or the files given to `weights lock`)".to_owned(),
            Self::HubStatus { .. } | Self::HubProtocol { .. } => "check HF_ENDPOINT: it must point at a Hugging Face hub (or a faithful mirror)".to_owned(),
            Self::UpstreamChanged { .. } => "upstream changed the file for this revision, or the lock is wrong: check why it changed, then re-pin the entry (`vlmctl weights update NAME`, docs/weights.md \"Pinning on first use\")".to_owned(),
            Self::DigestMismatch(m) => {
                if m.hub_sha256.is_some_and(|h| h != m.expected) {
                    "the hub's etag differs from the lock: upstream changed, re-pin the lock after checking why".to_owned()
                } else {
                    "the hub still lists the locked sha256, so the transfer was corrupted: run the same command again".to_owned()
                }
            }
            Self::BadContent { .. } => "the lock pins a broken file: pin a different revision or file".to_owned(),
            Self::Transfer { .. } => "run the same command again: completed chunks are kept and the download resumes".to_owned(),
            Self::Io { .. } => "check free disk space and permissions of the model directory and the hub cache (HF_HUB_CACHE / HF_HOME)".to_owned(),
            Self::ExistingFileBad { .. } => "it is not overwritten (it may be yours): move or delete it, then run the command again".to_owned(),
            Self::AdoptRejected { .. } => "adopt only exact copies of locked files; `vlmctl weights verify` shows what the lock expects".to_owned(),
        }
    }
}

/// The hub's metadata for a file disagrees with the lock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the hub serves different content for {repo} {file:?} than the lock: lock has sha256 \
     {lock_sha256} ({lock_size} bytes), hub has {} ({hub_size} bytes)",
    hub_sha256.map_or_else(|| "no sha256".to_owned(), |h| h.to_string())
)]
pub struct UpstreamChange {
    /// Repository.
    pub repo: String,
    /// File.
    pub file: String,
    /// From the lock.
    pub lock_sha256: Sha256Digest,
    /// From the lock.
    pub lock_size: u64,
    /// From the hub's `x-linked-etag`.
    pub hub_sha256: Option<Sha256Digest>,
    /// From the hub's `x-linked-size`.
    pub hub_size: u64,
}

/// Downloaded content that does not hash to the locked sha256.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "downloaded {file:?} does not match the lock: expected sha256 {expected}, computed {actual} \
     (the download was deleted)"
)]
pub struct DigestMismatch {
    /// File.
    pub file: String,
    /// From the lock.
    pub expected: Sha256Digest,
    /// Computed.
    pub actual: Sha256Digest,
    /// What the hub says the file hashes to now (etag): equal to `expected` means the transfer
    /// was corrupted, different means upstream changed.
    pub hub_sha256: Option<Sha256Digest>,
}
