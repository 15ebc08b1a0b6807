//! The service's one queue: bench runs, relaunches and teardowns, one at a time (a relaunch in
//! the middle of a bench would measure the restart; two benches at once would measure each
//! other). Whatever the current action does is published as [`Activity`], which the pages get
//! as server-sent events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;
use vlmctl_bench::plan::LoadedPlan;
use vlmctl_deploy::events::{Event, NoOne};
use vlmctl_deploy::provision::{self, Ctx, Options, Provisioned};
use vlmctl_store::{JobKind, NewJob, State};

use crate::{ApiError, App};

/// Something the service is doing or did, as the pages and `GET /api/events` see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activity {
    /// An action joined the queue behind `ahead` others.
    Queued {
        /// `bench`, `relaunch`, `teardown`.
        action: String,
        /// The deployment.
        deployment: String,
        /// The bench run's id.
        run: Option<i64>,
        /// Actions before it.
        ahead: usize,
    },
    /// A bench run measured one more request.
    Progress {
        /// The run.
        run: i64,
        /// Target.
        target: String,
        /// Config letter.
        config: String,
        /// Requests done in this config (warm-ups included).
        done: usize,
        /// Requests in this config.
        total: usize,
    },
    /// A bench run began or ended a step that is not a request of a config: the `describe`
    /// request, which may take up to the plan's timeout (shown so that the page is not silent).
    Step {
        /// The run.
        run: i64,
        /// Target.
        target: String,
        /// What is happening, or how it ended.
        message: String,
    },
    /// A bench run changed state.
    Run {
        /// The run.
        run: i64,
        /// Its new state.
        state: State,
        /// Why it failed, or what it measured.
        message: Option<String>,
    },
    /// A line of a relaunch's or teardown's progress.
    Job {
        /// `relaunch`, `teardown`.
        action: String,
        /// The deployment.
        deployment: String,
        /// What happened.
        line: String,
    },
    /// A relaunch or teardown ended.
    JobDone {
        /// The job's id in the history.
        job: Option<i64>,
        /// `relaunch`, `teardown`.
        action: String,
        /// The deployment.
        deployment: String,
        /// `done` or `failed`.
        state: State,
        /// What it did, or why it failed.
        detail: String,
    },
}

/// What the queue runs.
pub enum Action {
    /// A bench run already recorded as `queued` under `run`, with its plan aimed at the
    /// deployment and the API keys it needs.
    Bench {
        /// Its id.
        run: i64,
        /// The deployment measured.
        deployment: String,
        /// The plan, loaded and checked when the run was asked for.
        plan: Box<LoadedPlan>,
        /// Per target.
        keys: BTreeMap<String, String>,
    },
    /// `vlmctl relaunch` of a configured spec.
    Relaunch {
        /// The deployment.
        deployment: String,
    },
    /// `vlmctl teardown`.
    Teardown {
        /// The deployment.
        deployment: String,
    },
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Self::Bench { .. } => "bench",
            Self::Relaunch { .. } => "relaunch",
            Self::Teardown { .. } => "teardown",
        }
    }
    fn deployment(&self) -> &str {
        match self {
            Self::Bench { deployment, .. }
            | Self::Relaunch { deployment }
            | Self::Teardown { deployment } => deployment,
        }
    }
}

/// The sending side.
pub struct Queue {
    tx: mpsc::UnboundedSender<Action>,
    waiting: Arc<AtomicUsize>,
    busy: std::sync::atomic::AtomicBool,
}

impl Queue {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Action>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                waiting: Arc::new(AtomicUsize::new(0)),
                busy: std::sync::atomic::AtomicBool::new(false),
            },
            rx,
        )
    }

    /// Actions not yet started (the current one not counted).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// A place in the queue, taken before anything is recorded (so that a request the full queue
