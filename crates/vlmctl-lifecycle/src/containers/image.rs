//! The image: its own health check (which the plan aims at the spec's port) and the pull.

use bollard::Docker;
use futures::StreamExt;

use crate::LifecycleError;

/// The image's own health check (Docker's `Healthcheck.Test`), which the plan aims at the
/// spec's port; `None` when it has none or cannot be inspected (it then keeps its own).
pub async fn image_health_test(docker: &Docker, image: &str) -> Option<Vec<String>> {
    let image = docker.inspect_image(image).await.ok()?;
    image
        .config
        .and_then(|c| c.healthcheck)
        .and_then(|h| h.test)
}

/// One step of an image pull, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PullStep {
    /// Layer id, if the step is about a layer.
    pub layer: Option<String>,
    /// The daemon's status ("Downloading", "Pull complete", ...).
    pub status: String,
    /// Bytes done and total for the layer, when known.
    pub bytes: Option<(u64, u64)>,
}

/// Pulls `image` when it is not present locally (for `platform` when given, e.g.
/// `linux/arm64`); reports each step to `progress`. Returns whether it pulled.
pub async fn ensure_image(
    docker: &Docker,
    image: &str,
    platform: Option<&str>,
    progress: &mut dyn FnMut(&PullStep),
) -> Result<bool, LifecycleError> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(false);
    }
    let mut opts =
        bollard::query_parameters::CreateImageOptionsBuilder::default().from_image(image);
    if let Some(p) = platform {
        opts = opts.platform(p);
    }
    let mut pull = docker.create_image(Some(opts.build()), None, None);
    while let Some(step) = pull.next().await {
        let info = step.map_err(|source| LifecycleError::Pull {
            image: image.to_owned(),
            source,
        })?;
        let bytes = info.progress_detail.and_then(|d| {
            Some((
                u64::try_from(d.current?).ok()?,
                u64::try_from(d.total?).ok()?,
            ))
        });
        progress(&PullStep {
            layer: info.id,
            status: info.status.unwrap_or_default(),
            bytes,
        });
    }
    // The stream can end without an error item when the daemon gave up: check the result.
    docker
        .inspect_image(image)
        .await
        .map(|_| true)
        .map_err(|source| LifecycleError::Pull {
            image: image.to_owned(),
            source,
        })
}
