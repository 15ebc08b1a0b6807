//! An in-process fake Hugging Face hub on 127.0.0.1, for tests (feature `fake-hub`).
//!
//! The real hub cannot be reached from our test machines, so this speaks the same HTTP as the
//! parts of huggingface.co that `hf-hub` and Python's `huggingface_hub` use, as observed on the
//! real service:
//! - `GET|HEAD /{org}/{name}/resolve/{revision}/{file}`: for LFS files a `302` to an absolute,
//!   CDN-like URL, carrying `x-repo-commit` (the commit the revision resolved to),
//!   `x-linked-etag` (the LFS sha256, quoted), `x-linked-size` and `etag`; a `Range` header on
//!   this request is ignored, as the hub does.
//! - `GET|HEAD /cdn/...` on a second listener (another origin, as the real CDN is another host;
//!   clients follow only same-origin redirects automatically): the bytes, `200` or `206` with `Content-Range: bytes a-b/total`, with
//!   the end clamped to the file (hf-hub 0.4 asks for one byte past the end on its last chunk).
//! - `GET /api/models/{org}/{name}[/revision/{rev}]`: the model info JSON (`id`, `sha`,
//!   `siblings`).
//! - Errors as the hub sends them: an unknown repo is `401` with `X-Error-Code: RepoNotFound`
//!   when no token is sent (the hub does not reveal whether a private repo exists) and `404` with
//!   one; a gated repo without the right token is `401` `GatedRepo`; unknown revision `404`
//!   `RevisionNotFound`; unknown file `404` `EntryNotFound`.
//!
//! Scripted faults ([`Fault`]) make the transfer fail the ways real transfers fail, and counters
//! ([`FakeHub::bytes_served`]) let tests prove what was (not) downloaded again.
#![expect(
    clippy::result_large_err,
    reason = "handler helpers return the ready error response; this is test support"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// One repository: a commit and its files. `main` resolves to `commit`.
#[derive(Clone, Debug)]
pub struct FakeRepo {
    /// `org/name`.
    pub id: String,
    /// 40 hex digits.
    pub commit: String,
    /// Token required to read it (a gated/private repo), if any.
    pub token: Option<String>,
    /// Path -> content.
    pub files: BTreeMap<String, Bytes>,
}

/// A failure the hub injects into what it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Serve the body up to this absolute byte offset of the file, then drop the connection.
    /// Applies once.
    DropAt(u64),
    /// Serve the body up to this offset, then stall without closing (for kill tests). Applies
    /// once.
    StallAt(u64),
    /// Serve content with one byte flipped in the middle (the headers stay right). Persistent.
    WrongBytes,
    /// Answer resolve and CDN requests with this status. Persistent.
    Status(u16),
    /// Answer resolve requests with these headers set (`Some`) or removed (`None`), as a broken
    /// or hostile hub would. Persistent.
    Headers(Vec<(String, Option<String>)>),
    /// Answer CDN requests with the right status and `Content-Range` (or this one instead,
    /// e.g. `bytes 0-4/5`) but a body that does not end (chunked, [`ENDLESS_BYTES`] of spaces
    /// before it stops). Persistent.
    Endless(Option<String>),
}

/// How much an "endless" body ([`Fault::Endless`], [`FakeHub::endless_model_info`]) serves
/// before it stops after all: far more than any client should read, little enough that a test
/// of a client that reads it all does not exhaust the machine.
pub const ENDLESS_BYTES: u64 = 256 << 20;

/// A body of [`ENDLESS_BYTES`] (beginning with `prefix`), counted in `served` as it goes.
fn endless_body(prefix: &'static [u8], state: Arc<HubState>) -> Body {
    let piece = Bytes::from(vec![b' '; 64 << 10]);
    let n = usize_of(ENDLESS_BYTES / (64 << 10));
    let stream = futures::stream::once(async move { Bytes::from_static(prefix) })
        .chain(futures::stream::iter(std::iter::repeat_n(piece, n)))
        .map(move |c| {
            state
                .bytes_served
                .fetch_add(c.len() as u64, Ordering::SeqCst);
            Ok::<_, std::io::Error>(c)
        });
    Body::from_stream(stream)
}

