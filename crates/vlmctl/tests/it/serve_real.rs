//! `vlmctl serve` as a process, against the real daemon, the local llama-server image and the
//! real GGUF: the JSON API, a bench run queued and measured for real, pages that load while it
//! runs, bad requests and plans, kill -9 and SIGTERM in the middle of a run (the database
//! passes `PRAGMA integrity_check`, the run is marked interrupted, the history survives), and a
//! relaunch and teardown from the API.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vlmctl_store::{RunFilter, State, Store};

use crate::common::{free_port, poll_until};
use crate::deploy_real::{Deployed, deployed};

/// The repository's camera frame and prompts copied into `dir`, where a plan written there
/// finds them by its default relative paths (`camera.png`, `prompts/*.txt`), as a user's does.
pub(crate) fn frame_and_prompts_into(dir: &Path) {
    let examples = crate::common::repo_root().join("examples");
    std::fs::create_dir_all(dir.join("prompts")).expect("plans dir");
    std::fs::copy(examples.join("camera.png"), dir.join("camera.png")).expect("camera");
    for p in ["nav.txt", "nav-short.txt", "describe.txt"] {
        std::fs::copy(
            examples.join("prompts").join(p),
            dir.join("prompts").join(p),
        )
        .expect("prompt");
    }
}

/// A bench plan in the run's folder: config T (the text-only nav prompt: the test deployment
/// has no projector), `runs` requests, the real prompts and frame (copied beside it, as a
/// user's plan has them).
pub(crate) fn plan(d: &Deployed, file: &str, runs: usize) -> PathBuf {
    let dir = d.r.path("plans");
    frame_and_prompts_into(&dir);
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "version = 1\nruns = {runs}\nwarmup = 1\nmax_tokens = 8\ndescribe = false\n\
             image = \"camera.png\"\nconfigs = [\"T\"]\n[[target]]\nname = \"cpu\"\n\
             url = \"http://127.0.0.1:9\"\n"
        ),
    )
    .expect("plan");
    path
}

/// A `vlmctl serve` process.
pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Deployed {
    pub(crate) fn store(&self) -> PathBuf {
        self.r.path("state/history.sqlite")
    }

    /// Starts `vlmctl serve` with this deployment's spec and `plans`; returns once it listens.
    pub(crate) fn serve(&self, plans: &[&Path]) -> Serve {
        let port = free_port();
        let mut c = self.r.cmd(
            &self.hub,
            &["serve", "--port", &port.to_string()],
            &self.spec,
            &self.lock,
        );
        for p in plans {
            c.arg("--plan").arg(p);
        }
        spawn_serve(c, port)
    }
}

/// Starts `cmd` (a `vlmctl serve` on `port`); returns once it listens.
pub(crate) fn spawn_serve(mut cmd: Command, port: u16) -> Serve {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vlmctl serve");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !line.contains("vlmctl serve: http://") {
        line.clear();
        assert!(
            err.read_line(&mut line).expect("read") > 0 && Instant::now() < deadline,
            "vlmctl serve ended before it listened"
        );
    }
    // Keep draining its stderr so that it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while err.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

