//! The server's GPU memory against the spec's ceiling (the runbook's quantization-trap red flag).

use vlmctl_lifecycle::gpu::{self, GpuProcess, GpuState};
use vlmctl_lifecycle::spec::{Gpus, Spec};

use crate::DeployError;

/// Pure: the GPU memory `container_id`'s processes use, and whether it is above `max_mib`.
pub fn check(
    processes: &[GpuProcess],
    container_id: &str,
    container: &str,
    max_mib: Option<u64>,
) -> Result<u64, DeployError> {
    let used: u64 = processes
        .iter()
        .filter(|p| p.container_id.as_deref() == Some(container_id))
        .filter_map(|p| p.used_mib)
        .sum();
    match max_mib {
        Some(max) if used > max => Err(DeployError::MemoryCeiling {
            container: container.to_owned(),
            used_mib: used,
            max_mib: max,
        }),
        _ => Ok(used),
    }
}

/// Measures with `nvidia-smi` and checks; `None` when there is no GPU to measure.
pub async fn measure(spec: &Spec, container_id: &str) -> Result<Option<u64>, DeployError> {
    if spec.gpus == Gpus::None {
        return Ok(None);
    }
    let Ok(GpuState::Gpus { processes, .. }) =
        gpu::query(crate::gates::which("nvidia-smi").as_deref()).await
    else {
        return Ok(None);
    };
    check(
        &processes,
        container_id,
        &spec.name,
        spec.memory.max_process_mib,
    )
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(container: Option<&str>, mib: Option<u64>) -> GpuProcess {
        GpuProcess {
            pid: 1,
            name: "llama-server".into(),
            used_mib: mib,
            container_id: container.map(str::to_owned),
        }
    }

    #[test]
    fn only_the_servers_processes_count_and_the_ceiling_is_inclusive() {
        let procs = [
            p(Some("srv"), Some(5000)),
            p(Some("srv"), Some(3192)),
            p(Some("voice"), Some(4000)),
            p(None, Some(100)),
            p(Some("srv"), None),
        ];
        assert_eq!(check(&procs, "srv", "panda", Some(8192)).unwrap(), 8192);
        let e = check(&procs, "srv", "panda", Some(8191)).unwrap_err();
        assert!(
            matches!(
                e,
                DeployError::MemoryCeiling {
                    used_mib: 8192,
                    max_mib: 8191,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(check(&procs, "srv", "panda", None).unwrap(), 8192);
        assert_eq!(check(&procs, "other", "panda", Some(0)).unwrap(), 0);
    }
}
