//! Running the binary, redacting what changes between runs, and waiting for things to happen.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[cfg(feature = "test-env")]
pub use vlmctl_test::Env;
pub use vlmctl_test::free_port;

/// The repository's root (the tests run the README's files from there).
pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the repository (`docker/cpu-test.toml`, `examples/…`).
pub fn repo_file(p: &str) -> std::path::PathBuf {
    repo_root().join(p)
}

/// The binary under test, started with none of vlmctl's, the hub's and XDG's variables
/// ([`vlmctl::env_vars::cleared_in_tests`]) set, so that a developer's `VLMCTL_SPEC`, `HF_TOKEN` or
/// `XDG_STATE_HOME` cannot change what a test sees: each test sets what it needs on the command.
///
/// `DOCKER_HOST` is deliberately passed through (as are the other Docker and system variables). The tests create, inspect and remove their containers with the docker CLI,
/// which reads it as well, so vlmctl and the tests must follow the same variable to meet the same
/// daemon: clearing it only for vlmctl would split them when it points at, say, a rootless daemon.
pub fn vlmctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vlmctl"));
    for var in vlmctl::env_vars::cleared_in_tests() {
        cmd.env_remove(var);
    }
    // The default state dir (journals, records, the history) under the build's temp dir, never
    // the developer's own ~/.local/state: a test that cares sets VLMCTL_STATE_DIR.
    cmd.env(
        vlmctl::env_vars::XDG_STATE_HOME,
        concat!(env!("CARGO_TARGET_TMPDIR"), "/xdg-state"),
    );
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

/// Calls `f` every 20 ms until it holds; panics naming `what` once `within` has passed. It blocks
/// the thread: from a tokio test, use the multi-thread flavour so that servers keep running.
pub fn poll_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bench plan in `dir` against the fake server at `url`: configs A (kept-alive) and C
/// (streamed), 3 runs, no warm-up, requests timed out after `timeout_s`; `extra` is more TOML
/// for the top level.
pub fn fake_plan(dir: &Path, url: &str, timeout_s: u32, extra: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("prompts")).expect("prompts dir");
    for f in ["nav", "nav-short"] {
        std::fs::write(dir.join(format!("prompts/{f}.txt")), f).expect("prompt");
    }
    let path = dir.join("plan.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\nruns = 3\nwarmup = 0\ntimeout_s = {timeout_s}\ndescribe = false\n\
             configs = [\"A\", \"C\"]\n{extra}\n[[target]]\nname = \"fake\"\nurl = \"{url}\"\n"
        ),
    )
    .expect("plan");
    path
}

/// Sends `sig` (`INT`, `TERM`, `9`, ...) to `target`: a pid, or `-PGID` for a process group.
pub fn signal(sig: &str, target: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), "--", target])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {target}");
}
