//! Gates, stop/restore, launch, readiness, relaunch and teardown against the real daemon and
//! registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateContainerOptionsBuilder};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use vlmctl_lifecycle::containers::{self, Launch};
use vlmctl_lifecycle::gates::{self, GateResult, GateStatus};
use vlmctl_lifecycle::platform::{self, Platform, PlatformVerdict};
use vlmctl_lifecycle::spec::{ModelMount, Spec};
use vlmctl_lifecycle::{LifecycleError, journal};

use crate::common::{Env, TestRun, docker, free_port, poll_until};

/// Runs `body`, then removes everything the run created (also after a panic), then reports.
macro_rules! with_run {
    ($what:expr, |$docker:ident, $run:ident| $body:expr) => {{
        let $docker = docker().await;
        let $run = TestRun::new(&$docker, $what);
        let body = async { $body };
        // Cleanup runs even when an assertion inside the body panics.
        $run.guard(body).await;
    }};
}

/// A `FROM scratch` image holding the static busybox `scripts/test` provides.
async fn busybox(docker: &Docker, run: &TestRun) -> anyhow::Result<String> {
    let bin = std::fs::read(Env::require("VLMCTL_TEST_BUSYBOX")).context("read busybox")?;
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = b"FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n";
    for (name, data, mode) in [
        ("Dockerfile", &dockerfile[..], 0o644),
        ("busybox", &bin[..], 0o755),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, name, data)?;
    }
    let tag = format!("vlmctl-test/busybox:{}", run.id);
    let opts = BuildImageOptionsBuilder::default()
        .t(&tag)
        .labels(&run.image_labels())
        .rm(true)
        .build();
    let mut build = docker.build_image(
        opts,
        None,
        Some(bollard::body_full(tar.into_inner()?.into())),
    );
    while let Some(step) = build.next().await {
        if let Some(e) = step?.error_detail.and_then(|d| d.message) {
            anyhow::bail!("building busybox image: {e}");
        }
    }
    Ok(tag)
}

