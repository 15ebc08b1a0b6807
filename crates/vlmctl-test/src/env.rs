//! The environment `scripts/test` provides: each variable a test needs is read through
//! [`Env::require`], which fails (never skips) when it is missing and says how to get it.

use std::path::PathBuf;

/// The variables `scripts/test` exports for the tests that use real components (dockerd, the
/// registry, the llama-server image, the model, sshd, Chromium).
///
/// These tests are compiled only with a crate's `test-env` / `test-docker` feature, so running
/// them is asking for them: a missing variable is a failure, in CI and on a workstation alike,
/// never a silent skip that would turn a broken set-up into a green run.
pub struct Env;

impl Env {
    /// The value of `name`, which `scripts/test` exports.
    ///
    /// # Panics
    /// When `name` is unset or empty, naming it and the command that sets it.
    #[must_use]
    pub fn require(name: &str) -> String {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => v,
            _ => panic!("{}", missing(name, std::env::var_os("CI").is_some())),
        }
    }

    /// [`Env::require`] for a variable that names a file or folder.
    ///
    /// # Panics
    /// As [`Env::require`].
    #[must_use]
    pub fn require_path(name: &str) -> PathBuf {
        PathBuf::from(Self::require(name))
    }
}

/// The failure message for a missing `name`: in CI the set-up step is broken; elsewhere the
/// developer ran the tests without it.
fn missing(name: &str, ci: bool) -> String {
    if ci {
        format!(
            "{name} is not set in CI: `scripts/test` exports it before it runs the tests, so its \
             set-up did not run or failed; CI must run `scripts/test` (`.ci/run`)"
        )
    } else {
        format!(
            "{name} is not set: these tests need the real components `scripts/test` installs and \
             starts; run `scripts/test`, or `eval \"$(scripts/test --env-only)\"` and then the \
             tests, or export {name} yourself"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Env, missing};

    #[test]
    fn a_missing_variable_fails_naming_it_and_how_to_set_it() {
        let local = missing("VLMCTL_TEST_MODEL", false);
        assert!(local.contains("VLMCTL_TEST_MODEL is not set"), "{local}");
        assert!(local.contains("scripts/test --env-only"), "{local}");
        let ci = missing("VLMCTL_TEST_MODEL", true);
        assert!(ci.contains("in CI") && ci.contains(".ci/run"), "{ci}");
        let panicked =
            std::panic::catch_unwind(|| Env::require("VLMCTL_TEST_NO_SUCH_VARIABLE_EVER_SET"));
        assert!(panicked.is_err(), "a missing variable fails, never skips");
    }

    #[test]
    fn a_set_variable_is_returned() {
        // PATH is set in every test process (cargo's and nextest's).
        assert_eq!(Env::require("PATH"), std::env::var("PATH").expect("PATH"));
        assert_eq!(
            Env::require_path("PATH"),
            std::path::PathBuf::from(std::env::var("PATH").expect("PATH"))
        );
    }
}
