//! After readiness: one chat request with thinking disabled (the runbook's rule), sent by the
//! bench client (so "empty content with reasoning = thinking leaked" is decided in one place,
//! there), and the model name clients must use, as `/v1/models` names it.

use std::time::{Duration, Instant};

use serde::Serialize;
use vlmctl_bench::client::{self, ErrorKind};
use vlmctl_bench::plan::{Backend, Target};

use crate::DeployError;

/// The runbooks' camera frame (`examples/camera.png`), sent by the vision smoke request.
pub const CAMERA_PNG: &[u8] = include_bytes!("../../../examples/camera.png");

/// The fewest prompt tokens an image must add for the server to have counted it. A projector
/// turns a frame into tens to hundreds of tokens (Gemma 3: 256; the test projector: 64); a
/// server that dropped the image counts the same prompt with it and without.
pub const MIN_IMAGE_TOKENS: u64 = 16;

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
    /// Prompt tokens the server counted for the request (`prompt_n + cache_n`), when it says.
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    /// Prompt tokens the image added (the same request with it, minus without it).
    #[serde(default)]
    pub image_tokens: Option<u64>,
}

/// Pure: the tokens an image added, from the prompt sizes the server counted with it and
/// without it; an error (with, without) when it added fewer than [`MIN_IMAGE_TOKENS`]: the
/// server ignored the image. `None` when the server does not report prompt sizes.
pub fn image_tokens(with: Option<u64>, without: Option<u64>) -> Result<Option<u64>, (u64, u64)> {
    match (with, without) {
        (Some(w), Some(wo)) if w >= wo.saturating_add(MIN_IMAGE_TOKENS) => Ok(Some(w - wo)),
        (Some(w), Some(wo)) => Err((w, wo)),
        _ => Ok(None),
    }
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

/// Sends one short chat request, thinking disabled. With `vision`, the same request goes first
/// without the image and then with the camera frame, and the server must have counted the
/// image's tokens ([`image_tokens`]); the answer shown is the one to the image.
pub async fn smoke(
    base_url: &str,
    api_key: Option<&str>,
    vision: bool,
) -> Result<Smoke, DeployError> {
    let model = served_model(base_url, api_key).await?;
    let without = if vision {
        Some(ask(base_url, api_key, None).await?.1)
    } else {
        None
    };
    let image = vision.then(|| vlmctl_bench::base64(CAMERA_PNG));
    let started = Instant::now();
    let (content, prompt_tokens) = ask(base_url, api_key, image.as_deref()).await?;
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let image_tokens = match without {
        Some(without) => image_tokens(prompt_tokens, without).map_err(|(with, without)| {
            DeployError::ImageIgnored {
                url: base_url.to_owned(),
                with,
                without,
                logs: String::new(),
            }
        })?,
        None => None,
    };
    Ok(Smoke {
        model,
        content,
        wall_ms,
        vision,
        prompt_tokens,
        image_tokens,
    })
}

/// One chat request (with `image_b64` when given): the answer and the prompt tokens the server
/// counted.
async fn ask(
    base_url: &str,
    api_key: Option<&str>,
    image_b64: Option<&str>,
) -> Result<(String, Option<u64>), DeployError> {
    let target = Target {
        name: "smoke".to_owned(),
        url: base_url.to_owned(),
        host: None,
        deployment: None,
        backend: Backend::Openai,
        model: None,
        api_key_env: None,
        keep_alive: None,
    };
    let body = client::request_body(&target, "Reply with one word: ready.", image_b64, false, 16);
    let timeout = Duration::from_secs(120);
    let answer = client::send(
        &http(timeout, base_url)?,
        &target,
        api_key,
        &body,
        timeout,
        Instant::now(),
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
    let prompt = answer
        .server
        .prompt_n
        .map(|n| n + answer.server.cache_n.unwrap_or(0));
    Ok((answer.content.trim().to_owned(), prompt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_counts_only_when_it_adds_tokens() {
        assert_eq!(
            image_tokens(Some(99), Some(32)),
            Ok(Some(67)),
            "the test projector"
        );
        assert_eq!(image_tokens(Some(32), Some(32)), Err((32, 32)), "dropped");
        assert_eq!(image_tokens(Some(47), Some(32)), Err((47, 32)), "15 < 16");
        assert_eq!(image_tokens(Some(48), Some(32)), Ok(Some(16)));
        assert_eq!(image_tokens(Some(3), Some(32)), Err((3, 32)));
        assert_eq!(
            image_tokens(None, Some(32)),
            Ok(None),
            "no timings: not judged"
        );
        assert_eq!(image_tokens(Some(1), Some(u64::MAX)), Err((1, u64::MAX)));
    }

    #[tokio::test]
    async fn the_smoke_passes_a_server_that_counts_the_frame_and_fails_one_that_drops_it() {
        use vlmctl_bench::fake_server::{FakeServer, IMAGE_TOKENS, Options};
        let counting = FakeServer::start([]).await.unwrap();
        let s = smoke(&counting.endpoint(), None, true).await.unwrap();
        assert_eq!(s.image_tokens, Some(IMAGE_TOKENS));
        let text_only = smoke(&counting.endpoint(), None, false).await.unwrap();
        assert_eq!(text_only.image_tokens, None);
        let dropping = FakeServer::start_with(
            [],
            Options {
                ignores_images: true,
                ..Options::default()
            },
        )
        .await
        .unwrap();
        let e = smoke(&dropping.endpoint(), None, true).await.unwrap_err();
        assert!(
            matches!(e, DeployError::ImageIgnored { with, without, .. } if with == without),
            "{e:?}"
        );
        assert!(e.to_string().contains("ignored the image"), "{e}");
    }

    #[test]
    fn the_camera_frame_is_the_examples_png() {
        assert!(CAMERA_PNG.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}
