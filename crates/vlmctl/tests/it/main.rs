//! Integration tests of the `vlmctl` binary, run as a user runs it.

mod architecture;
mod cli;
mod common;
mod weights_hub;
#[cfg(feature = "test-env")]
mod weights_real;
