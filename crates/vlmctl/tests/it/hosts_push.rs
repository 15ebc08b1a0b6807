//! Pushing weights to another host, for real, through the OpenSSH server in front of the test
//! dockerd (`scripts/test`): stamps that spare a hash on the host and what makes them stale,
//! staging folders of killed pushes removed while one that another push writes is not, and a
//! forward whose `ssh` is killed in the middle of a push, opened again under it.
//!
//! These tests use the host that shares this machine's disk (the files "on the host" are read
//! and changed here, as a person on the host would); `hosts_real.rs` has the host of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, poll_until, repo_root, run, vlmctl};
use crate::deploy_real::readme_dir_args;

const MODEL: &str = "gemma-3-270m-q4_k_m.gguf";
const MMPROJ: &str = "mmproj-gemma3-270m-test.gguf";
/// `examples/cpu-test.lock`'s projector.
const MMPROJ_SIZE: u64 = 461_216;
const MMPROJ_SHA: &str = "1f710d09473f8ca0944d9ec9963aee6758b106dd27db3ad498a6092e87e85430";
const MODEL_SHA: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

fn port() -> String {
    Env::require("VLMCTL_TEST_SSH_PORT")
}

fn remote() -> String {
    format!("ssh://root@127.0.0.1:{}", port())
}

/// `vlmctl weights push --host <the test host> --lock LOCK --to TO` with the test image.
fn push(state: &Path, lock: &Path, to: &Path) -> Command {
    let mut c = vlmctl();
    c.env("VLMCTL_STATE_DIR", state)
        .env("VLMCTL_SSH_CONFIG", Env::require("VLMCTL_TEST_SSH_CONFIG"))
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .args(["weights", "push", "--host", &remote(), "--lock"])
        .arg(lock)
        .args(readme_dir_args())
        .arg("--to")
        .arg(to)
        .args(["--image", &Env::require("VLMCTL_TEST_LLAMA_IMAGE")]);
    c
}

fn cpu_lock() -> PathBuf {
    repo_root().join("examples/cpu-test.lock")
}

/// Starts `push` and returns once a piece of its file is whole on the host (and before the file
/// is).
fn until_a_whole_piece(mut push: Command, to: &Path) -> std::process::Child {
    let child = push.spawn().expect("push");
    poll_until("a whole piece on the host", Duration::from_secs(60), || {
        a_whole_piece(to)
    });
    child
}

/// `c` with its output thrown away.
fn quiet(mut c: Command) -> Command {
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Runs a push that must succeed; its stdout and stderr.
fn push_ok(state: &Path, lock: &Path, to: &Path) -> (String, String) {
    let (code, out, err) = run(&mut push(state, lock, to));
    assert_eq!(code, 0, "{out}\n{err}");
    (out, err)
}

/// `ssh` processes still running for the test host (their command line names its port).
fn ssh_left() -> Vec<String> {
    crate::hosts_real::ssh_left(&port())
}

/// Whether a piece of a push is whole in one of `to`'s staging folders.
pub(crate) fn a_whole_piece(to: &Path) -> bool {
    std::fs::read_dir(to)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with(".vlmctl-push-"))
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .any(|p| p.file_name().to_string_lossy().parse::<u64>().is_ok())
}

