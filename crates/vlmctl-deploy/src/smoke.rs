//! After readiness: one chat request with thinking disabled (the runbook's rule), sent by the
//! bench client (so "empty content with reasoning = thinking leaked" is decided in one place,
//! there), and the model name clients must use, as `/v1/models` names it.

use std::time::{Duration, Instant};

use serde::Serialize;
use vlmctl_bench::client::{self, ErrorKind};
use vlmctl_bench::plan::{Backend, Target};

use crate::DeployError;

/// An 8x8 grey PNG, base64: enough for the projector to run once, for the vision smoke request.
pub const TINY_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAADklEQVR4nGNogAIGyhgAgIQgAQ2AJGEAAAAASUVORK5CYII=";

/// What the smoke request showed.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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

fn http(timeout: Duration, url: &str) -> Result<reqwest::Client, DeployError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| DeployError::SmokeFailed {
            url: url.to_owned(),
            why: e.to_string(),
        })
}

/// The model id clients must use, as `/v1/models` names it (a cheap check that the API answers).
pub async fn served_model(base_url: &str, api_key: Option<&str>) -> Result<String, DeployError> {
    let fail = |why: String| DeployError::SmokeFailed {
        url: base_url.to_owned(),
        why,
    };
    let mut req = http(Duration::from_secs(10), base_url)?.get(format!("{base_url}/v1/models"));
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let models: serde_json::Value = req
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
) -> Result<Smoke, DeployError> {
    let model = served_model(base_url, api_key).await?;
    let target = Target {
        name: "smoke".to_owned(),
        url: base_url.to_owned(),
        backend: Backend::Openai,
        model: None,
        api_key_env: None,
        keep_alive: None,
    };
    let body = client::request_body(
        &target,
        "Reply with one word: ready.",
        vision.then_some(TINY_PNG_BASE64),
        false,
        16,
    );
    let timeout = Duration::from_secs(120);
    let started = Instant::now();
    let answer = client::send(
        &http(timeout, base_url)?,
        &target,
        api_key,
        &body,
        timeout,
        started,
    )
    .await
    .map_err(|(kind, why)| match kind {
        ErrorKind::ThinkingLeaked => DeployError::ThinkingLeaked {
            url: base_url.to_owned(),
        },
        _ => DeployError::SmokeFailed {
            url: base_url.to_owned(),
            why: format!("/v1/chat/completions: {why}"),
        },
    })?;
    Ok(Smoke {
        model,
        content: answer.content.trim().to_owned(),
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
        vision,
    })
}
