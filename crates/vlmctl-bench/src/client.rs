//! The two protocols, measured from the client side on a monotonic clock.
//! OpenAI-compatible: `/v1/chat/completions`, SSE when streaming (`data:` lines, `:` comment
//! lines ignored, the role-only first chunk ignored for TTFT, `[DONE]` ends it; llama-server
//! attaches `timings` to the last chunk). Ollama: `/api/chat`, one JSON object or NDJSON lines,
//! durations in nanoseconds.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::plan::{Backend, Target};

/// What the server said about its own work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerTimings {
    /// Prompt tokens evaluated.
    pub prompt_n: Option<u64>,
    /// Time evaluating them.
    pub prompt_ms: Option<f64>,
    /// Tokens generated.
    pub predicted_n: Option<u64>,
    /// Time generating them.
    pub predicted_ms: Option<f64>,
    /// Prompt tokens served from the cache (llama-server).
    pub cache_n: Option<u64>,
    /// Model load time (Ollama).
    pub load_ms: Option<f64>,
}

/// Why a request did not produce a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Non-2xx status.
    Http,
    /// No answer within the timeout.
    Timeout,
    /// Could not connect / connection broke before an answer.
    Connect,
    /// The stream ended without its end marker.
    StreamCut,
    /// The body was not the protocol's JSON.
    Malformed,
    /// Empty content and non-empty reasoning: thinking mode leaked.
    ThinkingLeaked,
    /// Empty content.
    Empty,
}

/// One request's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// `content` (never reasoning).
    pub content: String,
    /// Length of `reasoning_content`.
    pub reasoning_len: usize,
    /// Time to first non-empty content or reasoning delta (streaming only).
    pub ttft_ms: Option<f64>,
    /// Server timings.
    pub server: ServerTimings,
    /// Completion tokens as the server counted them (`usage` or `eval_count`).
    pub completion_tokens: Option<u64>,
    /// Inter-token latency (streaming only): ms between consecutive non-empty content or
    /// reasoning deltas, as the client received them (the same deltas TTFT counts).
    pub itl_ms: Vec<f64>,
}

/// Times the non-empty deltas of a stream: the first gives TTFT, the gaps between them ITL.
struct DeltaClock {
    started: Instant,
    last: Option<Instant>,
}

impl DeltaClock {
    fn new(started: Instant) -> Self {
        Self {
            started,
            last: None,
        }
    }

    /// A non-empty delta arrived now.
    fn delta(&mut self, a: &mut Answer) {
        let now = Instant::now();
        match self.last {
            None => a.ttft_ms = Some((now - self.started).as_secs_f64() * 1000.0),
            Some(last) => a.itl_ms.push((now - last).as_secs_f64() * 1000.0),
        }
        self.last = Some(now);
    }
}

/// The request body.
#[must_use]
pub fn request_body(
    target: &Target,
    prompt: &str,
    image_b64: Option<&str>,
    stream: bool,
    max_tokens: u32,
) -> Value {
    match target.backend {
        Backend::Openai => {
            let mut content = vec![json!({"type": "text", "text": prompt})];
            if let Some(b) = image_b64 {
                content.push(json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b}")}}));
            }
            let mut body = json!({
                "messages": [{"role": "user", "content": content}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": stream,
                "chat_template_kwargs": {"enable_thinking": false},
            });
            if let Some(m) = &target.model {
                body["model"] = json!(m);
            }
            if stream {
                body["stream_options"] = json!({"include_usage": true});
            }
            body
        }
        Backend::Ollama => {
            let mut msg = json!({"role": "user", "content": prompt});
            if let Some(b) = image_b64 {
                msg["images"] = json!([b]);
            }
            let mut body = json!({
                "model": target.model,
                "messages": [msg],
                "stream": stream,
                "think": false,
                "options": {"temperature": 0, "num_predict": max_tokens},
            });
            if let Some(k) = &target.keep_alive {
                body["keep_alive"] = json!(k);
            }
            body
        }
    }
}

/// Sends one request and reads the whole answer. `Err` carries the kind and a detail.
pub async fn send(
    http: &reqwest::Client,
    target: &Target,
    api_key: Option<&str>,
    body: &Value,
    timeout: Duration,
    started: Instant,
) -> Result<Answer, (ErrorKind, String)> {
    let path = match target.backend {
        Backend::Openai => "/v1/chat/completions",
        Backend::Ollama => "/api/chat",
    };
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut req = http
        .post(format!("{}{path}", target.url.trim_end_matches('/')))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .timeout(timeout);
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.map_err(|e| classify(&e))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        return Err((
            ErrorKind::Http,
            format!("HTTP {}: {}", status.as_u16(), body.trim()),
        ));
    }
    let answer = if body["stream"].as_bool().unwrap_or(false) {
        match target.backend {
            Backend::Openai => read_sse(resp, started).await?,
            Backend::Ollama => read_ndjson(resp, started).await?,
        }
    } else {
        let b = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                (ErrorKind::Timeout, detail(&e))
            } else {
                (ErrorKind::StreamCut, detail(&e))
            }
        })?;
        let v: Value =
            serde_json::from_slice(&b).map_err(|e| (ErrorKind::Malformed, e.to_string()))?;
        answer_from_json(target.backend, &v)?
    };
    check_content(answer)
}

