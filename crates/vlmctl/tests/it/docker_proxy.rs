//! A fault injector between vlmctl and the real dockerd: a unix socket that forwards bytes both
//! ways to the daemon the tests use (`DOCKER_HOST`'s socket, else `/var/run/docker.sock`; vlmctl
//! reaches the proxy through its own `DOCKER_HOST`), and can
//!
//! - hold the first request whose bytes contain a pattern (say `/start HTTP/1.1`) until the test
//!   releases it, which puts vlmctl at a known await point inside a Docker call, and
//! - fail the first request whose bytes contain a pattern: it never reaches the daemon, and the
//!   client gets a 500 (a daemon error at a known call), and
//! - vanish: close every connection and the socket, as a daemon that dies or is restarted does
//!   (clients see the connection reset and then "no such file" on connect).
//!
//! It forwards raw bytes and never parses HTTP: bollard writes each request head in one write,
//! so a pattern in the request line is seen in one chunk.

use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The daemon's socket: the one the docker CLI in these tests talks to, as
/// [`crate::common::vlmctl`] leaves `DOCKER_HOST` for both to follow.
fn dockerd() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => {
            PathBuf::from(host.strip_prefix("unix://").unwrap_or_else(|| {
                panic!("the fault proxy forwards to a unix socket, not DOCKER_HOST={host}")
            }))
        }
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

#[derive(Default)]
struct Hold {
    pattern: Option<String>,
    held: bool,
    released: bool,
    /// Answer the next request containing this with a 500, without forwarding it.
    fail: Option<String>,
}

#[derive(Default)]
struct Shared {
    hold: Mutex<Hold>,
    changed: Condvar,
    gone: AtomicBool,
    streams: Mutex<Vec<UnixStream>>,
}

/// The proxy; vanishes on drop too.
pub struct DockerProxy {
    path: PathBuf,
    shared: Arc<Shared>,
}

impl DockerProxy {
    /// Listens on `dir/docker.sock`.
    pub fn start(dir: &Path) -> Self {
        let path = dir.join("docker.sock");
        let listener = UnixListener::bind(&path).expect("bind the proxy socket");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let dockerd = dockerd();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.gone.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { break };
                let Ok(daemon) = UnixStream::connect(&dockerd) else {
                    continue;
                };
                {
                    let mut streams = s.streams.lock().unwrap();
                    streams.extend(client.try_clone().ok());
                    streams.extend(daemon.try_clone().ok());
                }
                let (c2, d2) = (client.try_clone().unwrap(), daemon.try_clone().unwrap());
                let s1 = s.clone();
                std::thread::spawn(move || pump(client, daemon, Some(&s1)));
                std::thread::spawn(move || pump(d2, c2, None));
            }
        });
        Self { path, shared }
    }

    /// `DOCKER_HOST` for vlmctl.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Holds the next request containing `pattern`.
    pub fn hold(&self, pattern: &str) {
        let mut h = self.shared.hold.lock().unwrap();
        *h = Hold {
            pattern: Some(pattern.to_owned()),
            ..Hold::default()
        };
    }

    /// Answers the next request containing `pattern` with a 500 (never forwarded).
    pub fn fail(&self, pattern: &str) {
        self.shared.hold.lock().unwrap().fail = Some(pattern.to_owned());
    }

    /// Waits (up to `within`) until a request is being held.
    pub fn wait_held(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut h = self.shared.hold.lock().unwrap();
        while !h.held {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            h = self.shared.changed.wait_timeout(h, left).unwrap().0;
        }
        true
    }

    /// Lets the held request through.
    pub fn release(&self) {
        self.shared.hold.lock().unwrap().released = true;
        self.shared.changed.notify_all();
    }

    /// The daemon goes away: every connection is cut, the socket removed.
    pub fn vanish(&self) {
        self.shared.gone.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
        for s in self.shared.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.shared.changed.notify_all();
        // Unblock the accept loop so it sees `gone`.
        let _ = UnixStream::connect(&self.path);
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.vanish();
    }
}

/// Copies `from` to `to`; client-to-daemon copies (`shared` given) may hold a chunk.
fn pump(mut from: UnixStream, mut to: UnixStream, shared: Option<&Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(s) = shared {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let mut h = s.hold.lock().unwrap();
            if h.fail.as_deref().is_some_and(|p| text.contains(p)) {
                h.fail = None;
                // The daemon never sees it, so the responses on this connection stay in order.
                let body = r#"{"message":"injected fault"}"#;
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if from
                    .try_clone()
                    .and_then(|mut c| c.write_all(answer.as_bytes()))
                    .is_err()
                {
                    break;
                }
                continue;
            }
            if h.pattern.as_deref().is_some_and(|p| text.contains(p)) {
                h.pattern = None;
                h.held = true;
                s.changed.notify_all();
                while !h.released && !s.gone.load(Ordering::SeqCst) {
                    h = s.changed.wait(h).unwrap();
                }
            }
            if s.gone.load(Ordering::SeqCst) {
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
