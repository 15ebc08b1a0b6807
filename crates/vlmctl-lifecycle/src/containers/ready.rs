//! Readiness: waiting for `/health`, the server's log, one probe of `/health`.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::StreamExt;

use crate::LifecycleError;

/// Polls `/health` on `base_url` until 200 (llama-server answers 503 "Loading model" while
/// loading; `/v1/models` answers 200 too early, so it is not a signal), watching the
/// container: if it exits, fail with its exit code and log tail. Returns the startup time.
pub async fn wait_ready(
    docker: &Docker,
    name: &str,
    base_url: &str,
    timeout: Duration,
) -> Result<Duration, LifecycleError> {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| LifecycleError::NotReady {
            container: name.to_owned(),
            waited_s: 0,
            last: e.to_string(),
        })?;
    loop {
        let state = docker
            .inspect_container(name, None)
            .await
            .map_err(|source| LifecycleError::Docker {
                action: format!("inspect container {name}"),
                source,
            })?
            .state;
        if !state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Err(LifecycleError::ExitedDuringLoad {
                container: name.to_owned(),
                exit_code: state.and_then(|s| s.exit_code).unwrap_or(-1),
                logs: log_tail(docker, name, 20).await,
            });
        }
        let last = match http.get(format!("{base_url}/health")).send().await {
            Ok(r) if r.status() == 200 => return Ok(started.elapsed()),
            Ok(r) => format!("/health answered {}", r.status()),
            Err(e) => format!("/health: {e}"),
        };
        if started.elapsed() >= timeout {
            return Err(LifecycleError::NotReady {
                container: name.to_owned(),
                waited_s: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `n` log lines (stdout and stderr) of a container.
pub async fn log_tail(docker: &Docker, name: &str, n: usize) -> String {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&n.to_string())
        .build();
    let mut out = String::new();
    let mut logs = docker.logs(name, Some(opts));
    while let Some(Ok(chunk)) = logs.next().await {
        out.push_str(&chunk.to_string());
    }
    out
}

/// The first `max_lines` log lines (stdout and stderr, in order) of a container, read from its
/// start: what llama-server says about its devices and the model's layers comes early, and a
/// tail would lose it once requests are logged. Read up to `max_bytes` at most.
pub async fn log_head(docker: &Docker, name: &str, max_lines: usize, max_bytes: usize) -> String {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut out = String::new();
    let mut lines = 0;
    let mut logs = docker.logs(name, Some(opts));
    while let Some(Ok(chunk)) = logs.next().await {
        let chunk = chunk.to_string();
        lines += chunk.matches('\n').count();
        out.push_str(&chunk);
        if out.len() >= max_bytes || lines >= max_lines {
            break;
        }
    }
    // Whole lines only, at most `max_lines` of them.
    let mut head: String = out.split_inclusive('\n').take(max_lines).collect();
    if head.len() > max_bytes {
        let mut cut = max_bytes;
        while !head.is_char_boundary(cut) {
            cut -= 1;
        }
        head.truncate(cut);
    }
    head
}

/// `/health` in a word: `ok`, `loading (503)`, `HTTP <code>`, or `down`.
pub async fn probe_health(host: &str, port: u16) -> String {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return "down".to_owned();
    };
    match http
        .get(format!("{}/health", crate::spec::http_base(host, port)))
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => "ok".to_owned(),
        Ok(r) if r.status() == 503 => "loading (503)".to_owned(),
        Ok(r) => format!("HTTP {}", r.status().as_u16()),
        Err(_) => "down".to_owned(),
    }
}
