//! The jobs of vlmctl, as a library: what `vlmctl provision | relaunch | gates | status |
//! teardown | restore | export` do, for any front-end (the CLI today; a benchmark service and a
//! settings sweep next), composed from the three capability crates: `vlmctl-weights` (lock,
//! fetch, verify), `vlmctl-lifecycle` (Docker) and `vlmctl-bench` (the smoke request is one
//! bench-client request).
//!
//! - [`Plan`]: spec + lock entry + models directory + API key, validated before any I/O.
//! - [`gates::run`]: every read-only gate, the weights gate included.
//! - [`provision::provision`]: gates, fetch, pull, conflicts ([`provision::choose_conflicts`]),
//!   the journalled stop, launch, readiness, smoke, memory ceiling ([`memory::check`]), the
//!   proof that the model runs on the GPU ([`offload::decide`]), the [`ProvisionRecord`]; a
//!   failed or cancelled run undoes exactly what it did.
//! - [`status::status`] with [`status::Drift`], [`undo::teardown`], [`undo::restore_all`],
//!   [`export::compose`].
//! - [`targets::place`]: where a bench plan's targets are (each on its host, by URL or by
//!   deployment), reached through SSH forwards; [`targets::Placed::restore`] makes the results
//!   name what the hosts see.
//! - [`bench::bench`]: a bench plan measured (placed, checked, swept or run as the plan says,
//!   written, recorded in the [`history::History`]), for the CLI, the service and `tune`.
//! - [`tune::tune`]: the deployment relaunched with each variant of its server settings
//!   ([`tune::TuneFile`]), benchmarked, measured, and put back as it was (journalled).
//!
//! Jobs report through [`events::Event`]s sent to a caller's [`events::Sink`], ask through
//! [`events::Confirm`], and stop when asked through [`events::Cancel`]. They never print, never
//! read stdin and never install signal handlers; errors are one [`DeployError`] with a
//! `hint()`.

pub mod bench;
pub mod events;
pub mod export;
pub mod gates;
pub mod history;
pub mod lock;
pub mod memory;
pub mod offload;
pub mod pin;
pub mod plan;
pub mod provision;
pub mod push;
pub mod record;
pub mod smoke;
pub mod status;
pub mod targets;
pub mod tune;
pub mod undo;

pub(crate) mod error;

use std::path::Path;

pub use error::DeployError;
pub use plan::{Dirs, Plan};
pub use record::ProvisionRecord;

/// `253.1 MB` style sizes (decimal units, as disks and the hub count).
#[must_use]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    #[expect(clippy::cast_precision_loss, reason = "one decimal is shown")]
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a part,
/// and the new one survives a power cut: temp file, fsync, rename, fsync the directory
/// (`atomic-write-file` does exactly that; the directory is created first).
/// A path that is a symbolic link is written through to its target (the link stays a link); the
/// file keeps its mode, a new one gets 0644 (the crate would copy a link's own 0777).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

    #[test]
    fn a_linked_file_is_written_through_its_link_keeping_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real.lock");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = tmp.path().join("weights.lock");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomically(&link, b"new").unwrap();
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
        write_atomically(&fresh, b"x").unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn sizes_read_as_disks_count_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(253_113_024), "253.1 MB");
        assert_eq!(human_bytes(u64::MAX), "18446744.1 TB");
    }
}
