//! Another host, for real. "beast" (`scripts/lib/start-beast.sh`): a host in network and mount
//! namespaces of its own, with its own dockerd, sshd, loopback and empty models folder, reached
//! only as `ssh://root@127.0.0.1:PORT`; what vlmctl does there can only work through SSH (the
//! weights pushed, the server reached through a forward). Beside it, real OpenSSH servers in
//! front of this machine's dockerd (`scripts/lib/start-sshd.sh`, keys of their own): a host that
//! refuses the key, a host without Docker (this machine seen from a mount namespace whose /run
//! is empty), Docker contexts and `DOCKER_HOST`. And that no `ssh` outlives a command.

use std::path::Path;
use std::process::{Command, Stdio};

use vlmctl_test::LabelGuard;

use crate::common::{Env, run, vlmctl};
use crate::deploy_real::readme_dir_args;

/// A host in front of this machine's dockerd (same disk, same loopback).
pub(crate) fn remote() -> String {
    format!(
        "ssh://root@127.0.0.1:{}",
        Env::require("VLMCTL_TEST_SSH_PORT")
    )
}

/// beast's address.
pub(crate) fn beast() -> String {
    Env::require("VLMCTL_TEST_BEAST")
}

/// beast's port on this machine's loopback (what its `ssh` processes name with `-p`).
pub(crate) fn beast_port() -> String {
    beast().rsplit(':').next().expect("a port").to_owned()
}

/// Where this machine sees beast's `path` (its mount namespace, through /proc/PID/root): what
/// the tests look at and damage there; vlmctl never uses it.
pub(crate) fn on_beast(path: &Path) -> std::path::PathBuf {
    Path::new(&Env::require("VLMCTL_TEST_BEAST_ROOT")).join(path.strip_prefix("/").unwrap_or(path))
}

/// The docker CLI talking to beast's daemon (through a socket vlmctl does not know of).
pub(crate) fn beast_docker() -> Command {
    let mut c = Command::new("docker");
    c.args(["-H", &Env::require("VLMCTL_TEST_BEAST_DOCKER")]);
    c
}

/// The cleanup of the deployment `name` (its containers under every name vlmctl gives them) on
/// beast's daemon: removed now, whatever an earlier run left, and when dropped.
pub(crate) fn beast_guard(name: &str) -> LabelGuard {
    LabelGuard::deployment(name)
        .on(&Env::require("VLMCTL_TEST_BEAST_DOCKER"))
        .cleared()
}

/// Removes a folder from beast's disk when dropped.
struct BeastDir(std::path::PathBuf);
impl Drop for BeastDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(on_beast(&self.0));
    }
}

pub(crate) fn cmd(state: &Path, config: &str) -> Command {
    let mut c = vlmctl();
    c.env("VLMCTL_STATE_DIR", state)
        .env("VLMCTL_SSH_CONFIG", config)
        .current_dir(crate::common::repo_root())
        .stdin(Stdio::null());
    c
}

