//! The service's state: its [`Config`] and [`Limits`], the [`App`] every handler shares (the
//! history's one writer, the queue's sending side, the activity broadcast, the configured specs
//! parsed for a request), and how the service [`Stopped`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use vlmctl_base::redact::Secrets;
use vlmctl_deploy::events::Cancel;
use vlmctl_deploy::{DeploymentPlan, Dirs};
use vlmctl_store::{Store, StoreError};
use vlmctl_weights::HubClient;

use crate::ApiError;
use crate::activity::{Activity, Queue};

/// Everything `vlmctl serve` needs, checked by [`crate::serve`] before it listens.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (127.0.0.1 unless an API key is given).
    pub bind: SocketAddr,
    /// Required off loopback.
    pub api_key: Option<String>,
    /// The history database.
    pub store: PathBuf,
    /// The engine the service's actions change; its state dir holds the journals, records and
    /// locks. [`crate::serve`] reaches its host through an SSH pool of its own (whatever pool
    /// this one has is not used), so that the forwards' link notices join the events of the
    /// action that runs, and closes that pool when it stops.
    pub engine: vlmctl_lifecycle::Engine,
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
    /// The service's secrets (the hub token, a mirror's password, API keys): every text it
    /// stores or sends to a page is scrubbed with them, and a secret it reads on the way (a
    /// bench target's API key) is added to them.
    pub secrets: Secrets,
    /// How long a client may take over its headers, how many connections are served at once.
    pub limits: Limits,
}

/// What one client may hold of the service.
///
/// A connection must send its request headers within `header_read_timeout` of the moment the
/// service starts reading them (its first request, or the next one on a kept-alive
/// connection), or it is closed: a client that never finishes (or never starts) its headers
/// holds a connection for that long at most. Off loopback the API key is checked when the
/// headers have arrived, so an unauthenticated client is bounded by the same timeout.
/// A request's whole body must arrive within `body_read_timeout` of the handler asking for it,
/// or the request is answered 408 (JSON) and the connection closed: a client that drips its
/// body a byte at a time holds a connection that long at most. A connection whose answer
/// makes no progress (the client reads none of it: not one byte is taken by the socket) for
/// `write_stall_timeout` is closed, and the answer's memory freed with it.
/// At most `max_connections` connections are served at once; one more is answered 503 (JSON)
/// and closed at once, so it never waits behind the ones held.
///
/// There is no share per client address: on loopback (no key needed) every client has the
/// same address, so a share would starve the browser as much as the one holding connections;
/// off loopback only a client with the API key gets past its headers. The timeouts bound how
/// long anyone holds a place instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// See above.
    pub header_read_timeout: std::time::Duration,
    /// See above.
    pub body_read_timeout: std::time::Duration,
    /// See above.
    pub write_stall_timeout: std::time::Duration,
    /// See above.
    pub max_connections: usize,
}

/// 10 s for headers and for a body (a browser sends them at once, and an action's body is a
/// small JSON object), 30 s for an answer that no byte of is read, 256 connections (a page
/// opens a handful; well under the usual 1024 descriptors).
impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: std::time::Duration::from_secs(10),
            body_read_timeout: std::time::Duration::from_secs(10),
            write_stall_timeout: std::time::Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// How many pages are drawn (a report's charts, a trend, a comparison) at once; more wait
/// [`RENDER_WAIT`] for a turn.
pub const RENDER_SLOTS: usize = 4;

/// Reading connections: one for each page drawn at once, and two for every other page.
pub const READERS: usize = RENDER_SLOTS + 2;

