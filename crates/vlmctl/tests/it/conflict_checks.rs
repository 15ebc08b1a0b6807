//! Restored conflicts proven alive (issue #23 part 5), with busybox stand-ins and the CPU
//! llama-server: the shipped `panda-e4b` spec stops its Chatterbox and, at teardown, starts
//! it again and probes it; a stand-in whose probe fails after restore makes `teardown` and
//! `restore` exit 12 naming it until it works again; `--keep-stopped` leaves one stopped,
//! `status` shows it and `restore --start` brings it back.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{free_port, run};
use crate::deploy_real::{Run, docker, hub, running};

/// A busybox image (`/bin/busybox` as the entrypoint), labelled with the run.
fn busybox_image(r: &Run) -> String {
    let ctx = r.path("busybox-httpd");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(
        vlmctl_test::Env::require("VLMCTL_TEST_BUSYBOX"),
        ctx.join("busybox"),
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        // `/bin/sh` too: Docker runs a `--health-cmd` through it.
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .unwrap();
    r.build_image("busybox-httpd", &ctx)
}

/// Starts `name` on the host network: it serves `GET /health` (200) on 127.0.0.1:`port` on
/// its first start; with `once`, a later start (the restore) only sleeps, so that its probe
/// fails until someone starts the server in it again.
fn http_stand_in(r: &Run, image: &str, name: &str, port: u16, once: bool) {
    let serve = format!(
        "B=/bin/busybox; $B mkdir -p /www; echo ok > /www/health; \
         exec $B httpd -f -p 127.0.0.1:{port} -h /www"
    );
    let script = if once {
        format!(
            "B=/bin/busybox; if [ -e /started ]; then exec $B sleep 3600; fi; $B touch /started; {serve}"
        )
    } else {
        serve
    };
    let label = format!("org.vlmctl.test-run={}", r.id);
    // The one that keeps serving has a Docker health check too: the restore waits for it to
    // say healthy. (The other's would say unhealthy first; its probe is what is tested.)
    let health = format!("/bin/busybox wget -q -O /dev/null http://127.0.0.1:{port}/health");
    let health_args: &[&str] = if once {
        &["--no-healthcheck"]
    } else {
        &["--health-cmd", &health, "--health-interval", "1s"]
    };
    let mut args = vec!["run", "-d", "--name", name, "--label", &label];
    args.extend_from_slice(health_args);
    args.extend_from_slice(&[
        "--network",
        "host",
        "--restart",
        "always",
        "--stop-timeout",
        "1",
        image,
        "sh",
        "-c",
        &script,
    ]);
    docker(&args);
    crate::common::poll_until(
        "the stand-in serving",
        std::time::Duration::from_secs(30),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
}

fn lock(r: &Run) -> PathBuf {
    r.write_lock()
}

/// The shipped `docker/panda-e4b.toml` on the CPU test stack: only what cannot run here is
/// rewritten (name made unique, image, model, gpus, port, layers, threads); everything from the
/// first `[[conflict]]` on is the shipped text, byte for byte.
fn panda_e4b_on_the_cpu(r: &Run, name: &str, port: u16) -> PathBuf {
    let shipped =
        std::fs::read_to_string(crate::common::repo_file("docker/panda-e4b.toml")).unwrap();
    let at = shipped
        .find("[[conflict]]")
        .expect("panda-e4b has a [[conflict]]");
    let (head, conflicts) = shipped.split_at(at);
    let mut out = String::new();
    let mut in_model = false;
    for line in head.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_model = line.starts_with("[model]");
            if in_model {
                continue;
            }
        } else if in_model {
            continue;
        }
        let line = match key {
            "name" if !line.starts_with('#') => format!("name = \"{name}\""),
            "image" => format!(
                "image = \"{}\"\nmodel = \"gemma-3-270m-q4km\"",
                vlmctl_test::Env::require("VLMCTL_TEST_LLAMA_IMAGE")
            ),
            "gpus" => "gpus = \"none\"".to_owned(),
            "port" => format!("port = {port}\nthreads = 1"),
            "n_gpu_layers" => "n_gpu_layers = 0".to_owned(),
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(conflicts);
    let p = r.path("panda-e4b.toml");
    std::fs::write(&p, &out).unwrap();
    assert!(out.ends_with(conflicts));
    p
}

fn cmd(
    r: &Run,
    hub: &vlmctl_weights::fake_hub::FakeHub,
    args: &[&str],
    spec: &Path,
    lock: &Path,
) -> Command {
    if args.first() == Some(&"restore") {
        // `restore` takes no spec: every journal of the state folder.
        let mut c = crate::common::vlmctl();
        c.args(args)
            .env("VLMCTL_STATE_DIR", r.path("state"))
            .stdin(std::process::Stdio::null());
        return c;
    }
    r.cmd(hub, args, spec, lock)
}

/// A CPU spec of `r` for `server` that lists `conflict`, with `extra` (TOML lines) added to its
/// `[[conflict]]` table.
fn spec_beside(r: &Run, server: &str, conflict: &str, extra: &str) -> PathBuf {
    let spec = r.write_spec(server, free_port(), conflict, 1024);
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str(extra);
    std::fs::write(&spec, text).unwrap();
    spec
}

/// `provision --yes` of `spec` with `lock`: it succeeds and `conflict` is stopped.
fn provision_stopping(
    r: &Run,
    hub: &vlmctl_weights::fake_hub::FakeHub,
    (spec, lock): (&Path, &Path),
    conflict: &str,
) {
    let (code, out, err) = run(&mut cmd(r, hub, &["provision", "--yes"], spec, lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!running(conflict), "{conflict} still running: {out}\n{err}");
}

/// [`spec_beside`] provisioned ([`provision_stopping`]): (spec, lock).
fn provisioned_beside(
    r: &Run,
    hub: &vlmctl_weights::fake_hub::FakeHub,
    (server, conflict): (&str, &str),
    extra: &str,
) -> (PathBuf, PathBuf) {
    let spec = spec_beside(r, server, conflict, extra);
    let lock = lock(r);
    provision_stopping(r, hub, (&spec, &lock), conflict);
    (spec, lock)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_panda_e4b_spec_stops_chatterbox_and_restores_it_with_its_probe_passing() {
    let hub = hub().await;
    let r = Run::new("chatterbox");
    // The shipped spec names the container and its port: both must be free here.
    assert!(
        docker(&["ps", "-aq", "--filter", "name=^chatterbox$"]).is_empty(),
        "a container named chatterbox exists; this test needs the name"
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", 8772)).is_ok(),
        "port 8772 is taken; the shipped spec probes Chatterbox there"
    );
    let image = busybox_image(&r);
    http_stand_in(&r, &image, "chatterbox", 8772, false);
    let server = r.name("e4b");
    let _guard = vlmctl_test::LabelGuard::deployment(&server);
    let spec = panda_e4b_on_the_cpu(&r, &server, free_port());
    let lock = lock(&r);

    let (code, out, err) = run(&mut cmd(&r, &hub, &["provision", "--yes"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("stopped chatterbox"), "{err}");
    assert!(!running("chatterbox") && running(&server));

    let (code, out, err) = run(&mut cmd(&r, &hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("restored: chatterbox"), "{out}");
    assert!(
        out.contains(
            "alive: chatterbox (running, Docker health check healthy, GET \
             http://127.0.0.1:8772/health answers 200"
        ),
        "{out}"
    );
    assert!(running("chatterbox"));
    assert!(
        !r.path("state/journals")
            .join(format!("{server}.json"))
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_that_fails_after_restore_fails_teardown_and_restore_with_12_until_it_passes() {
    let hub = hub().await;
    let r = Run::new("probe-fails");
    let image = busybox_image(&r);
    let conflict = r.name("tts");
    let probe_port = free_port();
    http_stand_in(&r, &image, &conflict, probe_port, true);
    let server = r.name("server");
    let _guard = vlmctl_test::LabelGuard::deployment(&server);
    let (spec, lock) = provisioned_beside(
        &r,
        &hub,
        (&server, &conflict),
        &format!("check_http = \"http://127.0.0.1:{probe_port}/health\"\ncheck_timeout_s = 3\n"),
    );

    let (code, out, err) = run(&mut cmd(&r, &hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 12, "{out}\n{err}");
    assert!(
        err.contains(&format!("removed {server}; restored {conflict}, but not proven alive: {conflict}: GET http://127.0.0.1:{probe_port}/health answers 200: not within 3 s")),
        "{err}"
    );
    assert!(err.contains("vlmctl restore"), "the hint: {err}");
    assert!(running(&conflict), "it was started, only not alive");

    let (code, out, err) = run(&mut cmd(&r, &hub, &["status"], &spec, &lock));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("NOT ALIVE after restore: {conflict}: GET")),
        "{out}"
    );

    let (code, out, err) = run(&mut cmd(&r, &hub, &["restore"], &spec, &lock));
    assert_eq!(code, 12, "{out}\n{err}");
    assert!(out.contains("restored, NOT proven alive"), "{out}");
    assert!(out.contains(&conflict), "{out}");

    // Its server started again by hand: the next restore finds it alive and forgets it.
    docker(&[
        "exec",
        "-d",
        &conflict,
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        &format!("127.0.0.1:{probe_port}"),
        "-h",
        "/www",
    ]);
    let (code, out, err) = run(&mut cmd(&r, &hub, &["restore"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("alive: {conflict}")), "{out}");
    let (_, out, _) = run(&mut cmd(&r, &hub, &["status"], &spec, &lock));
    assert!(!out.contains("NOT ALIVE"), "{out}");
    assert!(
        !r.path("state/journals")
            .join(format!("{server}.json"))
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_stopped_leaves_it_stopped_status_shows_it_and_restore_start_brings_it_back() {
    let hub = hub().await;
    let r = Run::new("keep-stopped");
    let conflict = r.conflict();
    let server = r.name("server");
    let _guard = vlmctl_test::LabelGuard::deployment(&server);
    // A command run in it is its check this time.
    let (spec, lock) = provisioned_beside(
        &r,
        &hub,
        (&server, &conflict),
        "check_exec = [\"/bin/busybox\", \"true\"]\n",
    );

    let (code, out, err) = run(&mut cmd(
        &r,
        &hub,
        &["teardown", "--keep-stopped", &conflict],
        &spec,
        &lock,
    ));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "left stopped (`vlmctl restore --start NAME` brings it back): {conflict}"
        )),
        "{out}"
    );
    assert!(!running(&conflict), "left stopped");

    let (code, out, err) = run(&mut cmd(&r, &hub, &["status"], &spec, &lock));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("left stopped at teardown: {conflict}"))
            && out.contains(&format!("vlmctl restore --start {conflict}")),
        "{out}"
    );
    // A plain restore leaves it; named, it comes back (and is checked).
    let (code, out, err) = run(&mut cmd(&r, &hub, &["restore"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!running(&conflict), "{out}");
    let (code, out, err) = run(&mut cmd(
        &r,
        &hub,
        &["restore", "--start", &conflict],
        &spec,
        &lock,
    ));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("restored: {conflict}")), "{out}");
    assert!(
        out.contains(&format!(
            "alive: {conflict} (running, `/bin/busybox true` exits 0 in it"
        )),
        "{out}"
    );
    assert!(running(&conflict));
    let j = r.path("state/journals").join(format!("{server}.json"));
    assert!(!j.exists(), "{:?}", std::fs::read_to_string(&j));
}

/// Under `--host` the probe is made from that host (through the SSH session): a stand-in on
/// beast's own loopback, which this machine cannot reach, is found alive after `teardown
/// --host beast` restores it. (In the second lane with beast's other tests: one at a time
/// there, as they share beast's model folder.)
#[test]
fn under_host_the_probe_is_made_from_that_host() {
    use crate::hosts_real::{beast, beast_docker, beast_guard, cmd as beast_cmd};
    let state = tempfile::tempdir().expect("state");
    let good = vlmctl_test::Env::require("VLMCTL_TEST_SSH_CONFIG");
    let conflict = "beast-probed-conflict";
    let _conflict = beast_guard(conflict);
    let server = format!("vlmctl-test-probe-{}", std::process::id());
    let _server = beast_guard(&server);
    let probe_port = free_port();
    // Nothing answers it here: only a probe made on beast can pass.
    assert!(std::net::TcpStream::connect(("127.0.0.1", probe_port)).is_err());
    let started = beast_docker()
        .args(["run", "-d", "--name", conflict, "--network", "host"])
        // The image's own health check is llama-server's, which this stand-in would fail.
        .args(["--no-healthcheck", "--entrypoint", "/bin/busybox"])
        .arg(vlmctl_test::Env::require("VLMCTL_TEST_LLAMA_IMAGE"))
        .args([
            "sh",
            "-c",
            &format!(
                "B=/bin/busybox; $B mkdir -p /www; echo ok > /www/health; \
                 exec $B httpd -f -p 127.0.0.1:{probe_port} -h /www"
            ),
        ])
        .output()
        .expect("docker run on beast");
    assert!(started.status.success(), "{started:?}");
    let shipped =
        std::fs::read_to_string(crate::common::repo_file("docker/cpu-test.toml")).unwrap();
    let spec = state.path().join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            "{}\n[[conflict]]\nname = \"{conflict}\"\ncheck_http = \"http://127.0.0.1:{probe_port}/health\"\ncheck_timeout_s = 20\n",
            shipped
                .replace("name = \"vlmctl-cpu-test\"", &format!("name = \"{server}\""))
                .replace("port = 18435", &format!("port = {}", free_port()))
        ),
    )
    .unwrap();
    let job = |args: &[&str]| {
        let mut c = beast_cmd(state.path(), &good);
        c.args(args).args(["--host", &beast(), "--spec"]).arg(&spec);
        c
    };
    let mut provision = job(&["provision", "--stop", conflict]);
    provision
        .args(["--lock", "examples/cpu-test.lock"])
        .args(crate::deploy_real::readme_dir_args());
    let (code, out, err) = run(&mut provision);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = run(&mut job(&["teardown"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "alive: {conflict} (running, GET http://127.0.0.1:{probe_port}/health answers 200"
        )),
        "{out}\n{err}"
    );
}

/// `restore = "ask"` (Beast's nemotron: restarted only when the user confirms it was
/// production): without a terminal the answer is no and it is left stopped (recorded);
/// `teardown --yes` starts it again without asking.
#[tokio::test(flavor = "multi_thread")]
async fn restore_ask_leaves_it_stopped_without_an_answer_and_yes_restarts_it() {
    let hub = hub().await;
    let r = Run::new("restore-ask");
    let conflict = r.conflict();
    let server = r.name("server");
    let _guard = vlmctl_test::LabelGuard::deployment(&server);
    let spec = spec_beside(&r, &server, &conflict, "restore = \"ask\"\n");
    let lock = lock(&r);
    for (teardown, back) in [
        (&["teardown"][..], false),
        (&["teardown", "--yes"][..], true),
    ] {
        provision_stopping(&r, &hub, (&spec, &lock), &conflict);
        let (code, out, err) = run(&mut cmd(&r, &hub, teardown, &spec, &lock));
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(running(&conflict), back, "{teardown:?}: {out}\n{err}");
        if !back {
            assert!(
                out.contains("left stopped") && out.contains(&conflict),
                "{out}"
            );
            let (code, out, err) = run(&mut cmd(
                &r,
                &hub,
                &["restore", "--start", &conflict],
                &spec,
                &lock,
            ));
            assert_eq!(code, 0, "{out}\n{err}");
            assert!(running(&conflict));
        }
    }
}

/// Runs `c` (stdout and stderr to files), killing it and failing the test if it has not ended
/// within `within`; returns (exit code, stdout, stderr, how long it took).
fn run_within(
    r: &Run,
    c: &mut Command,
    within: std::time::Duration,
) -> (i32, String, String, std::time::Duration) {
    let (out_p, err_p) = (r.path("bounded.out"), r.path("bounded.err"));
    let started = std::time::Instant::now();
    let mut child = c
        .stdout(std::fs::File::create(&out_p).unwrap())
        .stderr(std::fs::File::create(&err_p).unwrap())
        .spawn()
        .expect("run vlmctl");
    let mut code = None;
    crate::common::poll_until("vlmctl to end", within, || {
        code = child.try_wait().expect("wait for vlmctl");
        if code.is_none() && started.elapsed() + std::time::Duration::from_millis(50) >= within {
            let _ = child.kill();
            let _ = child.wait();
        }
        code.is_some()
    });
    (
        code.and_then(|s| s.code()).unwrap_or(-1),
        std::fs::read_to_string(&out_p).unwrap_or_default(),
        std::fs::read_to_string(&err_p).unwrap_or_default(),
        started.elapsed(),
    )
}

/// A `check_exec` that never ends (`sleep 3600`) is cut off at its `check_timeout_s`: the
/// teardown ends with 12 naming it, within a bounded time, instead of hanging.
#[tokio::test(flavor = "multi_thread")]
async fn a_check_exec_that_hangs_is_cut_off_at_its_timeout_with_12() {
    let hub = hub().await;
    let r = Run::new("exec-hangs");
    let conflict = r.conflict();
    let server = r.name("server");
    let _guard = vlmctl_test::LabelGuard::deployment(&server);
    let (spec, lock) = provisioned_beside(
        &r,
        &hub,
        (&server, &conflict),
        "check_exec = [\"/bin/busybox\", \"sleep\", \"3600\"]\ncheck_timeout_s = 2\n",
    );

    let (code, out, err, took) = run_within(
        &r,
        &mut cmd(&r, &hub, &["teardown"], &spec, &lock),
        std::time::Duration::from_secs(60),
    );
    assert_eq!(code, 12, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "not proven alive: {conflict}: `/bin/busybox sleep 3600` exits 0 in it: not within 2 s (last: timed out after 2 s)"
        )),
        "{err}"
    );
    assert!(running(&conflict), "started, only not proven alive");
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
}

/// A restored container with neither a Docker health check nor a spec check must stay up for
/// the settle window: one that dies a second after it is started again is not alive (12).
#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_without_checks_that_dies_a_second_after_restore_is_not_alive() {
    let hub = hub().await;
    let r = Run::new("dies-soon");
    let image = busybox_image(&r);
    let conflict = r.name("dies");
    let label = format!("org.vlmctl.test-run={}", r.id);
    // First start: stays up. A later start (the restore): gone after about a second.
    docker(&[
        "run",
        "-d",
        "--name",
        &conflict,
        "--label",
        &label,
        "--no-healthcheck",
        "--stop-timeout",
        "1",
        &image,
        "sh",
        "-c",
        "B=/bin/busybox; if [ -e /started ]; then $B sleep 1; exit 3; fi; $B touch /started; \
         exec $B sleep 3600",
    ]);
    let server = r.name("server");
    let _guard = vlmctl_test::LabelGuard::deployment(&server);
    let (spec, lock) = provisioned_beside(&r, &hub, (&server, &conflict), "");

    let (code, out, err) = run(&mut cmd(&r, &hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 12, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "not proven alive: {conflict}: not running (exited, exit code 3)"
        )),
        "{err}"
    );
}

