//! After readiness: one chat request with thinking disabled (the runbook's rule), and the model
//! name clients must use, as `/v1/models` names it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::LifecycleError;

/// An 8x8 grey PNG, base64: enough for the projector to run once, for the vision smoke request.
pub const TINY_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAADklEQVR4nGNogAIGyhgAgIQgAQ2AJGEAAAAASUVORK5CYII=";

/// What the smoke request showed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Smoke {
    /// The model id from `/v1/models`.
    pub model: String,
    /// The answer's content.
    pub content: String,
    /// Client-side wall time.
    pub wall_ms: f64,
    /// Whether an image was sent.
    pub vision: bool,
}

/// The model id clients must use, as `/v1/models` names it (a cheap check that the API answers).
pub async fn served_model(base_url: &str, api_key: Option<&str>) -> Result<String, LifecycleError> {
    let fail = |why: String| LifecycleError::SmokeFailed {
        url: base_url.to_owned(),
        why,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut req = http.get(format!("{base_url}/v1/models"));
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let models: Value = req
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(format!("/v1/models: {e}")))?
        .json()
        .await
        .map_err(|e| fail(format!("/v1/models: {e}")))?;
    Ok(models["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Sends one short chat request (with an image when `vision`), thinking disabled.
pub async fn smoke(
    base_url: &str,
    api_key: Option<&str>,
    vision: bool,
) -> Result<Smoke, LifecycleError> {
    let fail = |why: String| LifecycleError::SmokeFailed {
        url: base_url.to_owned(),
        why,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let auth = |r: reqwest::RequestBuilder| match api_key {
        Some(k) => r.bearer_auth(k),
        None => r,
    };
    let model = served_model(base_url, api_key).await?;
    let mut content = vec![json!({"type": "text", "text": "Reply with one word: ready."})];
    if vision {
        content.push(json!({
            "type": "image_url",
            "image_url": {"url": format!("data:image/png;base64,{TINY_PNG_BASE64}")}
        }));
    }
    let started = std::time::Instant::now();
    let answer: Value = auth(http.post(format!("{base_url}/v1/chat/completions")))
        .json(&json!({
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 16,
            "temperature": 0,
            "chat_template_kwargs": {"enable_thinking": false},
        }))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(format!("/v1/chat/completions: {e}")))?
        .json()
        .await
        .map_err(|e| fail(format!("/v1/chat/completions: {e}")))?;
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let msg = &answer["choices"][0]["message"];
    let text = msg["content"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let reasoning = msg["reasoning_content"].as_str().unwrap_or_default().trim();
    if text.is_empty() && !reasoning.is_empty() {
        return Err(LifecycleError::ThinkingLeaked {
            url: base_url.to_owned(),
        });
    }
    if text.is_empty() {
        return Err(fail(format!("empty answer: {answer}")));
    }
    Ok(Smoke {
        model,
        content: text,
        wall_ms,
        vision,
    })
}
