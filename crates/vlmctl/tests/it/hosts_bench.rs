//! Bench plans that name their targets by host and deployment, for real: the CPU deployment on
//! the host `hosts_real.rs` provisions it on (beast, in namespaces of its own), found from its
//! container and measured through a forward vlmctl opens, with no `--host`; and the clear
//! errors, before any request, for a deployment that is not there and a host without Docker.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use vlmctl_bench::fake_server::FakeServer;

use crate::common::{Env, run, vlmctl};

fn cmd(state: &Path, ssh_config: &str) -> Command {
    let mut c = vlmctl();
    c.env("VLMCTL_STATE_DIR", state)
        .env("VLMCTL_SSH_CONFIG", ssh_config)
        .current_dir(crate::common::repo_root())
        .stdin(Stdio::null());
    c
}

/// A plan `dir/name` (the repository's camera frame and prompts; configs A and T, 3 runs after
/// one warm-up, 8 tokens) with these `[[target]]` tables.
fn write_plan(dir: &Path, name: &str, targets: &str) -> PathBuf {
    let examples = crate::common::repo_root().join("examples");
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "version = 1\nruns = 3\nwarmup = 1\nmax_tokens = 8\ndescribe = false\n\
             configs = [\"A\", \"T\"]\nimage = \"{e}/camera.png\"\n\
             [prompts]\nnav = \"{e}/prompts/nav.txt\"\nnav_short = \"{e}/prompts/nav-short.txt\"\n\
             {targets}",
            e = examples.display()
        ),
    )
    .expect("plan");
    path
}

/// `runs list --json [ARGS]`, parsed.
fn runs(state: &Path, ssh_config: &str, args: &[&str]) -> Vec<Value> {
    let (code, out, err) = run(cmd(state, ssh_config)
        .args(["runs", "list", "--json"])
        .args(args));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The port of every `http://127.0.0.1:PORT` in `text` (the host's own URLs, or a forward's).
fn loopback_ports(text: &str) -> Vec<&str> {
    text.match_indices("http://127.0.0.1:")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            &rest[..rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len())]
        })
        .collect()
}

/// With `vlmctl-cpu-test` provisioned on `host` (an `ssh://` URL whose engine the test dockerd
/// is), a plan that names it by `host` and `deployment`, beside one that names the host's own
/// URL, benches it through a forward: the results name the host's URL (never the forward's
/// port), the host and the deployment, and the history links both targets to the deployment
/// on that host. A deployment that is not there, and a host without Docker, are errors that
/// name the plan's line before any request is sent.
pub(crate) fn bench_by_deployment(state: &Path, ssh_config: &str, host: &str, port: u16) {
    let dir = tempfile::tempdir().expect("plan dir");
    let run_id = measured_through_the_forward(state, ssh_config, host, port, dir.path());
    refused_before_any_request(state, ssh_config, host, dir.path(), &run_id);
}