/// refuses leaves no run in the history, however many arrive at once); given back when
/// dropped unused.
#[must_use = "a place not used is given back at once"]
pub struct Place {
    waiting: Option<Arc<AtomicUsize>>,
    /// Actions waiting before this one took its place.
    before: usize,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(w) = self.waiting.take() {
            w.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl App {
    /// Takes a place in the queue: 429 when [`MAX_QUEUED`] actions wait, 503 when the service
    /// is stopping. Check and take are one atomic step, so that two requests at once cannot
    /// both pass the bound.
    pub fn reserve(&self) -> Result<Place, ApiError> {
        if self.shutdown.reason().is_some() {
            return Err(stopping());
        }
        let before = self
            .queue
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_QUEUED).then_some(n + 1)
            })
            .map_err(|_| full())?;
        Ok(Place {
            waiting: Some(Arc::clone(&self.queue.waiting)),
            before,
        })
    }

    /// Puts `action` in the queue and says so; returns how many actions are before it (the
    /// one going on included). A stopping service takes no more (503).
    pub fn enqueue(&self, action: Action) -> Result<usize, ApiError> {
        let place = self.reserve()?;
        self.enqueue_at(place, action)
    }

    /// [`Self::enqueue`] at a place taken before ([`Self::reserve`]).
    pub fn enqueue_at(&self, mut place: Place, action: Action) -> Result<usize, ApiError> {
        if self.shutdown.reason().is_some() {
            return Err(stopping());
        }
        let ahead = place.before + usize::from(self.queue.busy.load(Ordering::SeqCst));
        let activity = Activity::Queued {
            action: action.name().to_owned(),
            deployment: action.deployment().to_owned(),
            run: match &action {
                Action::Bench { run, .. } => Some(*run),
                _ => None,
            },
            ahead,
        };
        if self.queue.tx.send(action).is_err() {
            // The worker has ended (stopping, or it died): nothing would ever run this (the
            // place is given back as it drops).
            return Err(stopping());
        }
        // The worker gives the place back when it takes the action.
        place.waiting = None;
        self.publish(activity);
        Ok(ahead)
    }

    /// Tells every listener.
    pub fn publish(&self, a: Activity) {
        // No listener is not an error.
        let _ = self.activity.send(a);
    }

    /// A new listener of everything published from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Activity> {
        self.activity.subscribe()
    }
}

/// The most actions that wait in the queue (the one going on not counted): a script in a loop
/// must not queue days of work.
pub const MAX_QUEUED: usize = 100;

impl App {
    /// Is there room in the queue for one more action? (429 when not.)
    pub fn queue_room(&self) -> Result<(), ApiError> {
        if self.queue.waiting() >= MAX_QUEUED {
            return Err(full());
        }
        Ok(())
    }
}

fn full() -> ApiError {
    ApiError {
        status: axum::http::StatusCode::TOO_MANY_REQUESTS,
        message: format!(
            "the queue holds {MAX_QUEUED} actions, its limit: this one was not queued"
        ),
        hint: Some(
            "wait for queued actions to run (the Runs page shows them) and ask again".to_owned(),
        ),
    }
}

fn stopping() -> ApiError {
    ApiError {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        message: "vlmctl serve is stopping (or its queue has ended): nothing more is queued"
            .to_owned(),
        hint: Some("start vlmctl serve again".to_owned()),
    }
}

/// Starts the worker on a thread and a runtime of its own: a bench run's timing must not share
/// a thread with the pages (a chart drawn, a report rendered, a plan hashed), or the time a
/// finished answer waits for that thread would be measured as the server's latency. Its own
/// runtime also lets it run the jobs, whose futures are not `Send`. The receiver fires when it
/// has ended.
pub(crate) fn start(
    app: Arc<App>,
    rx: mpsc::UnboundedReceiver<Action>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("vlmctl-serve-queue".to_owned())
        .spawn(move || {
            rt.block_on(work(app, rx));
            let _ = done.send(());
        })?;
    Ok(ended)
}

/// The worker: one action at a time until shutdown.
async fn work(app: Arc<App>, mut rx: mpsc::UnboundedReceiver<Action>) {
    loop {
        let next = tokio::select! {
            a = rx.recv() => a,
            _ = app.shutdown.cancelled() => None,
        };
        let Some(action) = next else { break };
        app.queue.busy.store(true, Ordering::SeqCst);
        app.queue.waiting.fetch_sub(1, Ordering::SeqCst);
        match action {
            Action::Bench {
                run,
                deployment: _,
                plan,
                keys,
            } => bench(&app, run, &plan, &keys).await,
            Action::Relaunch { deployment } => relaunch(&app, &deployment).await,
            Action::Teardown { deployment } => teardown(&app, &deployment).await,
        }
        app.queue.busy.store(false, Ordering::SeqCst);
    }
}

