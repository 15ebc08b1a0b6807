//! An in-process fake inference server on 127.0.0.1, for tests (feature `fake-server`).
//!
//! Tests of this crate, of the jobs and of the front-ends need a server that fails on cue
//! (thinking leaked, a 503, a stream cut half-way, a hang, a slow model) without a model or a
//! GPU. This one speaks the HTTP of the two servers vlmctl measures, as the real ones send it:
//! llama-server as `scripts/test` builds it (the `test-env` test
//! `fake_server_speaks_llama_servers_json` checks statuses, content types, that every key the
//! fake sends the real one sends at the same place, and the stream structure; the loading `503`
//! was observed by hand), Ollama from its API documentation (no Ollama runs in our tests):
//! - llama-server `POST /v1/chat/completions`: a `chat.completion` object with
//!   `choices[0].message` (`content`; `reasoning_content` only when there is reasoning), `usage`
//!   and llama-server's own `timings` (`prompt_n`, `prompt_ms`, `predicted_n`, `predicted_ms`,
//!   `cache_n`, per-token and per-second figures). With `"stream": true`, SSE: a role-only first
//!   chunk (`"content": null`), one chunk per piece of content, a chunk with `finish_reason` and
//!   an empty delta, then `data: [DONE]`. `timings` ride on the `finish_reason` chunk, or, when
//!   the request sets `stream_options.include_usage`, on a last chunk with `"choices": []` and
//!   `usage`, as llama-server does. The stream opens with a `: ping` comment line, which
//!   llama-server does not send but SSE allows and other OpenAI-compatible servers do; a client
//!   must skip it.
//! - llama-server `GET /health` (`{"status":"ok"}`, or `503` with
//!   `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}` while
//!   loading, see [`Options::loading_for`]; chat requests get the same `503` then), `GET
//!   /v1/models` (`{"object":"list","data":[{"id":..}]}`) and `GET /props`
//!   (`default_generation_settings`, `total_slots`, `model_path`). Errors as llama-server sends
//!   them: `{"error":{"code","message","type"}}` with `type` `invalid_request_error`,
//!   `not_found_error`, `unavailable_error` or `server_error`.
//! - Ollama `POST /api/chat`: one JSON object, or with `"stream": true` NDJSON lines
//!   `{"model","created_at","message":{"role","content"},"done":false}` and a last line with
//!   `"done": true`, `done_reason` and the durations in **nanoseconds** (`total_duration`,
//!   `load_duration`, `prompt_eval_duration`, `eval_duration`) beside `prompt_eval_count` and
//!   `eval_count`. Reasoning is `message.thinking`. Errors are `{"error": "..."}`. Also `GET
//!   /api/tags` and `POST /api/show`, which the bench records as server information.
//!
//! Every chat request takes the next [`Step`] of a script (afterwards [`Options::then`]): a
//! [`Reply`] after a delay. Requests are served by at most [`Options::slots`] at once, like
//! llama-server's `--parallel` slots; the others wait in arrival order, so a server slower than
//! the load shows queueing as a real one does. Times in the timings are fixed figures, not
//! measured: 0.4 ms per prompt token evaluated, 4 tokens generated in 8 ms (llama-server);
//! prompt in 14 ms, 9 tokens generated in 13 ms, load 1.5 ms (Ollama).
//!
//! Prompt tokens are counted the way llama-server counts them, so that tests can see what the
//! camera frame and the prompt cache do to a request (without a tokenizer, so the text's count is
//! an estimate; the image's and the cache's behaviour are the real server's):
//! - **Text**: one token per 4 bytes of message text, plus the chat template's tokens around
//!   each turn (`<bos>`, `<start_of_turn>user`, `<end_of_turn>`, `<start_of_turn>model`: 9 for
//!   one user message). The runbooks' nav prompt (2757 bytes) comes to 699; the real server
//!   with the test model counts 693.
//! - **An image** (an `image_url` part; Ollama: an entry of `images`) adds [`IMAGE_TOKENS`]
//!   tokens, whatever the picture, as llama-server with a vision projector does: it turns the
//!   image into a fixed number of embeddings (the test projector for Gemma 3 270M: 64) between
//!   image marker tokens. Measured with `scripts/test`'s llama-server, model and projector and
//!   `examples/camera.png`: the nav prompt 693 tokens text-only, 759 with the frame (+66), the
//!   short nav prompt 242 and 308 (+66); provision's smoke request 32 and 99.
//! - **The prompt cache** (llama-server only; `timings.cache_n`, `usage.prompt_tokens_details.
//!   cached_tokens`): the server keeps the last prompt it evaluated, and a request evaluates
//!   (`prompt_n`) only the tokens after the longest common prefix with it, at least one (the
//!   real server evaluates the last token again for its logits). An identical repeat: `prompt_n`
//!   1, the rest from the cache; measured with the frame: nav prompt 1 evaluated + 758 cached,
//!   the short one 5 + 303, the smoke request 5 + 94. A different image breaks the prefix where
//!   the image starts, as it does in llama-server (it hashes the image). The fake keeps one
//!   prompt for all its slots (llama-server keeps one per slot and gives a request the slot
//!   whose prompt matches best, so a repeated request finds its prefix the same way).
//!   `prompt_n + cache_n` is the prompt's size either way. Requests that fail before an
//!   answer (`Status`, `Hang`, `Malformed`) evaluate nothing and leave the cache alone.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use std::time::Duration;
//! use vlmctl_bench::fake_server::{FakeServer, Reply};
//!
//! let server = FakeServer::start([
//!     Reply::Think.into(),
//!     Reply::Status(503).into(),
//!     // A slow model: 60 ms before the answer.
//!     Reply::Say(r#"{"action": "left", "reason": "wall"}"#.into()).after(Duration::from_millis(60)),
//! ])
//! .await?;
//! let url = server.endpoint(); // http://127.0.0.1:PORT: a plan's target, a spec's smoke test
//! # let _ = url;
//! assert_eq!(server.chat_requests(), 0);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

