//! The one way vlmctl reads a file a user names (a deployment spec, a `weights.lock`, a bench
//! plan and the prompts and image it names, a tune variants file, a results file): only a
//! regular file (a link to one is followed), of at most a bound chosen per kind of file. A
//! device (`/dev/zero`), a FIFO, a socket or a folder is refused without being read, and a FIFO
//! never blocks the read: [`read_regular`].
//!
//! A tiny shared crate (STYLE.md: cross-cutting rules live in tiny shared crates) so that
//! every library can use it without depending on another library. std and `rustix` only.
//!
//! The refusals come back as [`std::io::Error`]s wrapping a [`Refused`], so that each caller's
//! existing "cannot read PATH" error (and its exit code) carries them unchanged; [`refusal`]
//! finds the [`Refused`] again where a caller treats it differently.
//!
//! And the one way vlmctl replaces a state file (a journal, a provision record, a
//! `weights.lock`, the verified-files cache): [`write_atomic`], so that a reader sees the old
//! file or the new one, never a part (uv has `uv-fs::write_atomic` for the same reason).

use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// The largest text file a user hands vlmctl: a deployment spec, a `weights.lock`, a bench
/// plan, its prompt files, a tune variants file. 4 MiB: the largest of the examples is a few
/// KiB, and a lock of a thousand models stays under 1 MiB.
pub const MAX_TEXT_BYTES: u64 = 4 << 20;

/// The largest camera image a bench plan may name: 64 MiB (a 4K PNG is about 25 MB; the image
/// is sent base64-encoded in every request).
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;

/// Why a file was not read (inside the [`io::Error`] that [`read_regular`] returns).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Not a regular file: a device, a FIFO, a socket, a folder.
    #[error("not a regular file but {kind}: {what} is read only from a regular file")]
    NotRegular {
        /// `a FIFO (named pipe)`, `a character device`...
        kind: &'static str,
        /// What the file was to be (`a deployment spec`).
        what: &'static str,
    },
    /// A regular file larger than the bound for its kind.
    #[error("{size} bytes, more than the {} {what} may have", limit(*max))]
    TooLarge {
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
        /// What the file was to be.
        what: &'static str,
    },
    /// A regular file that grew past the bound while it was read.
    #[error("it grew past the {} {what} may have while it was read", limit(*max))]
    Grew {
        /// The bound.
        max: u64,
        /// What the file was to be.
        what: &'static str,
    },
}

/// `4 MiB`, or `1000 bytes` for a bound that is not whole MiB.
fn limit(max: u64) -> String {
    if max >= 1 << 20 && max.is_multiple_of(1 << 20) {
        format!("{} MiB", max >> 20)
    } else {
        format!("{max} bytes")
    }
}

/// The [`Refused`] inside `e`, when [`read_regular`] refused the file rather than failed to
/// read it.
#[must_use]
pub fn refusal(e: &io::Error) -> Option<&Refused> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Refused>())
}

/// The bytes of the regular file at `path`, at most `max` of them; `what` names the kind of
/// file in a refusal (`a deployment spec`). Its kind is checked before it is opened (a device
/// is never opened) and again on what was opened (it may have been replaced in between), which
/// is opened with `O_NONBLOCK` so that a FIFO cannot block.
///
/// # Errors
/// The [`io::Error`] of a file that cannot be read (`NotFound` for a missing one), or one of
/// kind `InvalidInput` (not a regular file) or `FileTooLarge` wrapping a [`Refused`].
pub fn read_regular(path: &Path, max: u64, what: &'static str) -> io::Result<Vec<u8>> {
    let check = |meta: &std::fs::Metadata| -> io::Result<()> {
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                Refused::NotRegular {
                    kind: file_kind(meta.file_type()),
                    what,
                },
            ));
        }
        if meta.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                Refused::TooLarge {
                    size: meta.len(),
                    max,
                    what,
                },
            ));
        }
        Ok(())
    };
    check(&std::fs::metadata(path)?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits().cast_signed())
        .open(path)?;
    let meta = file.metadata()?;
    check(&meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // Bounded even if the file grows while it is read.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            Refused::Grew { max, what },
        ));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text; bytes that are not UTF-8 are an `InvalidData` error.
///
/// # Errors
/// As [`read_regular`], and `InvalidData` for bytes that are not UTF-8.
pub fn read_regular_text(path: &Path, max: u64, what: &'static str) -> io::Result<String> {
    String::from_utf8(read_regular(path, max, what)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// `a FIFO (named pipe)`, `a character device`...
fn file_kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a part,
/// and the new one survives a power cut: temp file, fsync, rename, fsync the directory
/// (`atomic-write-file` does exactly that; the directory is created first).
///
/// A path that is a symbolic link is written through to its target (the link stays a link: a
/// `weights.lock` kept elsewhere and linked into a checkout stays shared); the file keeps its
/// mode, a new one gets 0644 (the crate alone would give the link's own 0777, or 0600).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let path = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_owned(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mode = std::fs::metadata(&path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let mut f = atomic_write_file::AtomicWriteFile::open(&path)?;
    f.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `read_regular(p, max)` must refuse, within seconds, with `needle` in its error.
    fn refused(p: &Path, max: u64, needle: &str) {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = p.to_owned();
        // On a thread: a read that blocks (a FIFO) fails the test instead of hanging it.
        std::thread::spawn(move || {
            let _ = tx.send(read_regular(&path, max, "a test file").map(|b| b.len()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{}: still reading after 10 s", p.display()));
        let e = got.expect_err("refused");
        assert!(refusal(&e).is_some(), "{e:?}");
        let text = format!("{e} {e:?}");
        assert!(text.contains(needle), "{text}");
    }

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let tmp = tempfile::tempdir().expect("tmp");
        // A FIFO with no writer: refused at once instead of blocking.
        let fifo = tmp.path().join("fifo.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        refused(&fifo, MAX_TEXT_BYTES, "not a regular file but a FIFO");
        refused(tmp.path(), MAX_TEXT_BYTES, "a folder");
        refused(Path::new("/dev/zero"), MAX_TEXT_BYTES, "a character device");
        // A regular file over the bound.
        let big = tmp.path().join("big.toml");
        std::fs::write(&big, vec![b' '; 2048]).expect("write");
        refused(
            &big,
            1024,
            "2048 bytes, more than the 1024 bytes a test file",
        );
        assert_eq!(read_regular(&big, 4096, "x").expect("read").len(), 2048);
        // A sparse file far over the bound: refused by its size, never read.
        let sparse = tmp.path().join("sparse.toml");
        std::fs::File::create(&sparse)
            .and_then(|f| f.set_len(1 << 40))
            .expect("sparse");
        refused(&sparse, MAX_TEXT_BYTES, "more than the 4 MiB");
        // A link to a regular file is followed.
        let link = tmp.path().join("link.toml");
        std::os::unix::fs::symlink(&big, &link).expect("link");
        assert_eq!(read_regular(&link, 4096, "x").expect("read").len(), 2048);
        // A link to a device: refused, not read (it would never end).
        let zero = tmp.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("link");
        refused(&zero, MAX_TEXT_BYTES, "a character device");
        // A missing file is the plain NotFound it always was (callers rely on its kind).
        let missing = read_regular(&tmp.path().join("nope"), 10, "x").expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(refusal(&missing).is_none());
    }

    #[test]
    fn a_linked_file_is_written_through_its_link_keeping_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real.lock");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = tmp.path().join("weights.lock");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        let fresh = tmp.path().join("sub/new.lock");
        write_atomic(&fresh, b"x").unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "x");
    }
}
