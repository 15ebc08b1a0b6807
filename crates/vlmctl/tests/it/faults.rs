//! vlmctl under faults, against the real dockerd, llama-server image and GGUF: kills and signals
//! at the await points that matter, two commands at once, the daemon going away, corrupt state,
//! secrets at the highest verbosity. Kill points are found by polling docker, the journal and
//! the fault-injecting proxy ([`DockerProxy`]), never by sleeping.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{free_port, poll_until, run, vlmctl};
use crate::deploy_real::{Run, Stopped, docker, hub, provision_until_conflict_stopped, running};
use crate::docker_proxy::DockerProxy;
use vlmctl_test::LabelGuard;
use vlmctl_weights::fake_hub::FakeHub;

fn exists(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn journal_path(r: &Run, server: &str) -> PathBuf {
    r.path("state/journals").join(format!("{server}.json"))
}

fn journal(r: &Run, server: &str) -> Option<serde_json::Value> {
    let bytes = std::fs::read(journal_path(r, server)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn signal(child: &std::process::Child, sig: &str) {
    crate::common::signal(sig, &child.id().to_string());
}

fn restore(r: &Run) -> (i32, String, String) {
    let mut c = vlmctl();
    c.args(["restore", "--json"])
        .env("VLMCTL_STATE_DIR", r.path("state"));
    run(&mut c)
}

/// A spec with one more line in `[server]` (after `threads = 1`).
fn add_server_line(spec: &Path, line: &str) {
    let text = std::fs::read_to_string(spec).unwrap();
    assert!(text.contains("threads = 1\n"));
    std::fs::write(
        spec,
        text.replace("threads = 1\n", &format!("threads = 1\n{line}\n")),
    )
    .unwrap();
}

/// Item 1: SIGKILL while dockerd is still stopping a conflict (a 6 s stop timeout), then
/// `vlmctl restore` at once. The container is still running then, and dockerd finishes the
/// stop after: restore must wait that out and start it, not call it "already running".
#[tokio::test(flavor = "multi_thread")]
async fn restore_waits_out_a_stop_still_in_flight_after_provision_was_killed() {
    let hub = hub().await;
    let r = Run::new("inflight");
    let conflict = r.conflict_stopping_in(6);
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let spec = r.write_spec(&server, free_port(), &conflict, 1024);
    let lock = r.write_lock();
    r.fetch(&hub, &lock);
    let mut child = r
        .cmd(&hub, &["provision", "--stop", &conflict], &spec, &lock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_until(
        "the stop marked as issued in the journal",
        Duration::from_secs(60),
        || journal(&r, &server).is_some_and(|j| !j["entries"][0]["stop_issued_unix"].is_null()),
    );
    assert!(running(&conflict), "dockerd is still stopping it (6 s)");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        running(&conflict),
        "the stop is still in flight after the kill"
    );

    let (code, out, err) = restore(&r);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["journals"][0]["restored"]["started"][0],
        conflict.as_str(),
        "restore waited for the stop to finish, then started it: {out}"
    );
    assert!(running(&conflict));
    let finished = docker(&["inspect", "-f", "{{.State.FinishedAt}}", &conflict]);
    assert!(
        !finished.starts_with("0001"),
        "it did stop in between: {finished}"
    );
    assert!(!journal_path(&r, &server).exists());
}

/// A `provision --stop CONFLICT` through the proxy, held at the server's start call (the
/// conflict stopped, the server created and journalled, not started).
struct HeldAtStart {
    r: Run,
    conflict: String,
    server: String,
    proxy: DockerProxy,
    child: std::process::Child,
    _server_guard: LabelGuard,
}

fn provision_held_at_start(hub: &FakeHub, what: &str) -> HeldAtStart {
    let r = Run::new(what);
    let conflict = r.conflict();
    let server = r.name("server");
    let server_guard = LabelGuard::deployment(&server);
    let spec = r.write_spec(&server, free_port(), &conflict, 1024);
    let lock = r.write_lock();
    r.fetch(hub, &lock);
    let proxy = DockerProxy::start(r.tmp.path());
    proxy.hold("/start HTTP/1.1");
    let child = r
        .cmd(hub, &["provision", "--stop", &conflict], &spec, &lock)
        .env("DOCKER_HOST", proxy.docker_host())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        proxy.wait_held(Duration::from_secs(90)),
        "provision reached the start call"
    );
    HeldAtStart {
        r,
        conflict,
        server,
        proxy,
        child,
        _server_guard: server_guard,
    }
}

/// Item 2: SIGTERM while the create/start of the server is in flight (the proxy holds the
/// start call). vlmctl lets the call finish, then removes the container it made and restores
/// the conflict: exit 130, nothing of this run left.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_the_launch_removes_the_server_and_restores_the_conflict() {
    let hub = hub().await;
    let HeldAtStart {
        r,
        conflict,
        server,
        proxy,
        child,
        _server_guard,
    } = provision_held_at_start(&hub, "sigterm-launch");
    assert!(exists(&server), "created, not started");
    assert!(
        journal(&r, &server).is_some_and(|j| j["launch"]["id"].is_string()),
        "the journal knows the container before it is started"
    );
    signal(&child, "TERM");
    proxy.release();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert!(
        !exists(&server),
        "the server this run created is gone: {err}"
    );
    assert!(running(&conflict), "the conflict is back: {err}");
    assert!(!journal_path(&r, &server).exists(), "nothing left to undo");
}