/// What a bench run reports, as the pages see it: each config's requests as progress, the
/// `describe` request as a step (it may take up to the plan's timeout, so it is said).
fn bench_events(app: &Arc<App>, run: i64) -> impl Fn(vlmctl_bench::run::Event<'_>) + Send + Sync {
    let sender = app.activity.clone();
    move |e: vlmctl_bench::run::Event<'_>| {
        use vlmctl_bench::run::Event;
        let activity = match e {
            Event::Requests {
                target,
                config,
                done,
                total,
            } => Activity::Progress {
                run,
                target: target.to_owned(),
                config: config.to_owned(),
                done,
                total,
            },
            Event::DescribeStarted { target, timeout } => Activity::Step {
                run,
                target: target.to_owned(),
                message: format!("describe request… (up to {} s)", timeout.as_secs()),
            },
            Event::DescribeDone {
                target,
                elapsed,
                error,
            } => Activity::Step {
                run,
                target: target.to_owned(),
                message: match error {
                    None => format!(
                        "describe request answered in {:.1} s",
                        elapsed.as_secs_f64()
                    ),
                    Some(why) => format!(
                        "warning: the describe request failed after {:.1} s ({why}); the run goes on",
                        elapsed.as_secs_f64()
                    ),
                },
            },
        };
        let _ = sender.send(activity);
    }
}

async fn bench(app: &Arc<App>, run: i64, plan: &LoadedPlan, keys: &BTreeMap<String, String>) {
    if app.shutdown.reason().is_some() {
        return;
    }
    if let Err(e) = app.db(move |s| s.start_run(run)).await {
        tracing::warn!("run {run}: {}", e.message);
        return;
    }
    app.publish(Activity::Run {
        run,
        state: State::Running,
        message: None,
    });
    let fail = |message: String| async move {
        let message = app.cfg.secrets.scrub(&message).into_owned();
        let m = message.clone();
        app.db(move |s| s.fail_run(run, &m)).await.ok();
        app.publish(Activity::Run {
            run,
            state: State::Failed,
            message: Some(message),
        });
    };
    // Where the deployment is now, on the service's host (through a forward when that host is
    // another machine), as `vlmctl bench` places its targets.
    let placed = match vlmctl_deploy::targets::place(
        plan,
        vlmctl_lifecycle::hosts::selected(),
        &vlmctl_lifecycle::hosts::docker_config_dir(),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            fail(chain_with_hint(&e)).await;
            return;
        }
    };
    let plan = &placed.aimed;
    if let Err(e) = vlmctl_bench::preflight::check_all(&plan.plan.targets, keys).await {
        let e = placed.explain(e);
        fail(format!(
            "{} (hint: {})",
            vlmctl_base::chain::one_line(&e),
            e.hint()
        ))
        .await;
        return;
    }
    let events = bench_events(app, run);
    let mut results = tokio::select! {
        r = vlmctl_bench::run::run_with(plan, keys, &events) => r,
        // The caller marks the run interrupted once the queue has stopped.
        _ = app.shutdown.cancelled() => return,
    };
    placed.restore(&mut results);
    if !results.any_succeeded() {
        fail(nothing_succeeded(&results)).await;
        return;
    }
    let p50 = results
        .targets
        .first()
        .and_then(|t| t.configs.first())
        .and_then(|c| c.summary.wall_ms.as_ref().map(|w| (c.name.clone(), w.p50)));
    let kept = serde_json::to_vec_pretty(&results).unwrap_or_default();
    match app.db(move |s| s.finish_run(run, &results)).await {
        Ok(()) => app.publish(Activity::Run {
            run,
            state: State::Done,
            message: p50.map(|(c, ms)| format!("config {c}: p50 {ms:.1} ms")),
        }),
        Err(e) => {
            // The measurements are not lost with the write: they go to a file beside the
            // history, which `vlmctl runs import` loads.
            let path = app
                .cfg
                .state
                .join("unrecorded-runs")
                .join(format!("run-{run}.json"));
            let saved = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| vlmctl_deploy::write_atomically(&path, &kept));
            let whereto = match saved {
                Ok(()) => format!(
                    "; the results are in {} (`vlmctl runs import` loads them)",
                    path.display()
                ),
                Err(w) => format!("; and they could not be saved to {}: {w}", path.display()),
            };
            fail(format!("{}{whereto}", e.message)).await;
        }
    }
}

