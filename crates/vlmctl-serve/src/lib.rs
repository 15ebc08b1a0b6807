//! `vlmctl serve`: the benchmark service. One process on 127.0.0.1 that keeps the history
//! (`vlmctl-store`) and shows it: deployments (status, health, drift, open restore journals),
//! runs (filtered by deployment, host, config), one run's report, any two runs compared by the
//! runbook rule, and trends over time with relaunches marked, as server-rendered pages
//! ([`pages`], `maud`) and as the JSON API behind them ([`api`]).
//!
//! Actions (a bench run for a deployment, a relaunch, a teardown) go into one queue ([`queue`])
//! and run one at a time; what they do is published as [`Activity`] and streamed to the pages
//! with server-sent events. A run cut off by a shutdown is marked `interrupted`; one cut off by
//! kill -9 is marked so at the next start (the store's orphan rule).
//!
//! Bound to loopback it answers only requests whose `Host` is a loopback name (no DNS
//! rebinding) and takes actions only as JSON (no cross-site form posts); on another address it
//! needs an API key, sent as a bearer token or as a browser's Basic password ([`auth`]).

pub mod api;
pub mod auth;
mod error;
pub mod pages;
pub mod queue;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use vlmctl_deploy::events::Cancel;
use vlmctl_deploy::{Dirs, Plan};
use vlmctl_store::{Store, StoreError};
use vlmctl_weights::HubClient;

pub use error::{ApiError, ServeError};
pub use queue::Activity;

/// The smallest API key accepted for a non-loopback address: the one llama-server's keys are
/// held to.
pub use vlmctl_deploy::plan::MIN_API_KEY_LEN;

/// Everything `vlmctl serve` needs, checked by [`serve`] before it listens.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (127.0.0.1 unless an API key is given).
    pub bind: SocketAddr,
    /// Required off loopback.
    pub api_key: Option<String>,
    /// The history database.
    pub store: PathBuf,
    /// vlmctl's state dir (journals, records, locks).
    pub state: PathBuf,
    /// Deployment specs the service may relaunch and judges drift against.
    pub specs: Vec<PathBuf>,
    /// `weights.lock`.
    pub lock: PathBuf,
    /// Where models live.
    pub dirs: Dirs,
    /// For relaunches that must fetch weights.
    pub hub: HubClient,
    /// Bench plans offered for runs; the first is the default.
    pub plans: Vec<PathBuf>,
    /// The host name runs and jobs are recorded under.
    pub host: String,
    /// Removes secrets (the hub token, a mirror's password, API keys) from a text before it
    /// is stored or sent to a page: the front-end's own scrubber.
    pub scrub: fn(&str) -> String,
    /// Registers a secret read on the way (a bench target's API key) with that scrubber.
    pub secret: fn(&str),
}

/// How the service stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// The action in progress did not end within [`WORKER_GRACE`] of the stop: a relaunch may
    /// have been cut off in its undo (`vlmctl restore` finishes it from its journal).
    pub worker_cut_off: bool,
}

/// How long a stop waits for open requests (a page, an event stream) before closing them.
pub const REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a stop waits for the action in progress to end (a relaunch to undo itself).
pub const WORKER_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// What every handler shares.
pub struct App {
    cfg: Config,
    /// The one writer (SQLite allows one at a time; ours take turns here, other processes'
    /// through the busy timeout).
    store: Arc<Mutex<Store>>,
    /// Pages read through their own connection, so that a write waiting for another process's
    /// transaction does not hold them up (WAL readers never wait for a writer).
    reader: Arc<Mutex<Store>>,
    activity: broadcast::Sender<Activity>,
    queue: queue::Queue,
    shutdown: Cancel,
}

impl App {
    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Runs `f` on the writing connection on a blocking thread (a write may wait for another
    /// vlmctl's transaction for the store's busy timeout; the async threads must not).
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        on(&self.store, f).await
    }