/// Once the server is removed, the conflicts come back whatever fails before their restore: a
/// daemon error while removing a GPU probe a killed run left behind is a warning, said after
/// the restore, and the teardown still starts the conflict again.
#[tokio::test(flavor = "multi_thread")]
async fn a_probe_that_cannot_be_removed_at_teardown_does_not_keep_the_conflict_stopped() {
    let hub = hub().await;
    let r = Run::new("sweep-fails");
    let conflict = r.conflict();
    let server = r.name("server");
    let _guard = vlmctl_test::LabelGuard::deployment(&server);
    let (spec, lock) = provisioned_beside(&r, &hub, (&server, &conflict), "");
    // A GPU probe of the deployment, as a killed provision leaves one; removing it fails.
    let image = busybox_image(&r);
    let probe = docker(&[
        "run",
        "-d",
        "--label",
        &format!("org.vlmctl.test-run={}", r.id),
        "--label",
        &format!("{}={server}", vlmctl_lifecycle::containers::PROBE_LABEL),
        &image,
        "sleep",
        "3600",
    ]);
    let proxy = crate::docker_proxy::DockerProxy::start(r.tmp.path());
    proxy.fail(&format!("containers/{}?", probe.trim()));

    let (code, out, err) =
        run(cmd(&r, &hub, &["teardown"], &spec, &lock).env("DOCKER_HOST", proxy.docker_host()));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(running(&conflict), "{out}\n{err}");
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("name=^{server}$")]).is_empty(),
        "the server is removed"
    );
    assert!(out.contains(&format!("restored: {conflict}")), "{out}");
    assert!(
        err.contains(&format!("{server}-vlmctl-probe could not be removed"))
            && err.contains("injected fault"),
        "{err}"
    );
    docker(&["rm", "-f", probe.trim()]);
}