/// Why a run without one successful request failed: its error counts and the first error's
/// detail (the results are not kept: a run is done with results, or failed with this).
fn nothing_succeeded(r: &vlmctl_bench::run::Results) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut first = None;
    for c in r.targets.iter().flat_map(|t| &t.configs) {
        for (k, n) in &c.summary.errors {
            *counts.entry(k.as_str()).or_default() += n;
        }
        first = first.or_else(|| c.samples.iter().find_map(|s| s.error_detail.clone()));
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} x {k}")).collect();
    format!(
        "no request succeeded: {}{}",
        if counts.is_empty() {
            "nothing was sent".to_owned()
        } else {
            counts.join(", ")
        },
        first
            .map(|d| format!("; first error: {d}"))
            .unwrap_or_default()
    )
}

/// One line for a page: what a relaunch or teardown just did.
fn event_line(e: &Event) -> Option<String> {
    Some(match e {
        Event::WaitingForLock { holder, .. } => format!("waiting for {holder}"),
        Event::GatesStarted { .. } => "running the gates".to_owned(),
        Event::Gates { results } => {
            let failed: Vec<String> = results
                .iter()
                .filter(|g| g.status == vlmctl_lifecycle::gates::GateStatus::Fail)
                .map(|g| g.name.clone())
                .collect();
            if failed.is_empty() {
                format!("gates: {} passed or warned", results.len())
            } else {
                format!("gates failed: {}", failed.join(", "))
            }
        }
        Event::Fetching { model } => format!("fetching {model}"),
        Event::Pulling { image, .. } => format!("pulling {image}"),
        Event::NotStopping { name } => format!("not stopping {name} (a relaunch never does)"),
        Event::Warning { message } => format!("warning: {message}"),
        Event::Launched { launch } => match launch {
            vlmctl_lifecycle::containers::Launch::Unchanged { .. } => {
                "running unchanged: nothing to do".to_owned()
            }
            vlmctl_lifecycle::containers::Launch::Started { replaced, .. } => {
                if *replaced {
                    "replaced the container; waiting for /health".to_owned()
                } else {
                    "started the container; waiting for /health".to_owned()
                }
            }
        },
        Event::Ready { startup_s } => format!("ready after {startup_s:.1} s"),
        Event::SmokeDone { .. } => "smoke request answered".to_owned(),
        Event::Undone { .. } => "undone: the earlier state is back".to_owned(),
        _ => return None,
    })
}

/// Runs a job with a sink that publishes its lines; records it; publishes its end.
async fn job<F, T>(
    app: &Arc<App>,
    kind: JobKind,
    deployment: &str,
    hashes: Option<(String, String)>,
    run: F,
) where
    F: AsyncFnOnce(&mut dyn vlmctl_deploy::events::Sink) -> Result<T, String>,
    T: JobOutcome,
{
    let action = kind.as_str().to_owned();
    let new = NewJob {
        kind,
        host: app.cfg.host.clone(),
        deployment: Some(deployment.to_owned()),
        spec_sha256: hashes.as_ref().map(|h| h.0.clone()),
        lock_sha256: hashes.as_ref().map(|h| h.1.clone()),
    };
    let id = app.db(move |s| s.begin_job(&new)).await.ok();
    let publish = |line: String| {
        app.publish(Activity::Job {
            action: action.clone(),
            deployment: deployment.to_owned(),
            line: app.cfg.secrets.scrub(&line).into_owned(),
        });
    };
    let mut sink = |e: Event| {
        if let Some(line) = event_line(&e) {
            publish(line);
        }
    };
    let outcome = run(&mut sink).await;
    let (state, detail) = match &outcome {
        Ok(t) => (State::Done, t.detail()),
        // Stopped by the service's shutdown (and undone), as the CLI records a signal.
        Err(e) if app.shutdown.reason().is_some() => (State::Interrupted, e.clone()),
        Err(e) => (State::Failed, e.clone()),
    };
    let detail = app.cfg.secrets.scrub(&detail).into_owned();
    if let Some(id) = id {
        let d = detail.clone();
        app.db(move |s| s.finish_job(id, state, &d, None))
            .await
            .ok();
    }
    app.publish(Activity::JobDone {
        job: id,
        action,
        deployment: deployment.to_owned(),
        state,
        detail,
    });
}

