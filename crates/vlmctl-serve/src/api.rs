//! The JSON API behind the pages. Errors are `{"error": ..., "hint": ...}` with 400 (a
//! malformed request or plan), 404, 409 (the deployment is not running), 503 (Docker does not
//! answer). Actions answer 202 with their place in the queue.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/api/deployments` | managed containers: state, health, drift, endpoint; open journals |
//! | GET | `/api/runs?deployment=&host=&config=&limit=` | runs, newest first |
//! | POST | `/api/runs` `{"deployment", "plan"?, "runs"?}` | queue a bench run |
//! | GET | `/api/runs/{id}` | one run, results included |
//! | GET | `/api/compare?a=&b=` | two done runs compared by the runbook rule |
//! | GET | `/api/trends?deployment=&host=&config=` | points over time, and the jobs that mark it |
//! | GET | `/api/jobs?deployment=` | provisions, relaunches, teardowns, restores |
//! | POST | `/api/deployments/{name}/relaunch`, `/teardown` | queue a job |
//! | GET | `/api/events?run=` | server-sent events: every [`Activity`] (of one run) |

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use vlmctl_bench::plan::LoadedPlan;
use vlmctl_deploy::status::{Drift, JournalState};
use vlmctl_deploy::targets::endpoint_url;
use vlmctl_lifecycle::containers::Managed;
use vlmctl_store::{NewRun, RunFilter, Source, State as RunState};

use crate::queue::{Action, Activity};
use crate::{ApiError, App};

/// The API's routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/deployments", get(deployments))
        .route("/api/runs", get(runs).post(start_run))
        .route("/api/runs/{id}", get(run))
        .route("/api/compare", get(compare))
        .route("/api/trends", get(trends))
        .route("/api/jobs", get(jobs))
        .route("/api/deployments/{name}/relaunch", post(relaunch))
        .route("/api/deployments/{name}/teardown", post(teardown))
        .route("/api/events", get(events))
        .with_state(app)
}

/// A deployment as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    /// What Docker says.
    #[serde(flatten)]
    pub container: Managed,
    /// `/health` in a word.
    pub health: String,
    /// Against the configured spec, when there is one.
    pub drift: Drift,
    /// `http://host:port` when it has an endpoint.
    pub url: Option<String>,
    /// Whether the service has its spec (and may relaunch it).
    pub spec: bool,
}

/// The dashboard's data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployments {
    /// Managed containers.
    pub deployments: Vec<Deployment>,
    /// Restore journals still open.
    pub journals: Vec<JournalState>,
    /// Tune journals: tunes running, interrupted (`vlmctl restore`) or unreadable.
    pub tunes: Vec<vlmctl_deploy::status::TuneState>,
}

/// 503: the engine did not answer.
fn unavailable(message: String, hint: Option<String>) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message,
        hint,
    }
}

impl App {
    /// The containers vlmctl manages, as Docker lists them: what an action needs to find its
    /// deployment (no `/health` probe of each, which the dashboard's [`App::deployments`] does).
    async fn managed(&self) -> Result<Vec<Managed>, ApiError> {
        let lifecycle = |e: vlmctl_lifecycle::LifecycleError| {
            unavailable(vlmctl_base::chain::one_line(&e), Some(e.hint()))
        };
        vlmctl_deploy::status::managed(&self.cfg.engine)
            .await
            .map_err(lifecycle)
    }

    /// Every managed container, its health and drift against the configured specs.
    pub async fn deployments(&self) -> Result<Deployments, ApiError> {
        let status = vlmctl_deploy::status::status(&self.cfg.engine, None)
            .await
            .map_err(|e| unavailable(vlmctl_base::chain::one_line(&e), e.hint()))?;
        // Each configured spec parsed once for the whole page, not once per row.
        let plans = self.plans();
        let deployments = status
            .containers
            .into_iter()
            .map(|row| {
                let plan = plans
                    .iter()
                    .find(|(name, _)| *name == row.container.name)
                    .map(|(_, plan)| plan.clone());
                let drift = match &plan {
                    Some(Ok(p)) => vlmctl_deploy::status::drift(&row.container, Some(p)),
                    _ => row.drift,
                };
                Deployment {
                    url: row.container.endpoint.as_ref().map(endpoint_url),
                    spec: plan.is_some(),
                    health: row.health,
                    drift,
                    container: row.container,
                }
            })
            .collect();
        Ok(Deployments {
            deployments,
            journals: status.journals,
            tunes: status.tunes,
        })
    }
}

async fn deployments(State(app): State<Arc<App>>) -> Result<Json<Deployments>, ApiError> {
    app.deployments().await.map(Json)
}