/// Item 12: the daemon goes away mid-provision (the proxy vanishes while the start call is in
/// flight). Exit 5 (daemon unreachable), naming what is still stopped and what is half-started;
/// once the daemon is back, `vlmctl restore` finishes the job from the journal.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_gone_mid_provision_says_what_is_still_stopped_and_restore_finishes() {
    let hub = hub().await;
    let HeldAtStart {
        r,
        conflict,
        server,
        proxy,
        child,
        _server_guard,
    } = provision_held_at_start(&hub, "daemon-gone");
    proxy.vanish();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("{conflict} (stopped)"))
            && err.contains(&format!("{server} (half-started, to remove)")),
        "says what is left: {err}"
    );
    assert!(
        err.contains("start it again") && err.contains("vlmctl restore"),
        "{err}"
    );
    assert!(!running(&conflict), "really still stopped");

    let (code, out, err) = restore(&r);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let restored = &doc["journals"][0]["restored"];
    assert_eq!(restored["removed"][0], server.as_str(), "{out}");
    assert_eq!(restored["started"][0], conflict.as_str(), "{out}");
    assert!(running(&conflict) && !exists(&server));
}

/// Item 3: SIGHUP (an SSH session dropping) and SIGQUIT, with the terminal already gone (our
/// ends of its stdout and stderr closed, so every write fails), right after the stop.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_sigquit_with_the_terminal_gone_undo_the_run() {
    let hub = hub().await;
    for sig in ["HUP", "QUIT"] {
        let Stopped {
            r,
            conflict,
            server,
            mut child,
            _server_guard,
        } = provision_until_conflict_stopped(&hub, &sig.to_lowercase());
        drop(child.stdout.take());
        drop(child.stderr.take());
        signal(&child, sig);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "SIG{sig}: {status:?}");
        assert!(running(&conflict), "SIG{sig}: conflict restored");
        assert!(!exists(&server), "SIG{sig}: no server left");
        assert!(
            !journal_path(&r, &server).exists(),
            "SIG{sig}: journal cleared"
        );
    }
}

/// Item 4: a corrupt journal next to a good one: the good one is restored, the bad one named,
/// exit 5 at the end; `status` shows the unreadable one instead of leaving it out.
#[tokio::test(flavor = "multi_thread")]
async fn one_corrupt_journal_does_not_block_the_others() {
    let r = Run::new("corrupt");
    let conflict = r.conflict();
    let id = docker(&["inspect", "-f", "{{.Id}}", &conflict]);
    docker(&["stop", &conflict]);
    let dir = r.path("state/journals");
    std::fs::create_dir_all(&dir).unwrap();
    // Sorted first, so that it is met before the good one.
    std::fs::write(dir.join("0-broken.json"), b"{\"version\": 2, \"entr").unwrap();
    let good = serde_json::json!({
        "version": 2, "deployment": "good", "created_unix": 1,
        "entries": [{"id": id, "name": conflict, "prior_state": "running",
                     "restart_policy": "always", "run_id": "r1", "stop_timeout_s": 1,
                     "stop_issued_unix": 1}]
    });
    std::fs::write(dir.join("good.json"), good.to_string()).unwrap();

    let mut c = vlmctl();
    c.args(["status"]).env("VLMCTL_STATE_DIR", r.path("state"));
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("UNREADABLE restore journal") && out.contains("0-broken.json"),
        "{out}"
    );
    assert!(out.contains(&format!("stopped {conflict}")), "{out}");

    let mut c = vlmctl();
    c.args(["restore"]).env("VLMCTL_STATE_DIR", r.path("state"));
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 5, "{out}\n{err}");
    assert!(out.contains("0-broken.json: NOT restored"), "{out}");
    assert!(out.contains(&format!("restored: {conflict}")), "{out}");
    assert!(
        err.contains("1 of 2 journals could not be restored") && err.contains("the other one was"),
        "{err}"
    );
    assert!(running(&conflict));
    assert!(!dir.join("good.json").exists() && dir.join("0-broken.json").exists());
}

