//! Integration tests of the `vlmctl` binary, run as a user runs it.
#![cfg_attr(
    feature = "test-env",
    expect(clippy::print_stderr, reason = "tests report timings on stderr")
)]

mod architecture;
mod bench;
mod cli;
mod common;
#[cfg(feature = "test-env")]
mod conflict_checks;
#[cfg(feature = "test-env")]
mod deploy_real;
#[cfg(feature = "test-env")]
mod docker_proxy;
mod docs;
#[cfg(feature = "test-env")]
mod faults;
#[cfg(feature = "test-env")]
mod gpu_proof;
mod history;
#[cfg(feature = "test-env")]
mod hosts_bench;
#[cfg(feature = "test-env")]
mod hosts_gpu;
#[cfg(feature = "test-env")]
mod hosts_push;
#[cfg(feature = "test-env")]
mod hosts_real;
#[cfg(feature = "test-env")]
mod hosts_status;
mod module_cycles;
mod pin;
#[cfg(feature = "test-env")]
mod robot;
#[cfg(feature = "test-env")]
mod serve_browser;
mod serve_cli;
#[cfg(feature = "test-env")]
mod serve_real;
#[cfg(feature = "test-env")]
mod tune_real;
mod user_files;
mod weights_hub;
#[cfg(feature = "test-env")]
mod weights_real;
