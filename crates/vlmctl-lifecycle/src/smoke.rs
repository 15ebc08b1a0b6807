//! After readiness: one chat request with thinking disabled (the runbook's rule), and the model
//! name clients must use, as `/v1/models` names it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::LifecycleError;

/// An 8x8 grey PNG: enough for the projector to run once, for the vision smoke request.
pub const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x08, 0x08, 0x00, 0x00, 0x00, 0x00, 0xe1, 0x64, 0xe1,
    0x57, 0x00, 0x00, 0x00, 0x0e, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x68, 0x80, 0x02, 0x06,
    0xca, 0x18, 0x00, 0x80, 0x84, 0x20, 0x01, 0x0d, 0x80, 0x24, 0x61, 0x00, 0x00, 0x00, 0x00, 0x49,
    0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

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
    let models: Value = auth(http.get(format!("{base_url}/v1/models")))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(format!("/v1/models: {e}")))?
        .json()
        .await
        .map_err(|e| fail(format!("/v1/models: {e}")))?;
    let model = models["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut content = vec![json!({"type": "text", "text": "Reply with one word: ready."})];
    if vision {
        use std::fmt::Write as _;
        let mut b64 = String::new();
        let _ = write!(b64, "data:image/png;base64,{}", base64(TINY_PNG));
        content.push(json!({"type": "image_url", "image_url": {"url": b64}}));
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

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
