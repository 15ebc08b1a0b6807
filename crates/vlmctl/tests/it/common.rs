//! Running the binary and redacting what changes between runs.

use std::path::Path;
use std::process::{Command, Output};

/// The binary under test.
pub fn vlmctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vlmctl"));
    // Tests must not pick up the developer's settings.
    for var in ["VLMCTL_LOCK", "VLMCTL_MODELS_DIR", "VLMCTL_LOG"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run vlmctl");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Replaces a temp dir with `[TMP]` so snapshots are stable.
pub fn redact(text: &str, tmp: &Path) -> String {
    text.replace(&tmp.display().to_string(), "[TMP]")
}

/// A variable `scripts/test` exports; missing is a failure that says how to get it.
#[cfg_attr(
    not(feature = "test-env"),
    expect(dead_code, reason = "used by the test-env tests")
)]
pub fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} is not set: run these tests through `scripts/test`, which provides it"),
    }
}
