//! Files on the engine's host, through the Engine API alone (no scp, nothing installed there):
//! a short-lived helper container from an image the host has, with the models directory
//! bind-mounted, checks each file's size and sha256 *on that host* ([`check`]) and receives
//! files as archive uploads ([`push`]).
//!
//! A push is resumable: a file goes up in [`SEGMENT`]-sized pieces into a staging folder
//! (see [`staging`]), each written as `N.part` and renamed to `N` once whole, so that a push
//! killed at any point leaves only whole pieces and at most one `.part`; the next push keeps
//! every whole piece and sends the rest. The pieces are then joined into `NAME.vlmctl-partial`
//! there, hashed there, and renamed to `NAME` only when size and sha256 are the locked ones: a
//! file never has its final name on the host before it verified. Staging folders no lock names
//! any more are removed by the next push into the directory ([`tidy`]).
//!
//! A file that verified there gets a stamp beside it ([`HostStamp`], `.NAME.vlmctl-verified`),
//! as the weights crate's local cache does: while its size, mtime, ctime, inode and device
//! are the ones the stamp recorded, [`check`] trusts it and does not hash it again.
//!
//! - `want`: what a file should be, what the host has ([`Want`], [`Found`]), shell quoting.
//! - `helper`: the [`Helper`] container (started, run in, removed; one dropped on the way is
//!   removed by the [`crate::hosts::Sessions`] pool it came from).
//! - `stamp`: the pure rules of [`HostStamp`]s (what `stat` says, when a hash is trusted).
//! - `check`: [`check`], the files as the host has them.
//! - `push`: [`push`], [`tidy`] and the [`staging`] folders.

mod check;
mod helper;
mod push;
mod stamp;
mod want;

pub use crate::shell::{sh_quote, sh_word};
pub use check::check;
pub use helper::{HELPER_LABEL, HELPER_LIFE, Helper};
pub(crate) use helper::{helper_labels, remove_stale};
pub use push::{Pushed, Staged, Tidied, UNOWNED_AGE_S, push, staging, tidy};
pub use stamp::{HostStamp, HostStat, parse_stat, stamp_path};
pub use want::{Found, SEGMENT, Want};