    /// Runs `f` on the reading connection on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        on(&self.reader, f).await
    }

    /// The spec file for a deployment, among the configured ones: its plan, or why not.
    pub fn plan_for(&self, deployment: &str) -> Option<Result<Plan, String>> {
        self.cfg.specs.iter().find_map(|p| {
            let spec = vlmctl_deploy::plan::load_spec(Some(p)).ok()?;
            (spec.name == deployment).then(|| {
                Plan::load(Some(p), &self.cfg.lock, &self.cfg.dirs)
                    .map_err(|e| vlmctl_lifecycle::error_chain(&e))
            })
        })
    }

    /// The plan file a request names (a file name or path among the configured ones), or the
    /// first configured one.
    pub fn bench_plan(&self, name: Option<&str>) -> Result<&Path, ApiError> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return self.cfg.plans.first().map(PathBuf::as_path).ok_or_else(|| {
                ApiError::bad_request(
                    "no bench plan is configured: start vlmctl serve with --plan FILE",
                )
            });
        };
        self.cfg
            .plans
            .iter()
            .find(|p| p.as_os_str() == name || p.file_name().is_some_and(|f| f == name))
            .map(PathBuf::as_path)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "plan {name:?} is not one this service offers ({}); start vlmctl serve \
                     with --plan {name} to offer it",
                    self.cfg
                        .plans
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

async fn on<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        // A panic while holding the lock leaves the connection as SQLite left it, which is
        // consistent: keep using it.
        let mut s = store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s)
    })
    .await
    .map_err(|e| ApiError::internal(format!("database task failed: {e}")))?
    .map_err(ApiError::from)
}

/// Checks `cfg`, opens the store (marking runs of dead processes interrupted), listens, and
/// serves until `shutdown` is cancelled (the CLI cancels it on SIGINT, SIGTERM, SIGHUP). On the
/// way out open requests get [`REQUEST_GRACE`], the queue's current action [`WORKER_GRACE`] to
/// stop (a relaunch undoes what it did), and this process's unfinished runs are marked
/// interrupted. `ready` gets the bound address.
pub async fn serve(
    cfg: Config,
    shutdown: Cancel,
    ready: impl FnOnce(SocketAddr),
) -> Result<Stopped, ServeError> {
    auth::check_exposure(cfg.bind, cfg.api_key.as_deref())?;
    let store_path = cfg.store.clone();
    let (store, reader) = tokio::task::spawn_blocking(move || {
        Ok::<_, StoreError>((Store::open(&store_path)?, Store::open(&store_path)?))
    })
    .await
    .map_err(|e| ServeError::Task(e.to_string()))??;
    let listener = tokio::net::TcpListener::bind(cfg.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: cfg.bind,
        source,
    })?;
    let (activity, _) = broadcast::channel(1024);
    let (queue, rx) = queue::Queue::new();
    let app = Arc::new(App {
        cfg,
        store: Arc::new(Mutex::new(store)),
        reader: Arc::new(Mutex::new(reader)),
        activity,
        queue,
        shutdown: shutdown.clone(),
    });
    let worker = queue::start(Arc::clone(&app), rx).map_err(|e| ServeError::Task(e.to_string()))?;
    tokio::spawn(watch_orphans(Arc::clone(&app)));
    let router = api::router(Arc::clone(&app))
        .merge(pages::router(Arc::clone(&app)))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            auth::guard,
        ));
    ready(addr);
    let stop = shutdown.clone();
    let served = axum::serve(listener, router).with_graceful_shutdown(async move {
        stop.cancelled().await;
    });
    // Open requests get their grace; then the server is dropped with them.
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(REQUEST_GRACE).await;
    };
    let served = tokio::select! {
        r = served => r,
        () = grace => Ok(()),
    };
    // The worker sees the same cancel: a relaunch undoes itself, a bench run stops.
    let why = shutdown
        .reason()
        .unwrap_or_else(|| "vlmctl serve stopped".to_owned());
    let worker_cut_off = tokio::time::timeout(WORKER_GRACE, worker).await.is_err();
    let msg = format!("vlmctl serve stopped during the run ({why})");
    app.db(move |s| s.interrupt_own(&msg)).await.ok();
    served.map_err(|source| ServeError::Bind { addr, source })?;
    Ok(Stopped { worker_cut_off })
}

/// How often the service looks for runs and jobs whose process died (a `vlmctl bench` killed
/// while the service is up), so that its pages do not show them running for ever.
pub const ORPHAN_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

async fn watch_orphans(app: Arc<App>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(ORPHAN_CHECK) => {}
            _ = app.shutdown.cancelled() => return,
        }
        if let Err(e) = app.db(Store::mark_orphans).await {
            tracing::warn!("looking for interrupted runs: {}", e.message);
        }
    }
}