/// A running container from `image` with `cmd`, restart policy, host network, labelled.
async fn run_container(
    docker: &Docker,
    run: &TestRun,
    name: &str,
    image: &str,
    cmd: &[&str],
    restart: RestartPolicyNameEnum,
) -> anyhow::Result<String> {
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
        labels: Some(run.labels()),
        // busybox as PID 1 ignores SIGTERM: a stop lasts this long before dockerd's SIGKILL,
        // and vlmctl honours a container's own stop timeout.
        stop_timeout: Some(2),
        host_config: Some(HostConfig {
            network_mode: Some("host".to_owned()),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let id = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body,
        )
        .await?
        .id;
    docker.start_container(&id, None).await?;
    Ok(id)
}

fn spec(name: &str, image: &str, port: u16, extra: &str) -> Spec {
    let text = format!(
        "name = \"{name}\"\nimage = \"{image}\"\nmodel = \"gemma-3-270m\"\ngpus = \"none\"\nrestart = \"no\"\n{extra}\n\
         [server]\nhost = \"127.0.0.1\"\nport = {port}\nctx_size = 1024\nn_gpu_layers = 0\nthreads = 1\n\
         [health]\ntimeout_s = 90\n"
    );
    match Spec::parse(&text, Path::new("test.toml")) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn model_mount() -> ModelMount {
    let model = PathBuf::from(Env::require("VLMCTL_TEST_MODEL"));
    ModelMount {
        dir: model.parent().expect("model dir").to_owned(),
        model_file: model
            .file_name()
            .expect("file")
            .to_string_lossy()
            .into_owned(),
        mmproj_file: None,
        lock_sha256: "00".repeat(32),
    }
}

fn state(
    docker: &Docker,
    name: &str,
) -> impl std::future::Future<Output = anyhow::Result<(bool, String)>> {
    let (docker, name) = (docker.clone(), name.to_owned());
    async move {
        let i = docker.inspect_container(&name, None).await?;
        let running = i.state.and_then(|s| s.running).unwrap_or(false);
        let policy = i
            .host_config
            .and_then(|h| h.restart_policy)
            .and_then(|r| r.name)
            .map(|n| n.to_string())
            .unwrap_or_default();
        Ok((running, policy))
    }
}

#[tokio::test]
async fn conflict_is_journalled_stopped_and_restored_after_a_crash() {
    with_run!("restore", |docker, run| {
        let image = busybox(&docker, &run).await?;
        let name = run.name("nemotron");
        run_container(
            &docker,
            &run,
            &name,
            &image,
            &["sleep", "3600"],
            RestartPolicyNameEnum::ALWAYS,
        )
        .await?;
        let spec = spec(
            &run.name("server"),
            &image,
            free_port(),
            &format!("[[conflict]]\nname = \"{name}\""),
        );

        let found = containers::conflicts(&docker, &spec, &HashMap::new()).await?;
        assert_eq!(found.len(), 1, "{found:?}");
        let c = &found[0];
        assert!(c.named_in_spec && c.restart_policy == "always", "{c:?}");
        assert_eq!(
            c.stop_timeout_s, 2,
            "the container's own stop timeout: {c:?}"
        );
        assert!(c.status.starts_with("Up"), "{c:?}");

        let state_dir = tempfile::tempdir()?;
        let jpath = journal::path(state_dir.path(), &spec.name);
        let entry = journal::JournalEntry {
            id: c.id.clone(),
            name: c.name.clone(),
            prior_state: vlmctl_lifecycle::journal::PriorState::Running,
            restart_policy: c.restart_policy.clone(),
            run_id: "r1".into(),
            stop_timeout_s: c.stop_timeout_s,
            stop_issued_unix: None,
            check: None,
            check_timeout_s: 60,
            restore: vlmctl_lifecycle::spec::RestoreWhen::Always,
            left_stopped: false,
        };
        journal::add_stops(&jpath, &spec.name, std::slice::from_ref(&entry))?;
        journal::stop_one(&docker, &jpath, &entry).await?;
        assert!(jpath.exists(), "journal written");
        assert_eq!(state(&docker, &name).await?, (false, "always".to_owned()));

        // The process "crashes" here: nothing restores. Later, a fresh client restores.
        drop(docker);
        let docker2 = crate::common::docker().await;
        let restored = journal::restore(&docker2, &jpath, journal::Scope::All).await?;
        assert_eq!(restored.started, vec![name.clone()]);
        assert_eq!(
            state(&docker2, &name).await?,
            (true, "always".to_owned()),
            "restart policy intact"
        );
        assert!(!jpath.exists(), "journal cleared once everything is back");
        let again = journal::restore(&docker2, &jpath, journal::Scope::All).await?;
        assert!(
            again.started.is_empty() && again.already_running.is_empty(),
            "idempotent: {again:?}"
        );
        Ok(())
    });
}

#[tokio::test]
async fn port_held_by_a_container_is_named_by_the_gate() {
    with_run!("port", |docker, run| {
        let image = busybox(&docker, &run).await?;
        let port = free_port();
        let holder = run.name("holder");
        run_container(
            &docker,
            &run,
            &holder,
            &image,
            &["httpd", "-f", "-p", &format!("127.0.0.1:{port}")],
            RestartPolicyNameEnum::NO,
        )
        .await?;
        let spec = spec(&run.name("server"), &image, port, "");
        let report = poll_until(
            "the port gate to see the listener",
            Duration::from_secs(20),
            || {
                let (docker, spec) = (&docker, &spec);
                async move {
                    let r = gates::run(
                        &crate::common::local_engine(),
                        Ok(docker),
                        spec,
                        vlmctl_lifecycle::gpu::Probe::Local(None),
                        async { GateResult::new("weights", GateStatus::Pass, "test", None) },
                    )
                    .await;
                    let port_gate = r.results.iter().find(|g| g.name == "port").cloned();
                    Ok(port_gate
                        .filter(|g| g.status == GateStatus::Fail)
                        .map(|g| (g, r)))
                }
            },
        )
        .await?;
        let (gate, report) = report;
        assert!(
            gate.evidence.contains(&format!("container {holder}")),
            "{gate:?}"
        );
        assert!(!report.passed());
        let daemon = &report.results[0];
        assert_eq!(daemon.status, GateStatus::Pass, "{daemon:?}");
        assert!(daemon.evidence.contains("API 1."), "{daemon:?}");
        // The platform of a local-only image comes from the image itself.
        assert_eq!(
            report.results[1].status,
            GateStatus::Pass,
            "{:?}",
            report.results[1]
        );
        Ok(())
    });
}

#[tokio::test]
async fn server_that_exits_while_loading_fails_with_code_and_logs() {
    with_run!("early-exit", |docker, run| {
        let image = Env::require("VLMCTL_TEST_LLAMA_IMAGE");
        let spec = spec(&run.name("server"), &image, free_port(), "");
        let empty = tempfile::tempdir()?;
        let mount = ModelMount {
            dir: empty.path().to_owned(),
            model_file: "absent.gguf".into(),
            mmproj_file: None,
            lock_sha256: "00".repeat(32),
        };
        launch_labelled(&docker, &spec, &mount, &run).await?;
        let err = containers::wait_ready(
            &docker,
            &spec.name,
            &format!("http://127.0.0.1:{}", spec.server.port),
            Duration::from_secs(60),
        )
        .await
        .expect_err("must fail");
        let LifecycleError::ExitedDuringLoad {
            exit_code, logs, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_ne!(*exit_code, 0);
        assert!(logs.contains("absent.gguf"), "{logs}");
        assert!(err.hint().contains("model path"), "{}", err.hint());
        Ok(())
    });
}

/// `containers::launch` with the test run's labels, recording nothing.
async fn launch_labelled(
    docker: &Docker,
    spec: &Spec,
    mount: &ModelMount,
    run: &TestRun,
) -> Result<Launch, vlmctl_lifecycle::LifecycleError> {
    containers::launch(
        docker,
        spec,
        mount,
        None,
        &run.id,
        &run.labels(),
        &mut |_| Ok(()),
    )
    .await
}

/// Labels (managed, spec, lock, run), the read-only bind mount, no capabilities.
fn assert_created_as_specified(
    i: &bollard::models::ContainerInspectResponse,
    spec: &vlmctl_lifecycle::spec::Spec,
    mount: &ModelMount,
    run_id: &str,
) {
    let labels = i
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    assert_eq!(
        labels.get("org.vlmctl.managed").map(String::as_str),
        Some("true")
    );
    assert_eq!(labels.get("org.vlmctl.spec-sha256"), Some(&spec.sha256()));
    assert_eq!(
        labels.get("org.vlmctl.lock-sha256"),
        Some(&mount.lock_sha256)
    );
    assert_eq!(labels.get("org.vlmctl.run-id"), Some(&run_id.to_owned()));
    let hc = i.host_config.clone().unwrap_or_default();
    assert_bind_mount(hc.mounts.clone(), &mount.dir);
    assert_eq!(hc.cap_drop.unwrap_or_default(), vec!["ALL".to_owned()]);
    assert_eq!(
        hc.security_opt.unwrap_or_default(),
        vec!["no-new-privileges".to_owned()]
    );
}

/// A bind mount of exactly the verified directory, read-only: never a named volume.
fn assert_bind_mount(mounts: Option<Vec<bollard::models::Mount>>, dir: &Path) {
    let mounts = mounts.unwrap_or_default();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let m = &mounts[0];
    assert_eq!(m.typ, Some(bollard::models::MountType::BIND), "{m:?}");
    assert_eq!(
        m.source.as_deref(),
        Some(dir.display().to_string().as_str())
    );
    assert_eq!(m.target.as_deref(), Some("/models"));
    assert_eq!(m.read_only, Some(true));
}

#[tokio::test]
async fn launch_is_loopback_read_only_labelled_and_relaunch_is_idempotent() {
    with_run!("launch", |docker, run| {
        let image = Env::require("VLMCTL_TEST_LLAMA_IMAGE");
        let port = free_port();
        let spec = spec(&run.name("server"), &image, port, "");
        let mount = model_mount();
        let mut steps = Vec::new();
        let Launch::Started {
            id,
            replaced: false,
        } = containers::launch(
            &docker,
            &spec,
            &mount,
            None,
            &run.id,
            &run.labels(),
            &mut |step| {
                steps.push(format!("{step:?}"));
                Ok(())
            },
        )
        .await?
        else {
            anyhow::bail!("expected a fresh start");
        };
        // The caller hears of the container before the create call and with its id before the
        // start, so that a run that dies in between can be undone.
        assert_eq!(
            steps,
            vec!["Creating".to_owned(), format!("Created {{ id: {id:?} }}")]
        );
        let startup = containers::wait_ready(
            &docker,
            &spec.name,
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(90),
        )
        .await?;
        eprintln!("llama-server ready in {startup:?}");

        let i = docker.inspect_container(&id, None).await?;
        assert_created_as_specified(&i, &spec, &mount, &run.id);
        let mounts = i.mounts.unwrap_or_default();
        assert!(mounts.iter().all(|m| m.rw == Some(false)), "{mounts:?}");
        // Bound to loopback only, seen from outside the container in the kernel's socket table
        // (host network: the host's table), without sending traffic to any other address.
        let table = std::fs::read_to_string("/proc/net/tcp")?;
        let addrs = crate::common::listening_addresses(&table, port);
        assert_eq!(addrs, vec![std::net::Ipv4Addr::LOCALHOST]);

        let started = std::time::Instant::now();
        let again = launch_labelled(&docker, &spec, &mount, &run).await?;
        assert_eq!(again, Launch::Unchanged { id: id.clone() });
        eprintln!("idempotent relaunch took {:?}", started.elapsed());

        let mut changed = spec.clone();
        changed.server.ctx_size = 2048;
        let Launch::Started {
            id: new_id,
            replaced: true,
        } = launch_labelled(&docker, &changed, &mount, &run).await?
        else {
            anyhow::bail!("a changed spec must replace the container");
        };
        assert_ne!(new_id, id);
        assert!(containers::teardown(&docker, &spec.name).await?);
        assert!(
            !containers::teardown(&docker, &spec.name).await?,
            "teardown is idempotent"
        );
        Ok(())
    });
}

/// `scripts/test` starts dockerd with a no-op `nvidia-container-runtime-hook` on its PATH, which
/// registers Docker's "nvidia" device driver: a GPU request is accepted and the container starts
/// with no GPU, as on a host whose toolkit gives it none (the GPU proof's case). Without the
/// hook dockerd refuses the request; that error's mapping is a unit test in `containers`
/// (`start_error`), from dockerd's own message.
#[tokio::test]
async fn gpu_request_starts_with_the_test_daemons_nvidia_driver() {
    with_run!("gpu", |docker, run| {
        let image = busybox(&docker, &run).await?;
        let mut spec = spec(&run.name("server"), &image, free_port(), "");
        spec.gpus = vlmctl_lifecycle::spec::Gpus::All;
        let launched = launch_labelled(&docker, &spec, &model_mount(), &run).await;
        if let Err(LifecycleError::NoGpuRuntime { .. }) = &launched {
            anyhow::bail!(
                "dockerd has no \"nvidia\" device driver: restart it through scripts/test, \
                 which puts a no-op nvidia-container-runtime-hook on its PATH"
            );
        }
        assert!(matches!(launched?, Launch::Started { .. }));
        let request = docker
            .inspect_container(&spec.name, None)
            .await?
            .host_config
            .and_then(|h| h.device_requests)
            .unwrap_or_default();
        assert_eq!(request.len(), 1, "{request:?}");
        assert_eq!(request[0].count, Some(-1), "every GPU: {request:?}");
        assert!(containers::teardown(&docker, &spec.name).await?);
        Ok(())
    });
}

#[tokio::test]
async fn names_not_created_by_vlmctl_are_never_replaced() {
    with_run!("name", |docker, run| {
        let image = busybox(&docker, &run).await?;
        // Someone else's container: only the run label (for cleanup), no org.vlmctl.managed.
        let theirs = run.name("theirs");
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(vec!["sleep".into(), "600".into()]),
            labels: Some(run.image_labels()),
            ..Default::default()
        };
        docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name(&theirs)
                        .build(),
                ),
                body,
            )
            .await?;
        let spec = spec(&theirs, &image, free_port(), "");
        let err = containers::launch(
            &docker,
            &spec,
            &model_mount(),
            None,
            &run.id,
            &HashMap::new(),
            &mut |_| Ok(()),
        )
        .await
        .expect_err("not ours");
        assert!(matches!(err, LifecycleError::NameTaken { .. }), "{err:?}");
        assert!(matches!(
            containers::teardown(&docker, &theirs).await,
            Err(LifecycleError::NameTaken { .. })
        ));
        assert!(
            docker.inspect_container(&theirs, None).await.is_ok(),
            "still there"
        );
        Ok(())
    });
}

