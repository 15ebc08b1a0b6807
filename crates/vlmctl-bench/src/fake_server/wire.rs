//! What the fake server's answers look like on the wire, as each server writes them:
//! llama-server's JSON, its SSE chunks, `usage` and `timings`; Ollama's JSON and NDJSON lines
//! with durations in nanoseconds; and the prompt as pseudo-tokens (equal prefixes, equal
//! tokens), which the cache and the counts are made of. Pure functions of the request and the
//! scripted reply; the serving (slots, delays, cuts) is in the parent module.

use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Value, json};

/// Prompt tokens one image adds, as llama-server counted `examples/camera.png` with the test
/// environment's projector for Gemma 3 270M (64 image embeddings and the image markers around
/// them): 693 prompt tokens for the nav prompt alone, 759 with the frame.
pub const IMAGE_TOKENS: u64 = 66;

/// Which server's wire format a request is answered in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Openai,
    Ollama,
}

/// A prompt's size and how much of it the cache served.
#[derive(Clone, Copy, Debug)]
pub(super) struct PromptCount {
    pub(super) total: u64,
    pub(super) cached: u64,
}

impl PromptCount {
    pub(super) fn evaluated(self) -> u64 {
        self.total - self.cached
    }
}

pub(super) fn token(what: impl Hash) -> u64 {
    // `DefaultHasher::new()` has fixed keys: the same text gives the same tokens every run.
    let mut h = DefaultHasher::new();
    what.hash(&mut h);
    h.finish()
}