/// What a finished job says it did.
trait JobOutcome {
    fn detail(&self) -> String;
}

impl JobOutcome for Provisioned {
    fn detail(&self) -> String {
        match self {
            Self::Ready {
                base_url, record, ..
            } => format!("ready at {base_url} after {:.1} s", record.startup_s),
            Self::Unchanged { base_url, .. } => {
                format!("running unchanged at {base_url}: nothing to do")
            }
        }
    }
}

impl JobOutcome for vlmctl_deploy::undo::TornDown {
    fn detail(&self) -> String {
        let back = &self.restored.started;
        format!(
            "{} {}{}",
            self.container,
            if self.removed {
                "removed"
            } else {
                "was not there"
            },
            if back.is_empty() {
                String::new()
            } else {
                format!("; started again: {}", back.join(", "))
            }
        )
    }
}

fn chain_with_hint(e: &vlmctl_deploy::DeployError) -> String {
    let hint = e
        .hint()
        .map(|h| format!(" (hint: {h})"))
        .unwrap_or_default();
    format!("{}{hint}", vlmctl_base::chain::one_line(e))
}

async fn relaunch(app: &Arc<App>, deployment: &str) {
    let plan = app.plan_for(deployment).unwrap_or_else(|| {
        Err(format!(
            "no spec for {deployment} is configured: start vlmctl serve with --spec FILE"
        ))
    });
    let plan = match plan {
        Ok(p) => p,
        Err(why) => {
            let fail =
                async |_: &mut dyn vlmctl_deploy::events::Sink| -> Result<Provisioned, String> {
                    Err(why)
                };
            return job(app, JobKind::Relaunch, deployment, None, fail).await;
        }
    };
    let hashes = Some((plan.spec.sha256(), plan.mount.lock_sha256.clone()));
    job(app, JobKind::Relaunch, deployment, hashes, async |sink| {
        let opts = Options {
            relaunch: true,
            stop: Vec::new(),
            yes: false,
            wait: false,
            within_tune: false,
        };
        let ctx = Ctx {
            state: &app.cfg.state,
            sink,
            confirm: &mut NoOne,
            cancel: &app.shutdown,
        };
        provision::provision(&plan, &opts, &app.cfg.hub, ctx)
            .await
            .map_err(|e| chain_with_hint(&e))
    })
    .await;
}

async fn teardown(app: &Arc<App>, deployment: &str) {
    job(app, JobKind::Teardown, deployment, None, async |sink| {
        vlmctl_deploy::undo::teardown(&app.cfg.state, deployment, false, sink, &app.shutdown)
            .await
            .map_err(|e| chain_with_hint(&e))
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service scrubs with its own `Secrets` (no function pointer from the CLI): a key added
    /// to it is neither stored in a failed job's detail nor published to the pages.
    #[test]
    fn a_failed_jobs_detail_is_scrubbed_with_the_services_own_secrets() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (app, _rx) = crate::tests::test_app(tmp.path());
        app.cfg.secrets.add("sk-service-held-0123456789");
        let app = Arc::new(app);
        let mut pages = app.activity.subscribe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(job(
            &app,
            JobKind::Teardown,
            "d",
            None,
            async |_sink| -> Result<vlmctl_deploy::undo::TornDown, String> {
                Err("refused with key sk-service-held-0123456789".to_owned())
            },
        ));
        let jobs = vlmctl_store::Store::open(&tmp.path().join("history.sqlite"))
            .and_then(|s| s.jobs(None))
            .expect("jobs");
        assert_eq!(
            jobs[0].detail.as_deref(),
            Some("refused with key [REDACTED]"),
            "{jobs:?}"
        );
        let mut published = Vec::new();
        while let Ok(a) = pages.try_recv() {
            published.push(format!("{a:?}"));
        }
        assert!(
            published
                .iter()
                .any(|a| a.contains("refused with key [REDACTED]"))
                && !published.iter().any(|a| a.contains("sk-service-held")),
            "{published:?}"
        );
    }
}