/// Pushes blobs and manifests straight to the registry's HTTP API (no buildx here).
struct RegistryPush {
    http: reqwest::Client,
    base: String,
    repo: String,
}

impl RegistryPush {
    async fn blob(&self, data: &[u8]) -> anyhow::Result<String> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        let r = self
            .http
            .post(format!("{}/v2/{}/blobs/uploads/", self.base, self.repo))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 202, "upload start: {}", r.status());
        let loc = r
            .headers()
            .get("location")
            .context("no Location")?
            .to_str()?
            .to_owned();
        let url = if loc.starts_with("http") {
            loc
        } else {
            format!("{}{loc}", self.base)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let r = self
            .http
            .put(format!("{url}{sep}digest={digest}"))
            .body(data.to_vec())
            .send()
            .await?;
        anyhow::ensure!(r.status() == 201, "blob put: {}", r.status());
        Ok(digest)
    }

    async fn manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(String, usize)> {
        let bytes = serde_json::to_vec(body)?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let r = self
            .http
            .put(format!(
                "{}/v2/{}/manifests/{reference}",
                self.base, self.repo
            ))
            .header("content-type", media_type)
            .body(bytes.clone())
            .send()
            .await?;
        anyhow::ensure!(
            r.status() == 201,
            "manifest put: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        Ok((digest, bytes.len()))
    }

    /// An image manifest for `arch` (config + one empty layer).
    async fn image(&self, arch: &str, variant: Option<&str>) -> anyhow::Result<(String, usize)> {
        let layer = vec![0u8; 1024]; // an empty tar archive
        let layer_digest = self.blob(&layer).await?;
        let mut config = serde_json::json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer_digest]}, "config": {}});
        if let Some(v) = variant {
            config["variant"] = v.into();
        }
        let config_bytes = serde_json::to_vec(&config)?;
        let config_digest = self.blob(&config_bytes).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        });
        self.manifest(
            &format!("{arch}-{}", variant.unwrap_or("none")),
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )
        .await
    }
}