/// Waits for `child` to end, within `within`; its exit code.
fn wait_for(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The names in `to` that start with `prefix`.
fn entries(to: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(to)
        .expect("dir")
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// `dd conv=notrunc` then `touch -r`: the last 4 bytes changed in place, same length, the mtime
/// (and atime) put back to the nanosecond.
fn edit_in_place_keeping_mtime(path: &Path) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let before = std::fs::metadata(path).expect("metadata");
    let times = std::fs::FileTimes::new()
        .set_modified(before.modified().expect("mtime"))
        .set_accessed(before.accessed().expect("atime"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.seek(SeekFrom::End(-4)).expect("seek");
    f.write_all(&[0xDE, 0xAD, 0xBE, 0xEF]).expect("write");
    f.set_times(times).expect("times");
    drop(f);
    let after = std::fs::metadata(path).expect("metadata");
    assert_eq!(after.len(), before.len());
    assert_eq!(after.modified().ok(), before.modified().ok());
}

/// Sets the mtime of `path` (a file or a folder) `ago` in the past.
fn backdate(path: &Path, ago: Duration) {
    let t = std::time::SystemTime::now() - ago;
    std::fs::File::open(path)
        .expect("open")
        .set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .expect("times");
}

/// A push that must find `file` verified on the host by hashing it there, then pushes until
/// the host has stamped it (a stamp is written only once the file's last change is settled,
/// more than 100 ms before the hash: the first hash after a change may be too close to it).
fn hashed_then_stamped(state: &Path, to: &Path, file: &str) {
    let (out, _) = push_ok(state, &cpu_lock(), to);
    assert!(
        out.contains(&format!(
            "{file}: already on the host, verified there (hashed there)"
        )),
        "a changed file is hashed again: {out}"
    );
    stamped(state, to, file);
}

/// Pushes until a push finds `file` verified by its stamp alone.
fn stamped(state: &Path, to: &Path, file: &str) {
    poll_until(
        &format!("{file} stamped on the host"),
        Duration::from_secs(90),
        || {
            push_ok(state, &cpu_lock(), to).0.contains(&format!(
                "{file}: already on the host, verified there (stamp: unchanged since the host hashed it, not hashed again)"
            ))
        },
    );
}

/// A file verified on the host is stamped there and not hashed again while it is unchanged;
/// rewritten in place with its mtime put back, touched, or replaced by a rename, it is hashed
/// again (and, rewritten, caught and pushed again).
#[test]
fn a_file_verified_on_the_host_is_not_hashed_again_until_it_changes() {
    let state = tempfile::tempdir().expect("state");
    let to = state.path().join("on-the-host");
    let (out, _) = push_ok(state.path(), &cpu_lock(), &to);
    assert!(
        out.contains(&format!("{MODEL}: pushed, verified there")),
        "{out}"
    );
    stamped(state.path(), &to, MODEL);
    stamped(state.path(), &to, MMPROJ);
    assert!(
        to.join(format!(".{MMPROJ}.vlmctl-verified")).is_file(),
        "the stamp lies beside the file"
    );

    // Same size, content rewritten, mtime put back: the ctime moved, so it is hashed, found
    // different, and pushed again.
    edit_in_place_keeping_mtime(&to.join(MMPROJ));
    let (out, _) = push_ok(state.path(), &cpu_lock(), &to);
    assert!(
        out.contains(&format!("{MMPROJ}: pushed, verified there")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{MODEL}: already on the host, verified there (stamp:"
        )),
        "the untouched file keeps its stamp: {out}"
    );
    stamped(state.path(), &to, MMPROJ);

    // Touched: same bytes, new mtime: hashed again (and found whole).
    let now = std::time::SystemTime::now();
    std::fs::File::open(to.join(MMPROJ))
        .expect("open")
        .set_times(std::fs::FileTimes::new().set_modified(now))
        .expect("touch");
    hashed_then_stamped(state.path(), &to, MMPROJ);

    // Replaced by a rename (same bytes and mtime, as `cp -p`, but another inode): hashed
    // again.
    let copy = to.join("copy.tmp");
    std::fs::copy(to.join(MMPROJ), &copy).expect("copy");
    let mtime = std::fs::metadata(to.join(MMPROJ))
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::File::open(&copy)
        .expect("open")
        .set_times(std::fs::FileTimes::new().set_modified(mtime))
        .expect("keep the mtime");
    std::fs::rename(&copy, to.join(MMPROJ)).expect("rename over it");
    hashed_then_stamped(state.path(), &to, MMPROJ);

    // The stamp of a file that did not verify is gone with it: a damaged file, then no stamp
    // until the pushed one is hashed.
    std::fs::write(
        to.join(MMPROJ),
        vec![0u8; usize::try_from(MMPROJ_SIZE).unwrap_or(0)],
    )
    .expect("damage, same size");
    let (out, _) = push_ok(state.path(), &cpu_lock(), &to);
    assert!(
        out.contains(&format!("{MMPROJ}: pushed, verified there")),
        "{out}"
    );
    assert!(ssh_left().is_empty(), "{:?}", ssh_left());
}

/// A lock that names only the projector (as the model's file): what the host is asked for once
/// the lock no longer names the model's sha256.
fn projector_only_lock(dir: &Path) -> PathBuf {
    let model_dir = Path::new(&Env::require("VLMCTL_TEST_MMPROJ"))
        .parent()
        .expect("the projector's directory")
        .to_owned();
    let lock = dir.join("projector.lock");
    std::fs::write(
        &lock,
        format!(
            "version = 1\n\n[[model]]\nname = \"projector-only\"\n\
             repo = \"vlmctl-test/gemma-3-270m-GGUF\"\n\
             revision = \"0000000000000000000000000000000000000001\"\n\
             dir = \"{}\"\n\n[[model.file]]\npath = \"{MMPROJ}\"\nrole = \"model\"\n\
             size = {MMPROJ_SIZE}\nsha256 = \"{MMPROJ_SHA}\"\n",
            model_dir.display()
        ),
    )
    .expect("lock");
    lock
}

/// A staging folder with one 1 MiB piece, as a push would leave it.
fn staging_folder(to: &Path, name: &str) -> PathBuf {
    let d = to.join(name);
    std::fs::create_dir_all(&d).expect("folder");
    std::fs::write(d.join("0"), vec![7u8; 1 << 20]).expect("piece");
    d
}

/// Staging folders of killed pushes for files the lock no longer names are removed, and said
/// so; one another push is writing (its helper runs) is left, however old, until that push is
/// gone; an earlier version's folder is left while it may still be written.
#[test]
fn stale_staging_folders_are_removed_but_not_one_another_push_is_writing() {
    let state = tempfile::tempdir().expect("state");
    let to = state.path().join("on-the-host");
    // A real push of the model, killed once a piece of it is whole on the host.
    let mut killed = until_a_whole_piece(quiet(push(state.path(), &cpu_lock(), &to)), &to);
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reaped");
    let model_folders = entries(&to, &format!(".vlmctl-push-{MODEL_SHA}.live-"));
    assert_eq!(model_folders.len(), 1, "{:?}", entries(&to, ".vlmctl"));

    // An earlier version's folder (no helper in its name), untouched for an hour, and one
    // written a moment ago: the first goes, the second may still be another push's.
    let old_sha = "0".repeat(64);
    let recent_sha = "1".repeat(64);
    let old = staging_folder(&to, &format!(".vlmctl-push-{old_sha}"));
    backdate(&old.join("0"), Duration::from_secs(3600));
    backdate(&old, Duration::from_secs(3600));
    staging_folder(&to, &format!(".vlmctl-push-{recent_sha}"));

    // Another push, writing now: a helper on the host (through its engine, as a push starts
    // one) and a folder named after it, backdated as a resumed push's folder would be.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let writing_sha = "2".repeat(64);
    let engine = vlmctl_lifecycle::Engine::local(state.path());
    let docker = rt.block_on(engine.connect()).expect("the test engine");
    let image = Env::require("VLMCTL_TEST_LLAMA_IMAGE");
    let helper = rt
        .block_on(vlmctl_lifecycle::remote::Helper::start(
            &docker,
            engine.sessions(),
            &image,
            &to,
        ))
        .expect("a helper");
    let writing = format!(".vlmctl-push-{writing_sha}.live-{}", helper.id());
    let (code, said) = rt
        .block_on(helper.sh(&format!(
            "mkdir {writing} && head -c 1048576 /dev/zero > {writing}/0.part && mv {writing}/0.part {writing}/0"
        )))
        .expect("write a piece");
    assert_eq!(code, 0, "{said}");
    backdate(&to.join(&writing), Duration::from_secs(3600));

    // The lock is updated: it no longer names the model's file.
    let lock = projector_only_lock(state.path());
    let (out, err) = push_ok(state.path(), &lock, &to);
    assert!(
        out.contains(&format!("{MMPROJ}: pushed, verified there")),
        "{out}"
    );
    for gone in [&model_folders[0], &format!(".vlmctl-push-{old_sha}")] {
        assert!(
            err.contains(&format!("removed {gone} from the host (")),
            "{gone} removed and said so: {err}"
        );
        assert!(!to.join(gone).exists(), "{gone} is gone");
    }
    assert!(
        err.contains(&format!("left {writing} on the host ("))
            && err.contains("another push is writing it"),
        "{err}"
    );
    assert!(
        to.join(&writing).join("0").is_file(),
        "the live push's piece is still there"
    );
    assert!(
        to.join(format!(".vlmctl-push-{recent_sha}")).is_dir(),
        "a recent folder of an earlier version may still be written: left"
    );
    assert!(
        !err.contains(&format!(".vlmctl-push-{recent_sha}")),
        "{err}"
    );

    // That push is over (its helper gone): its folder is stale now, and goes.
    rt.block_on(helper.stop());
    let (_, err) = push_ok(state.path(), &lock, &to);
    assert!(
        err.contains(&format!("removed {writing} from the host (1.0 MB)")),
        "{err}"
    );
    assert!(!to.join(&writing).exists());
    assert_eq!(
        entries(&to, ".vlmctl"),
        vec![format!(".vlmctl-push-{recent_sha}")],
        "nothing else left"
    );
}

/// The `ssh` that forwards the host's Docker socket for the vlmctl process `pid`.
fn docker_forward_of(pid: u32) -> Option<u32> {
    forward_of(pid, "docker.sock")
}

/// The `ssh` of the vlmctl process `pid` whose command line has `needle`, for the test host.
fn forward_of(pid: u32, needle: &str) -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-a", "-P", &pid.to_string(), "ssh"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(needle) && l.contains(&format!("-p {}", port())))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
}

fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// The forward's `ssh` killed in the middle of a push (as a network blip or a restarted sshd
/// ends it): vlmctl says so, opens it again on the same socket, and the push completes; no
/// `ssh` is left after it, nor after a vlmctl killed with SIGKILL.
#[test]
fn a_forward_killed_mid_push_is_opened_again_and_the_push_completes() {
    let state = tempfile::tempdir().expect("state");
    let to = state.path().join("on-the-host");
    let out_file = state.path().join("stdout");
    let err_file = state.path().join("stderr");
    let mut pushing = push(state.path(), &cpu_lock(), &to);
    pushing
        .stdout(std::fs::File::create(&out_file).expect("stdout"))
        .stderr(std::fs::File::create(&err_file).expect("stderr"));
    let mut child = until_a_whole_piece(pushing, &to);
    let first = docker_forward_of(child.id()).expect("the push's forward runs");
    crate::common::signal("9", &first.to_string());
    poll_until("the forward's ssh gone", Duration::from_secs(10), || {
        gone(first)
    });
    let code = wait_for(&mut child, Duration::from_secs(300));
    let out = std::fs::read_to_string(&out_file).expect("stdout");
    let err = std::fs::read_to_string(&err_file).expect("stderr");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("{MODEL}: pushed, verified there")),
        "{out}"
    );
    assert!(
        err.contains(&format!("warning: the SSH forward to {}", remote()))
            && err.contains("is open again (try "),
        "said, and reopened: {err}"
    );
    assert!(!err.contains("could not be opened again"), "{err}");
    let (code, vout, verr) = run(vlmctl()
        .args(["weights", "verify", "--lock"])
        .arg(cpu_lock())
        .arg("--dir")
        .arg(&to)
        .current_dir(repo_root()));
    assert_eq!(
        code, 0,
        "the host's files are the locked ones: {vout}\n{verr}"
    );
    poll_until("no ssh left", Duration::from_secs(10), || {
        ssh_left().is_empty()
    });

    // vlmctl killed with SIGKILL while its forward runs: nothing reopens it, nothing outlives it.
    let again = state.path().join("again");
    let mut child = until_a_whole_piece(quiet(push(state.path(), &cpu_lock(), &again)), &again);
    assert!(docker_forward_of(child.id()).is_some());
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    poll_until(
        "the ssh of a killed vlmctl gone",
        Duration::from_secs(10),
        || ssh_left().is_empty(),
    );
}