/// `ssh` processes of ours still running for `port` (their command line names it).
pub(crate) fn ssh_left(port: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-af", "^ssh "])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("-p {port}")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_refused_key_an_unknown_name_and_a_host_without_docker_are_clear_errors() {
    let state = tempfile::tempdir().expect("state");
    let good = Env::require("VLMCTL_TEST_SSH_CONFIG");
    let stranger = Env::require("VLMCTL_TEST_SSH_STRANGER_CONFIG");

    let (code, _, err) = run(cmd(state.path(), &stranger).args(["status", "--host", &remote()]));
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("Permission denied (publickey)"), "{err}");
    assert!(
        err.contains("hint: the host refused every key ssh offered"),
        "{err}"
    );

    let nodocker = format!(
        "ssh://root@127.0.0.1:{}",
        Env::require("VLMCTL_TEST_SSH_NODOCKER_PORT")
    );
    let (code, _, err) = run(cmd(state.path(), &good).args(["status", "--host", &nodocker]));
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains(&format!("cannot reach the Docker daemon at {nodocker}")),
        "{err}"
    );
    assert!(
        err.contains("hint: ssh reached the host, but no Docker daemon answered"),
        "{err}"
    );

    let (code, _, err) = run(cmd(state.path(), &good).args(["status", "--host", "titan"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no host \"titan\""), "{err}");
    let (code, _, err) = run(cmd(state.path(), &good).args(["status", "--host", "ssh://root@h:0"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("port"), "{err}");
    // A GPU spec's gate on another host looks at that host's GPUs, from a container there
    // (this machine's nvidia-smi would describe the wrong host). The test engine gives the
    // container no nvidia-smi, as a host without the NVIDIA toolkit would.
    let root = crate::common::repo_root();
    let gpu_spec = state.path().join("gpu.toml");
    std::fs::write(
        &gpu_spec,
        std::fs::read_to_string(root.join("docker/cpu-test.toml"))
            .expect("spec")
            .replace("gpus = \"none\"", "gpus = \"all\""),
    )
    .expect("gpu spec");
    let (code, out, err) = run(cmd(state.path(), &good)
        .args([
            "gates",
            "--host",
            &remote(),
            "--lock",
            "examples/cpu-test.lock",
            "--spec",
        ])
        .arg(&gpu_spec)
        .args(readme_dir_args()));
    assert_eq!(code, 7, "{out}\n{err}");
    assert!(
        out.contains("cannot run nvidia-smi in a container from"),
        "the GPU gate ran on the host: {out}"
    );
    assert!(ssh_left(&Env::require("VLMCTL_TEST_SSH_PORT")).is_empty());
}

#[test]
fn contexts_and_docker_host_name_the_remote_as_the_docker_cli_does() {
    let state = tempfile::tempdir().expect("state");
    let good = Env::require("VLMCTL_TEST_SSH_CONFIG");
    // A Docker context named beast, as `docker context create` writes it.
    let config = tempfile::tempdir().expect("docker config");
    let meta = config.path().join("contexts/meta/0123");
    std::fs::create_dir_all(&meta).expect("meta");
    std::fs::write(
        meta.join("meta.json"),
        format!(
            r#"{{"Name":"beast","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{}","SkipTLSVerify":false}}}}}}"#,
            remote()
        ),
    )
    .expect("meta.json");
    let (code, out, err) = run(cmd(state.path(), &good)
        .args(["status", "--host", "beast", "--json"])
        .env("DOCKER_CONFIG", config.path()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"containers\""), "{out}");
    // Every host in one table: this machine, beast, and titan (which has no Docker).
    let titan = config.path().join("contexts/meta/4567");
    std::fs::create_dir_all(&titan).expect("meta");
    std::fs::write(
        titan.join("meta.json"),
        format!(
            r#"{{"Name":"titan","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"ssh://root@127.0.0.1:{}","SkipTLSVerify":false}}}}}}"#,
            Env::require("VLMCTL_TEST_SSH_NODOCKER_PORT")
        ),
    )
    .expect("meta.json");
    let (code, out, err) = run(cmd(state.path(), &good)
        .args(["status", "--all-hosts"])
        .env("DOCKER_CONFIG", config.path()));
    assert_eq!(
        code, 5,
        "titan did not answer: the answer is incomplete\n{err}"
    );
    let hosts: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        hosts.contains(&"local") && hosts.contains(&"beast"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("titan")
                && l.contains("unreachable: cannot reach the Docker daemon")),
        "{out}"
    );
    std::fs::remove_dir_all(&titan).expect("titan gone again");
    // The current context, when nothing else names a host.
    std::fs::write(
        config.path().join("config.json"),
        r#"{"currentContext":"beast"}"#,
    )
    .expect("config.json");
    let (code, _, err) = run(cmd(state.path(), &good)
        .args(["status", "--host", "titan"])
        .env("DOCKER_CONFIG", config.path()));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("the Docker contexts are: beast"), "{err}");
    // DOCKER_HOST=ssh://... as the docker CLI takes it.
    let stranger = Env::require("VLMCTL_TEST_SSH_STRANGER_CONFIG");
    let (code, _, err) = run(cmd(state.path(), &stranger)
        .arg("status")
        .env("DOCKER_HOST", remote()));
    assert_eq!(code, 5, "DOCKER_HOST went through ssh: {err}");
    assert!(err.contains("Permission denied"), "{err}");
}

