//! What every vlmctl test binary needs and used to copy: the variables `scripts/test` exports
//! ([`Env`]), a free loopback port ([`free_port`]), and the cleanup of what a test created in
//! Docker, found by its run label ([`LabelGuard`]).
//!
//! A dev-dependency only (`publish = false`); standard library only, and no vlmctl crate, so that
//! every crate's tests, the lowest included, can use it. Fixtures that need a crate's types (a
//! fake hub with the model, a provisioned deployment) stay in that crate's `tests/it`, built on
//! these pieces.

mod docker;
mod env;

pub use docker::{LabelGuard, RUN_LABEL};
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
