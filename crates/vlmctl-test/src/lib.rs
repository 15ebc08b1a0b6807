//! What every vlmctl test binary needs and used to copy: the variables `scripts/test` exports
//! ([`Env`]), a free loopback port ([`free_port`]), the docker CLI ([`docker`]), the cleanup of
//! what a test created in Docker, found by its run label or by a deployment's names, on this
//! machine's daemon or another's ([`LabelGuard`]), the busybox "conflict" a deployment stops
//! ([`LabelGuard::conflict`]), and the test model the fake hub serves with the lock that pins it
//! ([`model`]).
//!
//! A dev-dependency only (`publish = false`); standard library only, and no vlmctl crate, so that
//! every crate's tests, the lowest included, can use it. Hence what needs a crate's types stays
//! in that crate's `tests/it`, built on these pieces, once per test binary:
//! - the provisioned CPU deployment plus its cleanup: `deploy_real::deployed` for the CLI's
//!   tests, `World` for vlmctl-deploy's, `TestRun` for vlmctl-lifecycle's (each at the level
//!   whose contract it tests: the `vlmctl` binary, the job library, the container library);
//! - the fake hub serving [`model`] (`deploy_real::hub`, `World::new`) and the fake server
//!   (`FakeServer::start`, already one call). Not here behind `fake-hub` / `fake-server`
//!   features: cargo unifies features across a workspace build (`clippy --workspace
//!   --all-targets`, `test --workspace`), so the feature would be on wherever vlmctl-test is
//!   built, and vlmctl-weights' and vlmctl-bench's own unit tests, which use this crate, would
//!   link a second copy of their crate through it; every crate's tests would also build axum and
//!   the hub client for it (vlmctl-lifecycle's included, which must not reach hf-hub).
//!
//! The names vlmctl gives a deployment's other containers ([`DEPLOYMENT_SUFFIXES`]) are copied
//! from vlmctl-lifecycle for the same reason; its unit tests check that the copies agree.

mod cleanup;
mod env;
pub mod model;

pub use cleanup::{DEPLOYMENT_SUFFIXES, LabelGuard, RUN_LABEL, deployment_containers, docker};
pub use env::Env;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). Another process may
/// take it before the caller binds it; tests that need certainty bind `127.0.0.1:0` themselves.
///
/// # Panics
/// When no port can be bound on 127.0.0.1 (no loopback interface).
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port on 127.0.0.1")
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_bindable_loopback_ports() {
        let port = super::free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }
}
