//! Cross-cutting rules that every vlmctl crate shares, each written once (STYLE.md: cross-cutting
//! rules live in tiny shared crates, as uv has `uv-static`, `uv-redacted`):
//!
//! - [`env`](mod@env): every environment variable vlmctl reads, declared once and read through that
//!   declaration (the README's table is checked against it);
//! - [`redact`]: a [`redact::Secrets`] value each front-end holds and scrubs its output with;
//! - [`owner`]: "is the process that wrote this still alive" (pid + start time + boot id);
//! - [`chain`]: an error and its sources as one line;
//! - [`stamp`]: when a file's stamp may stand for a hash (the racy window).
//!
//! std only; depends on no other vlmctl crate, and every one may depend on it.

pub mod chain;
pub mod env;
pub mod owner;
pub mod redact;
pub mod stamp;
