//! Integration tests of the `vlmctl` binary, run as a user runs it.

mod architecture;
mod cli;
mod common;
#[cfg(feature = "test-env")]
mod weights_real;