/// The folder the test model is in here (and, on beast, where vlmctl must put it).
fn model_dir() -> std::path::PathBuf {
    Path::new(&Env::require("VLMCTL_TEST_MODEL"))
        .parent()
        .expect("the model's directory")
        .to_owned()
}

/// `docker/cpu-test.toml` (the README's CPU deployment) written into `dir` with a port free on
/// this machine instead of its 18435; the spec and the port.
pub(crate) fn spec_on_a_free_port(dir: &Path) -> (std::path::PathBuf, u16) {
    let root = crate::common::repo_root();
    let text = std::fs::read_to_string(root.join("docker/cpu-test.toml")).expect("spec");
    assert!(
        text.contains("\nport = 18435\n"),
        "the README's spec names its port"
    );
    let port = vlmctl_test::free_port();
    let spec = dir.join("cpu-test.toml");
    let text = text.replace("\nport = 18435\n", &format!("\nport = {port}\n"));
    std::fs::write(&spec, text).expect("spec");
    (spec, port)
}

/// `examples/cpu-bench.toml` (the README's CPU bench) written into `dir` aimed at `port`
/// instead of 18435, with its camera frame and prompts beside it.
fn plan_on_port(dir: &Path, port: u16) -> std::path::PathBuf {
    let text = std::fs::read_to_string(crate::common::repo_root().join("examples/cpu-bench.toml"))
        .expect("plan");
    let url = "url = \"http://127.0.0.1:18435\"";
    assert!(text.contains(url), "the README's plan names its url");
    crate::serve_real::frame_and_prompts_into(dir);
    let plan = dir.join("cpu-bench.toml");
    let aimed = text.replace(url, &format!("url = \"http://127.0.0.1:{port}\""));
    std::fs::write(&plan, aimed).expect("plan");
    plan
}

/// beast's journals, records and locks are in a folder of its own, named after its address.
fn beasts_state_is_its_own(state: &Path) {
    let host_dir = std::fs::read_dir(state.join("hosts"))
        .expect("a folder per host")
        .flatten()
        .map(|d| d.path())
        .find(|p| {
            p.file_name().is_some_and(|f| {
                f.to_string_lossy()
                    .starts_with(&format!("root-127.0.0.1-{}-", beast_port()))
            })
        })
        .expect("the host's state folder, named after its address");
    assert!(
        host_dir.join("records/vlmctl-cpu-test.json").exists(),
        "the record is the host's"
    );
    assert!(
        !state.join("records").exists(),
        "nothing in this machine's own state"
    );
}

