//! Every file a user names (a spec, a lock, a bench plan, the image it names, a tune variants
//! file) is read only when it is a regular file of bounded size: `/dev/zero` is never read
//! until memory runs out, a FIFO never blocks, and an oversized (sparse) file is refused by its
//! size, each at once and with a message that names the path and what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{repo_file, vlmctl};

/// Runs `cmd` with a deadline and 4 GiB of address space: one that blocks (on a FIFO) is
/// killed and one that reads without end (`/dev/zero`) runs out of memory, either failing the
/// test instead of hanging it or taking the machine's memory. Returns (exit code, stderr).
fn run_within(cmd: &mut Command, what: &str) -> (i32, String) {
    // The limit through the shell's `ulimit` (setrlimit in a pre_exec hook would need unsafe).
    let mut limited = Command::new("sh");
    limited
        .args(["-c", "ulimit -v 4194304 && exec \"$0\" \"$@\""])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => limited.env(k, v),
            None => limited.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        limited.current_dir(dir);
    }
    let started = Instant::now();
    let mut child = limited
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vlmctl");
    let within = Duration::from_secs(20);
    let mut ended = false;
    let deadline = started + within;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what}: vlmctl still running after {within:?} (blocked or reading without end)");
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The three files that must be refused, in `dir`: `/dev/zero` (through a link, as a user's
/// typo might make it), a FIFO with no writer, and a sparse file of 1 GiB (over every bound).
fn bad_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let zero = dir.join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("link");
    let fifo = dir.join("fifo.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let sparse = dir.join("sparse.toml");
    std::fs::File::create(&sparse)
        .and_then(|f| f.set_len(1 << 30))
        .expect("sparse file");
    vec![
        (
            PathBuf::from("/dev/zero"),
            "not a regular file but a character device",
        ),
        (zero, "not a regular file but a character device"),
        (fifo, "not a regular file but a FIFO (named pipe)"),
        (sparse, "1073741824 bytes, more than the"),
    ]
}

fn check(
    (code, err): (i32, String),
    path: &Path,
    want_code: i32,
    needle: &str,
    what: &str,
    bound: &str,
) {
    assert_eq!(code, want_code, "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains(needle), "{err}");
    assert!(err.contains(what), "{err}");
    if needle.contains("more than") {
        assert!(err.contains(bound), "{err}");
    }
}

#[test]
fn a_spec_or_lock_that_is_a_device_a_fifo_or_huge_is_refused_at_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (bad, needle) in bad_files(tmp.path()) {
        let out = run_within(
            vlmctl()
                .current_dir(tmp.path())
                .args(["export", "--spec"])
                .arg(&bad)
                .arg("--lock")
                .arg(repo_file("examples/cpu-test.lock")),
            "export --spec",
        );
        // Exit 5, "cannot read", as a missing spec.
        check(out, &bad, 5, needle, "a deployment spec", "4 MiB");
        let out = run_within(
            vlmctl()
                .current_dir(tmp.path())
                .args(["export", "--lock"])
                .arg(&bad),
            "export --lock",
        );
        check(out, &bad, 5, needle, "a weights.lock", "4 MiB");
    }
}

#[test]
fn a_plan_or_its_image_that_is_a_device_a_fifo_or_huge_is_refused_at_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    for (bad, needle) in bad_files(tmp.path()) {
        let out = run_within(
            vlmctl()
                .current_dir(tmp.path())
                .args(["bench", "--plan"])
                .arg(&bad)
                .env("VLMCTL_STATE_DIR", &state),
            "bench --plan",
        );
        check(out, &bad, 5, needle, "a bench plan", "4 MiB");
        // The image a plan names: the plan's error (exit 3), naming the field.
        let plan = crate::common::fake_plan(
            &tmp.path().join("p"),
            "http://127.0.0.1:9",
            5,
            &format!("image = {:?}", bad.display().to_string()),
        );
        let out = run_within(
            vlmctl()
                .current_dir(tmp.path())
                .args(["bench", "--plan"])
                .arg(&plan)
                .env("VLMCTL_STATE_DIR", &state),
            "bench with an image",
        );
        check(out, &bad, 3, needle, "image", "64 MiB");
    }
}

#[test]
fn a_tune_variants_file_that_is_a_device_a_fifo_or_huge_is_refused_at_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (bad, needle) in bad_files(tmp.path()) {
        let out = run_within(
            vlmctl()
                .current_dir(tmp.path())
                .args(["tune", "--spec"])
                .arg(tmp.path().join("no-such-spec.toml"))
                .arg("--plan")
                .arg(repo_file("examples/cpu-bench.toml"))
                .arg("--variants")
                .arg(&bad)
                .env("VLMCTL_STATE_DIR", tmp.path().join("state")),
            "tune --variants",
        );
        check(out, &bad, 5, needle, "a tune variants file", "4 MiB");
    }
}