mod wire;
pub use wire::IMAGE_TOKENS;
use wire::{
    PromptCount, Protocol, ollama_json, ollama_ndjson, openai_json, openai_sse, prompt_tokens,
};

/// What [`Options::then`] answers by default: a nav answer that passes the schema as whole JSON.
pub const DEFAULT_ANSWER: &str = r#"{"action": "forward", "reason": "open floor"}"#;

/// What the server does with one chat request (either protocol).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer with this content: JSON, or SSE / NDJSON pieces when the request streams.
    Say(String),
    /// Empty content and non-empty reasoning (`reasoning_content`, Ollama's `thinking`): what a
    /// thinking model sends when the request could not turn thinking off.
    Think,
    /// `200` with a body that is not the protocol's JSON.
    Malformed,
    /// This status, with the server's error body.
    Status(u16),
    /// No answer at all: the request stays open until the server is dropped (the client's
    /// timeout must fire).
    Hang,
    /// Streams end after the content without their end marker (`[DONE]`, `"done": true`); a
    /// JSON answer breaks off half-way and the connection drops.
    Cut,
}

impl Reply {
    /// This reply after `delay`.
    #[must_use]
    pub fn after(self, delay: Duration) -> Step {
        Step { reply: self, delay }
    }
}

/// One chat request's treatment: a reply, sent after a delay (the model's time; it holds a
/// slot, and for a stream it passes before the first byte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What is sent.
    pub reply: Reply,
    /// How long the request holds its slot before anything is sent.
    pub delay: Duration,
}

impl From<Reply> for Step {
    fn from(reply: Reply) -> Self {
        reply.after(Duration::ZERO)
    }
}

/// How the server behaves besides its script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// What every chat request gets once the script has run out.
    pub then: Step,
    /// Chat requests served at once (llama-server's `--parallel`); later ones wait in arrival
    /// order; 0 counts as 1. `None`: no limit (`/props` then says 4 slots, llama-server's
    /// default).
    pub slots: Option<usize>,
    /// `/health` and chat requests answer `503` "Loading model" for this long after the start.
    pub loading_for: Duration,
    /// The model id in `/v1/models`, `/props` and `/api/tags`.
    pub model: String,
    /// Drop image parts without a word and count only the text, as an OpenAI-compatible server
    /// whose model has no vision, or Ollama with a text-only model, does (llama-server itself
    /// refuses an image it has no projector for).
    pub ignores_images: bool,
    /// Streams: the time between one SSE event (NDJSON line) and the next, as a model
    /// generating a token at a time sends them; zero sends the whole stream at once. The slot
    /// is given back when the stream starts.
    pub token_gap: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            then: Reply::Say(DEFAULT_ANSWER.to_owned()).into(),
            slots: None,
            loading_for: Duration::ZERO,
            model: "fake.gguf".to_owned(),
            ignores_images: false,
            token_gap: Duration::ZERO,
        }
    }
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// When it arrived, from the server's start.
    pub at: Duration,
}

