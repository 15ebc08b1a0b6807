//! Another host, for real: `--host ssh://root@127.0.0.1:PORT` through a real OpenSSH server
//! (`scripts/test` starts it with keys of its own) in front of the test dockerd; a host that
//! refuses the key; a host without Docker (the same machine seen from a mount namespace whose
//! /run is empty); Docker contexts and `DOCKER_HOST`. What the jobs do there, and that no `ssh`
//! outlives the command.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{required_env, run, vlmctl};
use crate::deploy_real::{Guard, readme_dir_args};

fn remote() -> String {
    format!(
        "ssh://root@127.0.0.1:{}",
        required_env("VLMCTL_TEST_SSH_PORT")
    )
}

fn cmd(state: &Path, config: &str) -> Command {
    let mut c = vlmctl();
    c.env("VLMCTL_STATE_DIR", state)
        .env("VLMCTL_SSH_CONFIG", config)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .stdin(Stdio::null());
    c
}

/// `ssh` processes of ours still running for `port` (their command line names it).
fn ssh_left(port: &str) -> Vec<String> {
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
    let good = required_env("VLMCTL_TEST_SSH_CONFIG");
    let stranger = required_env("VLMCTL_TEST_SSH_STRANGER_CONFIG");

    let (code, _, err) = run(cmd(state.path(), &stranger).args(["status", "--host", &remote()]));
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("Permission denied (publickey)"), "{err}");
    assert!(
        err.contains("hint: the host refused every key ssh offered"),
        "{err}"
    );

    let nodocker = format!(
        "ssh://root@127.0.0.1:{}",
        required_env("VLMCTL_TEST_SSH_NODOCKER_PORT")
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
    assert!(ssh_left(&required_env("VLMCTL_TEST_SSH_PORT")).is_empty());
}

#[test]
fn contexts_and_docker_host_name_the_remote_as_the_docker_cli_does() {
    let state = tempfile::tempdir().expect("state");
    let good = required_env("VLMCTL_TEST_SSH_CONFIG");
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
            required_env("VLMCTL_TEST_SSH_NODOCKER_PORT")
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
    let stranger = required_env("VLMCTL_TEST_SSH_STRANGER_CONFIG");
    let (code, _, err) = run(cmd(state.path(), &stranger)
        .arg("status")
        .env("DOCKER_HOST", remote()));
    assert_eq!(code, 5, "DOCKER_HOST went through ssh: {err}");
    assert!(err.contains("Permission denied"), "{err}");
}

/// The README's CPU deployment on the "remote" host: provisioned, ready and smoke-tested through
/// the forward, its state kept per host, relaunched (nothing to do), listed, torn down.
#[test]
fn provision_status_relaunch_and_teardown_through_ssh() {
    let state = tempfile::tempdir().expect("state");
    let good = required_env("VLMCTL_TEST_SSH_CONFIG");
    let _guard = Guard("vlmctl-cpu-test".to_owned());
    let host = remote();
    let job = |what: &str| {
        let mut c = cmd(state.path(), &good);
        c.args([what, "--host", &host, "--spec", "docker/cpu-test.toml"])
            .args(["--lock", "examples/cpu-test.lock"])
            .args(readme_dir_args());
        c
    };
    let (code, out, err) = run(&mut job("provision"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        format!("{out}{err}").contains("with the camera frame: +"),
        "the smoke request went through the forward: {out}{err}"
    );
    let host_dir = std::fs::read_dir(state.path().join("hosts"))
        .expect("a folder per host")
        .flatten()
        .map(|d| d.path())
        .find(|p| {
            p.file_name().is_some_and(|f| {
                f.to_string_lossy().starts_with(&format!(
                    "root-127.0.0.1-{}-",
                    required_env("VLMCTL_TEST_SSH_PORT")
                ))
            })
        })
        .expect("the host's state folder, named after its address");
    assert!(
        host_dir.join("records/vlmctl-cpu-test.json").exists(),
        "the record is the host's"
    );
    assert!(
        !state.path().join("records").exists(),
        "nothing in this machine's own state"
    );
    let (code, _, err) = run(&mut job("relaunch"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing to do"), "{err}");
    let (code, out, err) = run(cmd(state.path(), &good).args(["status", "--host", &host]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("vlmctl-cpu-test") && out.contains(" ok "),
        "{out}"
    );
    // The CPU bench against the host's loopback server, through a forward vlmctl opens.
    let results = state.path().join("bench");
    let (code, out, err) = run(cmd(state.path(), &good)
        .args([
            "bench",
            "--plan",
            "examples/cpu-bench.toml",
            "--host",
            &host,
            "--out",
        ])
        .arg(&results));
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("results.json")).expect("results.json"))
            .expect("json");
    assert_eq!(
        doc["targets"][0]["url"], "http://127.0.0.1:18435",
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
    crate::hosts_bench::bench_by_deployment(state.path(), &good, &host);
    let (code, out, err) =
        run(cmd(state.path(), &good).args(["teardown", "vlmctl-cpu-test", "--host", &host]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        ssh_left(&required_env("VLMCTL_TEST_SSH_PORT")).is_empty(),
        "no ssh left behind"
    );
}

/// `weights push` to the "remote" host through its engine: a push killed with SIGKILL in the
/// middle leaves whole pieces that the next push keeps; the files end verified there (and by
/// `weights verify` here, which reads the same disk); a damaged file on the host is replaced;
/// no helper container or staging folder is left.
#[test]
fn weights_push_resumes_after_kill_9_and_verifies_on_the_host() {
    let state = tempfile::tempdir().expect("state");
    let good = required_env("VLMCTL_TEST_SSH_CONFIG");
    let to = state.path().join("on-the-host");
    let push = || {
        let mut c = cmd(state.path(), &good);
        c.args([
            "weights",
            "push",
            "--host",
            &remote(),
            "--lock",
            "examples/cpu-test.lock",
        ])
        .args(readme_dir_args())
        .arg("--to")
        .arg(&to)
        .args(["--image", &required_env("VLMCTL_TEST_LLAMA_IMAGE")]);
        c
    };
    let mut first = push()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("push");
    // Killed once a piece is whole on the host (and before the file is).
    let whole_piece = || {
        std::fs::read_dir(&to)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().starts_with(".vlmctl-push-"))
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .any(|p| p.file_name().to_string_lossy().parse::<u64>().is_ok())
    };
    crate::common::poll_until(
        "a whole piece on the host",
        std::time::Duration::from_secs(60),
        whole_piece,
    );
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    assert!(
        !to.join("gemma-3-270m-q4_k_m.gguf").exists(),
        "no file under its final name before it verified"
    );

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
        .arg(&to)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")));
    assert_eq!(
        code, 0,
        "the host's files are the locked ones: {out}\n{err}"
    );
    nothing_left(&to);

    // A file damaged on the host is replaced; a whole one is left alone.
    std::fs::write(
        to.join("mmproj-gemma3-270m-test.gguf"),
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
}

/// No staging folder or partial file in `to`, and no helper container anywhere.
fn nothing_left(to: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(to)
        .expect("dir")
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".vlmctl") || n.ends_with(".vlmctl-partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let helpers = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=org.vlmctl.helper"])
        .output()
        .expect("docker ps");
    assert!(
        helpers.stdout.is_empty(),
        "the killed push's helper was removed too"
    );
}