/// Query of the run list and trends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Deployment.
    #[serde(default)]
    pub deployment: Option<String>,
    /// Host.
    #[serde(default)]
    pub host: Option<String>,
    /// Config letter or description.
    #[serde(default)]
    pub config: Option<String>,
    /// At most this many runs, 1 or more (as `runs list --limit`): `limit=0` is a 400, not
    /// an empty list.
    #[serde(default)]
    pub limit: Option<std::num::NonZeroU32>,
}

impl From<Filter> for RunFilter {
    fn from(f: Filter) -> Self {
        let some = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
        Self {
            deployment: some(f.deployment),
            host: some(f.host),
            config: some(f.config),
            limit: f.limit.map(std::num::NonZeroU32::get),
        }
    }
}

/// A query that does not parse is a 400 with the reason, as JSON like every other error.
pub(crate) fn query<T: serde::de::DeserializeOwned + Default>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

async fn runs(
    State(app): State<Arc<App>>,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let f: RunFilter = query(q)?.into();
    Ok(Json(app.read(move |s| s.runs(&f)).await?).into_response())
}

async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    Ok(Json(app.read(move |s| s.run(id)).await?).into_response())
}

/// A run id from a path or query: a positive integer.
pub(crate) fn run_id(s: &str) -> Result<i64, ApiError> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| ApiError::bad_request(format!("{s:?} is not a run id (a positive integer)")))
}

/// `POST /api/runs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The deployment to measure (its container name).
    pub deployment: String,
    /// A configured plan (file name or path); the first one when absent.
    #[serde(default)]
    pub plan: Option<String>,
    /// Measured requests per config, instead of the plan's `runs` (1 to 1000).
    #[serde(default)]
    pub runs: Option<i64>,
}

/// The largest `runs` a request may ask for.
pub const MAX_RUNS: i64 = 1000;

/// The most an action's body may hold (axum's own default limit).
pub const MAX_BODY: usize = 2 << 20;

/// The whole body, within `within` (else 408, and the connection is closed: a client that
/// drips its body holds it no longer) and [`MAX_BODY`] (else 413).
pub(crate) async fn read_body(
    body: axum::body::Body,
    within: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let hint = || {
        Some("an action's body is a small JSON object (see \"API\" in docs/serve.md)".to_owned())
    };
    match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>);
            Err(ApiError {
                status: if too_big {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                },
                message: if too_big {
                    format!("the request body could not be read: it is over {MAX_BODY} bytes")
                } else {
                    format!("the request body could not be read: {e}")
                },
                hint: hint(),
            })
        }
        Err(_) => Err(ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "the request body did not arrive within {} s",
                within.as_secs_f64()
            ),
            hint: hint(),
        }),
    }
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
}

impl App {
    /// Checks a bench request and queues it; returns the run's id and how many are ahead.
    pub async fn start_run(self: &Arc<Self>, req: StartRun) -> Result<(i64, usize), ApiError> {
        if let Some(n) = req.runs
            && !(1..=MAX_RUNS).contains(&n)
        {
            return Err(ApiError::bad_request(format!(
                "runs: {n} is out of range: 1 to {MAX_RUNS} measured requests per config"
            )));
        }
        // A full queue is said before the plan is read (and taken for good, atomically, in
        // `record_and_queue` before anything is recorded).
        self.queue_room()?;
        let path = self.bench_plan(req.plan.as_deref())?.to_owned();
        let mut plan = LoadedPlan::load(&path).map_err(|e| {
            ApiError::bad_request(vlmctl_base::chain::one_line(&e)).with_hint(Some(e.hint()))
        })?;
        let managed = self.managed().await?;
        let Some(d) = managed.iter().find(|m| m.name == req.deployment) else {
            return Err(ApiError::not_found(format!(
                "no deployment {:?}: vlmctl manages {}",
                req.deployment,
                list_or_none(managed.iter().map(|m| m.name.as_str()))
            )));
        };
        let (Some(url), "running") = (d.endpoint.as_ref().map(endpoint_url), d.state.as_str())
        else {
            return Err(ApiError::conflict(format!(
                "{} is {} ({}): nothing to measure",
                req.deployment, d.state, d.status
            ))
            .with_hint(Some("relaunch it first".to_owned())));
        };
        if let Some(n) = req.runs {
            // Not the file's plan any more: its hash follows (`LoadedPlan::set_runs`), so that
            // `compare` warns when it meets a run of the file as written.
            plan.set_runs(usize::try_from(n).unwrap_or(1));
        }
        // The plan's first target, aimed at the deployment on the service's host (its name
        // kept, so that runs of the same plan compare across the CLI and the service). The
        // queue finds its URL again when the run starts (`vlmctl_deploy::targets::place`).
        let Some(plan) = vlmctl_deploy::bench::aim_at(&plan, &req.deployment, url) else {
            return Err(ApiError::bad_request(format!(
                "{}: the plan has no [[target]]",
                path.display()
            )));
        };
        let keys = plan.api_keys().map_err(|e| {
            ApiError::bad_request(format!(
                "{}: {} in vlmctl serve's environment",
                path.display(),
                vlmctl_base::chain::one_line(&e)
            ))
            .with_hint(Some(e.hint()))
        })?;
        for k in keys.values() {
            self.cfg
                .secrets
                .add_key(k, vlmctl_deploy::plan::MIN_API_KEY_LEN);
        }
        let targets = vlmctl_deploy::history::link(
            &plan.plan.targets,
            &managed,
            self.cfg.engine.state_dir(),
            &self.cfg.host,
        );
        let new = NewRun {
            source: Source::Serve,
            host: self.cfg.host.clone(),
            plan: path.display().to_string(),
            plan_json: serde_json::to_value(&plan.plan).unwrap_or_default(),
            targets,
            state: RunState::Queued,
        };
        self.record_and_queue(new, move |run| Action::Bench {
            run,
            deployment: req.deployment,
            plan: Box::new(plan),
            keys,
        })
        .await
    }