struct Shared {
    options: Options,
    started: Instant,
    script: Mutex<VecDeque<Step>>,
    slots: Option<Semaphore>,
    seen: Mutex<Vec<Seen>>,
    chat_requests: AtomicUsize,
    /// The last prompt evaluated, one pseudo-token each: the prompt cache.
    cache: Mutex<Vec<u64>>,
    /// Dropped with the server: hanging requests end then.
    shutdown: watch::Receiver<()>,
}

/// A running fake server. Dropping it stops the server and ends hanging requests.
pub struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    _shutdown: watch::Sender<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Starts a server with this script and default [`Options`] on 127.0.0.1, on an ephemeral
    /// port. Needs a tokio runtime.
    pub async fn start(script: impl IntoIterator<Item = Step>) -> std::io::Result<Self> {
        Self::start_with(script, Options::default()).await
    }

    /// Starts a server with this script and these options.
    pub async fn start_with(
        script: impl IntoIterator<Item = Step>,
        options: Options,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(());
        let shared = Arc::new(Shared {
            slots: options.slots.map(|n| Semaphore::new(n.max(1))),
            options,
            started: Instant::now(),
            script: Mutex::new(script.into_iter().collect()),
            seen: Mutex::new(Vec::new()),
            chat_requests: AtomicUsize::new(0),
            cache: Mutex::new(Vec::new()),
            shutdown: rx,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            shared,
            task,
            _shutdown: tx,
        })
    }

    /// `http://127.0.0.1:PORT`: a target's `url`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends a step to the script.
    pub fn push(&self, step: Step) {
        lock(&self.shared.script).push_back(step);
    }

    /// Chat requests received so far (both protocols, loading-time `503`s included).
    #[must_use]
    pub fn chat_requests(&self) -> usize {
        self.shared.chat_requests.load(Ordering::SeqCst)
    }

    /// Every request so far, in arrival order.
    #[must_use]
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    respond(status, "application/json; charset=utf-8", v.to_string())
}

/// An error body as the protocol's server sends it.
fn error(protocol: Protocol, status: StatusCode, message: &str) -> Response {
    let body = match protocol {
        Protocol::Ollama => json!({ "error": message }),
        Protocol::Openai => {
            let kind = match status.as_u16() {
                400 => "invalid_request_error",
                401 => "authentication_error",
                404 => "not_found_error",
                501 => "not_supported_error",
                503 => "unavailable_error",
                _ => "server_error",
            };
            json!({ "error": { "code": status.as_u16(), "message": message, "type": kind } })
        }
    };
    json_response(status, &body)
}

async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    lock(&s.seen).push(Seen {
        method: method.to_string(),
        path: path.clone(),
        at: s.started.elapsed(),
    });
    let loading = s.started.elapsed() < s.options.loading_for;
    let model = &s.options.model;
    match (&method, path.as_str()) {
        (&Method::GET, "/health") if loading => error(
            Protocol::Openai,
            StatusCode::SERVICE_UNAVAILABLE,
            "Loading model",
        ),
        (&Method::GET, "/health") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/v1/models") => json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": [
                {"id": model, "object": "model", "created": 0, "owned_by": "llamacpp"}
            ]}),
        ),
        (&Method::GET, "/props") => json_response(
            StatusCode::OK,
            &json!({
                "default_generation_settings": {"n_ctx": 2048, "params": {"temperature": 0.8}},
                "total_slots": s.options.slots.unwrap_or(4),
                "model_path": model,
                "build_info": "fake",
            }),
        ),
        (&Method::GET, "/api/tags") => json_response(
            StatusCode::OK,
            &json!({"models": [{"name": model, "model": model, "details": {"format": "gguf"}}]}),
        ),
        (&Method::POST, "/api/show") => json_response(
            StatusCode::OK,
            &json!({"details": {"format": "gguf"}, "capabilities": ["completion"]}),
        ),
        (&Method::POST, "/v1/chat/completions" | "/api/chat") => {
            let protocol = if path == "/api/chat" {
                Protocol::Ollama
            } else {
                Protocol::Openai
            };
            s.chat_requests.fetch_add(1, Ordering::SeqCst);
            if loading {
                return error(protocol, StatusCode::SERVICE_UNAVAILABLE, "Loading model");
            }
            let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
                Ok(b) => b,
                Err(e) => return error(protocol, StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let body: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return error(protocol, StatusCode::BAD_REQUEST, &e.to_string()),
            };
            chat(&s, protocol, &body).await
        }
        _ => error(Protocol::Openai, StatusCode::NOT_FOUND, "File Not Found"),
    }
}

