//! A deployment's API key: read from the variable or the key file its spec names
//! (`server.api_key_env`, `server.api_key_file`), and made (`vlmctl key new --file PATH`).
//!
//! A key file is a regular file that only its owner can read or write (mode 0600 or 0400): one
//! that the group or others may read is refused before it is read, naming the file and the
//! `chmod 600` that fixes it, as `ssh` refuses a private key. Its key is its first line that is
//! not empty and not a `#` comment (the format of llama-server's `--api-key-file`). A new key
//! file is written to a private temporary file beside the target and hard-linked into place, so
//! that it appears whole, with its final mode, or not at all, and an existing file is never
//! replaced. The key is never part of an error: errors name the file or the variable only.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use vlmctl_lifecycle::spec::ApiKeySource;

use crate::client_error::ClientError;

/// The largest key file read (a key is a line; anything bigger is not a key file).
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Random bytes in a key `vlmctl key new` makes: 32, written as 64 hex digits.
pub const NEW_KEY_BYTES: usize = 32;

/// Why a key file could not give its key (kept in the plan until a job needs the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFileProblem {
    /// It could not be read (missing, not a regular file, no permission): what the system said.
    Unreadable(String),
    /// The group or others may read or write it: its mode.
    Loose(u32),
}

impl KeyFileProblem {
    /// The error a job that needs the key fails with.
    #[must_use]
    pub fn into_error(self, path: &Path) -> ClientError {
        match self {
            Self::Unreadable(why) => ClientError::KeyFileUnreadable {
                path: path.to_owned(),
                why,
            },
            Self::Loose(mode) => ClientError::KeyFileLoose {
                path: path.to_owned(),
                mode,
            },
        }
    }
}

/// The key from `source`: `Ok(None)` when the variable is unset or empty (a job that needs a
/// key says so: [`crate::DeploymentPlan::require_api_key`]); a key file that cannot give its
/// key is the `Err`.
pub fn read(source: &ApiKeySource) -> Result<Option<String>, KeyFileProblem> {
    match source {
        ApiKeySource::Env(var) => Ok(std::env::var(var).ok().filter(|v| !v.is_empty())),
        ApiKeySource::File(path) => read_file(path).map(Some),
    }
}

/// The key in the file at `path` (its first line that is not empty or a `#` comment; empty
/// when it has none), refused when its mode lets anyone but its owner read or write it, or when
/// its owner is not the user running vlmctl (a key another user can replace is not a secret).
/// The file is opened once and judged by what is open (`fstat`), then read from that same
/// handle: a file swapped between the check and the read is never the one read. A symbolic
/// link is followed (its target is judged), as `ssh` does for its keys.
pub fn read_file(path: &Path) -> Result<String, KeyFileProblem> {
    use std::os::unix::fs::MetadataExt as _;
    let unreadable = |e: std::io::Error| KeyFileProblem::Unreadable(e.to_string());
    // Non-blocking: a FIFO at the path must not hang the open; it is refused below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits().cast_signed())
        .open(path)
        .map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(KeyFileProblem::Unreadable("not a regular file".to_owned()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileProblem::Loose(mode));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(KeyFileProblem::Unreadable(format!(
            "it belongs to uid {}, not to the user running vlmctl (uid {me}): a key file another \
             user owns can be replaced by them; make your own (`vlmctl key new --file PATH`)",
            meta.uid()
        )));
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyFileProblem::Unreadable(format!(
            "{} bytes, more than the {MAX_KEY_FILE_BYTES} a key file may have",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_KEY_FILE_BYTES),
        &mut bytes,
    )
    .map_err(unreadable)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default()
        .to_owned())
}

