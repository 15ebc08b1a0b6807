//! The exported container is the provisioned one: a container started from the `docker run`
//! line (the line `provision --dry-run` and `export --format docker-run` print), through the
//! docker CLI, on a port other than the image's 8080, becomes healthy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bollard::models::HealthStatusEnum;
use vlmctl_lifecycle::containers::{self, ContainerPlan, HEALTH_INTERVAL_S};
use vlmctl_lifecycle::spec::{ModelMount, Spec};

use crate::common::{Env, RUN_LABEL, TestRun, docker, free_port, poll_until};

#[tokio::test]
async fn a_container_from_the_exported_docker_run_line_becomes_healthy_on_the_spec_port() {
    let docker = docker().await;
    let run = TestRun::new(&docker, "exported");
    run.guard(async {
        let image = Env::require("VLMCTL_TEST_LLAMA_IMAGE");
        let model = PathBuf::from(Env::require("VLMCTL_TEST_MODEL"));
        let port = free_port();
        anyhow::ensure!(
            port != 8080,
            "the image's own check probes 8080: pick another port"
        );
        let name = run.name("exported");
        let text = format!(
            "name = \"{name}\"\nimage = \"{image}\"\nmodel = \"gemma-3-270m\"\ngpus = \"none\"\n\
             restart = \"no\"\n[server]\nhost = \"127.0.0.1\"\nport = {port}\nctx_size = 1024\n\
             n_gpu_layers = 0\nthreads = 1\n[health]\ntimeout_s = 90\n"
        );
        let spec = Spec::parse(&text, Path::new("exported.toml"))?;
        let mount = ModelMount {
            dir: model.parent().context("model dir")?.to_owned(),
            model_file: model
                .file_name()
                .context("model file")?
                .to_string_lossy()
                .into_owned(),
            mmproj_file: None,
            lock_sha256: "00".repeat(32),
        };
        // What export does: the image's own check (port 8080), aimed at the spec's port.
        let image_test = containers::image_health_test(&docker, &image).await;
        anyhow::ensure!(image_test.is_some(), "{image} has no HEALTHCHECK to aim");
        let line = ContainerPlan::of(&spec, &mount, image_test.as_deref()).docker_run_line();
        anyhow::ensure!(line.contains("--health-cmd"), "{line}");
        // The test run's label, so that the guard removes the container whatever happens.
        let labelled = line.replacen(
            "docker run -d",
            &format!("docker run -d --label {RUN_LABEL}={}", run.id),
            1,
        );
        let started = std::process::Command::new("sh")
            .arg("-c")
            .arg(&labelled)
            .output()
            .context("run sh -c 'docker run ...'")?;
        anyhow::ensure!(
            started.status.success(),
            "{labelled}\n{}",
            String::from_utf8_lossy(&started.stderr)
        );
        // The model loads in seconds; the check runs every HEALTH_INTERVAL_S.
        let limit = Duration::from_secs(90 + 4 * HEALTH_INTERVAL_S);
        let began = std::time::Instant::now();
        poll_until("the exported container to be healthy", limit, || async {
            let state = docker
                .inspect_container(&name, None)
                .await?
                .state
                .context("no state")?;
            let health = state.health.context("no health check on the container")?;
            match health.status {
                Some(HealthStatusEnum::HEALTHY) => Ok(Some(())),
                Some(HealthStatusEnum::UNHEALTHY) => anyhow::bail!(
                    "unhealthy: {:?}",
                    health
                        .log
                        .unwrap_or_default()
                        .last()
                        .and_then(|l| l.output.clone())
                ),
                _ if state.running == Some(false) => {
                    anyhow::bail!("exited: {}", containers::log_tail(&docker, &name, 20).await)
                }
                _ => Ok(None),
            }
        })
        .await?;
        eprintln!("exported container healthy after {:?}", began.elapsed());
        Ok(())
    })
    .await;
}
