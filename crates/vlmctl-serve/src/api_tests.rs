//! In-process tests of the service's JSON API as `docs/serve.md` ("API", "Safety") states its
//! contract: the router `serve` listens with (the API and the pages behind `auth::guard`) is
//! called directly, with no socket and no spawned `vlmctl`, over a temporary history (SQLite in
//! a temporary folder) and the fake inference server (`vlmctl_bench::fake_server::FakeServer`,
//! which imitates llama-server on 127.0.0.1: its chat completions, timings and `/health`).
//!
//! Covered: the runs list and one run, with a run the service's own bench job measured against
//! the fake server and one imported; the list's filters and `limit`; bad queries, run ids and
//! action bodies answered `{"error", "hint"}` with the documented status and nothing recorded;
//! two runs compared, and a missing or unfinished one; a queued bench run going queued ->
//! running -> done with its activity on `GET /api/events` (and `?run=` keeping to that run);
//! who may call (a loopback `Host` without a key, the key off loopback, actions as JSON from
//! the service's own origin).
//!
//! Faked or left out: Docker. The service finds a deployment through the engine `DOCKER_HOST`
//! names, a process-wide setting, so what needs one stays in the end-to-end tests against a
//! real daemon (`crates/vlmctl/tests/it/serve_real.rs`): `POST /api/runs` past its plan (202,
//! an unknown deployment's 404), a teardown, `GET /api/deployments`. The bench run here is
//! queued the way `POST /api/runs` queues it (recorded `queued`, then the same
//! [`Action::Bench`]), aimed at the fake server by URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use vlmctl_bench::fake_server::FakeServer;
use vlmctl_store::{NewRun, Source, State, TargetLink};

use crate::queue::{self, Action};
use crate::tests::{app_with, config};
use crate::{App, Config, Limits};

/// What the pages send as `Host` (the service's default address).
const HOST: &str = "127.0.0.1:8787";
/// An API key for the off-loopback cases.
const KEY: &str = "api-tests-key-0123456789";
/// How long a poll waits for what it expects (generous: compares share the drawing turns with
/// the other tests of the crate).
const WITHIN: Duration = Duration::from_secs(30);

/// The service's state and router over a temporary history; its queue's worker is started on
/// demand ([`Service::start_worker`]), so that a test sees a run `queued` first.
struct Service {
    app: Arc<App>,
    router: axum::Router,
    worker: Option<UnboundedReceiver<Action>>,
    tmp: tempfile::TempDir,
}