/// The prompt as pseudo-tokens (see the parent module's documentation): equal prefixes give equal
/// tokens, so the cache's common prefix is llama-server's.
pub(super) fn prompt_tokens(protocol: Protocol, body: &Value, images: bool) -> Vec<u64> {
    let mut out = vec![token("<bos>")];
    let text = |out: &mut Vec<u64>, t: &str| {
        out.extend(t.as_bytes().chunks(4).map(token));
    };
    let image = |out: &mut Vec<u64>, data: &str| {
        if !images {
            return;
        }
        let id = token(data);
        out.extend((0..IMAGE_TOKENS).map(|i| token((id, i))));
    };
    for m in body["messages"].as_array().into_iter().flatten() {
        out.extend([
            token("<start_of_turn>"),
            token(m["role"].as_str().unwrap_or_default()),
            token("\n"),
        ]);
        match &m["content"] {
            Value::String(t) => text(&mut out, t),
            Value::Array(parts) => {
                for p in parts {
                    match p["type"].as_str() {
                        Some("text") => text(&mut out, p["text"].as_str().unwrap_or_default()),
                        Some("image_url") => {
                            image(&mut out, p["image_url"]["url"].as_str().unwrap_or_default());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if protocol == Protocol::Ollama {
            for i in m["images"].as_array().into_iter().flatten() {
                image(&mut out, i.as_str().unwrap_or_default());
            }
        }
        out.extend([token("<end_of_turn>"), token("\n")]);
    }
    out.extend([token("<start_of_turn>"), token("model"), token("\n")]);
    out
}

/// Content in token-sized pieces (on character boundaries).
pub(super) fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect()).collect()
}

/// Milliseconds per prompt token evaluated.
pub(super) const PROMPT_MS_PER_TOKEN: f64 = 0.4;

pub(super) fn openai_timings(prompt: PromptCount) -> Value {
    json!({
        "cache_n": prompt.cached, "prompt_n": prompt.evaluated(),
        "prompt_ms": prompt.evaluated() as f64 * PROMPT_MS_PER_TOKEN,
        "prompt_per_token_ms": PROMPT_MS_PER_TOKEN,
        "prompt_per_second": 1000.0 / PROMPT_MS_PER_TOKEN, "predicted_n": 4, "predicted_ms": 8.0,
        "predicted_per_token_ms": 2.0, "predicted_per_second": 500.0,
    })
}

pub(super) fn openai_usage(prompt: PromptCount) -> Value {
    json!({"completion_tokens": 4, "prompt_tokens": prompt.total,
           "total_tokens": prompt.total + 4,
           "prompt_tokens_details": {"cached_tokens": prompt.cached}})
}

pub(super) fn openai_json(
    model: &str,
    prompt: PromptCount,
    content: &str,
    reasoning: &str,
) -> Value {
    let mut message = json!({"role": "assistant", "content": content});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    json!({
        "choices": [{"finish_reason": "stop", "index": 0, "message": message}],
        "created": 0, "model": model, "system_fingerprint": "fake", "object": "chat.completion",
        "usage": openai_usage(prompt), "id": "chatcmpl-fake", "timings": openai_timings(prompt),
    })
}

pub(super) fn openai_chunk(model: &str, choices: &Value) -> Value {
    json!({
        "choices": choices, "created": 0, "id": "chatcmpl-fake", "model": model,
        "system_fingerprint": "fake", "object": "chat.completion.chunk",
    })
}

pub(super) fn openai_sse(
    model: &str,
    prompt: PromptCount,
    content: &str,
    reasoning: &str,
    include_usage: bool,
    cut: bool,
) -> String {
    let delta = |d: Value| {
        openai_chunk(
            model,
            &json!([{"finish_reason": null, "index": 0, "delta": d}]),
        )
    };
    let mut events = vec![delta(json!({"role": "assistant", "content": null}))];
    for p in pieces(reasoning) {
        events.push(delta(json!({ "reasoning_content": p })));
    }
    for p in pieces(content) {
        events.push(delta(json!({ "content": p })));
    }
    let mut out = String::from(": ping\n\n");
    if !cut {
        let mut finish = openai_chunk(
            model,
            &json!([{"finish_reason": "stop", "index": 0, "delta": {}}]),
        );
        if include_usage {
            events.push(finish);
            let mut last = openai_chunk(model, &json!([]));
            last["usage"] = openai_usage(prompt);
            last["timings"] = openai_timings(prompt);
            events.push(last);
        } else {
            finish["timings"] = openai_timings(prompt);
            events.push(finish);
        }
    }
    for e in events {
        let _ = write!(out, "data: {e}\n\n");
    }
    if !cut {
        out.push_str("data: [DONE]\n\n");
    }
    out
}

pub(super) const CREATED_AT: &str = "2025-01-01T00:00:00.000000Z";

pub(super) fn ollama_done(model: &Value, prompt: PromptCount) -> Value {
    json!({
        "model": model, "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop", "done": true,
        "total_duration": 156_000_000u64, "load_duration": 1_500_000u64,
        "prompt_eval_count": prompt.total, "prompt_eval_duration": 14_000_000u64,
        "eval_count": 9, "eval_duration": 13_000_000u64,
    })
}

pub(super) fn ollama_json(
    model: &Value,
    prompt: PromptCount,
    content: &str,
    reasoning: &str,
) -> Value {
    let mut v = ollama_done(model, prompt);
    v["message"]["content"] = json!(content);
    if !reasoning.is_empty() {
        v["message"]["thinking"] = json!(reasoning);
    }
    v
}

pub(super) fn ollama_ndjson(
    model: &Value,
    prompt: PromptCount,
    content: &str,
    reasoning: &str,
    cut: bool,
) -> String {
    let line = |field: &str, piece: String| {
        let mut message = json!({"role": "assistant", "content": ""});
        message[field] = json!(piece);
        json!({"model": model, "created_at": CREATED_AT, "message": message, "done": false})
    };
    let mut lines: Vec<Value> = pieces(reasoning)
        .into_iter()
        .map(|p| line("thinking", p))
        .collect();
    lines.extend(pieces(content).into_iter().map(|p| line("content", p)));
    if !cut {
        lines.push(ollama_done(model, prompt));
    }
    let mut out = String::new();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    out
}