/// The README's CPU deployment on beast, which starts without the weights: provision pushes
/// them (verified there), launches, waits for `/health` and sends the smoke request through a
/// forward (the server is on beast's loopback, which this machine cannot reach); its state is
/// kept per host; relaunched (nothing to do), listed, benchmarked through the forward, recorded
/// under beast's name, torn down; no `ssh` left.
#[test]
fn provision_pushes_the_weights_then_bench_and_teardown_through_ssh() {
    let state = tempfile::tempdir().expect("state");
    let good = Env::require("VLMCTL_TEST_SSH_CONFIG");
    let _guard = beast_guard("vlmctl-cpu-test");
    let host = beast();
    // beast starts without the weights, whatever an earlier run left there.
    let there = on_beast(&model_dir());
    if there.exists() {
        std::fs::remove_dir_all(&there).expect("beast's copy removed");
    }
    // The README's spec on a port of its own: the other real-environment lane may serve the
    // README's deployment on this machine's 18435 meanwhile (.config/nextest.toml).
    let (spec, port) = spec_on_a_free_port(state.path());
    let job = |what: &str| {
        let mut c = cmd(state.path(), &good);
        c.args([what, "--host", &host, "--spec"])
            .arg(&spec)
            .args(["--lock", "examples/cpu-test.lock"])
            .args(readme_dir_args());
        c
    };
    let (code, out, err) = run(&mut job("provision"));
    assert_eq!(code, 0, "{out}\n{err}");
    let said = format!("{out}{err}");
    for f in ["gemma-3-270m-q4_k_m.gguf", "mmproj-gemma3-270m-test.gguf"] {
        assert!(
            said.contains(&format!("pushed {f} (")) && said.contains("to the host, verified there"),
            "provision pushed {f} to beast: {said}"
        );
        let here = std::fs::metadata(model_dir().join(f)).expect("here").len();
        let on = std::fs::metadata(there.join(f)).map(|m| m.len());
        assert_eq!(on.ok(), Some(here), "{f} is on beast's own disk");
    }
    assert!(
        said.contains("with the camera frame: +"),
        "the smoke request went through the forward: {said}"
    );
    // The server listens on beast's loopback only: from here, nothing answers on its port.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} answers on this machine: the deployment is not beast's alone"
    );
    let listed = beast_docker()
        .args(["ps", "-q", "--filter", "name=^vlmctl-cpu-test$"])
        .output()
        .expect("docker ps on beast");
    assert!(!listed.stdout.is_empty(), "the container runs on beast");
    beasts_state_is_its_own(state.path());
    let (code, _, err) = run(&mut job("relaunch"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing to do"), "{err}");
    assert!(!err.contains("pushed "), "nothing pushed again: {err}");
    relaunch_after_damage_on_beast_serves_the_verified_file(&mut || job("relaunch"), &there);
    let (code, out, err) = run(cmd(state.path(), &good).args(["status", "--host", &host]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("vlmctl-cpu-test") && out.contains(" ok "),
        "{out}"
    );
    // The CPU bench against beast's loopback server, through a forward vlmctl opens.
    let results = state.path().join("bench");
    let (code, out, err) = run(cmd(state.path(), &good)
        .args(["bench", "--plan"])
        .arg(plan_on_port(state.path(), port))
        .args(["--host", &host, "--out"])
        .arg(&results));
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("results.json")).expect("results.json"))
            .expect("json");
    assert_eq!(
        doc["targets"][0]["url"],
        format!("http://127.0.0.1:{port}"),
        "the results name the host's own address, not the local forward"
    );
    assert!(doc["targets"][0]["configs"][0]["summary"]["ok"].as_u64() > Some(0));
    let (code, out, err) = run(cmd(state.path(), &good).args(["runs", "list", "--json"]));
    assert_eq!(code, 0, "{err}");
    let runs: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(runs[0]["host"], host.as_str(), "recorded as the host's");
    assert_eq!(
        runs[0]["targets"][0]["deployment"], "vlmctl-cpu-test",
        "linked to the deployment on that host"
    );
    crate::hosts_bench::bench_by_deployment(state.path(), &good, &host, port);
    let (code, out, err) =
        run(cmd(state.path(), &good).args(["teardown", "vlmctl-cpu-test", "--host", &host]));
    assert_eq!(code, 0, "{out}\n{err}");
    let listed = beast_docker()
        .args(["ps", "-aq", "--filter", "name=^vlmctl-cpu-test$"])
        .output()
        .expect("docker ps on beast");
    assert!(listed.stdout.is_empty(), "torn down on beast");
    assert!(ssh_left(&beast_port()).is_empty(), "no ssh left behind");
}