impl Service {
    /// `edit` adjusts the configuration (plans, key, bind) before the service is built.
    fn new(edit: impl FnOnce(&mut Config, &Path)) -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut cfg = config(tmp.path(), Limits::default());
        edit(&mut cfg, tmp.path());
        let (app, rx) = app_with(cfg);
        let app = Arc::new(app);
        Self {
            router: crate::router(&app),
            app,
            worker: Some(rx),
            tmp,
        }
    }

    fn start_worker(&mut self) {
        let rx = self.worker.take().expect("the worker starts once");
        // No SSH forwards here: a notice channel that is closed from the start.
        let (_, notices) = tokio::sync::mpsc::unbounded_channel();
        queue::start(Arc::clone(&self.app), rx, notices).expect("worker");
    }

    /// One request through the whole router; the answer.
    async fn send(&self, req: Request<Body>) -> axum::response::Response {
        use hyper::service::Service as _;
        hyper_util::service::TowerToHyperService::new(self.router.clone())
            .call(req)
            .await
            .expect("the router never fails")
    }

    /// `GET path` with a loopback `Host`: the status and the body as JSON.
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.send(get(path).body(Body::empty()).expect("req")).await).await
    }

    /// `POST path` as the service's page posts (JSON, its own origin).
    async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let req = post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, format!("http://{HOST}"))
            .body(Body::from(body.to_owned()))
            .expect("req");
        json_of(self.send(req).await).await
    }

    /// The server-sent events of `path`, read as they come.
    async fn events(&self, path: &str) -> Events {
        let r = self.send(get(path).body(Body::empty()).expect("req")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/event-stream",
            "{:?}",
            r.headers()
        );
        Events {
            body: r.into_body(),
            text: String::new(),
        }
    }

    /// A bench run queued as `POST /api/runs` queues it: recorded `queued` with its target's
    /// link, then [`Action::Bench`]. Its id.
    async fn queue_bench(&self, plan: &Path, deployment: &str) -> i64 {
        let loaded = vlmctl_bench::plan::LoadedPlan::load(plan).expect("plan");
        let new = NewRun {
            source: Source::Serve,
            host: self.app.config().host.clone(),
            plan: plan.display().to_string(),
            plan_json: serde_json::to_value(&loaded.plan).expect("plan json"),
            targets: vec![link(&loaded.plan.targets[0].url, deployment)],
            state: State::Queued,
        };
        let deployment = deployment.to_owned();
        self.app
            .record_and_queue(new, move |run| Action::Bench {
                run,
                deployment,
                plan: Box::new(loaded),
                keys: BTreeMap::new(),
            })
            .await
            .expect("queued")
            .0
    }

    /// Polls `GET /api/runs/ID` until `done(state)`; the run.
    async fn wait_run(&self, id: i64, done: impl Fn(&str) -> bool) -> Value {
        let end = Instant::now() + WITHIN;
        loop {
            let (code, v) = self.get(&format!("/api/runs/{id}")).await;
            assert_eq!(code, StatusCode::OK, "{v}");
            if done(v["state"].as_str().unwrap_or_default()) {
                return v;
            }
            assert!(Instant::now() < end, "run {id} still {}", v["state"]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Imports `results` (started at `started_unix`) as `vlmctl runs import` does, on host
    /// `host` with its target linked to `deployment`. Its id.
    fn import(&self, results: &Value, started_unix: u64, host: &str, deployment: &str) -> i64 {
        let mut doc = results.clone();
        doc["started_unix"] = started_unix.into();
        let results: vlmctl_bench::results::Results = serde_json::from_value(doc).expect("results");
        let mut store =
            vlmctl_store::Store::open(&self.app.config().store).expect("the history opens");
        match store
            .import(
                &results,
                host,
                "imported.toml",
                &[link("http://x:1", deployment)],
            )
            .expect("import")
        {
            vlmctl_store::Imported::New(id) => id,
            vlmctl_store::Imported::Already(id) => panic!("already there as {id}"),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // The worker, when started, ends with the service.
        self.app.shutdown.cancel("test over");
    }
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::get(path).header(header::HOST, HOST)
}

fn post(path: &str) -> axum::http::request::Builder {
    Request::post(path).header(header::HOST, HOST)
}

fn link(url: &str, deployment: &str) -> TargetLink {
    TargetLink {
        target: "fake".to_owned(),
        url: url.to_owned(),
        deployment: Some(deployment.to_owned()),
        ..TargetLink::default()
    }
}

async fn json_of(r: axum::response::Response) -> (StatusCode, Value) {
    let status = r.status();
    let body: Bytes = r.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, v)
}

/// An error as the API answers one: `status`, and exactly `{"error", "hint"}` with `says` in
/// the error.
#[track_caller]
fn refused(got: &(StatusCode, Value), status: StatusCode, says: &str) {
    let (code, v) = got;
    assert_eq!(*code, status, "{v}");
    let keys: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["error", "hint"], "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains(says)),
        "{says:?} not in {v}"
    );
}

/// A server-sent event stream being read.
struct Events {
    body: Body,
    text: String,
}

impl Events {
    /// The next event's data as JSON (keep-alive comments skipped); `None` when none came by
    /// `until` or the stream ended.
    async fn next(&mut self, until: Instant) -> Option<Value> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let event: String = self.text.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if !data.is_empty() {
                    return Some(serde_json::from_str(&data).expect("event data is JSON"));
                }
                continue;
            }
            let frame = tokio::time::timeout_at(until, self.body.frame())
                .await
                .ok()??
                .expect("frame");
            if let Ok(data) = frame.into_data() {
                self.text
                    .push_str(std::str::from_utf8(&data).expect("utf-8"));
            }
        }
    }

    /// Events until one for which `last` holds (it included).
    async fn until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let end = Instant::now() + WITHIN;
        let mut seen = Vec::new();
        loop {
            let Some(e) = self.next(end).await else {
                panic!("the stream ended or went quiet; seen: {seen:?}")
            };
            let stop = last(&e);
            seen.push(e);
            if stop {
                return seen;
            }
        }
    }
}