/// The `ssh` of the vlmctl process `pid` that carries a TCP forward (a bench target).
fn tcp_forward_of(pid: u32) -> Option<u32> {
    forward_of(pid, "-L 127.0.0.1:")
}

/// `bench --host` with many runs against a server on the host's loopback: the forward's `ssh`
/// killed in the middle is opened again on the same port, the requests made meanwhile wait
/// for it, and the bench completes with every request but the one cut off answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_bench_target_forward_killed_mid_bench_is_opened_again() {
    use vlmctl_bench::fake_server::{DEFAULT_ANSWER, FakeServer, Options, Reply};
    const RUNS: u64 = 80;
    let server = FakeServer::start_with(
        [],
        Options {
            then: Reply::Say(DEFAULT_ANSWER.to_owned()).after(Duration::from_millis(50)),
            ..Options::default()
        },
    )
    .await
    .expect("fake server");
    let state = tempfile::tempdir().expect("state");
    // The host is this machine: its loopback is ours, where the fake server listens.
    let plan = crate::common::fake_plan(state.path(), &server.endpoint(), 30, "");
    let text = std::fs::read_to_string(&plan).expect("plan");
    std::fs::write(
        &plan,
        text.replace("runs = 3", &format!("runs = {RUNS}"))
            .replace("configs = [\"A\", \"C\"]", "configs = [\"A\"]"),
    )
    .expect("plan");
    let results = state.path().join("results");
    let out_file = state.path().join("stdout");
    let err_file = state.path().join("stderr");
    let mut child = vlmctl()
        .env("VLMCTL_STATE_DIR", state.path())
        .env("VLMCTL_SSH_CONFIG", Env::require("VLMCTL_TEST_SSH_CONFIG"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).expect("stdout"))
        .stderr(std::fs::File::create(&err_file).expect("stderr"))
        .args(["bench", "--host", &remote(), "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&results)
        .spawn()
        .expect("bench");
    poll_until("ten requests answered", Duration::from_secs(60), || {
        server.chat_requests() >= 10
    });
    let ssh = tcp_forward_of(child.id()).expect("the target's forward runs");
    crate::common::signal("9", &ssh.to_string());
    let at_kill = server.chat_requests();
    assert!(
        at_kill < 40,
        "the bench is still in its first half: {at_kill}"
    );
    let code = wait_for(&mut child, Duration::from_secs(120));
    let out = std::fs::read_to_string(&out_file).expect("stdout");
    let err = std::fs::read_to_string(&err_file).expect("stderr");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("is open again (try "), "{err}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("results.json")).expect("results.json"))
            .expect("json");
    let ok = doc["targets"][0]["configs"][0]["summary"]["ok"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        ok + 1 >= RUNS,
        "every request but the one cut off was answered: {ok} of {RUNS}\n{err}"
    );
    assert!(
        server.chat_requests() as u64 >= RUNS,
        "the rest went through the reopened forward"
    );
    // No local forward's address anywhere in the results, the failed request's words included.
    let written = std::fs::read_to_string(results.join("results.json")).expect("results.json");
    let own = server
        .endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // (The host's own address, `ssh://root@127.0.0.1:PORT`, is named as the target's host.)
    for (at, _) in written.match_indices("127.0.0.1:") {
        if written[..at].ends_with('@') {
            continue;
        }
        let here = &written[at..];
        assert!(
            here.starts_with(&own),
            "a forward's address in results.json: {}",
            &here[..here.len().min(60)]
        );
    }
    poll_until("no ssh left", Duration::from_secs(10), || {
        ssh_left().is_empty()
    });
}

/// The forward's `ssh` killed in the middle of a push while the host has stopped taking our
/// key (as a host that went away would refuse every try): a few tries, then a clear error with
/// what to do, exit 5, and no `ssh` left.
#[test]
fn a_host_that_stays_unreachable_after_its_forward_drops_is_a_clear_error() {
    let state = tempfile::tempdir().expect("state");
    let to = state.path().join("on-the-host");
    // Our own copy of the ssh configuration, so that it can change under the push.
    let config = state.path().join("ssh_config");
    std::fs::copy(Env::require("VLMCTL_TEST_SSH_CONFIG"), &config).expect("config");
    let err_file = state.path().join("stderr");
    let mut pushing = push(state.path(), &cpu_lock(), &to);
    pushing
        .env("VLMCTL_SSH_CONFIG", &config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).expect("stderr"));
    let mut child = until_a_whole_piece(pushing, &to);
    let ssh = docker_forward_of(child.id()).expect("the push's forward runs");
    // From now on every new ssh offers a key the host refuses.
    std::fs::copy(Env::require("VLMCTL_TEST_SSH_STRANGER_CONFIG"), &config).expect("config");
    crate::common::signal("9", &ssh.to_string());
    let code = wait_for(&mut child, Duration::from_secs(300));
    let err = std::fs::read_to_string(&err_file).expect("stderr");
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains(&format!(
            "warning: the SSH forward to {} could not be opened again in 4 tries",
            remote()
        )) && err.contains("Permission denied (publickey)"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "lost the SSH connection to {}: its forward ended and 4 tries to open it again failed",
            remote()
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "hint: the connection dropped and could not be made again: the host refused every key ssh offered"
        ) && err.contains("a push resumes from its whole pieces"),
        "{err}"
    );
    poll_until("no ssh left", Duration::from_secs(10), || {
        ssh_left().is_empty()
    });
}