pub(crate) async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn get_text(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

pub(crate) async fn post(url: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls the run until `done(state)`; returns it.
pub(crate) async fn wait_run(
    base: &str,
    id: i64,
    within: Duration,
    done: fn(&str) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, v) = get(&format!("{base}/api/runs/{id}")).await;
        assert_eq!(code, 200, "{v}");
        if done(v["state"].as_str().unwrap_or_default()) {
            return v;
        }
        assert!(Instant::now() < deadline, "run {id} still {}", v["state"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ended(s: &str) -> bool {
    !matches!(s, "queued" | "running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_bench_survives_kill_9_and_sigterm_and_relaunches() {
    let dep = deployed("serve").await;
    let quick = plan(&dep, "quick.toml", 3);
    let long = plan(&dep, "long.toml", 400);
    let serve = dep.serve(&[&quick, &long]);
    let base = serve.base.clone();
    shows_the_deployment(&base, &dep).await;
    refuses_bad_requests(&base, &dep).await;
    let id = measures_a_run(&base, &dep).await;
    refuses_a_plan_broken_under_it(&base, &dep, &quick).await;
    let long_id = survives_kill_9(serve, &dep, id).await;
    stops_on_sigterm(&dep, &long, id, long_id).await;
    relaunches_and_tears_down(&dep, &long).await;
}

/// The deployment, as the dashboard's API shows it.
async fn shows_the_deployment(base: &str, dep: &Deployed) {
    let (code, v) = get(&format!("{base}/api/deployments")).await;
    assert_eq!(code, 200, "{v}");
    let row = v["deployments"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == dep.name.as_str()))
        .unwrap_or_else(|| panic!("{} not in {v}", dep.name))
        .clone();
    assert_eq!(row["health"], "ok");
    assert_eq!(row["drift"], "none", "judged against the --spec given");
    assert_eq!(row["spec"], true);
}

/// Bad requests: 400/404 with the message, nothing queued.
async fn refuses_bad_requests(base: &str, dep: &Deployed) {
    let runs = format!("{base}/api/runs");
    for (body, status, says) in [
        ("{\"deployment\":", 400, "not valid"),
        ("{\"deployment\":\"x\",\"extra\":1}", 400, "unknown field"),
        (
            &*json!({"deployment": dep.name, "runs": 0}).to_string(),
            400,
            "out of range",
        ),
        (
            &*json!({"deployment": dep.name, "runs": -5}).to_string(),
            400,
            "out of range",
        ),
        (
            &*json!({"deployment": dep.name, "plan": "other.toml"}).to_string(),
            400,
            "not one this service offers",
        ),
        (
            "{\"deployment\":\"vlmctl-test-nobody\"}",
            404,
            "no deployment",
        ),
    ] {
        let (code, v) = post(&runs, body).await;
        assert_eq!(code, status, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(says),
            "{body}: {v}"
        );
    }
    let (code, v) = get(&format!("{base}/api/runs/abc")).await;
    assert_eq!(code, 400, "{v}");
    let (code, _) = get(&format!("{base}/api/runs/999")).await;
    assert_eq!(code, 404);
    // A form post from another site is refused (no JSON, foreign origin).
    let r = reqwest::Client::new()
        .post(&runs)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("deployment={}", dep.name))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 403);
    // Another Host name (DNS rebinding) is refused.
    let r = reqwest::Client::new()
        .get(format!("{base}/api/runs"))
        .header("host", "attacker.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 403);
    assert!(
        get(&runs).await.1.as_array().is_some_and(Vec::is_empty),
        "nothing was queued"
    );
}

/// A real run: queued, measured, recorded with its deployment, on the pages. Returns its id.
async fn measures_a_run(base: &str, dep: &Deployed) -> i64 {
    let runs = format!("{base}/api/runs");
    let (code, v) = post(
        &runs,
        &json!({"deployment": dep.name, "plan": "quick.toml"}).to_string(),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let id = v["run"].as_i64().expect("run id");
    let done = wait_run(base, id, Duration::from_secs(180), ended).await;
    assert_eq!(done["state"], "done", "{done}");
    let p50 = done["points"][0]["p50_ms"].as_f64().expect("p50");
    assert!(p50 > 0.0);
    assert_eq!(done["targets"][0]["deployment"], dep.name.as_str());
    assert_eq!(
        done["results"]["targets"][0]["configs"][0]["samples"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let (code, page) = get_text(&format!("{base}/runs/{id}")).await;
    assert_eq!(code, 200);
    assert!(page.contains(&format!("data-p50=\"{p50}\"")), "{page}");
    let (code, page) = get_text(&format!("{base}/trends?deployment={}", dep.name)).await;
    assert_eq!(code, 200);
    assert!(
        page.contains(&format!("data-run=\"{id}\"")),
        "the run is a point of the trend"
    );
    assert!(
        page.contains("provision"),
        "the provision is marked on the time axis"
    );
    let (code, cmp) = get(&format!("{base}/api/compare?a={id}&b={id}")).await;
    assert_eq!(code, 200, "{cmp}");
    // A run against itself: no change (its verdict follows the 270M model's schema misses).
    assert_eq!(cmp["rows"][0]["change_pct"].as_f64(), Some(0.0), "{cmp}");

    id
}

/// A plan changed under the service into something malformed: 400 naming file and line.
async fn refuses_a_plan_broken_under_it(base: &str, dep: &Deployed, quick: &Path) {
    let runs = format!("{base}/api/runs");
    std::fs::write(quick, "version = 1\nruns = \"many\"\n").expect("break the plan");
    let (code, v) = post(
        &runs,
        &json!({"deployment": dep.name, "plan": "quick.toml"}).to_string(),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("quick.toml:2"),
        "{v}"
    );
}

/// A long run; pages load while it goes; kill -9 in the middle. Returns the run's id.
async fn survives_kill_9(serve: Serve, dep: &Deployed, id: i64) -> i64 {
    let base = serve.base.clone();
    let runs = format!("{base}/api/runs");
    let (code, v) = post(
        &runs,
        &json!({"deployment": dep.name, "plan": "long.toml"}).to_string(),
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let long_id = v["run"].as_i64().expect("run id");
    wait_run(&base, long_id, Duration::from_secs(60), |s| s == "running").await;
    let t = Instant::now();
    for page in [
        "/",
        "/runs",
        &format!("/runs/{long_id}"),
        "/trends",
        &format!("/compare?a={id}&b={id}"),
    ] {
        let (code, _) = get_text(&format!("{base}{page}")).await;
        assert_eq!(code, 200, "{page} while a run is going");
    }
    eprintln!("five pages during a run: {:?}", t.elapsed());
    let mut s = serve;
    s.child.kill().expect("kill -9");
    s.child.wait().expect("reaped");
    drop(s);
    {
        let store = Store::open(&dep.store()).expect("the history opens after kill -9");
        assert_eq!(store.integrity_check().expect("check"), "ok");
        let r = store.run(long_id).expect("the run");
        assert_eq!(r.row.state, State::Interrupted);
        assert!(r.results.is_none(), "never half-written");
        assert_eq!(
            store.run(id).expect("run").row.state,
            State::Done,
            "history survives"
        );
    }

    long_id
}

/// Restarted: the history is there; SIGTERM mid-run stops cleanly and marks the run.
async fn stops_on_sigterm(dep: &Deployed, long: &Path, id: i64, long_id: i64) {
    let mut s = dep.serve(&[long]);
    let base = s.base.clone();
    let (_, all) = get(&format!("{base}/api/runs")).await;
    let states: Vec<(i64, String)> = all
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap_or(0),
                r["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![(long_id, "interrupted".to_owned()), (id, "done".to_owned())]
    );
    let (_, v) = post(
        &format!("{base}/api/runs"),
        &json!({"deployment": dep.name}).to_string(),
    )
    .await;
    let term_id = v["run"].as_i64().expect("run id");
    wait_run(&base, term_id, Duration::from_secs(60), |s| s == "running").await;
    let pid = s.child.id().to_string();
    crate::common::signal("TERM", &pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "vlmctl serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0), "a clean stop");
    {
        let store = Store::open(&dep.store()).expect("open");
        let r = store.run(term_id).expect("run");
        assert_eq!(r.row.state, State::Interrupted);
        assert!(r.row.error.unwrap_or_default().contains("SIGTERM"));
        assert_eq!(store.integrity_check().expect("check"), "ok");
        assert_eq!(store.runs(&RunFilter::default()).expect("runs").len(), 3);
    }
    drop(s);
}

/// A relaunch (nothing changed: nothing to do) and a teardown, from the API.
async fn relaunches_and_tears_down(dep: &Deployed, long: &Path) {
    let s = dep.serve(&[long]);
    let base = s.base.clone();
    let relaunch = format!("{base}/api/deployments/{}/relaunch", dep.name);
    let (code, v) = post(&relaunch, "{}").await;
    assert_eq!(code, 202, "{v}");
    let jobs = format!("{base}/api/jobs?deployment={}", dep.name);
    poll_jobs(&jobs, "relaunch").await;
    let (code, v) = post(
        &format!("{base}/api/deployments/{}/teardown", dep.name),
        "{}",
    )
    .await;
    assert_eq!(code, 202, "{v}");
    let t = poll_jobs(&jobs, "teardown").await;
    assert_eq!(t["state"], "done", "{t}");
    poll_until("the container gone", Duration::from_secs(30), || {
        !std::process::Command::new("docker")
            .args(["inspect", &dep.name])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let (code, v) = post(
        &format!("{base}/api/runs"),
        &json!({"deployment": dep.name}).to_string(),
    )
    .await;
    assert_eq!(code, 404, "nothing to measure once torn down: {v}");
}

/// Polls the jobs list until a job of `kind` has ended; returns it.
async fn poll_jobs(url: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (code, v) = get(url).await;
        assert_eq!(code, 200, "{v}");
        if let Some(j) = v
            .as_array()
            .and_then(|a| a.iter().rev().find(|j| j["kind"] == kind))
            .filter(|j| j["state"] != "running")
        {
            return j.clone();
        }
        assert!(Instant::now() < deadline, "no {kind} job ended: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
