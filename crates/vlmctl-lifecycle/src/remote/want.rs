//! What a file should be on the host ([`Want`]), what the host has of it ([`Found`]), and the
//! shell quoting every script sent to a helper uses.

use crate::LifecycleError;

/// The size of one uploaded piece: small enough that one goes up within the engine client's
/// two-minute request timeout on a link of 0.15 MB/s, large enough that a 5.6 GB file is a few
/// hundred requests.
pub const SEGMENT: u64 = 16 * 1024 * 1024;

/// Where the models directory is mounted in the helper.
pub(super) const MOUNT: &str = "/models";

/// One file to have on the host: its name in the directory, size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// File name (or path) inside the directory.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// What the host has of one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Found {
    /// Present with the locked size and sha256: hashed there now.
    Verified,
    /// Present and unchanged since it was hashed there and verified (its stamp matches): not
    /// hashed again.
    Stamped,
    /// Absent.
    Missing,
    /// Present but another size or sha256.
    Differs {
        /// What is there.
        size: u64,
        /// Its sha256.
        sha256: String,
    },
}

impl Found {
    /// Whether the host has the locked file (hashed now, or by its stamp).
    #[must_use]
    pub fn verified(&self) -> bool {
        matches!(self, Self::Verified | Self::Stamped)
    }
}

pub(super) fn remote_failed(want: &Want, said: &str) -> LifecycleError {
    LifecycleError::RemoteFile {
        file: want.name.clone(),
        said: said.trim().chars().take(400).collect(),
    }
}
