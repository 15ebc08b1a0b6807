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

mod activity;
pub mod api;
mod app;
pub mod auth;
mod error;
pub mod pages;
pub mod queue;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use vlmctl_deploy::events::Cancel;
use vlmctl_store::{Store, StoreError};

pub use app::{
    App, Config, Limits, READERS, RENDER_SLOTS, RENDER_WAIT, REQUEST_GRACE, Stopped, WORKER_GRACE,
};
pub use error::{ApiError, ServeError};
pub use queue::Activity;

/// The smallest API key accepted for a non-loopback address: the one llama-server's keys are
/// held to.
pub use vlmctl_deploy::plan::MIN_API_KEY_LEN;

/// A connection whose writes may stall (the socket takes no byte) for `limit` at most: the
/// next write after that fails (`TimedOut`) and hyper closes the connection. Hand-written:
/// hyper has no write timeout, and tokio-io-timeout's does the same over a crate more.
struct StallLimited<S> {
    inner: S,
    limit: std::time::Duration,
    /// Armed when a write first finds the socket full; disarmed when one goes through.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallLimited<S> {
    fn new(inner: S, limit: std::time::Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After a write's `poll`: `Pending` arms (or checks) the deadline, anything else disarms.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if sleep.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing of the answer for {} s",
                    limit.as_secs()
                ),
            )));
        }
        std::task::Poll::Pending
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StallLimited<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StallLimited<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }
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
    let (store, readers) = tokio::task::spawn_blocking(move || {
        let readers = (0..READERS)
            .map(|_| Store::open(&store_path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, StoreError>((Store::open(&store_path)?, readers))
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
    // The service's own pool on the configured engine's host: its link notices (a forward
    // that ended, reopened, lost) join the events of the action that runs.
    let (sessions, notices) = vlmctl_lifecycle::hosts::Sessions::with_notices();
    let mut cfg = cfg;
    cfg.engine = vlmctl_lifecycle::Engine::new(
        cfg.engine.host().clone(),
        cfg.engine.base_state_dir(),
        sessions.clone(),
    );
    let app = Arc::new(App {
        cfg,
        store: Arc::new(Mutex::new(store)),
        readers: readers.into(),
        activity,
        queue,
        shutdown: shutdown.clone(),
        renders: Arc::new(tokio::sync::Semaphore::new(RENDER_SLOTS)),
    });
    let worker =
        queue::start(Arc::clone(&app), rx, notices).map_err(|e| ServeError::Task(e.to_string()))?;
    tokio::spawn(watch_orphans(Arc::clone(&app)));
    let router = router(&app);
    ready(addr);
    let served = accept(listener, router, app.cfg.limits, shutdown.clone());
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
    // What the pool handed out: helper containers first, then the forwards.
    sessions.close().await;
    served.map_err(|source| ServeError::Bind { addr, source })?;
    Ok(Stopped { worker_cut_off })
}

/// Every route (the API and the pages) behind the guard ([`auth::guard`]).
fn router(app: &Arc<App>) -> axum::Router {
    api::router(Arc::clone(app))
        .merge(pages::router(Arc::clone(app)))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(app),
            auth::guard,
        ))
}

/// Serves connections from `listener` until `shutdown`, then waits for the open ones to end
/// (each is told to close after the response in progress). Hand-written around hyper rather
/// than `axum::serve`, which has neither a header-read timeout nor a connection limit.
async fn accept(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: Cancel,
) -> std::io::Result<()> {
    let max = limits.max_connections.max(1);
    let open = Arc::new(tokio::sync::Semaphore::new(max));
    // Connections over the limit are answered 503 by a task each; at most this many at once
    // (more are closed without an answer).
    let refusing = Arc::new(tokio::sync::Semaphore::new(REFUSING));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors (EMFILE) and the like: try again shortly, as
                    // `axum::serve` does, rather than spin or stop serving.
                    tracing::warn!("vlmctl serve: accepting a connection: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_millis(100)) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let io =
            hyper_util::rt::TokioIo::new(StallLimited::new(stream, limits.write_stall_timeout));
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            if let Ok(refuser) = Arc::clone(&refusing).try_acquire_owned() {
                let mut http = http.clone();
                http.header_read_timeout(REFUSE_WITHIN);
                tokio::spawn(async move {
                    let _refuser = refuser;
                    let busy = hyper::service::service_fn(move |_| async move {
                        Ok::<_, std::convert::Infallible>(over_limit(max))
                    });
                    let conn = http.keep_alive(false).serve_connection(io, busy);
                    let _ = tokio::time::timeout(REFUSE_WITHIN, conn).await;
                });
            }
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = http.serve_connection(io, service);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r { tracing::debug!("vlmctl serve: connection: {e}"); }
                    return;
                }
                _ = stop.cancelled() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    // Every connection has ended when every permit is back.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = open.acquire_many(all).await;
    Ok(())
}

/// At most this many connections over the limit are being answered 503 at once.
const REFUSING: usize = 64;

/// A connection over the limit must send its headers within this, and gets its 503 then.
const REFUSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The answer to a connection over [`Limits::max_connections`].
fn over_limit(max: usize) -> axum::http::Response<axum::body::Body> {
    use axum::response::IntoResponse as _;
    ApiError {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        message: format!("vlmctl serve is serving {max} connections, its limit"),
        hint: Some("try again shortly; close connections you keep open".to_owned()),
    }
    .into_response()
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

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    use vlmctl_base::redact::Secrets;
    use vlmctl_deploy::Dirs;
    use vlmctl_weights::HubClient;

    /// While set, every page drawn by [`App::cpu`] never finishes (a chart that never returns,
    /// as plotters did with an infinite range).
    static HANG: AtomicBool = AtomicBool::new(false);
    /// How many drawings have started.
    static ENTERED: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn hook() {
        ENTERED.fetch_add(1, Ordering::SeqCst);
        while HANG.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_secs(1));
        }
    }

    pub(crate) fn config(tmp: &Path, limits: Limits) -> Config {
        Config {
            bind: "127.0.0.1:0".parse().expect("addr"),
            api_key: None,
            store: tmp.join("history.sqlite"),
            engine: vlmctl_lifecycle::Engine::local(&tmp.join("state")),
            specs: Vec::new(),
            lock: tmp.join("weights.lock"),
            dirs: Dirs {
                dir: None,
                models_root: tmp.join("models"),
            },
            hub: HubClient::new("http://127.0.0.1:9", None, tmp.join("hub")).expect("hub"),
            plans: Vec::new(),
            host: "test".to_owned(),
            secrets: Secrets::new(),
            limits,
        }
    }

    /// The service on a thread with a current-thread runtime, as the CLI runs it (and shut
    /// down as the CLI does: blocking tasks are not waited for).
    struct Running {
        addr: SocketAddr,
        stop: Cancel,
        thread: std::thread::JoinHandle<Result<Stopped, ServeError>>,
        _tmp: tempfile::TempDir,
    }

    fn start(limits: Limits) -> Running {
        let tmp = tempfile::tempdir().expect("tmp");
        let cfg = config(tmp.path(), limits);
        let stop = Cancel::new();
        let cancel = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let r = rt.block_on(serve(cfg, cancel, move |a| {
                let _ = tx.send(a);
            }));
            rt.shutdown_timeout(Duration::from_millis(200));
            r
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the service listens");
        Running {
            addr,
            stop,
            thread,
            _tmp: tmp,
        }
    }

    /// One request, `Connection: close`; the status and the whole answer.
    fn request(addr: SocketAddr, head: &str, wait: Duration) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(wait))?;
        s.write_all(head.as_bytes())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((status, answer))
    }

    fn get(addr: SocketAddr, path: &str, wait: Duration) -> std::io::Result<(u16, String)> {
        request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
            wait,
        )
    }

    fn wait_until(deadline: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let end = Instant::now() + deadline;
        while !done() {
            assert!(Instant::now() < end, "{what}: not within {deadline:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_page_that_never_finishes_drawing_holds_neither_other_pages_nor_the_stop() {
        let s = start(Limits::default());
        HANG.store(true, Ordering::SeqCst);
        let addr = s.addr;
        // Its answer never comes; the thread ends when the service closes the connection.
        std::thread::spawn(move || get(addr, "/trends", Duration::from_secs(120)));
        wait_until(Duration::from_secs(30), "the trend drawn", || {
            ENTERED.load(Ordering::SeqCst) > 0
        });
        let t = Instant::now();
        let (status, body) =
            get(addr, "/api/runs", Duration::from_secs(10)).expect("GET /api/runs");
        assert_eq!(status, 200, "{body}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let (status, _) = get(addr, "/runs", Duration::from_secs(10)).expect("GET /runs");
        assert_eq!(status, 200);
        // The stop: within the requests' grace, although the drawing never ends.
        let t = Instant::now();
        s.stop.cancel("test");
        let bound = REQUEST_GRACE + Duration::from_secs(5);
        wait_until(bound, "the service stopped", || s.thread.is_finished());
        let stopped = s.thread.join().expect("no panic").expect("stopped");
        assert!(!stopped.worker_cut_off);
        assert!(t.elapsed() < bound, "{:?}", t.elapsed());
        // The drawing thread may end now (no other test draws meanwhile).
        HANG.store(false, Ordering::SeqCst);
    }

    #[test]
    fn slow_clients_are_timed_out_and_connections_over_the_limit_refused_at_once() {
        let timeout = Duration::from_secs(4);
        let max = 8;
        let s = start(Limits {
            header_read_timeout: timeout,
            max_connections: max,
            ..Limits::default()
        });
        let half = |n: usize| -> Vec<TcpStream> {
            (0..n)
                .map(|_| {
                    let mut c = TcpStream::connect(s.addr).expect("connect");
                    c.write_all(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                        .expect("half a request");
                    c
                })
                .collect()
        };
        let started = Instant::now();
        let mut held = half(max - 1);
        // One place left: a normal client is answered at once.
        let t = Instant::now();
        let (status, body) = get(s.addr, "/api/runs", Duration::from_secs(10)).expect("GET");
        assert_eq!(status, 200, "{body}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        held.extend(half(1));
        // Over the limit: answered 503, in JSON, without waiting for a place.
        let t = Instant::now();
        let (status, body) = get(s.addr, "/api/runs", Duration::from_secs(10)).expect("GET");
        assert!(
            started.elapsed() < timeout,
            "the test was too slow to see the limit (the held connections timed out)"
        );
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("\"error\":") && body.contains("\"hint\":"),
            "{body}"
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // Each half-sent request is closed once its headers are late.
        for mut c in held {
            c.set_read_timeout(Some(timeout + Duration::from_secs(10)))
                .expect("timeout");
            // Closed by the service: the end of the stream (or a reset), not a read timeout.
            match c.read_to_end(&mut Vec::new()) {
                Ok(_) => {}
                Err(e) => assert!(
                    !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "still open after {:?}",
                    started.elapsed()
                ),
            }
        }
        assert!(
            started.elapsed() < timeout + Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        // And the places are free again.
        let (status, _) = get(s.addr, "/api/runs", Duration::from_secs(10)).expect("GET");
        assert_eq!(status, 200);
        s.stop.cancel("test");
        wait_until(REQUEST_GRACE + Duration::from_secs(5), "stopped", || {
            s.thread.is_finished()
        });
    }

    /// The re-test's drip: `Content-Length: 100000`, then a byte now and then, on 256
    /// connections. Each is answered 408 (JSON) once its body is late, and closed.
    #[test]
    fn a_body_that_drips_is_answered_408_and_closed() {
        let within = Duration::from_secs(1);
        let s = start(Limits {
            body_read_timeout: within,
            ..Limits::default()
        });
        let started = Instant::now();
        let mut c = TcpStream::connect(s.addr).expect("connect");
        c.write_all(
            b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\n\r\n{",
        )
        .expect("head");
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Drip one byte every 200 ms (a write may fail once the service has closed).
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no answer after {:?}",
                started.elapsed()
            );
            let _ = c.write_all(b" ");
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(json).expect(json);
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("did not arrive")),
            "{v}"
        );
        assert!(v["hint"].is_string(), "{v}");
        assert!(
            started.elapsed() < within + Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        s.stop.cancel("test");
    }

    /// A client that never reads its answer: the write stalls, and the connection (with the
    /// answer's memory) is given up after the limit.
    #[test]
    fn a_connection_whose_answer_is_never_read_is_closed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use tokio::io::AsyncWriteExt as _;
            // The other end never reads: 64 KiB fit, then every write waits.
            let (near, _far) = tokio::io::duplex(64 << 10);
            let mut io = StallLimited::new(near, Duration::from_millis(300));
            let big = vec![0u8; 1 << 20];
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(10), io.write_all(&big)).await;
            let e = r
                .expect("the stalled write gave up within 10 s")
                .expect_err("stalled");
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
            assert!(
                t.elapsed() >= Duration::from_millis(300),
                "{:?}",
                t.elapsed()
            );
            // A write that goes through disarms it: a slow reader is not cut off.
            let (near, mut far) = tokio::io::duplex(1024);
            let mut io = StallLimited::new(near, Duration::from_millis(300));
            let reader = tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut got = 0;
                let mut buf = [0u8; 256];
                while got < 8192 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    got += far.read(&mut buf).await.expect("read");
                }
            });
            io.write_all(&[1u8; 8192])
                .await
                .expect("a slow reader is served");
            reader.await.expect("reader");
        });
    }

    #[test]
    fn an_oversized_body_is_refused_in_json() {
        let s = start(Limits::default());
        let body = format!("{{\"deployment\":\"{}\"}}", "x".repeat(3 << 20));
        let head = format!(
            "POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, answer) = request(s.addr, &head, Duration::from_secs(30)).expect("POST");
        assert_eq!(status, 413, "{answer}");
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(json).expect(json);
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("body")),
            "{v}"
        );
        assert!(v["hint"].is_string(), "{v}");
        s.stop.cancel("test");
    }

    pub(crate) fn test_app(
        tmp: &Path,
    ) -> (App, tokio::sync::mpsc::UnboundedReceiver<queue::Action>) {
        app_with(config(tmp, Limits::default()))
    }

    /// The service's state for `cfg`, its queue's worker not started (the receiver is its
    /// side of the queue).
    pub(crate) fn app_with(
        cfg: Config,
    ) -> (App, tokio::sync::mpsc::UnboundedReceiver<queue::Action>) {
        let store = Store::open(&cfg.store).expect("store");
        let readers = vec![Mutex::new(Store::open(&cfg.store).expect("store"))];
        let (queue, rx) = queue::Queue::new();
        let app = App {
            cfg,
            store: Arc::new(Mutex::new(store)),
            readers: readers.into(),
            activity: broadcast::channel(64).0,
            queue,
            shutdown: Cancel::new(),
            renders: Arc::new(tokio::sync::Semaphore::new(RENDER_SLOTS)),
        };
        (app, rx)
    }

    /// The re-test's race: 130 bench requests at once against a queue with room for fewer
    /// left 10 refused ones in the history as `failed`. Now a refused request records nothing.
    #[test]
    fn requests_the_full_queue_refuses_leave_no_run_behind() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (app, _rx) = test_app(tmp.path());
        let app = Arc::new(app);
        for _ in 0..queue::MAX_QUEUED - 20 {
            app.enqueue(queue::Action::Teardown {
                deployment: "d".to_owned(),
            })
            .expect("room");
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime");
        let answers: Vec<Result<(i64, usize), ApiError>> = rt.block_on(async {
            let tasks: Vec<_> = (0..60)
                .map(|_| {
                    let app = Arc::clone(&app);
                    tokio::spawn(async move {
                        let new = vlmctl_store::NewRun {
                            source: vlmctl_store::Source::Serve,
                            host: "local".to_owned(),
                            plan: "plan.toml".to_owned(),
                            plan_json: serde_json::json!({}),
                            targets: Vec::new(),
                            state: vlmctl_store::State::Queued,
                        };
                        app.record_and_queue(new, |_| queue::Action::Teardown {
                            deployment: "d".to_owned(),
                        })
                        .await
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("task"));
            }
            out
        });
        let queued = answers.iter().filter(|a| a.is_ok()).count();
        let refused = answers
            .iter()
            .filter(|a| matches!(a, Err(e) if e.status.as_u16() == 429))
            .count();
        assert_eq!((queued, refused), (20, 40));
        let runs = Store::open(&tmp.path().join("history.sqlite"))
            .and_then(|s| s.runs(&vlmctl_store::RunFilter::default()))
            .expect("runs");
        let states: Vec<&str> = runs.iter().map(|r| r.state.as_str()).collect();
        assert_eq!(runs.len(), 20, "{states:?}");
        assert!(states.iter().all(|s| *s == "queued"), "{states:?}");
        assert_eq!(app.queue.waiting(), queue::MAX_QUEUED);
    }

    #[test]
    fn the_queue_takes_a_bounded_number_of_actions_then_answers_429() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (app, _rx) = test_app(tmp.path());
        let teardown = || queue::Action::Teardown {
            deployment: "d".to_owned(),
        };
        for i in 0..queue::MAX_QUEUED {
            assert_eq!(app.enqueue(teardown()).expect("room"), i);
        }
        let e = app.enqueue(teardown()).expect_err("full");
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.hint.is_some());
        assert_eq!(app.queue_room().expect_err("full").status.as_u16(), 429);
        assert_eq!(app.queue.waiting(), queue::MAX_QUEUED);
    }
}