/// The model file damaged in place on beast under the running server: the relaunch finds it,
/// pushes a good copy (another inode) and must then replace the server, which otherwise keeps
/// mapping the damaged, deleted file; what the new server maps hashes to the locked sha256.
fn relaunch_after_damage_on_beast_serves_the_verified_file(
    relaunch: &mut dyn FnMut() -> Command,
    there: &Path,
) {
    use crate::deploy_real::{FILE, SHA, damage_in_place, mapped_sha256};
    let server = || -> (String, u32) {
        let out = beast_docker()
            .args(["inspect", "-f", "{{.Id}} {{.State.Pid}}", "vlmctl-cpu-test"])
            .output()
            .expect("docker inspect on beast");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (id, pid) = text.trim().split_once(' ').expect("id and pid");
        (id.to_owned(), pid.parse().expect("a pid"))
    };
    let (id_before, pid) = server();
    assert_eq!(mapped_sha256(pid, FILE).as_deref(), Some(SHA));
    damage_in_place(&there.join(FILE));
    assert_ne!(mapped_sha256(pid, FILE).as_deref(), Some(SHA));
    let (code, out, err) = run(&mut relaunch());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains(&format!("pushed {FILE} (")), "{err}");
    assert!(
        err.contains("changed since it started") && err.contains("replaced vlmctl-cpu-test"),
        "{err}"
    );
    assert!(!err.contains("nothing to do"), "{err}");
    let (id_after, pid) = server();
    assert_ne!(id_after, id_before);
    assert_eq!(
        mapped_sha256(pid, FILE).as_deref(),
        Some(SHA),
        "the server on beast maps the verified file"
    );
}

/// `weights push` to beast through its engine: a push killed with SIGKILL in the middle leaves
/// whole pieces that the next push keeps; the files end verified there (and by `weights
/// verify` run here on beast's disk); a damaged file on the host is replaced; no helper
/// container or staging folder is left.
#[test]
fn weights_push_resumes_after_kill_9_and_verifies_on_the_host() {
    let state = tempfile::tempdir().expect("state");
    let good = Env::require("VLMCTL_TEST_SSH_CONFIG");
    // A folder on beast (its /tmp is its own); this machine has no such folder.
    let to = state.path().join("on-the-host");
    let _cleanup = BeastDir(state.path().to_owned());
    let there = on_beast(&to);
    let push = || {
        let mut c = cmd(state.path(), &good);
        c.args([
            "weights",
            "push",
            "--host",
            &beast(),
            "--lock",
            "examples/cpu-test.lock",
        ])
        .args(readme_dir_args())
        .arg("--to")
        .arg(&to)
        .args(["--image", &Env::require("VLMCTL_TEST_LLAMA_IMAGE")]);
        c
    };
    // Killed once a piece is whole on the host (and before the file is).
    let whole_piece = || crate::hosts_push::a_whole_piece(&there);
    interrupted_push_leaves_no_helper(&push, &whole_piece);
    // Then SIGKILL, in the middle of the next push.
    let mut first = push()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("push");
    crate::common::poll_until(
        "the next push's helper on beast",
        std::time::Duration::from_secs(60),
        || {
            beast_docker()
                .args(["ps", "-q", "--filter", "label=org.vlmctl.helper"])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty())
        },
    );
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    assert!(
        !there.join("gemma-3-270m-q4_k_m.gguf").exists(),
        "no file under its final name before it verified"
    );
    assert!(!to.exists(), "the push wrote on beast, not here");

    let (code, out, err) = run(&mut push());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("gemma-3-270m-q4_k_m.gguf: pushed, verified there"),
        "{out}"
    );
    // "... (N piece(s) sent, K kept from an earlier push)"
    let kept: u64 = out
        .lines()
        .find(|l| l.starts_with("gemma-3-270m-q4_k_m.gguf"))
        .and_then(|l| l.split(" kept from").next())
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(kept >= 1, "the pieces of the killed push were kept: {out}");
    let (code, out, err) = run(vlmctl()
        .args([
            "weights",
            "verify",
            "--lock",
            "examples/cpu-test.lock",
            "--dir",
        ])
        .arg(&there)
        .current_dir(crate::common::repo_root()));
    assert_eq!(
        code, 0,
        "the host's files are the locked ones: {out}\n{err}"
    );
    nothing_left(&there);

    // A file damaged on the host is replaced; a whole one is left alone.
    std::fs::write(
        there.join("mmproj-gemma3-270m-test.gguf"),
        b"not the projector",
    )
    .expect("damage");
    let (code, out, err) = run(&mut push());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("gemma-3-270m-q4_k_m.gguf: already on the host, verified there"),
        "{out}"
    );
    assert!(
        out.contains("mmproj-gemma3-270m-test.gguf: pushed, verified there"),
        "{out}"
    );
    assert!(ssh_left(&beast_port()).is_empty(), "no ssh left behind");
}