/// A plan of one config and three requests against the fake server, in `dir`.
fn fake_plan(dir: &Path, url: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("prompts")).expect("prompts");
    for f in ["nav", "nav-short"] {
        std::fs::write(dir.join(format!("prompts/{f}.txt")), f).expect("prompt");
    }
    let path = dir.join("quick.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\nruns = 3\nwarmup = 0\ndescribe = false\nconfigs = [\"A\"]\n\
             [[target]]\nname = \"fake\"\nurl = \"{url}\"\n"
        ),
    )
    .expect("plan");
    path
}

fn is_run(e: &Value, run: i64, state: &str) -> bool {
    e["kind"] == "run" && e["run"] == run && e["state"] == state
}

/// The service's own bench job against the fake server: `queued` in the list before the
/// worker takes it, then `running` and `done` on the event stream, every request of its
/// config as progress; `?run=` keeps to that run; `GET /api/runs/ID` has its results and
/// figures. An imported run beside it: the list newest first, each filter and `limit`.
#[tokio::test]
async fn a_run_of_the_services_bench_job_and_an_imported_one_in_the_list_and_the_events() {
    let server = FakeServer::start([]).await.expect("fake server");
    let mut svc = Service::new(|_, _| {});
    let plan = fake_plan(&svc.tmp.path().join("plan"), &server.endpoint());
    let mut all = svc.events("/api/events").await;
    let first = svc.queue_bench(&plan, "vlmctl-fake").await;
    let second = svc.queue_bench(&plan, "vlmctl-fake").await;
    let mut one = svc.events(&format!("/api/events?run={first}")).await;
    let (code, listed) = svc.get("/api/runs").await;
    assert_eq!(code, StatusCode::OK, "{listed}");
    let states: Vec<&Value> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| &r["state"])
        .collect();
    assert_eq!(states, ["queued", "queued"], "{listed}");
    let queued = all
        .until(|e| e["kind"] == "queued" && e["run"] == second)
        .await;
    assert_eq!(queued[0]["run"], first, "{queued:?}");
    assert_eq!(queued[0]["action"], "bench");
    assert_eq!(queued[0]["deployment"], "vlmctl-fake");

    svc.start_worker();
    let heard = one.until(|e| is_run(e, first, "done")).await;
    assert!(is_run(&heard[0], first, "running"), "{heard:?}");
    let progress: Vec<&Value> = heard.iter().filter(|e| e["kind"] == "progress").collect();
    assert_eq!(progress.len(), 3, "one per request: {heard:?}");
    assert_eq!(progress[2]["done"], 3);
    assert!(heard.iter().all(|e| e["run"] == first), "{heard:?}");
    // The unfiltered stream hears the second run too, after the first has ended.
    let heard = all.until(|e| is_run(e, second, "done")).await;
    let at = |run, state| heard.iter().position(|e| is_run(e, run, state));
    assert!(at(first, "done") < at(second, "running"), "{heard:?}");
    // Nothing of the second run reached the first's stream.
    let quiet = Instant::now() + Duration::from_millis(100);
    assert!(
        one.next(quiet).await.is_none(),
        "the ?run= stream kept quiet"
    );

    let done = svc
        .wait_run(first, |s| s != "queued" && s != "running")
        .await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["source"], "serve");
    assert_eq!(done["host"], "test");
    assert!(
        done["points"][0]["p50_ms"]
            .as_f64()
            .is_some_and(|p| p > 0.0),
        "{done}"
    );
    let samples = &done["results"]["targets"][0]["configs"][0]["samples"];
    assert_eq!(samples.as_array().map(Vec::len), Some(3), "{done}");
    assert_eq!(server.chat_requests(), 6, "two runs of three requests");

    let imported = svc.import(&done["results"], 1_700_000_000, "elsewhere", "vlmctl-old");
    let ids = |v: &Value| -> Vec<i64> {
        v.as_array()
            .expect("a list")
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .collect()
    };
    for (query, want) in [
        ("", vec![second, first, imported]),
        ("?limit=1", vec![second]),
        ("?limit=4294967295", vec![second, first, imported]),
        ("?host=elsewhere", vec![imported]),
        ("?deployment=vlmctl-old", vec![imported]),
        ("?deployment=vlmctl-fake&host=test", vec![second, first]),
        ("?deployment=&host=&config=", vec![second, first, imported]),
        ("?config=A", vec![second, first, imported]),
        ("?config=Z", vec![]),
    ] {
        let (code, v) = svc.get(&format!("/api/runs{query}")).await;
        assert_eq!(code, StatusCode::OK, "{query}: {v}");
        assert_eq!(ids(&v), want, "{query}: {v}");
    }
    let (code, v) = svc.get(&format!("/api/runs/{imported}")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["source"], &v["host"], &v["targets"][0]["deployment"]),
        (&json!("import"), &json!("elsewhere"), &json!("vlmctl-old")),
        "{v}"
    );
    assert_eq!(v["results"]["started_unix"], 1_700_000_000, "{v}");

    // Two runs compared (`bench compare`'s rule), and the ways a comparison is refused.
    let (code, cmp) = svc
        .get(&format!("/api/compare?a={imported}&b={first}"))
        .await;
    assert_eq!(code, StatusCode::OK, "{cmp}");
    assert_eq!(cmp["rows"][0]["config"], "A", "{cmp}");
    assert_eq!(cmp["rows"][0]["change_pct"].as_f64(), Some(0.0), "{cmp}");
    refused(
        &svc.get(&format!("/api/compare?a={first}&b=999")).await,
        StatusCode::NOT_FOUND,
        "999",
    );
    refused(
        &svc.get(&format!("/api/compare?a={first}")).await,
        StatusCode::BAD_REQUEST,
        "missing ?b=",
    );
}

