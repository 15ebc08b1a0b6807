//! The jobs of vlmctl, as a library: what `vlmctl provision | relaunch | gates | status |
//! teardown | restore | export` do, for any front-end (the CLI today; a benchmark service and a
//! settings sweep next), composed from the three capability crates: `vlmctl-weights` (lock,
//! fetch, verify), `vlmctl-lifecycle` (Docker) and `vlmctl-bench` (the smoke request is one
//! bench-client request).
//!
//! - [`DeploymentPlan`]: spec + lock entry + models directory + API key, validated before any I/O.
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

pub mod apikey;
pub mod bench;
pub mod client;
pub mod client_error;
pub mod events;
pub mod export;
pub mod gates;
pub mod history;
pub mod interface;
pub mod liveness;
pub mod lock;
pub mod memory;
pub mod offload;
pub mod pin;
pub mod plan;
pub mod provision;
pub mod push;
pub mod record;
pub mod server_checks;
pub mod smoke;
pub mod status;
pub mod targets;
pub mod tune;
pub mod types;
pub mod undo;
pub mod weights;

pub(crate) mod error;

pub use error::DeployError;
pub use plan::{DeploymentPlan, Dirs};
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

/// The one atomic write of every state file (`vlmctl_files::write_atomic`: follows a symbolic
/// link, keeps the mode), under the name this crate's callers use.
pub use vlmctl_files::write_atomic as write_atomically;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_disks_count_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(253_113_024), "253.1 MB");
        assert_eq!(human_bytes(u64::MAX), "18446744.1 TB");
    }
}
