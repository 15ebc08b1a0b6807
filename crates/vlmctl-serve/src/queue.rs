//! The service's one queue: bench runs, relaunches and teardowns, one at a time (a relaunch in
//! the middle of a bench would measure the restart; two benches at once would measure each
//! other). Whatever the current action does is published as [`Activity`], which the pages get
//! as server-sent events: its job's events, and the link notices of the service's SSH forwards
//! while it runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use vlmctl_bench::plan::LoadedPlan;
use vlmctl_deploy::bench::{BenchJob, Benched, Progress, Record};
use vlmctl_deploy::events::{Event, NoOne};
use vlmctl_deploy::history::History;
use vlmctl_deploy::provision::{self, Ctx, Options, Provisioned};
use vlmctl_lifecycle::hosts::LinkNotice;
use vlmctl_store::{JobKind, Source, State};

use crate::{ApiError, App};

pub use crate::activity::{Action, Activity, Place, Queue};

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
    notices: mpsc::UnboundedReceiver<LinkNotice>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("vlmctl-serve-queue".to_owned())
        .spawn(move || {
            rt.block_on(work(app, rx, notices));
            let _ = done.send(());
        })?;
    Ok(ended)
}

/// The worker: one action at a time until shutdown. The link notices of the service's SSH
/// forwards join the events of the action that runs; between actions there is no event
/// stream to join, and they go to the log.
async fn work(
    app: Arc<App>,
    mut rx: mpsc::UnboundedReceiver<Action>,
    mut notices: mpsc::UnboundedReceiver<LinkNotice>,
) {
    loop {
        let next = tokio::select! {
            a = rx.recv() => a,
            Some(n) = notices.recv() => {
                tracing::warn!("{}", app.cfg.secrets.scrub(&n.to_string()));
                continue;
            }
            _ = app.shutdown.cancelled() => None,
        };
        let Some(action) = next else { break };
        app.queue.busy.store(true, Ordering::SeqCst);
        app.queue.waiting.fetch_sub(1, Ordering::SeqCst);
        run_action(&app, action, &mut notices).await;
        app.queue.busy.store(false, Ordering::SeqCst);
    }
}

/// Runs `action`; a link notice that arrives meanwhile is one more of its events
/// ([`Event::Link`]), on its stream as its other events are. Notices come first: one already
/// there is said before the action goes on.
pub(crate) async fn run_action(
    app: &Arc<App>,
    action: Action,
    notices: &mut mpsc::UnboundedReceiver<LinkNotice>,
) {
    let stream = Stream::of(&action);
    let running = async {
        match action {
            Action::Bench {
                run,
                deployment: _,
                plan,
                keys,
            } => bench(app, run, &plan, &keys).await,
            Action::Relaunch { deployment } => relaunch(app, &deployment).await,
            Action::Teardown { deployment } => teardown(app, &deployment).await,
        }
    };
    tokio::pin!(running);
    loop {
        tokio::select! {
            biased;
            Some(notice) = notices.recv() => stream.publish(app, &Event::Link { notice }),
            () = &mut running => return,
        }
    }
}

/// Where an action's events go on the pages: a bench run's steps, or a relaunch's or
/// teardown's lines. Each is the event's one line, scrubbed with the service's secrets.
enum Stream {
    /// [`Activity::Step`] of the run.
    Bench {
        /// The run.
        run: i64,
    },
    /// [`Activity::Job`].
    Job {
        /// `relaunch`, `teardown`.
        action: String,
        /// The deployment.
        deployment: String,
    },
}

impl Stream {
    fn of(action: &Action) -> Self {
        match action {
            Action::Bench { run, .. } => Self::Bench { run: *run },
            Action::Relaunch { .. } | Action::Teardown { .. } => Self::Job {
                action: action.name().to_owned(),
                deployment: action.deployment().to_owned(),
            },
        }
    }

    fn publish(&self, app: &App, e: &Event) {
        let line = app.cfg.secrets.scrub(&e.to_string()).into_owned();
        app.publish(match self {
            Self::Bench { run } => Activity::Step {
                run: *run,
                target: String::new(),
                message: line,
            },
            Self::Job { action, deployment } => Activity::Job {
                action: action.clone(),
                deployment: deployment.clone(),
                line,
            },
        });
    }
}

/// What a bench run reports, as the pages see it: each config's requests as progress, the
/// `describe` request and a sweep's steps as steps (they may take their time, so they are said).
fn bench_progress(app: &Arc<App>, run: i64) -> impl Fn(Progress<'_>) + Send + Sync {
    use vlmctl_bench::run::Event;
    use vlmctl_bench::sweep::{self, SweepEvent};
    let sender = app.activity.clone();
    // A sweep step's end does not name its target: the one whose step began last.
    let stepping = std::sync::Mutex::new(String::new());
    move |p: Progress<'_>| {
        let step = |target: &str, message: String| Activity::Step {
            run,
            target: target.to_owned(),
            message,
        };
        let activity = match p {
            Progress::Run(Event::Requests {
                target,
                config,
                done,
                total,
            }) => Activity::Progress {
                run,
                target: target.to_owned(),
                config: config.to_owned(),
                done,
                total,
            },
            Progress::Run(Event::DescribeStarted { target, timeout }) => step(
                target,
                format!("describe request… (up to {} s)", timeout.as_secs()),
            ),
            Progress::Run(Event::DescribeDone {
                target,
                elapsed,
                error,
            }) => step(
                target,
                match error {
                    None => format!(
                        "describe request answered in {:.1} s",
                        elapsed.as_secs_f64()
                    ),
                    Some(why) => format!(
                        "warning: the describe request failed after {:.1} s ({why}); the run goes on",
                        elapsed.as_secs_f64()
                    ),
                },
            ),
            Progress::Sweep(SweepEvent::Step {
                target,
                index,
                hz,
                requests,
            }) => {
                if let Ok(mut t) = stepping.lock() {
                    target.clone_into(&mut t);
                }
                step(
                    target,
                    format!(
                        "sweep step {index}: {} Hz, {requests} requests ...",
                        sweep::hz_text(hz)
                    ),
                )
            }
            Progress::Sweep(SweepEvent::Done(s)) => step(
                &stepping.lock().map(|t| t.clone()).unwrap_or_default(),
                format!(
                    "sweep step at {} Hz: {}{}",
                    sweep::hz_text(s.offered_hz),
                    if s.met { "met" } else { "not met" },
                    if s.stopped_early {
                        " (stopped early)"
                    } else {
                        ""
                    }
                ),
            ),
        };
        let _ = sender.send(activity);
    }
}