    /// Takes a place in the queue, then records `new` as `queued` and queues `action(its id)`
    /// there; returns the run's id and how many are ahead. A full queue (429) refuses before
    /// anything is recorded, however many requests arrive at once: the place is checked and
    /// taken in one step, and given back if recording fails.
    pub(crate) async fn record_and_queue(
        self: &Arc<Self>,
        new: NewRun,
        action: impl FnOnce(i64) -> Action + Send + 'static,
    ) -> Result<(i64, usize), ApiError> {
        let place = self.reserve()?;
        // Recorded and queued in a task of its own: a client that goes away in between must
        // not leave a run recorded `queued` that nothing will run.
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let id = app.db(move |s| s.begin_run(&new)).await?;
            let queued = app.enqueue_at(place, action(id));
            match queued {
                Ok(ahead) => Ok((id, ahead)),
                Err(e) => {
                    let why = e.message.clone();
                    app.db(move |s| s.fail_run(id, &why)).await.ok();
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| ApiError::internal(format!("queueing the run failed: {e}")))?
    }
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none (provision one first)".to_owned()
    } else {
        v.join(", ")
    }
}

async fn start_run(
    State(app): State<Arc<App>>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, app.config().limits.body_read_timeout).await?;
    let req: StartRun = parse_body(&body)?;
    let (id, ahead) = app.start_run(req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "run": id, "ahead": ahead, "page": format!("/runs/{id}") })),
    )
        .into_response())
}

/// `?a=&b=`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    /// Baseline run.
    #[serde(default)]
    pub a: Option<String>,
    /// New run.
    #[serde(default)]
    pub b: Option<String>,
}

impl App {
    /// Two done runs' results compared (baseline `a`, new `b`).
    pub async fn compare(
        &self,
        a: i64,
        b: i64,
    ) -> Result<vlmctl_bench::compare::Comparison, ApiError> {
        // Read under a turn (two large runs are large to read too), compared off the thread
        // that answers the other pages (2,000 bootstrap resamples per config: seconds).
        self.heavy(
            move |s| Ok((s.run(a)?, s.run(b)?)),
            |(ra, rb)| {
                let done = |d: vlmctl_store::RunDetail| {
                    let id = d.row.id;
                    let state = d.row.state;
                    d.results.ok_or_else(|| {
                        ApiError::conflict(format!(
                            "run {id} is {state}: it has no results to compare"
                        ))
                    })
                };
                let (ra, rb) = (done(ra)?, done(rb)?);
                Ok(vlmctl_bench::compare::compare(&ra, &rb))
            },
        )
        .await
    }
}

async fn compare(
    State(app): State<Arc<App>>,
    q: Result<Query<Pair>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query(q)?;
    let need = |v: Option<String>, k: &str| {
        v.ok_or_else(|| ApiError::bad_request(format!("missing ?{k}=RUN_ID")))
            .and_then(|s| run_id(&s))
    };
    let (a, b) = (need(p.a, "a")?, need(p.b, "b")?);
    Ok(Json(app.compare(a, b).await?).into_response())
}

/// How long before a trend's first point a provision or relaunch is still marked on it.
pub const MARKS_BEFORE_S: i64 = 6 * 3600;

/// What the trend page draws.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trends {
    /// Oldest first.
    pub points: Vec<vlmctl_store::TrendPoint>,
    /// Provisions and relaunches of the deployments in it, oldest first.
    pub jobs: Vec<vlmctl_store::Job>,
}

