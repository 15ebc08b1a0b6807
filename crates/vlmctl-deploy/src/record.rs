//! The provision record: everything needed to know later what was launched and how it did.

use std::path::{Path, PathBuf};

use serde::Serialize;
use vlmctl_lifecycle::containers::Launch;
use vlmctl_lifecycle::gates::GateResult;
use vlmctl_lifecycle::spec::Spec;

use crate::DeployError;
use crate::offload::GpuProof;
use crate::smoke::Smoke;

/// Record format version.
pub const RECORD_VERSION: u32 = 2;

/// `<state>/records/<deployment>.json`, written after a provision passed its checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProvisionRecord {
    /// Format version.
    pub version: u32,
    /// Deployment (container) name.
    pub deployment: String,
    /// The spec as validated.
    pub spec: Spec,
    /// Its canonical hash (the container's label).
    pub spec_sha256: String,
    /// Image reference.
    pub image: String,
    /// Local image id.
    pub image_id: Option<String>,
    /// Registry digests of the image.
    pub image_digests: Option<Vec<String>>,
    /// Hash of the lock entry (the container's label).
    pub lock_sha256: String,
    /// Lock entry name.
    pub model: String,
    /// Container id.
    pub container_id: String,
    /// What the launch did.
    pub launch: Launch,
    /// Every gate's result.
    pub gates: Vec<GateResult>,
    /// Seconds from start to `/health` 200.
    pub startup_s: f64,
    /// Seconds for the whole job.
    pub provision_s: f64,
    /// The smoke request.
    pub smoke: Smoke,
    /// The server process's GPU memory, when there is a GPU to measure and `nvidia-smi` gives
    /// a per-process figure.
    pub server_gpu_mib: Option<u64>,
    /// The proof that the model runs on the GPU: the devices, layers and memory it rests on.
    pub gpu_proof: GpuProof,
    /// vlmctl's version.
    pub vlmctl: String,
}

/// Where a deployment's record lives.
#[must_use]
pub fn path(state: &Path, deployment: &str) -> PathBuf {
    state.join("records").join(format!("{deployment}.json"))
}

impl ProvisionRecord {
    /// Writes it atomically under `<state>/records/`.
    pub fn write(&self, state: &Path) -> Result<PathBuf, DeployError> {
        let p = path(state, &self.deployment);
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::write_atomically(&p, &text).map_err(|source| DeployError::Record {
            path: p.clone(),
            source,
        })?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use vlmctl_lifecycle::containers::Launch;

    #[test]
    fn the_launch_reads_as_an_action_not_a_rust_enum_tag() {
        let started = Launch::Started {
            id: "abc".into(),
            replaced: true,
        };
        assert_eq!(
            serde_json::to_value(&started).unwrap(),
            serde_json::json!({"action": "started", "id": "abc", "replaced": true})
        );
        assert_eq!(
            serde_json::to_value(Launch::Unchanged { id: "abc".into() }).unwrap(),
            serde_json::json!({"action": "unchanged", "id": "abc"})
        );
    }
}