fn classify(e: &reqwest::Error) -> (ErrorKind, String) {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() || e.is_request() {
        ErrorKind::Connect
    } else {
        ErrorKind::StreamCut
    };
    (kind, detail(e))
}

/// Pure: reqwest's words for `e` without the request's URL, which is the target's (named in the
/// results already) or, on another host, a local forward's port, which must not be recorded.
fn detail(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(u) => text
            .replace(&format!(" for url ({u})"), "")
            .replace(u.as_str(), "the target"),
        None => text,
    }
}

fn timings(v: &Value) -> ServerTimings {
    let t = &v["timings"];
    ServerTimings {
        prompt_n: t["prompt_n"].as_u64(),
        prompt_ms: t["prompt_ms"].as_f64(),
        predicted_n: t["predicted_n"].as_u64(),
        predicted_ms: t["predicted_ms"].as_f64(),
        cache_n: t["cache_n"].as_u64(),
        load_ms: None,
    }
}

fn openai_answer(v: &Value) -> Option<Answer> {
    let msg = v["choices"].get(0)?.get("message")?;
    Some(Answer {
        content: msg["content"].as_str().unwrap_or_default().to_owned(),
        reasoning_len: msg["reasoning_content"].as_str().map_or(0, str::len),
        ttft_ms: None,
        server: timings(v),
        completion_tokens: v["usage"]["completion_tokens"].as_u64(),
        itl_ms: Vec::new(),
    })
}

async fn read_sse(
    resp: reqwest::Response,
    started: Instant,
) -> Result<Answer, (ErrorKind, String)> {
    let mut a = Answer::default();
    let mut clock = DeltaClock::new(started);
    let mut lines = Lines::new(resp);
    let mut done = false;
    while let Some(line) = lines.next().await? {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        // Comment lines (": keep-alive") and other SSE fields carry no data.
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim_start();
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| (ErrorKind::Malformed, format!("bad SSE data: {e}")))?;
        let delta = &v["choices"][0]["delta"];
        let text = delta["content"].as_str().unwrap_or_default();
        let reasoning = delta["reasoning_content"].as_str().unwrap_or_default();
        if !text.is_empty() || !reasoning.is_empty() {
            clock.delta(&mut a);
        }
        a.content.push_str(text);
        a.reasoning_len += reasoning.len();
        if v.get("timings").is_some() {
            a.server = timings(&v);
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            a.completion_tokens = Some(n);
        }
    }
    if !done {
        return Err((
            ErrorKind::StreamCut,
            "stream ended without data: [DONE]".to_owned(),
        ));
    }
    Ok(a)
}

fn ns_to_ms(v: &Value) -> Option<f64> {
    v.as_f64().map(|ns| ns / 1e6)
}

fn ollama_final(v: &Value, mut a: Answer) -> Answer {
    a.server = ServerTimings {
        prompt_n: v["prompt_eval_count"].as_u64(),
        prompt_ms: ns_to_ms(&v["prompt_eval_duration"]),
        predicted_n: v["eval_count"].as_u64(),
        predicted_ms: ns_to_ms(&v["eval_duration"]),
        cache_n: None,
        load_ms: ns_to_ms(&v["load_duration"]),
    };
    a.completion_tokens = v["eval_count"].as_u64();
    a.reasoning_len = v["message"]["thinking"].as_str().map_or(0, str::len);
    a
}

