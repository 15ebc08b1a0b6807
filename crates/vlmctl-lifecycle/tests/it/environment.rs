//! Proof that the test environment is real: the locally built llama-server image serves the real
//! Gemma 3 270M GGUF through the real daemon, bound to loopback, and answers a chat completion.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use serde_json::{Value, json};

use crate::common::{Env, TestRun, docker, free_port, poll_until};

#[tokio::test]
async fn llama_server_image_serves_the_real_model() {
    let image = Env::require("VLMCTL_TEST_LLAMA_IMAGE");
    let model = Env::require("VLMCTL_TEST_MODEL");
    let docker = docker().await;
    let run = TestRun::new(&docker, "serve");
    run.guard(serve_and_chat(&docker, &run, &image, Path::new(&model)))
        .await;
}

async fn serve_and_chat(
    docker: &Docker,
    run: &TestRun,
    image: &str,
    model: &Path,
) -> anyhow::Result<()> {
    let dir = model.parent().context("model path has no parent")?;
    let file = model.file_name().context("model path has no file name")?;
    let port = free_port();
    let name = run.name("llama");
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(
            [
                "--model",
                &format!("/models/{}", file.to_string_lossy()),
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--ctx-size",
                "2048",
                "--threads",
                "1",
                "--jinja",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        labels: Some(run.labels()),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/models:ro", dir.display())]),
            network_mode: Some("host".to_owned()),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    docker.create_container(Some(opts), body).await?;
    docker.start_container(&name, None).await?;

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(docker, &http, &base, &name).await?;

    let answer: Value = http
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({
            "messages": [{"role": "user", "content": "Say hello in one word."}],
            "max_tokens": 8,
            "temperature": 0,
            "chat_template_kwargs": {"enable_thinking": false},
        }))
        .timeout(Duration::from_secs(60))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .with_context(|| format!("no content in {answer}"))?;
    assert!(!content.trim().is_empty(), "empty content in {answer}");
    let timings = &answer["timings"];
    assert!(
        timings["predicted_n"].as_u64().is_some_and(|n| n > 0),
        "no timings.predicted_n in {answer}"
    );
    assert!(
        timings["prompt_ms"].as_f64().is_some(),
        "no timings.prompt_ms in {answer}"
    );

    // Bound to loopback: the port must not answer on another address of the host.
    let inspect = docker.inspect_container(&name, None).await?;
    let args = inspect.args.unwrap_or_default();
    assert!(
        args.windows(2).any(|w| w == ["--host", "127.0.0.1"]),
        "{args:?}"
    );
    let binds = inspect
        .host_config
        .and_then(|h| h.binds)
        .unwrap_or_default();
    assert!(binds.iter().all(|b| b.ends_with(":ro")), "{binds:?}");
    Ok(())
}

/// Polls `/health` until 200 (503 means "loading model"), failing early with the exit code and
/// log tail if the container stops.
async fn wait_ready(
    docker: &Docker,
    http: &reqwest::Client,
    base: &str,
    name: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let saw_loading = std::cell::Cell::new(false);
    poll_until("/health to answer 200", Duration::from_secs(120), || {
        let saw_loading = &saw_loading;
        async move {
            let state = docker.inspect_container(name, None).await?.state;
            if !state.as_ref().and_then(|s| s.running).unwrap_or(false) {
                let code = state.and_then(|s| s.exit_code);
                bail!(
                    "llama-server exited (code {code:?}) before it was ready:\n{}",
                    vlmctl_lifecycle::containers::log_tail(docker, name, 20).await
                );
            }
            match http.get(format!("{base}/health")).send().await {
                Ok(r) if r.status() == 200 => Ok(Some(())),
                Ok(r) if r.status() == 503 => {
                    saw_loading.set(true);
                    Ok(None)
                }
                Ok(r) => bail!("/health answered {}", r.status()),
                Err(_) => Ok(None), // not listening yet
            }
        }
    })
    .await?;
    eprintln!(
        "llama-server ready after {:?} (saw 503 while loading: {})",
        started.elapsed(),
        saw_loading.get()
    );

    Ok(())
}