async fn chat(s: &Shared, protocol: Protocol, body: &Value) -> Response {
    // The step is taken on arrival, so steps follow arrival order whatever the slots do.
    let step = lock(&s.script)
        .pop_front()
        .unwrap_or_else(|| s.options.then.clone());
    let _slot = match &s.slots {
        Some(slots) => match slots.acquire().await {
            Ok(permit) => Some(permit),
            Err(_) => return error(protocol, StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        },
        None => None,
    };
    tokio::time::sleep(step.delay).await;
    let stream = body["stream"].as_bool() == Some(true);
    let (content, reasoning) = match step.reply {
        Reply::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(
                protocol,
                status,
                status.canonical_reason().unwrap_or("scripted failure"),
            );
        }
        Reply::Hang => {
            let mut shutdown = s.shutdown.clone();
            // Returns once the sender (held by `FakeServer`) is dropped.
            while shutdown.changed().await.is_ok() {}
            return error(protocol, StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
        Reply::Malformed => {
            return respond(
                StatusCode::OK,
                "application/json; charset=utf-8",
                "{\"choices\": [",
            );
        }
        Reply::Say(ref c) => (c.clone(), String::new()),
        Reply::Think => (
            String::new(),
            "Let me think about the floor ahead first.".to_owned(),
        ),
        Reply::Cut => (DEFAULT_ANSWER.to_owned(), String::new()),
    };
    let cut = step.reply == Reply::Cut;
    let model = s.options.model.as_str();
    let prompt = evaluate(s, protocol, body);
    match (protocol, stream) {
        (Protocol::Openai, false) => cut_if(cut, &openai_json(model, prompt, &content, &reasoning)),
        (Protocol::Openai, true) => {
            let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
            respond(
                StatusCode::OK,
                "text/event-stream",
                paced(
                    openai_sse(model, prompt, &content, &reasoning, include_usage, cut),
                    "\n\n",
                    s.options.token_gap,
                ),
            )
        }
        (Protocol::Ollama, false) => cut_if(
            cut,
            &ollama_json(&body["model"], prompt, &content, &reasoning),
        ),
        (Protocol::Ollama, true) => respond(
            StatusCode::OK,
            "application/x-ndjson",
            paced(
                ollama_ndjson(&body["model"], prompt, &content, &reasoning, cut),
                "\n",
                s.options.token_gap,
            ),
        ),
    }
}

/// A stream's text as a body: every piece ending in `sep` sent `gap` after the one before
/// (the first at once); all of it at once when `gap` is zero.
fn paced(text: String, sep: &str, gap: Duration) -> Body {
    if gap.is_zero() {
        return Body::from(text);
    }
    let parts: Vec<Bytes> = text
        .split_inclusive(sep)
        .map(|p| Bytes::from(p.to_owned()))
        .collect();
    Body::from_stream(futures::stream::iter(parts.into_iter().enumerate()).then(
        move |(i, part)| async move {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            Ok::<_, std::io::Error>(part)
        },
    ))
}

/// Counts the request's prompt and, for llama-server, serves its common prefix with the last
/// prompt from the cache (Ollama reports no cache: all of it evaluated).
fn evaluate(s: &Shared, protocol: Protocol, body: &Value) -> PromptCount {
    let tokens = prompt_tokens(protocol, body, !s.options.ignores_images);
    let total = tokens.len() as u64;
    if protocol == Protocol::Ollama {
        return PromptCount { total, cached: 0 };
    }
    let mut last = lock(&s.cache);
    let common = last.iter().zip(&tokens).take_while(|(a, b)| a == b).count() as u64;
    *last = tokens;
    PromptCount {
        total,
        cached: common.min(total.saturating_sub(1)),
    }
}

/// The JSON answer, or (cut) its first half followed by a broken connection.
fn cut_if(cut: bool, v: &Value) -> Response {
    if !cut {
        return json_response(StatusCode::OK, v);
    }
    let text = Bytes::from(v.to_string());
    let half = text.slice(..text.len() / 2);
    // The break comes a moment later: an error in the same poll would make hyper drop the
    // connection before the headers and the first half left its buffer.
    let parts = futures::stream::once(async move { Ok::<_, std::io::Error>(half) }).chain(
        futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(std::io::Error::other("scripted cut"))
        }),
    );
    respond(
        StatusCode::OK,
        "application/json; charset=utf-8",
        Body::from_stream(parts),
    )
}