struct HubState {
    /// Origin of the CDN listener.
    cdn_base: String,
    repos: Mutex<Vec<FakeRepo>>,
    faults: Mutex<BTreeMap<String, Fault>>,
    bytes_served: AtomicU64,
    requests: Mutex<Vec<String>>,
    /// What model info answers as `sha` instead of the commit, if set.
    sha: Mutex<Option<String>>,
    /// Model info answers with a JSON body that does not end.
    endless_info: AtomicBool,
}

/// A running fake hub. Dropping it stops the server.
pub struct FakeHub {
    addr: SocketAddr,
    state: Arc<HubState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeHub {
    /// Starts a hub on 127.0.0.1 with an ephemeral port. Needs a tokio runtime.
    pub async fn start(repos: Vec<FakeRepo>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let cdn_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(HubState {
            cdn_base: format!("http://{}", cdn_listener.local_addr()?),
            repos: Mutex::new(repos),
            faults: Mutex::new(BTreeMap::new()),
            bytes_served: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            sha: Mutex::new(None),
            endless_info: AtomicBool::new(false),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let tasks = [listener, cdn_listener]
            .into_iter()
            .map(|l| {
                let app = app.clone();
                tokio::spawn(async move {
                    let _ = axum::serve(l, app).await;
                })
            })
            .collect();
        Ok(Self { addr, state, tasks })
    }

    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Injects `fault` for requests of `file` (any repo).
    pub fn set_fault(&self, file: &str, fault: Fault) {
        lock(&self.state.faults).insert(file.to_owned(), fault);
    }

    /// Model info answers `sha` with this instead of the commit (a broken or hostile hub).
    pub fn answer_sha(&self, sha: &str) {
        *lock(&self.state.sha) = Some(sha.to_owned());
    }

    /// Model info (`/api/models/...`) answers with a JSON body that does not end (a hostile
    /// hub), [`ENDLESS_BYTES`] long.
    pub fn endless_model_info(&self) {
        self.state.endless_info.store(true, Ordering::SeqCst);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Replaces a file's content in every repo that has it (upstream changed).
    pub fn replace_file(&self, file: &str, content: &Bytes) {
        for repo in lock(&self.state.repos).iter_mut() {
            if let Some(c) = repo.files.get_mut(file) {
                *c = content.clone();
            }
        }
    }

    /// A new commit on the repo's `main`: `main` resolves to `commit`, whose files are
    /// `files`. Unlike the hub, which keeps every commit, this fake keeps only the newest: the
    /// previous commit is no longer served.
    pub fn push_commit(&self, repo: &str, commit: &str, files: &BTreeMap<String, Bytes>) {
        for r in lock(&self.state.repos).iter_mut().filter(|r| r.id == repo) {
            commit.clone_into(&mut r.commit);
            r.files.clone_from(files);
        }
    }

    /// Body bytes served so far (CDN responses only).
    #[must_use]
    pub fn bytes_served(&self) -> u64 {
        self.state.bytes_served.load(Ordering::SeqCst)
    }

    /// `METHOD /path [bytes=a-b] [(token)]` of every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state.requests).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = (status, format!("{{\"error\":\"{message}\"}}")).into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        r.headers_mut().insert("x-error-code", v);
    }
    if let Ok(v) = HeaderValue::from_str(message) {
        r.headers_mut().insert("x-error-message", v);
    }
    r
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

async fn handle(State(state): State<Arc<HubState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let token = bearer(&headers);
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    lock(&state.requests).push(format!(
        "{method} {path}{range}{}",
        if token.is_some() { " (token)" } else { "" }
    ));
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "models", org, name, rest @ ..] => {
            let rev = match rest {
                [] => "main",
                ["revision", rev] => rev,
                _ => return StatusCode::NOT_FOUND.into_response(),
            };
            if state.endless_info.load(Ordering::SeqCst) {
                return Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(endless_body(b"{\"id\": \"", state.clone()))
                    .unwrap_or_default();
            }
            model_info(&state, &format!("{org}/{name}"), rev, token.as_deref())
        }
        ["cdn", commit, org, name, file @ ..] => cdn(
            &state,
            &method,
            &headers,
            &format!("{org}/{name}"),
            commit,
            &file.join("/"),
        ),
        [org, name, "resolve", rev, file @ ..] if !file.is_empty() => resolve(
            &state,
            &format!("{org}/{name}"),
            rev,
            &file.join("/"),
            token.as_deref(),
        ),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Finds the repo and checks access the way the hub does.
fn find_repo(state: &HubState, id: &str, token: Option<&str>) -> Result<FakeRepo, Response> {
    let repos = lock(&state.repos);
    let Some(repo) = repos.iter().find(|r| r.id == id) else {
        return Err(if token.is_some() {
            error(
                StatusCode::NOT_FOUND,
                "RepoNotFound",
                "Repository Not Found",
            )
        } else {
            error(
                StatusCode::UNAUTHORIZED,
                "RepoNotFound",
                "Repository Not Found for url. Please make sure you specified the correct repo id \
                 and repo type. If you are trying to access a private or gated repo, make sure \
                 you are authenticated.",
            )
        });
    };
    if let Some(want) = &repo.token
        && token != Some(want.as_str())
    {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "GatedRepo",
            "Access to model is restricted. You must have access to it and be authenticated to access it.",
        ));
    }
    Ok(repo.clone())
}

fn resolve_rev(repo: &FakeRepo, rev: &str) -> Result<(), Response> {
    if rev == "main" || rev == repo.commit {
        Ok(())
    } else {
        Err(error(
            StatusCode::NOT_FOUND,
            "RevisionNotFound",
            "Invalid rev id",
        ))
    }
}

fn model_info(state: &HubState, id: &str, rev: &str, token: Option<&str>) -> Response {
    let repo = match find_repo(state, id, token) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Err(e) = resolve_rev(&repo, rev) {
        return e;
    }
    let siblings: Vec<_> = repo
        .files
        .keys()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    axum::Json(serde_json::json!({
        "_id": format!("fake-{}", repo.id),
        "id": repo.id,
        "modelId": repo.id,
        "sha": lock(&state.sha).clone().unwrap_or(repo.commit),
        "private": false,
        "gated": repo.token.is_some(),
        "siblings": siblings,
    }))
    .into_response()
}

fn resolve(state: &HubState, id: &str, rev: &str, file: &str, token: Option<&str>) -> Response {
    if let Some(Fault::Status(code)) = lock(&state.faults).get(file) {
        let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, "FakeFault", "scripted failure");
    }
    let repo = match find_repo(state, id, token) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Err(e) = resolve_rev(&repo, rev) {
        return e;
    }
    let Some(content) = repo.files.get(file) else {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "Entry not found");
    };
    let sha = sha256_hex(content);
    let location = format!("{}/cdn/{}/{id}/{file}", state.cdn_base, repo.commit);
    let mut r = StatusCode::FOUND.into_response();
    let h = r.headers_mut();
    for (k, v) in [
        ("location", location),
        ("x-repo-commit", repo.commit.clone()),
        ("x-linked-etag", format!("\"{sha}\"")),
        ("x-linked-size", content.len().to_string()),
        // The git blob id of the LFS pointer, as the hub sends; not the content hash.
        ("etag", format!("\"{}\"", &sha256_hex(sha.as_bytes())[..40])),
        ("content-length", "0".to_owned()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    if let Some(Fault::Headers(set)) = lock(&state.faults).get(file) {
        for (k, v) in set {
            match v.as_deref().map(HeaderValue::from_str) {
                Some(Ok(v)) => {
                    if let Ok(k) = header::HeaderName::from_bytes(k.as_bytes()) {
                        h.insert(k, v);
                    }
                }
                Some(Err(_)) => {}
                None => {
                    h.remove(k.as_str());
                }
            }
        }
    }
    r
}

fn cdn(
    state: &Arc<HubState>,
    method: &Method,
    headers: &HeaderMap,
    id: &str,
    commit: &str,
    file: &str,
) -> Response {
    let fault = lock(&state.faults).get(file).cloned();
    if let Some(Fault::Status(code)) = fault {
        return StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    let content = {
        let repos = lock(&state.repos);
        let Some(c) = repos
            .iter()
            .find(|r| r.id == id && r.commit == commit)
            .and_then(|r| r.files.get(file))
        else {
            return StatusCode::NOT_FOUND.into_response();
        };
        c.clone()
    };
    let sha = sha256_hex(&content);
    let content = if fault == Some(Fault::WrongBytes) && !content.is_empty() {
        let mut v = content.to_vec();
        let mid = v.len() / 2;
        v[mid] ^= 0xFF;
        Bytes::from(v)
    } else {
        content
    };
    let total = content.len() as u64;
    let (status, start, end) = match parse_range(headers, total) {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e),
        None if headers.contains_key(header::RANGE) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        None => (StatusCode::OK, 0, total.saturating_sub(1)),
    };
    let len = if total == 0 { 0 } else { end - start + 1 };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{sha}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{total}"),
        );
    }
    if method == Method::HEAD || len == 0 {
        return builder.body(Body::empty()).unwrap_or_default();
    }
    if let Some(Fault::Endless(range)) = &fault {
        // No content-length: a chunked body that does not stop where Content-Range says.
        let mut r = builder
            .body(endless_body(b"", state.clone()))
            .unwrap_or_default();
        r.headers_mut().remove(header::CONTENT_LENGTH);
        if let Some(v) = range.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return r;
    }
    let slice = content.slice(usize_of(start)..usize_of(end + 1));
    // One-shot faults are consumed by the request that hits them.
    let cut = match fault {
        Some(Fault::DropAt(at) | Fault::StallAt(at)) if at >= start && at <= end => {
            lock(&state.faults).remove(file);
            Some((at - start, matches!(fault, Some(Fault::StallAt(_)))))
        }
        _ => None,
    };
    let state = state.clone();
    let body = futures::stream::iter(chunks(slice, cut.map(|(at, _)| at)))
        .map(move |c| {
            state
                .bytes_served
                .fetch_add(c.len() as u64, Ordering::SeqCst);
            Ok::<_, std::io::Error>(c)
        })
        .chain(futures::stream::once(async move {
            match cut {
                Some((_, true)) => {
                    futures::future::pending::<()>().await;
                    Ok(Bytes::new())
                }
                Some((_, false)) => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake hub: scripted connection drop",
                )),
                None => Ok(Bytes::new()),
            }
        }));
    builder.body(Body::from_stream(body)).unwrap_or_default()
}

/// The body in 64 KiB pieces, stopping at `cut` bytes if given.
fn chunks(data: Bytes, cut: Option<u64>) -> Vec<Bytes> {
    let data = match cut {
        Some(at) => data.slice(..usize_of(at)),
        None => data,
    };
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rest.len().min(64 << 10);
        out.push(rest.split_to(n));
    }
    out
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n`, clamped to the file as the CDN does.
fn parse_range(headers: &HeaderMap, total: u64) -> Option<(u64, u64)> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if total == 0 {
        return None;
    }
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (total.saturating_sub(n), total - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            total - 1
        } else {
            b.parse::<u64>().ok()?.min(total - 1)
        };
        (start, end)
    };
    (start <= end && start < total).then_some((start, end))
}