/// Item 5: one command per deployment. A second `provision` fails fast (exit 10) naming the
/// first; `teardown --wait` queues behind it. Then a failing relaunch undoes only its own work:
/// the conflict an earlier, successful provision stopped stays stopped and journalled.
#[tokio::test(flavor = "multi_thread")]
async fn one_command_per_deployment_and_a_failed_run_undoes_only_its_own_work() {
    let hub = hub().await;
    let r = Run::new("lock");
    let conflict = r.conflict();
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let spec = r.write_spec(&server, free_port(), &conflict, 1024);
    let lock = r.write_lock();
    r.fetch(&hub, &lock);
    let lock_file = r.path("state/locks").join(format!("{server}.lock"));

    let first = r
        .cmd(&hub, &["provision", "--yes"], &spec, &lock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    poll_until(
        "the first provision to hold the lock",
        Duration::from_secs(30),
        || std::fs::read_to_string(&lock_file).is_ok_and(|t| t.contains("vlmctl provision")),
    );
    let (code, _, err) = run(&mut r.cmd(&hub, &["provision", "--yes"], &spec, &lock));
    assert_eq!(code, 10, "{err}");
    assert!(
        err.contains(&format!("deployment {server} is busy"))
            && err.contains(&format!("pid {}", first.id()))
            && err.contains("--wait"),
        "{err}"
    );
    let waiter = r
        .cmd(&hub, &["teardown", "--wait"], &spec, &lock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = first.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = waiter.wait_with_output().unwrap();
    let (tout, terr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{tout}\n{terr}");
    assert!(terr.contains("waiting for pid"), "it waited: {terr}");
    assert!(tout.contains(&format!("restored: {conflict}")), "{tout}");
    assert!(running(&conflict) && !exists(&server));

    // A successful run stops the conflict and leaves its journal open ...
    let (code, _, err) = run(&mut r.cmd(&hub, &["provision", "--yes"], &spec, &lock));
    assert_eq!(code, 0, "{err}");
    assert!(!running(&conflict));
    // ... and a later run that fails (a server that exits at once) must not restore it; the
    // working server it tried to replace is put back, as it was.
    let working = docker(&["inspect", "-f", "{{.Id}}", &server]);
    add_server_line(&spec, "extra_args = [\"--flash-attn\", \"sideways\"]");
    let (code, _, err) = run(&mut r.cmd(&hub, &["relaunch"], &spec, &lock));
    assert_eq!(code, 8, "{err}");
    assert!(!running(&conflict), "not this run's to restore: {err}");
    assert!(
        err.contains(&format!("put the previous {server} back")),
        "{err}"
    );
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &server]), working);
    assert!(running(&server), "the working server runs again: {err}");
    let j = journal(&r, &server).expect("the first run's journal is still there");
    assert_eq!(j["entries"][0]["name"], conflict.as_str());
    // Someone starts the conflict again; a failing provision that stops it again must bring it
    // back: it was running when this run began (the journal entry is this run's now).
    docker(&["start", &conflict]);
    let (code, _, err) = run(&mut r.cmd(&hub, &["provision", "--yes"], &spec, &lock));
    assert_eq!(code, 8, "{err}");
    assert!(err.contains(&format!("restored {conflict}")), "{err}");
    assert!(
        running(&conflict),
        "this run stopped it, so this run restored it"
    );
    let (code, out, err) = run(&mut r.cmd(&hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(running(&conflict));
}

/// Item 7: the API key never appears in any output, record, journal or log, at `-vv` and with
/// `VLMCTL_LOG=trace` (bollard logs request bodies, which carry the container's environment).
#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_never_appears_at_any_verbosity() {
    let hub = hub().await;
    let r = Run::new("secret");
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let port = free_port();
    let spec = r.write_spec(&server, port, &r.name("no-conflict"), 1024);
    add_server_line(&spec, "api_key_env = \"VLMCTL_TEST_API_KEY\"");
    let lock = r.write_lock();
    // A quote and a backslash: escaped inside the JSON body bollard would log.
    let key = format!("sk-\"q\\uoted-{}", r.id);
    let mut seen = String::new();
    let mut go = |args: &[&str], log: Option<&str>| {
        let mut c = r.cmd(&hub, args, &spec, &lock);
        c.env("VLMCTL_TEST_API_KEY", &key);
        if let Some(l) = log {
            c.env("VLMCTL_LOG", l);
        }
        let (code, out, err) = run(&mut c);
        assert_eq!(code, 0, "{args:?}: {out}\n{err}");
        seen.push_str(&out);
        seen.push_str(&err);
    };
    go(&["-vv", "provision"], None);
    go(&["-vv", "relaunch"], None);
    go(&["relaunch"], Some("trace"));
    go(&["relaunch"], Some("bollard=trace,hyper=trace"));
    // A more specific directive than any a program could add wins over it: the target filter
    // holds anyway.
    go(&["-vv", "teardown"], Some("bollard::docker=trace,trace"));
    go(&["-vv", "provision"], Some("bollard::docker=trace,trace"));
    go(&["-vv", "status", "--json"], None);
    go(&["-vv", "export", "--format", "compose"], None);
    go(&["-vv", "provision", "--dry-run"], None);
    // The key was in force: the server refuses a request without it.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, b"GET /v1/models HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    go(&["-vv", "teardown"], None);
    assert!(seen.contains("DEBUG"), "the logs were really on");
    assert!(!seen.contains(&key), "the key leaked into the output");
    for entry in walk(&r.path("state")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(&key),
            "the key leaked into {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Item 10: a relative `--dir` is verified and mounted as one absolute path, as a bind mount;
/// Docker would read a bare relative name as a named volume holding something else.
#[tokio::test(flavor = "multi_thread")]
async fn a_relative_models_dir_is_bind_mounted_as_the_path_that_was_verified() {
    let hub = hub().await;
    let r = Run::new("reldir");
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let spec = r.write_spec(&server, free_port(), &r.name("no-conflict"), 1024);
    let lock = r.write_lock();
    let in_tmp = |args: &[&str]| {
        let mut c = r.cmd(&hub, args, &spec, &lock);
        c.current_dir(r.tmp.path());
        run(&mut c)
    };
    let mut fetch = vlmctl();
    fetch
        .args(["weights", "fetch", "--dir", "models-rel", "--lock"])
        .arg(&lock)
        .current_dir(r.tmp.path())
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HUB_CACHE", r.path("hf-cache"));
    let (code, _, err) = run(&mut fetch);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = in_tmp(&["provision", "--dir", "models-rel"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let mounts: serde_json::Value =
        serde_json::from_str(&docker(&["inspect", "-f", "{{json .Mounts}}", &server])).unwrap();
    let want = std::fs::canonicalize(r.path("models-rel")).unwrap();
    assert_eq!(mounts[0]["Type"], "bind", "{mounts}");
    assert_eq!(mounts[0]["Source"], want.display().to_string(), "{mounts}");
    assert_eq!(mounts[0]["RW"], false, "{mounts}");
    let (code, out, err) = in_tmp(&["export", "--dir", "models-rel"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("source={}", want.display())), "{out}");
    let (code, _, err) = in_tmp(&["teardown"]);
    assert_eq!(code, 0, "{err}");
}

/// `cmd` run inside a pseudo-terminal by util-linux's `script` (Debian's essential bsdutils):
/// the program sees a real terminal on stdin, stdout and stderr; what is written to the
/// returned child's stdin is typed at it (`\x03` is Ctrl-C, through the terminal's line
/// discipline, as a person's keystroke would be); its output is gathered as it comes.
fn at_a_terminal(
    cmd: &Command,
) -> (
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect();
    let mut script = Command::new("script");
    script
        .args(["-qefc", &line.join(" "), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let mut child = script.spawn().expect("script(1) from util-linux");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut out = child.stdout.take().unwrap();
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (child, seen)
}

/// The child's exit, within two minutes (killed and failed past that, never a hang).
fn exit_of(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let mut status = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while status.is_none() {
        status = child.try_wait().unwrap();
        if status.is_none() && std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: still running after two minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    status.unwrap()
}

/// The `[y/N]` prompt at a real terminal: Ctrl-C there ends the job at once with nothing
/// changed (exit 130); `y` stops the conflict, provisions, and teardown brings it back.
#[tokio::test(flavor = "multi_thread")]
async fn at_the_prompt_ctrl_c_and_n_change_nothing_and_y_goes_ahead() {
    let hub = hub().await;
    let r = Run::new("prompt");
    let conflict = r.conflict();
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let spec = r.write_spec(&server, free_port(), &conflict, 1024);
    let lock = r.write_lock();
    r.fetch(&hub, &lock);
    let type_at = |child: &mut std::process::Child, keys: &[u8]| {
        let stdin = child.stdin.as_mut().unwrap();
        std::io::Write::write_all(stdin, keys).unwrap();
        std::io::Write::flush(stdin).unwrap();
    };
    let prompt = format!("stop {conflict} now and restore it after teardown? [y/N]");

    let (mut child, seen) = at_a_terminal(&r.cmd(&hub, &["provision"], &spec, &lock));
    poll_until("the prompt", Duration::from_secs(90), || {
        seen.lock().unwrap().contains(&prompt)
    });
    type_at(&mut child, b"\x03");
    let status = exit_of(&mut child, "Ctrl-C at the prompt");
    let text = seen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("interrupted by Ctrl-C"), "{text}");
    assert!(
        running(&conflict) && !exists(&server),
        "nothing changed: {text}"
    );
    assert!(!journal_path(&r, &server).exists());

    // "n" cancels: Gate 1 answered no, exit 7 (a gate failed), nothing changed (issue #23).
    let (mut child, seen) = at_a_terminal(&r.cmd(&hub, &["provision"], &spec, &lock));
    poll_until("the prompt", Duration::from_secs(90), || {
        seen.lock().unwrap().contains(&prompt)
    });
    type_at(&mut child, b"n\n");
    let status = exit_of(&mut child, "n at the prompt");
    let text = seen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(7), "{text}");
    assert!(
        text.contains(&format!(
            "cancelled: stopping {conflict} was not confirmed (answered no, or no terminal to ask at); nothing was changed"
        )),
        "{text}"
    );
    assert!(
        running(&conflict) && !exists(&server),
        "nothing changed: {text}"
    );
    assert!(!journal_path(&r, &server).exists());

    let (mut child, seen) = at_a_terminal(&r.cmd(&hub, &["provision"], &spec, &lock));
    poll_until("the prompt", Duration::from_secs(90), || {
        seen.lock().unwrap().contains(&prompt)
    });
    type_at(&mut child, b"y\n");
    let status = exit_of(&mut child, "the provision after `y`");
    let text = seen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("stopped {conflict}")), "{text}");
    assert!(!running(&conflict) && running(&server));
    let (code, out, err) = run(&mut r.cmd(&hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(running(&conflict) && !exists(&server));
}

/// A relaunch killed (SIGKILL) in the middle of replacing the server (the old one set aside,
/// the new one created, its start held by the proxy): the next run undoes exactly that run's
/// work first (the new container removed, the old one put back: same id, serving) and leaves
/// what the earlier, successful provision stopped stopped.
#[tokio::test(flavor = "multi_thread")]
async fn a_relaunch_killed_mid_replacement_is_undone_by_the_next_run() {
    let hub = hub().await;
    let r = Run::new("replace-kill");
    let conflict = r.conflict();
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let port = free_port();
    let spec = r.write_spec(&server, port, &conflict, 1024);
    let lock = r.write_lock();
    r.fetch(&hub, &lock);
    let (code, _, err) = run(&mut r.cmd(&hub, &["provision", "--yes"], &spec, &lock));
    assert_eq!(code, 0, "{err}");
    let working = docker(&["inspect", "-f", "{{.Id}}", &server]);

    r.write_spec(&server, port, &conflict, 2048);
    let proxy = DockerProxy::start(r.tmp.path());
    proxy.hold("/start HTTP/1.1");
    let mut child = r
        .cmd(&hub, &["relaunch"], &spec, &lock)
        .env("DOCKER_HOST", proxy.docker_host())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        proxy.wait_held(Duration::from_secs(90)),
        "the new server's start"
    );
    let aside = vlmctl_lifecycle::containers::aside_name(&server);
    assert!(
        exists(&aside) && !running(&aside),
        "the old one set aside, stopped"
    );
    child.kill().unwrap();
    let _ = child.wait();
    drop(proxy);

    r.write_spec(&server, port, &conflict, 1024);
    let (code, out, err) = run(&mut r.cmd(&hub, &["relaunch"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("died before it finished; undid its work first"),
        "{err}"
    );
    assert!(
        err.contains("already running this spec: nothing to do"),
        "{err}"
    );
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &server]), working);
    assert!(running(&server) && !exists(&aside));
    assert!(
        !running(&conflict),
        "the earlier provision's stop stays: {err}"
    );
    let (code, out, err) = run(&mut r.cmd(&hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(running(&conflict) && !exists(&server) && !exists(&aside));
}