impl App {
    /// Points and the jobs that mark them.
    pub async fn trends(&self, f: RunFilter) -> Result<Trends, ApiError> {
        self.read(move |s| {
            let points = s.trend(&f)?;
            // Marks within the points' time (and a little before the first: the relaunch that
            // started a series), of the host asked for: one provision months ago must not
            // squash a week of runs to the right edge.
            let (first, last) = (
                points.first().map_or(0, |p| p.unix),
                points.last().map_or(0, |p| p.unix),
            );
            let from = first.saturating_sub(MARKS_BEFORE_S);
            let mut jobs = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for d in points.iter().filter_map(|p| p.deployment.clone()) {
                if seen.insert(d.clone()) {
                    jobs.extend(s.jobs(Some(&d))?.into_iter().filter(|j| {
                        matches!(
                            j.kind,
                            vlmctl_store::JobKind::Provision | vlmctl_store::JobKind::Relaunch
                        ) && j.state == RunState::Done
                            && (from..=last).contains(&j.started_unix)
                            && f.host.as_ref().is_none_or(|h| *h == j.host)
                    }));
                }
            }
            jobs.sort_by_key(|j| (j.started_unix, j.id));
            Ok(Trends { points, jobs })
        })
        .await
    }
}

async fn trends(
    State(app): State<Arc<App>>,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let f: RunFilter = query(q)?.into();
    Ok(Json(app.trends(f).await?).into_response())
}

/// `?deployment=`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFilter {
    /// Deployment.
    #[serde(default)]
    pub deployment: Option<String>,
}

async fn jobs(
    State(app): State<Arc<App>>,
    q: Result<Query<JobFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let d = query(q)?.deployment.filter(|d| !d.is_empty());
    Ok(Json(app.read(move |s| s.jobs(d.as_deref())).await?).into_response())
}

impl App {
    /// Queues a relaunch or teardown of a managed deployment.
    pub async fn start_job(&self, name: &str, relaunch: bool) -> Result<usize, ApiError> {
        if !vlmctl_lifecycle::spec::is_container_name(name) {
            return Err(ApiError::bad_request(format!(
                "{name:?} is not a deployment name"
            )));
        }
        if relaunch {
            match self.plan_for(name) {
                None => {
                    return Err(ApiError::conflict(format!(
                        "no spec for {name} is configured, so the service cannot relaunch it"
                    ))
                    .with_hint(Some(
                        "start vlmctl serve with --spec FILE for it".to_owned(),
                    )));
                }
                Some(Err(why)) => return Err(ApiError::bad_request(why)),
                Some(Ok(p)) if p.unpinned.is_some() => {
                    return Err(ApiError::conflict(format!(
                        "{name}'s model is not pinned in {} yet; the service never writes \
                         the lock",
                        self.cfg.lock.display()
                    ))
                    .with_hint(Some(
                        "run `vlmctl provision --spec FILE` once from the CLI".to_owned(),
                    )));
                }
                Some(Ok(_)) => {}
            }
            self.enqueue(Action::Relaunch {
                deployment: name.to_owned(),
            })
        } else {
            if !self.managed().await?.iter().any(|m| m.name == name) {
                return Err(ApiError::not_found(format!(
                    "no deployment {name:?} to tear down"
                )));
            }
            self.enqueue(Action::Teardown {
                deployment: name.to_owned(),
            })
        }
    }
}

async fn relaunch(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ahead = app.start_job(&name, true).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "ahead": ahead })),
    )
        .into_response())
}

async fn teardown(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ahead = app.start_job(&name, false).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "ahead": ahead })),
    )
        .into_response())
}

/// `?run=`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Only this run's activity.
    #[serde(default)]
    pub run: Option<String>,
}

fn concerns(a: &Activity, run: Option<i64>) -> bool {
    let Some(want) = run else { return true };
    match a {
        Activity::Progress { run, .. } | Activity::Step { run, .. } | Activity::Run { run, .. } => {
            *run == want
        }
        Activity::Queued { run, .. } => *run == Some(want),
        Activity::Job { .. } | Activity::JobDone { .. } => false,
    }
}

async fn events(
    State(app): State<Arc<App>>,
    q: Result<Query<EventFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let run = query(q)?.run.map(|r| run_id(&r)).transpose()?;
    let rx = app.subscribe();
    let stop = app.shutdown.clone();
    // Ends when the service shuts down, so a page that listens does not hold the shutdown up.
    let stream = futures::stream::unfold((rx, stop), move |(mut rx, stop)| async move {
        loop {
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = stop.cancelled() => return None,
            };
            match next {
                Ok(a) if concerns(&a, run) => {
                    let ev = SseEvent::default()
                        .json_data(&a)
                        .unwrap_or_else(|_| SseEvent::default().comment("unserializable"));
                    return Some((Ok(ev), (rx, stop)));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