/// Makes a key file at `path`: [`NEW_KEY_BYTES`] random bytes from the kernel as hex, one
/// line, mode 0600 from its creation on. Refuses to replace anything at `path` (exit 3); the
/// folder must exist. Returns the key's length (the key itself is never shown).
pub fn new_file(path: &Path) -> Result<usize, ClientError> {
    let write_err = |source: std::io::Error| ClientError::KeyFileWrite {
        path: path.to_owned(),
        source,
    };
    if path.symlink_metadata().is_ok() {
        return Err(ClientError::KeyFileExists {
            path: path.to_owned(),
        });
    }
    let mut random = [0_u8; NEW_KEY_BYTES];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(write_err)?,
        &mut random,
    )
    .map_err(write_err)?;
    let key = hex::encode(random);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "key".to_owned(), |n| n.to_string_lossy().into_owned());
    // The temporary name is the pid and other random bytes: never a part of the key (a file
    // name shows in listings, inotify and audit records).
    let mut tag = [0_u8; 4];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(write_err)?,
        &mut tag,
    )
    .map_err(write_err)?;
    let tmp = dir.join(format!(
        ".{name}.vlmctl-new-{}-{}",
        std::process::id(),
        hex::encode(tag)
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(key.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        // A link fails when the name is taken: never a replaced file, never a half-written one.
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(key.len()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(ClientError::KeyFileExists {
                path: path.to_owned(),
            })
        }
        Err(e) => Err(write_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_file_is_private_long_and_never_replaces_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("robot.key");
        assert_eq!(new_file(&p).unwrap(), 2 * NEW_KEY_BYTES);
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let key = read_file(&p).unwrap();
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
        // Another one is another key; the first is never replaced.
        let q = tmp.path().join("other.key");
        new_file(&q).unwrap();
        assert_ne!(read_file(&q).unwrap(), key);
        assert!(matches!(
            new_file(&p),
            Err(ClientError::KeyFileExists { .. })
        ));
        assert_eq!(read_file(&p).unwrap(), key, "left as it was");
        // Nothing else is left in the folder (no temporary file).
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_key_file_others_may_read_is_refused_and_comments_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k");
        std::fs::write(
            &p,
            "# the robot's key\n\n  0123456789abcdef0123  \nsecond\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_file(&p), Err(KeyFileProblem::Loose(0o644)));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_file(&p), Err(KeyFileProblem::Loose(0o640)));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_file(&p).unwrap(), "0123456789abcdef0123");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_file(&p).unwrap(), "0123456789abcdef0123");
        assert!(matches!(
            read_file(&tmp.path().join("missing")),
            Err(KeyFileProblem::Unreadable(_))
        ));
        let msg = KeyFileProblem::Loose(0o644).into_error(&p).to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        let hint = KeyFileProblem::Loose(0o644).into_error(&p).hint();
        assert!(
            hint.contains(&format!("chmod 600 {}", p.display())),
            "{hint}"
        );
    }

    #[test]
    fn a_key_file_another_user_owns_or_that_is_no_file_is_refused_without_reading_it() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Another user's file, private to them: only root can make one here (the tests run as
        // root, in CI too); elsewhere this part cannot be set up and is skipped.
        let me = rustix::process::geteuid().as_raw();
        let other = if me == 65534 { 65533 } else { 65534 };
        if std::os::unix::fs::chown(&p, Some(other), None).is_ok() {
            match read_file(&p) {
                Err(KeyFileProblem::Unreadable(why)) => {
                    assert!(why.contains(&format!("uid {other}")), "{why}");
                    assert!(!why.contains("0123456789abcdef"), "{why}");
                }
                other => panic!("another user's key file was accepted: {other:?}"),
            }
        }
        // A FIFO at the path: refused at once, never a hung open or read.
        let fifo = tmp.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_file(&fifo),
            Err(KeyFileProblem::Unreadable("not a regular file".to_owned()))
        );
        // A link to a private file of the user's is followed, and the target judged.
        let own = tmp.path().join("own");
        std::fs::write(&own, "fedcba9876543210fedc\n").unwrap();
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&own, &link).unwrap();
        assert_eq!(read_file(&link).unwrap(), "fedcba9876543210fedc");
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_file(&link), Err(KeyFileProblem::Loose(0o644)));
    }
}
