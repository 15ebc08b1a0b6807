//! All the read-only gates, the weights gate included (the lifecycle crate runs the others and
//! takes this one as a future, so that it does not depend on the weights crate).

use std::path::{Path, PathBuf};

use vlmctl_lifecycle::gates::{self, GateReport, GateResult, GateStatus};
use vlmctl_lifecycle::{Docker, LifecycleError};
use vlmctl_weights::{VerifyJob, verify_all};

use crate::human_bytes;
use crate::plan::DeploymentPlan;

/// Where the GPUs are looked at: this machine's `nvidia-smi`, or, on another host, one in a
/// short-lived container there from the deployment's image with the GPUs requested, in that
/// host's PID namespace (`vlmctl_lifecycle::gpu::container`: processes mapped to containers and
/// free memory read there, as here).
#[must_use]
pub fn gpu_probe(
    engine: &vlmctl_lifecycle::Engine,
    spec: &vlmctl_lifecycle::spec::Spec,
) -> vlmctl_lifecycle::gpu::Probe {
    match engine.host() {
        vlmctl_lifecycle::hosts::Host::Local => {
            vlmctl_lifecycle::gpu::Probe::Local(which("nvidia-smi"))
        }
        vlmctl_lifecycle::hosts::Host::Ssh { .. } => vlmctl_lifecycle::gpu::Probe::Container {
            image: spec.image.clone(),
        },
    }
}

/// `name` on `PATH`, if it is there.
#[must_use]
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os(vlmctl_base::env::PATH)?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The weights gate. With a stamp cache (`<state>/verified.json`), files unchanged since they
/// last verified (size, mtime, ctime, inode, device) are not hashed again: the relaunch fast
/// path.
pub async fn weights_gate(jobs: Vec<VerifyJob>, cache: Option<PathBuf>) -> GateResult {
    let linked: Vec<String> = jobs.iter().filter_map(linked_elsewhere).collect();
    if !linked.is_empty() {
        return GateResult::new(
            "weights",
            GateStatus::Fail,
            linked.join("; "),
            Some(
                "put the files themselves in the models directory (`vlmctl weights adopt PATH` \
                 hard-links or copies them there): the container resolves a link inside its own \
                 /models, so a link can show it other bytes than the ones verified here",
            ),
        );
    }
    let total: u64 = jobs.iter().map(|j| j.file.size).sum();
    let n = jobs.len();
    let (reports, fast) = tokio::task::spawn_blocking(move || match cache {
        Some(c) => vlmctl_weights::verify_all_cached(&jobs, 0, &c),
        None => (verify_all(&jobs, 0), 0),
    })
    .await
    .unwrap_or_default();
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{}: {}", r.path, r.status))
        .collect();
    if bad.is_empty() && reports.len() == n {
        let how = if fast == n && n > 0 {
            " (unchanged since they last verified: not re-hashed)"
        } else {
            ""
        };
        GateResult::new(
            "weights",
            GateStatus::Pass,
            format!("{n} file(s), {}, verified{how}", human_bytes(total)),
            None,
        )
    } else {
        GateResult::new(
            "weights",
            GateStatus::Fail,
            bad.join("; "),
            Some("vlmctl weights fetch (or weights adopt PATH)"),
        )
    }
}

/// Why a model file is not what the container will read, if it is not: a symbolic link (in
/// the file or a directory on its way). The host follows it from the host's root, the
/// container from its own, with `/models` mounted at another place: the two can differ.
fn linked_elsewhere(j: &VerifyJob) -> Option<String> {
    let p = &j.location;
    let meta = std::fs::symlink_metadata(p).ok()?;
    let real = std::fs::canonicalize(p).ok()?;
    if meta.file_type().is_symlink() || real != *p {
        Some(format!(
            "{}: a symbolic link (to {}), not the file itself",
            j.file.path,
            real.display()
        ))
    } else {
        None
    }
}

/// Every gate on `engine`, concurrently. `cached`: use the verified-files cache in the
/// engine's state folder (`false`: hash everything, the thorough check of `vlmctl gates`).
pub async fn run(
    engine: &vlmctl_lifecycle::Engine,
    plan: &DeploymentPlan,
    cached: bool,
) -> (Result<Docker, LifecycleError>, GateReport) {
    let docker = engine.connect().await;
    let state = cached.then(|| engine.state_dir());
    let weights = async {
        match &plan.unpinned {
            // Read-only: say what the first provision will pin.
            Some(need) => GateResult::new(
                "weights",
                GateStatus::Fail,
                format!("not pinned yet: {need}"),
                Some(
                    "`vlmctl provision` pins it on first use (resolves the revision to a commit, \
                     reads each file's size and sha256 from the hub), then fetches and verifies \
                     it; commit the lock afterwards",
                ),
            ),
            None => weights_gate(plan.jobs.clone(), state.map(|s| s.join("verified.json"))).await,
        }
    };
    let report = gates::run(
        engine,
        docker.as_ref(),
        &plan.spec,
        gpu_probe(engine, &plan.spec),
        weights,
    )
    .await;
    (docker, report)
}

#[cfg(test)]
mod tests {
    use vlmctl_weights::{LockedFile, Role, Sha256Digest};

    use super::*;

    fn job(dir: &Path, path: &str) -> VerifyJob {
        VerifyJob {
            model: "m".into(),
            file: LockedFile {
                path: path.into(),
                role: Role::Model,
                size: 4,
                sha256: "00".repeat(32).parse::<Sha256Digest>().unwrap(),
            },
            location: dir.join(path),
        }
    }

    #[tokio::test]
    async fn a_linked_model_file_fails_the_gate_before_anything_is_hashed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let models = dir.join("models");
        std::fs::create_dir_all(models.join("real")).unwrap();
        std::fs::write(dir.join("elsewhere.gguf"), b"GGUF").unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere.gguf"), models.join("m.gguf")).unwrap();
        std::fs::write(models.join("real/x.gguf"), b"GGUF").unwrap();
        std::os::unix::fs::symlink(models.join("real"), models.join("sub")).unwrap();
        for path in ["m.gguf", "sub/x.gguf"] {
            let r = weights_gate(vec![job(&models, path)], None).await;
            assert_eq!(r.status, GateStatus::Fail, "{path}: {r:?}");
            assert!(
                r.evidence.contains("a symbolic link"),
                "{path}: {}",
                r.evidence
            );
        }
        // The file itself (wrong bytes here) is hashed and fails as a mismatch instead.
        let r = weights_gate(vec![job(&models, "real/x.gguf")], None).await;
        assert!(!r.evidence.contains("symbolic link"), "{}", r.evidence);
    }
}