/// Bad queries and ids, on every listing: 400 (or 404 for an id that is not there) as
/// `{"error", "hint"}`, naming what was wrong.
#[tokio::test]
async fn bad_queries_and_ids_are_json_errors_with_the_documented_status() {
    let svc = Service::new(|_, _| {});
    for (path, status, says) in [
        ("/api/runs?limit=0", 400, "limit"),
        ("/api/runs?limit=-1", 400, "limit"),
        ("/api/runs?limit=4294967296", 400, "limit"),
        ("/api/runs?limit=ten", 400, "limit"),
        ("/api/runs?limit=", 400, "limit"),
        ("/api/runs?state=done", 400, "unknown field `state`"),
        ("/api/trends?limit=0", 400, "limit"),
        ("/api/trends?colour=red", 400, "unknown field"),
        ("/api/jobs?host=x", 400, "unknown field"),
        ("/api/runs/abc", 400, "not a run id"),
        ("/api/runs/0", 400, "not a run id"),
        ("/api/runs/-3", 400, "not a run id"),
        ("/api/runs/99999999999999999999", 400, "not a run id"),
        ("/api/runs/999", 404, "999"),
        ("/api/compare?a=1&b=x", 400, "not a run id"),
        ("/api/compare?b=1", 400, "missing ?a="),
        ("/api/compare?a=1&b=2", 404, "1"),
        ("/api/events?run=x", 400, "not a run id"),
    ] {
        let status = StatusCode::from_u16(status).expect("status");
        refused(&svc.get(path).await, status, says);
    }
    // The empty history lists nothing, also through the filters.
    for path in ["/api/runs", "/api/runs?limit=1&config=A", "/api/jobs"] {
        let (code, v) = svc.get(path).await;
        assert_eq!((code, v), (StatusCode::OK, json!([])), "{path}");
    }
    let (code, v) = svc.get("/api/trends").await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"points": [], "jobs": []}));
}