/// A push stopped by Ctrl-C once a piece is whole on beast: exit 130, its helper removed from
/// beast on the way out, its pieces kept.
fn interrupted_push_leaves_no_helper(push: &dyn Fn() -> Command, whole_piece: &dyn Fn() -> bool) {
    let interrupted = push()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("push");
    crate::common::poll_until(
        "a whole piece on the host",
        std::time::Duration::from_secs(60),
        whole_piece,
    );
    crate::common::signal("INT", &interrupted.id().to_string());
    let ended = interrupted.wait_with_output().expect("push ends");
    let said = String::from_utf8_lossy(&ended.stderr);
    assert_eq!(ended.status.code(), Some(130), "{said}");
    assert!(said.contains("weights push stopped by Ctrl-C"), "{said}");
    let helpers = beast_docker()
        .args(["ps", "-aq", "--filter", "label=org.vlmctl.helper"])
        .output()
        .expect("docker ps");
    assert!(
        helpers.stdout.is_empty(),
        "the interrupted push's helper is gone"
    );
    assert!(whole_piece(), "its pieces are kept");
}

/// No staging folder or partial file in `to`, and no helper container on beast.
fn nothing_left(to: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(to)
        .expect("dir")
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".vlmctl") || n.contains(".vlmctl-partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let helpers = beast_docker()
        .args(["ps", "-aq", "--filter", "label=org.vlmctl.helper"])
        .output()
        .expect("docker ps");
    assert!(
        helpers.stdout.is_empty(),
        "the killed push's helper was removed too"
    );
}

/// Whether `name` runs on beast.
pub(crate) fn running_on_beast(name: &str) -> bool {
    beast_docker()
        .args(["inspect", "-f", "{{.State.Running}}", name])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
}

/// The CPU spec with a conflict on beast to stop: a busybox that sleeps, of the image busybox
/// is from ([`LabelGuard::conflict`], built on beast's daemon): no Docker health check (the test
/// image's would never pass for a `sleep`), so its restore is proven alive as a real conflict's
/// would be. Returns the spec, the conflict's name and its guard (removes it and its image).
pub(crate) fn spec_with_conflict(dir: &Path) -> (std::path::PathBuf, String, LabelGuard) {
    let guard = LabelGuard::new("beastconflict").on(&Env::require("VLMCTL_TEST_BEAST_DOCKER"));
    let conflict = guard.conflict(&dir.join("busybox-ctx"), 1);
    let root = crate::common::repo_root();
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            "{}\n[[conflict]]\nname = \"{conflict}\"\n",
            std::fs::read_to_string(root.join("docker/cpu-test.toml")).expect("spec")
        ),
    )
    .expect("spec");
    (spec, conflict, guard)
}

/// Beast as before a cut-off provision: the conflict runs again, no deployment, no `ssh` left.
fn back_as_before(conflict: &str, context: &str) {
    assert!(
        running_on_beast(conflict),
        "the conflict is back on beast: {context}"
    );
    assert!(
        !running_on_beast("vlmctl-cpu-test"),
        "the half-done deployment is gone: {context}"
    );
    assert!(ssh_left(&beast_port()).is_empty(), "no ssh left behind");
}

