//! Scripted fake servers. Each request takes the next behaviour from a script; what each
//! behaviour sends imitates a real server: llama-server's `/v1/chat/completions` (JSON with
//! `timings`, or SSE with a role-only first chunk, `: ping` comment lines, `timings` on the last
//! chunk, then `data: [DONE]`) and Ollama's `/api/chat` (NDJSON, durations in nanoseconds).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use vlmctl_bench::plan::LoadedPlan;
use vlmctl_bench::run;

#[derive(Clone, Debug)]
enum B {
    /// Answer with this content (JSON or SSE depending on the request's `stream`).
    Say(&'static str),
    /// Empty content, non-empty `reasoning_content`.
    Think,
    /// Invalid JSON body.
    Malformed,
    /// This HTTP status.
    Status(u16),
    /// Never answer (the client's timeout fires).
    Hang,
    /// SSE that stops without `[DONE]`.
    Cut,
}

type Script = Arc<Mutex<VecDeque<B>>>;

fn next(s: &Script) -> B {
    s.lock()
        .unwrap()
        .pop_front()
        .unwrap_or(B::Say(r#"{"action": "forward", "reason": "x"}"#))
}

fn timings() -> Value {
    json!({"prompt_n": 5, "prompt_ms": 2.0, "predicted_n": 4, "predicted_ms": 8.0, "cache_n": 550})
}

async fn openai(script: Script, body: Value) -> Response {
    let stream = body["stream"].as_bool().unwrap_or(false);
    match next(&script) {
        B::Status(c) => StatusCode::from_u16(c).unwrap().into_response(),
        B::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        B::Malformed => (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"choices\": [",
        )
            .into_response(),
        b => {
            let (content, reasoning) = match b {
                B::Say(c) => (c, ""),
                _ => ("", "Let me think about the floor..."),
            };
            if !stream {
                return axum::Json(json!({
                    "choices": [{"message": {"role": "assistant", "content": content, "reasoning_content": reasoning}}],
                    "usage": {"completion_tokens": 4},
                    "timings": timings(),
                }))
                .into_response();
            }
            let mut events = vec![
                ": ping\n\n".to_owned(),
                format!(
                    "data: {}\n\n",
                    json!({"choices": [{"delta": {"role": "assistant"}}]})
                ),
            ];
            let half = content.len() / 2;
            for piece in [&content[..half], &content[half..]] {
                events.push(format!(
                    "data: {}\n\n",
                    json!({"choices": [{"delta": {"content": piece}}]})
                ));
            }
            if !reasoning.is_empty() {
                events.push(format!(
                    "data: {}\n\n",
                    json!({"choices": [{"delta": {"reasoning_content": reasoning}}]})
                ));
            }
            if matches!(b, B::Cut) {
                return Response::new(Body::from(events.concat()));
            }
            events.push(format!("data: {}\n\n", json!({"choices": [{"delta": {}, "finish_reason": "stop"}], "timings": timings(), "usage": {"completion_tokens": 4}})));
            events.push("data: [DONE]\n\n".to_owned());
            ([("content-type", "text/event-stream")], events.concat()).into_response()
        }
    }
}

fn ollama(body: &Value) -> Response {
    let done = json!({
        "model": body["model"], "done": true, "message": {"role": "assistant", "content": ""},
        "total_duration": 156_000_000u64, "load_duration": 1_500_000u64,
        "prompt_eval_count": 554, "prompt_eval_duration": 14_000_000u64,
        "eval_count": 9, "eval_duration": 13_000_000u64,
    });
    let content = r#"{"action": "left", "reason": "curtain ahead"}"#;
    if body["stream"].as_bool() == Some(true) {
        let mut lines = String::new();
        for piece in [&content[..10], &content[10..]] {
            lines.push_str(
                &json!({"message": {"role": "assistant", "content": piece}, "done": false})
                    .to_string(),
            );
            lines.push('\n');
        }
        lines.push_str(&done.to_string());
        lines.push('\n');
        return ([("content-type", "application/x-ndjson")], lines).into_response();
    }
    let mut v = done;
    v["message"]["content"] = json!(content);
    axum::Json(v).into_response()
}

async fn start(script: Script) -> String {
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(move |axum::Json(b): axum::Json<Value>| openai(script.clone(), b)),
        )
        .route(
            "/api/chat",
            post(|axum::Json(b): axum::Json<Value>| async move { ollama(&b) }),
        )
        .route(
            "/props",
            get(|| async { axum::Json(json!({"build_info": "fake"})) }),
        )
        .route(
            "/v1/models",
            get(|| async { axum::Json(json!({"data": [{"id": "fake.gguf"}]})) }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

fn plan(
    dir: &Path,
    url: &str,
    backend: &str,
    configs: &str,
    runs: usize,
    extra: &str,
) -> LoadedPlan {
    std::fs::create_dir_all(dir.join("prompts")).unwrap();
    for f in ["nav", "nav-short", "describe"] {
        std::fs::write(dir.join(format!("prompts/{f}.txt")), format!("{f} prompt")).unwrap();
    }
    std::fs::write(dir.join("camera.png"), b"\x89PNG fake").unwrap();
    std::fs::write(
        dir.join("plan.toml"),
        format!(
            "version = 1\nruns = {runs}\nwarmup = 0\ntimeout_s = 0.5\ndescribe = false\nimage = \"camera.png\"\nconfigs = {configs}\n{extra}\n\
             [[target]]\nname = \"fake\"\nurl = \"{url}\"\nbackend = \"{backend}\"\nmodel = \"gemma4:e2b\"\n"
        ),
    )
    .unwrap();
    LoadedPlan::load(&dir.join("plan.toml")).unwrap()
}

fn noop(_: &str, _: &str, _: usize, _: usize) {}

#[tokio::test]
async fn every_outcome_is_counted_exactly() {
    let script: Script = Arc::new(Mutex::new(VecDeque::from([
        B::Say(r#"{"action": "forward", "reason": "open floor"}"#), // strategy 1
        B::Say("```json\n{\"action\": \"left\", \"reason\": \"wall\"}\n```"), // strategy 2
        B::Say("Sure: {\"action\": \"brake\", \"reason\": \"cable\"} ok"), // strategy 2
        B::Say("I would go right."),                                // strategy 3
        B::Think,
        B::Malformed,
        B::Status(500),
        B::Status(503),
        B::Hang,
        // streamed (config C)
        B::Say(r#"{"action": "stop", "reason": "goal"}"#),
        B::Cut,
        B::Think,
    ])));
    let url = start(script).await;
    let tmp = tempfile::tempdir().unwrap();
    // Config A: the 9 non-streamed behaviours; config C: 3 streamed ones, then defaults.
    let p = plan(tmp.path(), &url, "openai", "[\"A\", \"C\"]", 9, "");
    let mut results = run::run(&p, &BTreeMap::new(), &noop).await;
    let a = &results.targets[0].configs[0].summary;
    assert_eq!(a.ok, 4);
    let errors: Vec<(&str, usize)> = a.errors.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        errors,
        [
            ("http", 2),
            ("malformed", 1),
            ("thinking_leaked", 1),
            ("timeout", 1)
        ]
    );
    assert_eq!(a.schema.get("whole_json"), Some(&1));
    assert_eq!(a.schema.get("extracted"), Some(&2));
    assert_eq!(a.schema.get("keyword"), Some(&1));
    assert_eq!(a.schema_pass_rate, Some(0.75));
    assert_eq!(a.cache_hits, 4);
    assert_eq!(
        a.server_tokens_per_s,
        Some(500.0),
        "4 tokens in 8 ms, from timings"
    );
    let details: Vec<String> = results.targets[0].configs[0]
        .samples
        .iter()
        .filter_map(|s| s.error_detail.clone())
        .collect();
    assert!(
        details.iter().any(|d| d.starts_with("HTTP 503")),
        "{details:?}"
    );
    assert!(details.iter().any(|d| d.contains("--jinja")), "{details:?}");

    // Config C ran 9 requests too; the script had 3 streamed behaviours left, then defaults.
    let c = &results.targets[0].configs[1];
    let errors: Vec<(&str, usize)> = c
        .summary
        .errors
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(errors, [("stream_cut", 1), ("thinking_leaked", 1)]);
    for s in c.samples.iter().filter(|s| s.error.is_none()) {
        let ttft = s.ttft_ms.expect("ttft on streamed samples");
        assert!(ttft <= s.wall_ms, "{s:?}");
        assert_eq!(s.server.predicted_n, Some(4), "timings from the last chunk");
    }

    // Summaries are recomputable from the raw samples, also after a JSON round trip.
    let json = serde_json::to_string(&results).unwrap();
    results = serde_json::from_str(&json).unwrap();
    for cfg in &results.targets[0].configs {
        assert_eq!(run::summarize(&cfg.samples, true, None), cfg.summary);
    }
}

#[tokio::test]
async fn ollama_native_protocol_durations_are_converted_from_ns() {
    let url = start(Arc::new(Mutex::new(VecDeque::new()))).await;
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(tmp.path(), &url, "ollama", "[\"A\", \"C\"]", 3, "");
    let r = run::run(&p, &BTreeMap::new(), &noop).await;
    for c in &r.targets[0].configs {
        assert_eq!(c.summary.ok, 3, "{:?}", c.summary.errors);
        let s = &c.samples[0];
        assert_eq!(s.server.prompt_ms, Some(14.0));
        assert_eq!(s.server.predicted_ms, Some(13.0));
        assert_eq!(s.server.load_ms, Some(1.5));
        assert_eq!(s.server.prompt_n, Some(554));
        assert_eq!(s.strategy, Some(vlmctl_bench::schema::Strategy::WholeJson));
    }
    assert!(
        r.targets[0].configs[1]
            .samples
            .iter()
            .all(|s| s.ttft_ms.is_some())
    );
}

#[tokio::test]
async fn open_loop_measures_from_the_scheduled_time() {
    // A server slower than the period: queueing must show in the latencies.
    let script: Script = Arc::new(Mutex::new(VecDeque::new()));
    let url = start(script).await;
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(
        tmp.path(),
        &url,
        "openai",
        "[\"A\"]",
        10,
        "[load]\nrate_hz = 200.0",
    );
    let r = run::run(&p, &BTreeMap::new(), &noop).await;
    let s = &r.targets[0].configs[0].summary;
    assert_eq!(s.ok, 10);
    assert!(s.deadline_miss_pct.is_some());
}

#[test]
fn a_different_camera_frame_is_refused_with_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = plan(tmp.path(), "http://127.0.0.1:9", "openai", "[\"A\"]", 1, "");
    let text = std::fs::read_to_string(tmp.path().join("plan.toml")).unwrap();
    let pinned = text.replace(
        "image = \"camera.png\"",
        &format!(
            "image = \"camera.png\"\nimage_sha256 = \"{}\"",
            "ab".repeat(32)
        ),
    );
    std::fs::write(tmp.path().join("plan.toml"), pinned).unwrap();
    let err = LoadedPlan::load(&tmp.path().join("plan.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&"ab".repeat(32)) && err.contains("file has"),
        "{err}"
    );
    std::fs::write(tmp.path().join("plan.toml"), "version = 1\nrunz = 3\n").unwrap();
    let err = LoadedPlan::load(&tmp.path().join("plan.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("plan.toml:2") && err.contains("runz"), "{err}");
}
