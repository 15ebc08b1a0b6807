//! Before the first measured request: does each target answer at all? A wrong URL, a stopped
//! server or a host that drops packets would otherwise cost every request of the plan a connect
//! error (or, when packets are dropped, a whole `timeout_s` each: 105 x 30 s for the default
//! plan). One GET with a short timeout of its own tells in seconds.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::BenchError;
use crate::plan::{Backend, Target};

/// How long a target has to answer the check, whatever the plan's `timeout_s`: it is one cheap
/// GET, which a server that can run the plan answers in milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The path that is asked: llama-server's `/health`, then (for other OpenAI-compatible servers,
/// which may have no `/health`) `/v1/models`; Ollama's `/api/tags`.
#[must_use]
pub fn paths(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Openai => &["/health", "/v1/models"],
        Backend::Ollama => &["/api/tags"],
    }
}

/// [`check`]s every target in order, with the API keys by target name; the first that does not
/// answer is the error.
pub async fn check_all(
    targets: &[Target],
    api_keys: &BTreeMap<String, String>,
) -> Result<(), BenchError> {
    let http = reqwest::Client::new();
    for t in targets {
        check(&http, t, api_keys.get(&t.name).map(String::as_str)).await?;
    }
    Ok(())
}

/// Fails when `target` does not answer HTTP within [`TIMEOUT`]. Any status counts as an answer
/// (a 404 from a server without `/health`, a 503 while a model loads, a 401): the check is about
/// reaching the server; what its answers are worth, the run measures and reports.
pub async fn check(
    http: &reqwest::Client,
    target: &Target,
    api_key: Option<&str>,
) -> Result<(), BenchError> {
    let base = target.url.trim_end_matches('/');
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut last = None;
    for path in paths(target.backend) {
        let url = format!("{base}{path}");
        let mut req = http.get(&url);
        if let Some(k) = api_key {
            req = req.bearer_auth(k);
        }
        match tokio::time::timeout_at(deadline, req.send()).await {
            // Answered: llama-server's /health, or any other server that has it.
            Ok(Ok(resp)) if resp.status() != reqwest::StatusCode::NOT_FOUND => return Ok(()),
            // No /health here: the next path decides, but the server did answer.
            Ok(Ok(_)) => last = None,
            Ok(Err(e)) => {
                last = Some(Unreachable {
                    url,
                    // reqwest's message and its causes (`error sending request ...: connection refused`).
                    why: vlmctl_base::chain::one_line(&e),
                });
                // Refused or unresolvable: asking another path of the same host cannot help.
                break;
            }
            Err(_) => {
                last = Some(Unreachable {
                    url,
                    why: format!("no answer within {} s", TIMEOUT.as_secs()),
                });
                break;
            }
        }
    }
    match last {
        None => Ok(()),
        Some(Unreachable { url, why }) => Err(BenchError::Unreachable {
            target: target.name.clone(),
            url,
            why,
        }),
    }
}

struct Unreachable {
    url: String,
    why: String,
}