/// A provision on beast that stops a conflict there, cut off after the stop: by a Ctrl-C (the
/// terminal's SIGINT to vlmctl's whole process group) it undoes itself through SSH
/// and exits 130; by SIGKILL it leaves a journal on this machine that `restore --host` acts on.
/// Either way the conflict runs again on beast and no deployment is left there.
#[test]
fn ctrl_c_or_kill_9_mid_provision_on_beast_brings_its_conflict_back() {
    use std::os::unix::process::CommandExt as _;
    let state = tempfile::tempdir().expect("state");
    let good = Env::require("VLMCTL_TEST_SSH_CONFIG");
    let _guard = beast_guard("vlmctl-cpu-test");
    let (spec, conflict, _conflict) = spec_with_conflict(state.path());
    let conflict = conflict.as_str();
    let provision = || {
        let mut c = cmd(state.path(), &good);
        c.args([
            "provision",
            "--host",
            &beast(),
            "--stop",
            conflict,
            "--spec",
        ])
        .arg(&spec)
        .args(["--lock", "examples/cpu-test.lock"])
        .args(readme_dir_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
        c
    };
    let stopped = || !running_on_beast(conflict);

    let child = provision().spawn().expect("provision");
    crate::common::poll_until(
        "provision to stop the conflict on beast",
        std::time::Duration::from_secs(120),
        stopped,
    );
    let group = format!("-{}", child.id());
    crate::common::signal("INT", &group);
    let out = child.wait_with_output().expect("provision ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    back_as_before(conflict, &format!("Ctrl-C\n{err}"));

    let mut child = provision().spawn().expect("provision");
    crate::common::poll_until(
        "provision to stop the conflict on beast",
        std::time::Duration::from_secs(120),
        stopped,
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(stopped(), "nothing brought the conflict back yet");
    let (code, out, err) = run(cmd(state.path(), &good).args(["restore", "--host", &beast()]));
    assert_eq!(code, 0, "{out}\n{err}");
    back_as_before(conflict, &format!("restore --host\n{out}\n{err}"));
}

/// `tune --host beast`: each variant is launched on beast and measured through a forward (the
/// server is on beast's loopback), and the original is back afterwards: the same container.
#[test]
fn tune_on_beast_measures_through_the_forward_and_puts_the_original_back() {
    let state = tempfile::tempdir().expect("state");
    let good = Env::require("VLMCTL_TEST_SSH_CONFIG");
    let _guard = beast_guard("vlmctl-cpu-test");
    let job = |what: &str| {
        let mut c = cmd(state.path(), &good);
        c.args([what, "--host", &beast(), "--spec", "docker/cpu-test.toml"])
            .args(["--lock", "examples/cpu-test.lock"])
            .args(readme_dir_args());
        c
    };
    let (code, out, err) = run(&mut job("provision"));
    assert_eq!(code, 0, "{out}\n{err}");
    let id = || {
        let o = beast_docker()
            .args(["inspect", "-f", "{{.Id}}", "vlmctl-cpu-test"])
            .output()
            .expect("inspect on beast");
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let before = id();
    let plan = state.path().join("plan.toml");
    crate::tune_real::write_plan(&plan);
    let variants = state.path().join("tune.toml");
    std::fs::write(
        &variants,
        "[[variant]]\nname = \"ctx-1k\"\nctx_size = 1024\n",
    )
    .expect("tune.toml");
    let (code, out, err) = run(job("tune")
        .arg("--plan")
        .arg(&plan)
        .arg("--variants")
        .arg(&variants)
        .arg("--out")
        .arg(state.path().join("tune-out")));
    assert_eq!(code, 0, "{out}\n{err}");
    let row = out
        .lines()
        .find(|l| l.contains("ctx-1k"))
        .unwrap_or_else(|| panic!("a row for the variant: {out}"));
    assert!(
        !row.contains("failed") && !row.contains("error"),
        "the variant was measured on beast: {row}\n{out}\n{err}"
    );
    assert_eq!(id(), before, "the original is back on beast: {out}\n{err}");
    assert!(running_on_beast("vlmctl-cpu-test"));
    assert!(ssh_left(&beast_port()).is_empty(), "no ssh left behind");
}
