//! Shared helpers: the environment `scripts/test` exports, unique names and labels per test run,
//! and cleanup by label that also runs when a test fails.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use vlmctl_lifecycle::MANAGED_LABEL;

pub use vlmctl_test::{Env, RUN_LABEL, free_port};

/// This machine's engine (the tests' dockerd, through `DOCKER_HOST`), state in the temp dir.
pub fn local_engine() -> vlmctl_lifecycle::Engine {
    vlmctl_lifecycle::Engine::local(&std::env::temp_dir().join("vlmctl-lifecycle-tests"))
}

/// Local addresses listening on `port` in a `/proc/net/tcp` table (IPv4), e.g. `127.0.0.1`: how
/// a test proves a server is bound to loopback without sending traffic anywhere else.
pub fn listening_addresses(table: &str, port: u16) -> Vec<std::net::Ipv4Addr> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, p) = f.get(1)?.split_once(':')?;
            let p = u16::from_str_radix(p, 16).ok()?;
            if p != port || f.get(3) != Some(&"0A") {
                return None;
            }
            // The kernel prints the address as a native-endian u32 in hex.
            let raw = u32::from_str_radix(addr, 16).ok()?;
            Some(std::net::Ipv4Addr::from(raw.to_le_bytes()))
        })
        .collect()
}

pub async fn docker() -> Docker {
    match local_engine().connect().await {
        Ok(d) => d,
        Err(e) => panic!("{e}: {}", e.hint()),
    }
}

/// One test's identity: a unique run id, the labels to put on everything it creates, and the
/// cleanup that removes all of it by label.
pub struct TestRun {
    pub id: String,
    docker: Docker,
}

impl TestRun {
    pub fn new(docker: &Docker, what: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            id: format!("{what}-{}-{nanos:08x}", std::process::id()),
            docker: docker.clone(),
        }
    }

    /// A container or image name unique to this run.
    pub fn name(&self, suffix: &str) -> String {
        format!("vlmctl-test-{}-{suffix}", self.id)
    }

    /// Labels for images: the run label only. Containers inherit image labels, and
    /// `org.vlmctl.managed` must mean "this container was created by vlmctl".
    pub fn image_labels(&self) -> HashMap<String, String> {
        HashMap::from([(RUN_LABEL.to_owned(), self.id.clone())])
    }

    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (MANAGED_LABEL.to_owned(), "true".to_owned()),
            (RUN_LABEL.to_owned(), self.id.clone()),
        ])
    }

    fn label_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_owned(), vec![format!("{RUN_LABEL}={}", self.id)])])
    }

    /// Runs `body`, then removes everything this run created, also when `body` panicked (an
    /// assertion) or failed; then reports the failure.
    pub async fn guard(&self, body: impl std::future::Future<Output = anyhow::Result<()>>) {
        use futures::FutureExt;
        let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
        self.cleanup().await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{e:#}"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Removes every container and image carrying this run's label. Errors are reported, not
    /// raised: cleanup runs after failures too and must not hide the original panic.
    pub async fn cleanup(&self) {
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&self.label_filter())
            .build();
        for c in self
            .docker
            .list_containers(Some(opts))
            .await
            .unwrap_or_default()
        {
            if let Some(id) = c.id {
                let rm = RemoveContainerOptionsBuilder::default().force(true).build();
                if let Err(e) = self.docker.remove_container(&id, Some(rm)).await {
                    eprintln!("cleanup: could not remove container {id}: {e}");
                }
            }
        }
        let opts = ListImagesOptionsBuilder::default()
            .filters(&self.label_filter())
            .build();
        for img in self
            .docker
            .list_images(Some(opts))
            .await
            .unwrap_or_default()
        {
            let names = if img.repo_tags.is_empty() {
                vec![img.id]
            } else {
                img.repo_tags
            };
            for name in names {
                let rm = RemoveImageOptionsBuilder::default().force(true).build();
                if let Err(e) = self.docker.remove_image(&name, Some(rm), None).await {
                    eprintln!("cleanup: could not remove image {name}: {e}");
                }
            }
        }
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout`. The only way tests wait.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