/// A run that has not finished has nothing to compare: 409, and the comparison names it.
#[tokio::test]
async fn a_run_without_results_is_not_compared() {
    let svc = Service::new(|_, _| {});
    let plan = fake_plan(&svc.tmp.path().join("plan"), "http://127.0.0.1:9");
    let queued = svc.queue_bench(&plan, "vlmctl-fake").await;
    refused(
        &svc.get(&format!("/api/compare?a={queued}&b={queued}"))
            .await,
        StatusCode::CONFLICT,
        &format!("run {queued} is queued"),
    );
}

/// `POST /api/runs` refuses what it can judge before asking the engine for the deployment:
/// a body that is not the request, `runs` out of range, a plan not offered, no plan at all, a
/// plan broken after the start (naming its file and line); each 400 in JSON, nothing recorded
/// or queued. A relaunch of a deployment without a spec is a 409 with the hint.
#[tokio::test]
async fn malformed_actions_are_json_4xx_naming_the_field_and_queue_nothing() {
    let svc = Service::new(|cfg, tmp| {
        cfg.plans = vec![fake_plan(&tmp.join("plan"), "http://127.0.0.1:9")];
    });
    let mut heard = svc.app.subscribe();
    for (body, says) in [
        ("{\"deployment\":", "not valid"),
        ("[]", "not valid"),
        ("{}", "missing field `deployment`"),
        (
            "{\"deployment\":\"d\",\"extra\":1}",
            "unknown field `extra`",
        ),
        // serde_json names the place, not the field, of a value of the wrong type.
        (
            "{\"deployment\":\"d\",\"runs\":\"3\"}",
            "expected i64 at line 1 column 28",
        ),
        (
            "{\"deployment\":\"d\",\"runs\":0}",
            "runs: 0 is out of range",
        ),
        (
            "{\"deployment\":\"d\",\"runs\":-5}",
            "runs: -5 is out of range",
        ),
        (
            "{\"deployment\":\"d\",\"runs\":1001}",
            "runs: 1001 is out of range",
        ),
        (
            "{\"deployment\":\"d\",\"plan\":\"other.toml\"}",
            "plan \"other.toml\" is not one this service offers",
        ),
    ] {
        refused(
            &svc.post("/api/runs", body).await,
            StatusCode::BAD_REQUEST,
            says,
        );
    }
    // The plan is read again for each run: broken after the start, it is named with its line.
    std::fs::write(&svc.app.config().plans[0], "version = 1\nruns = \"many\"\n")
        .expect("break the plan");
    refused(
        &svc.post(
            "/api/runs",
            "{\"deployment\":\"d\",\"plan\":\"quick.toml\"}",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "quick.toml:2",
    );
    refused(
        &svc.post("/api/deployments/Not%20A%20Name/relaunch", "{}")
            .await,
        StatusCode::BAD_REQUEST,
        "not a deployment name",
    );
    let no_spec = svc
        .post("/api/deployments/vlmctl-fake/relaunch", "{}")
        .await;
    refused(&no_spec, StatusCode::CONFLICT, "no spec for vlmctl-fake");
    assert!(
        no_spec.1["hint"]
            .as_str()
            .is_some_and(|h| h.contains("--spec"))
    );

    let bare = Service::new(|_, _| {});
    refused(
        &bare.post("/api/runs", "{\"deployment\":\"d\"}").await,
        StatusCode::BAD_REQUEST,
        "no bench plan is configured",
    );

    let (code, v) = svc.get("/api/runs").await;
    assert_eq!((code, v), (StatusCode::OK, json!([])), "nothing recorded");
    assert_eq!(svc.app.queue.waiting(), 0, "nothing queued");
    assert!(heard.try_recv().is_err(), "nothing published");
}

/// Who may call, at the API: on loopback anyone naming a loopback `Host`, with no key; an
/// action only as JSON from the service's own origin. Off loopback every request needs the
/// key (401 in JSON without it, with the Basic challenge a browser answers), whatever `Host`.
#[tokio::test]
async fn the_guard_stands_in_front_of_every_route() {
    let open = Service::new(|_, _| {});
    let (code, _) = open.get("/api/runs").await;
    assert_eq!(code, StatusCode::OK, "loopback: no key");
    let asked = |host: &str| {
        Request::get("/api/runs")
            .header(header::HOST, host)
            .body(Body::empty())
            .expect("req")
    };
    let (code, _) = json_of(open.send(asked("localhost")).await).await;
    assert_eq!(code, StatusCode::OK);
    refused(
        &json_of(open.send(asked("attacker.example:8787")).await).await,
        StatusCode::FORBIDDEN,
        "loopback names only",
    );
    let action = |kind: &str, origin: Option<&str>| {
        let mut r = post("/api/runs").header(header::CONTENT_TYPE, kind);
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        r.body(Body::from("{\"deployment\":\"d\"}")).expect("req")
    };
    for (kind, origin, says) in [
        ("application/x-www-form-urlencoded", None, "JSON body"),
        ("text/plain", Some("http://127.0.0.1:8787"), "JSON body"),
        (
            "application/json",
            Some("http://evil.example"),
            "another site",
        ),
        (
            "application/json",
            Some("http://127.0.0.1:9999"),
            "another site",
        ),
    ] {
        refused(
            &json_of(open.send(action(kind, origin)).await).await,
            StatusCode::FORBIDDEN,
            says,
        );
    }
    // Its own page's post gets past the guard (to the handler: no plan is configured).
    refused(
        &json_of(
            open.send(action("application/json", Some("http://127.0.0.1:8787")))
                .await,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "no bench plan",
    );

    let keyed = Service::new(|cfg, _| {
        cfg.bind = "0.0.0.0:8787".parse().expect("addr");
        cfg.api_key = Some(KEY.to_owned());
    });
    let with = |path: &str, auth: Option<String>| {
        let mut r = Request::get(path).header(header::HOST, "10.1.2.3:8787");
        if let Some(a) = auth {
            r = r.header(header::AUTHORIZATION, a);
        }
        r.body(Body::empty()).expect("req")
    };
    for path in ["/api/runs", "/api/runs/1", "/api/events", "/"] {
        let r = keyed.send(with(path, None)).await;
        assert!(
            r.headers()
                .get(header::WWW_AUTHENTICATE)
                .is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("Basic "))),
            "{path}: a browser asks: {:?}",
            r.headers()
        );
        refused(&json_of(r).await, StatusCode::UNAUTHORIZED, "API key");
        let wrong = keyed
            .send(with(path, Some("Bearer wrong-key-0123456789".to_owned())))
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let (code, v) = json_of(
        keyed
            .send(with("/api/runs", Some(format!("Bearer {KEY}"))))
            .await,
    )
    .await;
    assert_eq!((code, v), (StatusCode::OK, json!([])));
    // With the key, an action still comes only as JSON from the service's own origin.
    let foreign = post("/api/runs")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::from("{\"deployment\":\"d\"}"))
        .expect("req");
    refused(
        &json_of(keyed.send(foreign).await).await,
        StatusCode::FORBIDDEN,
        "another site",
    );
}