/// How long a page waits for a turn to be drawn before it is answered 503.
pub const RENDER_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

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
    pub(crate) cfg: Config,
    /// The one writer (SQLite allows one at a time; ours take turns here, other processes'
    /// through the busy timeout).
    pub(crate) store: Arc<Mutex<Store>>,
    /// Pages read through their own connection, so that a write waiting for another process's
    /// transaction does not hold them up (WAL readers never wait for a writer); [`READERS`] of
    /// them, so that a page reading a large run does not hold up the others.
    pub(crate) readers: Arc<[Mutex<Store>]>,
    pub(crate) activity: broadcast::Sender<Activity>,
    pub(crate) queue: Queue,
    pub(crate) shutdown: Cancel,
    /// Turns at drawing pages ([`RENDER_SLOTS`]).
    pub(crate) renders: Arc<tokio::sync::Semaphore>,
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
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            // The first free connection; when all are busy, the first one's turn.
            let mut s = readers
                .iter()
                .find_map(|r| r.try_lock().ok())
                .or_else(|| {
                    readers
                        .first()
                        .map(|r| r.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
                })
                .ok_or_else(|| ApiError::internal("no database connection"))?;
            f(&mut s).map_err(ApiError::from)
        })
        .await
        .map_err(|e| ApiError::internal(format!("database task failed: {e}")))?
    }

    /// Heavy work on a run's results: waits for a turn ([`RENDER_SLOTS`]), reads with `read`,
    /// then runs `work` as [`App::cpu`] does. Taking the turn first keeps the readers of large
    /// runs to [`RENDER_SLOTS`], so that a reading connection stays free for the other pages.
    pub async fn heavy<R: Send + 'static, T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
        work: impl FnOnce(R) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let turn = self.turn().await?;
        let r = self.read(read).await?;
        self.on_turn(turn, move || work(r)).await?
    }

    /// Runs CPU-bound work (drawing a report's charts, a trend, comparing two runs) on a
    /// blocking thread, at most [`RENDER_SLOTS`] at once: the thread that answers the other
    /// requests and the signals is never held by it, however long it takes. A page that finds
    /// no turn within [`RENDER_WAIT`] is answered 503. A stop does not wait for such work: the
    /// process ends with it (the CLI's runtime is shut down with a short timeout).
    pub async fn cpu<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let turn = self.turn().await?;
        self.on_turn(turn, f).await
    }

    /// A turn at heavy work, within [`RENDER_WAIT`].
    async fn turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        tokio::time::timeout(RENDER_WAIT, Arc::clone(&self.renders).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| ApiError {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "{RENDER_SLOTS} pages are being drawn and none finished within {} s",
                    RENDER_WAIT.as_secs()
                ),
                hint: Some(
                    "try again in a minute; a report of a very large run takes a while".to_owned(),
                ),
            })
    }

    /// `f` on a blocking thread, holding `turn` until it returns.
    async fn on_turn<T: Send + 'static>(
        &self,
        turn: tokio::sync::OwnedSemaphorePermit,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            #[cfg(test)]
            crate::tests::hook();
            f()
        })
        .await
        .map_err(|e| ApiError::internal(format!("drawing the page failed: {e}")))
    }

    /// The spec file for a deployment, among the configured ones: its plan, or why not. Each
    /// spec is parsed once.
    pub fn plan_for(&self, deployment: &str) -> Option<Result<DeploymentPlan, String>> {
        self.cfg.specs.iter().find_map(|p| {
            let spec = vlmctl_deploy::plan::load_spec(Some(p)).ok()?;
            (spec.name == deployment).then(|| self.plan_of(spec, p))
        })
    }

    /// Every configured spec's deployment name and plan (or why not), each spec parsed once:
    /// for a page that shows every deployment (one parse per spec per request, not one per
    /// spec per row).
    pub fn plans(&self) -> Vec<(String, Result<DeploymentPlan, String>)> {
        self.cfg
            .specs
            .iter()
            .filter_map(|p| {
                let spec = vlmctl_deploy::plan::load_spec(Some(p)).ok()?;
                Some((spec.name.clone(), self.plan_of(spec, p)))
            })
            .collect()
    }

    fn plan_of(
        &self,
        spec: vlmctl_lifecycle::spec::Spec,
        path: &Path,
    ) -> Result<DeploymentPlan, String> {
        DeploymentPlan::for_spec(spec, Some(path), &self.cfg.lock, &self.cfg.dirs)
            .map_err(|e| vlmctl_base::chain::one_line(&e))
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
