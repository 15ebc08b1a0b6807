//! What the service's queue carries and says: the [`Action`]s it runs, the [`Activity`] it
//! publishes to pages, the sending side ([`Queue`]) and a [`Place`] in it. Plain types at the
//! bottom of the crate (they import nothing of it), so that the app state can hold the queue and
//! the queue's worker can use the app state without a circle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;
use vlmctl_bench::plan::LoadedPlan;
use vlmctl_store::State;

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
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Bench { .. } => "bench",
            Self::Relaunch { .. } => "relaunch",
            Self::Teardown { .. } => "teardown",
        }
    }
    pub(crate) fn deployment(&self) -> &str {
        match self {
            Self::Bench { deployment, .. }
            | Self::Relaunch { deployment }
            | Self::Teardown { deployment } => deployment,
        }
    }
}

/// The sending side.
pub struct Queue {
    pub(crate) tx: mpsc::UnboundedSender<Action>,
    pub(crate) waiting: Arc<AtomicUsize>,
    pub(crate) busy: std::sync::atomic::AtomicBool,
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
    pub(crate) waiting: Option<Arc<AtomicUsize>>,
    /// Actions waiting before this one took its place.
    pub(crate) before: usize,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(w) = self.waiting.take() {
            w.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