/// The history handle of the service's jobs: its one writer, its host's name, its scrubber.
fn history(app: &Arc<App>) -> History {
    History::shared(
        Arc::clone(&app.store),
        Source::Serve,
        app.cfg.host.clone(),
        app.cfg.secrets.clone(),
    )
}

/// A queued bench run, as the bench job runs it; its end published.
pub(crate) async fn bench(
    app: &Arc<App>,
    run: i64,
    plan: &LoadedPlan,
    keys: &BTreeMap<String, String>,
) {
    if app.shutdown.reason().is_some() {
        return;
    }
    app.publish(Activity::Run {
        run,
        state: State::Running,
        message: None,
    });
    // The measurements are not lost with a failed write: they go to a file beside the
    // history, which `vlmctl runs import` loads.
    let mut history = history(app).spill_to(app.cfg.engine.state_dir().join("unrecorded-runs"));
    // Where the deployment is now, on the service's host (through a forward when that host is
    // another machine), as `vlmctl bench` places its targets.
    let job = BenchJob {
        plan,
        engine: &app.cfg.engine,
        docker_config: &vlmctl_lifecycle::hosts::docker_config_dir(),
        keys,
        sweep_rate: None,
        out: None,
        baseline: None,
        record: Record::Queued(run),
    };
    let progress = bench_progress(app, run);
    let stream = Stream::Bench { run };
    let mut sink = |e: Event| stream.publish(app, &e);
    let done =
        vlmctl_deploy::bench::bench(&job, &mut history, &progress, &mut sink, &app.shutdown).await;
    let fail = |message: String| {
        app.publish(Activity::Run {
            run,
            state: State::Failed,
            message: Some(app.cfg.secrets.scrub(&message).into_owned()),
        });
    };
    match done {
        // The caller marks the run interrupted once the queue has stopped.
        Err(vlmctl_deploy::DeployError::Interrupted { .. }) => {}
        Err(e) => fail(e.line_with_hint()),
        Ok(d) if !d.answered() => fail(d.why_not()),
        Ok(d) => match d.unrecorded {
            Some(why) => fail(why),
            None => app.publish(Activity::Run {
                run,
                state: State::Done,
                message: summary(&d),
            }),
        },
    }
}

/// What a finished run measured, in a few words: the first config's median, or the first
/// target's sweep verdict.
fn summary(d: &Benched) -> Option<String> {
    if d.sweep {
        return d
            .results
            .sweep
            .first()
            .map(vlmctl_bench::sweep::SweepResult::verdict_line);
    }
    d.results
        .targets
        .first()
        .and_then(|t| t.configs.first())
        .and_then(|c| {
            c.summary
                .wall_ms
                .as_ref()
                .map(|w| format!("config {}: p50 {:.1} ms", c.name, w.p50))
        })
}

/// Runs a job with a sink that publishes its lines; records it; publishes its end.
pub(crate) async fn job<F, T>(
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
    let stream = Stream::Job {
        action: action.clone(),
        deployment: deployment.to_owned(),
    };
    let mut sink = |e: Event| stream.publish(app, &e);
    let mut history = history(app);
    let (spec, lock) = hashes.unzip();
    let id = history.begin_job(kind, Some(deployment), spec, lock, &mut sink);
    let outcome = run(&mut sink).await;
    let (state, detail) = match &outcome {
        Ok(t) => (State::Done, t.detail()),
        // Stopped by the service's shutdown (and undone), as the CLI records a signal.
        Err(e) if app.shutdown.reason().is_some() => (State::Interrupted, e.clone()),
        Err(e) => (State::Failed, e.clone()),
    };
    history.finish_job(id, state, &detail, None, &mut sink);
    app.publish(Activity::JobDone {
        job: id,
        action,
        deployment: deployment.to_owned(),
        state,
        detail: app.cfg.secrets.scrub(&detail).into_owned(),
    });
}

/// What a finished job says it did.
pub(crate) trait JobOutcome {
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
            engine: &app.cfg.engine,
            sink,
            confirm: &mut NoOne,
            cancel: &app.shutdown,
        };
        provision::provision(&plan, &opts, &app.cfg.hub, ctx)
            .await
            .map_err(|e| e.line_with_hint())
    })
    .await;
}

async fn teardown(app: &Arc<App>, deployment: &str) {
    job(app, JobKind::Teardown, deployment, None, async |sink| {
        vlmctl_deploy::undo::teardown(&app.cfg.engine, deployment, false, sink, &app.shutdown)
            .await
            .map_err(|e| e.line_with_hint())
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
