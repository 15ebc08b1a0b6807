//! What a launched server is checked for before a provision calls it ready: weights changed
//! under a running server, the smoke request, the proof that the model runs on the GPU, and
//! what a server that died at load says about CUDA. Used by [`crate::provision`]; imports none
//! of the jobs.

use std::path::Path;

use vlmctl_lifecycle::Docker;
use vlmctl_lifecycle::containers;

use crate::offload::{self, GpuProof};
use crate::plan::DeploymentPlan;
use crate::smoke::{self, Smoke};
use crate::{DeployError, memory};

/// Why the running container of the deployment (if one runs) may serve other bytes than the
/// verified files: some were put in place by this run (`repaired`: fetched again, pushed to
/// the host), or, on this machine, a file's status changed (ctime) after the container started
/// (written in place, or replaced by another file). `None` when none runs or nothing changed.
pub(crate) async fn stale_weights(
    engine: &vlmctl_lifecycle::Engine,
    docker: &Docker,
    plan: &DeploymentPlan,
    repaired: &[String],
) -> Option<String> {
    let inspected = docker.inspect_container(&plan.spec.name, None).await.ok()?;
    let state = inspected.state?;
    if state.running != Some(true) {
        return None;
    }
    if !repaired.is_empty() {
        return Some(repaired.join(", "));
    }
    if engine.is_remote() {
        return None;
    }
    let started = state
        .started_at
        .as_deref()?
        .parse::<jiff::Timestamp>()
        .ok()?;
    plan.jobs.iter().find_map(|j| {
        let changed = file_changed_at(&j.location)?;
        (changed > started).then(|| {
            format!(
                "{} changed at {}, after the server started at {}",
                j.file.path,
                changed.strftime("%H:%M:%S UTC"),
                started.strftime("%H:%M:%S UTC")
            )
        })
    })
}

/// When the file's status (content, inode) last changed: its ctime, which no user can set
/// back (unlike mtime).
fn file_changed_at(path: &Path) -> Option<jiff::Timestamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    let nanos = i32::try_from(m.ctime_nsec()).ok()?;
    jiff::Timestamp::new(m.ctime(), nanos).ok()
}

/// How much of the server's log is read for the proof: it runs at verbosity 3, which logs
/// about 15 lines while the model loads and one or two per request.
const PROOF_LOG_LINES: usize = 5000;

const PROOF_LOG_BYTES: usize = 1 << 20;

/// The proof that the model runs on the GPU the spec asks for: the GPU probe's log (`probe`:
/// the devices and offloaded layers, logged at verbosity 4 before the launch), the server's own
/// log (at 3: no GPU failure in it, [`offload::check_server`]) and `nvidia-smi`'s figure,
/// weighed by [`offload::decide`]. `probe` is `None` only for a spec that asks for no GPU.
pub(crate) async fn prove(
    docker: &Docker,
    plan: &DeploymentPlan,
    reading: &memory::Reading,
    probe: Option<&offload::LogEvidence>,
) -> Result<GpuProof, DeployError> {
    let spec = &plan.spec;
    let (true, Some(probe)) = (spec.gpus != vlmctl_lifecycle::spec::Gpus::None, probe) else {
        return Ok(GpuProof::NotChecked {
            why: "the spec asks for no GPU (gpus = \"none\")".to_owned(),
        });
    };
    let log = containers::log_head(docker, &spec.name, PROOF_LOG_LINES, PROOF_LOG_BYTES).await;
    let server = offload::parse(&log);
    // The lines that decided first: the server's own when they show a failure.
    let checked = offload::check_server(&server);
    let (first, then) = if checked.is_err() {
        (&server, probe)
    } else {
        (probe, &server)
    };
    let lines: Vec<String> = first.lines.iter().chain(&then.lines).cloned().collect();
    checked
        .and_then(|()| offload::decide(probe, &expect(plan), reading.process_mib))
        .map(|mut proof| {
            proof.log_lines.clone_from(&lines);
            GpuProof::Proven(proof)
        })
        .map_err(|shortfall| not_on_gpu(plan, shortfall, probe, reading, lines))
}

/// What the spec and the lock ask of the server.
pub(crate) fn expect(plan: &DeploymentPlan) -> offload::Expect<'_> {
    offload::Expect {
        n_gpu_layers: plan.spec.server.n_gpu_layers,
        min_process_mib: plan.spec.memory.min_process_mib,
        model_bytes: plan.model.files.iter().map(|f| f.size).sum(),
        image: &plan.spec.image,
    }
}

/// The error for a deployment that does not run its model on the GPU, with the log lines read.
pub(crate) fn not_on_gpu(
    plan: &DeploymentPlan,
    shortfall: offload::Shortfall,
    evidence: &offload::LogEvidence,
    reading: &memory::Reading,
    lines: Vec<String>,
) -> DeployError {
    DeployError::NotOnGpu(Box::new(offload::NotOnGpu {
        container: plan.spec.name.clone(),
        shortfall,
        compute_cap: evidence
            .devices
            .first()
            .map(|d| d.compute_cap.clone())
            .or_else(|| reading.compute_caps.first().cloned()),
        evidence: lines,
        image: plan.spec.image.clone(),
    }))
}

/// The smoke request (with the camera frame when the model has a projector); when it fails,
/// the server's own last log lines go with the error (an image the server could not encode, or
/// ignored, is told there).
pub(crate) async fn checked_smoke(
    docker: &Docker,
    plan: &DeploymentPlan,
    base: &str,
) -> Result<Smoke, DeployError> {
    let logs = || containers::log_tail(docker, &plan.spec.name, 15);
    match smoke::smoke(
        base,
        plan.api_key.as_deref(),
        plan.mount.mmproj_file.is_some(),
    )
    .await
    {
        Err(DeployError::ImageIgnored {
            url, with, without, ..
        }) => Err(DeployError::ImageIgnored {
            url,
            with,
            without,
            logs: logs().await,
        }),
        Err(DeployError::SmokeFailed { url, why }) => Err(DeployError::SmokeFailed {
            url,
            why: format!("{why}; the server's log ends:\n{}", logs().await),
        }),
        other => other,
    }
}

/// A GPU server that exited while loading: when its log says CUDA failed (a CUDA image without
/// kernels for the GPU aborts with `CUDA error: no kernel image is available ...`), the error
/// carries the GPU proof's hint for it; anything else passes through.
pub(crate) async fn cuda_failure_at_load(
    docker: &Docker,
    spec: &vlmctl_lifecycle::spec::Spec,
    e: vlmctl_lifecycle::LifecycleError,
) -> DeployError {
    use vlmctl_lifecycle::LifecycleError as L;
    if spec.gpus == vlmctl_lifecycle::spec::Gpus::None || !matches!(e, L::ExitedDuringLoad { .. }) {
        return e.into();
    }
    let log = containers::log_head(docker, &spec.name, 5000, 1 << 20).await;
    match crate::offload::cuda_failure_hint(&crate::offload::parse(&log), &spec.image) {
        Some(hint) => DeployError::CudaFailedAtLoad {
            source: Box::new(e),
            hint,
        },
        None => e.into(),
    }
}