async fn read_ndjson(
    resp: reqwest::Response,
    started: Instant,
) -> Result<Answer, (ErrorKind, String)> {
    let mut a = Answer::default();
    let mut clock = DeltaClock::new(started);
    let mut lines = Lines::new(resp);
    let mut reasoning = 0;
    while let Some(line) = lines.next().await? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: Value = serde_json::from_slice(&line)
            .map_err(|e| (ErrorKind::Malformed, format!("bad NDJSON line: {e}")))?;
        let text = v["message"]["content"].as_str().unwrap_or_default();
        let thinking = v["message"]["thinking"].as_str().unwrap_or_default();
        if !text.is_empty() || !thinking.is_empty() {
            clock.delta(&mut a);
        }
        a.content.push_str(text);
        reasoning += thinking.len();
        if v["done"].as_bool() == Some(true) {
            let mut fin = ollama_final(&v, a);
            fin.reasoning_len = reasoning;
            return Ok(fin);
        }
    }
    Err((
        ErrorKind::StreamCut,
        "NDJSON stream ended without \"done\": true".to_owned(),
    ))
}

/// Splits a response body into lines as chunks arrive (SSE and NDJSON are both line-based).
struct Lines {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Lines {
    fn new(resp: reqwest::Response) -> Self {
        Self {
            body: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The next complete line (with its newline), or `None` at the end of the body.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, (ErrorKind, String)> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(Some(self.buf.drain(..=nl).collect()));
            }
            match self.body.next().await {
                None => return Ok(None),
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| {
                        if e.is_timeout() {
                            (ErrorKind::Timeout, detail(&e))
                        } else {
                            (ErrorKind::StreamCut, detail(&e))
                        }
                    })?;
                    self.buf.extend_from_slice(&chunk);
                }
            }
        }
    }
}

/// One kept-alive HTTP/1 connection to a target, for closed-loop non-streamed requests: the
/// request is sent as prepared bytes over a connection that stays open, as a production client
/// does, without a pool checkout or URL parsing per request (half of reqwest's per-request cost
/// on loopback). Only for `http://` targets; reconnects when the server closed it.
pub struct Conn {
    /// Host to connect to (an IPv6 literal without brackets).
    host: String,
    /// `Host` header value (`host:port`, brackets kept).
    authority: String,
    port: u16,
    sender: Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>>,
}

impl Conn {
    /// A connection for `url` (`http://host:port[/...]`), or `None` for anything else.
    #[must_use]
    pub fn for_url(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("http://")?;
        let authority = rest.split('/').next()?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.ends_with(']') => (h, p.parse().ok()?),
            _ => (authority, 80),
        };
        Some(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            authority: authority.to_owned(),
            port,
            sender: None,
        })
    }

    async fn sender(
        &mut self,
    ) -> Result<
        &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
        (ErrorKind, String),
    > {
        if self
            .sender
            .as_ref()
            .is_none_or(hyper::client::conn::http1::SendRequest::is_closed)
        {
            let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| (ErrorKind::Connect, e.to_string()))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| (ErrorKind::Connect, e.to_string()))?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or((ErrorKind::Connect, "no connection".to_owned()))
    }

    /// POSTs `body` (JSON) to `path` and returns status and body. A failure drops the
    /// connection, so the next request starts a fresh one.
    ///
    /// A kept-alive connection the server closed while it was idle (its keep-alive timeout, or
    /// a server that closes after each answer without `Connection: close`) can cross the next
    /// request on the wire: the request meets a closed socket and no answer comes. That request
    /// is sent once more on a fresh connection instead of being counted as a connect error.
    /// Only then, because a POST sent twice may cost the server twice: the connection had
    /// served a request before (a fresh one failing says something about the server), and
    /// nothing of an answer arrived: the connection was closed before the request could be
    /// sent, or it closed or was reset before a response head (hyper's "canceled", "connection
    /// closed before message completed", a reset or broken pipe). A server that read the
    /// request and then died also closes without an answer, and would see it twice; on a fresh
    /// connection it then fails again, and that second failure is the error. The wall time
    /// counts both attempts (the first ends at once: the socket is closed).
    async fn post(
        &mut self,
        path: &str,
        body: bytes::Bytes,
        api_key: Option<&str>,
    ) -> Result<(u16, bytes::Bytes), (ErrorKind, String)> {
        let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        match self.attempt(path, body.clone(), api_key).await {
            Err(Failed::Unanswered(_)) if reused => self
                .attempt(path, body, api_key)
                .await
                .map_err(Failed::into_error),
            r => r.map_err(Failed::into_error),
        }
    }

    /// One try of [`Self::post`].
    async fn attempt(
        &mut self,
        path: &str,
        body: bytes::Bytes,
        api_key: Option<&str>,
    ) -> Result<(u16, bytes::Bytes), Failed> {
        use http_body_util::BodyExt as _;
        let mut req = hyper::Request::post(path)
            .header("host", self.authority.as_str())
            .header("content-type", "application/json");
        if let Some(k) = api_key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = req
            .body(http_body_util::Full::new(body))
            .map_err(|e| Failed::Other(ErrorKind::Connect, e.to_string()))?;
        let result = async {
            let sender = self.sender().await.map_err(|(k, d)| Failed::Other(k, d))?;
            // Closed before the request was sent.
            sender
                .ready()
                .await
                .map_err(|e| Failed::Unanswered(e.to_string()))?;
            let resp = sender.send_request(req).await.map_err(|e| {
                if unanswered(&e) {
                    Failed::Unanswered(e.to_string())
                } else {
                    Failed::Other(ErrorKind::Connect, e.to_string())
                }
            })?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Failed::Other(ErrorKind::StreamCut, e.to_string()))?
                .to_bytes();
            Ok((status, bytes))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// Why one try of [`Conn::post`] failed.
enum Failed {
    /// The connection closed (or was reset) before any of the answer arrived.
    Unanswered(String),
    /// Anything else, classified.
    Other(ErrorKind, String),
}

impl Failed {
    fn into_error(self) -> (ErrorKind, String) {
        match self {
            Self::Unanswered(d) => (ErrorKind::Connect, d),
            Self::Other(k, d) => (k, d),
        }
    }
}

/// Whether `send_request` failed before a response head arrived because the connection was
/// closed: not sent at all (canceled), EOF before the head, or reset / broken pipe.
fn unanswered(e: &hyper::Error) -> bool {
    let io_closed = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            )
        });
    e.is_canceled() || e.is_incomplete_message() || io_closed
}