/// The plan by deployment and by the host's URL, benched; the id of the run it recorded.
fn measured_through_the_forward(
    state: &Path,
    ssh_config: &str,
    host: &str,
    port: u16,
    dir: &Path,
) -> Value {
    let url = format!("http://127.0.0.1:{port}");
    let plan = write_plan(
        dir,
        "by-deployment.toml",
        &format!(
            "[[target]]\nname = \"by-deployment\"\nhost = \"{host}\"\ndeployment = \"vlmctl-cpu-test\"\n\
             [[target]]\nname = \"by-url\"\nhost = \"{host}\"\nurl = \"{url}\"\n"
        ),
    );
    let out_dir = dir.join("results");
    // No --host: the plan says where each target is.
    let (code, out, err) = run(cmd(state, ssh_config)
        .args(["bench", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&out_dir));
    assert_eq!(code, 0, "{out}\n{err}");
    let text = std::fs::read_to_string(out_dir.join("results.json")).expect("results.json");
    let doc: Value = serde_json::from_str(&text).expect("json");
    for (i, t) in doc["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .enumerate()
    {
        assert_eq!(
            t["url"], url,
            "target {i}: the deployment's address as the host sees it, not the local forward"
        );
        assert_eq!(t["host"], host, "target {i}");
        assert_eq!(t["deployment"], "vlmctl-cpu-test", "target {i}");
        assert!(
            t["configs"][0]["summary"]["ok"].as_u64() > Some(0),
            "target {i} was measured: {t}"
        );
    }
    assert_eq!(doc["plan"]["target"][0]["url"], url);
    assert_eq!(doc["plan"]["target"][0]["deployment"], "vlmctl-cpu-test");
    assert!(
        loopback_ports(&text).iter().all(|p| *p == port.to_string()),
        "no forward's port is recorded: {:?}",
        loopback_ports(&text)
    );
    assert!(
        std::fs::read_to_string(out_dir.join("report.md"))
            .expect("report.md")
            .contains(&format!(
                "## by-deployment (OpenAI, {url}, on {host}, deployment vlmctl-cpu-test)"
            )),
        "the report says where"
    );
    // The history: both targets linked to the deployment on that host, found by that host.
    let listed = runs(state, ssh_config, &["--limit", "1"]);
    let newest = &listed[0];
    for (i, t) in newest["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .enumerate()
    {
        assert_eq!(t["host"], host, "target {i}: {newest}");
        assert_eq!(t["deployment"], "vlmctl-cpu-test", "target {i}: {newest}");
        assert_eq!(t["url"], url, "target {i}: {newest}");
        assert!(
            t["spec_sha256"].as_str().is_some_and(|s| s.len() == 64),
            "the deployment's labels, read on its host: {newest}"
        );
    }
    let on_host = runs(
        state,
        ssh_config,
        &["--host", host, "--deployment", "vlmctl-cpu-test"],
    );
    assert!(
        on_host.iter().any(|r| r["id"] == newest["id"]),
        "found by its targets' host: {on_host:?}"
    );
    newest["id"].clone()
}

/// A deployment that is not on `host`, and a host without Docker: errors at the plan's line,
/// exit 3 and 5, before any request (a server in the same plan sees none), with nothing
/// written and nothing recorded after run `last`.
fn refused_before_any_request(
    state: &Path,
    ssh_config: &str,
    host: &str,
    dir: &Path,
    last: &Value,
) {
    // A deployment that is not on that host, behind a target that would answer: nothing is
    // sent to either, nothing is written or recorded.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(FakeServer::start([])).expect("fake server");
    let missing = write_plan(
        dir,
        "missing.toml",
        &format!(
            "[[target]]\nname = \"here\"\nurl = \"{}\"\n\
             [[target]]\nname = \"cpu\"\nhost = \"{host}\"\n\ndeployment = \"vlmctl-no-such\"\n",
            server.endpoint()
        ),
    );
    let nowhere = dir.join("not-written");
    let (code, out, err) = run(cmd(state, ssh_config)
        .args(["bench", "--plan"])
        .arg(&missing)
        .arg("--out")
        .arg(&nowhere));
    assert_eq!(code, 3, "a plan that names what is not there\n{out}\n{err}");
    let want = format!(
        "error: {}:18: target.deployment: target \"cpu\": no deployment \"vlmctl-no-such\" on host \
         {host} (vlmctl manages ",
        missing.display()
    );
    assert!(err.contains(&want), "want {want:?} in {err}");
    assert!(err.contains("vlmctl-cpu-test"), "what is there: {err}");
    assert!(
        err.contains(&format!(
            "hint: correct the name (`vlmctl status --host {host}` lists the deployments there)"
        )),
        "{err}"
    );
    assert_eq!(server.requests(), Vec::new(), "no request was sent");
    assert!(!nowhere.exists(), "nothing written");
    assert_eq!(
        &runs(state, ssh_config, &["--limit", "1"])[0]["id"],
        last,
        "nothing recorded"
    );

    // A host without Docker: exit 5, the line of its `host`, and what ssh found.
    let nodocker = format!(
        "ssh://root@127.0.0.1:{}",
        Env::require("VLMCTL_TEST_SSH_NODOCKER_PORT")
    );
    let dead = write_plan(
        dir,
        "no-docker.toml",
        &format!(
            "[[target]]\nname = \"here\"\nurl = \"{}\"\n\
             [[target]]\nname = \"cpu\"\nhost = \"{nodocker}\"\ndeployment = \"vlmctl-cpu-test\"\n",
            server.endpoint()
        ),
    );
    let (code, out, err) = run(cmd(state, ssh_config)
        .args(["bench", "--plan"])
        .arg(&dead)
        .arg("--out")
        .arg(&nowhere));
    assert_eq!(code, 5, "{out}\n{err}");
    let want = format!(
        "error: {}:16: target \"cpu\": cannot reach host {nodocker}",
        dead.display()
    );
    assert!(err.contains(&want), "want {want:?} in {err}");
    assert!(
        err.contains("hint: ssh reached the host, but no Docker daemon answered"),
        "{err}"
    );
    assert_eq!(server.requests(), Vec::new(), "no request was sent");
    assert!(!nowhere.exists(), "nothing written");
}