#[tokio::test]
async fn platform_gate_reads_single_and_multi_arch_images_through_the_daemon() {
    let registry = Env::require("VLMCTL_TEST_REGISTRY");
    let docker = docker().await;
    let run = TestRun::new(&docker, "platform");
    let push = RegistryPush {
        http: reqwest::Client::new(),
        base: format!("http://{registry}"),
        repo: format!("vlmctl-test/multi-{}", run.id),
    };
    let body = async {
        let (amd, amd_len) = push.image("amd64", None).await?;
        let (arm, arm_len) = push.image("arm64", Some("v8")).await?;
        let (att, att_len) = push.image("unknown", None).await?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd, "size": amd_len, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm, "size": arm_len, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att, "size": att_len, "platform": {"os": "unknown", "architecture": "unknown"},
                 "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            ],
        });
        push.manifest("multi", "application/vnd.oci.image.index.v1+json", &index)
            .await?;

        let multi = format!("{registry}/{}:multi", push.repo);
        let found = platform::image_platforms(&docker, &multi).await?;
        assert_eq!(found.len(), 3, "{found:?}");
        let p = |s: &str| Platform::parse(s).expect("platform");
        assert_eq!(
            platform::check(&p("linux/arm64"), &found),
            PlatformVerdict::Supported(p("linux/arm64/v8"))
        );
        assert_eq!(
            platform::check(&p("linux/amd64"), &found),
            PlatformVerdict::Supported(p("linux/amd64"))
        );
        assert_eq!(
            platform::check(&p("linux/riscv64"), &found),
            PlatformVerdict::Unsupported(vec![p("linux/amd64"), p("linux/arm64/v8")])
        );

        // A single OCI manifest (no index): dockerd 20.10 lists no platform; the gate warns
        // rather than claiming the image is unsupported.
        let single = format!("{registry}/{}:amd64-none", push.repo);
        assert_eq!(
            platform::check(
                &p("linux/arm64"),
                &platform::image_platforms(&docker, &single).await?
            ),
            PlatformVerdict::Unknown
        );
        let spec = spec(
            &run.name("s"),
            &single,
            free_port(),
            "platform = \"linux/arm64\"",
        );
        let report = gates::run(
            &crate::common::local_engine(),
            Ok(&docker),
            &spec,
            vlmctl_lifecycle::gpu::Probe::Local(None),
            async { GateResult::new("weights", GateStatus::Pass, "", None) },
        )
        .await;
        assert_eq!(
            report.results[1].status,
            GateStatus::Warn,
            "{:?}",
            report.results[1]
        );

        // An image that does not exist: a clear failure with a hint.
        let missing = format!("{registry}/vlmctl-test/nothing:here");
        let err = platform::image_platforms(&docker, &missing)
            .await
            .expect_err("no such image");
        assert!(
            err.to_string().contains("vlmctl-test/nothing:here"),
            "{err}"
        );
        Ok(())
    };
    Box::pin(run.guard(body)).await;
}