/// [`send`] for a non-streamed request over a kept-alive [`Conn`].
pub async fn send_on(
    conn: &mut Conn,
    target: &Target,
    api_key: Option<&str>,
    body: &Value,
    timeout: Duration,
) -> Result<Answer, (ErrorKind, String)> {
    let path = match target.backend {
        Backend::Openai => "/v1/chat/completions",
        Backend::Ollama => "/api/chat",
    };
    let bytes = bytes::Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let Ok(answered) = tokio::time::timeout(timeout, conn.post(path, bytes, api_key)).await else {
        conn.sender = None;
        return Err((ErrorKind::Timeout, format!("no answer within {timeout:?}")));
    };
    let (status, b) = answered?;
    if !(200..300).contains(&status) {
        let text: String = String::from_utf8_lossy(&b).chars().take(300).collect();
        return Err((ErrorKind::Http, format!("HTTP {status}: {}", text.trim())));
    }
    let v: Value = serde_json::from_slice(&b).map_err(|e| (ErrorKind::Malformed, e.to_string()))?;
    check_content(answer_from_json(target.backend, &v)?)
}

/// Empty content is a failure; with reasoning, it is thinking mode leaking.
fn check_content(answer: Answer) -> Result<Answer, (ErrorKind, String)> {
    if answer.content.trim().is_empty() {
        return Err(if answer.reasoning_len > 0 {
            (ErrorKind::ThinkingLeaked, "empty content, non-empty reasoning_content: start llama-server with --jinja so chat_template_kwargs applies".to_owned())
        } else {
            (ErrorKind::Empty, "empty content".to_owned())
        });
    }
    Ok(answer)
}

/// A non-streamed answer, from the protocol's JSON body.
fn answer_from_json(backend: Backend, v: &Value) -> Result<Answer, (ErrorKind, String)> {
    match backend {
        Backend::Openai => {
            openai_answer(v).ok_or((ErrorKind::Malformed, "no choices[0].message".to_owned()))
        }
        Backend::Ollama => Ok(ollama_final(
            v,
            Answer {
                content: v["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ..Answer::default()
            },
        )),
    }
}

#[cfg(test)]
mod conn_tests {
    use super::Conn;

    #[test]
    fn urls() {
        let c = Conn::for_url("http://127.0.0.1:11435").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.authority.as_str()),
            ("127.0.0.1", 11435, "127.0.0.1:11435")
        );
        let c = Conn::for_url("http://[::1]:8080/x").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.authority.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        let c = Conn::for_url("http://[::1]").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 80));
        assert!(Conn::for_url("https://example.invalid").is_none());
    }
}

#[cfg(test)]
mod detail_tests {
    /// reqwest names the URL in its errors; the recorded words must not (on another host it is
    /// a local forward's port).
    #[tokio::test]
    async fn error_words_leave_the_url_out() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let e = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .send()
            .await
            .expect_err("nothing listens there");
        let needle = format!("127.0.0.1:{port}");
        assert!(e.to_string().contains(&needle), "{e}");
        let words = super::detail(&e);
        assert!(!words.contains(&needle), "{words}");
        assert!(!words.is_empty());
    }
}
