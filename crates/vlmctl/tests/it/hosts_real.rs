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
    let host_dir = state
        .path()
        .join("hosts/ssh-root-127.0.0.1-".to_owned() + &required_env("VLMCTL_TEST_SSH_PORT"));
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
    let (code, out, err) =
        run(cmd(state.path(), &good).args(["teardown", "vlmctl-cpu-test", "--host", &host]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        ssh_left(&required_env("VLMCTL_TEST_SSH_PORT")).is_empty(),
        "no ssh left behind"
    );
}
